//! Netlink sockets (`AF_NETLINK`): protocol, bound port id, multicast groups,
//! destination and `SOL_NETLINK` options, from `netlink_diag` (which lists bound sockets
//! only: one it does not list is unbound) and `getsockopt`. The restore side is
//! `restore/files/netlink.rs`.
//!
//! Refused: a socket with messages queued (the kernel's replies and notifications cannot
//! be sent to it again), and one with a dump in progress (its state is the kernel's).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{NetlinkSocket, SockKind};
use crate::sys::sock_diag::NDIAG_FLAG_CB_RUNNING;
use crate::sys::socket::getsockopt_int;
use crate::sys::socket::netlink::{INT_OPTIONS, SOL_NETLINK};

pub fn netlink_kind(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
) -> Result<FdKind, DumpError> {
    let pid = ctx.pid;
    let refuse = |what: String| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a netlink socket {what}, which stasis cannot checkpoint"
        ))
    };
    if has_data(sock.as_fd()).map_err(|e| refuse(format!("(peek at its queue: {e})")))? {
        return Err(refuse("with messages queued, not read yet".into()));
    }
    let get = |level: i32, name: i32| getsockopt_int(sock.as_fd(), level, name);
    let ty = get(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| refuse(format!("(SO_TYPE: {e})")))?;
    let protocol = get(libc::SOL_SOCKET, libc::SO_PROTOCOL)
        .map_err(|e| refuse(format!("(SO_PROTOCOL: {e})")))?;
    let d = ctx.netlink_table(ino)?.get(&(ino as u32)).cloned();
    if d.as_ref()
        .is_some_and(|d| d.flags & NDIAG_FLAG_CB_RUNNING != 0)
    {
        return Err(refuse("with a dump in progress".into()));
    }
    let mut ints = Vec::new();
    for name in INT_OPTIONS {
        match get(SOL_NETLINK, name) {
            Ok(0) | Err(nix::errno::Errno::ENOPROTOOPT) => {}
            Ok(v) => ints.push((name, v)),
            Err(e) => return Err(refuse(format!("(getsockopt({name}): {e})"))),
        }
    }
    let kind = SockKind {
        family: libc::AF_NETLINK,
        ty,
        protocol,
    };
    let opts = ctx.options((fd, ino), sock.as_fd(), kind, false)?;
    let d = d.unwrap_or_default();
    Ok(FdKind::Netlink(Box::new(NetlinkSocket {
        ino,
        sock_type: ty,
        protocol,
        portid: d.portid,
        groups: groups(&d.groups),
        dst: (d.state == 1).then_some((d.dst_portid, d.dst_group)),
        ints,
        opts,
    })))
}

/// The group numbers (from 1) set in a bitmap of 32-bit words.
pub fn groups(bitmap: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, word) in bitmap.iter().enumerate() {
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                out.push(w as u32 * 32 + bit + 1);
            }
        }
    }
    out
}

/// Whether a message is queued (a peek that does not wait).
fn has_data(sock: BorrowedFd<'_>) -> nix::Result<bool> {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    match recv(sock.as_raw_fd(), &mut [0u8; 1], flags) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_numbers_from_bitmap() {
        assert_eq!(super::groups(&[0x8000_0001, 0x2]), vec![1, 32, 34]);
        assert!(super::groups(&[]).is_empty());
    }
}
