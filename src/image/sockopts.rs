//! Socket options in the image: the [`SockOpts`] record of one socket, and [`OPTIONS`],
//! the table of every option stasis saves — which sockets have it, how its value is
//! sized, and when the restore sets it. The table is what the format allows: a record
//! naming an option outside it is refused at load.
//!
//! The dump side (reading each option of a stolen socket, keeping those that differ from
//! a new socket's) is `dump/files/sockopts.rs`; the restore side (setting them back, in
//! table order, each at its stage) is `restore/files/sockopts.rs`. Options a socket may
//! hold that cannot be read back (a membership given by interface index only, a
//! reuseport BPF program, `TCP_MD5SIG` keys) are not in the table: nothing can detect
//! them. `SO_PEERCRED` of unix sockets is in the table too, always saved and never set
//! (`Special::PeerCred`): the restore compares it.

use serde::{Deserialize, Serialize};

/// The options of one socket whose value differs from a new socket's of the same family,
/// type and protocol, in [`OPTIONS`] order, plus its buffer sizes and their lock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpts {
    pub opts: Vec<SockOpt>,
}

/// One option: `setsockopt(fd, level, name, value)` sets it back (but see [`Special`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    /// The bytes `getsockopt` returned (an `int` in native byte order for [`Size::Int`]).
    pub value: Vec<u8>,
}

impl SockOpt {
    /// The value as an `int` (0 if it is not one).
    pub fn int_value(&self) -> i32 {
        self.value
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, i32::from_ne_bytes)
    }
}

impl SockOpts {
    /// The value of option (`level`, `name`) as an `int`, when saved.
    pub fn int(&self, level: i32, name: i32) -> Option<i32> {
        let o = self
            .opts
            .iter()
            .find(|o| (o.level, o.name) == (level, name))?;
        Some(o.int_value())
    }

    /// Whether boolean option (`level`, `name`) is saved as on.
    pub fn flag(&self, level: i32, name: i32) -> bool {
        self.int(level, name).is_some_and(|v| v != 0)
    }

    /// The saved `SO_PEERCRED` (pid, uid, gid), when the image has it ([`Special::PeerCred`]).
    pub fn peer_cred(&self) -> Option<(i32, u32, u32)> {
        let o = (self.opts.iter())
            .find(|o| (o.level, o.name) == (libc::SOL_SOCKET, libc::SO_PEERCRED))?;
        let word = |i: usize| o.value.get(i..i + 4)?.try_into().ok();
        Some((
            i32::from_ne_bytes(word(0)?),
            u32::from_ne_bytes(word(4)?),
            u32::from_ne_bytes(word(8)?),
        ))
    }

    /// Adds or replaces an `int` option (for records converted from older formats).
    pub fn set_int(&mut self, level: i32, name: i32, value: i32) {
        self.opts.retain(|o| (o.level, o.name) != (level, name));
        self.opts.push(SockOpt {
            level,
            name,
            value: value.to_ne_bytes().to_vec(),
        });
    }

    /// Every option is one of [`OPTIONS`], listed once, with a value of its size.
    pub fn check(&self) -> Result<(), String> {
        for (i, o) in self.opts.iter().enumerate() {
            let def = lookup(o.level, o.name)
                .ok_or_else(|| format!("unknown socket option ({}, {})", o.level, o.name))?;
            let repeats = def.special == Special::Membership;
            if !repeats
                && self.opts[..i]
                    .iter()
                    .any(|x| (x.level, x.name) == (o.level, o.name))
            {
                return Err(format!("socket option {} is listed twice", def.label));
            }
            if !def.size.fits(o.value.len()) {
                return Err(format!(
                    "socket option {} has {} bytes",
                    def.label,
                    o.value.len()
                ));
            }
        }
        Ok(())
    }
}

/// An `int` as a number, a name as text, other bytes in hex.
pub fn show(value: &[u8]) -> String {
    if let Ok(b) = <[u8; 4]>::try_from(value) {
        return i32::from_ne_bytes(b).to_string();
    }
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    if !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic()) {
        return format!("{:?}", String::from_utf8_lossy(text));
    }
    value.iter().map(|b| format!("{b:02x}")).collect()
}

/// What kind of socket an option belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every socket (`SOL_SOCKET`).
    Any,
    /// Unix sockets.
    Unix,
    /// IPv4-level options: `AF_INET` sockets, and `AF_INET6` ones other than raw (their
    /// v4-mapped traffic).
    Ip,
    /// `AF_INET6` sockets.
    Ipv6,
    /// Multicast options: [`Scope::Ip`] sockets other than TCP (which refuses them, and
    /// whose accepted sockets report values taken from the peer's first packet).
    IpDgram,
    /// Multicast options of `AF_INET6` sockets other than TCP.
    Ipv6Dgram,
    /// Raw `AF_INET` sockets.
    Raw4,
    /// Raw `AF_INET6` sockets.
    Raw6,
    /// TCP sockets.
    Tcp,
    /// UDP and UDP-Lite sockets.
    Udp,
    /// UDP-Lite sockets.
    UdpLite,
    /// Every socket but unix ones, whose kernel refuses to set the option (it stays
    /// at a new socket's value).
    NotUnix,
}

/// What a socket is, as far as its options go: `SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockKind {
    pub family: i32,
    pub ty: i32,
    pub protocol: i32,
}

impl Scope {
    /// Whether sockets of kind `k` have the options of this scope.
    pub fn covers(self, k: SockKind) -> bool {
        let inet = k.family == libc::AF_INET || k.family == libc::AF_INET6;
        let raw = inet && k.ty == libc::SOCK_RAW;
        let dgram = inet && k.ty == libc::SOCK_DGRAM;
        match self {
            Scope::Any => true,
            Scope::NotUnix => k.family != libc::AF_UNIX,
            Scope::Unix => k.family == libc::AF_UNIX,
            Scope::Ip => k.family == libc::AF_INET || (k.family == libc::AF_INET6 && !raw),
            Scope::Ipv6 => k.family == libc::AF_INET6,
            Scope::IpDgram => Scope::Ip.covers(k) && k.ty != libc::SOCK_STREAM,
            Scope::Ipv6Dgram => k.family == libc::AF_INET6 && k.ty != libc::SOCK_STREAM,
            Scope::Raw4 => raw && k.family == libc::AF_INET,
            Scope::Raw6 => raw && k.family == libc::AF_INET6,
            Scope::Tcp => inet && k.ty == libc::SOCK_STREAM && k.protocol == libc::IPPROTO_TCP,
            Scope::Udp => {
                dgram && (k.protocol == libc::IPPROTO_UDP || k.protocol == libc::IPPROTO_UDPLITE)
            }
            Scope::UdpLite => dgram && k.protocol == libc::IPPROTO_UDPLITE,
        }
    }
}

/// How an option's value is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// An `int`.
    Int,
    /// A struct of exactly this many bytes.
    Fixed(usize),
    /// Up to this many bytes (a name, an option list).
    Upto(usize),
}

impl Size {
    pub fn fits(self, len: usize) -> bool {
        match self {
            Size::Int => len == 4,
            Size::Fixed(n) => len == n,
            Size::Upto(n) => len <= n,
        }
    }

    /// Bytes to offer `getsockopt`.
    pub fn buffer(self) -> usize {
        match self {
            Size::Int => 4,
            Size::Fixed(n) | Size::Upto(n) => n,
        }
    }
}

/// When the restore sets an option, relative to the socket's other state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Right after `socket()`: before `bind` (`IP_FREEBIND`, `SO_BINDTODEVICE`,
    /// `IPV6_V6ONLY`...), before a TCP connection's queues are refilled (buffer sizes).
    Early,
    /// Once the socket is complete: queues refilled (a filter would filter them again),
    /// repair mode left (which resets address reuse).
    Late,
}

/// Options that are not one plain `setsockopt` of the saved bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    None,
    /// `SO_RCVBUF` / `SO_SNDBUF`: read doubled; set with `SO_*BUFFORCE` (half the value),
    /// which also sets its lock bit — `SO_BUF_LOCK` puts the saved locks back afterwards.
    Buffer {
        force: i32,
    },
    /// `SO_BUF_LOCK`: always set last, to the saved mask (0 included).
    BufLock,
    /// A classic BPF program: read with `SO_GET_FILTER` (instructions, 8 bytes each),
    /// set with `SO_ATTACH_FILTER` (a `struct sock_fprog` pointing at them).
    Filter,
    /// Only meaningful on a TCP socket that is not connected (on a connection the
    /// kernel reports what it negotiated, and `TCP_REPAIR` restores that).
    Unconnected,
    /// `TCP_MAXSEG`: as [`Special::Unconnected`]; and a closed socket that was connected
    /// reports the connection's segment size unless the owner set one: a value no
    /// `setsockopt` accepts (above 32767) is the kernel's, not saved.
    UserMss,
    /// A multicast membership, one entry per group: `struct group_filter` as
    /// `MCAST_MSFILTER` reads it (interface index, group, filter mode, sources); set
    /// back with `MCAST_JOIN_GROUP`, then `MCAST_MSFILTER` when it filters sources.
    Membership,
    /// A value stasis cannot restore when not the default: the dump fails naming it.
    Refuse(&'static str),
    /// `SO_PEERCRED` of a unix socket: read-only, what the kernel took from the task
    /// that made the connection (`dump/files/unix_peercred.rs`). Always saved (so an
    /// image without it is one from before it was saved), never set: the restore makes
    /// the connection as that task would and then compares
    /// (`restore/files/unix_peercred.rs`).
    PeerCred,
}

/// One option of [`OPTIONS`].
#[derive(Clone, Copy, Debug)]
pub struct OptDef {
    pub level: i32,
    pub name: i32,
    pub label: &'static str,
    pub scope: Scope,
    pub size: Size,
    pub stage: Stage,
    pub special: Special,
}

pub fn lookup(level: i32, name: i32) -> Option<&'static OptDef> {
    OPTIONS.iter().find(|d| (d.level, d.name) == (level, name))
}

/// Option numbers libc does not name (asm-generic/socket.h, linux/in.h, linux/in6.h,
/// linux/tcp.h, linux/udp.h, linux/icmp.h, x86_64 values).
pub mod num {
    pub const SO_PEEK_OFF: i32 = 42;
    pub const SO_GET_FILTER: i32 = 26;
    pub const SO_LOCK_FILTER: i32 = 44;
    pub const SO_SELECT_ERR_QUEUE: i32 = 45;
    pub const SO_BUSY_POLL: i32 = 46;
    pub const SO_MAX_PACING_RATE: i32 = 47;
    pub const SO_INCOMING_CPU: i32 = 49;
    pub const SO_ZEROCOPY: i32 = 60;
    pub const SO_TXTIME: i32 = 61;
    pub const SO_TIMESTAMP_NEW: i32 = 63;
    pub const SO_TIMESTAMPNS_NEW: i32 = 64;
    pub const SO_TIMESTAMPING_NEW: i32 = 65;
    pub const SO_PREFER_BUSY_POLL: i32 = 69;
    pub const SO_BUSY_POLL_BUDGET: i32 = 70;
    pub const SO_BUF_LOCK: i32 = 72;
    pub const SO_RESERVE_MEM: i32 = 73;
    pub const SO_TXREHASH: i32 = 74;
    pub const SO_RCVMARK: i32 = 75;
    pub const SO_PASSPIDFD: i32 = 76;
    pub const SO_RCVPRIORITY: i32 = 82;
    pub const SO_PASSRIGHTS: i32 = 83;
    pub const IP_RECVFRAGSIZE: i32 = 25;
    pub const IP_RECVERR_RFC4884: i32 = 26;
    pub const IP_LOCAL_PORT_RANGE: i32 = 51;
    pub const IPV6_2292PKTINFO: i32 = 2;
    pub const IPV6_2292HOPOPTS: i32 = 3;
    pub const IPV6_2292DSTOPTS: i32 = 4;
    pub const IPV6_2292RTHDR: i32 = 5;
    pub const IPV6_2292HOPLIMIT: i32 = 8;
    pub const IPV6_FLOWINFO: i32 = 11;
    pub const IPV6_MULTICAST_ALL: i32 = 29;
    pub const IPV6_ROUTER_ALERT_ISOLATE: i32 = 30;
    pub const IPV6_RECVERR_RFC4884: i32 = 31;
    pub const IPV6_FLOWINFO_SEND: i32 = 33;
    pub const IPV6_HOPOPTS: i32 = 54;
    pub const IPV6_RTHDRDSTOPTS: i32 = 55;
    pub const IPV6_RTHDR: i32 = 57;
    pub const IPV6_DSTOPTS: i32 = 59;
    pub const IPV6_RECVPATHMTU: i32 = 60;
    pub const IPV6_AUTOFLOWLABEL: i32 = 70;
    pub const IPV6_ADDR_PREFERENCES: i32 = 72;
    pub const IPV6_MINHOPCOUNT: i32 = 73;
    pub const IPV6_RECVORIGDSTADDR: i32 = 74;
    pub const IPV6_UNICAST_IF: i32 = 76;
    pub const IPV6_RECVFRAGSIZE: i32 = 77;
    pub const IPV6_FREEBIND: i32 = 78;
    pub const TCP_THIN_LINEAR_TIMEOUTS: i32 = 16;
    pub const TCP_FASTOPEN_KEY: i32 = 33;
    pub const TCP_FASTOPEN_NO_COOKIE: i32 = 34;
    pub const TCP_INQ: i32 = 36;
    pub const TCP_TX_DELAY: i32 = 37;
    pub const TCP_RTO_MAX_MS: i32 = 44;
    pub const TCP_RTO_MIN_US: i32 = 45;
    pub const TCP_DELACK_MAX_US: i32 = 46;
    pub const UDP_ENCAP: i32 = 100;
    pub const UDP_NO_CHECK6_TX: i32 = 101;
    pub const UDP_NO_CHECK6_RX: i32 = 102;
    pub const UDP_SEGMENT: i32 = 103;
    pub const UDP_GRO: i32 = 104;
    pub const SOL_UDPLITE: i32 = 136;
    pub const UDPLITE_SEND_CSCOV: i32 = 10;
    pub const UDPLITE_RECV_CSCOV: i32 = 11;
    pub const SOL_RAW: i32 = 255;
    pub const SOL_ICMPV6: i32 = 58;
    pub const ICMP_FILTER: i32 = 1;
    pub const ICMPV6_FILTER: i32 = 1;
    pub const IPV6_CHECKSUM: i32 = 7;
    pub const MCAST_JOIN_GROUP: i32 = 42;
    pub const MCAST_MSFILTER: i32 = 48;
    /// `struct group_filter`: interface (u32, padded to 8), group (`sockaddr_storage`,
    /// 128 bytes), filter mode (u32, at 136), number of sources (u32, at 140), then the
    /// sources (`sockaddr_storage` each): the header is 144 bytes, and 136 of them are a
    /// `struct group_req` (interface and group).
    pub const GROUP_FILTER_HEAD: usize = 144;
    pub const GROUP_REQ_LEN: usize = 136;
    /// Most sources of one membership stasis saves.
    pub const MAX_SOURCES: usize = 64;
}

use num::*;

const fn def(level: i32, name: i32, label: &'static str, scope: Scope, size: Size) -> OptDef {
    OptDef {
        level,
        name,
        label,
        scope,
        size,
        stage: Stage::Early,
        special: Special::None,
    }
}

const fn late(d: OptDef) -> OptDef {
    OptDef {
        stage: Stage::Late,
        ..d
    }
}

const fn special(d: OptDef, special: Special) -> OptDef {
    OptDef { special, ..d }
}

const S: i32 = libc::SOL_SOCKET;
const IP: i32 = libc::IPPROTO_IP;
const V6: i32 = libc::IPPROTO_IPV6;
const TCP: i32 = libc::IPPROTO_TCP;
const UDP: i32 = libc::IPPROTO_UDP;
const INT: Size = Size::Int;
/// `struct group_filter` with up to [`num::MAX_SOURCES`] sources.
const GROUP_FILTER: Size = Size::Upto(num::GROUP_FILTER_HEAD + 128 * num::MAX_SOURCES);

/// Every option stasis saves, in the order the restore sets them (within a stage).
/// Read-only options (`SO_TYPE`, `SO_PEERCRED`, `TCP_INFO`...) and those whose reading
/// changes the socket (`SO_ERROR`, `TCP_SAVED_SYN`) are not here.
#[rustfmt::skip]
pub const OPTIONS: &[OptDef] = &[
    // Before bind.
    def(S, libc::SO_REUSEADDR, "SO_REUSEADDR", Scope::Any, INT),
    def(S, libc::SO_REUSEPORT, "SO_REUSEPORT", Scope::Any, INT),
    def(S, libc::SO_BINDTODEVICE, "SO_BINDTODEVICE", Scope::Any, Size::Upto(16)),
    def(V6, libc::IPV6_V6ONLY, "IPV6_V6ONLY", Scope::Ipv6, INT),
    def(IP, libc::IP_FREEBIND, "IP_FREEBIND", Scope::Ip, INT),
    def(IP, libc::IP_TRANSPARENT, "IP_TRANSPARENT", Scope::Ip, INT),
    def(IP, libc::IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", Scope::Ip, INT),
    def(IP, IP_LOCAL_PORT_RANGE, "IP_LOCAL_PORT_RANGE", Scope::Ip, INT),
    def(V6, IPV6_FREEBIND, "IPV6_FREEBIND", Scope::Ipv6, INT),
    def(V6, libc::IPV6_TRANSPARENT, "IPV6_TRANSPARENT", Scope::Ipv6, INT),
    // Buffers (before a connection's queues are refilled); SO_RCVLOWAT first: on TCP
    // it may grow an unlocked receive buffer.
    def(S, libc::SO_RCVLOWAT, "SO_RCVLOWAT", Scope::Any, INT),
    special(def(S, libc::SO_RCVBUF, "SO_RCVBUF", Scope::Any, INT), Special::Buffer { force: libc::SO_RCVBUFFORCE }),
    special(def(S, libc::SO_SNDBUF, "SO_SNDBUF", Scope::Any, INT), Special::Buffer { force: libc::SO_SNDBUFFORCE }),
    // IP_TOS before SO_PRIORITY: setting the TOS sets the priority too.
    def(IP, libc::IP_TOS, "IP_TOS", Scope::Ip, INT),
    // Socket level.
    def(S, libc::SO_DEBUG, "SO_DEBUG", Scope::Any, INT),
    def(S, libc::SO_DONTROUTE, "SO_DONTROUTE", Scope::Any, INT),
    def(S, libc::SO_BROADCAST, "SO_BROADCAST", Scope::Any, INT),
    def(S, libc::SO_KEEPALIVE, "SO_KEEPALIVE", Scope::Any, INT),
    def(S, libc::SO_OOBINLINE, "SO_OOBINLINE", Scope::Any, INT),
    def(S, libc::SO_NO_CHECK, "SO_NO_CHECK", Scope::Any, INT),
    def(S, libc::SO_PRIORITY, "SO_PRIORITY", Scope::Any, INT),
    def(S, libc::SO_LINGER, "SO_LINGER", Scope::Any, Size::Fixed(8)),
    def(S, libc::SO_PASSCRED, "SO_PASSCRED", Scope::Any, INT),
    def(S, libc::SO_PASSSEC, "SO_PASSSEC", Scope::Any, INT),
    def(S, SO_PASSPIDFD, "SO_PASSPIDFD", Scope::Unix, INT),
    def(S, SO_PASSRIGHTS, "SO_PASSRIGHTS", Scope::Unix, INT),
    def(S, libc::SO_RCVTIMEO, "SO_RCVTIMEO", Scope::Any, Size::Fixed(16)),
    def(S, libc::SO_SNDTIMEO, "SO_SNDTIMEO", Scope::Any, Size::Fixed(16)),
    // SO_TIMESTAMPING before SO_TIMESTAMP*: each of these sets or clears the "new
    // timestamps" flag the others report through.
    def(S, libc::SO_TIMESTAMPING, "SO_TIMESTAMPING", Scope::Any, Size::Fixed(8)),
    def(S, SO_TIMESTAMPING_NEW, "SO_TIMESTAMPING_NEW", Scope::Any, Size::Fixed(8)),
    def(S, libc::SO_TIMESTAMP, "SO_TIMESTAMP", Scope::Any, INT),
    def(S, libc::SO_TIMESTAMPNS, "SO_TIMESTAMPNS", Scope::Any, INT),
    def(S, SO_TIMESTAMP_NEW, "SO_TIMESTAMP_NEW", Scope::Any, INT),
    def(S, SO_TIMESTAMPNS_NEW, "SO_TIMESTAMPNS_NEW", Scope::Any, INT),
    def(S, libc::SO_MARK, "SO_MARK", Scope::Any, INT),
    def(S, libc::SO_RXQ_OVFL, "SO_RXQ_OVFL", Scope::Any, INT),
    def(S, libc::SO_WIFI_STATUS, "SO_WIFI_STATUS", Scope::Any, INT),
    def(S, libc::SO_NOFCS, "SO_NOFCS", Scope::Any, INT),
    def(S, SO_SELECT_ERR_QUEUE, "SO_SELECT_ERR_QUEUE", Scope::Any, INT),
    def(S, SO_BUSY_POLL, "SO_BUSY_POLL", Scope::Any, INT),
    def(S, SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", Scope::Any, INT),
    def(S, SO_BUSY_POLL_BUDGET, "SO_BUSY_POLL_BUDGET", Scope::Any, INT),
    def(S, SO_MAX_PACING_RATE, "SO_MAX_PACING_RATE", Scope::Any, Size::Fixed(8)),
    def(S, SO_INCOMING_CPU, "SO_INCOMING_CPU", Scope::Any, INT),
    def(S, SO_ZEROCOPY, "SO_ZEROCOPY", Scope::NotUnix, INT),
    def(S, SO_TXTIME, "SO_TXTIME", Scope::Any, Size::Fixed(8)),
    def(S, SO_RESERVE_MEM, "SO_RESERVE_MEM", Scope::NotUnix, INT),
    def(S, SO_TXREHASH, "SO_TXREHASH", Scope::Any, INT),
    def(S, SO_RCVMARK, "SO_RCVMARK", Scope::Any, INT),
    def(S, SO_RCVPRIORITY, "SO_RCVPRIORITY", Scope::Any, INT),
    // IPv4 level.
    def(IP, libc::IP_TTL, "IP_TTL", Scope::Ip, INT),
    def(IP, libc::IP_HDRINCL, "IP_HDRINCL", Scope::Raw4, INT),
    def(IP, libc::IP_OPTIONS, "IP_OPTIONS", Scope::Ip, Size::Upto(40)),
    def(IP, libc::IP_RECVOPTS, "IP_RECVOPTS", Scope::Ip, INT),
    def(IP, libc::IP_RETOPTS, "IP_RETOPTS", Scope::Ip, INT),
    def(IP, libc::IP_PKTINFO, "IP_PKTINFO", Scope::Ip, INT),
    def(IP, libc::IP_MTU_DISCOVER, "IP_MTU_DISCOVER", Scope::Ip, INT),
    def(IP, libc::IP_RECVERR, "IP_RECVERR", Scope::Ip, INT),
    def(IP, IP_RECVERR_RFC4884, "IP_RECVERR_RFC4884", Scope::Ip, INT),
    def(IP, libc::IP_RECVTTL, "IP_RECVTTL", Scope::Ip, INT),
    def(IP, libc::IP_RECVTOS, "IP_RECVTOS", Scope::Ip, INT),
    def(IP, libc::IP_PASSSEC, "IP_PASSSEC", Scope::Ip, INT),
    def(IP, libc::IP_RECVORIGDSTADDR, "IP_RECVORIGDSTADDR", Scope::Ip, INT),
    def(IP, libc::IP_MINTTL, "IP_MINTTL", Scope::Ip, INT),
    def(IP, libc::IP_NODEFRAG, "IP_NODEFRAG", Scope::Raw4, INT),
    def(IP, libc::IP_CHECKSUM, "IP_CHECKSUM", Scope::Ip, INT),
    def(IP, IP_RECVFRAGSIZE, "IP_RECVFRAGSIZE", Scope::Ip, INT),
    def(IP, libc::IP_MULTICAST_IF, "IP_MULTICAST_IF", Scope::IpDgram, Size::Fixed(4)),
    def(IP, libc::IP_MULTICAST_TTL, "IP_MULTICAST_TTL", Scope::IpDgram, INT),
    def(IP, libc::IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", Scope::IpDgram, INT),
    def(IP, libc::IP_MULTICAST_ALL, "IP_MULTICAST_ALL", Scope::IpDgram, INT),
    def(IP, libc::IP_UNICAST_IF, "IP_UNICAST_IF", Scope::Ip, INT),
    // IPv6 level.
    def(V6, libc::IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", Scope::Ipv6, INT),
    def(V6, IPV6_2292PKTINFO, "IPV6_2292PKTINFO", Scope::Ipv6, INT),
    def(V6, IPV6_2292HOPOPTS, "IPV6_2292HOPOPTS", Scope::Ipv6, INT),
    def(V6, IPV6_2292DSTOPTS, "IPV6_2292DSTOPTS", Scope::Ipv6, INT),
    def(V6, IPV6_2292RTHDR, "IPV6_2292RTHDR", Scope::Ipv6, INT),
    def(V6, IPV6_2292HOPLIMIT, "IPV6_2292HOPLIMIT", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVHOPOPTS, "IPV6_RECVHOPOPTS", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVRTHDR, "IPV6_RECVRTHDR", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVDSTOPTS, "IPV6_RECVDSTOPTS", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVTCLASS, "IPV6_RECVTCLASS", Scope::Ipv6, INT),
    def(V6, IPV6_FLOWINFO, "IPV6_FLOWINFO", Scope::Ipv6, INT),
    def(V6, IPV6_RECVPATHMTU, "IPV6_RECVPATHMTU", Scope::Ipv6, INT),
    def(V6, IPV6_RECVORIGDSTADDR, "IPV6_RECVORIGDSTADDR", Scope::Ipv6, INT),
    def(V6, IPV6_RECVFRAGSIZE, "IPV6_RECVFRAGSIZE", Scope::Ipv6, INT),
    def(V6, libc::IPV6_RECVERR, "IPV6_RECVERR", Scope::Ipv6, INT),
    def(V6, IPV6_RECVERR_RFC4884, "IPV6_RECVERR_RFC4884", Scope::Ipv6, INT),
    def(V6, libc::IPV6_TCLASS, "IPV6_TCLASS", Scope::Ipv6, INT),
    def(V6, libc::IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", Scope::Ipv6, INT),
    def(V6, libc::IPV6_MULTICAST_IF, "IPV6_MULTICAST_IF", Scope::Ipv6Dgram, INT),
    def(V6, libc::IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", Scope::Ipv6Dgram, INT),
    def(V6, libc::IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", Scope::Ipv6Dgram, INT),
    def(V6, IPV6_MULTICAST_ALL, "IPV6_MULTICAST_ALL", Scope::Ipv6Dgram, INT),
    def(V6, libc::IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", Scope::Ipv6, INT),
    def(V6, libc::IPV6_DONTFRAG, "IPV6_DONTFRAG", Scope::Ipv6, INT),
    def(V6, IPV6_AUTOFLOWLABEL, "IPV6_AUTOFLOWLABEL", Scope::Ipv6, INT),
    def(V6, IPV6_FLOWINFO_SEND, "IPV6_FLOWINFO_SEND", Scope::Ipv6, INT),
    def(V6, IPV6_ADDR_PREFERENCES, "IPV6_ADDR_PREFERENCES", Scope::Ipv6, INT),
    def(V6, IPV6_MINHOPCOUNT, "IPV6_MINHOPCOUNT", Scope::Ipv6, INT),
    def(V6, IPV6_UNICAST_IF, "IPV6_UNICAST_IF", Scope::Ipv6, INT),
    def(V6, libc::IPV6_ROUTER_ALERT, "IPV6_ROUTER_ALERT", Scope::Raw6, INT),
    def(V6, IPV6_ROUTER_ALERT_ISOLATE, "IPV6_ROUTER_ALERT_ISOLATE", Scope::Raw6, INT),
    def(V6, IPV6_HOPOPTS, "IPV6_HOPOPTS", Scope::Ipv6, Size::Upto(2048)),
    def(V6, IPV6_RTHDRDSTOPTS, "IPV6_RTHDRDSTOPTS", Scope::Ipv6, Size::Upto(2048)),
    def(V6, IPV6_RTHDR, "IPV6_RTHDR", Scope::Ipv6, Size::Upto(2048)),
    def(V6, IPV6_DSTOPTS, "IPV6_DSTOPTS", Scope::Ipv6, Size::Upto(2048)),
    // Multicast memberships (after the multicast options).
    special(def(IP, MCAST_MSFILTER, "MCAST_MSFILTER", Scope::IpDgram, GROUP_FILTER), Special::Membership),
    special(def(V6, MCAST_MSFILTER, "MCAST_MSFILTER(IPv6)", Scope::Ipv6Dgram, GROUP_FILTER), Special::Membership),
    // Raw sockets.
    def(SOL_RAW, ICMP_FILTER, "ICMP_FILTER", Scope::Raw4, Size::Fixed(4)),
    def(SOL_RAW, IPV6_CHECKSUM, "IPV6_CHECKSUM", Scope::Raw6, INT),
    def(SOL_ICMPV6, ICMPV6_FILTER, "ICMPV6_FILTER", Scope::Raw6, Size::Fixed(32)),
    // TCP.
    special(def(TCP, libc::TCP_REPAIR, "TCP_REPAIR", Scope::Tcp, INT), Special::Refuse("a socket the process put in TCP repair mode")),
    special(def(TCP, libc::TCP_ULP, "TCP_ULP", Scope::Tcp, Size::Upto(16)), Special::Refuse("an upper layer protocol (kernel TLS...) on a TCP socket")),
    def(TCP, libc::TCP_NODELAY, "TCP_NODELAY", Scope::Tcp, INT),
    def(TCP, libc::TCP_CORK, "TCP_CORK", Scope::Tcp, INT),
    special(def(TCP, libc::TCP_MAXSEG, "TCP_MAXSEG", Scope::Tcp, INT), Special::UserMss),
    special(def(TCP, libc::TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP", Scope::Tcp, INT), Special::Unconnected),
    def(TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE", Scope::Tcp, INT),
    def(TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL", Scope::Tcp, INT),
    def(TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT", Scope::Tcp, INT),
    def(TCP, libc::TCP_SYNCNT, "TCP_SYNCNT", Scope::Tcp, INT),
    def(TCP, libc::TCP_LINGER2, "TCP_LINGER2", Scope::Tcp, INT),
    def(TCP, libc::TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", Scope::Tcp, INT),
    def(TCP, libc::TCP_QUICKACK, "TCP_QUICKACK", Scope::Tcp, INT),
    def(TCP, libc::TCP_CONGESTION, "TCP_CONGESTION", Scope::Tcp, Size::Upto(16)),
    def(TCP, TCP_THIN_LINEAR_TIMEOUTS, "TCP_THIN_LINEAR_TIMEOUTS", Scope::Tcp, INT),
    def(TCP, libc::TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", Scope::Tcp, INT),
    def(TCP, libc::TCP_FASTOPEN, "TCP_FASTOPEN", Scope::Tcp, INT),
    def(TCP, libc::TCP_FASTOPEN_CONNECT, "TCP_FASTOPEN_CONNECT", Scope::Tcp, INT),
    def(TCP, TCP_FASTOPEN_NO_COOKIE, "TCP_FASTOPEN_NO_COOKIE", Scope::Tcp, INT),
    def(TCP, TCP_FASTOPEN_KEY, "TCP_FASTOPEN_KEY", Scope::Tcp, Size::Upto(32)),
    def(TCP, libc::TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", Scope::Tcp, INT),
    def(TCP, libc::TCP_SAVE_SYN, "TCP_SAVE_SYN", Scope::Tcp, INT),
    def(TCP, TCP_INQ, "TCP_INQ", Scope::Tcp, INT),
    def(TCP, TCP_TX_DELAY, "TCP_TX_DELAY", Scope::Tcp, INT),
    def(TCP, TCP_RTO_MAX_MS, "TCP_RTO_MAX_MS", Scope::Tcp, INT),
    def(TCP, TCP_RTO_MIN_US, "TCP_RTO_MIN_US", Scope::Tcp, INT),
    def(TCP, TCP_DELACK_MAX_US, "TCP_DELACK_MAX_US", Scope::Tcp, INT),
    // UDP.
    def(UDP, libc::UDP_CORK, "UDP_CORK", Scope::Udp, INT),
    def(UDP, UDP_ENCAP, "UDP_ENCAP", Scope::Udp, INT),
    def(UDP, UDP_NO_CHECK6_TX, "UDP_NO_CHECK6_TX", Scope::Udp, INT),
    def(UDP, UDP_NO_CHECK6_RX, "UDP_NO_CHECK6_RX", Scope::Udp, INT),
    def(UDP, UDP_SEGMENT, "UDP_SEGMENT", Scope::Udp, INT),
    def(UDP, UDP_GRO, "UDP_GRO", Scope::Udp, INT),
    def(SOL_UDPLITE, UDPLITE_SEND_CSCOV, "UDPLITE_SEND_CSCOV", Scope::UdpLite, INT),
    def(SOL_UDPLITE, UDPLITE_RECV_CSCOV, "UDPLITE_RECV_CSCOV", Scope::UdpLite, INT),
    // Once the socket is complete.
    late(def(S, SO_PEEK_OFF, "SO_PEEK_OFF", Scope::Any, INT)),
    late(special(def(S, libc::SO_ATTACH_FILTER, "SO_ATTACH_FILTER", Scope::Any, Size::Upto(4096 * 8)), Special::Filter)),
    late(def(S, SO_LOCK_FILTER, "SO_LOCK_FILTER", Scope::Any, INT)),
    late(special(def(S, SO_BUF_LOCK, "SO_BUF_LOCK", Scope::Any, INT), Special::BufLock)),
    // Never set: compared once the socket is built.
    late(special(def(S, libc::SO_PEERCRED, "SO_PEERCRED", Scope::Unix, Size::Fixed(12)), Special::PeerCred)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_listed_once() {
        for (i, d) in OPTIONS.iter().enumerate() {
            let twice = OPTIONS[..i]
                .iter()
                .any(|x| (x.level, x.name) == (d.level, d.name));
            assert!(!twice, "{} listed twice", d.label);
        }
    }

    #[test]
    fn values_are_shown_as_numbers_names_or_hex() {
        assert_eq!(show(&5i32.to_ne_bytes()), "5");
        assert_eq!(show(b"tls\0\0\0"), "\"tls\"");
        assert_eq!(show(&[1, 2, 3]), "010203");
    }

    #[test]
    fn check_refuses_unknown_twice_and_missized() {
        let mut o = SockOpts::default();
        o.set_int(libc::SOL_SOCKET, libc::SO_PRIORITY, 3);
        assert_eq!(o.check(), Ok(()));
        assert_eq!(o.int(libc::SOL_SOCKET, libc::SO_PRIORITY), Some(3));
        let mut bad = o.clone();
        bad.opts.push(bad.opts[0].clone());
        assert!(bad.check().unwrap_err().contains("twice"));
        let mut bad = o.clone();
        bad.opts[0].value.push(0);
        assert!(bad.check().unwrap_err().contains("5 bytes"));
        let mut bad = o;
        bad.opts[0].name = 9999;
        assert!(bad.check().unwrap_err().contains("unknown"));
    }
}
