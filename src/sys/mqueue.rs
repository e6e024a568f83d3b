//! # Safety
//! The POSIX message queue syscalls (`mq_open`, `mq_unlink`, `mq_getsetattr`,
//! `mq_timedsend`, `mq_timedreceive`) through raw syscalls: names are `CString`s that
//! outlive the call, attributes are locals passed by pointer, message buffers are slices
//! whose length is passed with them, and every fd the kernel returns is wrapped in an
//! `OwnedFd` at once.
//!
//! POSIX message queues seen from the calling thread's IPC namespace (`mq_open`) or
//! through a descriptor of its mqueue filesystem. Policy lives in `dump/mqueue.rs` and
//! `restore/mqueue.rs`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// A failed message queue call on queue `/name`.
#[derive(Debug, thiserror::Error)]
#[error("{op} of POSIX message queue /{name}")]
pub struct MqError {
    pub op: &'static str,
    pub name: String,
    #[source]
    pub source: Errno,
}

/// What `mq_getattr` tells of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

fn fail<'a>(op: &'static str, name: &'a str) -> impl Fn(Errno) -> MqError + 'a {
    move |source| MqError {
        op,
        name: name.to_string(),
        source,
    }
}

fn cname(name: &str) -> Result<CString, MqError> {
    CString::new(name).map_err(|_| fail("mq_open", name)(Errno::EINVAL))
}

/// `mq_open("/name", O_RDWR | O_NONBLOCK | O_CLOEXEC | O_CREAT | O_EXCL, mode, attr)`:
/// a new queue in the calling thread's namespace. `name` is without its `/`.
pub fn create(name: &str, mode: u32, maxmsg: i64, msgsize: i64) -> Result<OwnedFd, MqError> {
    let c = cname(name)?;
    // SAFETY: mq_attr is plain data; zeroed is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_CREAT | libc::O_EXCL;
    // SAFETY: `c` and `attr` outlive the call; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_open,
            c.as_ptr(),
            flags,
            mode as libc::c_uint,
            &attr as *const libc::mq_attr,
        )
    };
    owned(r).map_err(fail("mq_open(O_CREAT)", name))
}

/// `mq_open("/name", O_RDWR | O_NONBLOCK | O_CLOEXEC)`: an existing queue.
pub fn open(name: &str) -> Result<OwnedFd, MqError> {
    let c = cname(name)?;
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: `c` outlives the call; no attribute pointer without O_CREAT.
    let r = unsafe { libc::syscall(libc::SYS_mq_open, c.as_ptr(), flags, 0, 0) };
    owned(r).map_err(fail("mq_open", name))
}

/// `mq_unlink("/name")`.
pub fn unlink(name: &str) -> Result<(), MqError> {
    let c = cname(name)?;
    // SAFETY: `c` outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_mq_unlink, c.as_ptr()) };
    Errno::result(r)
        .map(|_| ())
        .map_err(fail("mq_unlink", name))
}

fn owned(r: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `mq_getattr` of the queue behind `fd`.
pub fn attr(fd: BorrowedFd, name: &str) -> Result<Attr, MqError> {
    // SAFETY: mq_attr is plain data; zeroed is a valid value.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: a null new attribute reads only; `a` is ours to fill, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            fd.as_raw_fd(),
            std::ptr::null::<libc::mq_attr>(),
            &mut a as *mut libc::mq_attr,
        )
    };
    Errno::result(r).map_err(fail("mq_getattr", name))?;
    Ok(Attr {
        maxmsg: a.mq_maxmsg,
        msgsize: a.mq_msgsize,
        curmsgs: a.mq_curmsgs,
    })
}

/// Takes the first message off the queue behind `fd` (opened `O_NONBLOCK`: `EAGAIN`
/// when empty) into `buf` (at least `mq_msgsize` long): its length and priority.
pub fn receive(fd: BorrowedFd, name: &str, buf: &mut [u8]) -> Result<(usize, u32), MqError> {
    let mut prio: libc::c_uint = 0;
    // SAFETY: `buf` is writable for its length, `prio` is ours; a null timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio as *mut libc::c_uint,
            std::ptr::null::<libc::timespec>(),
        )
    };
    let n = Errno::result(r).map_err(fail("mq_receive", name))?;
    Ok((n as usize, prio))
}

/// Queues `data` with priority `prio` on the queue behind `fd` (`O_NONBLOCK`: `EAGAIN`
/// when full).
pub fn send(fd: BorrowedFd, name: &str, data: &[u8], prio: u32) -> Result<(), MqError> {
    // SAFETY: `data` is readable for its length; a null timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            fd.as_raw_fd(),
            data.as_ptr(),
            data.len(),
            prio as libc::c_uint,
            std::ptr::null::<libc::timespec>(),
        )
    };
    Errno::result(r).map(|_| ()).map_err(fail("mq_send", name))
}
