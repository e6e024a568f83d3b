//! A process in a network namespace of the tree it entered (`netns-join.img`, dumped by
//! `dump/ns/net_join.rs`): it enters it with `setns` on an fd of that namespace handed
//! to it — right after its takeover, or (`late`, images of format 16 only) once its
//! files are open, its sockets being of the namespace it was forked in. Its sockets of
//! another namespace are made there (`net_sockets.rs`).
//!
//! Ordering requirements: the namespace's maker restored (and its namespace filled)
//! first; an early join before the process's files and children, a late one after its
//! files.

use super::super::RestoreError;
use crate::restore::child::Child;

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// Moves `child` into the network namespace of process `of` (as stasis sees it).
pub fn join(child: &Child, of: i32) -> Result<(), RestoreError> {
    let pid = child.pid();
    let path = format!("/proc/{of}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| {
        fail(format!(
            "pid {pid} joins the network namespace of {of}: {path}: {e}"
        ))
    })?;
    let fd = super::handover::give_own(child, &ns, "a network namespace")?;
    let remote = child.remote();
    let r = remote.raw(libc::SYS_setns, &[fd, libc::CLONE_NEWNET as u64])?;
    remote.call("close", libc::SYS_close, &[fd])?;
    match r {
        0 => Ok(()),
        e => Err(fail(format!(
            "pid {pid} joins the network namespace of {of} (setns): {}",
            nix::errno::Errno::from_raw(-e as i32).desc()
        ))),
    }
}
