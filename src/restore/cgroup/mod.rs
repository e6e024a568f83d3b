//! The tree's cgroups (`cgroup.img`, saved by `dump/cgroup/`), put back as CRIU's
//! `--manage-cgroups` modes say: `none` (cgroups must exist, nothing set), `props`
//! (must exist, settings restored), `soft` (the default: created if missing, settings
//! restored only in those created), `full` (created if missing, settings always
//! restored), `strict` (every recorded cgroup must be missing and is created), `ignore`
//! (the tree stays in the restorer's cgroups). `--cgroup-root [CONTROLLER:]PATH` moves a
//! recorded top (and what is below it) to PATH.
//!
//! Ordering requirements: [`prepare`] runs before any process is created (it checks
//! that the cgroups can hold the tree, `check.rs`, then creates them); each process is
//! moved into its cgroups right after it is created ([`Placed::move_process`], so its
//! memory is charged there; its children are forked there), threads with a cgroup of
//! their own once they exist ([`Placed::move_threads`]), and frozen cgroups are frozen
//! once the tree runs ([`Placed::freeze`]). The root of a tree with its own cgroup
//! namespace is cloned inside [`Placed::enter_ns`].

mod check;
mod props;

use std::path::PathBuf;

use crate::cgroupfs::{self, CgroupError, Hierarchy, FREEZE};
use crate::image::cgroup::{under, CgroupImage};
use crate::image::Image;

use super::RestoreError;

/// CRIU's `--manage-cgroups` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    None,
    Props,
    #[default]
    Soft,
    Full,
    Strict,
    Ignore,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "none" => Self::None,
            "props" => Self::Props,
            "soft" => Self::Soft,
            "full" => Self::Full,
            "strict" => Self::Strict,
            "ignore" => Self::Ignore,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Props => "props",
            Self::Soft => "soft",
            Self::Full => "full",
            Self::Strict => "strict",
            Self::Ignore => "ignore",
        }
    }

    /// Whether a recorded cgroup that exists already gets its settings.
    fn sets_existing(self) -> bool {
        matches!(self, Self::Props | Self::Full)
    }

    /// Whether missing cgroups may be created.
    fn creates(self) -> bool {
        !matches!(self, Self::None | Self::Props)
    }
}

/// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard` at restore.
#[derive(Clone, Debug, Default)]
pub struct CgroupRestoreOptions {
    pub mode: Mode,
    /// (controller or None for every other hierarchy, new path of the recorded top).
    pub roots: Vec<(Option<String>, String)>,
    pub yard: Option<PathBuf>,
}

/// The record with every path moved by `--cgroup-root`, and the hierarchies opened.
pub struct Placed {
    image: CgroupImage,
    hierarchies: Vec<Hierarchy>,
    /// Cgroups to freeze once the tree runs: (hierarchy, path, file, value).
    freeze: Vec<(usize, String, &'static str, String)>,
}

/// Checks that the recorded cgroups can hold the tree and makes them as `opts.mode`
/// says. None when there is nothing to do (no record, or `ignore`).
pub fn prepare(image: &Image, opts: &CgroupRestoreOptions) -> Result<Option<Placed>, RestoreError> {
    if opts.mode == Mode::Ignore || image.cgroup.is_empty() {
        return Ok(None);
    }
    let mut cg = image.cgroup.clone();
    rewrite_roots(&mut cg, &opts.roots);
    let hierarchies = (cg.hierarchies.iter())
        .map(|h| Hierarchy::open(&h.controllers, opts.yard.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    check::existence(&cg, &hierarchies, opts.mode)?;
    check::capacity(&cg, &hierarchies, opts.mode, image)?;
    let mut freeze = Vec::new();
    for (i, (h, open)) in cg.hierarchies.iter().zip(&hierarchies).enumerate() {
        for d in &h.dirs {
            let dir = open.dir(&d.path);
            let created = !dir.is_dir();
            if created {
                mkdir(&dir)?;
            }
            if opts.mode != Mode::None {
                cgroupfs::set_perms(&dir, &d.perms)?;
            }
            if created || opts.mode.sets_existing() {
                props::apply(&dir, &d.props, opts.mode != Mode::None)?;
            }
            for p in d.props.iter().filter(|p| FREEZE.contains(&p.name.as_str())) {
                let name = FREEZE.iter().find(|f| **f == p.name).expect("filtered");
                let value = p.value.clone().unwrap_or_default();
                if value == "1" || value == "FROZEN" {
                    freeze.push((i, d.path.clone(), *name, value));
                }
            }
        }
    }
    let targets = cg.tasks.iter().flat_map(|t| t.paths.iter().enumerate());
    for (i, path) in targets.chain(cg.ns_roots.iter().flat_map(|r| r.iter().enumerate())) {
        let dir = hierarchies[i].dir(path);
        if !dir.is_dir() {
            mkdir(&dir)?;
        }
    }
    Ok(Some(Placed {
        image: cg,
        hierarchies,
        freeze,
    }))
}

/// Whether a v2 cgroup is threaded (a root has no `cgroup.type`: it is not).
fn threaded(dir: &std::path::Path) -> bool {
    cgroupfs::read(&dir.join("cgroup.type")).is_ok_and(|t| t == "threaded")
}

fn mkdir(dir: &std::path::Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(dir).map_err(|source| CgroupError::Mkdir {
        path: dir.display().to_string(),
        source,
    })
}

/// Moves each recorded top given a new place by `--cgroup-root` there, with every
/// directory, task path and namespace root below it.
fn rewrite_roots(cg: &mut CgroupImage, roots: &[(Option<String>, String)]) {
    for (i, h) in cg.hierarchies.iter_mut().enumerate() {
        let mine = |(k, _): &&(Option<String>, String)| {
            k.as_deref()
                .is_some_and(|k| h.controllers.split(',').any(|c| c == k) || h.controllers == k)
        };
        let Some((_, new)) = roots
            .iter()
            .find(mine)
            .or_else(|| roots.iter().find(|(k, _)| k.is_none()))
        else {
            continue;
        };
        let new = format!("/{}", new.trim_matches('/'));
        let tops = std::mem::take(&mut h.tops);
        let moved = |p: &str| -> String {
            match tops.iter().filter(|t| under(p, t)).max_by_key(|t| t.len()) {
                Some(t) => join(&new, &p[t.trim_end_matches('/').len()..]),
                None => p.to_string(),
            }
        };
        for d in &mut h.dirs {
            d.path = moved(&d.path);
        }
        for t in &mut cg.tasks {
            t.paths[i] = moved(&t.paths[i]);
        }
        if let Some(r) = cg.ns_roots.as_mut() {
            r[i] = moved(&r[i]);
        }
        h.tops = tops.iter().map(|t| moved(t)).collect();
    }
}

fn join(top: &str, rest: &str) -> String {
    match (top, rest) {
        (t, "") => t.to_string(),
        ("/", r) => r.to_string(),
        (t, r) => format!("{t}{r}"),
    }
}

impl Placed {
    /// Puts process `pid` (all its threads) into its cgroups.
    pub fn move_process(&self, pid: i32) -> Result<(), RestoreError> {
        let Some(t) = self.image.task(pid) else {
            return Ok(());
        };
        for (h, path) in self.hierarchies.iter().zip(&t.paths) {
            let dir = h.dir(path);
            if h.is_v2() && threaded(&dir) {
                // A threaded cgroup takes threads only: the thread moves there later.
                continue;
            }
            cgroupfs::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Puts every thread whose cgroup is not its process's where it was.
    pub fn move_threads(&self) -> Result<(), RestoreError> {
        for t in &self.image.tasks {
            let leader = self.image.task(t.pid).map(|l| &l.paths);
            for (i, (h, path)) in self.hierarchies.iter().zip(&t.paths).enumerate() {
                let threaded = h.is_v2() && threaded(&h.dir(path));
                if !threaded && leader.is_some_and(|l| l[i] == *path) {
                    continue;
                }
                let file = if h.is_v2() { "cgroup.threads" } else { "tasks" };
                cgroupfs::write(&h.dir(path).join(file), &t.tid.to_string())?;
            }
        }
        Ok(())
    }

    /// Freezes the cgroups that were frozen (once the tree runs).
    pub fn freeze(&self) -> Result<(), RestoreError> {
        for (i, path, file, value) in &self.freeze {
            cgroupfs::write(&self.hierarchies[*i].dir(path).join(file), value)?;
        }
        Ok(())
    }

    /// For a tree with a cgroup namespace of its own: stasis moves into the
    /// namespace's root cgroups and enters a new cgroup namespace, there, so that the
    /// root it clones next inherits it; the guard brings stasis back.
    pub fn enter_ns(&self) -> Result<Option<NsGuard>, RestoreError> {
        let Some(roots) = &self.image.ns_roots else {
            return Ok(None);
        };
        let own =
            crate::proc::cgroup::read("self", None).map_err(|e| RestoreError::Unsupported {
                what: e.to_string(),
            })?;
        let me = std::process::id().to_string();
        let saved =
            std::fs::File::open("/proc/self/ns/cgroup").map_err(|source| CgroupError::Read {
                path: "/proc/self/ns/cgroup".into(),
                source,
            })?;
        let mut guard = NsGuard {
            back: Vec::new(),
            saved: Some(saved),
        };
        for (h, root) in self.hierarchies.iter().zip(roots) {
            let mine = own.iter().find(|m| m.controllers == h.controllers);
            let Some(mine) = mine.filter(|m| m.path != *root) else {
                continue;
            };
            cgroupfs::write(&h.dir(root).join("cgroup.procs"), &me)?;
            guard.back.push(h.dir(&mine.path).join("cgroup.procs"));
        }
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
            RestoreError::Unsupported {
                what: format!("unshare a cgroup namespace for the tree's root: {e}"),
            }
        })?;
        Ok(Some(guard))
    }
}

/// Brings stasis back into its cgroups and cgroup namespace.
pub struct NsGuard {
    back: Vec<PathBuf>,
    saved: Option<std::fs::File>,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Some(fd) = self.saved.take() {
            let _ = nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWCGROUP);
        }
        let me = std::process::id().to_string();
        for procs in &self.back {
            let _ = cgroupfs::write(procs, &me);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::cgroup::{CgroupDir, Hierarchy as H, TaskCgroups};

    #[test]
    fn cgroup_root_moves_tops() {
        let dir = |p: &str| CgroupDir {
            path: p.into(),
            ..Default::default()
        };
        let h = |c: &str, top: &str, dirs: &[&str]| H {
            controllers: c.into(),
            tops: vec![top.into()],
            dirs: dirs.iter().map(|d| dir(d)).collect(),
        };
        let mut cg = CgroupImage {
            hierarchies: vec![
                h("name=a", "/prefix", &["/prefix", "/prefix/old"]),
                h("name=b", "/prefix/old", &["/prefix/old"]),
            ],
            tasks: vec![TaskCgroups {
                pid: 1,
                tid: 1,
                paths: vec!["/prefix/old".into(), "/prefix/old".into()],
            }],
            ns_roots: None,
        };
        let roots = vec![
            (None, "/newroot".into()),
            (Some("name=a".into()), "/prefix".into()),
        ];
        rewrite_roots(&mut cg, &roots);
        assert_eq!(cg.hierarchies[0].dirs[1].path, "/prefix/old");
        assert_eq!(cg.hierarchies[1].dirs[0].path, "/newroot");
        assert_eq!(
            cg.tasks[0].paths,
            vec!["/prefix/old".to_string(), "/newroot".into()]
        );
        assert_eq!(Mode::parse("full"), Some(Mode::Full));
        assert_eq!(Mode::parse("x"), None);
    }
}
