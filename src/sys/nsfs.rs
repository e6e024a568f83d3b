//! # Safety
//! `ioctl(2)` on an nsfs file through the raw call: the requests take no argument and
//! return a new fd, which is owned at once.
//!
//! Namespace relations (linux/nsfs.h): the user namespace owning a namespace and the
//! parent of a user namespace, each named by its inode.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;

/// `_IO(0xb7, 0x1)`.
const NS_GET_USERNS: u64 = 0xb701;
/// `_IO(0xb7, 0x2)`.
const NS_GET_PARENT: u64 = 0xb702;

/// `ioctl(fd, request)` for a request returning a namespace fd.
fn ns_ioctl(fd: &impl AsRawFd, request: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: both requests take no argument and, on success, return a new fd that
    // nothing else owns (kernel promise: nsfs `ns_ioctl` → `open_related_ns`).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _) };
    let r = Errno::result(r)?;
    // SAFETY: `r` is a fresh fd from the kernel, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn inode(fd: OwnedFd) -> Result<u64, Errno> {
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    Ok(meta.ino())
}

/// `ioctl(NS_GET_USERNS)` — the inode of the user namespace owning the namespace open at
/// `ns`; see [ioctl_ns(2)](https://man7.org/linux/man-pages/man2/ioctl_ns.2.html).
pub fn owner(ns: &impl AsRawFd) -> Result<u64, Errno> {
    inode(ns_ioctl(ns, NS_GET_USERNS)?)
}

/// `ioctl(NS_GET_PARENT)` — the inode of the parent of the user (or pid) namespace open
/// at `ns` (EPERM: the parent is outside the caller's namespace).
pub fn parent(ns: &impl AsRawFd) -> Result<u64, Errno> {
    inode(ns_ioctl(ns, NS_GET_PARENT)?)
}
