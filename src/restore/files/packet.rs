//! Packet sockets made again: `socket`, the options that must come first (buffer sizes,
//! `SO_BINDTODEVICE`), `bind` to the saved interface (a `SOCK_PACKET` socket to its
//! device's name), the `SOL_PACKET` options, memberships, rings, fanout, then the late
//! options and the file status flags. The dump side is `dump/files/packet.rs`.
//!
//! Ordering requirements: the version, reserve and the other `int` options before the
//! rings (the kernel refuses them once a ring exists); fanout after `bind` (a socket
//! joins a group only once it is bound to its protocol). A ring mapped by the process is
//! mapped again once the fd table is complete ([`map_rings`]).

use super::{sockopts, Install};
use crate::image::files::{FdKind, FilesImage};
use crate::image::mm::{MmImage, VmaKind};
use crate::image::sock::{PacketRing, PacketSocket};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::socket::packet as k;

pub fn restore(at: &Install, p: &PacketSocket) -> Result<(), RestoreError> {
    let protocol = u64::from(p.protocol.to_be());
    let args = [libc::AF_PACKET as u64, p.sock_type as u64, protocol];
    let fd = crate::restore::ns::net_sockets::around(at.child, p.ino, || {
        at.call("socket(AF_PACKET)", libc::SYS_socket, &args)
    })?;
    sockopts::early(at.child, fd, &p.opts)?;
    bind(at, fd, p)?;
    for &(name, value) in &p.ints {
        set(at, fd, name, &value.to_ne_bytes())?;
    }
    for m in &p.memberships {
        let mut mreq = (m.ifindex as i32).to_ne_bytes().to_vec();
        mreq.extend_from_slice(&m.mr_type.to_ne_bytes());
        mreq.extend_from_slice(&(m.address.len() as u16).to_ne_bytes());
        mreq.extend_from_slice(&m.address);
        mreq.resize(40, 0);
        for _ in 0..m.count.max(1) {
            set(at, fd, k::PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
    }
    for (name, r) in [
        (k::PACKET_RX_RING, &p.rx_ring),
        (k::PACKET_TX_RING, &p.tx_ring),
    ] {
        if let Some(r) = r {
            set(at, fd, name, &ring_request(r))?;
        }
    }
    if let Some(f) = p.fanout {
        set(at, fd, k::PACKET_FANOUT, &f.to_ne_bytes())?;
    }
    sockopts::late(at.child, fd, &p.opts, false)?;
    at.set_status_flags(fd)?;
    at.place(fd)
}

/// `bind` to the saved interface: a `struct sockaddr_ll` (family, protocol, ifindex), or
/// for `SOCK_PACKET` a `struct sockaddr` holding the device's name. Unbound: nothing.
fn bind(at: &Install, fd: u64, p: &PacketSocket) -> Result<(), RestoreError> {
    let mut sa = (libc::AF_PACKET as u16).to_ne_bytes().to_vec();
    if p.sock_type == crate::sys::socket::SOCK_PACKET {
        if p.device.is_empty() {
            return Ok(());
        }
        sa.extend_from_slice(&p.device[..p.device.len().min(13)]);
        sa.resize(16, 0);
    } else {
        if p.ifindex == 0 {
            return Ok(());
        }
        sa.extend_from_slice(&p.protocol.to_be().to_ne_bytes());
        sa.extend_from_slice(&(p.ifindex as i32).to_ne_bytes());
        sa.resize(20, 0);
    }
    let addr = at.child.put(super::prep::ADDR_OFF, &sa)?;
    at.call(
        "bind(AF_PACKET)",
        libc::SYS_bind,
        &[fd, addr, sa.len() as u64],
    )?;
    Ok(())
}

/// `struct tpacket_req3` (its first four words are `struct tpacket_req`, which the
/// kernel reads alone for versions 1 and 2).
fn ring_request(r: &PacketRing) -> Vec<u8> {
    [
        r.block_size,
        r.block_nr,
        r.frame_size,
        r.frame_nr,
        r.retire_tmo,
        r.sizeof_priv,
        r.features,
    ]
    .iter()
    .flat_map(|w| w.to_ne_bytes())
    .collect()
}

fn set(at: &Install, fd: u64, name: i32, value: &[u8]) -> Result<(), RestoreError> {
    let addr = at.child.put(super::prep::ARG_OFF, value)?;
    let args = [
        fd,
        k::SOL_PACKET as u64,
        name as u64,
        addr,
        value.len() as u64,
    ];
    at.call("setsockopt(SOL_PACKET)", libc::SYS_setsockopt, &args)?;
    Ok(())
}

/// Maps every packet ring the process mapped (`VmaKind::PacketRing`) again, from the fd
/// holding its socket, at its address, with its protection and sharing.
///
/// Ordering requirements: after the fd table is complete (the socket and its rings
/// exist); the range was left free by the Mappings stage.
pub fn map_rings(child: &Child, mm: &MmImage, files: &FilesImage) -> Result<(), RestoreError> {
    for v in &mm.vmas {
        let VmaKind::PacketRing { socket, offset } = v.kind else {
            continue;
        };
        let fd = files.fds.iter().find_map(|e| match &e.kind {
            FdKind::Packet(p) if p.ino == socket => Some(e.fd),
            _ => None,
        });
        let Some(fd) = fd else {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "mapping {:#x}-{:#x} of pid {}: no fd holds packet socket:[{socket}]",
                    v.start,
                    v.end,
                    child.pid()
                ),
            });
        };
        let sharing = if v.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let flags = (sharing | libc::MAP_FIXED_NOREPLACE) as u64;
        let args = [
            v.start,
            v.len(),
            u64::from(v.prot),
            flags,
            fd as u64,
            offset,
        ];
        child
            .remote()
            .call("mmap(packet ring)", libc::SYS_mmap, &args)?;
    }
    Ok(())
}
