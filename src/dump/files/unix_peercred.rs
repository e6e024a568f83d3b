//! `SO_PEERCRED` of unix sockets: the pid and effective uid and gid the kernel took from
//! the task that called `socketpair` (both ends), `listen` (the listener) or `connect`
//! (a stream or seqpacket client gets its listener's, the accepted end the client's);
//! unset (pid 0, ids -1) on any other socket, a datagram `connect` included.
//!
//! The restore makes those calls in the process that builds the socket (its first holder
//! in the tree) during the Files stage: the pid is that process's. A socket whose
//! credentials name a pid outside the dumped tree (its creator exited, as in zdtm
//! `sock_peercred`, or is elsewhere) is refused here, naming pid, fd and the
//! credentials. A socket connected outside the tree (`--ext-unix-sk`) keeps its peer's,
//! from a new `connect`.
//!
//! The uid and gid are the process's saved effective ones (`restore/files/unix_ids.rs`).
//! Not yet exact, and not refused (each would refuse common cases): in a tree with a user
//! namespace of its own or under a non-root stasis the ids are the restorer's; the ids
//! are not compared with the builder's; and two datagram sockets connected to each other
//! by `connect` (no credentials) come back as a `socketpair` (credentials set).

use std::os::fd::AsFd;

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::sock::UnixPeer;
use crate::sys::sock_diag::UnixDiag;

/// Refuses socket `d` at fd `fd` (peer `peer`) when its `SO_PEERCRED` names a pid the
/// restore cannot give it.
pub fn check(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    d: &UnixDiag,
    peer: &UnixPeer,
) -> Result<(), DumpError> {
    if matches!(peer, UnixPeer::External { .. }) {
        return Ok(());
    }
    let pid = ctx.pid;
    let sock = ctx.steal(fd)?;
    let (cpid, uid, gid) = crate::sys::socket::peer_cred(sock.as_fd()).map_err(|e| {
        DumpError::unsupported(format!("fd {fd} of pid {pid}: read SO_PEERCRED: {e}"))
    })?;
    let why = (cpid != 0 && !ctx.opts.pids.contains(&cpid))
        .then(|| format!("pid {cpid} is not a process of the dumped tree"));
    match why {
        Some(why) => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is a unix socket (socket:[{}]) whose peer credentials (SO_PEERCRED: pid {cpid}, uid {}, gid {}) stasis cannot restore: {why}",
            d.ino, uid as i32, gid as i32
        ))),
        None => Ok(()),
    }
}
