//! # Safety
//! `clone3(2)` through the raw syscall: the child starts as a copy of the calling thread and
//! runs only the async-signal-safe `park_forever` before it is taken over with ptrace.
//!
//! Creating a task with an exact PID (`set_tid`, Linux 5.5).
#![allow(unsafe_code)]

use nix::errno::Errno;

use crate::abi::CloneArgs;

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("pid {pid} is already in use")]
    PidTaken { pid: i32 },
    #[error(
        "clone3 with set_tid {pid} (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE and Linux 5.5)"
    )]
    Clone {
        pid: i32,
        #[source]
        source: Errno,
    },
}

/// `clone3(set_tid = [pid], exit_signal = SIGCHLD, flags)` — a child process with exactly
/// `pid` (`flags`: namespaces it gets, e.g. `CLONE_NEWIPC`).
///
/// The child does nothing but wait in `pause()` until the caller seizes it and replaces
/// every part of it. Returns the child's pid (== `pid`).
pub fn clone_with_pid(pid: i32, flags: u64) -> Result<i32, CloneError> {
    let tids = [pid as libc::pid_t];
    let args = CloneArgs {
        flags,
        // clone3 takes no exit signal with CLONE_PARENT: the creator's own is used.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: `args` and `tids` are valid for the call; without CLONE_VM the child gets a
    // copy of our memory, and it only calls `park_forever`, which is async-signal-safe.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(r) {
        Ok(0) => park_forever(),
        Ok(child) => Ok(child as i32),
        Err(Errno::EEXIST) => Err(CloneError::PidTaken { pid }),
        Err(source) => Err(CloneError::Clone { pid, source }),
    }
}

fn park_forever() -> ! {
    loop {
        // SAFETY: pause(2) has no memory effects.
        unsafe { libc::pause() };
    }
}
