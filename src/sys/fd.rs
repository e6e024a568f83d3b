//! # Safety
//! Calls on file descriptors that nix does not wrap: `tee(2)`, `FIONREAD`,
//! `open_by_handle_at(2)`, `kcmp(KCMP_EPOLL_TFD)` and the owner queries of `fcntl(2)`
//! (`F_GETOWN_EX`, `F_GETOWNER_UIDS`, `F_GETSIG`). Every pointer handed to the kernel
//! comes from a Rust reference or buffer whose size is passed alongside, and every fd the
//! kernel returns is wrapped in an `OwnedFd` at once.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// `KCMP_EPOLL_TFD` (linux/kcmp.h).
const KCMP_EPOLL_TFD: libc::c_long = 7;

/// `struct kcmp_epoll_slot`.
#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// `tee(from, to, len, SPLICE_F_NONBLOCK)` — copies up to `len` bytes from the pipe `from`
/// into the pipe `to` without consuming them.
/// See [tee(2)](https://man7.org/linux/man-pages/man2/tee.2.html).
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> nix::Result<usize> {
    // SAFETY: integer arguments only; both fds are open for the call.
    let r = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    Errno::result(r).map(|n| n as usize)
}

/// `ioctl(fd, FIONREAD)` — bytes waiting to be read in a pipe.
/// See [pipe(7)](https://man7.org/linux/man-pages/man7/pipe.7.html).
pub fn fionread(fd: BorrowedFd<'_>) -> nix::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    Errno::result(r).map(|_| n as usize)
}

/// `open_by_handle_at(mount_fd, handle, flags)` — opens the file a handle names, on the
/// filesystem of `mount_fd` (needs CAP_DAC_READ_SEARCH).
/// See [open_by_handle_at(2)](https://man7.org/linux/man-pages/man2/open_by_handle_at.2.html).
pub fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> nix::Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: `buf` holds a complete `struct file_handle` whose `handle_bytes` matches the
    // bytes that follow; the kernel only reads it.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_ptr(),
            flags,
        )
    })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `kcmp(holder, owner, KCMP_EPOLL_TFD, fd, {epfd, tfd, toff})` — 0 when fd `fd` of
/// `holder` is the file of the `toff`-th registration (from 0, in the instance's fdinfo
/// order) under number `tfd` in epoll instance `epfd` of `owner`.
/// See [kcmp(2)](https://man7.org/linux/man-pages/man2/kcmp.2.html).
pub fn kcmp_epoll_tfd(
    holder: Pid,
    fd: RawFd,
    owner: Pid,
    epfd: RawFd,
    tfd: RawFd,
    toff: u32,
) -> nix::Result<i32> {
    let slot = KcmpEpollSlot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: the kernel reads one `struct kcmp_epoll_slot` through the pointer, which
    // points at `slot`, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            holder.as_raw(),
            owner.as_raw(),
            KCMP_EPOLL_TFD,
            fd,
            &slot as *const KcmpEpollSlot,
        )
    };
    Errno::result(r).map(|r| r as i32)
}

/// `fcntl` commands of the file owner (linux/fcntl.h, asm-generic/fcntl.h).
pub const F_SETSIG: libc::c_int = 10;
pub const F_GETSIG: libc::c_int = 11;
pub const F_SETOWN_EX: libc::c_int = 15;
pub const F_GETOWN_EX: libc::c_int = 16;
/// The uid and euid recorded with a file's owner (CONFIG_CHECKPOINT_RESTORE).
pub const F_GETOWNER_UIDS: libc::c_int = 17;

/// `f_owner_ex.type`: a thread, a process, a process group.
pub const F_OWNER_TID: i32 = 0;
pub const F_OWNER_PID: i32 = 1;
pub const F_OWNER_PGRP: i32 = 2;

/// `struct f_owner_ex`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// Who gets the I/O signals of an open file description, as `fcntl` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    pub kind: i32,
    /// 0: no owner (or one that has exited).
    pub pid: i32,
    /// The real and effective uid of whoever set the owner.
    pub uid: u32,
    pub euid: u32,
    /// `F_GETSIG`: 0 for `SIGIO` without `siginfo`.
    pub signal: i32,
}

/// `fcntl(fd, F_GETOWN_EX / F_GETOWNER_UIDS / F_GETSIG)` — the owner of the open file
/// description and the signal it sends.
/// See [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html), "Managing signals".
pub fn owner(fd: BorrowedFd<'_>) -> nix::Result<Owner> {
    let mut ex = FOwnerEx::default();
    // SAFETY: F_GETOWN_EX writes one `struct f_owner_ex` through the pointer, which
    // points at `ex` (same layout).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut ex as *mut FOwnerEx) };
    Errno::result(r)?;
    let mut uids = [0u32; 2];
    // SAFETY: F_GETOWNER_UIDS writes two uid_t (u32) through the pointer, which points at
    // `uids`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) };
    Errno::result(r)?;
    // SAFETY: integer arguments only.
    let signal = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    Ok(Owner {
        kind: ex.kind,
        pid: ex.pid,
        uid: uids[0],
        euid: uids[1],
        signal: Errno::result(signal)?,
    })
}

/// Takes ownership of `fd`, a number the kernel just handed us (`SCM_RIGHTS`, `accept`)
/// that nothing else owns.
pub fn adopt(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller got `fd` from the kernel as a new fd and gives it up to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `poll(2)` — waits up to `timeout_ms` for the events asked in `fds`; `EINTR` counts as
/// nothing ready.
/// See [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> nix::Result<usize> {
    // SAFETY: `fds` is a live slice of `pollfd`s, read and written by the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match Errno::result(r) {
        Ok(n) => Ok(n as usize),
        Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}
