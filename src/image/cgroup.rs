//! The cgroup record (`cgroup.img`, format 10): the hierarchies the tree's tasks lived in,
//! the directories recorded in each (every cgroup of a task and the cgroups below it, as
//! CRIU records them) with their permissions and the controller settings that matter for
//! a restored workload, each thread's cgroup in every hierarchy, and the roots of the
//! tree's cgroup namespace. Absent when every task was in the dumper's own cgroups (the
//! restored tree then stays in the restorer's, as CRIU does).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file.
pub const CGROUP: &str = "cgroup.img";

/// `cgroup.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupImage {
    pub hierarchies: Vec<Hierarchy>,
    /// Every thread of every live process, leaders first in tree order.
    pub tasks: Vec<TaskCgroups>,
    /// The tree's cgroup namespace, when it had one of its own (the root's differed
    /// from the dumper's): its root in each hierarchy, as `hierarchies` are ordered.
    pub ns_roots: Option<Vec<String>>,
}

/// One cgroup hierarchy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// As `/proc/PID/cgroup` names it: `cpu,cpuacct`, `name=zdtmtst`, or empty for the
    /// unified (v2) hierarchy.
    pub controllers: String,
    /// The walked tops (absolute paths inside the hierarchy): each recorded directory is
    /// one of them or below one; `--cgroup-root` at restore replaces a top.
    pub tops: Vec<String>,
    /// The directories recorded, parents before their children.
    pub dirs: Vec<CgroupDir>,
}

/// One cgroup directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// Absolute path inside the hierarchy (`/a/b`).
    pub path: String,
    pub perms: Perms,
    /// Settings and per-file permissions, in the order they are restored.
    pub props: Vec<Prop>,
}

/// Owner and permission bits of a cgroup directory or file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perms {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One file of a cgroup directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prop {
    /// File name (`memory.max`, `cgroup.procs`...).
    pub name: String,
    /// Its contents as read (trailing newline removed), or None for a file whose
    /// permissions only are restored (`cgroup.procs`, `tasks`).
    pub value: Option<String>,
    pub perms: Perms,
}

/// One thread's cgroups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroups {
    pub pid: i32,
    pub tid: i32,
    /// Its cgroup in each hierarchy, as `hierarchies` are ordered.
    pub paths: Vec<String>,
}

impl CgroupImage {
    pub fn is_empty(&self) -> bool {
        self.hierarchies.is_empty()
    }

    /// The cgroups of `tid`.
    pub fn task(&self, tid: i32) -> Option<&TaskCgroups> {
        self.tasks.iter().find(|t| t.tid == tid)
    }
}

/// Impossible values: paths not absolute or with `..`, a task or namespace root
/// without a path per hierarchy, a directory outside every top, a parent after its
/// child.
pub fn validate(cg: &CgroupImage, path: &Path) -> Result<(), ImageError> {
    let bad = |what: String| ImageError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    let n = cg.hierarchies.len();
    let sane = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..");
    for h in &cg.hierarchies {
        for (i, d) in h.dirs.iter().enumerate() {
            if !sane(&d.path) || !h.tops.iter().any(|t| under(&d.path, t)) {
                return Err(bad(format!(
                    "cgroup dir {} outside its hierarchy's tops",
                    d.path
                )));
            }
            let parent = parent_of(&d.path);
            if h.dirs[i..].iter().any(|o| Some(o.path.as_str()) == parent) {
                return Err(bad(format!("cgroup dir {} before its parent", d.path)));
            }
            if d.props
                .iter()
                .any(|p| p.name.contains('/') || p.name.is_empty())
            {
                return Err(bad(format!("cgroup dir {} has a bad file name", d.path)));
            }
        }
    }
    let lists = cg.tasks.iter().map(|t| &t.paths).chain(cg.ns_roots.iter());
    for paths in lists {
        if paths.len() != n || !paths.iter().all(|p| sane(p)) {
            return Err(bad(format!(
                "cgroup paths {paths:?} do not match the {n} hierarchies"
            )));
        }
    }
    Ok(())
}

/// Whether `path` is `top` or below it.
pub fn under(path: &str, top: &str) -> bool {
    let top = top.trim_end_matches('/');
    path == top || path.strip_prefix(top).is_some_and(|r| r.starts_with('/')) || top.is_empty()
}

/// `/a/b` → `/a`, `/a` → `/`, `/` → None.
pub fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let cut = path.rfind('/')?;
    Some(if cut == 0 { "/" } else { &path[..cut] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CgroupImage {
        let dir = |p: &str| CgroupDir {
            path: p.into(),
            ..Default::default()
        };
        CgroupImage {
            hierarchies: vec![Hierarchy {
                controllers: "name=x".into(),
                tops: vec!["/a".into()],
                dirs: vec![dir("/a"), dir("/a/b")],
            }],
            tasks: vec![TaskCgroups {
                pid: 5,
                tid: 5,
                paths: vec!["/a/b".into()],
            }],
            ns_roots: None,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let cg = sample();
        let bytes = super::super::file::encode(super::super::file::Kind::Cgroup, &cg).unwrap();
        let back: CgroupImage =
            super::super::file::decode(super::super::file::Kind::Cgroup, &bytes, Path::new("c"))
                .unwrap();
        assert_eq!(back, cg);
        assert!(validate(&cg, Path::new("c")).is_ok());
        let mut wrong = cg.clone();
        wrong.hierarchies[0].dirs.reverse();
        assert!(validate(&wrong, Path::new("c")).is_err());
        let mut wrong = cg.clone();
        wrong.tasks[0].paths.clear();
        assert!(validate(&wrong, Path::new("c")).is_err());
        let mut wrong = cg;
        wrong.hierarchies[0].dirs[1].path = "/c".into();
        assert!(validate(&wrong, Path::new("c")).is_err());
    }

    #[test]
    fn paths() {
        assert!(under("/a/b", "/a"));
        assert!(under("/a", "/a"));
        assert!(!under("/ab", "/a"));
        assert!(under("/x", "/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/"), None);
    }
}
