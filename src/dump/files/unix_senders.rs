//! The senders of the messages queued on a unix datagram socket: the address `recvmsg`
//! reports with each (`msg_name`: the sending socket's name when the message is read —
//! the kernel keeps the sender alive with its messages, closed or not; an unnamed sender
//! reports none; an autobound one its abstract name), saved in `FilesImage::dgram_senders`
//! and checked here against what the restore can send from (`restore/files/
//! unix_senders.rs`, whose choice this mirrors):
//! - the receiver's peer, when the two are connected to each other and the address is
//!   the peer's name; the spare end of an unnamed socket whose peer is gone, for an
//!   unnamed sender;
//! - for a named receiver: a datagram socket of this process bound to the address, or
//!   else a temporary socket bound to it (unnamed for an unnamed sender) — possible when
//!   the receiver is not connected (a connected one only takes its peer's messages) and
//!   no socket outside this process holds the address.
//!
//! Anything else is refused, naming the socket and the sender.

use std::collections::HashMap;

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::DgramSenders;
use crate::image::sock::UnixPeer;
use crate::sys::sock_diag::UnixDiag;

/// Checks and keeps the senders of the queue of datagram socket `d` (fd `fd`) with
/// peer `peer`; other sockets have none.
pub fn keep(
    ctx: &mut SockCtx<'_>,
    fd: i32,
    d: &UnixDiag,
    peer: &UnixPeer,
) -> Result<(), DumpError> {
    let ino = u64::from(d.ino);
    let names = ctx.senders.remove(&ino).unwrap_or_default();
    if d.sock_type != libc::SOCK_DGRAM as u8 || names.is_empty() {
        return Ok(());
    }
    let pid = ctx.pid;
    let ours: Vec<u64> = ctx.inodes.keys().copied().collect();
    let table = ctx.unix_table()?;
    for name in &names {
        if let Some(why) = unsendable(table, &ours, d, peer, name) {
            return Err(DumpError::unsupported(format!(
                "fd {fd} of pid {pid} is a unix datagram socket (socket:[{ino}]) with a queued message from {}, which stasis cannot send again from that address: {why}",
                DgramSenders::describe(name)
            )));
        }
    }
    ctx.dgram_senders.push(DgramSenders { socket: ino, names });
    Ok(())
}

/// Why the restore could not send a message from `name` to `d`; `None` when it can.
fn unsendable(
    table: &HashMap<u32, UnixDiag>,
    ours: &[u64],
    d: &UnixDiag,
    peer: &UnixPeer,
    name: &[u8],
) -> Option<String> {
    let connected = match peer {
        UnixPeer::Socket { ino } => table.get(&(*ino as u32)),
        _ => None,
    };
    let mutual =
        connected.filter(|p| p.ino != d.ino && p.peer == d.ino && p.sock_type == d.sock_type);
    if mutual.is_some_and(|p| p.name == name) || (*peer == UnixPeer::Closed && name.is_empty()) {
        return None;
    }
    if d.name.is_empty() {
        return Some("the socket has no name, so only its peer can send to it".into());
    }
    let holders: Vec<&UnixDiag> = (table.values())
        .filter(|o| !name.is_empty() && o.name == name && o.sock_type == d.sock_type)
        .collect();
    let here = holders.iter().find(|o| ours.contains(&u64::from(o.ino)));
    if *peer != UnixPeer::None {
        return match (connected, here) {
            (Some(p), Some(h)) if p.ino == h.ino => None,
            _ => Some("the socket is connected, so only its peer can send to it".into()),
        };
    }
    match (here, holders.first()) {
        (None, Some(h)) => Some(format!(
            "socket:[{}] of another process has that address",
            h.ino
        )),
        _ => None,
    }
}
