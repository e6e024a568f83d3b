//! # Safety
//! The ioctls of `/dev/net/tun` files (linux/if_tun.h, x86_64 values), for the tun and
//! tap devices of a tree's network namespaces. Each call passes either an integer by
//! value or a pointer to a Rust value of exactly the size the request reads or writes
//! (`struct ifreq`: 40 bytes; `int`; `struct sock_fprog`: 16 bytes), on an fd borrowed
//! for the call; an fd the kernel returns is wrapped in `OwnedFd` at once.
//! See [tuntap.rst](https://docs.kernel.org/networking/tuntap.html).
//!
//! What the values mean lives above, in `dump/ns/tun.rs` and `dump/files/tun.rs`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// Device flags (linux/if_tun.h).
pub const IFF_TUN: u16 = 0x0001;
pub const IFF_TAP: u16 = 0x0002;
pub const IFF_NAPI: u16 = 0x0010;
pub const IFF_NAPI_FRAGS: u16 = 0x0020;
pub const IFF_MULTI_QUEUE: u16 = 0x0100;
pub const IFF_ATTACH_QUEUE: u16 = 0x0200;
pub const IFF_DETACH_QUEUE: u16 = 0x0400;
pub const IFF_PERSIST: u16 = 0x0800;
/// `IFF_NO_PI` at `TUNSETIFF`; `TUNGETIFF` reports `IFF_NOFILTER` (no socket filter on
/// this queue) at the same bit, or'ed in.
pub const IFF_NO_PI: u16 = 0x1000;
pub const IFF_VNET_HDR: u16 = 0x4000;

const TUNSETIFF: u64 = 0x4004_54ca;
const TUNSETPERSIST: u64 = 0x4004_54cb;
const TUNSETOWNER: u64 = 0x4004_54cc;
const TUNSETGROUP: u64 = 0x4004_54ce;
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
const TUNGETIFF: u64 = 0x8004_54d2;
const TUNGETSNDBUF: u64 = 0x8004_54d3;
const TUNSETSNDBUF: u64 = 0x4004_54d4;
const TUNGETVNETHDRSZ: u64 = 0x8004_54d7;
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8;
const TUNSETQUEUE: u64 = 0x4004_54d9;
const TUNSETIFINDEX: u64 = 0x4004_54da;
const TUNGETFILTER: u64 = 0x8010_54db;
const TUNSETVNETLE: u64 = 0x4004_54dc;
const TUNGETVNETLE: u64 = 0x8004_54dd;
const TUNSETVNETBE: u64 = 0x4004_54de;
const TUNGETVNETBE: u64 = 0x8004_54df;
const TUNGETDEVNETNS: u64 = 0x0000_54e3;
/// `SIOCGSKNS` (linux/sockios.h): the network namespace of the file's socket.
const SIOCGSKNS: u64 = 0x894c;

/// `struct ifreq` as the tun ioctls use it: the name, then `ifr_flags`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; 16],
    flags: u16,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &str, flags: u16) -> IfReq {
        let mut r = IfReq {
            name: [0; 16],
            flags,
            _pad: [0; 22],
        };
        let n = name.len().min(15);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }
}

fn with_ifreq(fd: BorrowedFd<'_>, req: u64, r: &mut IfReq) -> nix::Result<()> {
    // SAFETY: the tun requests passed here read or write one `struct ifreq` (40 bytes,
    // the size of `IfReq`) through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, r as *mut IfReq) };
    Errno::result(rc).map(drop)
}

fn by_value(fd: BorrowedFd<'_>, req: u64, value: u64) -> nix::Result<()> {
    // SAFETY: the requests passed here take their argument as an integer, not a pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, value) };
    Errno::result(rc).map(drop)
}

fn get_int(fd: BorrowedFd<'_>, req: u64) -> nix::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the requests passed here write one int through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    Errno::result(rc).map(|_| v)
}

fn set_int(fd: BorrowedFd<'_>, req: u64, v: i32) -> nix::Result<()> {
    // SAFETY: the requests passed here read one int through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const libc::c_int) };
    Errno::result(rc).map(drop)
}

/// `TUNSETIFF`: attaches the file to device `name` (made if missing) with `flags`.
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: u16) -> nix::Result<()> {
    with_ifreq(fd, TUNSETIFF, &mut IfReq::new(name, flags))
}

/// `TUNGETIFF`: the device the file is attached to and its flags (`EBADFD`: none).
pub fn get_iff(fd: BorrowedFd<'_>) -> nix::Result<(String, u16)> {
    let mut r = IfReq::new("", 0);
    with_ifreq(fd, TUNGETIFF, &mut r)?;
    let end = r.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok((
        String::from_utf8_lossy(&r.name[..end]).into_owned(),
        r.flags,
    ))
}

/// `TUNSETQUEUE` with `IFF_ATTACH_QUEUE` or `IFF_DETACH_QUEUE`.
pub fn set_queue(fd: BorrowedFd<'_>, flags: u16) -> nix::Result<()> {
    with_ifreq(fd, TUNSETQUEUE, &mut IfReq::new("", flags))
}

/// `TUNSETPERSIST`.
pub fn set_persist(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    by_value(fd, TUNSETPERSIST, u64::from(on))
}

/// `TUNSETOWNER` (a uid of the caller's user namespace).
pub fn set_owner(fd: BorrowedFd<'_>, uid: u32) -> nix::Result<()> {
    by_value(fd, TUNSETOWNER, u64::from(uid))
}

/// `TUNSETGROUP`.
pub fn set_group(fd: BorrowedFd<'_>, gid: u32) -> nix::Result<()> {
    by_value(fd, TUNSETGROUP, u64::from(gid))
}

/// Offload flags of `TUNSETOFFLOAD` (linux/if_tun.h).
pub const TUN_F_CSUM: u32 = 0x01;
pub const TUN_F_TSO4: u32 = 0x02;
pub const TUN_F_TSO6: u32 = 0x04;
pub const TUN_F_TSO_ECN: u32 = 0x08;
pub const TUN_F_USO4: u32 = 0x20;
pub const TUN_F_USO6: u32 = 0x40;

/// `TUNSETOFFLOAD`: the offloads the reader of the device takes (`TUN_F_*`).
pub fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> nix::Result<()> {
    by_value(fd, TUNSETOFFLOAD, u64::from(flags))
}

/// `TUNSETIFINDEX`: the index the next `TUNSETIFF` gives the device it makes.
pub fn set_ifindex(fd: BorrowedFd<'_>, index: i32) -> nix::Result<()> {
    set_int(fd, TUNSETIFINDEX, index)
}

/// A device-wide integer a file attached to it reads and sets.
#[derive(Clone, Copy, Debug)]
pub enum Setting {
    /// `TUNGETSNDBUF`/`TUNSETSNDBUF`.
    SndBuf,
    /// `TUNGETVNETHDRSZ`/`TUNSETVNETHDRSZ`.
    VnetHdrSz,
    /// `TUNGETVNETLE`/`TUNSETVNETLE`.
    VnetLe,
    /// `TUNGETVNETBE`/`TUNSETVNETBE` (`EINVAL` without `CONFIG_TUN_VNET_CROSS_LE`).
    VnetBe,
}

impl Setting {
    pub const ALL: [Setting; 4] = [
        Setting::SndBuf,
        Setting::VnetHdrSz,
        Setting::VnetLe,
        Setting::VnetBe,
    ];

    /// Its name, as the image keeps it.
    pub fn name(self) -> &'static str {
        match self {
            Setting::SndBuf => "sndbuf",
            Setting::VnetHdrSz => "vnet_hdr_sz",
            Setting::VnetLe => "vnet_le",
            Setting::VnetBe => "vnet_be",
        }
    }

    fn requests(self) -> (u64, u64) {
        match self {
            Setting::SndBuf => (TUNGETSNDBUF, TUNSETSNDBUF),
            Setting::VnetHdrSz => (TUNGETVNETHDRSZ, TUNSETVNETHDRSZ),
            Setting::VnetLe => (TUNGETVNETLE, TUNSETVNETLE),
            Setting::VnetBe => (TUNGETVNETBE, TUNSETVNETBE),
        }
    }

    pub fn get(self, fd: BorrowedFd<'_>) -> nix::Result<i32> {
        get_int(fd, self.requests().0)
    }

    pub fn set(self, fd: BorrowedFd<'_>, v: i32) -> nix::Result<()> {
        set_int(fd, self.requests().1, v)
    }
}

/// `TUNGETFILTER`: the length of a tap device's socket filter (`TUNATTACHFILTER`), 0 for
/// none.
pub fn filter_len(fd: BorrowedFd<'_>) -> nix::Result<u16> {
    let mut prog = [0u8; 16];
    // SAFETY: TUNGETFILTER writes one `struct sock_fprog` (16 bytes) through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETFILTER, prog.as_mut_ptr()) };
    Errno::result(rc).map(|_| u16::from_ne_bytes([prog[0], prog[1]]))
}

fn ns_fd(fd: BorrowedFd<'_>, req: u64) -> nix::Result<OwnedFd> {
    // SAFETY: the request takes no argument and returns a new fd.
    let rc = Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), req) })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// `SIOCGSKNS`: the network namespace the file was opened in (where it looks devices up).
pub fn file_netns(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    ns_fd(fd, SIOCGSKNS)
}

/// `TUNGETDEVNETNS`: the network namespace of the device the file is attached to.
pub fn device_netns(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    ns_fd(fd, TUNGETDEVNETNS)
}
