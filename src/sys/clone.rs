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

/// `clone3(set_tid = ids, exit_signal = SIGCHLD, flags)` — a child process with exactly
/// the pids `ids` (the innermost pid namespace's first, ours last; `flags`: namespaces it
/// gets, e.g. `CLONE_NEWIPC`, `CLONE_NEWPID`).
///
/// The child does nothing but wait in `pause()` until the caller seizes it and replaces
/// every part of it. Returns the child's pid in our namespace (== the last of `ids`).
pub fn clone_with_pid(ids: &[i32], flags: u64) -> Result<i32, CloneError> {
    let pid = ids.last().copied().unwrap_or(0);
    let args = CloneArgs {
        flags,
        // clone3 takes no exit signal with CLONE_PARENT: the creator's own is used.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        set_tid: ids.as_ptr() as u64,
        set_tid_size: ids.len() as u64,
        ..Default::default()
    };
    // `ids` outlives the call that reads it through `args.set_tid`.
    match clone3_parked(&args) {
        Ok(child) => Ok(child),
        Err(Errno::EEXIST) => Err(CloneError::PidTaken { pid }),
        Err(source) => Err(CloneError::Clone { pid, source }),
    }
}

/// `clone3(flags)` — a child that waits in `pause()` until killed: a holder of the
/// namespaces `flags` makes (`CLONE_NEWUSER` and those it then owns), which other tasks
/// enter. Returns its pid.
pub fn spawn_holder(flags: u64) -> Result<i32, Errno> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    clone3_parked(&args)
}

/// `clone3(args)` whose child parks forever; returns the child's pid to the parent.
/// `args` must not hold `CLONE_VM`, and its `set_tid` (if any) must point at
/// `set_tid_size` valid ids.
fn clone3_parked(args: &CloneArgs) -> Result<i32, Errno> {
    // SAFETY: `args` is valid for the call, and so is the `set_tid` array it may name (the
    // callers' contract); without CLONE_VM the child gets a copy of our memory and only
    // calls `park_forever`, which is async-signal-safe.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(r)? {
        0 => park_forever(),
        child => Ok(child as i32),
    }
}

fn park_forever() -> ! {
    loop {
        // SAFETY: pause(2) has no memory effects.
        unsafe { libc::pause() };
    }
}
