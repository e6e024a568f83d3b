//! Fds as `stasis inspect` shows them (files, pipes, sockets with their options and
//! connections, and the rest), and the files deleted while open (ghosts).

use std::io::Write;

use crate::image::files::FdKind;
use crate::image::sock::{
    tcp_state, InetSocket, InetState, SockAddr, TcpRepair, UnixPeer, UnixSocket,
};
use crate::image::ProcessImage;

pub(super) fn files(p: &ProcessImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "  files: {} fds", p.files.fds.len())?;
    for f in &p.files.fds {
        let what = describe(&f.kind);
        let spare = if p.files.spares.contains(&f.fd) {
            " (spare, for a later process)".to_string()
        } else {
            in_flight_note(&p.files, f.fd)
        };
        writeln!(
            out,
            "    {:>4} flags {:#o}{} {what}{spare}",
            f.fd,
            f.flags,
            if f.cloexec { " cloexec" } else { "" }
        )?;
    }
    Ok(())
}

/// " (in flight to socket:[INO], message N)" for a file riding on a queued message.
fn in_flight_note(files: &crate::image::files::FilesImage, fd: i32) -> String {
    files
        .in_flight
        .iter()
        .find(|m| m.fds.contains(&fd))
        .map(|m| {
            format!(
                " (in flight to socket:[{}], message {})",
                m.socket, m.message
            )
        })
        .unwrap_or_default()
}

fn unix_line(u: &UnixSocket) -> String {
    let ty = match u.sock_type {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "?",
    };
    let name = match u.name.first() {
        None => String::new(),
        Some(0) => format!(" @{}", String::from_utf8_lossy(&u.name[1..])),
        Some(_) => format!(" {}", String::from_utf8_lossy(&u.name)),
    };
    let state = match (&u.listen_backlog, &u.peer) {
        (Some(b), _) => format!(" listening (backlog {b})"),
        (_, UnixPeer::None) => String::new(),
        (_, UnixPeer::Socket { ino }) => format!(" peer socket:[{ino}]"),
        (_, UnixPeer::Pending { listener, .. }) => format!(" pending on socket:[{listener}]"),
        (_, UnixPeer::Closed) => " peer closed".into(),
        (_, UnixPeer::External { .. }) => " external peer".into(),
    };
    let bytes: usize = u.queue.iter().map(|m| m.data.len()).sum();
    format!(
        "unix {ty} socket:[{}]{name}{state}, {} queued ({bytes} bytes){}",
        u.ino,
        u.queue.len(),
        opts_text(&u.opts)
    )
}

fn inet_line(s: &InetSocket) -> String {
    let proto = match (s.sock_type, s.protocol) {
        (libc::SOCK_RAW, _) => "raw",
        (_, libc::IPPROTO_TCP) => "tcp",
        (_, libc::IPPROTO_UDP) => "udp",
        (_, libc::IPPROTO_UDPLITE) => "udplite",
        _ => "ping",
    };
    let v = if s.family == libc::AF_INET6 { "6" } else { "" };
    let addr = |a: &Option<SockAddr>| a.as_ref().map_or("*".into(), crate::dump::files::addr_text);
    let state = match &s.state {
        InetState::Unconnected => String::new(),
        InetState::Listening { backlog } => format!(" listening (backlog {backlog})"),
        InetState::Established(r) => connection_text("established", r),
        InetState::Connection { state, repair } => {
            connection_text(&tcp_state::name(*state).to_lowercase(), repair)
        }
        InetState::Closed => " closed".into(),
        InetState::Shut { shutdown } => format!(" shut down ({})", shut_text(*shutdown)),
    };
    format!(
        "{proto}{v} {} -> {}{state}{}",
        addr(&s.local),
        addr(&s.remote),
        opts_text(&s.opts)
    )
}

fn connection_text(state: &str, r: &TcpRepair) -> String {
    format!(
        " {state}, {} bytes to send, {} received{}",
        r.send_queue.len(),
        r.recv_queue.len(),
        if r.locked { ", network locked" } else { "" }
    )
}

fn shut_text(bits: u8) -> &'static str {
    match bits & 3 {
        1 => "receive side",
        2 => "send side",
        _ => "both sides",
    }
}

/// `; SO_PRIORITY=5 TCP_NODELAY=1 ...`: the options saved (those not a new socket's).
pub(super) fn opts_text(opts: &crate::image::sock::SockOpts) -> String {
    use crate::image::sockopts::{lookup, show};
    let list: Vec<String> = opts
        .opts
        .iter()
        .map(|o| {
            let label = lookup(o.level, o.name).map_or("?", |d| d.label);
            match (label, ucred(&o.value)) {
                ("SO_PEERCRED", Some((pid, uid, gid))) => {
                    format!("{label}=pid:{pid},uid:{uid},gid:{gid}")
                }
                _ => format!("{label}={}", show(&o.value)),
            }
        })
        .collect();
    if list.is_empty() {
        return String::new();
    }
    format!("; {}", list.join(" "))
}

/// A `struct ucred` (pid, uid, gid) as `SO_PEERCRED` gives it.
fn ucred(v: &[u8]) -> Option<(i32, i32, i32)> {
    let word = |i: usize| Some(i32::from_ne_bytes(v.get(i..i + 4)?.try_into().ok()?));
    (v.len() == 12).then_some(())?;
    Some((word(0)?, word(4)?, word(8)?))
}

/// One line about what an fd is.
fn describe(kind: &FdKind) -> String {
    match kind {
        FdKind::Path(p) => format!("{} pos {}", p.file.path, p.pos),
        FdKind::CharDev(c) => format!("{} (char device)", c.path),
        FdKind::Tty(_) => "terminal (shell job)".to_string(),
        FdKind::Dup { of } => format!("same open file as fd {of}"),
        FdKind::Inherited { pid, fd } => format!("same open file as fd {fd} of pid {pid}"),
        FdKind::Pipe(p) => format!(
            "pipe:[{}] {:?} end, other end {}, size {}, {} bytes buffered",
            p.ino,
            p.end,
            p.peer
                .map_or("closed".to_string(), |fd| format!("at fd {fd}")),
            p.size,
            p.data.len()
        ),
        FdKind::PipePeer { of } => format!("other end of the pipe of fd {of}"),
        FdKind::Fifo(f) => format!("FIFO {} ({} bytes buffered)", f.file.path, f.data.len()),
        FdKind::OPath(p) => format!("{} (O_PATH)", p.path),
        FdKind::Ghost(g) => format!("{} (deleted, {} bytes saved)", g.path, g.contents.len()),
        FdKind::Deleted(d) => format!(
            "ghost {} pos {}{}",
            d.ghost,
            d.pos,
            d.fifo.as_ref().map_or(String::new(), |f| format!(
                " ({} bytes buffered)",
                f.data.len()
            ))
        ),
        FdKind::Remap(r) => format!(
            "{} (unlinked, {} {} at {}) pos {}",
            r.path,
            r.link.size,
            if r.copied {
                "bytes copied"
            } else {
                "bytes linked"
            },
            r.link.path,
            r.pos
        ),
        FdKind::EventFd(e) => format!("eventfd count {} semaphore {}", e.count, e.semaphore),
        FdKind::TimerFd(t) => format!(
            "timerfd clock {} left {} ns interval {} ns ticks {}",
            t.clock, t.value_ns, t.interval_ns, t.ticks
        ),
        FdKind::SignalFd(s) => format!("signalfd mask {:#x}", s.mask),
        FdKind::Epoll(e) => format!(
            "epoll watching fds {:?}",
            e.targets.iter().map(|t| t.fd).collect::<Vec<_>>()
        ),
        FdKind::Unix(u) => unix_line(u),
        FdKind::Inet(s) => inet_line(s),
        FdKind::Packet(p) => format!(
            "packet socket type {} protocol {:#06x} ifindex {}, {} options, {} memberships{}{}{}",
            p.sock_type,
            p.protocol,
            p.ifindex,
            p.ints.len(),
            p.memberships.len(),
            if p.rx_ring.is_some() { ", rx ring" } else { "" },
            if p.tx_ring.is_some() { ", tx ring" } else { "" },
            p.fanout
                .map_or(String::new(), |f| format!(", fanout {f:#x}"))
        ),
        FdKind::Mqueue(q) => format!("POSIX message queue /{}", q.name),
        FdKind::Tun(t) if t.device.is_empty() => format!("{} (not attached)", t.path),
        FdKind::Tun(t) => format!(
            "{} attached to {} (flags {:#x}{})",
            t.path,
            t.device,
            t.flags,
            if t.detached { ", queue detached" } else { "" }
        ),
        FdKind::Netlink(n) => format!(
            "netlink socket protocol {} port {} groups {:?}{}",
            n.protocol,
            n.portid,
            n.groups,
            n.dst.map_or(String::new(), |(p, g)| format!(
                ", connected to port {p} group {g}"
            ))
        ),
        FdKind::PtyMaster(m) => format!(
            "pty master of /dev/pts/{} ({} bytes input, {} bytes output buffered)",
            m.index,
            m.input.len(),
            m.output.len()
        ),
        FdKind::PtySlave { index } => format!("pty slave /dev/pts/{index}"),
        FdKind::ControllingTty => "/dev/tty (its controlling terminal)".to_string(),
        FdKind::Inotify(i) => format!(
            "inotify watching {:?}",
            i.watches
                .iter()
                .map(|w| w.path.as_str())
                .collect::<Vec<_>>()
        ),
        FdKind::Memfd(m) => format!("memfd:{} size {} seals {:#x}", m.name, m.size, m.seals),
        FdKind::PidFd(p) => format!("pidfd of pid {}", p.pid),
        FdKind::Namespace(n) => format!("its own {} namespace ({}:[{}])", n.kind, n.kind, n.ino),
        FdKind::DeadPidFd(p) => format!("pidfd of an exited process (pidfs inode {})", p.ino),
        FdKind::Reopen { pid, fd, pos } => {
            format!("the file of fd {fd} of pid {pid}, opened again, pos {pos}")
        }
        FdKind::Mapped(m) => format!(
            "the object pid {} maps at {:#x}-{:#x}, opened again, pos {}, seals {:#x}",
            m.pid, m.start, m.end, m.pos, m.seals
        ),
        FdKind::Fanotify(f) => format!(
            "fanotify flags {:#x} event flags {:#x}, marks {:?}",
            f.flags,
            f.event_flags,
            f.marks
                .iter()
                .map(|m| format!(
                    "{:?} mask {:#x} ignored {:#x}",
                    m.target, m.mask, m.ignored_mask
                ))
                .collect::<Vec<_>>()
        ),
    }
}

/// The files deleted while in use, one line each.
pub(super) fn ghosts(
    g: &crate::image::ghost::GhostsImage,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for (i, f) in g.files.iter().enumerate() {
        let size = match &f.body {
            crate::image::ghost::GhostBody::Regular { size, extents } => format!(
                ", {size} bytes, {} stored in {} extents",
                f.body.stored(),
                extents.len()
            ),
            _ => String::new(),
        };
        let cwd = if f.cwd_of.is_empty() {
            String::new()
        } else {
            format!(", cwd of {:?}", f.cwd_of)
        };
        writeln!(
            out,
            "ghost {i}: {} ({}, mode {:o}, uid {} gid {}{size}{cwd})",
            f.path,
            f.body.describe(),
            f.mode,
            f.uid,
            f.gid
        )?;
    }
    Ok(())
}
