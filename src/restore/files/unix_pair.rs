//! Unix socket pairs rebuilt in the fd batch (`batched.rs`) instead of one injected call
//! at a time (`unix.rs`): two sockets of one table connected to each other, unnamed,
//! with no file in flight on their queues and only options a plain `setsockopt` sets.
//! The pair is made when the table loop reaches its lower fd: `socketpair`, each queue
//! sent by the other end, shutdown states, options and flags, both ends moved to their
//! numbers; the higher fd's entry then has nothing left to do.
//!
//! A pair whose saved credentials (`SO_PEERCRED`) are not exactly those a `socketpair`
//! made here gives (this process's pid, the restorer's effective ids) is left to
//! `unix.rs`, which makes it with the saved ids and compares (`unix_peercred.rs`).
//!
//! The calls are those of `unix.rs` for such a pair, less the ones that cannot change
//! anything: a send buffer is raised to refill the peer only when the queue might not fit
//! in a new socket's (and put back only then), and the file status flags are set only
//! when some are saved (a new socket has none).

use std::collections::HashMap;

use super::sockopts;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::sock::{UnixMessage, UnixPeer, UnixSocket};

/// Bytes of queued data a pair may carry in the batch's region.
pub const DATA_MAX: usize = 64 * 1024;

/// A message this small fits in a new socket's send buffer whatever the sysctls say
/// (`net.core.wmem_default` is at least `SOCK_MIN_SNDBUF`, 4.5 KiB, and the first
/// message is never held back): one such message needs no raised buffer.
const FITS_FRESH: usize = 1024;

/// `fcntl(F_SETFL)` changes only these.
const SETFL_MASK: i32 =
    libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_ASYNC;

/// One end of a pair: its entry and socket.
#[derive(Clone, Copy)]
pub struct End<'a> {
    pub entry: &'a FdEntry,
    pub sock: &'a UnixSocket,
}

/// The two ends, the lower fd first.
#[derive(Clone, Copy)]
pub struct Pair<'a> {
    pub low: End<'a>,
    pub high: End<'a>,
}

/// The pairs of a table rebuilt in the batch, by the fd of either end.
#[derive(Default)]
pub struct Pairs<'a> {
    by_fd: HashMap<i32, Pair<'a>>,
}

impl<'a> Pairs<'a> {
    /// The pairs of `files`, the table of process `pid`.
    pub fn of(files: &'a FilesImage, pid: i32) -> Self {
        let mut by_ino: HashMap<u64, Vec<End<'a>>> = HashMap::new();
        for entry in &files.fds {
            if let FdKind::Unix(sock) = &entry.kind {
                by_ino
                    .entry(sock.ino)
                    .or_default()
                    .push(End { entry, sock });
            }
        }
        let mut by_fd = HashMap::new();
        for ends in by_ino.values() {
            let [me] = ends[..] else { continue };
            let Some(peer) = peer_of(me, &by_ino) else {
                continue;
            };
            let made_here = made_here(me.sock, pid) && made_here(peer.sock, pid);
            if me.entry.fd < peer.entry.fd && made_here && simple(files, me, peer) {
                let pair = Pair {
                    low: me,
                    high: peer,
                };
                by_fd.insert(me.entry.fd, pair);
                by_fd.insert(peer.entry.fd, pair);
            }
        }
        Pairs { by_fd }
    }

    /// The pair fd `fd` is an end of.
    pub fn get(&self, fd: i32) -> Option<&Pair<'a>> {
        self.by_fd.get(&fd)
    }
}

/// The only entry of the socket `me` is connected to, when that one is connected to
/// `me` and of its type (each end the only non-dup entry of its socket: a second full
/// entry of one inode is left to `unix.rs`).
fn peer_of<'a>(me: End<'a>, by_ino: &HashMap<u64, Vec<End<'a>>>) -> Option<End<'a>> {
    let UnixPeer::Socket { ino } = me.sock.peer else {
        return None;
    };
    let [peer] = by_ino.get(&ino)?[..] else {
        return None;
    };
    let mutual = ino != me.sock.ino
        && peer.sock.peer == (UnixPeer::Socket { ino: me.sock.ino })
        && peer.sock.sock_type == me.sock.sock_type;
    mutual.then_some(peer)
}

/// Whether a `socketpair` called by process `pid` with the restorer's ids gives `u` its
/// saved credentials (or the image has none: an older one).
fn made_here(u: &UnixSocket, pid: i32) -> bool {
    let mine = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    u.opts
        .peer_cred()
        .map_or(true, |c| c == (pid, mine.0, mine.1))
}

fn simple(files: &FilesImage, a: End<'_>, b: End<'_>) -> bool {
    queued(a.sock) + queued(b.sock) <= DATA_MAX && plain(files, a.sock) && plain(files, b.sock)
}

/// Unnamed, not listening, no file in flight on its queue, options plain, of the
/// process's network namespace (not one to switch to, `restore/ns/net_sockets.rs`).
fn plain(files: &FilesImage, u: &UnixSocket) -> bool {
    u.name.is_empty()
        && !crate::restore::ns::net_sockets::listed(u.ino)
        && u.bind_dir.is_none()
        && u.listen_backlog.is_none()
        && !files.unlinked_sockets.contains(&u.ino)
        && !files.in_flight.iter().any(|f| f.socket == u.ino)
        && sockopts::plain_calls(&u.opts, true).is_some()
}

fn queued(u: &UnixSocket) -> usize {
    u.queue.iter().map(|m| m.data.len()).sum()
}

/// Whether the peer sending `queue` must raise its send buffer first (as `unix.rs` does
/// for every queue): not for one small message.
pub fn needs_raise(queue: &[UnixMessage]) -> bool {
    match queue {
        [] => false,
        [one] => one.data.len() > FITS_FRESH,
        _ => true,
    }
}

/// The credentials to send with a message to `receiver` (as `unix.rs`'s `fill`).
pub fn creds(receiver: &UnixSocket, m: &UnixMessage) -> Option<(i32, u32, u32)> {
    let passcred = receiver.opts.flag(libc::SOL_SOCKET, libc::SO_PASSCRED);
    if passcred {
        m.creds
    } else {
        None
    }
}

/// The `shutdown` `how` of `u` whose peer is `peer` (as `unix.rs`'s `shut`).
pub fn shutdown_how(u: &UnixSocket, peer: &UnixSocket) -> Option<i32> {
    let peer_sent_shut = peer.shutdown & 2 != 0;
    match (u.shutdown & 2 != 0, u.shutdown & 1 != 0 && !peer_sent_shut) {
        (true, true) => Some(libc::SHUT_RDWR),
        (true, false) => Some(libc::SHUT_WR),
        (false, true) => Some(libc::SHUT_RD),
        (false, false) => None,
    }
}

/// The `setsockopt` calls of one end after its queues are filled: its send buffer put
/// back when `raised` and no size is saved (the new socket's, `unix.rs`'s `options`),
/// then the saved options.
pub fn option_calls(u: &UnixSocket, raised: bool) -> Vec<(i32, i32, Vec<u8>)> {
    let mut calls = Vec::new();
    if raised && u.opts.int(libc::SOL_SOCKET, libc::SO_SNDBUF).is_none() {
        let snd = (super::unix::wmem_default() / 2) as i32;
        // (the default is within the maximum a plain SO_SNDBUF may set)
        let plain = (libc::SO_SNDBUF, snd);
        let (name, snd) = sockopts::buffer_call(libc::SO_SNDBUFFORCE, snd).unwrap_or(plain);
        calls.push((libc::SOL_SOCKET, name, snd.to_ne_bytes().to_vec()));
    }
    calls.extend(sockopts::plain_calls(&u.opts, raised).expect("checked by `of`"));
    calls
}

/// The saved file status flags, when setting them changes anything.
pub fn status_flags(entry: &FdEntry) -> Option<i32> {
    (entry.flags & SETFL_MASK != 0).then_some(entry.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::image::sample::unix_stream as sock;

    fn entry(fd: i32, u: UnixSocket) -> FdEntry {
        FdEntry {
            fd,
            flags: libc::O_RDWR,
            cloexec: false,
            kind: FdKind::Unix(Box::new(u)),
        }
    }

    #[test]
    fn a_plain_pair_is_found_from_either_end() {
        let mut files = FilesImage::default();
        files.fds.push(entry(3, sock(10, 11, b"x")));
        files.fds.push(entry(5, sock(11, 10, b"y")));
        let pairs = Pairs::of(&files, 1);
        for fd in [3, 5] {
            let p = pairs.get(fd).expect("a pair");
            assert_eq!((p.low.entry.fd, p.high.entry.fd), (3, 5));
        }
        assert_eq!(status_flags(&files.fds[0]), None);
        let p = pairs.get(3).expect("a pair");
        assert!(option_calls(p.low.sock, false).is_empty());
    }

    #[test]
    fn named_or_in_flight_pairs_are_left_to_unix_rs() {
        let mut files = FilesImage::default();
        let mut named = sock(10, 11, b"");
        named.name = b"\0abstract".to_vec();
        files.fds.push(entry(3, named));
        files.fds.push(entry(4, sock(11, 10, b"")));
        assert!(Pairs::of(&files, 1).get(4).is_none());
        files.fds[0] = entry(3, sock(10, 11, b""));
        assert!(Pairs::of(&files, 1).get(4).is_some());
        files.in_flight.push(crate::image::files::InFlight {
            socket: 10,
            message: 0,
            fds: vec![7],
        });
        assert!(Pairs::of(&files, 1).get(3).is_none());
    }

    #[test]
    fn only_small_single_messages_skip_the_raise() {
        let m = |n: usize| UnixMessage {
            data: vec![0; n],
            creds: None,
        };
        assert!(!needs_raise(&[]));
        assert!(!needs_raise(&[m(10)]));
        assert!(needs_raise(&[m(FITS_FRESH + 1)]));
        assert!(needs_raise(&[m(1), m(1)]));
    }
}
