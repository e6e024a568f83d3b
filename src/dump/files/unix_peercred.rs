//! `SO_PEERCRED` of unix sockets: the pid and effective uid and gid the kernel took from
//! the task that called `socketpair` (both ends), `listen` (the listener) or `connect`
//! (a stream or seqpacket client gets its listener's, the accepted end the client's);
//! unset (pid 0, ids -1) on any other socket, a datagram `connect` included. Every unix
//! socket's is saved, as an option of its record (`image/sockopts.rs`,
//! `Special::PeerCred`), as stasis sees it (pid in its pid namespace, ids in its user
//! namespace: what the restore compares with, `restore/files/unix_peercred.rs`).
//!
//! The restore makes those calls in the process that builds the socket (its first holder
//! in the tree, `split.rs`) during the Files stage: the pid is that process's. Refused
//! here, naming pid, fd, socket and the credentials ([`check`], then [`builders`] once
//! the tree's tables are linked): a socket whose credentials name a pid outside the
//! dumped tree (its creator exited, as in zdtm `sock_peercred`, or is elsewhere), or a
//! process of the tree other than the one that builds it (a socket made by one process
//! and now held only by another; the accepted end of a connection whose client was
//! another process), or one of two connected sockets with other credentials than its
//! peer (the restore makes both with one `socketpair`: a connection accepted from a
//! client with other ids than the listener's). A socket connected outside the tree (`--ext-unix-sk`) keeps its
//! peer's, from a new `connect`, and is not compared.
//!
//! The ids are made exact at restore (`restore/files/unix_ids.rs`: the saved ones are
//! switched to around the call), and two datagram sockets connected to each other by
//! `connect` (no credentials) are connected again that way, not made by `socketpair`.
//! Whatever the restore still cannot make (the ids when stasis is not root, two ends of
//! one pair with different credentials) fails the restore before the tree runs
//! (`restore/files/unix_peercred.rs`).

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

/// Refuses a socket whose credentials name a process of the tree other than the one the
/// restore builds it in (`tables`: linked by `split.rs`, in tree order).
pub fn builders(tables: &[(i32, FilesImage)]) -> Result<(), DumpError> {
    for (pid, files) in tables {
        for e in &files.fds {
            let FdKind::Unix(u) = &e.kind else { continue };
            let Some(cred) = u.opts.peer_cred() else {
                continue;
            };
            if cred.0 == 0 || cred.0 == *pid || matches!(u.peer, UnixPeer::External { .. }) {
                continue;
            }
            let (holder, fd) = holder(tables, *pid, files, e.fd);
            let why = format!(
                "pid {} made it (socketpair, listen or connect), and the restore builds it in pid {pid}, {}",
                cred.0,
                made_by(u)
            );
            return Err(refusal(holder, fd, u.ino, cred, &why));
        }
        pairs(tables, *pid, files)?;
    }
    Ok(())
}

/// Refuses two sockets of one table connected to each other (the restore makes them
/// with one `socketpair`, `restore/files/unix.rs`) whose credentials differ: a
/// connection accepted from a client that had other ids than the listener's.
fn pairs(tables: &[(i32, FilesImage)], pid: i32, files: &FilesImage) -> Result<(), DumpError> {
    let unix = |ino: u64| {
        files.fds.iter().find_map(|e| match &e.kind {
            FdKind::Unix(u) if u.ino == ino => Some(u.as_ref()),
            _ => None,
        })
    };
    for e in &files.fds {
        let FdKind::Unix(u) = &e.kind else { continue };
        let UnixPeer::Socket { ino } = u.peer else {
            continue;
        };
        let Some(p) =
            unix(ino).filter(|p| p.ino != u.ino && p.peer == UnixPeer::Socket { ino: u.ino })
        else {
            continue;
        };
        let (Some(mine), Some(theirs)) = (u.opts.peer_cred(), p.opts.peer_cred()) else {
            continue;
        };
        if mine != theirs && mine.0 != 0 && theirs.0 != 0 {
            let (holder, fd) = holder(tables, pid, files, e.fd);
            let why = format!(
                "its peer socket:[{}] has pid {}, uid {}, gid {}, and stasis makes the two ends with one socketpair (a connection accepted from a client with other credentials than the listener's)",
                p.ino, theirs.0, theirs.1 as i32, theirs.2 as i32
            );
            return Err(refusal(holder, fd, u.ino, mine, &why));
        }
    }
    Ok(())
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
