//! # Safety
//! `fork(2)` of a possibly multi-threaded stasis: the child runs only `run`, which the
//! caller keeps to allocation (glibc's fork resets the allocator's locks in the child)
//! and plain syscalls; `close_range(2)` of fds nothing in the child uses.
//!
//! Starting a detached background process (the tracker, `tracker.rs`): its own session,
//! reparented away from stasis at once (double fork), stdin/stdout/stderr on /dev/null
//! and no other fd of stasis kept but the one it is given.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

/// Starts `run(keep)` in a detached grandchild (never returns there) and waits for the
/// intermediate child; `keep` is the only fd of ours the daemon holds.
pub fn spawn(keep: OwnedFd, run: impl FnOnce(OwnedFd) -> i32) -> nix::Result<()> {
    // SAFETY: the child runs only `daemonize`, which ends in `_exit`; see the module note.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(keep);
            waitpid(child, None).map(drop)
        }
        ForkResult::Child => daemonize(keep, run),
    }
}

fn daemonize(keep: OwnedFd, run: impl FnOnce(OwnedFd) -> i32) -> ! {
    let _ = nix::unistd::setsid();
    // The caller may block signals it waits for (`stasis checkpoint`): the daemon
    // answers them as any process does.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    // SAFETY: as in `spawn`; the intermediate child exits at once.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {}
        // SAFETY: leaving the intermediate child (or a failed fork) without unwinding.
        _ => unsafe { libc::_exit(0) },
    }
    let fd = keep.as_raw_fd() as u32;
    // SAFETY: closing every fd but `keep` and the standard ones, which are replaced below;
    // nothing in this process uses the others.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, fd.saturating_sub(1), 0u32);
        libc::syscall(libc::SYS_close_range, fd + 1, u32::MAX, 0u32);
    }
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for std in 0..3 {
            // SAFETY: dup2 onto the standard fds of this process only.
            unsafe { libc::dup2(null.as_raw_fd(), std) };
        }
    }
    let code = run(keep);
    // SAFETY: the daemon ends here, without running stasis's exit handlers.
    unsafe { libc::_exit(code) }
}
