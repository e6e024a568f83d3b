//! Unix sockets rebuilt in the child (but for pairs of their own, `unix_pair.rs`): built and connected before the fd table is filled
//! ([`prepare`], see `prep.rs`), filled once it is ([`finish`]: files in flight are
//! entries of the table, sent with their messages). The dump side is
//! `dump/files/unix.rs` and `dump/files/inflight.rs`.
//!
//! Ordering requirements, for the sockets of one process (1-4 in `prepare`, 5-9 in
//! `finish`, after the table loop):
//! 1. create: a `socketpair` for every two sockets connected to each other (made in
//!    other processes when their credentials say so, `unix_cross.rs`; and for a socket
//!    whose peer closed: the spare end is closed at step 6), `socket` for the rest;
//! 2. bind names (a stale socket file left by the dumped process is removed first; a
//!    relative name is bound from its directory); a name whose file was gone at dump
//!    time is bound in a scratch root and its file unlinked (`unix_unlinked.rs`), with
//!    the connections to it (steps 3 and 4 for those sockets);
//! 3. `listen`;
//! 4. `connect`: one-way datagram connections, connections still pending in a listener
//!    (in its queue order, before anything could accept them), external peers;
//! 5. fill receive queues, each message sent by the peer or (datagrams) from a socket
//!    bound to the address it came from (`unix_senders.rs`), with its credentials and
//!    the files in flight on it (`SCM_RIGHTS`, naming their entries), the senders'
//!    buffers raised meanwhile;
//! 6. shutdown states, spare ends closed;
//! 7. options (`sockopts.rs`, every stage: a filter would filter the refilled queue),
//!    file status flags;
//! 8. every socket's credentials compared with the saved ones (`unix_peercred.rs`);
//! 9. the entries of files in flight closed (their messages hold them now).
//!
//! A stream message with files is sent as one `sendmsg`: a peek glues the bytes queued
//! before the files (same credentials) to them, so the files now ride from the run's
//! first byte.
//!
//! A pair connected by `connect` + `accept` whose two ends have the same credentials
//! (`SO_PEERCRED`), naming this process, comes back as a `socketpair`: same type, peer
//! and data; the accepted end gets the listener's name bound without a file. A pair whose
//! credentials name another process, or differ (a connection accepted from a child or
//! from other ids), is made where they name and handed here (`unix_cross.rs`, at step
//! 1): its accepted end has its name already. Two datagram sockets connected to
//! each other by `connect` (saved credentials unset) are not a `socketpair`: each is
//! connected to the other's name ([`paired`]). `socketpair` and `listen` run with the
//! socket's saved ids (`unix_ids.rs`); `unix_peercred.rs` compares what came back. The
//! dump refuses what none of this can make (`dump/files/unix_peercred.rs`).

use std::collections::HashMap;

use super::prep::{self, Prepared};
use super::sockopts;
use super::unix_senders;
use super::unix_unlinked;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::sock::{UnixPeer, UnixSocket};
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// The unix sockets of a table: entry and socket, by inode.
pub struct Sockets<'a> {
    pub(super) list: Vec<(&'a FdEntry, &'a UnixSocket)>,
    by_ino: HashMap<u64, usize>,
    pub(super) temp: HashMap<u64, u64>,
    /// Spare ends: the other end of a pair whose peer closed, by the socket's inode.
    pub(super) spare: HashMap<u64, u64>,
    /// Sockets whose name has no file (`FilesImage::unlinked_sockets`).
    unlinked: &'a [u64],
    /// Mode and owner of the files of the others.
    files: &'a [crate::image::files::SocketFile],
    /// The effective ids `socketpair`, `listen` and `connect` run with (`unix_ids.rs`).
    ids: Option<(u32, u32)>,
    /// The processes whose stages have not run yet, where a pair named by their
    /// credentials is made (`unix_cross.rs`).
    later: &'a [&'a Child],
    /// Accepted ends made by `unix_cross.rs`: their name came from their listener.
    named: Vec<u64>,
}

/// Steps 1-4, and the temporary fd of every socket for the table loop.
pub fn prepare<'a>(
    child: &Child,
    (files, later): (&'a FilesImage, &'a [&'a Child]),
    pairs: &super::unix_pair::Pairs,
    ids: Option<(u32, u32)>,
    prepared: &mut Prepared,
) -> Result<Option<Sockets<'a>>, RestoreError> {
    let list: Vec<_> = files
        .fds
        .iter()
        .filter_map(|e| match &e.kind {
            // Pairs of their own are rebuilt in the fd batch (`unix_pair.rs`).
            FdKind::Unix(u) if pairs.get(e.fd).is_none() => Some((e, u.as_ref())),
            _ => None,
        })
        .collect();
    if list.is_empty() {
        return Ok(None);
    }
    let by_ino = list
        .iter()
        .enumerate()
        .map(|(i, (_, u))| (u.ino, i))
        .collect();
    let mut s = Sockets {
        list,
        by_ino,
        temp: HashMap::new(),
        spare: HashMap::new(),
        unlinked: &files.unlinked_sockets,
        files: &files.socket_files,
        ids,
        later,
        named: Vec::new(),
    };
    let pid = child.pid();
    let at = |fd: i32| RestoreError::at_fd(pid, fd);
    for i in 0..s.list.len() {
        create(child, &mut s, i, prepared).map_err(at(s.list[i].0.fd))?;
    }
    let bound_here = |u: &UnixSocket| !s.unlinked.contains(&u.ino) && !s.named.contains(&u.ino);
    for (e, u) in s.list.iter().filter(|(_, u)| bound_here(u)) {
        bind_and_listen(child, &s, u).map_err(at(e.fd))?;
    }
    bind_unlinked(child, &s)?;
    connect_all(child, &s, None).map_err(at(0))?;
    for (e, u) in &s.list {
        prepared.assign(e.fd, s.temp[&u.ino]);
    }
    Ok(Some(s))
}

/// Steps 5-8. Ordering requirements: after the table loop (the files in flight are
/// entries of the table), before the temporary fds are closed.
pub fn finish(
    child: &Child,
    files: &FilesImage,
    sockets: Option<Sockets<'_>>,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    let Some(s) = sockets else {
        return Ok(());
    };
    let pid = child.pid();
    let at = |fd: i32| RestoreError::at_fd(pid, fd);
    for (e, u) in &s.list {
        fill(child, &s, u, files).map_err(at(e.fd))?;
    }
    for (e, u) in &s.list {
        shut(child, &s, u, prepared).map_err(at(e.fd))?;
        options(child, s.temp[&u.ino], e, u).map_err(at(e.fd))?;
    }
    super::unix_peercred::check(child, files)?;
    for fd in files.in_flight.iter().flat_map(|m| &m.fds) {
        let closed = child.remote().call("close", libc::SYS_close, &[*fd as u64]);
        closed.map_err(|e| at(*fd)(e.into()))?;
    }
    Ok(())
}

/// The peer of `u` when the two are connected to each other (a datagram socket
/// connected to itself is not a pair: it is bound, then connected to its own name).
pub(super) fn mutual<'a>(s: &Sockets<'a>, u: &UnixSocket) -> Option<&'a UnixSocket> {
    let UnixPeer::Socket { ino } = u.peer else {
        return None;
    };
    if ino == u.ino {
        return None;
    }
    let p = s.list[*s.by_ino.get(&ino)?].1;
    (p.peer == UnixPeer::Socket { ino: u.ino } && p.sock_type == u.sock_type).then_some(p)
}

/// The peer of `u` when the two are made by one `socketpair`: connected to each other,
/// but for two datagram sockets that `connect`ed to each other (their saved credentials
/// unset, pid 0: `socketpair` would set them), each connected to the other's name.
fn paired<'a>(s: &Sockets<'a>, u: &UnixSocket) -> Option<&'a UnixSocket> {
    let unset = |u: &UnixSocket| u.opts.peer_cred().is_some_and(|c| c.0 == 0);
    mutual(s, u).filter(|p| !unset(u) && !unset(p))
}

fn create(
    child: &Child,
    s: &mut Sockets<'_>,
    i: usize,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    let u = s.list[i].1;
    if s.temp.contains_key(&u.ino) {
        return Ok(());
    }
    let ns = crate::restore::ns::net_sockets::around;
    ns(child, u.ino, || made(child, s, u, prepared))
}

/// Step 1 for `u`, in the network namespace the child is in.
fn made(
    child: &Child,
    s: &mut Sockets<'_>,
    u: &UnixSocket,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    let ty = u.sock_type as u64;
    let ids = super::unix_ids::of_socket(s.ids, u);
    let socketpair = |child, ty, prepared: &mut Prepared| {
        super::unix_ids::around(child, ids, || socketpair(child, ty, prepared))
    };
    if let Some(p) = paired(s, u) {
        let made = super::unix_cross::build(child, s.later, (u, p), s.unlinked, prepared)?;
        if let Some(built) = made {
            s.temp.extend(built.ends);
            s.named.extend(built.named);
            return Ok(());
        }
        let (a, b) = socketpair(child, ty, prepared)?;
        s.temp.insert(u.ino, a);
        s.temp.insert(p.ino, b);
    } else if u.peer == UnixPeer::Closed {
        let (a, b) = socketpair(child, ty, prepared)?;
        s.temp.insert(u.ino, a);
        s.spare.insert(u.ino, b);
    } else {
        let got = child.remote().call(
            "socket(AF_UNIX)",
            libc::SYS_socket,
            &[libc::AF_UNIX as u64, ty, 0],
        )?;
        s.temp.insert(u.ino, prepared.park(child, got)?);
    }
    Ok(())
}

fn socketpair(child: &Child, ty: u64, prepared: &mut Prepared) -> Result<(u64, u64), RestoreError> {
    let (a, b) = socketpair_in(child, ty as i32)?;
    Ok((prepared.park(child, a)?, prepared.park(child, b)?))
}

/// `socketpair(AF_UNIX, ty)` in `child`: its two fds.
pub(super) fn socketpair_in(child: &Child, ty: i32) -> Result<(u64, u64), RestoreError> {
    let ty = ty as u64;
    let out = child.put(prep::ARG_OFF, &[0u8; 8])?;
    child.remote().call(
        "socketpair(AF_UNIX)",
        libc::SYS_socketpair,
        &[libc::AF_UNIX as u64, ty, 0, out],
    )?;
    let mut fds = [0u8; 8];
    child.mem.read(out, &mut fds)?;
    let a = u64::from(u32::from_ne_bytes([fds[0], fds[1], fds[2], fds[3]]));
    let b = u64::from(u32::from_ne_bytes([fds[4], fds[5], fds[6], fds[7]]));
    Ok((a, b))
}

/// Binds the sockets whose name has no file and connects what connects to them, in a
/// scratch root (`unix_unlinked.rs`). Several such sockets may share a name (bound one
/// after another, each file unlinked before the next bind, or a listener and the
/// connections it accepted): they are bound in rounds of distinct names, each round's
/// files unlinked before the next round binds the name again.
fn bind_unlinked(child: &Child, s: &Sockets<'_>) -> Result<(), RestoreError> {
    let unlinked: Vec<_> = (s.list.iter())
        .filter(|(_, u)| s.unlinked.contains(&u.ino) && !s.named.contains(&u.ino))
        .collect();
    let pid = child.pid();
    for round in rounds(&unlinked) {
        let names: Vec<&[u8]> = round.iter().map(|(_, u)| &u.name[..]).collect();
        let inos: Vec<u64> = round.iter().map(|(_, u)| u.ino).collect();
        unix_unlinked::in_scratch_root(child, &names, |_| {
            for (e, u) in &round {
                bind_and_listen(child, s, u).map_err(RestoreError::at_fd(pid, e.fd))?;
            }
            connect_all(child, s, Some(&inos)).map_err(RestoreError::at_fd(pid, 0))
        })?;
    }
    Ok(())
}

/// `list` split into rounds in which no two sockets have the same name, each socket in
/// the first round its name is free in (so table order is kept per name).
fn rounds<'a, 'b>(
    list: &[&'b (&'a FdEntry, &'a UnixSocket)],
) -> Vec<Vec<&'b (&'a FdEntry, &'a UnixSocket)>> {
    let mut rounds: Vec<Vec<&(&FdEntry, &UnixSocket)>> = Vec::new();
    for item in list {
        let free = rounds
            .iter()
            .position(|r| r.iter().all(|(_, u)| u.name != item.1.name));
        match free {
            Some(i) => rounds[i].push(item),
            None => rounds.push(vec![item]),
        }
    }
    rounds
}

fn bind_and_listen(child: &Child, s: &Sockets<'_>, u: &UnixSocket) -> Result<(), RestoreError> {
    let fd = s.temp[&u.ino];
    let unlinked = s.unlinked.contains(&u.ino);
    if !u.name.is_empty() {
        if !unlinked {
            remove_stale(child, u)?;
        }
        if let Some(dir) = &u.bind_dir {
            let addr = child.put_str(prep::ARG_OFF, dir)?;
            child.remote().call("chdir", libc::SYS_chdir, &[addr])?;
        }
        let (sa, len) = prep::sockaddr_un(&u.name);
        prep::address_call(child, "bind", libc::SYS_bind, fd, &sa, len)?;
        if let Some(f) = s.files.iter().find(|f| f.ino == u.ino) {
            set_mode_and_owner(child, u, f)?;
        }
    }
    if let Some(backlog) = u.listen_backlog {
        super::unix_ids::around(child, super::unix_ids::of_socket(s.ids, u), || {
            let args = [fd, u64::from(backlog)];
            Ok(child.remote().call("listen", libc::SYS_listen, &args)?)
        })?;
    }
    Ok(())
}

/// The saved mode and owner on the file `bind` made (from stasis, through the child's
/// root: the path is the same in the child until the Fs stage).
fn set_mode_and_owner(
    child: &Child,
    u: &UnixSocket,
    f: &crate::image::files::SocketFile,
) -> Result<(), RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(u);
    let at = crate::restore::mnt::in_tree(child, &path);
    let failed = |source| RestoreError::Write {
        path: path.clone(),
        source,
    };
    std::os::unix::fs::chown(&at, Some(f.uid), Some(f.gid)).map_err(failed)?;
    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(f.mode)).map_err(failed)
}

/// The path of a socket's file: its name, from its bind directory if relative.
fn socket_path(u: &UnixSocket) -> String {
    let name = String::from_utf8_lossy(&u.name).into_owned();
    match &u.bind_dir {
        Some(dir) if !name.starts_with('/') => format!("{dir}/{name}"),
        _ => name,
    }
}

/// The socket file a dumped process leaves behind keeps its name taken: remove it if it
/// is a socket (never anything else). Looked at through the child's root: the tree's.
fn remove_stale(child: &Child, u: &UnixSocket) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileTypeExt;
    if u.name[0] == 0 {
        return Ok(());
    }
    let path = socket_path(u);
    let at = crate::restore::mnt::in_tree(child, &path);
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(&at).map_err(|source| RestoreError::Write { path, source })
        }
        _ => Ok(()),
    }
}

/// Step 4 for the connections to the sockets `unlinked` whose name has no file (bound
/// in the scratch root now), or (`None`) to the sockets with a file and outside.
fn connect_all(
    child: &Child,
    s: &Sockets<'_>,
    unlinked: Option<&[u64]>,
) -> Result<(), RestoreError> {
    let mut pending: Vec<(u32, &UnixSocket, &[u8])> = Vec::new();
    let here = |ino: &u64| match unlinked {
        Some(round) => round.contains(ino),
        None => !s.unlinked.contains(ino),
    };
    for (_, u) in &s.list {
        let to: &[u8] = match &u.peer {
            UnixPeer::Socket { ino } if paired(s, u).is_none() && here(ino) => {
                &peer_of(s, *ino)?.name
            }
            UnixPeer::External { name } if unlinked.is_none() => name,
            UnixPeer::Pending { listener, position } if here(listener) => {
                pending.push((*position, u, &peer_of(s, *listener)?.name));
                continue;
            }
            _ => continue,
        };
        connect(child, s, s.temp[&u.ino], to)?;
    }
    pending.sort_by_key(|p| p.0);
    for (_, u, to) in pending {
        connect(child, s, s.temp[&u.ino], to)?;
    }
    Ok(())
}

fn peer_of<'a>(s: &Sockets<'a>, ino: u64) -> Result<&'a UnixSocket, RestoreError> {
    let p = s.by_ino.get(&ino).map(|&i| s.list[i].1);
    match p {
        Some(p) if !p.name.is_empty() => Ok(p),
        _ => Err(RestoreError::Unsupported {
            what: format!("unix socket peer socket:[{ino}] is not a named socket of the image"),
        }),
    }
}

fn connect(child: &Child, s: &Sockets<'_>, fd: u64, name: &[u8]) -> Result<(), RestoreError> {
    let (sa, len) = prep::sockaddr_un(name);
    super::unix_ids::around(child, s.ids, || {
        prep::address_call(child, "connect", libc::SYS_connect, fd, &sa, len)
    })
}

/// Refills the receive queue of `u`, each message from a socket bound to the address
/// it came from (`unix_senders.rs`), with the files in flight on it.
fn fill(
    child: &Child,
    s: &Sockets<'_>,
    u: &UnixSocket,
    files: &FilesImage,
) -> Result<(), RestoreError> {
    if u.queue.is_empty() {
        return Ok(());
    }
    let senders = files.dgram_senders.iter().find(|d| d.socket == u.ino);
    let senders = senders.map(|d| &d.names[..]);
    if senders.is_some_and(|n| n.len() != u.queue.len()) {
        return Err(RestoreError::Unsupported {
            what: format!(
                "the image lists senders for socket:[{}] that do not match its queue",
                u.ino
            ),
        });
    }
    let mut temps = unix_senders::Temps::default();
    let mut raised = Vec::new();
    let (to, len) = prep::sockaddr_un(&u.name);
    for (i, m) in u.queue.iter().enumerate() {
        let name = senders.map(|n| &n[i][..]);
        let (sender, addressed) = unix_senders::choose(child, s, u, name, &mut temps)?;
        if !raised.contains(&sender) {
            // Room for the whole queue on the sending side; the final sizes are set later.
            let raise = sockopts::raise_name();
            prep::set_int(child, sender, libc::SOL_SOCKET, raise, 64 << 20)?;
            raised.push(sender);
        }
        let passcred = u.opts.flag(libc::SOL_SOCKET, libc::SO_PASSCRED);
        let creds = if passcred { m.creds } else { None };
        let dest = addressed.then_some(&to[..len as usize]);
        let fds = (files.in_flight.iter())
            .find(|f| f.socket == u.ino && f.message as usize == i)
            .map_or(&[][..], |f| &f.fds[..]);
        prep::send_msg(child, sender, &m.data, dest, creds, fds)?;
    }
    temps.close(child)
}

/// `shutdown` as saved: this side's send direction, and its receive direction when the
/// peer did not shut its sending (which shuts our receiving by itself).
fn shut(
    child: &Child,
    s: &Sockets<'_>,
    u: &UnixSocket,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    if let Some(spare) = s.spare.get(&u.ino) {
        return prepared.discard(child, *spare);
    }
    let peer_sent_shut = mutual(s, u).is_some_and(|p| p.shutdown & 2 != 0);
    let how = match (u.shutdown & 2 != 0, u.shutdown & 1 != 0 && !peer_sent_shut) {
        (true, true) => libc::SHUT_RDWR,
        (true, false) => libc::SHUT_WR,
        (false, true) => libc::SHUT_RD,
        (false, false) => return Ok(()),
    };
    child.remote().call(
        "shutdown",
        libc::SYS_shutdown,
        &[s.temp[&u.ino], how as u64],
    )?;
    Ok(())
}

fn options(child: &Child, fd: u64, e: &FdEntry, u: &UnixSocket) -> Result<(), RestoreError> {
    // The sender's buffer was raised to refill its peer: put a new socket's size back
    // unless `sockopts` sets the saved one.
    if u.opts.int(libc::SOL_SOCKET, libc::SO_SNDBUF).is_none() {
        let (name, snd) = sockopts::buffer_call(libc::SO_SNDBUFFORCE, (wmem_default() / 2) as i32)?;
        prep::set_int(child, fd, libc::SOL_SOCKET, name, snd)?;
    }
    sockopts::early(child, fd, &u.opts)?;
    sockopts::late(child, fd, &u.opts, true)?;
    prep::set_fl(child, fd, e.flags)
}

/// `net.core.wmem_default`: a new socket's send buffer as `getsockopt` reports it (a
/// `setsockopt` doubles what it is given, hence the halving above).
pub fn wmem_default() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992)
}
