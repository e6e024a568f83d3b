//! Files records of formats 5 to 8, decoded and converted to the current [`FilesImage`].
//! Format 9 changed the socket records: [`SockOpts`] became the table of saved options
//! (`image::sockopts`) and [`InetSocket`] gained `sock_type` and lost `v6only` and
//! `nodelay` (now options like the others). Every other fd kind reads the same, so the
//! old fd kinds mirror the current ones but for those two sockets.

use serde::{Deserialize, Serialize};

use super::files::*;
use super::sock::InetSocket;
use super::sock::{InetState, PtyMaster, SockAddr, SockOpts, UnixMessage, UnixPeer, UnixSocket};

/// A files record of format 7 or 8.
#[derive(Deserialize, Serialize)]
pub struct FilesImageV8 {
    fds: Vec<FdEntryV8>,
    locks: Vec<FileLock>,
    spares: Vec<i32>,
    in_flight: Vec<InFlight>,
    epoll_moved: Vec<EpollMoved>,
    hashes: Vec<ContentHash>,
}

/// A files record of format 5 or 6 (no `spares` and what came after).
#[derive(Deserialize, Serialize)]
pub struct FilesImageV6 {
    fds: Vec<FdEntryV8>,
    locks: Vec<FileLock>,
}

#[derive(Deserialize, Serialize)]
struct FdEntryV8 {
    fd: i32,
    cloexec: bool,
    flags: i32,
    kind: FdKindV8,
}

/// [`FdKind`] of formats 5 to 8 (variants in the same order).
#[derive(Deserialize, Serialize)]
enum FdKindV8 {
    Path(PathFd),
    CharDev(CharDevFd),
    Tty(TtyFd),
    Dup { of: i32 },
    Inherited { pid: i32, fd: i32 },
    Pipe(PipeFd),
    PipePeer { of: i32 },
    Fifo(FifoFd),
    OPath(OPathFd),
    Ghost(GhostFd),
    EventFd(EventFd),
    TimerFd(TimerFd),
    SignalFd(SignalFd),
    Epoll(EpollFd),
    Inotify(InotifyFd),
    Memfd(MemfdFd),
    PidFd(PidFd),
    Unix(Box<UnixSocketV8>),
    Inet(Box<InetSocketV8>),
    PtyMaster(Box<PtyMaster>),
    PtySlave { index: u32 },
    Reopen { pid: i32, fd: i32, pos: u64 },
    Remap(RemapFd),
    Mapped(MappedFd),
    Fanotify(FanotifyFd),
}

#[derive(Deserialize, Serialize)]
struct UnixSocketV8 {
    ino: u64,
    sock_type: i32,
    name: Vec<u8>,
    bind_dir: Option<String>,
    listen_backlog: Option<u32>,
    peer: UnixPeer,
    shutdown: u8,
    queue: Vec<UnixMessage>,
    opts: SockOptsV8,
}

#[derive(Deserialize, Serialize)]
struct InetSocketV8 {
    ino: u64,
    family: i32,
    protocol: i32,
    local: Option<SockAddr>,
    remote: Option<SockAddr>,
    state: InetState,
    opts: SockOptsV8,
    v6only: bool,
    nodelay: bool,
}

/// The options format 8 saved (buffer sizes only when not a new socket's; restored
/// with `SO_*BUFFORCE`, which locks them).
#[derive(Deserialize, Serialize)]
struct SockOptsV8 {
    rcvbuf: Option<u32>,
    sndbuf: Option<u32>,
    passcred: bool,
    peek_off: i32,
    reuseaddr: bool,
    reuseport: bool,
    keepalive: bool,
    broadcast: bool,
}

impl From<SockOptsV8> for SockOpts {
    fn from(o: SockOptsV8) -> Self {
        let s = libc::SOL_SOCKET;
        let mut new = SockOpts::default();
        let flags = [
            (libc::SO_REUSEADDR, o.reuseaddr),
            (libc::SO_REUSEPORT, o.reuseport),
            (libc::SO_KEEPALIVE, o.keepalive),
            (libc::SO_BROADCAST, o.broadcast),
            (libc::SO_PASSCRED, o.passcred),
        ];
        for (name, _) in flags.into_iter().filter(|f| f.1) {
            new.set_int(s, name, 1);
        }
        let mut lock = 0;
        if let Some(v) = o.rcvbuf {
            new.set_int(s, libc::SO_RCVBUF, v as i32);
            lock |= 2;
        }
        if let Some(v) = o.sndbuf {
            new.set_int(s, libc::SO_SNDBUF, v as i32);
            lock |= 1;
        }
        if o.peek_off >= 0 {
            new.set_int(s, super::sockopts::num::SO_PEEK_OFF, o.peek_off);
        }
        if lock != 0 {
            new.set_int(s, super::sockopts::num::SO_BUF_LOCK, lock);
        }
        new
    }
}

impl From<InetSocketV8> for InetSocket {
    fn from(o: InetSocketV8) -> Self {
        let mut opts = SockOpts::from(o.opts);
        if o.v6only {
            opts.set_int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1);
        }
        if o.nodelay {
            opts.set_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        }
        let sock_type = if o.protocol == libc::IPPROTO_TCP {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        InetSocket {
            ino: o.ino,
            family: o.family,
            sock_type,
            protocol: o.protocol,
            local: o.local,
            remote: o.remote,
            state: o.state,
            opts,
        }
    }
}

impl From<UnixSocketV8> for UnixSocket {
    fn from(o: UnixSocketV8) -> Self {
        UnixSocket {
            ino: o.ino,
            sock_type: o.sock_type,
            name: o.name,
            bind_dir: o.bind_dir,
            listen_backlog: o.listen_backlog,
            peer: o.peer,
            shutdown: o.shutdown,
            queue: o.queue,
            opts: o.opts.into(),
        }
    }
}

impl From<FdKindV8> for FdKind {
    fn from(k: FdKindV8) -> Self {
        use FdKindV8 as O;
        match k {
            O::Path(x) => FdKind::Path(x),
            O::CharDev(x) => FdKind::CharDev(x),
            O::Tty(x) => FdKind::Tty(x),
            O::Dup { of } => FdKind::Dup { of },
            O::Inherited { pid, fd } => FdKind::Inherited { pid, fd },
            O::Pipe(x) => FdKind::Pipe(x),
            O::PipePeer { of } => FdKind::PipePeer { of },
            O::Fifo(x) => FdKind::Fifo(x),
            O::OPath(x) => FdKind::OPath(x),
            O::Ghost(x) => FdKind::Ghost(x),
            O::EventFd(x) => FdKind::EventFd(x),
            O::TimerFd(x) => FdKind::TimerFd(x),
            O::SignalFd(x) => FdKind::SignalFd(x),
            O::Epoll(x) => FdKind::Epoll(x),
            O::Inotify(x) => FdKind::Inotify(x),
            O::Memfd(x) => FdKind::Memfd(x),
            O::PidFd(x) => FdKind::PidFd(x),
            O::Unix(x) => FdKind::Unix(Box::new((*x).into())),
            O::Inet(x) => FdKind::Inet(Box::new((*x).into())),
            O::PtyMaster(x) => FdKind::PtyMaster(x),
            O::PtySlave { index } => FdKind::PtySlave { index },
            O::Reopen { pid, fd, pos } => FdKind::Reopen { pid, fd, pos },
            O::Remap(x) => FdKind::Remap(x),
            O::Mapped(x) => FdKind::Mapped(x),
            O::Fanotify(x) => FdKind::Fanotify(x),
        }
    }
}

fn entries(fds: Vec<FdEntryV8>) -> Vec<FdEntry> {
    fds.into_iter()
        .map(|e| FdEntry {
            fd: e.fd,
            cloexec: e.cloexec,
            flags: e.flags,
            kind: e.kind.into(),
        })
        .collect()
}

impl From<FilesImageV8> for FilesImage {
    fn from(old: FilesImageV8) -> Self {
        FilesImage {
            fds: entries(old.fds),
            locks: old.locks,
            spares: old.spares,
            in_flight: old.in_flight,
            epoll_moved: old.epoll_moved,
            hashes: old.hashes,
            owners: Vec::new(),
            unlinked_sockets: Vec::new(),
            socket_files: Vec::new(),
            modes: Vec::new(),
            dgram_senders: Vec::new(),
        }
    }
}

impl From<FilesImageV6> for FilesImage {
    fn from(old: FilesImageV6) -> Self {
        FilesImage {
            fds: entries(old.fds),
            locks: old.locks,
            ..FilesImage::default()
        }
    }
}

#[cfg(test)]
impl FilesImageV6 {
    /// `files` as format 6 wrote it, its sockets left out (every other kind is encoded
    /// the same way in both formats).
    pub fn without_sockets(files: &FilesImage) -> Self {
        let kept: Vec<&FdEntry> = files
            .fds
            .iter()
            .filter(|e| !matches!(e.kind, FdKind::Unix(_) | FdKind::Inet(_)))
            .collect();
        let bytes = postcard::to_allocvec(&kept).expect("encodes");
        FilesImageV6 {
            fds: postcard::from_bytes(&bytes).expect("same layout"),
            locks: files.locks.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn old_opts() -> SockOptsV8 {
        SockOptsV8 {
            rcvbuf: Some(4608),
            sndbuf: None,
            passcred: true,
            peek_off: -1,
            reuseaddr: true,
            reuseport: false,
            keepalive: false,
            broadcast: false,
        }
    }

    #[test]
    fn format_8_sockets_are_converted() {
        let inet = InetSocketV8 {
            ino: 7,
            family: libc::AF_INET6,
            protocol: libc::IPPROTO_TCP,
            local: None,
            remote: None,
            state: InetState::Unconnected,
            opts: old_opts(),
            v6only: true,
            nodelay: true,
        };
        let old = FilesImageV8 {
            fds: vec![FdEntryV8 {
                fd: 3,
                cloexec: false,
                flags: 2,
                kind: FdKindV8::Inet(Box::new(inet)),
            }],
            locks: Vec::new(),
            spares: Vec::new(),
            in_flight: Vec::new(),
            epoll_moved: Vec::new(),
            hashes: Vec::new(),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let new = FilesImage::from(postcard::from_bytes::<FilesImageV8>(&bytes).unwrap());
        let FdKind::Inet(s) = &new.fds[0].kind else {
            panic!("not inet: {:?}", new.fds[0].kind)
        };
        assert_eq!(s.sock_type, libc::SOCK_STREAM);
        let o = &s.opts;
        assert!(o.flag(libc::SOL_SOCKET, libc::SO_REUSEADDR));
        assert!(o.flag(libc::SOL_SOCKET, libc::SO_PASSCRED));
        assert!(o.flag(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
        assert!(o.flag(libc::IPPROTO_TCP, libc::TCP_NODELAY));
        assert_eq!(o.int(libc::SOL_SOCKET, libc::SO_RCVBUF), Some(4608));
        assert_eq!(
            o.int(libc::SOL_SOCKET, super::super::sockopts::num::SO_BUF_LOCK),
            Some(2)
        );
        assert_eq!(o.int(libc::SOL_SOCKET, libc::SO_SNDBUF), None);
        assert_eq!(o.check(), Ok(()));
    }
}
