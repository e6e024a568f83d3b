//! # Safety
//! The `UFFDIO_API`, `UFFDIO_REGISTER` and `UFFDIO_WRITEPROTECT` ioctls on a userfaultfd,
//! each with an argument struct that lives on our side for the duration of the call.
//!
//! A userfaultfd in async write-protect mode (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7) tracks
//! which pages of its process are written: a write to a protected page is let through by
//! the kernel, which only clears the page's protection bit, so the program never stops;
//! `PAGEMAP_SCAN` (`sys/pagemap.rs`) reads and resets the bits. The ioctls act on the
//! address space of the process that *created* the userfaultfd, whoever calls them, so a
//! userfaultfd made in the target and taken with `pidfd_getfd` registers its mappings.
//! See <https://docs.kernel.org/admin-guide/mm/userfaultfd.html>.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

/// `UFFD_API`.
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)`.
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xc018_aa06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// Unpopulated pages are protected too (a first write to them is seen).
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// Writes to protected pages are resolved by the kernel, without a reader.
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `UFFD_USER_MODE_ONLY` (`userfaultfd(2)` flag): allowed to unprivileged processes.
pub const UFFD_USER_MODE_ONLY: u64 = 1;

/// `struct uffdio_api` (also the missing-mode side's, `uffd_missing.rs`).
#[repr(C)]
pub(super) struct UffdioApi {
    pub(super) api: u64,
    pub(super) features: u64,
    pub(super) ioctls: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
pub(super) struct UffdioRegister {
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) mode: u64,
    pub(super) ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    start: u64,
    len: u64,
    mode: u64,
}

/// A userfaultfd (of some process) used for async write-protect tracking.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
}

impl Uffd {
    /// Takes a fresh userfaultfd and makes the API handshake asking for async
    /// write-protection of populated and unpopulated pages.
    pub fn new(fd: OwnedFd) -> nix::Result<Uffd> {
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: `api` is the kernel's 24-byte struct, read and written by the ioctl.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
        Errno::result(r)?;
        Ok(Uffd { fd })
    }

    /// A userfaultfd whose handshake was made already (one the tracker holds).
    pub fn adopt(fd: OwnedFd) -> Uffd {
        Uffd { fd }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// `UFFDIO_REGISTER` of `[start, start + len)` in write-protect mode.
    pub fn register_wp(&self, start: u64, len: u64) -> nix::Result<()> {
        let mut reg = UffdioRegister {
            start,
            len,
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: `reg` is the kernel's 32-byte struct, read and written by the ioctl.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                UFFDIO_REGISTER,
                &mut reg as *mut UffdioRegister,
            )
        };
        Errno::result(r).map(drop)
    }

    /// `UFFDIO_WRITEPROTECT` of `[start, start + len)`: every page, populated or not,
    /// counts as not written from now on.
    pub fn write_protect(&self, start: u64, len: u64) -> nix::Result<()> {
        let mut wp = UffdioWriteprotect {
            start,
            len,
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: `wp` is the kernel's 24-byte struct, read by the ioctl.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                UFFDIO_WRITEPROTECT,
                &mut wp as *mut UffdioWriteprotect,
            )
        };
        Errno::result(r).map(drop)
    }
}
