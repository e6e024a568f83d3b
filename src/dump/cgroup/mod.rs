//! The tree's cgroups (`cgroup.img`, restored by `restore/cgroup/`), as CRIU records
//! them: each thread's cgroup in every hierarchy (`/proc/PID/task/TID/cgroup`), and in
//! each hierarchy where some task is not in the dumper's own cgroup, every cgroup of a
//! task and the cgroups below it (or below `--cgroup-root`), with their owner, mode and
//! the settings of `cgroupfs::PROPS`. A tree whose tasks all share the dumper's cgroups
//! records nothing (it is restored into the restorer's). A tree whose root made a cgroup
//! namespace gets that namespace's root in each hierarchy, read from inside it; a
//! process in yet another cgroup namespace is refused. Also `--freeze-cgroup`
//! (`freeze.rs`).

mod freeze;
mod walk;

use std::path::PathBuf;

pub use freeze::{freeze, refuse_frozen, Frozen};

use super::DumpError;
use crate::image::cgroup::{CgroupImage, Hierarchy, TaskCgroups, CGROUP};
use crate::image::{ImageWriter, Kind};
use crate::proc::cgroup::Membership;

/// `--cgroup-root`, `--cgroup-yard`, `--cgroup-dump-controller` at dump.
#[derive(Clone, Debug, Default)]
pub struct CgroupDumpOptions {
    /// Walk these cgroups instead of the tasks' own: (controller or None for every
    /// other hierarchy, path).
    pub roots: Vec<(Option<String>, String)>,
    /// Hierarchies mounted by the caller, one directory each.
    pub yard: Option<PathBuf>,
    /// Record only the hierarchies having one of these controllers (`name=x` for a
    /// named one; empty: all).
    pub controllers: Vec<String>,
}

/// Records the cgroups of `tasks` (each process with its threads, tree order).
pub fn dump(
    tasks: &[(i32, Vec<i32>)],
    opts: &CgroupDumpOptions,
    writer: &ImageWriter,
) -> Result<(), DumpError> {
    let own = crate::proc::cgroup::read("self", None)?;
    let seen = memberships(tasks, opts.yard.as_deref())?;
    let Some(&(root, _)) = tasks.first() else {
        return Ok(());
    };
    let root_ns = ns_of(root)?;
    let foreign_ns = root_ns != ns_of_self()?;
    for (pid, _) in &tasks[1..] {
        if ns_of(*pid)? != root_ns {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is in another cgroup namespace than the tree's root {root}, \
                 which stasis cannot rebuild (one cgroup namespace per tree)"
            )));
        }
    }
    if !foreign_ns && seen.iter().all(|(_, _, m)| *m == own) {
        return Ok(());
    }
    let image = record(&own, &seen, opts, foreign_ns.then_some(root))?;
    writer.write_record(CGROUP, Kind::Cgroup, &image)?;
    Ok(())
}

/// Every thread's cgroups. A process's file is read once; its threads' files only when
/// they can be elsewhere: with a v1 hierarchy (a thread moves alone through `tasks`),
/// or when its v2 cgroup is not a plain `domain` (a threaded subtree, or the root,
/// which can be one's domain).
fn memberships(
    tasks: &[(i32, Vec<i32>)],
    yard: Option<&std::path::Path>,
) -> Result<Vec<(i32, i32, Vec<Membership>)>, DumpError> {
    let mut unified = None;
    let mut seen = Vec::new();
    for (pid, tids) in tasks {
        let leader = crate::proc::cgroup::read(&pid.to_string(), None)?;
        let alone = tids.as_slice() == [*pid];
        if tids.contains(pid) && (alone || !threads_may_differ(&leader, &mut unified, yard)?) {
            seen.extend(tids.iter().map(|&tid| (*pid, tid, leader.clone())));
            continue;
        }
        for &tid in tids {
            let m = crate::proc::cgroup::read(&pid.to_string(), Some(tid))?;
            seen.push((*pid, tid, m));
        }
    }
    Ok(seen)
}

/// Whether a process's threads can be in other cgroups than `leader`'s (see
/// `memberships`); the v2 hierarchy is opened once, at the first process that asks.
fn threads_may_differ(
    leader: &[Membership],
    unified: &mut Option<Option<crate::cgroupfs::Hierarchy>>,
    yard: Option<&std::path::Path>,
) -> Result<bool, DumpError> {
    if leader.iter().any(|m| !m.controllers.is_empty()) {
        return Ok(true);
    }
    let Some(v2) = leader.first() else {
        return Ok(false);
    };
    // Not mountable here (a confined dumper): each thread is read.
    let opened = unified.get_or_insert_with(|| crate::cgroupfs::Hierarchy::open("", yard).ok());
    let Some(h) = opened else {
        return Ok(true);
    };
    let kind = crate::cgroupfs::read(&h.dir(&v2.path).join("cgroup.type"));
    Ok(!matches!(kind.as_deref(), Ok("domain")))
}

/// Builds the record from every thread's memberships.
fn record(
    own: &[Membership],
    seen: &[(i32, i32, Vec<Membership>)],
    opts: &CgroupDumpOptions,
    ns_root: Option<i32>,
) -> Result<CgroupImage, DumpError> {
    let wanted = |c: &str| {
        opts.controllers.is_empty()
            || c.split(',')
                .any(|one| opts.controllers.iter().any(|w| w == one))
    };
    let first = &seen[0].2;
    let kept: Vec<&str> = (first.iter().map(|m| m.controllers.as_str()))
        .filter(|c| wanted(c))
        .collect();
    let path_in = |m: &[Membership], c: &str, tid: i32| {
        m.iter()
            .find(|x| x.controllers == c)
            .map(|x| x.path.clone())
            .ok_or_else(|| DumpError::unsupported(format!("thread {tid} has no cgroup {c:?}")))
    };
    let mut image = CgroupImage::default();
    for (pid, tid, m) in seen {
        let paths = kept
            .iter()
            .map(|c| path_in(m, c, *tid))
            .collect::<Result<_, _>>()?;
        image.tasks.push(TaskCgroups {
            pid: *pid,
            tid: *tid,
            paths,
        });
    }
    for (i, c) in kept.iter().enumerate() {
        let mine = own.iter().find(|m| m.controllers == *c).map(|m| &m.path);
        let paths: Vec<&String> = image.tasks.iter().map(|t| &t.paths[i]).collect();
        let mut h = Hierarchy {
            controllers: c.to_string(),
            ..Default::default()
        };
        // A hierarchy where every task is in the dumper's cgroup is not walked: the
        // tree shares that cgroup with others (it may be a hierarchy's root).
        if !paths.iter().all(|p| Some(*p) == mine) {
            h.tops = tops(c, &paths, opts)?;
            h.dirs = walk::dirs(c, &h.tops, opts.yard.as_deref())?;
        }
        image.hierarchies.push(h);
    }
    if let Some(root) = ns_root {
        image.ns_roots = Some(ns_roots(root, &kept, &image.tasks[0].paths)?);
    }
    Ok(image)
}

/// The walked cgroups of one hierarchy: `--cgroup-root`'s, or the tasks' own cgroups
/// (those below another left out).
fn tops(c: &str, paths: &[&String], opts: &CgroupDumpOptions) -> Result<Vec<String>, DumpError> {
    let given = (opts.roots.iter().find(|(k, _)| k.as_deref() == Some(c)))
        .or_else(|| opts.roots.iter().find(|(k, _)| k.is_none()));
    if let Some((_, top)) = given {
        if let Some(p) = paths.iter().find(|p| !crate::image::cgroup::under(p, top)) {
            return Err(DumpError::unsupported(format!(
                "cgroup {p} of hierarchy {c:?} is outside --cgroup-root {top}"
            )));
        }
        return Ok(vec![top.clone()]);
    }
    let mut tops: Vec<String> = Vec::new();
    for p in paths {
        let covered = paths
            .iter()
            .any(|o| o != p && crate::image::cgroup::under(p, o));
        if !covered && !tops.contains(p) {
            tops.push((*p).clone());
        }
    }
    Ok(tops)
}

fn ns_of(pid: i32) -> Result<u64, DumpError> {
    super::ns::ns_inode(&pid.to_string(), "cgroup")
}

fn ns_of_self() -> Result<u64, DumpError> {
    super::ns::ns_inode("self", "cgroup")
}

/// The root of `root`'s cgroup namespace in each hierarchy: its cgroup as seen from
/// here, less the path it sees from inside (read by a thread that joins the namespace).
fn ns_roots(root: i32, kept: &[&str], full: &[String]) -> Result<Vec<String>, DumpError> {
    let ns = format!("/proc/{root}/ns/cgroup");
    let inside = std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<Membership>, DumpError> {
            let fd = std::fs::File::open(&ns).map_err(|source| DumpError::Stat {
                path: ns.clone(),
                source,
            })?;
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
                DumpError::unsupported(format!("join the cgroup namespace of pid {root}: {e}"))
            })?;
            Ok(crate::proc::cgroup::read(&root.to_string(), None)?)
        })
        .join()
        .map_err(|_| DumpError::unsupported("the cgroup namespace reader panicked"))?
    })?;
    let mut roots = Vec::new();
    for (c, full) in kept.iter().zip(full) {
        let seen = (inside.iter().find(|m| m.controllers == *c))
            .map(|m| m.path.as_str())
            .unwrap_or("/");
        roots.push(ns_root_of(full, seen).ok_or_else(|| {
            DumpError::unsupported(format!(
                "pid {root}'s cgroup {full} of {c:?} does not end with {seen}, its path \
                 inside its cgroup namespace (it moved outside the namespace's root)"
            ))
        })?);
    }
    Ok(roots)
}

/// `/a/b/c` seen as `/b/c` from inside → `/a`; seen as `/` → `/a/b/c`.
fn ns_root_of(full: &str, inside: &str) -> Option<String> {
    if inside == "/" {
        return Some(full.to_string());
    }
    let root = full.strip_suffix(inside)?;
    Some(if root.is_empty() {
        "/".into()
    } else {
        root.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_roots() {
        assert_eq!(ns_root_of("/a/b/c", "/b/c").as_deref(), Some("/a"));
        assert_eq!(ns_root_of("/test", "/").as_deref(), Some("/test"));
        assert_eq!(ns_root_of("/x", "/x").as_deref(), Some("/"));
        assert_eq!(ns_root_of("/x", "/y"), None);
    }

    #[test]
    fn tops_leave_out_nested_cgroups() {
        let (a, ab, c) = ("/a".to_string(), "/a/b".to_string(), "/c".to_string());
        let got = tops("name=x", &[&ab, &a, &c, &a], &CgroupDumpOptions::default()).unwrap();
        assert_eq!(got, vec!["/a".to_string(), "/c".to_string()]);
        let opts = CgroupDumpOptions {
            roots: vec![(Some("name=x".into()), "/a".into())],
            ..Default::default()
        };
        assert_eq!(
            tops("name=x", &[&ab], &opts).unwrap(),
            vec!["/a".to_string()]
        );
        assert!(tops("name=x", &[&c], &opts).is_err());
    }

    #[test]
    fn threads_are_read_alone_under_v1_and_in_threaded_or_root_v2_cgroups() {
        let m = |c: &str, p: &str| Membership {
            controllers: c.into(),
            path: p.into(),
        };
        let mut unified = None;
        let v1 = [m("cpu", "/"), m("", "/")];
        assert!(threads_may_differ(&v1, &mut unified, None).unwrap());
        assert!(unified.is_none(), "v1 needs no cgroup2 mount");
        // A yard whose unified directory is this test's: a domain, a threaded cgroup,
        // and the root (no cgroup.type), which can be a threaded subtree's domain.
        let yard = std::env::temp_dir().join(format!("stasis-cg-yard-{}", std::process::id()));
        for (dir, kind) in [
            ("dom", Some("domain")),
            ("thr", Some("threaded")),
            ("", None),
        ] {
            let d = yard.join("unified").join(dir);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(kind) = kind {
                std::fs::write(d.join("cgroup.type"), format!("{kind}\n")).unwrap();
            }
        }
        let mut unified = None;
        let differ = |p: &str, u: &mut _| threads_may_differ(&[m("", p)], u, Some(&yard));
        assert!(!differ("/dom", &mut unified).unwrap());
        assert!(differ("/thr", &mut unified).unwrap());
        assert!(differ("/", &mut unified).unwrap());
        std::fs::remove_dir_all(&yard).unwrap();
    }
}
