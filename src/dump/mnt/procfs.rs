//! proc mounts of the tree's namespace: the restore makes them again from the tree's root
//! (`restore/mnt/procfs.rs`), so they show the root's pid namespace. A proc showing
//! another one (a tree dumped through `unshare`, whose child mounted a proc of the pid
//! namespace it is init of) would come back listing the wrong processes: refused,
//! naming the mount and the pid namespace.

use std::os::unix::fs::MetadataExt;

use crate::dump::DumpError;
use crate::image::mnt::{How, Mount};

/// Refuses a new proc mount of `mounts` whose pid namespace is not `root`'s: there, the
/// root's own pid in its namespace (the last of `NSpid`) must name the root itself.
pub fn check(root: i32, mounts: &[Mount]) -> Result<(), DumpError> {
    let ino = |path: &str| std::fs::metadata(path).map(|m| m.ino());
    let own = format!("/proc/{root}/ns/pid");
    let theirs = ino(&own).map_err(|e| DumpError::unsupported(format!("stat {own}: {e}")))?;
    let inner = inner_pid(root)?;
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "proc" && m.how == How::New)
    {
        let path = format!("/proc/{root}/root{}/{inner}/ns/pid", m.mountpoint);
        if !matches!(ino(&path), Ok(ns) if ns == theirs) {
            return Err(DumpError::unsupported(format!(
                "the proc mounted at {} in pid {root}'s mount namespace shows another pid namespace \
                 than pid {root}'s (pid:[{theirs}]: {path} is not it), and would come back \
                 showing pid {root}'s: dump that namespace's init instead",
                m.mountpoint
            )));
        }
    }
    Ok(())
}

/// The pid of `pid` in its own pid namespace (the last of its `NSpid`).
fn inner_pid(pid: i32) -> Result<i32, DumpError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DumpError::unsupported(format!("read {path}: {e}")))?;
    (text.lines())
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .ok_or_else(|| DumpError::unsupported(format!("{path}: no NSpid line")))
}
