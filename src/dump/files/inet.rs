//! IP sockets, v4 and v6 — TCP, UDP, UDP-Lite, ICMP echo ("ping") and raw: bound and
//! connected addresses, options (`sockopts.rs`), listening backlogs, and established TCP
//! connections under `--tcp-established`.
//!
//! An established connection is saved with `TCP_REPAIR`: the socket is put in repair mode
//! (the kernel then sends nothing on it, not even when it is closed), and the sequence
//! numbers, both queues (peeked), the negotiated options, the timestamp clock and the
//! window are read. When the peer is outside the dumped process, its packets are dropped
//! first (`crate::netlock`) so nothing changes while the queues are read and nothing
//! resets the connection while it is down. Sockets stay in repair mode in [`Held`] until
//! the dump ends: a dump that kills the task closes them silently, any other end (a
//! failure, `--leave-running`) takes them out of repair mode and lifts the lock.
//!
//! Queued datagrams are not saved: they are dropped, as a network may drop them. A corked
//! datagram socket holding unsent data is refused.
//! Without `--tcp-established` an established connection is refused; `--tcp-close`
//! saves it as closed. The restore side is `restore/files/inet.rs`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{tcp_state, InetSocket, InetState, SockAddr, SockKind, TcpRepair};
use crate::image::sockopts::Scope;
use crate::sys::sock_diag::{self, TCP_LISTEN};
use crate::sys::socket::{
    getsockopt_bytes, getsockopt_int, ioctl_get_int, recv_peek, setsockopt_int, SIOCINQ, SIOCOUTQ,
    SIOCOUTQNSD, SO_PEEK_OFF, TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE,
};

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const SYN_SENT: u8 = tcp_state::SYN_SENT;

/// Sockets in repair mode and the network lock, owned until the dump ends; and the
/// links made for `--link-remap` (`path.rs`), owned until the image is committed.
///
/// Drop policy: take every socket out of repair mode and lift the lock — the target runs
/// on as before — and remove the links the image no longer needs.
/// [`Held::keep_for_restore`] is the other end, after the task was killed;
/// [`Held::keep_links`] once the image holding the links is committed.
pub struct Held {
    pid: i32,
    repaired: Vec<OwnedFd>,
    locked: Option<crate::netlock::LockMode>,
    /// Where stasis reaches each link, and its path in the tree.
    links: Vec<(std::path::PathBuf, String)>,
    /// The lock is that of the tree's whole network namespace (`dump/ns/net.rs`).
    namespace: bool,
}

impl Held {
    pub fn new(pid: i32) -> Self {
        Held {
            pid,
            repaired: Vec::new(),
            locked: None,
            links: Vec::new(),
            namespace: false,
        }
    }

    /// The lock of the tree's whole network namespace, taken under the root's name.
    pub fn namespace_locked(root: i32, mode: crate::netlock::LockMode) -> Self {
        let mut held = Held::new(root);
        held.locked = Some(mode);
        held.namespace = true;
        held
    }

    /// Whether it holds the lock of the tree's network namespace.
    pub fn locks_namespace(&self) -> bool {
        self.namespace && self.locked.is_some()
    }

    /// A link made for the image (at `path`, `inside` the tree), removed if the dump
    /// fails.
    pub fn link(&mut self, path: std::path::PathBuf, inside: &str) {
        self.links.push((path, inside.to_string()));
    }

    /// Removes the links no fd of `files` opens any more: those made for fds
    /// `Shared::link_files` found inherited from an earlier process.
    pub fn drop_unused_links(&mut self, files: &crate::image::files::FilesImage) {
        use crate::image::files::FdKind;
        let used = |inside: &str| {
            (files.fds.iter()).any(|e| matches!(&e.kind, FdKind::Remap(r) if r.link.path == inside))
        };
        self.links.retain(|(path, inside)| {
            let keep = used(inside);
            if !keep {
                let _ = std::fs::remove_file(path);
            }
            keep
        });
    }

    /// The image holding the links is committed: they stay for the restore.
    pub fn keep_links(&mut self) {
        self.links.clear();
    }

    /// The task is dead: close our duplicates while still in repair mode (no FIN, no
    /// reset), and leave the lock for the restore to lift.
    pub fn keep_for_restore(mut self) {
        self.repaired.clear();
        self.locked = None;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for s in &self.repaired {
            let _ = setsockopt_int(s.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 0);
        }
        if let Some(mode) = self.locked {
            let _ = crate::netlock::unlock(mode, self.pid);
        }
        for (link, _) in &self.links {
            let _ = std::fs::remove_file(link);
        }
    }
}

pub fn inet_kind(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    family: i32,
) -> Result<FdKind, DumpError> {
    let pid = ctx.pid;
    let err = |what: String| DumpError::unsupported(format!("fd {fd} of pid {pid}: {what}"));
    let s = sock.as_fd();
    let protocol = getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PROTOCOL)
        .map_err(|e| err(format!("getsockopt(SO_PROTOCOL): {e}")))?;
    let ty = getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE)
        .map_err(|e| err(format!("getsockopt(SO_TYPE): {e}")))?;
    let kind = SockKind {
        family,
        ty,
        protocol,
    };
    if !supported(kind) {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is an inet socket of protocol {protocol} (type {ty}); stasis checkpoints TCP, UDP, UDP-Lite, ping and raw ones only"
        )));
    }
    let tcp = Scope::Tcp.covers(kind);
    let info = if tcp {
        Some(tcp_info(s).map_err(|e| err(format!("getsockopt(TCP_INFO): {e}")))?)
    } else {
        None
    };
    let connected = info.is_some_and(|i| i[0] != TCP_CLOSE && i[0] != TCP_LISTEN);
    let raw = ty == libc::SOCK_RAW;
    let local = address(getsockname::<SockaddrStorage>(fd_raw(s)).ok(), raw);
    let mut remote = peer_address(getpeername::<SockaddrStorage>(fd_raw(s)).ok());
    if remote.is_none() && !tcp {
        remote = unreported_peer(ctx.ns_pid(ino), kind, ino).map_err(err)?;
    }
    if remote.is_none() && info.is_some_and(|i| i[0] == TCP_CLOSE || i[0] == SYN_SENT) {
        remote = peer_name(s, family);
    }
    let opts = ctx.options((fd, ino), s, kind, connected)?;
    if opts.flag(libc::SOL_UDP, libc::UDP_CORK) {
        corked(s).map_err(err)?;
    }
    let state = match info {
        Some(info) => tcp_state(ctx, fd, ino, sock, family, &info, (&local, &remote))?,
        None => datagram_state(ctx, kind, ino).map_err(err)?,
    };
    Ok(FdKind::Inet(Box::new(InetSocket {
        ino,
        family,
        sock_type: ty,
        protocol,
        local,
        remote,
        state,
        opts,
    })))
}

/// The peer of a datagram or raw socket connected to port 0, which `getpeername` does not
/// report (it takes port 0 for "not connected"): from the socket table of its namespace,
/// that of `pid`.
fn unreported_peer(pid: i32, kind: SockKind, ino: u64) -> Result<Option<SockAddr>, String> {
    use crate::proc::netsock;
    let Some(table) = netsock::table_name(kind.family, kind.ty, kind.protocol) else {
        return Ok(None);
    };
    let path = format!("/proc/{pid}/net/{table}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(netsock::find(&text, ino)
        .filter(|s| s.state == TCP_ESTABLISHED)
        .map(|s| SockAddr {
            ip: s.remote.0,
            port: s.remote.1,
            scope_id: 0,
        }))
}

/// TCP, UDP and UDP-Lite, ICMP echo ("ping") and raw sockets.
fn supported(k: SockKind) -> bool {
    let dgram = [
        libc::IPPROTO_UDP,
        libc::IPPROTO_UDPLITE,
        libc::IPPROTO_ICMP,
        libc::IPPROTO_ICMPV6,
    ];
    match k.ty {
        libc::SOCK_STREAM => k.protocol == libc::IPPROTO_TCP,
        libc::SOCK_DGRAM => dgram.contains(&k.protocol),
        libc::SOCK_RAW => true,
        _ => false,
    }
}

/// A corked datagram socket holding data not yet sent: the pending datagram lives in
/// the kernel only, which nothing can read back.
fn corked(s: BorrowedFd<'_>) -> Result<(), String> {
    let outq = ioctl_get_int(s, SIOCOUTQ).map_err(|e| format!("ioctl(SIOCOUTQ): {e}"))?;
    if outq > 0 {
        return Err(format!(
            "a datagram socket holds corked data not yet sent (UDP_CORK; {outq} bytes of its send buffer), which stasis cannot checkpoint"
        ));
    }
    Ok(())
}

fn fd_raw(s: BorrowedFd<'_>) -> i32 {
    use std::os::fd::AsRawFd;
    s.as_raw_fd()
}

/// The bound address: `None` when both address and port are unset (a raw socket's port
/// is its protocol: only its address counts).
fn address(sa: Option<SockaddrStorage>, raw: bool) -> Option<SockAddr> {
    let a = peer_address(sa)?;
    let any = a.ip.iter().all(|b| *b == 0);
    (!any || (a.port != 0 && !raw)).then_some(a)
}

/// An address as it is (`getpeername` fails on an unconnected socket).
fn peer_address(sa: Option<SockaddrStorage>) -> Option<SockAddr> {
    let sa = sa?;
    if let Some(v4) = sa.as_sockaddr_in() {
        return Some(SockAddr {
            ip: v4.ip().octets().to_vec(),
            port: v4.port(),
            scope_id: 0,
        });
    }
    let v6 = sa.as_sockaddr_in6()?;
    Some(SockAddr {
        ip: v6.ip().octets().to_vec(),
        port: v6.port(),
        scope_id: v6.scope_id(),
    })
}

fn tcp_state(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    family: i32,
    info: &[u8; 8],
    (local, remote): (&Option<SockAddr>, &Option<SockAddr>),
) -> Result<InetState, DumpError> {
    let pid = ctx.pid;
    let conn = Conn {
        fd,
        ino,
        state: info[0],
        info,
        local,
        remote,
    };
    match info[0] {
        TCP_CLOSE if remote.is_none() => never_connected(sock.as_fd()).map_err(|e| {
            DumpError::unsupported(format!("fd {fd} of pid {pid}: poll: {e}"))
        }),
        TCP_LISTEN => listening(ctx, fd, ino, family),
        TCP_ESTABLISHED | TCP_CLOSE | tcp_state::SYN_SENT | tcp_state::FIN_WAIT1
        | tcp_state::FIN_WAIT2 | tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK
        | tcp_state::CLOSING => connection(ctx, sock, &conn),
        other => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a TCP socket in state {} ({other}), which stasis cannot checkpoint",
            tcp_state::name(other)
        ))),
    }
}

/// A TCP socket with a peer, in one of the states `TCP_REPAIR` can save.
struct Conn<'a> {
    fd: i32,
    ino: u64,
    state: u8,
    info: &'a [u8; 8],
    local: &'a Option<SockAddr>,
    remote: &'a Option<SockAddr>,
}

/// A TCP socket never connected (or disconnected): its receive side may be shut down
/// (`POLLRDHUP`; the send side of a socket in CLOSE shows nowhere, and changes nothing:
/// sending fails with `EPIPE` either way).
fn never_connected(s: BorrowedFd<'_>) -> nix::Result<InetState> {
    let shutdown = if crate::sys::socket::poll_rdhup(s)? {
        1
    } else {
        0
    };
    Ok(match shutdown {
        0 => InetState::Unconnected,
        _ => InetState::Shut { shutdown },
    })
}

/// A datagram or raw socket: half-closed (`INET_DIAG_SHUTDOWN`; UDP and UDP-Lite only,
/// the others cannot be shut down for real).
fn datagram_state(ctx: &mut SockCtx<'_>, kind: SockKind, ino: u64) -> Result<InetState, String> {
    let udp = [libc::IPPROTO_UDP, libc::IPPROTO_UDPLITE];
    if kind.ty != libc::SOCK_DGRAM || !udp.contains(&kind.protocol) {
        return Ok(InetState::Unconnected);
    }
    let shutdown = ctx
        .inet_table(ino, kind.family, kind.protocol as u8)
        .map_err(|e| format!("list UDP sockets: {e}"))?
        .get(&(ino as u32))
        .map_or(0, |d| d.shutdown);
    Ok(match shutdown {
        0 => InetState::Unconnected,
        _ => InetState::Shut { shutdown },
    })
}

/// The peer of a TCP socket connecting or whose connection ended: `SO_PEERNAME` reports
/// it in SYN_SENT and CLOSE too, which `getpeername` does not (the buffer must not be
/// longer than the address).
fn peer_name(s: BorrowedFd<'_>, family: i32) -> Option<SockAddr> {
    let mut buf = [0u8; 28];
    let len = if family == libc::AF_INET { 16 } else { 28 };
    let len = getsockopt_bytes(s, libc::SOL_SOCKET, libc::SO_PEERNAME, &mut buf[..len]).ok()?;
    parse_sockaddr(&buf[..len])
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes.
fn parse_sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    let (ip, scope_id) = match family {
        libc::AF_INET => (b.get(4..8)?.to_vec(), 0),
        libc::AF_INET6 => {
            let s = b.get(24..28)?;
            (
                b.get(8..24)?.to_vec(),
                u32::from_ne_bytes([s[0], s[1], s[2], s[3]]),
            )
        }
        _ => return None,
    };
    Some(SockAddr { ip, port, scope_id })
}

/// `TCP_INFO`: state at byte 0, options at 5, window scales at 6 (send: low nibble).
fn tcp_info(s: BorrowedFd<'_>) -> nix::Result<[u8; 8]> {
    let mut buf = [0u8; 232];
    getsockopt_bytes(s, libc::SOL_TCP, libc::TCP_INFO, &mut buf)?;
    let mut head = [0u8; 8];
    head.copy_from_slice(&buf[..8]);
    Ok(head)
}

fn listening(ctx: &SockCtx<'_>, fd: i32, ino: u64, family: i32) -> Result<InetState, DumpError> {
    let pid = ctx.pid;
    let all = ctx
        .in_ns(ino, || sock_diag::tcp_sockets(family, 1 << TCP_LISTEN))?
        .map_err(|e| DumpError::unsupported(format!("list TCP listeners: {e}")))?;
    let d = all.get(&(ino as u32)).ok_or_else(|| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid}: listening socket:[{ino}] is not in the kernel's TCP table"
        ))
    })?;
    if d.rqueue > 0 && !ctx.opts.skip_in_flight {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a listening TCP socket with {} connections not yet accepted; use --skip-in-flight to drop them",
            d.rqueue
        )));
    }
    Ok(InetState::Listening { backlog: d.wqueue })
}

/// A connection in `c.state`: saved with `TCP_REPAIR` under `--tcp-established` (one that
/// ended, CLOSE, always), as closed under `--tcp-close`, refused otherwise. Its packets are dropped (the network
/// lock) while it is down when its peer is outside the dump, and always in the closing
/// states: their restore replays the peer's FIN and ACK, to which the socket answers.
fn connection(ctx: &mut SockCtx<'_>, sock: OwnedFd, c: &Conn<'_>) -> Result<InetState, DumpError> {
    let (pid, fd) = (ctx.pid, c.fd);
    let (Some(local), Some(remote)) = (c.local, c.remote) else {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid}: a connected TCP socket without addresses"
        )));
    };
    let conn = format!("{} -> {}", addr_text(local), addr_text(remote));
    if ctx.opts.tcp_close {
        return Ok(InetState::Closed);
    }
    if let Some(maker) = ctx.ns_of(c.ino) {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a TCP connection ({conn}) of the network namespace \
             pid {maker} made; stasis saves connections of the tree's own network \
             namespace only"
        )));
    }
    let what = match c.state {
        TCP_ESTABLISHED => "an established TCP connection".to_string(),
        other => format!("a TCP connection in state {}", tcp_state::name(other)),
    };
    // A connection that ended (CLOSE) has nothing left on the wire for the peer to see
    // change, so it is saved without `--tcp-established`, as CRIU saves it; only its
    // unread data and its closed ends come back.
    if !ctx.opts.tcp_established && c.state != TCP_CLOSE {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is {what} ({conn}); use --tcp-established to checkpoint it with TCP_REPAIR, or --tcp-close to restore it closed"
        )));
    }
    let mode = ctx.opts.network_lock;
    // A closing connection is locked even with its peer in the tree: its socket would
    // answer the FIN and ACK the restore replays (`restore/files/tcp_replay.rs`).
    let locked = mode != crate::netlock::LockMode::Skip
        && match c.state {
            TCP_ESTABLISHED => !peer_inside(ctx, local, remote)?,
            tcp_state::SYN_SENT => false,
            _ => true,
        };
    if locked {
        crate::netlock::lock(mode, pid, local, remote)
            .map_err(|e| DumpError::unsupported(format!("fd {fd} of pid {pid} ({conn}): {e}")))?;
        ctx.held.locked = Some(mode);
    }
    setsockopt_int(sock.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1).map_err(|e| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} ({conn}): setsockopt(TCP_REPAIR): {e}"
        ))
    })?;
    let repaired = sock.as_fd().try_clone_to_owned();
    ctx.held.repaired.push(sock);
    let sock = repaired.map_err(|e| DumpError::unsupported(format!("dup: {e}")))?;
    let mut r = repair_state(sock.as_fd(), c.info).map_err(|e| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} ({conn}): read its TCP_REPAIR state: {e}"
        ))
    })?;
    r.locked = locked;
    Ok(match c.state {
        TCP_ESTABLISHED => InetState::Established(Box::new(r)),
        state => InetState::Connection {
            state,
            repair: Box::new(r),
        },
    })
}

pub fn addr_text(a: &SockAddr) -> String {
    match a.ip.len() {
        4 => format!("{}.{}.{}.{}:{}", a.ip[0], a.ip[1], a.ip[2], a.ip[3], a.port),
        _ => {
            let b: [u8; 16] = a.ip.clone().try_into().unwrap_or([0; 16]);
            format!("[{}]:{}", std::net::Ipv6Addr::from(b), a.port)
        }
    }
}

/// Whether the other end of `local -> remote` is a socket of the dumped process.
fn peer_inside(ctx: &SockCtx<'_>, local: &SockAddr, remote: &SockAddr) -> Result<bool, DumpError> {
    let mask = 1 << TCP_ESTABLISHED;
    for family in [libc::AF_INET, libc::AF_INET6] {
        let all = sock_diag::tcp_sockets(family, mask)
            .map_err(|e| DumpError::unsupported(format!("list TCP connections: {e}")))?;
        let found = all.values().any(|d| {
            same(&d.src, remote)
                && same(&d.dst, local)
                && ctx.inodes.contains_key(&u64::from(d.ino))
        });
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A diag address (v4 in the first 4 bytes) equals `a` (v4, or v6 possibly v4-mapped).
fn same(d: &([u8; 16], u16), a: &SockAddr) -> bool {
    if d.1 != a.port {
        return false;
    }
    match a.ip.len() {
        4 => d.0[..4] == a.ip[..] || d.0[..] == mapped(&a.ip)[..],
        _ => d.0[..] == a.ip[..] || (a.ip[..12] == mapped(&[0; 4])[..12] && d.0[..4] == a.ip[12..]),
    }
}

fn mapped(v4: &[u8]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&v4[..4]);
    m
}

/// Everything `TCP_REPAIR` gives back about a socket in repair mode.
fn repair_state(s: BorrowedFd<'_>, info: &[u8; 8]) -> nix::Result<TcpRepair> {
    let state = info[0];
    let (mut outq, mut unsent) = (
        ioctl_get_int(s, SIOCOUTQ)? as usize,
        ioctl_get_int(s, SIOCOUTQNSD)? as u32,
    );
    if state == TCP_CLOSE {
        // Unsent or unacknowledged data of an ended connection: nobody will read it.
        (outq, unsent) = (0, 0);
    } else if tcp_state::fin_sent(state) {
        // The FIN counts in both (until acknowledged, until sent) but holds no data.
        outq = outq.saturating_sub(usize::from(!tcp_state::fin_acked(state)));
        unsent = unsent.saturating_sub(1);
    }
    let inq = ioctl_get_int(s, SIOCINQ)? as usize;
    let options = info[5];
    let timestamp = if options & 1 != 0 {
        getsockopt_int(s, libc::SOL_TCP, libc::TCP_TIMESTAMP)? as u32
    } else {
        0
    };
    let mut w = [0u8; 20];
    getsockopt_bytes(s, libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, &mut w)?;
    let window = std::array::from_fn(|i| {
        u32::from_ne_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
    });
    let (recv_seq, recv_queue) = queue(s, TCP_RECV_QUEUE, inq)?;
    let (send_seq, send_queue) = queue(s, TCP_SEND_QUEUE, outq)?;
    setsockopt_int(s, libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, TCP_NO_QUEUE)?;
    Ok(TcpRepair {
        send_seq,
        recv_seq,
        send_queue,
        unsent,
        recv_queue,
        mss: getsockopt_int(s, libc::SOL_TCP, libc::TCP_MAXSEG)? as u32,
        options,
        snd_wscale: info[6] & 0xf,
        rcv_wscale: info[6] >> 4,
        timestamp,
        window,
        locked: false,
    })
}

/// `TCP_QUEUE_SEQ` of one queue and its bytes, peeked (one byte more is asked for, to
/// be sure the queue holds exactly `len`).
fn queue(s: BorrowedFd<'_>, which: i32, len: usize) -> nix::Result<(u32, Vec<u8>)> {
    setsockopt_int(s, libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, which)?;
    let seq = getsockopt_int(s, libc::SOL_TCP, libc::TCP_QUEUE_SEQ)? as u32;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    let peek_off = getsockopt_int(s, libc::SOL_SOCKET, SO_PEEK_OFF)?;
    if peek_off >= 0 {
        setsockopt_int(s, libc::SOL_SOCKET, SO_PEEK_OFF, 0)?;
    }
    let mut buf = vec![0u8; len + 1];
    let got = recv_peek(s, &mut buf);
    if peek_off >= 0 {
        setsockopt_int(s, libc::SOL_SOCKET, SO_PEEK_OFF, peek_off)?;
    }
    let got = got?;
    if got.len != len {
        return Err(nix::errno::Errno::EIO);
    }
    buf.truncate(len);
    Ok((seq, buf))
}
