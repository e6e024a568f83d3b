//! signalfd, recreated with its mask. The dump side is `dump/files/signalfd.rs`.

use super::Install;
use crate::image::files::SignalFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, s: &SignalFd) -> Result<(), RestoreError> {
    let mask = at.child.put(0, &s.mask.to_ne_bytes())?;
    let flags = at.cloexec() | (at.entry.flags & libc::O_NONBLOCK);
    let args = [u64::MAX, mask, 8, flags as u64];
    at.place(at.call("signalfd4", libc::SYS_signalfd4, &args)?)
}
