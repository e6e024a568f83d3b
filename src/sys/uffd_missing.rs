//! # Safety
//! The `UFFDIO_API`, `UFFDIO_REGISTER`, `UFFDIO_COPY`, `UFFDIO_ZEROPAGE` and `UFFDIO_WAKE`
//! ioctls on a userfaultfd, each with an argument struct that lives on our side for the
//! duration of the call, and `read(2)` of whole `struct uffd_msg`s into a local array.
//!
//! A userfaultfd in *missing* mode (post-copy, `lazy/`): a read or write of a page of a
//! registered range that has no page yet stops the faulting thread and queues a message;
//! the thread runs on once a page is put there (`UFFDIO_COPY`, `UFFDIO_ZEROPAGE`). With
//! the non-cooperative features the kernel also reports `MADV_DONTNEED`/`MADV_REMOVE`
//! (`UFFD_EVENT_REMOVE`), `munmap` (`UFFD_EVENT_UNMAP`), `mremap` (`UFFD_EVENT_REMAP`) and
//! `fork` (`UFFD_EVENT_FORK`, with a new userfaultfd for the child) and holds the caller
//! until the message is read. The ioctls act on the address space of the process that
//! created the userfaultfd, whoever calls them.
//! See <https://docs.kernel.org/admin-guide/mm/userfaultfd.html> and
//! tools/testing/selftests/mm/uffd-common.c.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `UFFD_API`.
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `_IOR(0xAA, 0x02, struct uffdio_range)`.
const UFFDIO_WAKE: libc::c_ulong = 0x8010_aa02;
/// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
/// `_IOWR(0xAA, 0x04, struct uffdio_zeropage)`.
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xc020_aa04;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

/// `UFFD_FEATURE_EVENT_FORK`: a fork reports the child's new userfaultfd.
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `UFFD_FEATURE_EVENT_REMAP`: `mremap` moves are reported.
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// `UFFD_FEATURE_EVENT_REMOVE`: `MADV_DONTNEED`/`MADV_REMOVE` are reported.
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_EVENT_UNMAP`: `munmap` (and mappings replaced) are reported.
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;
/// Every event post-copy needs.
pub const LAZY_FEATURES: u64 =
    FEATURE_EVENT_FORK | FEATURE_EVENT_REMAP | FEATURE_EVENT_REMOVE | FEATURE_EVENT_UNMAP;

const EVENT_PAGEFAULT: u8 = 0x12;
const EVENT_FORK: u8 = 0x13;
const EVENT_REMAP: u8 = 0x14;
const EVENT_REMOVE: u8 = 0x15;
const EVENT_UNMAP: u8 = 0x16;

use super::uffd::{UffdioApi, UffdioRegister};

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct UffdioZeropage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffd_msg`: 8 bytes of header (the event first), 24 of argument.
#[repr(C)]
#[derive(Clone, Copy)]
struct UffdMsg {
    event: u8,
    reserved: [u8; 7],
    arg: [u64; 3],
}

/// One message read from a missing-mode userfaultfd.
#[derive(Debug)]
pub enum Event {
    /// A thread waits for the page at `addr` (not page aligned).
    Fault { addr: u64 },
    /// The process forked: the child's mappings are registered with this new userfaultfd.
    Fork { uffd: OwnedFd },
    /// `[from, from + len)` moved to `to`.
    Remap { from: u64, to: u64, len: u64 },
    /// `[start, end)` was dropped (`MADV_DONTNEED`/`MADV_REMOVE`): it reads as zeros.
    Remove { start: u64, end: u64 },
    /// `[start, end)` was unmapped.
    Unmap { start: u64, end: u64 },
    /// A message this kernel sent that stasis does not know (its number).
    Other(u8),
}

/// What [`copy`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// Every byte is in place (and the waiters woken).
    All,
    /// The first `done` bytes are in place, the page after them was present already.
    Exists { done: u64 },
    /// The first `done` bytes are in place, the rest must wait: the address space is
    /// changing (an event is queued, to be read first).
    Again { done: u64 },
}

/// `ioctl(UFFDIO_API)` asking for `features`; `EINVAL` if the kernel lacks one.
pub fn api(uffd: BorrowedFd<'_>, features: u64) -> nix::Result<u64> {
    let mut api = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: `api` is the kernel's 24-byte struct, read and written by the ioctl.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    Errno::result(r).map(|_| api.features)
}

/// `ioctl(UFFDIO_REGISTER)` of `[start, start + len)` in missing mode.
pub fn register_missing(uffd: BorrowedFd<'_>, start: u64, len: u64) -> nix::Result<()> {
    let mut reg = UffdioRegister {
        start,
        len,
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: `reg` is the kernel's 32-byte struct, read and written by the ioctl.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_REGISTER,
            &mut reg as *mut UffdioRegister,
        )
    };
    Errno::result(r).map(drop)
}

/// `ioctl(UFFDIO_COPY)`: `data` (a whole number of pages) becomes the pages at `dst` of
/// the userfaultfd's process, and the threads waiting for them are woken.
pub fn copy(uffd: BorrowedFd<'_>, dst: u64, data: &[u8]) -> nix::Result<Copied> {
    let mut c = UffdioCopy {
        dst,
        src: data.as_ptr() as u64,
        len: data.len() as u64,
        mode: 0,
        copy: 0,
    };
    // SAFETY: `c` is the kernel's 40-byte struct; `src`/`len` describe `data`, which
    // lives (and is only read) for the whole call.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_COPY, &mut c as *mut UffdioCopy) };
    let done = c.copy.max(0) as u64;
    match Errno::result(r) {
        Ok(_) => Ok(Copied::All),
        Err(Errno::EEXIST) => Ok(Copied::Exists { done }),
        Err(Errno::EAGAIN) => Ok(Copied::Again { done }),
        Err(e) => Err(e),
    }
}

/// `ioctl(UFFDIO_ZEROPAGE)` of one page at `addr`; a page already there is no error.
pub fn zeropage(uffd: BorrowedFd<'_>, addr: u64) -> nix::Result<()> {
    let mut z = UffdioZeropage {
        start: addr,
        len: 4096,
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: `z` is the kernel's 32-byte struct, read and written by the ioctl.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_ZEROPAGE,
            &mut z as *mut UffdioZeropage,
        )
    };
    match Errno::result(r) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `ioctl(UFFDIO_WAKE)` of the page at `addr`: threads waiting for a page put there
/// meanwhile run on.
pub fn wake(uffd: BorrowedFd<'_>, addr: u64) -> nix::Result<()> {
    let mut r = UffdioRange {
        start: addr,
        len: 4096,
    };
    // SAFETY: `r` is the kernel's 16-byte struct, read by the ioctl.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_WAKE, &mut r as *mut UffdioRange) };
    Errno::result(ret).map(drop)
}

/// Reads the queued messages (the fd is non-blocking): an empty vector when none is.
pub fn read_events(uffd: BorrowedFd<'_>) -> nix::Result<Vec<Event>> {
    let mut msgs = [UffdMsg {
        event: 0,
        reserved: [0; 7],
        arg: [0; 3],
    }; 64];
    let size = std::mem::size_of_val(&msgs);
    // SAFETY: `msgs` is a local array of `size` bytes; the kernel writes whole 32-byte
    // `struct uffd_msg`s into it (`UffdMsg` has that layout).
    let n = unsafe { libc::read(uffd.as_raw_fd(), msgs.as_mut_ptr().cast(), size) };
    let n = match Errno::result(n) {
        Ok(n) => n as usize / std::mem::size_of::<UffdMsg>(),
        Err(Errno::EAGAIN) => 0,
        Err(e) => return Err(e),
    };
    Ok(msgs[..n].iter().map(event).collect())
}

/// Tries post-copy on a page of our own: a userfaultfd with [`LAZY_FEATURES`], a fresh
/// anonymous page registered in missing mode, a page copied in with `UFFDIO_COPY` and
/// read back. Returns the features the handshake enabled.
pub fn probe() -> nix::Result<u64> {
    let uffd = crate::sys::probe::userfaultfd()?;
    let features = api(uffd.as_fd(), LAZY_FEATURES)?;
    // SAFETY: a new private anonymous page, at an address the kernel picks; nothing else
    // refers to it, and it is unmapped below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    let addr = page as u64;
    let data = [0x5au8; 4096];
    let tried =
        register_missing(uffd.as_fd(), addr, 4096).and_then(|()| copy(uffd.as_fd(), addr, &data));
    // SAFETY: the page is mapped and, after a successful copy, present: reading one byte
    // of it cannot fault into the userfaultfd.
    let back = matches!(tried, Ok(Copied::All)).then(|| unsafe { *(page as *const u8) });
    // Closed first: with `UFFD_EVENT_UNMAP` asked for, a munmap waits for its event to be
    // read.
    drop(uffd);
    // SAFETY: unmaps exactly the page mapped above, which nothing refers to any more.
    unsafe { libc::munmap(page, 4096) };
    match (tried, back) {
        (Ok(Copied::All), Some(0x5a)) => Ok(features),
        (Err(e), _) => Err(e),
        _ => Err(Errno::EIO),
    }
}

fn event(m: &UffdMsg) -> Event {
    let [a, b, c] = m.arg;
    match m.event {
        // `pagefault`: flags, address, thread id.
        EVENT_PAGEFAULT => Event::Fault { addr: b },
        EVENT_FORK => {
            // SAFETY: the kernel installed this fd in our table for us (`fork.ufd`).
            let uffd = unsafe { OwnedFd::from_raw_fd(a as u32 as i32) };
            Event::Fork { uffd }
        }
        EVENT_REMAP => Event::Remap {
            from: a,
            to: b,
            len: c,
        },
        EVENT_REMOVE => Event::Remove { start: a, end: b },
        EVENT_UNMAP => Event::Unmap { start: a, end: b },
        other => Event::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_is_the_kernels_size() {
        assert_eq!(std::mem::size_of::<UffdMsg>(), 32);
        assert_eq!(std::mem::size_of::<UffdioCopy>(), 40);
    }

    #[test]
    fn messages_decode() {
        let m = UffdMsg {
            event: EVENT_REMAP,
            reserved: [0; 7],
            arg: [0x1000, 0x9000, 0x2000],
        };
        assert!(matches!(
            event(&m),
            Event::Remap {
                from: 0x1000,
                to: 0x9000,
                len: 0x2000
            }
        ));
        let m = UffdMsg {
            event: EVENT_PAGEFAULT,
            reserved: [0; 7],
            arg: [1, 0x7f00_1234, 42],
        };
        assert!(matches!(event(&m), Event::Fault { addr: 0x7f00_1234 }));
    }
}
