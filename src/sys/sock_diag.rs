//! `NETLINK_SOCK_DIAG`: the kernel's socket tables, asked once per dump.
//!
//! Four requests: `unix_diag` for every unix socket of the network namespace (name, bound
//! inode, peer inode, pending connections, queue lengths, shutdown state — what no
//! `getsockopt` reveals, in particular the peer), `inet_diag` for listening TCP
//! sockets (the backlog and the accept queue), `packet_diag` for packet sockets (bound
//! interface, memberships, rings, fanout) and `netlink_diag` for netlink sockets (port
//! id, groups, destination). See
//! [sock_diag(7)](https://man7.org/linux/man-pages/man7/sock_diag.7.html).
//!
//! Written by hand rather than with the rust-netlink crates (`netlink-packet-sock-diag`
//! and the `netlink-packet-core`/`netlink-sys` stack under it): two fixed-layout requests
//! and a flat attribute walk are about 150 lines, against several crates whose message
//! types we would still translate. No unsafe code: nix opens, sends and receives, and the
//! replies are parsed from bytes by the pure functions below (tested on captured bytes).

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `UDIAG_SHOW_*` (linux/unix_diag.h).
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_ICONS: u32 = 8;
const UDIAG_SHOW_RQLEN: u32 = 16;
const UDIAG_SHOW_MEMINFO: u32 = 32;
/// `UNIX_DIAG_*` attributes.
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_MEMINFO: u16 = 5;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// `SK_MEMINFO_WMEM_ALLOC`: index of the send-side allocation in the meminfo array.
const SK_MEMINFO_WMEM_ALLOC: usize = 2;
/// `INET_DIAG_SHUTDOWN` (linux/inet_diag.h): the socket's `sk_shutdown` bits.
const INET_DIAG_SHUTDOWN: u16 = 8;
/// `TCP_LISTEN` in the kernel's state numbering.
pub const TCP_LISTEN: u8 = 10;

/// Errors of the diag requests.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error("netlink sock_diag {op}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("netlink sock_diag reply: {what}")]
    Parse { what: String },
}

/// One unix socket as `unix_diag` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), `SOCK_SEQPACKET` (5).
    pub sock_type: u8,
    /// `TCP_ESTABLISHED` (1) for connected, `TCP_LISTEN` (10), `TCP_CLOSE` (7) otherwise.
    pub state: u8,
    /// `sun_path` as bound: a path without its NUL, or an abstract name with its
    /// leading 0 byte; empty when unbound.
    pub name: Vec<u8>,
    /// Inode and device of the bound file (path names only).
    pub vfs: Option<(u32, u32)>,
    /// Inode of the peer, 0 when none — also when the peer is a connection not yet
    /// accepted (it has no inode yet).
    pub peer: u32,
    /// Listeners: for each connection not yet accepted, oldest first, the inode of the
    /// socket that connected (0 if it is gone).
    pub icons: Vec<u32>,
    /// Bytes this socket sent that sit in a peer's queue, plus one (`sk_wmem_alloc`
    /// starts at 1): how a client's data waiting in a not-yet-accepted connection shows.
    pub wmem_alloc: u32,
    /// Listeners: (pending connections, backlog); others: (bytes queued, 0) — for
    /// datagram sockets only the first message's length.
    pub rqlen: (u32, u32),
    pub shutdown: u8,
}

/// A TCP socket as `inet_diag` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDiag {
    pub ino: u32,
    pub state: u8,
    /// Local and remote address (v4 in the first 4 bytes) and port.
    pub src: ([u8; 16], u16),
    pub dst: ([u8; 16], u16),
    /// Listeners: connections in the accept queue; others: bytes unread.
    pub rqueue: u32,
    /// Listeners: the backlog; others: bytes unacknowledged.
    pub wqueue: u32,
    /// `INET_DIAG_SHUTDOWN`: 1 receive side shut down, 2 send side.
    pub shutdown: u8,
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> SockDiagError {
    move |source| SockDiagError::Sys { op, source }
}

fn parse_err(what: impl Into<String>) -> SockDiagError {
    SockDiagError::Parse { what: what.into() }
}

/// Every unix socket of this network namespace, by inode.
pub fn unix_sockets() -> Result<HashMap<u32, UnixDiag>, SockDiagError> {
    let show = UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_MEMINFO;
    let mut req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    let mut out = HashMap::new();
    for msg in dump(&req)? {
        let d = parse_unix(&msg)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// Every TCP socket of `family` (`AF_INET`, `AF_INET6`) in one of `states` (a mask of
/// `1 << state`), by inode.
pub fn tcp_sockets(family: i32, states: u32) -> Result<HashMap<u32, TcpDiag>, SockDiagError> {
    inet_sockets(family, libc::IPPROTO_TCP as u8, states)
}

/// Every socket of `family` and `protocol` (TCP, UDP, UDP-Lite) in one of `states`, by
/// inode.
pub fn inet_sockets(
    family: i32,
    protocol: u8,
    states: u32,
) -> Result<HashMap<u32, TcpDiag>, SockDiagError> {
    let mut req = vec![family as u8, protocol, 0, 0];
    req.extend_from_slice(&states.to_ne_bytes());
    req.extend_from_slice(&[0u8; 40]); // sockid: ports and addresses, any
    req.extend_from_slice(&0u32.to_ne_bytes()); // interface
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    let mut out = HashMap::new();
    for msg in dump(&req)? {
        let d = parse_tcp(&msg)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request and returns the payloads of its replies.
fn dump(payload: &[u8]) -> Result<Vec<Vec<u8>>, SockDiagError> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(sys("socket"))?;
    let mut req = Vec::with_capacity(16 + payload.len());
    req.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns one
    req.extend_from_slice(payload);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys("send"))?;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("recv"))?;
        if split_messages(&buf[..n], &mut replies)? {
            return Ok(replies);
        }
    }
}

/// Appends the payload of each netlink message in `buf` to `out`; true at `NLMSG_DONE`.
fn split_messages(mut buf: &[u8], out: &mut Vec<Vec<u8>>) -> Result<bool, SockDiagError> {
    while buf.len() >= 16 {
        let len = u32_at(buf, 0) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < 16 || len > buf.len() {
            return Err(parse_err(format!(
                "message length {len} of {} bytes",
                buf.len()
            )));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = -(u32_at(buf, 16) as i32);
                return Err(SockDiagError::Sys {
                    op: "request",
                    source: nix::errno::Errno::from_raw(errno),
                });
            }
            _ => out.push(buf[16..len].to_vec()),
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(false)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// `struct unix_diag_msg` (16 bytes) followed by attributes.
pub fn parse_unix(msg: &[u8]) -> Result<UnixDiag, SockDiagError> {
    if msg.len() < 16 {
        return Err(parse_err(format!("unix_diag_msg of {} bytes", msg.len())));
    }
    let mut d = UnixDiag {
        sock_type: msg[1],
        state: msg[2],
        ino: u32_at(msg, 4),
        ..UnixDiag::default()
    };
    for (kind, val) in attributes(&msg[16..])? {
        apply_unix_attr(&mut d, kind, val)?;
    }
    Ok(d)
}

fn apply_unix_attr(d: &mut UnixDiag, kind: u16, val: &[u8]) -> Result<(), SockDiagError> {
    let short = || parse_err(format!("unix_diag attribute {kind} of {} bytes", val.len()));
    match kind {
        // A path name comes with its terminating NUL (and may have been bound with more
        // bytes after it, which the kernel ignores): keep the path only.
        UNIX_DIAG_NAME if val.first().is_some_and(|b| *b != 0) => {
            d.name = val.split(|b| *b == 0).next().unwrap_or_default().to_vec()
        }
        UNIX_DIAG_NAME => d.name = val.to_vec(),
        UNIX_DIAG_VFS if val.len() >= 8 => d.vfs = Some((u32_at(val, 0), u32_at(val, 4))),
        UNIX_DIAG_PEER if val.len() >= 4 => d.peer = u32_at(val, 0),
        UNIX_DIAG_ICONS => d.icons = val.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
        UNIX_DIAG_RQLEN if val.len() >= 8 => d.rqlen = (u32_at(val, 0), u32_at(val, 4)),
        UNIX_DIAG_SHUTDOWN if !val.is_empty() => d.shutdown = val[0],
        UNIX_DIAG_MEMINFO if val.len() >= 4 * (SK_MEMINFO_WMEM_ALLOC + 1) => {
            d.wmem_alloc = u32_at(val, 4 * SK_MEMINFO_WMEM_ALLOC)
        }
        UNIX_DIAG_VFS | UNIX_DIAG_PEER | UNIX_DIAG_RQLEN | UNIX_DIAG_SHUTDOWN => {
            return Err(short())
        }
        _ => {}
    }
    Ok(())
}

/// `struct inet_diag_msg` (72 bytes): state at 1, the socket id (ports big-endian at 4
/// and 6, addresses at 8 and 24) from 4, rqueue at 56, wqueue at 60, inode at 68.
pub fn parse_tcp(msg: &[u8]) -> Result<TcpDiag, SockDiagError> {
    if msg.len() < 72 {
        return Err(parse_err(format!("inet_diag_msg of {} bytes", msg.len())));
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&msg[at..at + 16]);
        a
    };
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let shutdown = attributes(&msg[72..])?
        .into_iter()
        .find(|(kind, val)| *kind == INET_DIAG_SHUTDOWN && !val.is_empty())
        .map_or(0, |(_, val)| val[0]);
    Ok(TcpDiag {
        state: msg[1],
        src: (addr(8), port(4)),
        dst: (addr(24), port(6)),
        rqueue: u32_at(msg, 56),
        wqueue: u32_at(msg, 60),
        ino: u32_at(msg, 68),
        shutdown,
    })
}

/// `PACKET_SHOW_*` (linux/packet_diag.h).
const PACKET_SHOW_INFO: u32 = 1;
const PACKET_SHOW_MCLIST: u32 = 2;
const PACKET_SHOW_RING_CFG: u32 = 4;
const PACKET_SHOW_FANOUT: u32 = 8;
/// `PACKET_DIAG_*` attributes.
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;
/// `PDI_*` bits of `packet_diag_info::pdi_flags`.
pub const PDI_AUXDATA: u32 = 2;
pub const PDI_ORIGDEV: u32 = 4;
pub const PDI_VNETHDR: u32 = 8;
pub const PDI_LOSS: u32 = 16;
/// `NDIAG_SHOW_*` (linux/netlink_diag.h) and attributes.
const NDIAG_SHOW_GROUPS: u32 = 2;
const NDIAG_SHOW_FLAGS: u32 = 8;
const NETLINK_DIAG_GROUPS: u16 = 1;
const NETLINK_DIAG_FLAGS: u16 = 4;
/// `NDIAG_PROTO_ALL`.
const NDIAG_PROTO_ALL: u8 = 255;
/// `NDIAG_FLAG_CB_RUNNING`: a dump is in progress on the socket.
pub const NDIAG_FLAG_CB_RUNNING: u32 = 1;

/// A packet socket as `packet_diag` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketDiag {
    pub ino: u32,
    /// `SOCK_RAW`, `SOCK_DGRAM` or `SOCK_PACKET`.
    pub sock_type: u8,
    /// The protocol (network byte order, as `socket()` took it).
    pub protocol: u16,
    /// `struct packet_diag_info`: ifindex, version, reserve, copy_thresh, tstamp, flags.
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    /// `struct packet_diag_mclist` entries: (ifindex, count, type, address).
    pub mclist: Vec<(u32, u32, u16, Vec<u8>)>,
    /// `struct packet_diag_ring` of each ring: block size and number, frame size and
    /// number, retire timeout, private size, features.
    pub rx_ring: Option<[u32; 7]>,
    pub tx_ring: Option<[u32; 7]>,
    /// `PACKET_DIAG_FANOUT`: group id and type (`id | type << 16`).
    pub fanout: Option<u32>,
}

/// A bound or connected netlink socket as `netlink_diag` reports it (unbound ones are
/// not listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetlinkDiag {
    pub ino: u32,
    pub sock_type: u8,
    pub protocol: u8,
    /// `NETLINK_CONNECTED` (1) or unconnected (0).
    pub state: u8,
    pub portid: u32,
    pub dst_portid: u32,
    pub dst_group: u32,
    /// The multicast groups bitmap, 32 groups per word.
    pub groups: Vec<u32>,
    /// `NDIAG_FLAG_*`.
    pub flags: u32,
}

/// Every packet socket of this network namespace, by inode.
pub fn packet_sockets() -> Result<HashMap<u32, PacketDiag>, SockDiagError> {
    let show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT;
    let mut req = vec![libc::AF_PACKET as u8, 0, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    let mut out = HashMap::new();
    for msg in dump(&req)? {
        let d = parse_packet(&msg)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// Every bound or connected netlink socket of this network namespace, by inode.
pub fn netlink_sockets() -> Result<HashMap<u32, NetlinkDiag>, SockDiagError> {
    let mut req = vec![libc::AF_NETLINK as u8, NDIAG_PROTO_ALL, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    req.extend_from_slice(&(NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    let mut out = HashMap::new();
    for msg in dump(&req)? {
        let d = parse_netlink(&msg)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// `struct packet_diag_msg` (16 bytes: family, type, protocol, inode, cookie) followed
/// by attributes.
pub fn parse_packet(msg: &[u8]) -> Result<PacketDiag, SockDiagError> {
    if msg.len() < 16 {
        return Err(parse_err(format!("packet_diag_msg of {} bytes", msg.len())));
    }
    let mut d = PacketDiag {
        sock_type: msg[1],
        protocol: u16::from_ne_bytes([msg[2], msg[3]]),
        ino: u32_at(msg, 4),
        ..PacketDiag::default()
    };
    for (kind, val) in attributes(&msg[16..])? {
        let short = || {
            parse_err(format!(
                "packet_diag attribute {kind} of {} bytes",
                val.len()
            ))
        };
        match kind {
            PACKET_DIAG_INFO if val.len() >= 24 => {
                let w: Vec<u32> = (0..6).map(|i| u32_at(val, 4 * i)).collect();
                (d.ifindex, d.version, d.reserve) = (w[0], w[1], w[2]);
                (d.copy_thresh, d.tstamp, d.flags) = (w[3], w[4], w[5]);
            }
            PACKET_DIAG_MCLIST => d.mclist = val.chunks_exact(44).map(mclist_entry).collect(),
            PACKET_DIAG_RX_RING | PACKET_DIAG_TX_RING if val.len() >= 28 => {
                let ring: [u32; 7] = std::array::from_fn(|i| u32_at(val, 4 * i));
                match kind {
                    PACKET_DIAG_RX_RING => d.rx_ring = Some(ring),
                    _ => d.tx_ring = Some(ring),
                }
            }
            PACKET_DIAG_FANOUT if val.len() >= 4 => d.fanout = Some(u32_at(val, 0)),
            PACKET_DIAG_INFO | PACKET_DIAG_RX_RING | PACKET_DIAG_TX_RING | PACKET_DIAG_FANOUT => {
                return Err(short())
            }
            _ => {}
        }
    }
    Ok(d)
}

/// `struct packet_diag_mclist`: index, count, type (u16), address length (u16), address
/// (32 bytes).
fn mclist_entry(m: &[u8]) -> (u32, u32, u16, Vec<u8>) {
    let alen = usize::from(u16::from_ne_bytes([m[10], m[11]])).min(32);
    let ty = u16::from_ne_bytes([m[8], m[9]]);
    (u32_at(m, 0), u32_at(m, 4), ty, m[12..12 + alen].to_vec())
}

/// `struct netlink_diag_msg` (28 bytes: family, type, protocol, state, portid,
/// dst_portid, dst_group, inode, cookie) followed by attributes.
pub fn parse_netlink(msg: &[u8]) -> Result<NetlinkDiag, SockDiagError> {
    if msg.len() < 28 {
        return Err(parse_err(format!(
            "netlink_diag_msg of {} bytes",
            msg.len()
        )));
    }
    let mut d = NetlinkDiag {
        sock_type: msg[1],
        protocol: msg[2],
        state: msg[3],
        portid: u32_at(msg, 4),
        dst_portid: u32_at(msg, 8),
        dst_group: u32_at(msg, 12),
        ino: u32_at(msg, 16),
        ..NetlinkDiag::default()
    };
    for (kind, val) in attributes(&msg[28..])? {
        match kind {
            NETLINK_DIAG_GROUPS => d.groups = val.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
            NETLINK_DIAG_FLAGS if val.len() >= 4 => d.flags = u32_at(val, 0),
            _ => {}
        }
    }
    Ok(d)
}

/// `struct rtattr` list: (type, value) pairs, each padded to 4 bytes.
fn attributes(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, SockDiagError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]);
        if len < 4 || len > buf.len() {
            return Err(parse_err(format!(
                "attribute length {len} of {} bytes",
                buf.len()
            )));
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn attr(kind: u16, val: &[u8]) -> Vec<u8> {
        let mut a = ((4 + val.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(val);
        a.resize(align4(a.len()), 0);
        a
    }

    #[test]
    fn unix_message_with_attributes() {
        let mut msg = vec![1, 1, 10, 0];
        msg.extend_from_slice(&77u32.to_ne_bytes());
        msg.extend_from_slice(&[0xff; 8]);
        msg.extend(attr(UNIX_DIAG_NAME, b"\0abstract"));
        msg.extend(attr(UNIX_DIAG_PEER, &5u32.to_ne_bytes()));
        msg.extend(attr(
            UNIX_DIAG_ICONS,
            &[1u32.to_ne_bytes(), 2u32.to_ne_bytes()].concat(),
        ));
        msg.extend(attr(
            UNIX_DIAG_RQLEN,
            &[2u32.to_ne_bytes(), 16u32.to_ne_bytes()].concat(),
        ));
        msg.extend(attr(UNIX_DIAG_SHUTDOWN, &[2]));
        let d = parse_unix(&msg).unwrap();
        assert_eq!(d.ino, 77);
        assert_eq!((d.sock_type, d.state), (1, 10));
        assert_eq!(d.name, b"\0abstract");
        assert_eq!(d.peer, 5);
        assert_eq!(d.icons, vec![1, 2]);
        assert_eq!(d.rqlen, (2, 16));
        assert_eq!(d.shutdown, 2);
    }

    #[test]
    fn truncated_attribute_is_refused() {
        let mut msg = vec![1, 1, 1, 0, 7, 0, 0, 0];
        msg.extend_from_slice(&[0xff; 8]);
        msg.extend_from_slice(&[40, 0, 2, 0, 1, 2]);
        assert!(parse_unix(&msg).is_err());
        assert!(parse_unix(&[0; 8]).is_err());
    }

    #[test]
    fn done_and_error_messages() {
        let mut out = Vec::new();
        let mut done = 20u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert!(split_messages(&done, &mut out).unwrap());
        let mut err = 36u32.to_ne_bytes().to_vec();
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-22i32).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        assert!(split_messages(&err, &mut out).is_err());
    }

    #[test]
    fn live_socketpair_peers_each_other() {
        use nix::sys::socket::{socketpair, SockFlag};
        use std::os::unix::fs::MetadataExt;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let ino = |fd: &std::os::fd::OwnedFd| {
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .unwrap()
                .ino() as u32
        };
        let all = unix_sockets().unwrap();
        assert_eq!(all[&ino(&a)].peer, ino(&b));
        assert_eq!(all[&ino(&b)].peer, ino(&a));
        assert_eq!(all[&ino(&a)].state, 1);
    }
}
