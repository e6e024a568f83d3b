//! Files mapped (or run) by a process on a mount of another namespace of the tree than
//! its own (`mntns-maps.img`, dumped by `dump/mnt/maps.rs`): stasis opens each path
//! through `/proc/PID/root` of a process of that namespace (an ancestor, restored
//! before) and hands the fd to the process, which maps it (or makes it its exe). So too
//! another process's shared object, for a process whose root shows no `/proc`.
//!
//! Ordering requirements: [`note`] for a process once it and its ancestors exist, before
//! its Mappings stage.

use std::os::fd::OwnedFd;

use super::unsupported;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// By (pid, mapping start or `None` for the exe) as stasis sees the pid, the pid of a
/// process of the namespace its file is opened in.
static FAR: std::sync::Mutex<Vec<Far>> = std::sync::Mutex::new(Vec::new());

/// (pid, mapping start or `None` for the exe), and the pid of a process of the namespace
/// its file is opened in: pids as stasis sees them.
pub type Far = ((i32, Option<u64>), i32);

/// Adds the files of a process to open elsewhere (pids as stasis sees them); `None`
/// forgets those of an earlier restore (the root comes first).
pub fn note(far: Option<Vec<Far>>) {
    let mut all = FAR.lock().unwrap_or_else(|e| e.into_inner());
    match far {
        Some(far) => all.extend(far),
        None => all.clear(),
    }
}

/// The process whose namespace holds the file of mapping `start` (`None`: the exe) of
/// `pid`, if it is not `pid`'s own.
pub fn elsewhere(pid: i32, start: Option<u64>) -> Option<i32> {
    let all = FAR.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .find(|(k, _)| *k == (pid, start))
        .map(|(_, ns)| *ns)
}

/// Opens `there` (stasis's path to `path`) and hands it to `child`; its fd number there.
pub fn give(child: &Child, there: &str, path: &str, flags: i32) -> Result<u64, RestoreError> {
    let oflags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_CLOEXEC;
    let file = nix::fcntl::open(there, oflags, nix::sys::stat::Mode::empty()).map_err(|e| {
        unsupported(format!(
            "open {path} for pid {} (as {there}): {}",
            child.pid(),
            e.desc()
        ))
    })?;
    crate::restore::ns::handover::give_own(child, &file, path)
}

/// Whether the root of `pid` shows no `/proc` (it `pivot_root`ed into a namespace of
/// its own without one): another process's objects are then opened by stasis.
pub fn without_proc(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}/root/proc/self")).exists()
}

/// `path` of the mount namespace of `ns_pid`, opened by stasis through its root.
pub fn open_there(ns_pid: i32, path: &str, flags: i32) -> nix::Result<OwnedFd> {
    let there = format!("/proc/{ns_pid}/root{path}");
    let oflags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_CLOEXEC;
    nix::fcntl::open(there.as_str(), oflags, nix::sys::stat::Mode::empty())
}
