//! The safety net for `SO_PEERCRED`: once the unix sockets of a table are built, the
//! credentials the kernel gives each (read by stasis from its duplicate, so in stasis's
//! pid and user namespaces, as the dump saved them) are compared with the saved ones,
//! and the restore fails on any difference, naming the pid, fd, socket and both
//! credentials, before the tree runs. The dump side is `dump/files/unix_peercred.rs`
//! (which refuses what it can tell the restore cannot make); the calls that set them are
//! `unix.rs`, `unix_cross.rs` (in the processes the credentials name) and
//! `unix_pair.rs`, with the ids of `unix_ids.rs`.
//!
//! Not compared: a socket connected outside the tree (`--ext-unix-sk`, its peer's come
//! from that peer), and an image without saved credentials (from before they were saved).
//! Pairs built in the fd batch (`unix_pair.rs`) are only those a `socketpair` made there
//! gives their saved credentials; the batch does not come here.

use std::os::fd::AsFd;

use crate::image::files::{FdKind, FilesImage};
use crate::image::sock::UnixPeer;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// Compares the credentials of every unix socket of `files`, at its fd in `child`.
/// Ordering requirements: after the table is filled, before the entries of files in
/// flight are closed (`unix::finish`).
pub fn check(child: &Child, files: &FilesImage) -> Result<(), RestoreError> {
    for e in &files.fds {
        let FdKind::Unix(u) = &e.kind else { continue };
        let Some(saved) = u.opts.peer_cred() else {
            continue;
        };
        if matches!(u.peer, UnixPeer::External { .. }) {
            continue;
        }
        let sock = child.steal(e.fd as u64)?;
        let got = crate::sys::socket::peer_cred(sock.as_fd()).map_err(|err| {
            RestoreError::Unsupported {
                what: format!(
                    "fd {} of pid {}: read SO_PEERCRED of socket:[{}]: {}",
                    e.fd,
                    child.pid(),
                    u.ino,
                    err.desc()
                ),
            }
        })?;
        if got != saved {
            return Err(differs(child.pid(), e.fd, u.ino, saved, got));
        }
    }
    Ok(())
}

fn differs(
    pid: i32,
    fd: i32,
    ino: u64,
    saved: (i32, u32, u32),
    got: (i32, u32, u32),
) -> RestoreError {
    let show = |c: (i32, u32, u32)| format!("pid {}, uid {}, gid {}", c.0, c.1 as i32, c.2 as i32);
    RestoreError::Unsupported {
        what: format!(
            "fd {fd} of pid {pid} is a unix socket (socket:[{ino}]) whose peer credentials \
             (SO_PEERCRED) came back as {} instead of the saved {}: {}",
            show(got),
            show(saved),
            why(saved, got)
        ),
    }
}

/// The likely reason, for the message.
fn why(saved: (i32, u32, u32), got: (i32, u32, u32)) -> &'static str {
    if saved.0 != got.0 {
        return "stasis cannot make the connection in the process that made it";
    }
    if !nix::unistd::geteuid().is_root() {
        return "stasis does not run as root, so it cannot make the connection with other ids";
    }
    if crate::restore::ns::user::born_inside() {
        return "the process is born inside the tree's user namespace, where stasis does not switch ids";
    }
    "the kernel recorded other credentials than the calls made to give them"
}
