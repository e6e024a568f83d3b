//! Cgroup hierarchies as files, for the dump and the restore of the tree's cgroups
//! (`dump/cgroup/`, `restore/cgroup/`): reaching each hierarchy (a private mount of it
//! in a temporary directory, or a directory of `--cgroup-yard` where the caller mounted
//! them), the files of a cgroup worth saving and in which order they are written back,
//! and reading, writing and owning those files. It does not decide what is saved or
//! restored.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::image::cgroup::Perms;

/// A failing cgroup operation, naming the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "mount the cgroup hierarchy {controllers:?} at {path} (is that controller available here?)"
    )]
    Mount {
        controllers: String,
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("open the cgroup hierarchy {controllers:?} in the yard {path}")]
    Yard {
        controllers: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write {value:?} to {path}")]
    Write {
        path: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("create cgroup {path}")]
    Mkdir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("set owner and mode of {path}")]
    Perms {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Refused { what: String },
}

/// The settings saved per cgroup, in the order they are restored: a cgroup's type and
/// the values a task needs to be let in (cpuset) first, the controllers it hands down
/// last. Files a kernel lacks are skipped. (CRIU's default list for v1, the v2 files
/// that limit a workload.)
pub const PROPS: &[&str] = &[
    // v2 core
    "cgroup.type",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    // v1 core
    "cgroup.clone_children",
    "notify_on_release",
    // cpuset (v1 and v2)
    "cpuset.cpus",
    "cpuset.mems",
    "cpuset.cpus.partition",
    "cpuset.memory_migrate",
    "cpuset.cpu_exclusive",
    "cpuset.mem_exclusive",
    "cpuset.mem_hardwall",
    "cpuset.memory_spread_page",
    "cpuset.memory_spread_slab",
    "cpuset.sched_load_balance",
    "cpuset.sched_relax_domain_level",
    // memory v1
    "memory.use_hierarchy",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.swappiness",
    "memory.soft_limit_in_bytes",
    "memory.move_charge_at_immigrate",
    "memory.oom_control",
    // memory v2
    "memory.min",
    "memory.low",
    "memory.high",
    "memory.max",
    "memory.swap.max",
    "memory.oom.group",
    // cpu v1
    "cpu.shares",
    "cpu.cfs_period_us",
    "cpu.cfs_quota_us",
    "cpu.rt_period_us",
    "cpu.rt_runtime_us",
    // cpu v2 (cpu.weight.nice is another view of cpu.weight)
    "cpu.max",
    "cpu.weight",
    "cpu.idle",
    // io, blkio, pids, net, devices
    "io.weight",
    "io.max",
    "blkio.weight",
    "pids.max",
    "net_cls.classid",
    "net_prio.ifpriomap",
    "devices.list",
    // handed down to the children (v2): after the cgroup's own settings
    "cgroup.subtree_control",
];

/// Files whose owner and mode only are restored.
pub const PERMS_ONLY: &[&str] = &["cgroup.procs", "tasks", "cgroup.threads"];

/// Freezer state: applied once the tree has been let go.
pub const FREEZE: &[&str] = &["cgroup.freeze", "freezer.state"];

/// One hierarchy reachable as a directory; a private mount is undone on drop.
pub struct Hierarchy {
    pub controllers: String,
    pub root: PathBuf,
    mounted: bool,
}

impl Hierarchy {
    /// The hierarchy named `controllers` (`cpu,cpuacct`, `name=x`, empty for v2): in
    /// `yard` if given (its directory named as CRIU names it: `x` for `name=x`, `unified`
    /// for v2), else mounted privately in a new temporary directory.
    pub fn open(controllers: &str, yard: Option<&Path>) -> Result<Self, CgroupError> {
        if let Some(yard) = yard {
            let name = controllers.strip_prefix("name=").unwrap_or(controllers);
            let root = yard.join(if name.is_empty() { "unified" } else { name });
            std::fs::read_dir(&root).map_err(|source| CgroupError::Yard {
                controllers: controllers.into(),
                path: root.display().to_string(),
                source,
            })?;
            return Ok(Self {
                controllers: controllers.into(),
                root,
                mounted: false,
            });
        }
        let root = temp_dir()?;
        let (fstype, opts) = if controllers.is_empty() {
            ("cgroup2", String::new())
        } else if controllers.starts_with("name=") {
            ("cgroup", format!("none,{controllers}"))
        } else {
            ("cgroup", controllers.to_string())
        };
        let opts = (!opts.is_empty()).then_some(opts.as_str());
        if let Err(source) = mount(Some("none"), &root, Some(fstype), MsFlags::empty(), opts) {
            let _ = std::fs::remove_dir(&root);
            return Err(CgroupError::Mount {
                controllers: controllers.into(),
                path: root.display().to_string(),
                source,
            });
        }
        Ok(Self {
            controllers: controllers.into(),
            root,
            mounted: true,
        })
    }

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    /// The directory of cgroup `path` (absolute inside the hierarchy).
    pub fn dir(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

impl Drop for Hierarchy {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.root, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

fn temp_dir() -> Result<PathBuf, CgroupError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(".stasis-cgroup-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(CgroupError::Mkdir {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// Contents of a cgroup file, without the trailing newline.
pub fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|source| CgroupError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Writes `value` to a cgroup file in one write.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write;
    let fail = |source| CgroupError::Write {
        path: path.display().to_string(),
        value: value.to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(fail)?;
    f.write_all(value.as_bytes()).map_err(fail)
}

/// Owner and permission bits of `path`.
pub fn perms(path: &Path) -> Result<Perms, CgroupError> {
    let m = std::fs::metadata(path).map_err(|source| CgroupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Perms {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// Gives `path` the saved owner and mode, where they differ.
pub fn set_perms(path: &Path, want: &Perms) -> Result<(), CgroupError> {
    let have = perms(path)?;
    if have == *want {
        return Ok(());
    }
    let fail = |source| CgroupError::Perms {
        path: path.display().to_string(),
        source,
    };
    std::os::unix::fs::chown(path, Some(want.uid), Some(want.gid)).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(want.mode)).map_err(fail)
}
