//! IP sockets (TCP, UDP, UDP-Lite, ping, raw) rebuilt in the child before the fd table is
//! filled (see `prep.rs`): created, early options set (`sockopts.rs`: before `bind`, as
//! `IP_FREEBIND` and `SO_BINDTODEVICE` must be), bound, connected or listening, late
//! options. The dump side is `dump/files/inet.rs`.
//!
//! An established connection is rebuilt with `TCP_REPAIR`. Ordering requirements (the
//! kernel's, see tcp(7) and CRIU's soccr): repair mode on; bind (repair mode forces the
//! address reuse that lets it share a port with a listener); both queue sequence numbers
//! (the queue's start: the saved next sequence minus the saved queue length); connect
//! (no SYN in repair mode); negotiated options and the timestamp clock (only once
//! connected); the receive queue; the sent-but-unacknowledged part of the send queue in
//! repair mode and the never-sent part out of it; the window; repair mode off (a window
//! probe tells the peer we are back). `--tcp-close` (at dump or restore) rebuilds such a
//! connection and aborts it without a packet: the task's next call on it fails with
//! `ECONNABORTED`.

use super::prep::{self, Prepared};
use super::sockopts;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::sock::{InetSocket, InetState, SockAddr, TcpRepair};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::socket::{TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE};

/// `TCPOPT_*` codes for `TCP_REPAIR_OPTIONS` and `TCPI_OPT_*` bits of the saved options.
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;

/// Ordering requirements: every connection leaves repair mode only once all of them
/// exist — a segment (the window probe, never-sent data) reaching a connection whose
/// other end is not rebuilt yet would meet a listener or nothing, and be answered with a
/// reset.
pub fn prepare(
    child: &Child,
    files: &FilesImage,
    prepared: &mut Prepared,
    tcp_close: bool,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    let at = |fd: i32| RestoreError::at_fd(pid, fd);
    let mut repaired = Vec::new();
    for e in &files.fds {
        let FdKind::Inet(s) = &e.kind else { continue };
        let share = port_shared(files, s);
        let fd = one(child, e, s, prepared, tcp_close, share).map_err(at(e.fd))?;
        prepared.assign(e.fd, fd);
        if let InetState::Established(r) = &s.state {
            if !tcp_close {
                repaired.push((e, s, r, fd));
            }
        }
    }
    for (e, s, r, fd) in repaired {
        resume(child, fd, s, r).map_err(at(e.fd))?;
    }
    Ok(())
}

/// Whether `s` is bound without `SO_REUSEPORT` to an address another socket of the table
/// holds with it: both were bound with it on (the kernel lets no other socket share a
/// reuseport socket's address) and `s` turned it off since.
fn port_shared(files: &FilesImage, s: &InetSocket) -> bool {
    let reuseport = |x: &InetSocket| x.opts.flag(libc::SOL_SOCKET, libc::SO_REUSEPORT);
    let bound = |x: &InetSocket| {
        matches!(
            x.state,
            InetState::Unconnected | InetState::Listening { .. }
        )
    };
    s.local.is_some()
        && bound(s)
        && !reuseport(s)
        && files.fds.iter().any(|e| match &e.kind {
            FdKind::Inet(o) => {
                o.ino != s.ino
                    && (o.family, o.protocol, &o.local) == (s.family, s.protocol, &s.local)
                    && bound(o)
                    && reuseport(o)
            }
            _ => false,
        })
}

/// Ordering requirements: early options before `bind`; a socket sharing its port
/// (`share`, see [`port_shared`]) has `SO_REUSEPORT` on from before `bind` until after
/// `listen` (which checks the port again); late options last.
fn one(
    child: &Child,
    e: &FdEntry,
    s: &InetSocket,
    prepared: &mut Prepared,
    tcp_close: bool,
    share: bool,
) -> Result<u64, RestoreError> {
    let got = child.remote().call(
        "socket",
        libc::SYS_socket,
        &[s.family as u64, s.sock_type as u64, s.protocol as u64],
    )?;
    let fd = prepared.park(child, got)?;
    sockopts::early(child, fd, &s.opts)?;
    let reuseport = |on: bool| {
        prep::set_int(
            child,
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            i32::from(on),
        )
    };
    if share {
        reuseport(true)?;
    }
    match &s.state {
        InetState::Unconnected => unconnected(child, fd, s)?,
        InetState::Listening { backlog } => {
            bind(child, fd, s)?;
            child
                .remote()
                .call("listen", libc::SYS_listen, &[fd, u64::from(*backlog)])?;
        }
        InetState::Established(r) if !tcp_close => repair(child, fd, s, r)?,
        InetState::Established(_) | InetState::Closed => aborted(child, fd, s)?,
    }
    if share {
        reuseport(false)?;
    }
    if !matches!(s.state, InetState::Established(_)) || tcp_close {
        sockopts::late(child, fd, &s.opts, false)?;
    }
    prep::set_fl(child, fd, e.flags)?;
    Ok(fd)
}

fn unconnected(child: &Child, fd: u64, s: &InetSocket) -> Result<(), RestoreError> {
    bind(child, fd, s)?;
    if let Some(r) = &s.remote {
        let (sa, len) = sockaddr(s.family, r);
        prep::address_call(child, "connect", libc::SYS_connect, fd, &sa, len)?;
    }
    Ok(())
}

/// Binds to the saved address. An address that is not local was bound with
/// `IP_FREEBIND` on, which the owner may have turned off since: bound the same way, then
/// off again (`IPV6_FREEBIND` sets the same flag).
fn bind(child: &Child, fd: u64, s: &InetSocket) -> Result<(), RestoreError> {
    let Some(l) = &s.local else {
        return Ok(());
    };
    let (sa, len) = sockaddr(s.family, l);
    match prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len) {
        Err(RestoreError::Inject(crate::sys::inject::InjectError::Failed {
            source: nix::errno::Errno::EADDRNOTAVAIL,
            ..
        })) => {
            let (level, name) = match s.family {
                libc::AF_INET => (libc::SOL_IP, libc::IP_FREEBIND),
                _ => (libc::SOL_IPV6, crate::image::sockopts::num::IPV6_FREEBIND),
            };
            prep::set_int(child, fd, level, name, 1)?;
            prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len)?;
            prep::set_int(child, fd, level, name, 0)
        }
        r => r,
    }
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes and length.
fn sockaddr(family: i32, a: &SockAddr) -> (Vec<u8>, u64) {
    let mut sa = (family as u16).to_ne_bytes().to_vec();
    sa.extend_from_slice(&a.port.to_be_bytes());
    if family == libc::AF_INET {
        sa.extend_from_slice(&a.ip);
        sa.resize(16, 0);
    } else {
        sa.extend_from_slice(&[0; 4]); // flowinfo
        sa.extend_from_slice(&a.ip);
        sa.extend_from_slice(&a.scope_id.to_ne_bytes());
    }
    let len = sa.len() as u64;
    (sa, len)
}

fn repair_on(child: &Child, fd: u64, on: bool) -> Result<(), RestoreError> {
    prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_REPAIR, i32::from(on))
}

fn set_queue(child: &Child, fd: u64, queue: i32) -> Result<(), RestoreError> {
    prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, queue)
}

/// Binds and connects `fd` in repair mode, with queue sequence numbers `seqs`
/// (receive, send) — no packet is sent.
fn connect_quietly(
    child: &Child,
    fd: u64,
    s: &InetSocket,
    seqs: (u32, u32),
) -> Result<(), RestoreError> {
    let (Some(l), Some(r)) = (&s.local, &s.remote) else {
        return Err(RestoreError::Unsupported {
            what: "an established TCP socket without both addresses".into(),
        });
    };
    repair_on(child, fd, true)?;
    let (sa, len) = sockaddr(s.family, l);
    prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len)?;
    for (queue, seq) in [(TCP_RECV_QUEUE, seqs.0), (TCP_SEND_QUEUE, seqs.1)] {
        set_queue(child, fd, queue)?;
        prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_QUEUE_SEQ, seq as i32)?;
    }
    let (sa, len) = sockaddr(s.family, r);
    prep::address_call(child, "connect", libc::SYS_connect, fd, &sa, len)
}

fn repair(child: &Child, fd: u64, s: &InetSocket, r: &TcpRepair) -> Result<(), RestoreError> {
    let recv_start = r.recv_seq.wrapping_sub(r.recv_queue.len() as u32);
    let send_start = r.send_seq.wrapping_sub(r.send_queue.len() as u32);
    connect_quietly(child, fd, s, (recv_start, send_start))?;
    prep::set_bytes(
        child,
        fd,
        libc::SOL_TCP,
        libc::TCP_REPAIR_OPTIONS,
        &repair_options(r),
    )?;
    if r.options & TCPI_OPT_TIMESTAMPS != 0 {
        prep::set_int(
            child,
            fd,
            libc::SOL_TCP,
            libc::TCP_TIMESTAMP,
            r.timestamp as i32,
        )?;
    }
    set_queue(child, fd, TCP_RECV_QUEUE)?;
    send_halving(child, fd, &r.recv_queue)?;
    let sent = r.send_queue.len() - r.unsent as usize;
    set_queue(child, fd, TCP_SEND_QUEUE)?;
    send_halving(child, fd, &r.send_queue[..sent])?;
    let window: Vec<u8> = r.window.iter().flat_map(|w| w.to_ne_bytes()).collect();
    prep::set_bytes(child, fd, libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, &window)?;
    set_queue(child, fd, TCP_NO_QUEUE)
}

/// Out of repair mode (a window probe tells the peer we are back), the never-sent part
/// of the send queue sent for real, the address reuse repair mode reset, and the late
/// options.
fn resume(child: &Child, fd: u64, s: &InetSocket, r: &TcpRepair) -> Result<(), RestoreError> {
    repair_on(child, fd, false)?;
    let sent = r.send_queue.len() - r.unsent as usize;
    prep::send_all(child, fd, &r.send_queue[sent..], prep::CHUNK)?;
    sockopts::reuse(child, fd, &s.opts)?;
    sockopts::late(child, fd, &s.opts, false)
}

/// In repair mode the kernel queues each send as one linear buffer: a chunk too large
/// for its allocator fails with `ENOMEM`, and smaller ones are tried.
fn send_halving(child: &Child, fd: u64, data: &[u8]) -> Result<(), RestoreError> {
    let mut chunk = prep::CHUNK;
    loop {
        match prep::send_all(child, fd, data, chunk) {
            Err(RestoreError::Inject(crate::sys::inject::InjectError::Failed {
                source: nix::errno::Errno::ENOMEM,
                ..
            })) if chunk > 4096 => chunk /= 2,
            r => return r,
        }
    }
}

/// `struct tcp_repair_opt` pairs for what the connection negotiated.
fn repair_options(r: &TcpRepair) -> Vec<u8> {
    let mut opts = vec![(TCPOPT_MAXSEG, r.mss)];
    if r.options & TCPI_OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if r.options & TCPI_OPT_WSCALE != 0 {
        opts.push((
            TCPOPT_WINDOW,
            u32::from(r.snd_wscale) | u32::from(r.rcv_wscale) << 16,
        ));
    }
    if r.options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.iter()
        .flat_map(|(c, v)| [c.to_ne_bytes(), v.to_ne_bytes()].concat())
        .collect()
}

/// A connection restored closed: connected in repair mode, then disconnected in repair
/// mode (`connect(AF_UNSPEC)`), which aborts it without a packet.
fn aborted(child: &Child, fd: u64, s: &InetSocket) -> Result<(), RestoreError> {
    connect_quietly(child, fd, s, (0, 0))?;
    let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
    let mut sa = unspec.to_vec();
    sa.resize(16, 0);
    prep::address_call(child, "connect(AF_UNSPEC)", libc::SYS_connect, fd, &sa, 16)?;
    repair_on(child, fd, false)?;
    sockopts::reuse(child, fd, &s.opts)
}
