//! IP sockets (TCP, UDP, UDP-Lite, ping, raw) rebuilt in the child before the fd table is
//! filled (see `prep.rs`): created, early options set (`sockopts.rs`: before `bind`, as
//! `IP_FREEBIND` and `SO_BINDTODEVICE` must be), bound, connected or listening, late
//! options. The dump side is `dump/files/inet.rs`.
//!
//! An established connection is rebuilt with `TCP_REPAIR`. Ordering requirements (the
//! kernel's, see tcp(7) and CRIU's soccr): repair mode on; bind (repair mode forces the
//! address reuse that lets it share a port with a listener); both queue sequence numbers
//! (the queue's start: the saved next sequence minus the saved queue length); connect
//! (no SYN in repair mode), under the saved segment size clamp given as the owner's
//! `TCP_MAXSEG` (the segment size is worked out there; the owner's is taken back after);
//! negotiated options and the timestamp clock (only once
//! connected); the receive queue; the sent-but-unacknowledged part of the send queue in
//! repair mode and the never-sent part out of it; the window; repair mode off (a window
//! probe tells the peer we are back). `--tcp-close` (at dump or restore) rebuilds such a
//! connection and aborts it without a packet: the task's next call on it fails with
//! `ECONNABORTED`.

use super::prep::{self, Prepared};
use super::sockopts;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use std::os::fd::AsFd;

use crate::image::sock::{tcp_state, InetSocket, InetState, SockAddr, TcpRepair};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::socket::{
    getsockopt_int, setsockopt_int, TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE,
};

/// The bounds `TCP_MAXSEG` takes (`TCP_MIN_MSS`, `MAX_TCP_WINDOW`).
const TCP_MIN_MSS: u32 = 88;
const MAX_USER_MSS: u32 = 32767;
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
        let (fd, room) = one(child, e, s, prepared, tcp_close, share).map_err(at(e.fd))?;
        prepared.assign(e.fd, fd);
        if let Some(room) = room {
            repaired.push((e, s, fd, room));
        }
    }
    for (e, s, fd, room) in repaired {
        resume(child, fd, s, room).map_err(at(e.fd))?;
    }
    Ok(())
}

/// The connection `s` rebuilds with `TCP_REPAIR` (unless `--tcp-close`), and its state.
fn repaired(s: &InetSocket, tcp_close: bool) -> Option<(&TcpRepair, u8)> {
    match &s.state {
        _ if tcp_close => None,
        InetState::Established(r) => Some((r, tcp_state::ESTABLISHED)),
        InetState::Connection { state, repair } => Some((repair, *state)),
        _ => None,
    }
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
) -> Result<(u64, Option<Room>), RestoreError> {
    let got = crate::restore::ns::net_sockets::around(child, s.ino, || {
        Ok(child.remote().call(
            "socket",
            libc::SYS_socket,
            &[s.family as u64, s.sock_type as u64, s.protocol as u64],
        )?)
    })?;
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
    let mut room = None;
    match (&s.state, repaired(s, tcp_close)) {
        (_, Some((r, tcp_state::SYN_SENT))) => syn_sent(child, fd, s, r, e.flags)?,
        (_, Some((r, state))) => room = Some(repair(child, fd, s, r, state)?),
        (InetState::Unconnected, _) => unconnected(child, fd, s)?,
        (InetState::Shut { shutdown }, _) => {
            unconnected(child, fd, s)?;
            shut(child, fd, *shutdown)?;
        }
        (InetState::Listening { backlog }, _) => {
            bind(child, fd, s)?;
            child
                .remote()
                .call("listen", libc::SYS_listen, &[fd, u64::from(*backlog)])?;
        }
        (InetState::Established(_) | InetState::Connection { .. } | InetState::Closed, _) => {
            shut(child, fd, 3)?
        }
    }
    if share {
        reuseport(false)?;
    }
    if room.is_none() {
        sockopts::late(child, fd, &s.opts, false)?;
    }
    prep::set_fl(child, fd, e.flags)?;
    Ok((fd, room))
}

/// `shutdown(fd)` of the sides in `bits` (1 receive, 2 send). A socket not connected
/// answers `ENOTCONN` but is shut down all the same (the kernel sets the bits first).
fn shut(child: &Child, fd: u64, bits: u8) -> Result<(), RestoreError> {
    let how = match bits & 3 {
        0 => return Ok(()),
        1 => libc::SHUT_RD,
        2 => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    match child
        .remote()
        .call("shutdown", libc::SYS_shutdown, &[fd, how as u64])
    {
        Err(crate::sys::inject::InjectError::Failed {
            source: nix::errno::Errno::ENOTCONN,
            ..
        }) => Ok(()),
        r => r.map(drop).map_err(Into::into),
    }
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
    mss_clamp: u32,
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
    // The segment size the connection sends with (`mss_cache`) is worked out once, at
    // this `connect`, from the clamp then in force: the saved one (`TCPOPT_MAXSEG`) can
    // only be given once connected and does not redo it, and the default (536) would
    // leave the connection sending 524-byte segments. The clamp is given beforehand as
    // the owner's (`TCP_MAXSEG`, at most 32767), and taken back once connected.
    let clamp = mss_clamp.clamp(TCP_MIN_MSS, MAX_USER_MSS);
    prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_MAXSEG, clamp as i32)?;
    let (sa, len) = sockaddr(s.family, r);
    prep::address_call(child, "connect", libc::SYS_connect, fd, &sa, len)?;
    prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_MAXSEG, 0)
}

/// Rebuilds the connection in repair mode, then (`tcp_replay.rs`) takes a closing one to
/// its saved `state`. The never-sent data of an established connection waits for
/// [`resume`]; a closing one's goes now, out of repair mode for a moment, as its FIN
/// must follow it.
fn repair(
    child: &Child,
    fd: u64,
    s: &InetSocket,
    r: &TcpRepair,
    state: u8,
) -> Result<Room, RestoreError> {
    let fin_sent = u32::from(tcp_state::fin_sent(state));
    let fin_received = u32::from(tcp_state::fin_received(state));
    let recv_start = r
        .recv_seq
        .wrapping_sub(r.recv_queue.len() as u32)
        .wrapping_sub(fin_received);
    let send_start = r
        .send_seq
        .wrapping_sub(r.send_queue.len() as u32)
        .wrapping_sub(fin_sent);
    connect_quietly(child, fd, s, (recv_start, send_start), r.mss)?;
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
    let room = Room::make(child.steal(fd)?, r)?;
    set_queue(child, fd, TCP_RECV_QUEUE)?;
    send_halving(child, fd, &r.recv_queue)?;
    let sent = r.send_queue.len() - r.unsent as usize;
    set_queue(child, fd, TCP_SEND_QUEUE)?;
    send_halving(child, fd, &r.send_queue[..sent])?;
    if state != tcp_state::ESTABLISHED && sent < r.send_queue.len() {
        repair_on(child, fd, false)?;
        prep::send_all(child, fd, &r.send_queue[sent..], prep::CHUNK)?;
        repair_on(child, fd, true)?;
    }
    // Until the peer's FIN is replayed, the receive side ends one byte short of the
    // saved window edge (the kernel refuses a window starting past `rcv_nxt`).
    let mut window = r.window;
    if fin_received == 1 {
        window[4] = window[4].wrapping_sub(1);
        window[3] = window[3].wrapping_add(1);
    }
    set_window(child, fd, &window)?;
    set_queue(child, fd, TCP_NO_QUEUE)?;
    if state != tcp_state::ESTABLISHED {
        let mut our_fin = |acked: bool| fin(child, fd, acked);
        super::tcp_replay::replay(room.sock.as_fd(), s, r, state, &mut our_fin)?;
        set_window(child, fd, &r.window)?;
    }
    Ok(room)
}

fn set_window(child: &Child, fd: u64, window: &[u32; 5]) -> Result<(), RestoreError> {
    let bytes: Vec<u8> = window.iter().flat_map(|w| w.to_ne_bytes()).collect();
    prep::set_bytes(child, fd, libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, &bytes)
}

/// Our FIN, by `shutdown(SHUT_WR)` in repair mode: with the send queue selected it is
/// taken as sent without a packet (the peer acknowledged it: its ACK is replayed next);
/// otherwise it goes out as a FIN would, into the network lock, and is sent again once
/// the connection is back.
fn fin(child: &Child, fd: u64, acked: bool) -> Result<(), RestoreError> {
    if acked {
        set_queue(child, fd, TCP_SEND_QUEUE)?;
    }
    child
        .remote()
        .call("shutdown", libc::SYS_shutdown, &[fd, libc::SHUT_WR as u64])?;
    set_queue(child, fd, TCP_NO_QUEUE)
}

/// A connection saved in SYN_SENT: bound in repair mode with its initial sequence
/// number, then connected for real (non-blocking: the handshake goes on in the kernel),
/// which sends its SYN again.
fn syn_sent(
    child: &Child,
    fd: u64,
    s: &InetSocket,
    r: &TcpRepair,
    flags: i32,
) -> Result<(), RestoreError> {
    let (Some(l), Some(rem)) = (&s.local, &s.remote) else {
        return Err(RestoreError::Unsupported {
            what: "a connecting TCP socket without both addresses".into(),
        });
    };
    repair_on(child, fd, true)?;
    let (sa, len) = sockaddr(s.family, l);
    prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len)?;
    set_queue(child, fd, TCP_SEND_QUEUE)?;
    let isn = r.send_seq.wrapping_sub(1);
    prep::set_int(child, fd, libc::SOL_TCP, libc::TCP_QUEUE_SEQ, isn as i32)?;
    repair_on(child, fd, false)?;
    sockopts::reuse(child, fd, &s.opts)?;
    prep::set_fl(child, fd, flags | libc::O_NONBLOCK)?;
    let (sa, len) = sockaddr(s.family, rem);
    match prep::address_call(child, "connect", libc::SYS_connect, fd, &sa, len) {
        Err(RestoreError::Inject(crate::sys::inject::InjectError::Failed {
            source: nix::errno::Errno::EINPROGRESS,
            ..
        })) => Ok(()),
        r => r,
    }
}

/// Room in a repaired connection's buffers for its queues: the kernel charges refilled
/// data differently than it charged the data as it came (one buffer per chunk), so a
/// queue that filled its buffer may not fit in the same size again. Both sizes are
/// raised (`SO_*BUFFORCE`) while the queues are refilled, and set back by [`resume`]
/// (`SO_BUF_LOCK` then puts the saved locks back).
struct Room {
    /// stasis's copy of the child's socket.
    sock: std::os::fd::OwnedFd,
    sndbuf: i32,
    rcvbuf: i32,
}

impl Room {
    fn make(sock: std::os::fd::OwnedFd, r: &TcpRepair) -> Result<Room, RestoreError> {
        let get = |name| {
            getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, name).map_err(|e| {
                RestoreError::Unsupported {
                    what: format!("getsockopt(SOL_SOCKET, {name}): {e}"),
                }
            })
        };
        let (sndbuf, rcvbuf) = (get(libc::SO_SNDBUF)?, get(libc::SO_RCVBUF)?);
        let room = Room {
            sock,
            sndbuf,
            rcvbuf,
        };
        let more = |cur: i32, len: usize| {
            let len = i32::try_from(len).unwrap_or(i32::MAX);
            cur.saturating_add(len.saturating_mul(4))
        };
        room.set(
            more(sndbuf, r.send_queue.len()),
            more(rcvbuf, r.recv_queue.len()),
        )?;
        Ok(room)
    }

    /// Buffer sizes as `getsockopt` reports them (twice what is set).
    fn set(&self, sndbuf: i32, rcvbuf: i32) -> Result<(), RestoreError> {
        for (name, v) in [
            (libc::SO_SNDBUFFORCE, sndbuf),
            (libc::SO_RCVBUFFORCE, rcvbuf),
        ] {
            setsockopt_int(self.sock.as_fd(), libc::SOL_SOCKET, name, v / 2).map_err(|e| {
                RestoreError::Unsupported {
                    what: format!("setsockopt(SOL_SOCKET, {name}, {}): {e}", v / 2),
                }
            })?;
        }
        Ok(())
    }

    fn restore(&self) -> Result<(), RestoreError> {
        self.set(self.sndbuf, self.rcvbuf)
    }
}

/// Out of repair mode (a window probe tells the peer we are back), the never-sent part
/// of the send queue sent for real, the address reuse repair mode reset, and the late
/// options.
fn resume(child: &Child, fd: u64, s: &InetSocket, room: Room) -> Result<(), RestoreError> {
    repair_on(child, fd, false)?;
    if let InetState::Established(r) = &s.state {
        let sent = r.send_queue.len() - r.unsent as usize;
        prep::send_all(child, fd, &r.send_queue[sent..], prep::CHUNK)?;
    }
    room.restore()?;
    sockopts::reuse(child, fd, &s.opts)?;
    sockopts::late(child, fd, &s.opts, true)
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

/// Repair mode on and off again on the restored fd `fd`, once the network lock is gone:
/// leaving repair mode sends a window probe, which the lock dropped the first time.
/// Repair mode resets the address reuse: set back as saved.
pub fn probe(child: &Child, fd: i32, s: &InetSocket) -> Result<(), RestoreError> {
    let sock = child.steal(fd as u64)?;
    let reuse = i32::from(s.opts.flag(libc::SOL_SOCKET, libc::SO_REUSEADDR));
    for (name, v) in [(libc::TCP_REPAIR, 1), (libc::TCP_REPAIR, 0)] {
        setsockopt_int(sock.as_fd(), libc::SOL_TCP, name, v).map_err(|e| {
            RestoreError::Unsupported {
                what: format!("setsockopt(TCP_REPAIR, {v}): {e}"),
            }
        })?;
    }
    setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse).map_err(|e| {
        RestoreError::Unsupported {
            what: format!("setsockopt(SO_REUSEADDR, {reuse}): {e}"),
        }
    })
}
