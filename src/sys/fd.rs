//! # Safety
//! Calls on file descriptors that nix does not wrap: `tee(2)`, `FIONREAD`,
//! `open_by_handle_at(2)` and `kcmp(KCMP_EPOLL_TFD)`. Every pointer handed to the kernel
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
