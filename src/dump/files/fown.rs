//! The owner of an open file description — the thread, process or group that gets its
//! I/O signals (`F_SETOWN`, `F_SETOWN_EX`; set also by taking a lease), with the real
//! and effective uid of whoever set it — and the signal it sends (`F_SETSIG`). Any kind
//! of file has them; fdinfo shows neither, so they are read with `fcntl` on stasis's own
//! copy of the description (`pidfd_getfd`). The restore side is `restore/files/fown.rs`.

use std::os::fd::BorrowedFd;

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::FdOwner;
use crate::sys::fd::{self, owner, Owner};

/// The owner and signal of the open file description of `open`, read on `copy`
/// (stasis's duplicate of it), when either is set. `pids`: the processes of the image;
/// an owner outside them is refused.
pub fn read(
    open: &OpenFd,
    copy: BorrowedFd<'_>,
    pids: &[i32],
) -> Result<Option<FdOwner>, DumpError> {
    let o = owner(copy)
        .map_err(|e| open.error(&format!("cannot be asked for its owner (F_GETOWN_EX): {e}")))?;
    if o.pid == 0 && o.signal == 0 {
        return Ok(None);
    }
    check_owner(open, &o, pids)?;
    Ok(Some(FdOwner {
        fd: open.fd,
        kind: o.kind,
        pid: o.pid,
        uid: o.uid,
        euid: o.euid,
        signal: o.signal,
    }))
}

/// The owner must be restored with the image: a process of it, a thread of one (its
/// tid), or a group led by one.
fn check_owner(open: &OpenFd, o: &Owner, pids: &[i32]) -> Result<(), DumpError> {
    let known = match o.kind {
        fd::F_OWNER_PID | fd::F_OWNER_PGRP => pids.contains(&o.pid),
        _ => pids.contains(&tgid_of(o.pid)),
    };
    if o.pid == 0 || known {
        return Ok(());
    }
    let whom = match o.kind {
        fd::F_OWNER_PGRP => "process group",
        fd::F_OWNER_PID => "pid",
        _ => "thread",
    };
    Err(open.error(&format!(
        "sends its I/O signals (F_SETOWN) to {whom} {}, which is outside the dumped processes",
        o.pid
    )))
}

/// The process a thread belongs to (itself if it cannot be read).
fn tgid_of(tid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}
