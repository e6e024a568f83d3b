//! Packet sockets (`AF_PACKET`: `SOCK_RAW`, `SOCK_DGRAM`, `SOCK_PACKET`): protocol,
//! bound interface, `SOL_PACKET` options, memberships, rings and fanout, from
//! `packet_diag` and `getsockopt`. The restore side is `restore/files/packet.rs`.
//!
//! Received packets cannot be put back: a socket with packets queued, or a ring with
//! frames not handed back to the kernel (received frames the owner has not released,
//! frames queued for sending), is refused. A fanout group whose program cannot be read
//! back (`PACKET_FANOUT_CBPF`/`EBPF`) or whose id the kernel chose
//! (`PACKET_FANOUT_FLAG_UNIQUEID`) is refused too.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::{FdKind, FilesImage};
use crate::image::mm::{Vma, VmaKind};
use crate::image::sock::{PacketMembership, PacketRing, PacketSocket, SockKind};
use crate::sys::sock_diag::{PacketDiag, PDI_AUXDATA, PDI_LOSS, PDI_ORIGDEV};
use crate::sys::socket::packet::*;
use crate::sys::socket::{getsockopt_int, packet_rings, readable, sockname};

/// `PACKET_MR_*` membership types stasis knows how to add again.
const PACKET_MR_UNICAST: u16 = 3;
/// `TPACKET_V3`: rings of blocks, each with a status word.
const TPACKET_V3: i32 = 2;
/// Fanout types whose program is not readable, and the flag of a kernel-chosen id.
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_EBPF: u32 = 7;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

pub fn packet_kind(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
) -> Result<FdKind, DumpError> {
    let pid = ctx.pid;
    let refuse = |what: String| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a packet socket {what}, which stasis cannot checkpoint"
        ))
    };
    let Some(d) = ctx.packet_table(ino)?.get(&(ino as u32)).cloned() else {
        return Err(refuse("that packet_diag does not list".into()));
    };
    let get = |name: i32| getsockopt_int(sock.as_fd(), SOL_PACKET, name);
    let queued = readable(sock.as_fd()).map_err(|e| refuse(format!("(SIOCINQ: {e})")))?;
    if queued > 0 {
        return Err(refuse(format!(
            "with received packets not read yet ({queued} bytes first)"
        )));
    }
    let ints = ints(&d, &get).map_err(|e| refuse(format!("(getsockopt: {e})")))?;
    let version = ints
        .iter()
        .find(|o| o.0 == PACKET_VERSION)
        .map_or(0, |o| o.1);
    check_rings(sock.as_fd(), &d, version).map_err(refuse)?;
    let fanout = fanout(&d, &get).map_err(refuse)?;
    let kind = SockKind {
        family: libc::AF_PACKET,
        ty: i32::from(d.sock_type),
        protocol: i32::from(d.protocol.to_be()),
    };
    let opts = ctx.options((fd, ino), sock.as_fd(), kind, false)?;
    Ok(FdKind::Packet(Box::new(PacketSocket {
        ino,
        sock_type: i32::from(d.sock_type),
        protocol: d.protocol,
        ifindex: d.ifindex,
        device: spkt_device(sock.as_fd(), &d).map_err(|e| refuse(format!("(getsockname: {e})")))?,
        ints,
        memberships: memberships(&d).map_err(refuse)?,
        rx_ring: d.rx_ring.map(ring),
        tx_ring: d.tx_ring.map(ring),
        fanout,
        opts,
    })))
}

/// The `int` options other than 0, in the order the restore sets them (the version and
/// reserve before anything sized by them).
fn ints(d: &PacketDiag, get: &dyn Fn(i32) -> nix::Result<i32>) -> nix::Result<Vec<(i32, i32)>> {
    let flag = |bit: u32| i32::from(d.flags & bit != 0);
    let mut out = vec![
        (PACKET_VERSION, d.version as i32),
        (PACKET_RESERVE, d.reserve as i32),
        (PACKET_TIMESTAMP, d.tstamp as i32),
        (PACKET_COPY_THRESH, d.copy_thresh as i32),
        (PACKET_AUXDATA, flag(PDI_AUXDATA)),
        (PACKET_ORIGDEV, flag(PDI_ORIGDEV)),
        (PACKET_LOSS, flag(PDI_LOSS)),
    ];
    // `SOCK_PACKET` sockets have no `SOL_PACKET` options.
    let readable = [
        PACKET_VNET_HDR_SZ,
        PACKET_TX_HAS_OFF,
        PACKET_QDISC_BYPASS,
        PACKET_IGNORE_OUTGOING,
    ];
    let spkt = i32::from(d.sock_type) == crate::sys::socket::SOCK_PACKET;
    for name in readable.into_iter().filter(|_| !spkt) {
        match get(name) {
            Ok(v) => out.push((name, v)),
            Err(nix::errno::Errno::ENOPROTOOPT | nix::errno::Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    out.retain(|o| o.1 != 0);
    Ok(out)
}

/// The memberships; a type stasis does not know is refused.
fn memberships(d: &PacketDiag) -> Result<Vec<PacketMembership>, String> {
    d.mclist
        .iter()
        .map(|(ifindex, count, mr_type, address)| {
            if *mr_type > PACKET_MR_UNICAST {
                return Err(format!("with a membership of unknown type {mr_type}"));
            }
            Ok(PacketMembership {
                ifindex: *ifindex,
                mr_type: *mr_type,
                address: address.clone(),
                count: *count,
            })
        })
        .collect()
}

fn ring(r: [u32; 7]) -> PacketRing {
    let [block_size, block_nr, frame_size, frame_nr, retire_tmo, sizeof_priv, features] = r;
    PacketRing {
        block_size,
        block_nr,
        frame_size,
        frame_nr,
        retire_tmo,
        sizeof_priv,
        features,
    }
}

/// `PACKET_FANOUT` as read back; refused when it cannot be set back as it is.
fn fanout(d: &PacketDiag, get: &dyn Fn(i32) -> nix::Result<i32>) -> Result<Option<u32>, String> {
    if d.fanout.is_none() {
        return Ok(None);
    }
    let v = get(PACKET_FANOUT).map_err(|e| format!("(getsockopt(PACKET_FANOUT): {e})"))? as u32;
    let (ty, flags) = ((v >> 16) & 0xff, (v >> 24) << 8);
    if ty == PACKET_FANOUT_CBPF || ty == PACKET_FANOUT_EBPF {
        return Err(format!(
            "in fanout group {} steered by a BPF program (type {ty}), which cannot be read back",
            v & 0xffff
        ));
    }
    if flags & PACKET_FANOUT_FLAG_UNIQUEID != 0 {
        return Err(format!(
            "in fanout group {} whose id the kernel chose (PACKET_FANOUT_FLAG_UNIQUEID)",
            v & 0xffff
        ));
    }
    Ok(Some(v))
}

/// Every frame (block, for a `TPACKET_V3` receive ring) of the rings must belong to the
/// kernel: one the owner holds (received, not released) or one queued for sending would
/// be lost.
fn check_rings(sock: BorrowedFd<'_>, d: &PacketDiag, version: i32) -> Result<(), String> {
    let rx = d.rx_ring.map(ring);
    let tx = d.tx_ring.map(ring);
    let len = rx.as_ref().map_or(0, PacketRing::len) + tx.as_ref().map_or(0, PacketRing::len);
    if len == 0 {
        return Ok(());
    }
    let bytes =
        packet_rings(sock, len as usize).map_err(|e| format!("(mmap of its rings: {e})"))?;
    let rx_len = rx.as_ref().map_or(0, PacketRing::len) as usize;
    if let Some(r) = &rx {
        busy_slot(&bytes[..rx_len], r, version == TPACKET_V3).map_or(Ok(()), |i| {
            Err(format!("with received frame {i} of its ring not released"))
        })?;
    }
    if let Some(r) = &tx {
        busy_slot(&bytes[rx_len..], r, false).map_or(Ok(()), |i| {
            Err(format!("with frame {i} of its send ring queued"))
        })?;
    }
    Ok(())
}

/// The first frame (or block) of ring `r` (its bytes) whose status is not
/// `TP_STATUS_KERNEL` / `TP_STATUS_AVAILABLE` (0): the first word of a frame header, the
/// `block_status` word at byte 8 of a `TPACKET_V3` block.
pub fn busy_slot(bytes: &[u8], r: &PacketRing, blocks: bool) -> Option<u32> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    if blocks {
        return (0..r.block_nr).find(|b| word(*b as usize * r.block_size as usize + 8) != 0);
    }
    let per_block = (r.block_size / r.frame_size.max(1)).max(1);
    (0..r.frame_nr).find(|i| {
        let at = (i / per_block) * r.block_size + (i % per_block) * r.frame_size;
        word(at as usize) != 0
    })
}

/// A `SOCK_PACKET` socket's device: the name `getsockname` reports (a `struct sockaddr`
/// whose 14 data bytes hold it), when bound.
fn spkt_device(sock: BorrowedFd<'_>, d: &PacketDiag) -> nix::Result<Vec<u8>> {
    if i32::from(d.sock_type) != crate::sys::socket::SOCK_PACKET || d.ifindex == 0 {
        return Ok(Vec::new());
    }
    let sa = sockname(sock)?;
    let name = sa.get(2..16).unwrap_or_default();
    Ok(name.split(|b| *b == 0).next().unwrap_or_default().to_vec())
}

/// Every mapping of a packet socket's rings (`VmaKind::PacketRing`) must be of a socket
/// an fd of the process holds: the restore maps it again from that fd.
pub fn check_ring_mappings(
    pid: i32,
    vmas: &[Vma],
    files: &FilesImage,
    shares_files: bool,
) -> Result<(), DumpError> {
    for v in vmas {
        let VmaKind::PacketRing { socket, .. } = v.kind else {
            continue;
        };
        let held = files
            .fds
            .iter()
            .any(|e| matches!(&e.kind, FdKind::Packet(p) if p.ino == socket));
        if shares_files || !held {
            return Err(DumpError::unsupported(format!(
                "mapping {:#x}-{:#x} of pid {pid} is the ring of packet socket:[{socket}], which no fd of the process holds (or its fd table is shared), which stasis cannot checkpoint",
                v.start, v.end
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn busy_slots_of_frame_and_block_rings() {
        let r = PacketRing {
            block_size: 4096,
            block_nr: 2,
            frame_size: 1024,
            frame_nr: 8,
            retire_tmo: 0,
            sizeof_priv: 0,
            features: 0,
        };
        let mut bytes = vec![0u8; 8192];
        assert_eq!(busy_slot(&bytes, &r, false), None);
        bytes[4096 + 2048] = 1;
        assert_eq!(busy_slot(&bytes, &r, false), Some(6));
        assert_eq!(busy_slot(&bytes, &r, true), None);
        bytes[4096 + 8] = 1;
        assert_eq!(busy_slot(&bytes, &r, true), Some(1));
    }
}
