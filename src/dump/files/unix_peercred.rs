//! `SO_PEERCRED` of unix sockets: the pid and effective uid and gid the kernel took from
//! the task that called `socketpair` (both ends), `listen` (the listener) or `connect`
//! (a stream or seqpacket client gets its listener's, the accepted end the client's);
//! unset (pid 0, ids -1) on any other socket, a datagram `connect` included. Every unix
//! socket's is saved, as an option of its record (`image/sockopts.rs`,
//! `Special::PeerCred`), as stasis sees it (pid in its pid namespace, ids in its user
//! namespace: what the restore compares with, `restore/files/unix_peercred.rs`).
//!
//! The restore makes those calls during the Files stage of the process that builds the
//! socket (its first holder in the tree, `split.rs`), or, for two sockets connected to
//! each other, in the processes their credentials name (`restore/files/unix_cross.rs`):
//! one `socketpair` in the process both name (a pair made by a child, held by its
//! parent); `listen` and `accept` in the process the client end names and `connect` in
//! the one the accepted end names (a parent accepting from a client it forked, or from
//! one with other ids), each end then handed to the builder. Refused here, naming pid,
//! fd, socket and the credentials ([`check`], then [`builders`] once the tree's tables
//! are linked): a socket whose credentials name a pid outside the dumped tree (its
//! creator exited, as in zdtm `sock_peercred`, or is elsewhere); a socket not connected
//! to another of its builder's table (a listener, a socket whose peer closed) whose
//! credentials name another process than its builder (a listener made by a parent and
//! held only by its child); two connected sockets whose credentials name a process that
//! is not a live process of the tree restored after their builder (its own Files stage
//! and credentials are done by then: a pair made by a child and held by its parent
//! only is fine, one made by the parent and held by its child only is not), or a
//! datagram pair (or one end unset) with two different credentials (a `socketpair`
//! cannot). A socket connected outside the tree (`--ext-unix-sk`) keeps its peer's,
//! from a new `connect`, and is not compared.
//!
//! The ids are made exact at restore (`restore/files/unix_ids.rs`: the saved ones are
//! switched to around the call), and two datagram sockets connected to each other by
//! `connect` (no credentials) are connected again that way, not made by `socketpair`.
//! Whatever the restore still cannot make (the ids when stasis is not root or for a
//! process born inside the tree's user namespace; a process named that the restore
//! orders before the builder) fails the restore before the tree runs
//! (`restore/files/unix_peercred.rs`, `unix_cross.rs`).

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::{FdKind, FilesImage};
use crate::image::sock::{UnixPeer, UnixSocket};
use crate::image::sockopts::SockOpts;
use crate::sys::sock_diag::UnixDiag;

/// Refuses socket `d` at fd `fd` (peer `peer`, options `opts` as read by
/// `dump/files/sockopts.rs`, which always saves a unix socket's `SO_PEERCRED`) when its
/// credentials name a pid the restore cannot give it.
pub fn check(
    ctx: &SockCtx<'_>,
    fd: i32,
    d: &UnixDiag,
    peer: &UnixPeer,
    opts: &SockOpts,
) -> Result<(), DumpError> {
    if matches!(peer, UnixPeer::External { .. }) {
        return Ok(());
    }
    let pid = ctx.pid;
    let Some((cpid, uid, gid)) = opts.peer_cred() else {
        return Ok(());
    };
    let why = (cpid != 0 && !ctx.opts.pids.contains(&cpid))
        .then(|| format!("pid {cpid} is not a process of the dumped tree"));
    match why {
        Some(why) => Err(refusal(pid, fd, u64::from(d.ino), (cpid, uid, gid), &why)),
        None => Ok(()),
    }
}

/// Refuses a socket whose credentials the restore cannot give it where it builds it
/// (`tables`: linked by `split.rs`, in tree order): a socket alone (a listener, a
/// socket whose peer closed or is pending) named by another process than its builder,
/// or a connected pair ([`pair`]) named by a process that is not a live one restored
/// after its builder.
pub fn builders(tables: &[(i32, FilesImage)]) -> Result<(), DumpError> {
    for (i, (pid, files)) in tables.iter().enumerate() {
        for e in &files.fds {
            let FdKind::Unix(u) = &e.kind else { continue };
            let Some(cred) = u.opts.peer_cred() else {
                continue;
            };
            if cred.0 == 0 || matches!(u.peer, UnixPeer::External { .. }) {
                continue;
            }
            let why = match peer_in(files, u) {
                Some(p) => pair(tables, i, u, p),
                None if cred.0 != *pid => Some(format!(
                    "pid {} made it (socketpair, listen or connect), and the restore builds it in pid {pid}, {}",
                    cred.0,
                    made_by(u)
                )),
                None => None,
            };
            if let Some(why) = why {
                let (holder, fd) = holder(tables, *pid, files, e.fd);
                return Err(refusal(holder, fd, u.ino, cred, &why));
            }
        }
    }
    Ok(())
}

/// The socket of table `files` connected to `u`, when the two are connected to each
/// other (built together: `restore/files/unix.rs`).
fn peer_in<'a>(files: &'a FilesImage, u: &UnixSocket) -> Option<&'a UnixSocket> {
    let UnixPeer::Socket { ino } = u.peer else {
        return None;
    };
    files.fds.iter().find_map(|e| match &e.kind {
        FdKind::Unix(p) if p.ino == ino && p.ino != u.ino => {
            (p.peer == UnixPeer::Socket { ino: u.ino }).then_some(p.as_ref())
        }
        _ => None,
    })
}

/// Why the restore cannot give `u` and its peer `p`, built by table `i`, their
/// credentials (`restore/files/unix_cross.rs`): the same ones by a `socketpair` in the
/// process they name, two different ones (a connection accepted from another process or
/// with other ids) by `listen` and `accept` in the process the client end's name and
/// `connect` in the one the accepted end's name. Each such process must be the builder
/// or a live process restored after it (its fd table and ids are not set yet).
fn pair(tables: &[(i32, FilesImage)], i: usize, u: &UnixSocket, p: &UnixSocket) -> Option<String> {
    let (Some(mine), Some(theirs)) = (u.opts.peer_cred(), p.opts.peer_cred()) else {
        return None;
    };
    if mine != theirs && theirs.0 == 0 {
        return Some(format!(
            "its peer socket:[{}] has none, and the restore makes the two ends with one socketpair",
            p.ino
        ));
    }
    if mine != theirs && u.sock_type == libc::SOCK_DGRAM {
        return Some(format!(
            "its peer socket:[{}] has pid {}, uid {}, gid {}, and the restore makes two connected datagram sockets with one socketpair",
            p.ino, theirs.0, theirs.1 as i32, theirs.2 as i32
        ));
    }
    let builder = tables[i].0;
    let at = tables.iter().position(|(q, _)| *q == mine.0);
    match at {
        Some(j) if j >= i => None,
        Some(_) => Some(format!(
            "pid {} made it (socketpair, listen or connect), and it is restored before pid {builder}, which builds the socket (its own files are done by then)",
            mine.0
        )),
        None => Some(format!(
            "pid {} made it (socketpair, listen or connect), and it is not a live process of the tree with files of its own, where the restore could make it (the restore builds it in pid {builder})",
            mine.0
        )),
    }
}

/// What the restore makes socket `u` with, for the refusal.
fn made_by(u: &UnixSocket) -> &'static str {
    match (u.listen_backlog, &u.peer) {
        (Some(_), _) => "which calls listen",
        (None, UnixPeer::Pending { .. }) => "which connects it",
        _ => "the first process of the tree that holds it",
    }
}

/// The process and fd that hold fd `fd` of `pid`: itself, or for a spare (`split.rs`)
/// the later process that takes it.
fn holder(tables: &[(i32, FilesImage)], pid: i32, files: &FilesImage, fd: i32) -> (i32, i32) {
    if !files.spares.contains(&fd) {
        return (pid, fd);
    }
    let taken = tables.iter().find_map(|(q, f)| {
        let e = f
            .fds
            .iter()
            .find(|e| e.kind == FdKind::Inherited { pid, fd })?;
        Some((*q, e.fd))
    });
    taken.unwrap_or((pid, fd))
}

fn refusal(pid: i32, fd: i32, ino: u64, cred: (i32, u32, u32), why: &str) -> DumpError {
    let (cpid, uid, gid) = cred;
    DumpError::unsupported(format!(
        "fd {fd} of pid {pid} is a unix socket (socket:[{ino}]) whose peer credentials (SO_PEERCRED: pid {cpid}, uid {}, gid {}) stasis cannot restore: {why}",
        uid as i32, gid as i32
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::files::FdEntry;
    use crate::image::sockopts::SockOpt;

    /// Stream socket `ino` connected to `peer`, with SO_PEERCRED `(pid, 0, 0)`.
    fn sock(fd: i32, ino: u64, peer: u64, pid: i32) -> FdEntry {
        let mut u = crate::image::sample::unix_stream(ino, peer, b"");
        let mut value = pid.to_ne_bytes().to_vec();
        value.extend_from_slice(&[0; 8]);
        u.opts.opts.push(SockOpt {
            level: libc::SOL_SOCKET,
            name: libc::SO_PEERCRED,
            value,
        });
        FdEntry {
            fd,
            cloexec: false,
            flags: libc::O_RDWR,
            kind: FdKind::Unix(Box::new(u)),
        }
    }

    /// Tables of pids 1 and 2, 1 holding a connection whose ends name `a` and `b`.
    fn tables(a: i32, b: i32) -> Vec<(i32, FilesImage)> {
        let files = FilesImage {
            fds: vec![sock(3, 100, 101, a), sock(4, 101, 100, b)],
            ..FilesImage::default()
        };
        vec![(1, files), (2, FilesImage::default())]
    }

    #[test]
    fn a_connection_accepted_from_a_later_process_is_built_across() {
        builders(&tables(2, 1)).unwrap();
        builders(&tables(2, 2)).unwrap();
        builders(&tables(1, 1)).unwrap();
    }

    #[test]
    fn a_pair_naming_an_earlier_or_unknown_process_is_refused() {
        let mut t = tables(1, 1);
        t.swap(0, 1);
        t[1].0 = 3;
        t[0].0 = 1;
        let err = builders(&t).unwrap_err().to_string();
        assert!(err.contains("restored before pid 3"), "{err}");
        let err = builders(&tables(1, 7)).unwrap_err().to_string();
        assert!(err.contains("pid 7 made it"), "{err}");
        assert!(err.contains("not a live process"), "{err}");
    }
}
