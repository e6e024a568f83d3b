//! Sockets made in a network namespace other than that of the process making them
//! (`netns-sockets.img`, dumped by `dump/ns/net_join.rs`): a socket belongs for good to
//! the namespace of the task that called `socket`/`socketpair` (its names, ports and
//! lookups of peers are that namespace's), so the process making one of these switches
//! around that call: `setns` into the socket's namespace (an fd of it handed over from
//! stasis, opened through the namespace's maker), the call, `setns` back into its own
//! (an fd of it handed over the same way). Everything after the call (bind, listen,
//! connect, queued data) goes through the socket and is done in its namespace whatever
//! the process's. A socket listed whose namespace is its maker's already is made as
//! usual.
//!
//! Ordering requirements: every process of the tree exists and every namespace of the
//! tree is built ([`set`] before the Files stages), and the child is still privileged
//! (before its user namespace is entered): `setns` needs `CAP_SYS_ADMIN`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::super::RestoreError;
use crate::restore::child::Child;

/// Socket inode at dump → the pid (as stasis sees it) of a process of its namespace.
/// Set once every process exists, before the Files stages.
static PLACES: std::sync::Mutex<Option<HashMap<u64, i32>>> = std::sync::Mutex::new(None);

fn places() -> std::sync::MutexGuard<'static, Option<HashMap<u64, i32>>> {
    PLACES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records where each listed socket is made (pids as stasis sees them).
pub fn set(sockets: HashMap<u64, i32>) {
    *places() = Some(sockets);
}

/// Forgets them (the restore is over).
pub fn clear() {
    *places() = None;
}

/// Whether socket `ino` is listed (made through [`around`], not in a batch).
pub fn listed(ino: u64) -> bool {
    places().as_ref().is_some_and(|p| p.contains_key(&ino))
}

fn fail(pid: i32, ino: u64, what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("make socket:[{ino}] of pid {pid} in its network namespace: {what}"),
    }
}

/// Runs `make`, the calls of `child` that create socket `ino`, with the child in the
/// socket's network namespace.
pub fn around<T>(
    child: &Child,
    ino: u64,
    make: impl FnOnce() -> Result<T, RestoreError>,
) -> Result<T, RestoreError> {
    let of = places().as_ref().and_then(|p| p.get(&ino).copied());
    let Some(of) = of else {
        return make();
    };
    let pid = child.pid();
    let open = |p: i32| {
        let path = format!("/proc/{p}/ns/net");
        std::fs::File::open(&path).map_err(|e| fail(pid, ino, format!("{path}: {e}")))
    };
    let (theirs, home) = (open(of)?, open(pid)?);
    let same = |a: &std::fs::File, b: &std::fs::File| matches!((a.metadata(), b.metadata()), (Ok(x), Ok(y)) if x.ino() == y.ino());
    if same(&theirs, &home) {
        return make();
    }
    let handover = super::handover::give_own;
    let there = handover(child, &theirs, "the network namespace of a socket")?;
    let back = handover(child, &home, "its own network namespace")?;
    let made = match enter(child, there) {
        Ok(()) => make(),
        Err(e) => Err(fail(pid, ino, e.to_string())),
    };
    let returned = enter(child, back);
    let remote = child.remote();
    remote.call("close", libc::SYS_close, &[there])?;
    remote.call("close", libc::SYS_close, &[back])?;
    let made = made?;
    returned.map_err(|e| fail(pid, ino, format!("return to its own: {e}")))?;
    Ok(made)
}

/// `setns(fd, CLONE_NEWNET)` in `child`.
fn enter(child: &Child, fd: u64) -> Result<(), RestoreError> {
    let r = (child.remote()).raw(libc::SYS_setns, &[fd, libc::CLONE_NEWNET as u64])?;
    if r < 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "setns(CLONE_NEWNET): {}",
                nix::errno::Errno::from_raw(-r as i32).desc()
            ),
        });
    }
    Ok(())
}
