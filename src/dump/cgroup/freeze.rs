//! `--freeze-cgroup PATH`: the cgroup freezer stops every task of a fork-heavy tree at
//! once (cgroup v2 `cgroup.freeze`, v1 `freezer.state`), so the ptrace freeze need not
//! chase forks. Every task of the cgroup is seized and asked to stop while frozen; on
//! thaw each traps into our interrupt before running a single user instruction.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::DumpError;

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A frozen cgroup; dropping it thaws the cgroup.
pub struct Frozen {
    path: PathBuf,
    version: Version,
    thawed: bool,
}

/// Freezes the cgroup at `path` and waits until the kernel reports it frozen.
pub fn freeze(path: &Path) -> Result<Frozen, DumpError> {
    let version = if path.join("cgroup.freeze").exists() {
        Version::V2
    } else if path.join("freezer.state").exists() {
        Version::V1
    } else {
        return Err(DumpError::unsupported(format!(
            "{} is not a cgroup with a freezer (no cgroup.freeze nor freezer.state)",
            path.display()
        )));
    };
    let cg = Frozen {
        path: path.to_path_buf(),
        version,
        thawed: false,
    };
    cg.set(true)?;
    let since = Instant::now();
    while !cg.is_frozen()? {
        if since.elapsed() > FREEZE_TIMEOUT {
            return Err(DumpError::unsupported(format!(
                "cgroup {} did not freeze within {FREEZE_TIMEOUT:?}",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(cg)
}

impl Frozen {
    /// Every thread of every process in the cgroup.
    pub fn tids(&self) -> Result<Vec<i32>, DumpError> {
        let file = match self.version {
            Version::V2 => "cgroup.threads",
            Version::V1 => "tasks",
        };
        Ok(self
            .read(file)?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// Lets the cgroup run again.
    pub fn thaw(mut self) -> Result<(), DumpError> {
        self.thawed = true;
        self.set(false)
    }

    fn set(&self, frozen: bool) -> Result<(), DumpError> {
        let (file, value) = match (self.version, frozen) {
            (Version::V2, f) => ("cgroup.freeze", if f { "1" } else { "0" }),
            (Version::V1, true) => ("freezer.state", "FROZEN"),
            (Version::V1, false) => ("freezer.state", "THAWED"),
        };
        let path = self.path.join(file);
        std::fs::write(&path, value).map_err(|source| DumpError::Stat {
            path: path.display().to_string(),
            source,
        })
    }

    fn is_frozen(&self) -> Result<bool, DumpError> {
        Ok(match self.version {
            Version::V2 => self.read("cgroup.events")?.lines().any(|l| l == "frozen 1"),
            Version::V1 => self.read("freezer.state")?.trim() == "FROZEN",
        })
    }

    fn read(&self, file: &str) -> Result<String, DumpError> {
        let path = self.path.join(file);
        std::fs::read_to_string(&path).map_err(|source| DumpError::Stat {
            path: path.display().to_string(),
            source,
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = self.set(false);
        }
    }
}

/// Refuses a process whose cgroup is frozen (cgroup2 `cgroup.events` says `frozen 1`,
/// a v1 `freezer.state` is not `THAWED`): no ptrace stop interrupts a frozen task, so
/// freezing it would wait forever. `--freeze-cgroup` thaws its cgroup once every task is
/// seized. Hierarchies not mounted whole in stasis's mount namespace are not checked.
pub fn refuse_frozen(pid: i32) -> Result<(), DumpError> {
    let Ok(theirs) = crate::proc::cgroup::read(&pid.to_string(), None) else {
        return Ok(());
    };
    static OURS: std::sync::OnceLock<Vec<crate::proc::cgroup::Membership>> =
        std::sync::OnceLock::new();
    let ours = OURS.get_or_init(|| crate::proc::cgroup::read("self", None).unwrap_or_default());
    for m in &theirs {
        // stasis runs: a cgroup it is in is not frozen (the common case, which spares
        // reading the mount table).
        if ours.contains(m) {
            continue;
        }
        let (fstype, option, file) = if m.controllers.is_empty() {
            ("cgroup2", "", "cgroup.events")
        } else if m.controllers.split(',').any(|c| c == "freezer") {
            ("cgroup", "freezer", "freezer.state")
        } else {
            continue;
        };
        let Some(mount) = mount_of(fstype, option) else {
            continue;
        };
        let at = mount.join(m.path.trim_start_matches('/')).join(file);
        let text = std::fs::read_to_string(&at).unwrap_or_default();
        let frozen = match file {
            "cgroup.events" => text.lines().any(|l| l == "frozen 1"),
            _ => !text.trim().is_empty() && text.trim() != "THAWED",
        };
        if frozen {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is frozen by its cgroup ({}); stasis cannot seize a frozen \
                 task: thaw the cgroup, or give it to --freeze-cgroup",
                at.display()
            )));
        }
    }
    Ok(())
}

/// Where a hierarchy is mounted whole (root `/`) in stasis's mount namespace: cgroup2,
/// or the v1 hierarchy with mount option `option`; read once.
fn mount_of(fstype: &str, option: &str) -> Option<PathBuf> {
    static MOUNTS: std::sync::OnceLock<Vec<(String, String, PathBuf)>> = std::sync::OnceLock::new();
    let mounts = MOUNTS.get_or_init(|| {
        let text = crate::proc::read_listing(std::path::Path::new("/proc/self/mountinfo"))
            .unwrap_or_default();
        (text.lines())
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                (f.get(3) == Some(&"/")).then_some(())?;
                Some((
                    r.first()?.to_string(),
                    r.get(2)?.to_string(),
                    PathBuf::from(f.get(4)?),
                ))
            })
            .collect()
    });
    (mounts.iter())
        .find(|(t, opts, _)| {
            t == fstype && (option.is_empty() || opts.split(',').any(|o| o == option))
        })
        .map(|(_, _, at)| at.clone())
}
