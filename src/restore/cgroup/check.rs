//! Whether the host's cgroups can hold the tree, checked before any cgroup or process
//! is made: under `none`/`props` every recorded cgroup exists, under `strict` none
//! does; every v2 controller the settings name is available; and for each cgroup a
//! task goes to, and each of its ancestors, the limits it will have (the saved ones
//! where they are restored, else the host's) hold the tree: `pids.max` its tasks (with
//! those already there), `memory.max`/`memory.limit_in_bytes` its resident memory,
//! `cpuset.cpus` only CPUs this host has online.

use std::collections::BTreeMap;

use super::{Mode, RestoreError};
use crate::cgroupfs::{self, CgroupError, Hierarchy};
use crate::image::cgroup::{parent_of, under, CgroupImage};
use crate::image::Image;

fn refuse(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// The recorded cgroups exist, or do not, as the mode requires.
pub fn existence(cg: &CgroupImage, open: &[Hierarchy], mode: Mode) -> Result<(), RestoreError> {
    for (h, o) in cg.hierarchies.iter().zip(open) {
        for d in &h.dirs {
            let exists = o.dir(&d.path).is_dir();
            if !exists && !mode.creates() {
                return Err(refuse(format!(
                    "cgroup {} of hierarchy {:?} does not exist, and --manage-cgroups={} \
                     does not create cgroups (soft or full do)",
                    d.path,
                    h.controllers,
                    mode.name()
                )));
            }
            if exists && mode == Mode::Strict && d.path != "/" {
                return Err(refuse(format!(
                    "cgroup {} of hierarchy {:?} exists already, and \
                     --manage-cgroups=strict wants every recorded cgroup to be new",
                    d.path, h.controllers
                )));
            }
        }
        if o.is_v2() {
            v2_controllers(h, o)?;
        }
    }
    Ok(())
}

/// Every controller a v2 setting names is available in the hierarchy.
fn v2_controllers(h: &crate::image::cgroup::Hierarchy, o: &Hierarchy) -> Result<(), RestoreError> {
    let have = cgroupfs::read(&o.dir("/").join("cgroup.controllers"))?;
    for d in &h.dirs {
        for p in &d.props {
            let c = p.name.split('.').next().unwrap_or("");
            if c != "cgroup" && !have.split_whitespace().any(|x| x == c) {
                return Err(refuse(format!(
                    "cgroup {} needs the {c} controller ({}), which this host's cgroup2 \
                     hierarchy does not offer (it has: {have})",
                    d.path, p.name
                )));
            }
        }
    }
    Ok(())
}

/// The limits of every cgroup the tree's tasks go to, and of their ancestors.
pub fn capacity(
    cg: &CgroupImage,
    open: &[Hierarchy],
    mode: Mode,
    image: &Image,
) -> Result<(), RestoreError> {
    for (i, (h, o)) in cg.hierarchies.iter().zip(open).enumerate() {
        let mut cgroups: BTreeMap<&str, ()> = BTreeMap::new();
        for t in &cg.tasks {
            let mut p = Some(t.paths[i].as_str());
            while let Some(path) = p.filter(|p| *p != "/") {
                cgroups.insert(path, ());
                p = parent_of(path);
            }
        }
        for path in cgroups.keys() {
            let limit = |name: &str| -> Result<Option<String>, CgroupError> {
                let saved = h.dirs.iter().find(|d| d.path == *path);
                let file = o.dir(path).join(name);
                let restored = saved.filter(|_| !file.exists() || mode.sets_existing());
                match restored {
                    Some(d) => Ok(d
                        .props
                        .iter()
                        .find(|p| p.name == name)
                        .and_then(|p| p.value.clone())),
                    None if file.exists() => cgroupfs::read(&file).map(Some),
                    None => Ok(None),
                }
            };
            let name =
                |what: &str| format!("cgroup {path} of hierarchy {:?}: {what}", h.controllers);
            pids(cg, i, path, o, &limit("pids.max")?).map_err(|w| refuse(name(&w)))?;
            for file in ["memory.max", "memory.limit_in_bytes"] {
                memory(cg, i, path, image, file, &limit(file)?).map_err(|w| refuse(name(&w)))?;
            }
            cpus(&limit("cpuset.cpus")?).map_err(|w| refuse(name(&w)))?;
        }
    }
    Ok(())
}

/// The tasks going under `path`, and those already there, fit its `pids.max`.
fn pids(
    cg: &CgroupImage,
    i: usize,
    path: &str,
    o: &Hierarchy,
    max: &Option<String>,
) -> Result<(), String> {
    let Some(max) = max.as_deref().and_then(|m| m.parse::<u64>().ok()) else {
        return Ok(());
    };
    let ours = cg.tasks.iter().filter(|t| under(&t.paths[i], path)).count() as u64;
    let there = cgroupfs::read(&o.dir(path).join("pids.current"))
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0);
    if ours + there > max {
        return Err(format!(
            "pids.max {max} is below the tree's {ours} tasks going there (with {there} already in it)"
        ));
    }
    Ok(())
}

/// The resident memory of the processes going under `path` fits its limit.
fn memory(
    cg: &CgroupImage,
    i: usize,
    path: &str,
    image: &Image,
    file: &str,
    max: &Option<String>,
) -> Result<(), String> {
    let Some(max) = max.as_deref().and_then(|m| m.parse::<u64>().ok()) else {
        return Ok(());
    };
    let bytes: u64 = (cg.tasks.iter())
        .filter(|t| t.tid == t.pid && under(&t.paths[i], path))
        .filter_map(|t| image.process(t.pid))
        .map(|p| p.mm.page_runs.iter().map(|r| r.pages).sum::<u64>() * crate::abi::PAGE_SIZE)
        .sum();
    if bytes > max {
        return Err(format!(
            "{file} {max} is below the {bytes} bytes of memory the tree's processes going there had resident"
        ));
    }
    Ok(())
}

/// Every CPU of `cpuset.cpus` is online here.
fn cpus(list: &Option<String>) -> Result<(), String> {
    let Some(list) = list.as_deref().filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let have = cpu_list(online.trim());
    if let Some(cpu) = cpu_list(list).into_iter().find(|c| !have.contains(c)) {
        return Err(format!(
            "cpuset.cpus {list} names CPU {cpu}, which is not online here (online: {})",
            online.trim()
        ));
    }
    Ok(())
}

/// `0-3,8` → [0, 1, 2, 3, 8].
fn cpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            out.extend(a..=b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert!(cpus(&Some("0-1000".into())).is_err());
        assert!(cpus(&Some(String::new())).is_ok());
    }
}
