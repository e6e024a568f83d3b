//! Mount namespaces made inside the tree: a process that left its parent's mount
//! namespace (`unshare(CLONE_NEWNS)`, `clone(CLONE_NEWNS)`) has its namespace saved in
//! `mntns.img` with its mounts judged against its parent's namespace (the one the restore
//! copies it from: `How::Host` is a mount the parent's namespace has at the same place,
//! `How::HostBind` a directory of a superblock the parent's namespace has mounted), and
//! each tmpfs only it has in `mntns-tmpfs-<id>.img`. Peer groups and masters are kept as
//! the dump's numbers, shared with the tree's other namespaces.
//!
//! A process in the namespace of an ancestor other than its parent's (it stayed in it
//! while its parent left, or went back with `setns`) is saved in `mntns-join.img`.
//!
//! Refused, naming the pid, the namespace and the mount: a process in a namespace it did
//! not make and no ancestor of it is in (a sibling's, entered with `setns`), a mount stasis cannot make
//! again, and propagation reaching outside the tree's namespaces. The restore side is
//! `restore/mnt/nested.rs`.

use std::collections::HashMap;

use super::{deleted, ns_of, read_mountinfo, tmpfs, tree, DumpError};
use crate::image::mnt::{
    Elsewhere, How, Join, JoinsImage, Mount, MountsImage, NestedImage, NestedNs, JOINS, NESTED,
};
use crate::image::tree::TreeImage;
use crate::image::{ImageWriter, Kind};
use crate::proc::mountinfo::MountInfo;

/// The namespaces made inside the tree, checked (the tree is frozen).
#[derive(Default)]
pub struct Nested {
    image: NestedImage,
    /// The processes in an ancestor's namespace other than their parent's.
    joins: JoinsImage,
}

/// Every mount namespace a live process of the tree made, in tree order. `root_mounts`:
/// the root's own namespace when it has one (its peer groups may lead nested mounts).
pub fn plan(
    tree: &TreeImage,
    live: &[i32],
    root_mounts: Option<&MountsImage>,
) -> Result<Nested, DumpError> {
    let root = tree.processes.first().map_or(0, |e| e.pid);
    let mut ns_by_pid: HashMap<i32, u64> = HashMap::new();
    let mut made: Vec<(u64, NestedNs)> = Vec::new();
    let mut joins = Vec::new();
    let ppid: HashMap<i32, i32> = tree.processes.iter().map(|e| (e.pid, e.ppid)).collect();
    for e in tree.processes.iter().filter(|e| live.contains(&e.pid)) {
        let ns = ns_of(&e.pid.to_string())?;
        ns_by_pid.insert(e.pid, ns);
        let Some(&parent_ns) = ns_by_pid.get(&e.ppid).filter(|_| e.pid != root) else {
            continue;
        };
        if ns == parent_ns {
            continue;
        }
        let root_ns = ns_by_pid[&root];
        if ns == root_ns || made.iter().any(|(n, _)| *n == ns) {
            let Some(of) = ancestor_in(e.pid, ns, &ppid, &ns_by_pid) else {
                return Err(DumpError::unsupported(format!(
                    "pid {} is in mount namespace mnt:[{ns}], which it did not make and no \
                     ancestor of it is in (its parent {} is in mnt:[{parent_ns}]); stasis \
                     rebuilds a nested mount namespace only for the process that made it, its \
                     descendants and those that went back to an ancestor's",
                    e.pid, e.ppid
                )));
            };
            joins.push(Join { pid: e.pid, of });
            continue;
        }
        let known = known_groups(root_mounts, &made);
        let mounts = judge(e.pid, e.ppid, ns, &known)?;
        made.push((ns, NestedNs { pid: e.pid, mounts }));
    }
    let elsewhere = match made.is_empty() {
        true => Vec::new(),
        false => fds_elsewhere(root, &ns_by_pid, &made)?,
    };
    *ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner()) = elsewhere.clone();
    Ok(Nested {
        image: NestedImage {
            namespaces: made.into_iter().map(|(_, n)| n).collect(),
            elsewhere,
        },
        joins: JoinsImage { joins },
    })
}

/// The fds of the dump in progress open on a mount of another of the tree's namespaces
/// than their process's (set by [`plan`], before the files are dumped).
static ELSEWHERE: std::sync::Mutex<Vec<Elsewhere>> = std::sync::Mutex::new(Vec::new());

/// The process of the tree's namespace fd `fd` of `pid` is open in, if that is another
/// than the process's own: its path is checked there (`/proc/NS_PID/root`).
pub fn opened_elsewhere(pid: i32, fd: i32) -> Option<i32> {
    let all = ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .find(|e| e.pid == pid && e.fd == fd)
        .map(|e| e.ns_pid)
}

/// Where stasis reaches `path`, the link of fd `fd` of `pid`: in the namespace it was
/// opened in ([`opened_elsewhere`]), else in its process's.
pub fn reach_fd(pid: i32, fd: i32, path: &str) -> std::path::PathBuf {
    match opened_elsewhere(pid, fd) {
        Some(ns_pid) => format!("/proc/{ns_pid}/root{path}").into(),
        None => super::reach(pid, path),
    }
}

/// Forgets the fds of the last dump.
pub fn forget() {
    ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The nearest ancestor of `pid` in mount namespace `ns` (its namespace exists when
/// `pid` is restored: ancestors are restored first).
fn ancestor_in(
    pid: i32,
    ns: u64,
    ppid: &HashMap<i32, i32>,
    ns_by_pid: &HashMap<i32, u64>,
) -> Option<i32> {
    let mut cur = *ppid.get(&pid)?;
    loop {
        if ns_by_pid.get(&cur) == Some(&ns) {
            return Some(cur);
        }
        cur = *ppid.get(&cur).filter(|&&p| p != cur)?;
    }
}

/// The fds (by path) of every live process open on a mount of another of the tree's
/// namespaces than the process's own. Fds on mounts no namespace lists (pipes, sockets,
/// memfds) are not paths and are left to their own dump.
fn fds_elsewhere(
    root: i32,
    ns_by_pid: &HashMap<i32, u64>,
    made: &[(u64, NestedNs)],
) -> Result<Vec<Elsewhere>, DumpError> {
    let makers = made.iter().map(|(ns, n)| (*ns, n.pid));
    let mut ids: Vec<(i32, Vec<u32>)> = Vec::new();
    for (_, pid) in std::iter::once((0, root)).chain(makers) {
        ids.push((pid, read_mountinfo(pid)?.iter().map(|m| m.id).collect()));
    }
    let ns_pid = |ns: u64| {
        made.iter()
            .find(|(n, _)| *n == ns)
            .map_or(root, |(_, m)| m.pid)
    };
    let mut out = Vec::new();
    for (&pid, &ns) in ns_by_pid {
        let own = ns_pid(ns);
        for (fd, mnt_id) in path_fds(pid)? {
            let holds = |(_, ids): &&(i32, Vec<u32>)| ids.contains(&mnt_id);
            if let Some((at, _)) = ids.iter().filter(|(p, _)| *p != own).find(holds) {
                out.push(Elsewhere {
                    pid,
                    fd,
                    ns_pid: *at,
                });
            }
        }
    }
    out.sort_by_key(|e| (e.pid, e.fd));
    Ok(out)
}

/// Each fd of `pid` whose link is a path, with the mount it is open on (`mnt_id`).
fn path_fds(pid: i32) -> Result<Vec<(i32, u32)>, DumpError> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|source| DumpError::Stat {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let is_path = std::fs::read_link(e.path()).is_ok_and(|l| l.is_absolute());
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"));
        let mnt_id = info.ok().and_then(|t| {
            (t.lines().find_map(|l| l.strip_prefix("mnt_id:"))).and_then(|v| v.trim().parse().ok())
        });
        if let Some(mnt_id) = mnt_id.filter(|_| is_path) {
            out.push((fd, mnt_id));
        }
    }
    Ok(out)
}

/// The peer groups led by mounts of the namespaces made before.
fn known_groups(root: Option<&MountsImage>, made: &[(u64, NestedNs)]) -> Vec<u32> {
    let nested = made.iter().map(|(_, n)| &n.mounts);
    (root.into_iter().chain(nested))
        .flat_map(|m| m.mounts.iter().filter_map(|m| m.shared))
        .collect()
}

/// The mounts of `pid`'s namespace, with how each is made in a copy of its parent's.
fn judge(pid: i32, ppid: i32, ns: u64, known: &[u32]) -> Result<MountsImage, DumpError> {
    let at = |e: DumpError| {
        DumpError::unsupported(format!("pid {pid}'s mount namespace mnt:[{ns}]: {e}"))
    };
    let theirs = read_mountinfo(pid)?;
    let parent = read_mountinfo(ppid)?;
    let mut mounts = tree::classify_nested(&theirs, &parent).map_err(at)?;
    deleted::read(pid, &mut mounts, true)?;
    if let Some(m) = mounts.iter().find(|m| m.how == How::Root { hint: None }) {
        return Err(at(DumpError::unsupported(format!(
            "its root mount {} ({} {}) shows a directory its parent's namespace has not mounted",
            m.id, m.fstype, m.source
        ))));
    }
    let mine = read_mountinfo(std::process::id() as i32)?;
    check_propagation(&mounts, &mine, known).map_err(at)?;
    Ok(MountsImage { mounts })
}

/// Peer groups shared with stasis's mounts, and masters led by no mount of the tree's
/// namespaces made so far (this one included), cannot be rebuilt.
fn check_propagation(mounts: &[Mount], mine: &[MountInfo], known: &[u32]) -> Result<(), DumpError> {
    let led = |g: u32| known.contains(&g) || mounts.iter().any(|m| m.shared == Some(g));
    for m in mounts {
        let bad = match (m.shared, m.master) {
            (Some(g), _) if mine.iter().any(|h| h.shared == Some(g)) => {
                format!("shares peer group {g} with mounts of stasis's namespace")
            }
            (_, Some(g)) if !led(g) => {
                format!("is a slave of peer group {g}, which no mount of the tree leads")
            }
            _ => continue,
        };
        return Err(DumpError::unsupported(format!(
            "mount {} at {} (type {}, source {}) {bad}, which stasis cannot rebuild",
            m.id, m.mountpoint, m.fstype, m.source
        )));
    }
    Ok(())
}

impl Nested {
    /// Writes `mntns.img` and each tmpfs only a nested namespace has (the tree is
    /// frozen: they hold still); nothing for a tree without nested namespaces.
    pub fn save(&self, writer: &ImageWriter) -> Result<(), DumpError> {
        if !self.joins.joins.is_empty() {
            writer.write_record(JOINS, Kind::MntJoins, &self.joins)?;
        }
        if self.image.namespaces.is_empty() {
            return Ok(());
        }
        for ns in &self.image.namespaces {
            let all = &ns.mounts.mounts;
            for m in all.iter().filter(|m| m.how == How::Tmpfs) {
                let contents = tmpfs::read(ns.pid, m, all)?;
                let name = crate::image::mnt::nested_tmpfs_name(m.id);
                writer.write_record(&name, Kind::NestedTmpfs, &contents)?;
            }
        }
        writer.write_record(NESTED, Kind::NestedMounts, &self.image)?;
        Ok(())
    }
}
