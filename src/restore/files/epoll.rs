//! epoll instances, recreated with every registration (`epoll_ctl(EPOLL_CTL_ADD)` with the
//! saved events and data). The dump side is `dump/files/epoll.rs`.
//!
//! Epoll keys a registration by file and fd number, and fdinfo shows the number. A
//! registration whose number no longer holds its file ([`EpollMoved`]) is made with a
//! copy of the file put at that number for the call: whatever the number holds is moved
//! aside meanwhile and put back after, with its `FD_CLOEXEC`; the registration lives on
//! as long as the file is open anywhere.
//!
//! Ordering requirements: every target fd exists (see `install_order`), and for a moved
//! registration the fd holding the file (in this process, or in an earlier process,
//! restored before this one); before file locks are taken (the temporary copy is closed,
//! which would drop the process's POSIX locks on that file).

use super::Install;
use crate::image::files::{EpollFd, EpollMoved};
use crate::restore::RestoreError;

pub fn restore(at: &Install, e: &EpollFd) -> Result<(), RestoreError> {
    let flags = at.cloexec() as u64;
    at.place(at.call("epoll_create1", libc::SYS_epoll_create1, &[flags])?)?;
    for (t, toff) in e.numbered() {
        // struct epoll_event is packed on x86_64: u32 events, u64 data.
        let mut event = t.events.to_ne_bytes().to_vec();
        event.extend_from_slice(&t.data.to_ne_bytes());
        let addr = at.child.put(0, &event)?;
        match at.files.epoll_moved(at.entry.fd, t.fd, toff) {
            Some(m) => add_moved(at, m, addr)?,
            None => add(at, at.fd(), t.fd as u64, addr)?,
        }
    }
    Ok(())
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, event at addr)` in the child.
fn add(at: &Install, epfd: u64, tfd: u64, addr: u64) -> Result<(), RestoreError> {
    let args = [epfd, libc::EPOLL_CTL_ADD as u64, tfd, addr];
    at.call("epoll_ctl(EPOLL_CTL_ADD)", libc::SYS_epoll_ctl, &args)?;
    Ok(())
}

/// Registers the file at fd `m.fd` of process `m.pid` under number `m.tfd`: moves what
/// `tfd` holds aside, puts a copy of the file there, adds it, and puts back what was there.
fn add_moved(at: &Install, m: &EpollMoved, addr: u64) -> Result<(), RestoreError> {
    let tfd = m.tfd as u64;
    let aside = move_aside(at, tfd)?;
    let copy = if m.pid == at.child.pid() {
        let args = [m.fd as u64, libc::F_DUPFD_CLOEXEC as u64, 0];
        at.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &args)?
    } else {
        super::take_from(at.child, m.pid, m.fd)?
    };
    if copy != tfd {
        at.call("dup3", libc::SYS_dup3, &[copy, tfd, libc::O_CLOEXEC as u64])?;
        at.call("close", libc::SYS_close, &[copy])?;
    }
    let epfd = match aside {
        Some((fd, _)) if tfd == at.fd() => fd,
        _ => at.fd(),
    };
    add(at, epfd, tfd, addr)?;
    match aside {
        Some((fd, cloexec)) => {
            at.call("dup3", libc::SYS_dup3, &[fd, tfd, cloexec])?;
            at.call("close", libc::SYS_close, &[fd])?
        }
        None => at.call("close", libc::SYS_close, &[tfd])?,
    };
    Ok(())
}

/// What fd `fd` holds, copied to a free number: `(copy, O_CLOEXEC or 0)`, or `None` when
/// `fd` is free.
fn move_aside(at: &Install, fd: u64) -> Result<Option<(u64, u64)>, RestoreError> {
    let remote = at.child.remote();
    let flags = remote.raw(libc::SYS_fcntl, &[fd, libc::F_GETFD as u64])?;
    if flags == -(libc::EBADF as i64) {
        return Ok(None);
    }
    let args = [fd, libc::F_DUPFD_CLOEXEC as u64, 0];
    let copy = at.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &args)?;
    let cloexec = if flags & libc::FD_CLOEXEC as i64 != 0 {
        libc::O_CLOEXEC as u64
    } else {
        0
    };
    Ok(Some((copy, cloexec)))
}
