//! The time namespace of a container: if the root is the init of its pid namespace and
//! its time namespace is not the dumper's, the namespace's monotonic and boottime clocks
//! are read while the tree is frozen; the restore makes a new time namespace whose offsets
//! let both clocks go on from these values (as CRIU: the time the tree spent dumped does
//! not pass inside). Any other time namespace, or a `time_for_children` prepared and not
//! entered, is refused. The restore side is `restore/ns/time.rs`.

use super::{inode, DumpError};
use crate::image::ns::TimeNs;

/// The clocks of the tree's time namespace, if it has one of its own. `pids`: every live
/// process of the tree, the root first.
pub fn collect(pids: &[i32]) -> Result<Option<TimeNs>, DumpError> {
    let root = pids[0];
    let tree = inode(&root.to_string(), "time");
    let own = tree != inode("self", "time");
    for &pid in pids {
        let p = pid.to_string();
        for kind in ["time", "time_for_children"] {
            let theirs = inode(&p, kind);
            if theirs != tree || (own && !super::pid::is_ns_init(root)?) {
                return Err(DumpError::unsupported(format!(
                    "pid {pid} is in a {kind} namespace of its own ({kind}:[{}]), which \
                     stasis cannot rebuild yet (only the time namespace of a pid namespace's \
                     init, shared by the whole tree); run stasis inside that namespace to \
                     dump the tree as it sees it",
                    theirs.unwrap_or(0)
                )));
            }
        }
    }
    if !own {
        return Ok(None);
    }
    let offsets = read_offsets(root)?;
    Ok(Some(TimeNs {
        monotonic: add(now(libc::CLOCK_MONOTONIC), offsets.0),
        boottime: add(now(libc::CLOCK_BOOTTIME), offsets.1),
    }))
}

/// `(monotonic, boottime)` offsets of `/proc/PID/timens_offsets`, in nanoseconds.
pub fn read_offsets(pid: i32) -> Result<(i128, i128), DumpError> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Stat {
        path: path.clone(),
        source,
    })?;
    parse_offsets(&text).ok_or_else(|| DumpError::unsupported(format!("cannot parse {path}")))
}

/// Parses `monotonic S NS` / `boottime S NS` lines.
pub fn parse_offsets(text: &str) -> Option<(i128, i128)> {
    let mut out = (0, 0);
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (name, s, ns) = (w.next()?, w.next()?, w.next()?);
        let v = i128::from(s.parse::<i64>().ok()?) * 1_000_000_000 + ns.parse::<i128>().ok()?;
        match name {
            "monotonic" | "1" => out.0 = v,
            "boottime" | "7" => out.1 = v,
            _ => {}
        }
    }
    Some(out)
}

/// `clock_gettime(clock)` of stasis, in nanoseconds.
pub fn now(clock: libc::clockid_t) -> i128 {
    let id = nix::time::ClockId::from_raw(clock);
    nix::time::clock_gettime(id).map_or(0, |t| {
        i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
    })
}

fn add(a: i128, b: i128) -> i64 {
    i64::try_from(a + b).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_by_name() {
        let text = "monotonic           5         7\nboottime          -2         0\n";
        assert_eq!(parse_offsets(text), Some((5_000_000_007, -2_000_000_000)));
    }
}
