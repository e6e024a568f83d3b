//! Writing a cgroup's saved settings back: each only where the value differs from what
//! the cgroup has, multi-line values line by line, and the files whose format on read is
//! not what is written (`devices.list`, `memory.oom_control`, `cgroup.subtree_control`,
//! `cgroup.type`, `cpuset.cpus.partition`) translated as the kernel wants them.

use std::path::Path;

use crate::cgroupfs::{self, CgroupError, FREEZE};
use crate::image::cgroup::Prop;

/// Writes `props` into cgroup `dir` (in their order), and their files' owner and mode
/// when `perms`.
pub fn apply(dir: &Path, props: &[Prop], perms: bool) -> Result<(), CgroupError> {
    for p in props {
        let file = dir.join(&p.name);
        if let Some(value) = p
            .value
            .as_deref()
            .filter(|_| !FREEZE.contains(&p.name.as_str()))
        {
            set(dir, &p.name, value)?;
        }
        if perms && file.exists() {
            cgroupfs::set_perms(&file, &p.perms)?;
        }
    }
    Ok(())
}

fn set(dir: &Path, name: &str, value: &str) -> Result<(), CgroupError> {
    let file = dir.join(name);
    let have = cgroupfs::read(&file)?;
    if have == value {
        return Ok(());
    }
    match name {
        "cgroup.type" => match value {
            "threaded" => cgroupfs::write(&file, "threaded"),
            _ => Ok(()),
        },
        "cgroup.subtree_control" => {
            let on: Vec<&str> = value.split_whitespace().collect();
            let was: Vec<&str> = have.split_whitespace().collect();
            let mut change: Vec<String> = on
                .iter()
                .filter(|c| !was.contains(c))
                .map(|c| format!("+{c}"))
                .collect();
            change.extend(
                was.iter()
                    .filter(|c| !on.contains(c))
                    .map(|c| format!("-{c}")),
            );
            cgroupfs::write(&file, &change.join(" "))
        }
        "devices.list" => {
            cgroupfs::write(&dir.join("devices.deny"), "a")?;
            for line in value.lines() {
                let rule = if line == "a *:* rwm" { "a" } else { line };
                cgroupfs::write(&dir.join("devices.allow"), rule)?;
            }
            Ok(())
        }
        "memory.oom_control" => {
            let disable = |t: &str| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill_disable ").map(str::to_string))
            };
            match disable(value) {
                Some(v) if disable(&have).as_ref() != Some(&v) => cgroupfs::write(&file, &v),
                _ => Ok(()),
            }
        }
        "cpuset.cpus.partition" => {
            let want = value.split_whitespace().next().unwrap_or("member");
            if have.split_whitespace().next() == Some(want) {
                return Ok(());
            }
            cgroupfs::write(&file, want)
        }
        _ if value.contains('\n') => {
            let was: Vec<&str> = have.lines().collect();
            for line in value.lines().filter(|l| !was.contains(l)) {
                cgroupfs::write(&file, line)?;
            }
            Ok(())
        }
        _ => cgroupfs::write(&file, value),
    }
}
