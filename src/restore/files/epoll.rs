//! epoll instances, recreated with every registration (`epoll_ctl(EPOLL_CTL_ADD)` with the
//! saved events and data). The dump side is `dump/files/epoll.rs`.
//!
//! Ordering requirements: every target fd exists (see `install_order`).

use super::Install;
use crate::image::files::EpollFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, e: &EpollFd) -> Result<(), RestoreError> {
    let flags = at.cloexec() as u64;
    at.place(at.call("epoll_create1", libc::SYS_epoll_create1, &[flags])?)?;
    for t in &e.targets {
        // struct epoll_event is packed on x86_64: u32 events, u64 data.
        let mut event = t.events.to_ne_bytes().to_vec();
        event.extend_from_slice(&t.data.to_ne_bytes());
        let addr = at.child.put(0, &event)?;
        let args = [at.fd(), libc::EPOLL_CTL_ADD as u64, t.fd as u64, addr];
        at.call("epoll_ctl(EPOLL_CTL_ADD)", libc::SYS_epoll_ctl, &args)?;
    }
    Ok(())
}
