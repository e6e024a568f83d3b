//! eventfd, recreated with its counter and mode. The dump side is `dump/files/eventfd.rs`.

use super::Install;
use crate::image::files::EventFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, e: &EventFd) -> Result<(), RestoreError> {
    let mut flags = at.cloexec() | (at.entry.flags & libc::O_NONBLOCK);
    if e.semaphore {
        flags |= libc::EFD_SEMAPHORE;
    }
    let got = at.call("eventfd2", libc::SYS_eventfd2, &[0, flags as u64])?;
    at.place(got)?;
    if e.count != 0 {
        // eventfd2 takes a 32-bit initial value; a write adds the full 64-bit count.
        let buf = at.child.put(0, &e.count.to_ne_bytes())?;
        at.call("write(eventfd)", libc::SYS_write, &[at.fd(), buf, 8])?;
    }
    Ok(())
}
