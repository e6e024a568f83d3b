//! Two connected unix sockets whose credentials (`SO_PEERCRED`) name other processes
//! than the one that builds them (`split.rs`: the first process of the tree holding
//! one), or two different credentials: made where the kernel takes the pid from, the
//! calling task's thread group, then moved into the builder at temporary fds, the rest
//! of `unix.rs` going on as for a pair made there. The dump side is
//! `dump/files/unix_peercred.rs` (`builders`).
//!
//! - Both ends with the same credentials, naming process X (a socketpair made by a
//!   child, now held by its parent): `socketpair` in X, with the saved ids.
//! - Two different credentials (a parent listens, its child connects, the parent
//!   accepts): the accepted end names the client's process Y, the client end the
//!   listener's X. X makes a temporary listener bound to the accepted end's name (a path
//!   in a scratch root, `unix_unlinked.rs`, its file unlinked there; an abstract name as
//!   it is) and `listen`s with the client end's saved ids; Y `connect`s a new socket to
//!   it with the accepted end's saved ids (to a path through the scratch directory, from
//!   its cwd moved there for the call, the temporary file writable by all); X `accept`s, the accepted socket keeping the
//!   name, and closes the temporary listener. A real listener of the tree is never
//!   touched: this runs before any socket of the builder is bound (an abstract name a
//!   socket of an earlier process holds again cannot be bound: the restore fails,
//!   naming the socket and the name). The client end's
//!   own name, if any, is bound later as for any socket.
//!
//! Each end reaches the builder by `pidfd_getfd` (`take_from`, as `Inherited` fds do)
//! and is closed where it was made. X and Y are processes whose stages have not run yet
//! (the builder itself or one after it in the restore's order): their fd tables are not
//! built yet, and they are still privileged, in stasis's user namespace. A credential
//! naming another (a process finished already, not a live process of the tree) fails
//! the restore, naming it; what the ids cannot be (a non-root stasis, a process born in
//! the tree's user namespace, `unix_ids.rs`) is caught by `unix_peercred.rs`.
//!
//! Ordering requirements: in the builder's Files stage, every process of the tree
//! existing, before the builder binds any socket (step 1 of `unix.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::prep::{self, Prepared};
use super::unix_ids;
use crate::image::sock::UnixSocket;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// The two ends made elsewhere, at the builder's temporary fds.
pub struct Built {
    /// `(socket inode, temporary fd)` of both ends.
    pub ends: [(u64, u64); 2],
    /// The end that got its name from the temporary listener (not bound again).
    pub named: Option<u64>,
}

/// Builds `u` and its peer `p` for `child` when their credentials ask for another
/// process or two calls; `None` when one `socketpair` in `child` gives them theirs.
/// `later`: the processes whose stages have not run yet; `unlinked`: the sockets whose
/// name has no file (`FilesImage::unlinked_sockets`).
pub fn build(
    child: &Child,
    later: &[&Child],
    (u, p): (&UnixSocket, &UnixSocket),
    unlinked: &[u64],
    prepared: &mut Prepared,
) -> Result<Option<Built>, RestoreError> {
    let (Some(cu), Some(cp)) = (u.opts.peer_cred(), p.opts.peer_cred()) else {
        return Ok(None);
    };
    if cu.0 == 0 || cp.0 == 0 || (cu == cp && cu.0 == child.pid()) {
        return Ok(None);
    }
    let (made, named) = if cu == cp {
        (pair(child, later, u, p)?, None)
    } else {
        let (accepted, client) = roles(u, p, unlinked)?;
        let (a, c) = connection(child, later, accepted, client)?;
        let named = Some(accepted.ino);
        ([(accepted.ino, a), (client.ino, c)], named)
    };
    let mut ends = [(0, 0); 2];
    for (i, (ino, at)) in made.into_iter().enumerate() {
        ends[i] = (ino, moved(child, at, prepared)?);
    }
    Ok(Some(Built { ends, named }))
}

/// An fd of a process: where it is and its number there.
type At<'a> = (&'a Child, u64);

/// `u` and its peer `p` by one `socketpair` in the process their credentials name.
fn pair<'a>(
    child: &'a Child,
    later: &[&'a Child],
    u: &UnixSocket,
    p: &UnixSocket,
) -> Result<[(u64, At<'a>); 2], RestoreError> {
    let maker = process(child, later, u)?;
    let ids = unix_ids::of_socket(None, u);
    let (fa, fb) = crate::restore::ns::net_sockets::around(maker, u.ino, || {
        unix_ids::around(maker, ids, || {
            super::unix::socketpair_in(maker, u.sock_type)
        })
    })?;
    Ok([(u.ino, (maker, fa)), (p.ino, (maker, fb))])
}

/// Which end is the accepted one (it has its listener's name, without a file of its
/// own) and which the client.
fn roles<'a>(
    u: &'a UnixSocket,
    p: &'a UnixSocket,
    unlinked: &[u64],
) -> Result<(&'a UnixSocket, &'a UnixSocket), RestoreError> {
    if u.sock_type == libc::SOCK_DGRAM {
        return Err(mixed(
            u,
            p,
            "datagram sockets are connected by socketpair only",
        ));
    }
    match (u.name.is_empty(), p.name.is_empty()) {
        (false, true) => Ok((u, p)),
        (true, false) => Ok((p, u)),
        // Both named (a client bound before it connected): the one without a file.
        (false, false) if u.name[0] == 0 || unlinked.contains(&u.ino) => Ok((u, p)),
        (false, false) => Ok((p, u)),
        (true, true) => Err(mixed(u, p, "neither end has a name to connect by")),
    }
}

fn mixed(u: &UnixSocket, p: &UnixSocket, why: &str) -> RestoreError {
    RestoreError::Unsupported {
        what: format!(
            "unix sockets socket:[{}] and socket:[{}] are connected with different peer credentials (SO_PEERCRED), and stasis cannot make them: {why}",
            u.ino, p.ino
        ),
    }
}

/// The accepted end and the client end, made by `listen` + `accept` in the process the
/// client's credentials name and `connect` in the one the accepted end's name.
fn connection<'a>(
    child: &'a Child,
    later: &[&'a Child],
    accepted: &UnixSocket,
    client: &UnixSocket,
) -> Result<(At<'a>, At<'a>), RestoreError> {
    let x = process(child, later, client)?;
    let y = process(child, later, accepted)?;
    use crate::restore::ns::net_sockets::around;
    let listener = around(x, accepted.ino, || new_socket(x, accepted.sock_type))?;
    let conn = around(y, client.ino, || new_socket(y, client.sock_type))?;
    let name = &accepted.name[..];
    let listen_ids = unix_ids::of_socket(None, client);
    let connect_ids = unix_ids::of_socket(None, accepted);
    let made = |via: Option<&Path>| -> Result<u64, RestoreError> {
        let (sa, len) = prep::sockaddr_un(name);
        let bound = prep::address_call(x, "bind", libc::SYS_bind, listener, &sa, len);
        bound.map_err(|e| taken(accepted, e))?;
        unix_ids::around(x, listen_ids, || {
            Ok(x.remote()
                .call("listen", libc::SYS_listen, &[listener, 1])?)
        })?;
        connect(y, (conn, connect_ids), name, via)?;
        let args = [listener, 0, 0, libc::SOCK_CLOEXEC as u64];
        let got = x.remote().call("accept4", libc::SYS_accept4, &args)?;
        x.remote().call("close", libc::SYS_close, &[listener])?;
        Ok(got)
    };
    let got = if name.first().is_some_and(|&c| c != 0) {
        let mut got = None;
        super::unix_unlinked::in_scratch_root(x, &[name], |scratch| {
            got = Some(made(Some(scratch))?);
            Ok(())
        })?;
        got.expect("the scratch root ran its calls")
    } else {
        made(None)?
    };
    Ok(((x, got), (y, conn)))
}

/// The temporary listener could not take the accepted end's name (an abstract name a
/// socket of a process restored earlier is bound to again).
fn taken(accepted: &UnixSocket, e: RestoreError) -> RestoreError {
    RestoreError::Unsupported {
        what: format!(
            "unix socket socket:[{}] is the accepted end of a connection made across processes, and the temporary listener that gives it its name {:?} cannot bind it: {e}",
            accepted.ino,
            String::from_utf8_lossy(&accepted.name)
        ),
    }
}

/// `connect(fd)` in `y`, with effective ids `ids`, to `name`: an abstract one as it is;
/// a path through the scratch directory `via` (stasis's view), `y`'s cwd moved to the
/// file's directory for the call.
fn connect(
    y: &Child,
    (fd, ids): (u64, Option<(u32, u32)>),
    name: &[u8],
    via: Option<&Path>,
) -> Result<(), RestoreError> {
    let call = |to: &[u8]| {
        let (sa, len) = prep::sockaddr_un(to);
        unix_ids::around(y, ids, || {
            prep::address_call(y, "connect", libc::SYS_connect, fd, &sa, len)
        })
    };
    let Some(scratch) = via else {
        return call(name);
    };
    let path = Path::new(OsStr::from_bytes(name));
    let rel = path.strip_prefix("/").unwrap_or(path);
    let dir = scratch.join(rel.parent().unwrap_or(Path::new("")));
    let base = rel.file_name().map_or(&[][..], OsStr::as_bytes);
    // Writable by the ids `y` connects with (the file is unlinked once it is done).
    let file = scratch.join(rel);
    let writable = std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(&file, writable).map_err(|source| RestoreError::Write {
        path: file.display().to_string(),
        source,
    })?;
    let opened = std::fs::File::open(&dir).map_err(|source| RestoreError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let what = format!("the directory of a temporary listener, {}", dir.display());
    let there = crate::restore::ns::handover::give_own(y, &opened, &what)?;
    let remote = y.remote();
    let flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    let dot = y.put_str(prep::ARG_OFF, ".")?;
    let back = remote.call(
        "openat",
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, dot, flags],
    )?;
    remote.call("fchdir", libc::SYS_fchdir, &[there])?;
    let done = call(base);
    remote.call("fchdir", libc::SYS_fchdir, &[back])?;
    remote.call("close", libc::SYS_close, &[back])?;
    remote.call("close", libc::SYS_close, &[there])?;
    done
}

fn new_socket(c: &Child, ty: i32) -> Result<u64, RestoreError> {
    let ty = (ty | libc::SOCK_CLOEXEC) as u64;
    let args = [libc::AF_UNIX as u64, ty, 0];
    Ok(c.remote()
        .call("socket(AF_UNIX)", libc::SYS_socket, &args)?)
}

/// The process `u`'s credentials name: the builder or a later one.
fn process<'a>(
    child: &'a Child,
    later: &[&'a Child],
    u: &UnixSocket,
) -> Result<&'a Child, RestoreError> {
    let pid = u.opts.peer_cred().map_or(0, |c| c.0);
    if pid == child.pid() {
        return Ok(child);
    }
    let found = later.iter().find(|c| c.pid() == pid).copied();
    found.ok_or_else(|| RestoreError::Unsupported {
        what: format!(
            "unix socket socket:[{}] has peer credentials (SO_PEERCRED) naming pid {pid}, which stasis cannot make it in: it is not a live process of the tree restored after pid {} (whose files hold the socket)",
            u.ino,
            child.pid()
        ),
    })
}

/// Fd `fd` of `maker` at a temporary fd of `child` (closed in `maker`).
fn moved(child: &Child, (maker, fd): At<'_>, prepared: &mut Prepared) -> Result<u64, RestoreError> {
    if maker.pid() == child.pid() {
        return prepared.park(child, fd);
    }
    let got = super::take_from(child, maker.pid(), fd as i32)?;
    maker.remote().call("close", libc::SYS_close, &[fd])?;
    prepared.park(child, got)
}
