//! pidfd of a restored process (`pidfd_open`, with `PIDFD_NONBLOCK` and `PIDFD_THREAD`
//! from the saved status flags). The dump side is `dump/files/pidfd.rs`.
//!
//! Ordering requirements: the process it names must exist; in a one-process image it is
//! the process being restored itself.

use super::Install;
use crate::image::files::PidFd;
use crate::restore::RestoreError;

/// `PIDFD_THREAD` is `O_EXCL`, `PIDFD_NONBLOCK` is `O_NONBLOCK`.
const PIDFD_FLAGS: i32 = libc::O_EXCL | libc::O_NONBLOCK;

pub fn restore(at: &Install, p: &PidFd) -> Result<(), RestoreError> {
    let flags = (at.entry.flags & PIDFD_FLAGS) as u64;
    let got = at.call("pidfd_open", libc::SYS_pidfd_open, &[p.pid as u64, flags])?;
    at.place(got)?;
    // pidfd_open always sets FD_CLOEXEC.
    at.set_cloexec()
}
