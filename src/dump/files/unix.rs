//! Unix sockets: type, bound name, listening backlog, peer, shutdown state, options and
//! the receive queue, read without consuming it (`MSG_PEEK` from offset 0 with
//! `SO_PEEK_OFF`, message by message; the owner's peek offset is put back).
//!
//! The peer comes from `unix_diag`: another socket of the process or of another process
//! of the tree (linked once the tree is known, `split.rs`), a connection still in a
//! listener's queue (`Pending`), a closed peer, or a socket elsewhere — refused unless
//! `--ext-unix-sk`, which saves its name to connect to again at restore. The queues are
//! peeked before the table is classified (`inflight.rs`: the files riding on messages
//! with `SCM_RIGHTS` are saved too). The restore side is `restore/files/unix.rs`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{UnixMessage, UnixPeer, UnixSocket};
use crate::sys::sock_diag::{UnixDiag, TCP_LISTEN};
use crate::sys::socket::{getsockopt_int, recv_peek, setsockopt_int, Peeked, SO_PEEK_OFF};

/// `TCP_ESTABLISHED`, as unix_diag reports a connected socket.
const CONNECTED: u8 = 1;
/// Largest message read in one peek: above `net.core.wmem_max` (4 MiB here), which bounds
/// a datagram's size.
const PEEK_BUF: usize = 8 << 20;

pub fn unix_kind(ctx: &mut SockCtx<'_>, fd: i32, ino: u64) -> Result<FdKind, DumpError> {
    let pid = ctx.pid;
    let d = ctx.unix_table()?[&(ino as u32)].clone();
    let unlinked = name_unlinked(ctx, &d)?;
    let bind_dir = if unlinked {
        ctx.unlinked_sockets.push(ino);
        None
    } else {
        let dir = bind_dir(pid, fd, &d)?;
        ctx.socket_files.extend(socket_file(pid, ino, &d));
        dir
    };
    let peer = peer(ctx, fd, ino, &d)?;
    let listen_backlog = (d.state == TCP_LISTEN).then_some(d.rqlen.1);
    if listen_backlog.is_some() {
        check_pending(ctx, fd, &d)?;
    }
    let opts = ctx.unix_options(fd, ino, super::sock::unix_sock_kind(&d))?;
    let queue = ctx.queues.remove(&ino).unwrap_or_default();
    let peer = orphan_datagram_peer(&d, peer, &queue);
    check_queue(ctx, fd, &d, &peer, &queue)?;
    super::unix_senders::keep(ctx, fd, &d, &peer)?;
    super::unix_peercred::check(ctx, fd, &d, &peer, &opts)?;
    Ok(FdKind::Unix(Box::new(UnixSocket {
        ino,
        sock_type: i32::from(d.sock_type),
        name: d.name.clone(),
        bind_dir,
        listen_backlog,
        peer,
        shutdown: d.shutdown,
        queue,
        opts,
    })))
}

/// Whether the socket is bound to a path that no longer leads to it: its file was
/// deleted (or moved: the kernel cannot tell the two apart, so a moved file is taken as
/// deleted, as CRIU does), or it is an accepted connection, which shares its listener's
/// name and file. The restore binds it to the name and unlinks the new file at once.
fn name_unlinked(ctx: &mut SockCtx<'_>, d: &UnixDiag) -> Result<bool, DumpError> {
    let Some((vfs_ino, vfs_dev)) = d.vfs else {
        return Ok(false);
    };
    if d.name.is_empty() || d.name[0] == 0 {
        return Ok(false);
    }
    let path = socket_path(ctx.pid, d);
    let here = std::fs::metadata(&path).ok();
    if !here.is_some_and(|m| m.ino() == u64::from(vfs_ino)) {
        return Ok(true);
    }
    let listener = ctx
        .unix_table()?
        .values()
        .any(|o| o.ino != d.ino && o.state == TCP_LISTEN && o.vfs == Some((vfs_ino, vfs_dev)));
    Ok(listener && d.state != TCP_LISTEN)
}

/// Where stasis finds the file of a socket bound to a path: an absolute name in the
/// process's mount namespace (through `/proc/PID/root` when it is not stasis's), a
/// relative one from its cwd.
fn socket_path(pid: i32, d: &UnixDiag) -> std::path::PathBuf {
    let name = String::from_utf8_lossy(&d.name).into_owned();
    match d.name[0] {
        b'/' => crate::dump::mnt::reach(pid, &name),
        _ => format!("/proc/{pid}/cwd/{name}").into(),
    }
}

/// Mode and owner of the file a path-bound socket's name leads to (it leads to the
/// socket: checked by `name_unlinked`).
fn socket_file(pid: i32, ino: u64, d: &UnixDiag) -> Option<crate::image::files::SocketFile> {
    if d.name.is_empty() || d.name[0] == 0 {
        return None;
    }
    let m = std::fs::metadata(socket_path(pid, d)).ok()?;
    Some(crate::image::files::SocketFile {
        ino,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// A relative path name was bound relative to some cwd: find which (the process's cwd is
/// the only candidate stasis can check, through the bound inode).
fn bind_dir(pid: i32, fd: i32, d: &UnixDiag) -> Result<Option<String>, DumpError> {
    if d.name.is_empty() || d.name[0] == 0 || d.name[0] == b'/' {
        return Ok(None);
    }
    let cwd = format!("/proc/{pid}/cwd");
    let name = String::from_utf8_lossy(&d.name).into_owned();
    let here = std::fs::metadata(format!("{cwd}/{name}")).ok();
    match (here, d.vfs) {
        (Some(m), Some((ino, _))) if m.ino() == u64::from(ino) => {
            let dir = std::fs::read_link(&cwd).map_err(|source| DumpError::Stat { path: cwd, source })?;
            Ok(Some(dir.to_string_lossy().into_owned()))
        }
        _ => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a unix socket bound to the relative name {name:?}, which is not in its current directory any more"
        ))),
    }
}

fn peer(ctx: &mut SockCtx<'_>, fd: i32, ino: u64, d: &UnixDiag) -> Result<UnixPeer, DumpError> {
    let (pid, opts) = (ctx.pid, ctx.opts);
    // A connection not yet accepted: its listener lists us (our peer has no inode yet).
    if let Some((l, position)) = ctx.pending_of(ino)? {
        let l = u64::from(l);
        if ctx.inodes.contains_key(&l) || opts.tree_holds_socket(l) {
            return Ok(UnixPeer::Pending {
                listener: l,
                position,
            });
        }
    }
    ctx.unix_table()?;
    let (inodes, table) = (&ctx.inodes, ctx.unix.as_ref().expect("read above"));
    // Datagram sockets report "connected" also when another socket connected to them
    // (and keep a dead peer's pointer): only stream-like ones can have a closed peer.
    if d.peer == 0 {
        let stream_like = d.sock_type != libc::SOCK_DGRAM as u8;
        return Ok(if stream_like && d.state == CONNECTED {
            UnixPeer::Closed
        } else {
            UnixPeer::None
        });
    }
    let p = u64::from(d.peer);
    if inodes.contains_key(&p) || opts.tree_holds_socket(p) {
        return Ok(UnixPeer::Socket { ino: p });
    }
    let name = table
        .get(&d.peer)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    if !opts.ext_unix_sk {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a unix socket connected to socket:[{p}]{}, which no process of the dumped tree holds; use --ext-unix-sk to connect it to that address again at restore",
            display_name(&name)
        )));
    }
    if name.is_empty() {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a unix socket connected to the unnamed socket:[{p}] outside the dumped process: there is no address to connect to again"
        )));
    }
    Ok(UnixPeer::External { name })
}

pub fn display_name(name: &[u8]) -> String {
    match name.first() {
        None => String::new(),
        Some(0) => format!(" (@{})", String::from_utf8_lossy(&name[1..])),
        Some(_) => format!(" ({})", String::from_utf8_lossy(name)),
    }
}

/// Connections not yet accepted: restorable when their client is in the process and
/// sent nothing yet (its data would sit in a socket without an fd, which nothing can
/// peek); otherwise refused unless `--skip-in-flight` (dropped).
fn check_pending(ctx: &mut SockCtx<'_>, fd: i32, d: &UnixDiag) -> Result<(), DumpError> {
    let (pid, opts) = (ctx.pid, ctx.opts);
    let inodes: Vec<u64> = ctx.inodes.keys().copied().collect();
    let table = ctx.unix_table()?;
    for client in &d.icons {
        let ino = u64::from(*client);
        let what = if !inodes.contains(&ino) && !opts.tree_holds_socket(ino) {
            "a connection from outside the dumped tree"
        } else if table.get(client).is_some_and(|c| c.wmem_alloc > 1) {
            "a connection whose client already sent data"
        } else {
            continue;
        };
        if !opts.skip_in_flight {
            return Err(DumpError::unsupported(format!(
                "fd {fd} of pid {pid} is a listening unix socket with {what} not yet accepted; use --skip-in-flight to drop such connections"
            )));
        }
    }
    Ok(())
}

/// An unnamed datagram socket with messages queued and no peer (the other end of its
/// socketpair closed): its messages came from a peer now gone, and it is rebuilt like a
/// stream socket whose peer closed — as one end of a pair, refilled by the other end,
/// which is then closed (sending reports the peer gone, as before).
fn orphan_datagram_peer(d: &UnixDiag, peer: UnixPeer, queue: &[UnixMessage]) -> UnixPeer {
    let orphan = d.sock_type == libc::SOCK_DGRAM as u8
        && peer == UnixPeer::None
        && d.name.is_empty()
        && !queue.is_empty();
    if orphan {
        UnixPeer::Closed
    } else {
        peer
    }
}

/// Queued data that cannot be put back: from an external peer, or to an unnamed socket.
fn check_queue(
    ctx: &SockCtx<'_>,
    fd: i32,
    d: &UnixDiag,
    peer: &UnixPeer,
    queue: &[UnixMessage],
) -> Result<(), DumpError> {
    let pid = ctx.pid;
    if !queue.is_empty() && matches!(peer, UnixPeer::External { .. }) {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a unix socket connected outside the dumped process with {} unread messages, which its peer cannot send again",
            queue.len()
        )));
    }
    let unsendable = d.sock_type == libc::SOCK_DGRAM as u8
        && !matches!(peer, UnixPeer::Socket { .. } | UnixPeer::Closed)
        && d.name.is_empty();
    if !queue.is_empty() && unsendable {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is an unnamed, unconnected unix datagram socket with queued messages, which nothing can address again"
        )));
    }
    Ok(())
}

/// A receive queue, oldest first: each message with stasis's copies of the files riding
/// on it and its sender's address (datagram sockets; empty otherwise).
pub type Queued = Vec<(UnixMessage, Vec<OwnedFd>, Vec<u8>)>;

/// Every queued message, oldest first, with the files riding on it. The peek offset is
/// set to 0 and advanced by each peek; the owner's offset is put back after. The peeks
/// of a stream or seqpacket socket stop at its diag byte count: when that is 0, no call
/// is needed.
pub fn peek_queue(sock: BorrowedFd<'_>, d: &UnixDiag) -> nix::Result<Queued> {
    if stream_like(d) && d.rqlen.0 == 0 {
        return Ok(Vec::new());
    }
    let saved = getsockopt_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF)?;
    if saved < 0 && stream_like(d) {
        if let Some(whole) = peek_whole(sock, d)? {
            return Ok(whole);
        }
    }
    setsockopt_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF, 0)?;
    let result = peek_all(sock, d);
    setsockopt_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF, saved)?;
    result
}

/// The queue of a stream-like socket whose peek offset is off (-1, as on a new socket)
/// when one peek returns it whole. With the offset off a peek reads from the head of
/// the queue, as from offset 0, and moves no offset: nothing to set and put back.
/// `None` when more than one peek is needed (then the files of this one are closed).
fn peek_whole(sock: BorrowedFd<'_>, d: &UnixDiag) -> nix::Result<Option<Queued>> {
    let mut buf = peek_buf(d);
    let p = recv_peek(sock, &mut buf)?;
    if p.truncated || p.ctrunc || p.len < d.rqlen.0 as usize {
        return Ok(None);
    }
    buf.truncate(p.len);
    let msg = UnixMessage {
        data: buf,
        creds: p.creds,
    };
    Ok(Some(vec![(msg, p.fds, Vec::new())]))
}

/// Stream and seqpacket sockets: the diag byte count is their whole queue's.
fn stream_like(d: &UnixDiag) -> bool {
    d.sock_type != libc::SOCK_DGRAM as u8
}

/// The peeks' buffer: a stream-like queue's byte count fits in it whole (so each peek
/// returns what one of [`PEEK_BUF`] bytes would), a datagram may be up to `PEEK_BUF`.
/// Zeroing 8 MiB for each of a thousand sockets was half of their dump.
fn peek_buf(d: &UnixDiag) -> Vec<u8> {
    let len = if stream_like(d) {
        (d.rqlen.0 as usize).clamp(1, PEEK_BUF)
    } else {
        PEEK_BUF
    };
    vec![0u8; len]
}

fn peek_all(sock: BorrowedFd<'_>, d: &UnixDiag) -> nix::Result<Queued> {
    let stream_like = stream_like(d);
    let mut buf = peek_buf(d);
    let mut out = Vec::new();
    let mut total = 0usize;
    loop {
        // Stream and seqpacket: the diag byte count says when the queue is done (a
        // shut-down socket reads 0 forever instead of EAGAIN).
        if stream_like && total >= d.rqlen.0 as usize {
            return Ok(out);
        }
        let p: Peeked = match recv_peek(sock, &mut buf) {
            Err(nix::errno::Errno::EAGAIN) => return Ok(out),
            r => r?,
        };
        if p.truncated || p.ctrunc {
            return Err(nix::errno::Errno::EMSGSIZE);
        }
        if stream_like && p.len == 0 {
            return Ok(out);
        }
        total += p.len;
        let msg = UnixMessage {
            data: buf[..p.len].to_vec(),
            creds: p.creds,
        };
        let sender = if stream_like { Vec::new() } else { p.sender };
        out.push((msg, p.fds, sender));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::UnixStream;

    fn stream_diag(queued: usize) -> UnixDiag {
        UnixDiag {
            sock_type: libc::SOCK_STREAM as u8,
            state: CONNECTED,
            rqlen: (queued as u32, 0),
            ..UnixDiag::default()
        }
    }

    fn data(q: &Queued) -> Vec<u8> {
        q.iter().flat_map(|(m, _, _)| m.data.clone()).collect()
    }

    #[test]
    fn a_queue_peeked_whole_or_message_by_message_leaves_the_peek_offset_as_it_was() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        tx.write_all(b"hello ").unwrap();
        tx.write_all(b"world").unwrap();
        let d = stream_diag(11);
        let off = |s: &UnixStream| getsockopt_int(s.as_fd(), libc::SOL_SOCKET, SO_PEEK_OFF);
        // Offset off (-1): one peek from the head, nothing set.
        let q = peek_queue(rx.as_fd(), &d).unwrap();
        assert_eq!(data(&q), b"hello world");
        assert_eq!(off(&rx).unwrap(), -1);
        // The owner's offset at 3: peeked from 0, put back at 3.
        setsockopt_int(rx.as_fd(), libc::SOL_SOCKET, SO_PEEK_OFF, 3).unwrap();
        let q = peek_queue(rx.as_fd(), &d).unwrap();
        assert_eq!(data(&q), b"hello world");
        assert_eq!(off(&rx).unwrap(), 3);
    }

    #[test]
    fn a_queue_one_peek_cannot_return_whole_is_peeked_message_by_message() {
        let (tx, rx) = UnixStream::pair().unwrap();
        let (keep, _other) = UnixStream::pair().unwrap();
        let send = |byte: &[u8]| {
            use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
            let fds = [keep.as_raw_fd()];
            let iov = [std::io::IoSlice::new(byte)];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(tx.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
        };
        send(b"a");
        send(b"b");
        let q = peek_queue(rx.as_fd(), &stream_diag(2)).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(data(&q), b"ab");
        assert!(q.iter().all(|(_, fds, _)| fds.len() == 1));
        let off = getsockopt_int(rx.as_fd(), libc::SOL_SOCKET, SO_PEEK_OFF).unwrap();
        assert_eq!(off, -1);
    }
}
