//! Owners and signals of open file descriptions (`F_SETSIG`, `F_SETOWN_EX`), set again
//! by the process that created each description. The kernel records the real and
//! effective uid of the caller with the owner (they decide whether the owner may be
//! signalled), so the leader takes the saved ones for the call (`setresuid`, its saved
//! uid kept so it can come back) and returns to its own. The dump side is
//! `dump/files/fown.rs`. `O_ASYNC` is set once more at each fd's own number (the signal
//! names the fd in `si_fd`).
//!
//! Ordering requirements: after Threads (an owner may be a thread of the process) and
//! after every process exists (or a group led by a later one); before Creds (the uid
//! dance needs the restorer's privileges); after the leases are taken, which make the
//! taker the owner (and breaking one signals the owner: there must be none then).

use crate::image::files::{FdEntry, FdKind, FdOwner, FilesImage};
use crate::restore::staged::Staged;
use crate::restore::RestoreError;
use crate::sys::fd::{F_SETOWN_EX, F_SETSIG};

/// Room in the leader's batch one owner needs at most (calls and the struct).
const ROOM: u64 = 512;

pub fn restore(s: &mut Staged, files: &FilesImage) -> Result<(), RestoreError> {
    let (ruid, euid) = own_uids();
    let pid = s.child().pid();
    for o in &files.owners {
        if s.room() < ROOM {
            s.flush()?;
        }
        add(s, o, (ruid, euid), pid)?;
    }
    for e in files.fds.iter().filter(|e| is_async(e)) {
        if s.room() < ROOM {
            s.flush()?;
        }
        renumber_async(s, e);
    }
    Ok(())
}

/// An fd that creates its open file description (not a copy of another entry's) with
/// `O_ASYNC` set.
fn is_async(e: &FdEntry) -> bool {
    e.flags & libc::O_ASYNC != 0 && !matches!(e.kind, FdKind::Dup { .. } | FdKind::Inherited { .. })
}

/// The kernel records the fd number with which `O_ASYNC` was set and puts it in the
/// signal's `si_fd`; the description got it at a temporary number: set it again at the
/// entry's own (the flag must change for the kernel to look).
fn renumber_async(s: &mut Staged, e: &FdEntry) {
    let b = s.batch();
    let fd = e.fd as u64;
    let without = (e.flags & !libc::O_ASYNC) as u64;
    b.call(
        "fcntl(F_SETFL)",
        libc::SYS_fcntl,
        &[fd, libc::F_SETFL as u64, without],
    );
    b.call(
        "fcntl(F_SETFL)",
        libc::SYS_fcntl,
        &[fd, libc::F_SETFL as u64, e.flags as u64],
    );
}

/// The calls restoring owner `o`; `own`: the leader's real and effective uid now (those
/// of the restorer, which created it). The owner is named as `pid` sees it.
fn add(s: &mut Staged, o: &FdOwner, own: (u32, u32), pid: i32) -> Result<(), RestoreError> {
    let seen = match o.pid {
        0 => 0,
        owner => crate::restore::ns::pid::visible(pid, owner)? as i32,
    };
    let b = s.batch();
    let fd = o.fd as u64;
    if o.signal != 0 {
        b.call(
            "fcntl(F_SETSIG)",
            libc::SYS_fcntl,
            &[fd, F_SETSIG as u64, o.signal as u64],
        );
        b.about(format!("fd {} of pid {pid}", o.fd));
    }
    if o.pid == 0 {
        return Ok(());
    }
    let switch = (o.uid, o.euid) != own;
    let keep = u64::from(u32::MAX); // -1: the saved uid stays
                                    // In the tree's user namespace, as it names them (`restore/ns/user.rs`).
    let (to, back) = match switch {
        true => (inside(o, (o.uid, o.euid), own)?, inside(o, own, own)?),
        false => (own, own),
    };
    if switch {
        b.call(
            "setresuid",
            libc::SYS_setresuid,
            &[u64::from(to.0), u64::from(to.1), keep],
        );
        b.about(format!(
            "uids {}/{} of the owner of fd {} of pid {pid}",
            o.uid, o.euid, o.fd
        ));
    }
    let mut ex = [0u8; 8];
    ex[..4].copy_from_slice(&o.kind.to_ne_bytes());
    ex[4..].copy_from_slice(&seen.to_ne_bytes());
    let addr = b.put(&ex);
    b.call(
        "fcntl(F_SETOWN_EX)",
        libc::SYS_fcntl,
        &[fd, F_SETOWN_EX as u64, addr],
    );
    b.about(format!(
        "owner {} of fd {} of pid {pid} (does it exist?)",
        o.pid, o.fd
    ));
    if switch {
        b.call(
            "setresuid",
            libc::SYS_setresuid,
            &[u64::from(back.0), u64::from(back.1), keep],
        );
    }
    Ok(())
}

/// `uids` translated into the tree's user namespace (the same without one).
fn inside(o: &FdOwner, uids: (u32, u32), own: (u32, u32)) -> Result<(u32, u32), RestoreError> {
    use crate::restore::ns::user::uid;
    let one = |id: u32| {
        uid(id, u32::MAX).ok_or_else(|| RestoreError::Unsupported {
            what: format!(
                "the owner of fd {} has uid {id} (real {}, effective {}; the restorer's {}/{}), \
                 which the tree's user namespace does not map: stasis cannot set it there",
                o.fd, o.uid, o.euid, own.0, own.1
            ),
        })
    };
    Ok((one(uids.0)?, one(uids.1)?))
}

/// The restorer's real and effective uid, which every process has until Creds.
fn own_uids() -> (u32, u32) {
    let r = nix::unistd::getresuid().ok();
    r.map_or((0, 0), |r| (r.real.as_raw(), r.effective.as_raw()))
}
