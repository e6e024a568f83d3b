//! rtnetlink requests `ip` cannot make: moving a link into another network namespace
//! under a chosen index and name (`RTM_NEWLINK` with `IFLA_NET_NS_FD` and
//! `IFLA_NEW_IFINDEX`, which `ip link set netns` does not send), used for CRIU's
//! `--external netdev[INSIDE]:OUTSIDE` and the veth pairs between the tree's namespaces
//! (`restore/ns/netlinks.rs`: the addresses saved by `ip addr save` name their link by
//! index, so the link must keep the dumped one); and the id a namespace has in the
//! calling thread's (`RTM_GETNSID`, what a link's `link_netnsid` names), used to find
//! the other end of such a pair at dump (`dump/ns/net_peers.rs`).
//! See [rtnetlink(7)](https://man7.org/linux/man-pages/man7/rtnetlink.7.html).
//!
//! Written by hand like `sys/sock_diag.rs`: one fixed request and its acknowledgement.
//! No unsafe code: nix opens, sends and receives.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NEW_IFINDEX: u16 = 49;

#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error("no link {name} in stasis's network namespace")]
    NoLink { name: String },
    #[error("rtnetlink {op}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Moves link `from` of the calling thread's namespace into the namespace `to`, named
/// `name` with index `index` there (0: its own if free, else one the kernel picks).
pub fn move_link(from: &str, to: BorrowedFd, name: &str, index: i32) -> Result<(), RtnlError> {
    let ifindex = nix::net::if_::if_nametoindex(from).map_err(|_| RtnlError::NoLink {
        name: from.to_string(),
    })?;
    let msg = new_link(ifindex as i32, name, to.as_raw_fd() as u32, index);
    let reply = request(&msg)?;
    match ack(&reply) {
        0 => Ok(()),
        errno => Err(RtnlError::Sys {
            op: "RTM_NEWLINK (move the link)",
            source: nix::errno::Errno::from_raw(errno),
        }),
    }
}

/// The id the namespace `ns` has in the calling thread's (`None`: it has none).
pub fn nsid_of(ns: BorrowedFd) -> Result<Option<i32>, RtnlError> {
    let mut msg = header(RTM_GETNSID, NLM_F_REQUEST);
    msg.extend([0u8; 4]); // rtgenmsg, padded
    attr(&mut msg, NETNSA_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
    finish(&mut msg);
    let reply = request(&msg)?;
    let ty = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    if ty != Some(RTM_NEWNSID) {
        return Err(RtnlError::Sys {
            op: "RTM_GETNSID",
            source: nix::errno::Errno::from_raw(ack(&reply)),
        });
    }
    let id = attribute(&reply, 20, NETNSA_NSID)
        .and_then(|v| Some(i32::from_ne_bytes(v.get(..4)?.try_into().ok()?)));
    Ok(id.filter(|&i| i >= 0))
}

/// Sends `msg` to the kernel from a new socket of the calling thread's namespace; the
/// first reply.
fn request(msg: &[u8]) -> Result<Vec<u8>, RtnlError> {
    let sys = |op| move |source| RtnlError::Sys { op, source };
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(sys("socket"))?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(sock.as_raw_fd(), msg, &kernel, MsgFlags::empty()).map_err(sys("send"))?;
    let mut buf = vec![0u8; 8192];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("recv"))?;
    buf.truncate(n);
    Ok(buf)
}

/// A message header of type `ty` (its length set by [`finish`]).
fn header(ty: u16, flags: u16) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg[4..6].copy_from_slice(&ty.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg
}

fn finish(msg: &mut [u8]) {
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

/// The payload of attribute `ty` of a message whose attributes start at `from`.
pub fn attribute(msg: &[u8], from: usize, ty: u16) -> Option<&[u8]> {
    let mut at = from;
    while let Some(h) = msg.get(at..at + 4) {
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        if len < 4 {
            return None;
        }
        if u16::from_ne_bytes([h[2], h[3]]) & 0x3fff == ty {
            return msg.get(at + 4..at + len);
        }
        at += (len + 3) & !3;
    }
    None
}

/// `RTM_NEWLINK` for link `ifindex`: name, target namespace fd, index there.
fn new_link(ifindex: i32, name: &str, ns_fd: u32, index: i32) -> Vec<u8> {
    let mut msg = header(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    // ifinfomsg: family, pad, type, index, flags, change.
    msg.extend([0u8; 4]);
    msg.extend(ifindex.to_ne_bytes());
    msg.extend([0u8; 8]);
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    attr(&mut msg, IFLA_IFNAME, &text);
    attr(&mut msg, IFLA_NET_NS_FD, &ns_fd.to_ne_bytes());
    if index > 0 {
        attr(&mut msg, IFLA_NEW_IFINDEX, &index.to_ne_bytes());
    }
    finish(&mut msg);
    msg
}

fn attr(msg: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    msg.extend(len.to_ne_bytes());
    msg.extend(ty.to_ne_bytes());
    msg.extend(payload);
    msg.resize((msg.len() + 3) & !3, 0);
}

/// The errno of an acknowledgement (`NLMSG_ERROR`, 0 for success); `EPROTO` for a reply
/// that is none.
fn ack(reply: &[u8]) -> i32 {
    let ty = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let err = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (ty, err) {
        (Some(NLMSG_ERROR), Some(e)) => -e,
        _ => libc::EPROTO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_laid_out_as_the_kernel_reads_it() {
        let m = new_link(7, "eth0", 5, 42);
        // header 16 + ifinfomsg 16 + name (4 + 5, padded to 12) + fd 8 + index 8.
        assert_eq!(m.len(), 60);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().expect("4")), 60);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().expect("4")), 7);
        assert_eq!(&m[36..41], b"eth0\0");
        assert_eq!(i32::from_ne_bytes(m[56..60].try_into().expect("4")), 42);
    }

    #[test]
    fn acknowledgement_errno() {
        let mut r = vec![0u8; 36];
        r[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack(&r), 0);
        r[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(ack(&r), libc::EEXIST);
        assert_eq!(ack(&[0; 8]), libc::EPROTO);
    }
}
