//! Socket and pseudo-terminal records, carried inside `FdKind` variants of the fd table
//! (`files-<pid>.img`). Sockets are identified by their inode at dump time: a peer, a
//! listener with pending connections or a dup elsewhere names another socket by that
//! number, never by fd.
//!
//! The dump side is `dump/files/{unix,inet,pty}.rs`, the restore side
//! `restore/files/{unix,inet,pty}.rs`.

use serde::{Deserialize, Serialize};

pub use super::sockopts::{SockKind, SockOpts};

/// An `AF_UNIX` socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocket {
    /// Inode at dump time: how other records refer to this socket.
    pub ino: u64,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: i32,
    /// The bound address as bound (`sun_path` bytes; abstract names start with a 0 byte);
    /// empty when unbound.
    pub name: Vec<u8>,
    /// For a relative path name: the directory it was bound in (restore binds from there,
    /// so `getsockname` reports the same relative name).
    pub bind_dir: Option<String>,
    /// `listen(backlog)` was called with this backlog.
    pub listen_backlog: Option<u32>,
    pub peer: UnixPeer,
    /// `sk_shutdown` bits: 1 receive side shut down, 2 send side.
    pub shutdown: u8,
    /// The receive queue, oldest first: one entry per datagram / seqpacket record, or
    /// per run of stream bytes with the same credentials.
    pub queue: Vec<UnixMessage>,
    pub opts: SockOpts,
}

/// What a unix socket is connected to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnixPeer {
    /// Not connected.
    None,
    /// Connected to another socket of the image (mutually for stream and seqpacket, and
    /// for a datagram socketpair; a datagram `connect` may be one-way).
    Socket { ino: u64 },
    /// Connected to listener `listener` of the image, not yet accepted, `position`th in
    /// its queue; `connect`ed again at restore, in queue order.
    Pending { listener: u64, position: u32 },
    /// The peer closed (stream or seqpacket): the queue is readable, then end of file;
    /// or an unnamed datagram socket with messages queued whose peer is gone.
    Closed,
    /// Connected to a socket outside the image, named `name` (`--ext-unix-sk`):
    /// connected to that name again at restore.
    External { name: Vec<u8> },
}

/// One queued message (or run of stream bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixMessage {
    pub data: Vec<u8>,
    /// `SCM_CREDENTIALS` attached to it (pid, uid, gid), when the receiver asked for them.
    pub creds: Option<(i32, u32, u32)>,
}

/// An `AF_INET` / `AF_INET6` socket: TCP, UDP, UDP-Lite, ICMP echo ("ping") or raw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocket {
    pub ino: u64,
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// `SOCK_STREAM` (TCP), `SOCK_DGRAM` (UDP, UDP-Lite, ping) or `SOCK_RAW`.
    pub sock_type: i32,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_UDPLITE`, `IPPROTO_ICMP`/`IPPROTO_ICMPV6`
    /// (ping), or a raw socket's protocol.
    pub protocol: i32,
    /// The bound address (`None`: unbound).
    pub local: Option<SockAddr>,
    /// The connected address (`None`: unconnected).
    pub remote: Option<SockAddr>,
    pub state: InetState,
    pub opts: SockOpts,
}

impl InetSocket {
    pub fn kind(&self) -> SockKind {
        SockKind {
            family: self.family,
            ty: self.sock_type,
            protocol: self.protocol,
        }
    }
}

/// An IP address and port; v4 addresses are 4 bytes, v6 16. A ping socket's port is its
/// ICMP echo identifier, a raw socket's its protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockAddr {
    pub ip: Vec<u8>,
    pub port: u16,
    /// IPv6 scope id (0 for v4).
    pub scope_id: u32,
}

/// The connection state of an inet socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InetState {
    /// A datagram or raw socket, or a TCP socket never connected (possibly bound).
    Unconnected,
    /// A listening TCP socket.
    Listening { backlog: u32 },
    /// An established TCP connection saved under `--tcp-established`.
    Established(Box<TcpRepair>),
    /// An established TCP connection dumped with `--tcp-close`: restored closed.
    Closed,
    /// A TCP connection in a state other than ESTABLISHED (version 10): SYN_SENT or one
    /// of the closing ones (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING), saved
    /// with `TCP_REPAIR` like an established one. `state` is the kernel's `TCP_*` number.
    /// The sequence numbers count the FINs sent and received; the queues hold data only.
    /// CLOSE: a connection that ended (closed both ways, or reset) with its peer known
    /// (`SO_PEERNAME`), restored closed both ways with its unread data; its unsent data,
    /// which nobody can read, is dropped.
    Connection { state: u8, repair: Box<TcpRepair> },
    /// A datagram socket, or a TCP socket never connected, as `Unconnected` (a datagram
    /// socket may keep its `remote`) but half-closed (version 10): `shutdown` bits, 1 the
    /// receive side, 2 the send side.
    Shut { shutdown: u8 },
}

/// `TCP_*` state numbers (include/net/tcp_states.h).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;

    /// The state's name, as the kernel's headers spell it.
    pub fn name(state: u8) -> &'static str {
        const NAMES: [&str; 12] = [
            "?",
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
        ];
        NAMES.get(state as usize).copied().unwrap_or("?")
    }

    /// Our FIN is queued (sent or not).
    pub fn fin_sent(state: u8) -> bool {
        matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSING | LAST_ACK | CLOSE)
    }

    /// The peer acknowledged our FIN.
    pub fn fin_acked(state: u8) -> bool {
        matches!(state, FIN_WAIT2 | CLOSE)
    }

    /// The peer's FIN was received.
    pub fn fin_received(state: u8) -> bool {
        matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING | CLOSE)
    }

    /// Our FIN goes before the peer's (we closed first).
    pub fn fin_sent_first(state: u8) -> bool {
        matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSING)
    }
}

/// What `TCP_REPAIR` needs to recreate an established connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRepair {
    /// `TCP_QUEUE_SEQ` of the send queue (`write_seq`) and of the receive queue (`rcv_nxt`).
    pub send_seq: u32,
    pub recv_seq: u32,
    /// The send queue (sent but unacknowledged bytes first, then `unsent` bytes never sent).
    pub send_queue: Vec<u8>,
    pub unsent: u32,
    /// The receive queue (received, not yet read by the owner).
    pub recv_queue: Vec<u8>,
    /// `TCP_MAXSEG`.
    pub mss: u32,
    /// `tcpi_options` bits (`TCPI_OPT_TIMESTAMPS` 1, `SACK` 2, `WSCALE` 4).
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// `TCP_TIMESTAMP`: the connection's timestamp clock.
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    pub window: [u32; 5],
    /// The peer is outside the image: its packets are dropped (the network lock, table
    /// `inet stasis_<pid>`) from the dump until the connection is restored.
    pub locked: bool,
}

/// A pseudo-terminal master (`/dev/ptmx`) and the state of its pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyMaster {
    /// The pts number at dump time (`/dev/pts/<index>`).
    pub index: u32,
    /// The slave's `struct termios` as `TCGETS` returns it.
    pub termios: Vec<u8>,
    /// `struct winsize`: rows, cols, xpixel, ypixel.
    pub winsize: [u16; 4],
    /// `TIOCGPTLCK`.
    pub locked: bool,
    /// `TIOCGPKT`.
    pub packet_mode: bool,
    /// Written to the master, not yet read from the slave.
    pub input: Vec<u8>,
    /// Written to the slave, not yet read from the master.
    pub output: Vec<u8>,
}

/// `termios` (kernel `struct termios` bytes) with everything that transforms bytes
/// passing through the line discipline cleared: input translation and flow control,
/// output processing, canonical mode, echo and signals. Buffered data is read out of a
/// pty in this mode (a partial canonical line included).
pub fn raw_termios(termios: &[u8]) -> Vec<u8> {
    let mut t = termios.to_vec();
    clear_bits(&mut t, RAW_IFLAG, libc::OPOST, RAW_LFLAG);
    t
}

/// `termios` with echo, signal characters, flow control and output processing off but
/// canonical mode as saved: buffered data is written back into a pty in this mode, so a
/// canonical reader finds the same lines (input translation applies once more: a no-op
/// for text it already went through, unless `INLCR`/`IGNCR` change it).
pub fn refill_termios(termios: &[u8]) -> Vec<u8> {
    let mut t = termios.to_vec();
    let echo = libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL | libc::ECHOCTL | libc::ECHOKE;
    clear_bits(&mut t, libc::IXON, libc::OPOST, echo | libc::ISIG);
    t
}

const RAW_IFLAG: u32 = libc::IGNBRK
    | libc::BRKINT
    | libc::PARMRK
    | libc::ISTRIP
    | libc::INLCR
    | libc::IGNCR
    | libc::ICRNL
    | libc::IXON;
const RAW_LFLAG: u32 = libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN;

/// Clears bits of `c_iflag` (offset 0), `c_oflag` (4) and `c_lflag` (12).
fn clear_bits(t: &mut [u8], iflag: u32, oflag: u32, lflag: u32) {
    let mut clear = |at: usize, bits: u32| {
        if let Some(b) = t.get_mut(at..at + 4) {
            let v = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) & !bits;
            b.copy_from_slice(&v.to_ne_bytes());
        }
    };
    clear(0, iflag);
    clear(4, oflag);
    clear(12, lflag);
}

/// How much of `input` written into a pty with `termios` a reader's `FIONREAD` counts
/// once the line discipline has it: everything, or in canonical mode the complete lines
/// only (up to the last newline).
pub fn visible_input(termios: &[u8], input: &[u8]) -> usize {
    let lflag = termios
        .get(12..16)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if lflag & libc::ICANON == 0 {
        return input.len();
    }
    input.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// An `AF_PACKET` socket (format 10): `SOCK_RAW`, `SOCK_DGRAM` or `SOCK_PACKET`, with
/// what `packet_diag` and `getsockopt(SOL_PACKET)` report. Received packets are never
/// saved: a socket with packets queued, or frames of a ring not handed back to the
/// kernel, is refused at dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSocket {
    pub ino: u64,
    pub sock_type: i32,
    /// The protocol in host byte order (`socket()` takes it in network order).
    pub protocol: u16,
    /// The interface bound to (`sll_ifindex`; 0: none).
    pub ifindex: u32,
    /// `SOCK_PACKET`: the name of the device bound to (empty: none).
    pub device: Vec<u8>,
    /// `SOL_PACKET` options with an `int` value other than a new socket's 0
    /// (`PACKET_VERSION`, `PACKET_RESERVE`, `PACKET_AUXDATA`...), set in this order,
    /// before the rings.
    pub ints: Vec<(i32, i32)>,
    /// `PACKET_ADD_MEMBERSHIP`s.
    pub memberships: Vec<PacketMembership>,
    pub rx_ring: Option<PacketRing>,
    pub tx_ring: Option<PacketRing>,
    /// `PACKET_FANOUT` as `getsockopt` reads it (`id | type << 16 | flags << 24`).
    pub fanout: Option<u32>,
    pub opts: SockOpts,
}

/// One membership of a packet socket (`struct packet_mreq`), added `count` times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketMembership {
    pub ifindex: u32,
    /// `PACKET_MR_MULTICAST`, `PACKET_MR_PROMISC`, `PACKET_MR_ALLMULTI`, `PACKET_MR_UNICAST`.
    pub mr_type: u16,
    pub address: Vec<u8>,
    pub count: u32,
}

/// A `PACKET_RX_RING` / `PACKET_TX_RING` (`struct tpacket_req3`). A restored ring starts
/// at its first frame: the kernel's position in a ring cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRing {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_tmo: u32,
    pub sizeof_priv: u32,
    pub features: u32,
}

impl PacketRing {
    /// Bytes of the ring in a mapping of the socket.
    pub fn len(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.block_nr)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An `AF_NETLINK` socket (format 10): protocol, port id, groups, destination. One with
/// messages queued, or a dump in progress, is refused at dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetlinkSocket {
    pub ino: u64,
    pub sock_type: i32,
    pub protocol: i32,
    /// The bound port id (0: unbound); bound again to the same one at restore.
    pub portid: u32,
    /// Every multicast group joined (numbers from 1).
    pub groups: Vec<u32>,
    /// `connect`ed to this port id and group (`None`: unconnected).
    pub dst: Option<(u32, u32)>,
    /// `SOL_NETLINK` options with an `int` value other than a new socket's 0
    /// (`NETLINK_PKTINFO`, `NETLINK_NO_ENOBUFS`...).
    pub ints: Vec<(i32, i32)>,
    pub opts: SockOpts,
}
