//! The sockets the messages queued on a unix datagram socket are sent again from, each
//! bound to the address its message came from (`FilesImage::dgram_senders`; the dump side
//! is `dump/files/unix_senders.rs`, which refuses what cannot be chosen here):
//! - the receiver's peer, when the two are connected to each other and the address is
//!   the peer's name (no destination: the peer sends to its peer); the spare end of an
//!   unnamed socket whose peer is gone, for an unnamed sender;
//! - for a named receiver, sent to its name: a datagram socket of the table bound to the
//!   address, or else a temporary socket bound to it, kept for the queue's other
//!   messages from that address and closed after — an abstract name bound as is, a path
//!   name bound with the child's root at a scratch directory and its file unlinked there
//!   (`unix_unlinked.rs`: `recvmsg` reports the name as bound, and no file of the tree is
//!   made, removed or clobbered); an unnamed sender is an unnamed temporary socket.
//!
//! One message after the other, in queue order, whatever their senders. An image of
//! format 16 or older has no senders: every message comes from the peer, the spare end
//! or an unnamed temporary socket, as then.

use std::collections::HashMap;

use super::prep;
use super::unix::{mutual, Sockets};
use super::unix_unlinked;
use crate::image::sock::UnixSocket;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// The temporary senders of one queue, by address; closed by [`Temps::close`].
#[derive(Default)]
pub struct Temps(HashMap<Vec<u8>, u64>);

impl Temps {
    pub fn close(self, child: &Child) -> Result<(), RestoreError> {
        for fd in self.0.into_values() {
            child.remote().call("close", libc::SYS_close, &[fd])?;
        }
        Ok(())
    }
}

/// The fd a message of `u`'s queue from address `name` (`None`: not saved) is sent
/// from, and whether it is sent to `u`'s name (else to the sender's peer).
pub fn choose(
    child: &Child,
    s: &Sockets<'_>,
    u: &UnixSocket,
    name: Option<&[u8]>,
    temps: &mut Temps,
) -> Result<(u64, bool), RestoreError> {
    if let Some(p) = mutual(s, u).filter(|p| name.map_or(true, |n| p.name == n)) {
        return Ok((s.temp[&p.ino], false));
    }
    if let Some(spare) = s
        .spare
        .get(&u.ino)
        .filter(|_| name.map_or(true, <[u8]>::is_empty))
    {
        return Ok((*spare, false));
    }
    let name = name.unwrap_or_default();
    if u.name.is_empty() {
        return Err(RestoreError::Unsupported {
            what: format!(
                "a message queued on the unnamed unix socket socket:[{}] from {}: only its peer can send to it",
                u.ino,
                crate::image::files::DgramSenders::describe(name)
            ),
        });
    }
    let live = (s.list.iter())
        .find(|(_, v)| !name.is_empty() && v.name == name && v.sock_type == u.sock_type);
    if let Some((_, v)) = live {
        return Ok((s.temp[&v.ino], true));
    }
    if let Some(fd) = temps.0.get(name) {
        return Ok((*fd, true));
    }
    let fd = temporary(child, u, name)?;
    temps.0.insert(name.to_vec(), fd);
    Ok((fd, true))
}

/// A new socket of `u`'s type and network namespace bound to `name` (unbound if empty).
fn temporary(child: &Child, u: &UnixSocket, name: &[u8]) -> Result<u64, RestoreError> {
    let fd = crate::restore::ns::net_sockets::around(child, u.ino, || {
        Ok(child.remote().call(
            "socket(AF_UNIX)",
            libc::SYS_socket,
            &[libc::AF_UNIX as u64, u.sock_type as u64, 0],
        )?)
    })?;
    let bind = || {
        let (sa, len) = prep::sockaddr_un(name);
        prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len)
    };
    match name.first() {
        None => {}
        Some(0) => bind()?,
        Some(_) => unix_unlinked::in_scratch_root(child, &[name], |_| bind())?,
    }
    Ok(fd)
}
