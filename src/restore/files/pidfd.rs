//! pidfd of a restored process (`pidfd_open`, with `PIDFD_NONBLOCK` and `PIDFD_THREAD`
//! from the saved status flags), or of a process that had exited: for each such process
//! of the image (its pidfs inode at dump time) stasis forks a stand-in that waits; every
//! pidfd of it, in any process of the tree, is opened on the stand-in, which is killed and
//! reaped once every process has its fds ([`end_stand_ins`]) — the pidfds then refer to
//! one exited process, as they did. A cwd in the `/proc` directory of an exited process
//! is restored the same way ([`stand_in_for_cwd`]). The dump side is
//! `dump/files/pidfd.rs`.
//!
//! A stand-in lives in the pid namespace of the process holding its pidfd (a pidfd of a
//! process outside the caller's namespace answers EINVAL where the original said ESRCH);
//! there stasis opens the pidfd itself and hands it to the process (`ns/handover.rs`).
//!
//! Ordering requirements: the process it names must exist; in a one-process image it is
//! the process being restored itself. Stand-ins end before any restored process runs.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Mutex, PoisonError};

use super::Install;
use crate::image::files::{DeadPidFd, PidFd};
use crate::restore::RestoreError;
use crate::sys::probe::{spawn_paused, PausedChild};

/// `PIDFD_THREAD` is `O_EXCL`, `PIDFD_NONBLOCK` is `O_NONBLOCK`.
const PIDFD_FLAGS: i32 = libc::O_EXCL | libc::O_NONBLOCK;

/// The stand-ins of exited processes, by their pidfs inode at dump time. Dropping one
/// kills and reaps it.
static STAND_INS: Mutex<Option<HashMap<u64, PausedChild>>> = Mutex::new(None);

pub fn restore(at: &Install, p: &PidFd) -> Result<(), RestoreError> {
    open_pidfd(at, p.pid)
}

/// A pidfd of the stand-in of the exited process `p.ino` (forked on first use, in the
/// pid namespace of the first process that holds one).
pub fn restore_dead(at: &Install, p: &DeadPidFd) -> Result<(), RestoreError> {
    let fail = |e: String| RestoreError::Unsupported {
        what: format!("fork a stand-in for the exited process of a pidfd: {e}"),
    };
    let own_ns = pid_ns(at.child.pid()).map_err(|e| fail(e.to_string()))?;
    let pid = {
        let mut guard = STAND_INS.lock().unwrap_or_else(PoisonError::into_inner);
        let map = guard.get_or_insert_with(HashMap::new);
        let stand_in = match map.entry(p.ino) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                v.insert(spawn_in(own_ns.as_ref()).map_err(|e| fail(e.to_string()))?)
            }
        };
        stand_in.pid().as_raw()
    };
    if own_ns.is_none() {
        return open_pidfd(at, pid);
    }
    // Inside its namespace the stand-in has a pid the image does not know: stasis opens
    // the pidfd and hands it over.
    let flags = at.entry.flags & PIDFD_FLAGS;
    let pidfd = crate::sys::probe::pidfd_open_with(nix::unistd::Pid::from_raw(pid), flags)
        .map_err(|e| fail(format!("pidfd_open of the stand-in {pid}: {e}")))?;
    let what = "a pidfd of an exited process";
    let got = crate::restore::ns::handover::give_own(at.child, &pidfd, what)?;
    at.place(got)?;
    at.set_cloexec()
}

/// The pid namespace of `pid` when it is not stasis's own (a pidfd of a process outside
/// the caller's pid namespace behaves otherwise: `pidfd_send_signal` says EINVAL, not
/// ESRCH).
fn pid_ns(pid: i32) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/pid"))?;
    let own = std::fs::metadata("/proc/thread-self/ns/pid")?;
    let theirs = ns.metadata()?;
    Ok((theirs.ino() != own.ino() || theirs.dev() != own.dev()).then_some(ns))
}

fn spawn_in(ns: Option<&std::fs::File>) -> nix::Result<PausedChild> {
    use std::os::fd::AsFd;
    match ns {
        Some(ns) => crate::sys::probe::spawn_paused_in(ns.as_fd()),
        None => spawn_paused(),
    }
}

/// Kills and reaps the stand-ins: every pidfd opened on one now refers to an exited
/// process. Ordering requirements: after every process's Files stage, before any runs.
pub fn end_stand_ins() {
    let mut guard = STAND_INS.lock().unwrap_or_else(PoisonError::into_inner);
    guard.take();
}

/// For a cwd that is the `/proc/PID` directory of a process that had exited
/// (`/proc/PID (deleted)`): a stand-in to `chdir` into, to be dropped (killed and reaped)
/// once the child is there.
pub fn stand_in_for_cwd(cwd: &str) -> Result<Option<PausedChild>, RestoreError> {
    let pid = cwd
        .strip_prefix("/proc/")
        .and_then(|rest| rest.strip_suffix(" (deleted)"));
    if !pid.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())) {
        return Ok(None);
    }
    spawn_paused()
        .map(Some)
        .map_err(|e| RestoreError::Unsupported {
            what: format!("fork a stand-in for the exited process of the cwd {cwd}: {e}"),
        })
}

fn open_pidfd(at: &Install, pid: i32) -> Result<(), RestoreError> {
    let flags = (at.entry.flags & PIDFD_FLAGS) as u64;
    let seen = crate::restore::ns::pid::visible(at.child.pid(), pid)?;
    let got = at.call("pidfd_open", libc::SYS_pidfd_open, &[seen, flags])?;
    at.place(got)?;
    // pidfd_open always sets FD_CLOEXEC.
    at.set_cloexec()
}
