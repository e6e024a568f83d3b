//! File locks, taken again by the restored process through the fds that held them:
//! `flock`, POSIX (owner: the process) and OFD (owner: the open file description) locks,
//! and leases, never waiting — a lock someone else took meanwhile fails the restore. A
//! lease being broken is taken with its type from before the break, then broken again by
//! an open of the file in the conflicting mode that does not wait (`O_NONBLOCK`, which
//! fails with `EWOULDBLOCK` and leaves the break under way; the break timer starts
//! anew). Taking a lease makes the taker the description's owner: the owner is cleared
//! before the break (a break signals the owner) and set as saved later (`fown.rs`). The
//! dump side is `dump/files/locks.rs`.
//!
//! Ordering requirements: after every fd is installed (a POSIX lock belongs to the
//! process and is dropped by closing any fd of the file).

use crate::image::files::{FileLock, LockKind};
use crate::restore::child::Child;
use crate::restore::RestoreError;

pub fn restore(child: &Child, locks: &[FileLock]) -> Result<(), RestoreError> {
    for l in locks {
        take(child, l).map_err(|e| RestoreError::Unsupported {
            what: format!(
                "{:?} lock on fd {} of pid {} (is the file locked by another process now?): {e}",
                l.kind,
                l.fd,
                child.pid()
            ),
        })?;
    }
    Ok(())
}

fn take(child: &Child, l: &FileLock) -> Result<u64, RestoreError> {
    let remote = child.remote();
    let fd = l.fd as u64;
    if let LockKind::Lease | LockKind::LeaseBreaking { .. } = l.kind {
        return lease(child, l);
    }
    if l.kind == LockKind::Flock {
        let op = if l.write {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        } | libc::LOCK_NB;
        return Ok(remote.call("flock", libc::SYS_flock, &[fd, op as u64])?);
    }
    let cmd = match l.kind {
        LockKind::Ofd => libc::F_OFD_SETLK,
        _ => libc::F_SETLK,
    };
    let addr = child.put(0, &flock_struct(l))?;
    Ok(remote.call("fcntl(F_SETLK)", libc::SYS_fcntl, &[fd, cmd as u64, addr])?)
}

/// `struct flock` on x86_64: i16 type, i16 whence, 4 pad, i64 start, i64 len, i32 pid,
/// 4 pad.
fn flock_struct(l: &FileLock) -> [u8; 32] {
    let kind = if l.write {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    } as i16;
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&kind.to_ne_bytes());
    b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
    b[8..16].copy_from_slice(&l.start.to_ne_bytes());
    b[16..24].copy_from_slice(&l.len.to_ne_bytes());
    b
}

/// `F_SETLEASE` as saved, the owner cleared, and for a lease being broken the break.
fn lease(child: &Child, l: &FileLock) -> Result<u64, RestoreError> {
    let remote = child.remote();
    let fd = l.fd as u64;
    let kind = if l.write {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    };
    remote.call(
        "fcntl(F_SETLEASE)",
        libc::SYS_fcntl,
        &[fd, libc::F_SETLEASE as u64, kind as u64],
    )?;
    remote.call(
        "fcntl(F_SETOWN)",
        libc::SYS_fcntl,
        &[fd, libc::F_SETOWN as u64, 0],
    )?;
    let LockKind::LeaseBreaking { unlock } = l.kind else {
        return Ok(0);
    };
    // Any open conflicts with a write lease; only a writer with a read lease.
    let mode = if unlock {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    let flags = (mode | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    let path = child.put_str(0, &format!("/proc/self/fd/{fd}"))?;
    let at = libc::AT_FDCWD as u64;
    let r = remote.raw(libc::SYS_openat, &[at, path, flags])?;
    if r >= 0 {
        remote.call("close", libc::SYS_close, &[r as u64])?;
    }
    if r != -(libc::EWOULDBLOCK as i64) {
        return Err(RestoreError::Unsupported {
            what: format!("breaking the lease again: open returned {r}, not EWOULDBLOCK"),
        });
    }
    Ok(0)
}
