//! inotify instances, recreated with every watch at its old watch descriptor. The dump
//! side is `dump/files/inotify.rs`.
//!
//! Watch descriptors are handed out in increasing order, so watches are added in `wd`
//! order; a gap left by a removed watch is skipped by adding and removing the watch until
//! the kernel hands out the saved number. Each removal queues an `IN_IGNORED` event, which
//! is read away before the fd is in place; events pending at the dump are not restored.

use std::io::Read;
use std::os::fd::AsFd;

use super::Install;
use crate::image::files::{InotifyFd, InotifyWatch};
use crate::restore::RestoreError;
use crate::sys::fd::fionread;

/// Most watch descriptors skipped to reach a saved one.
const MAX_SKIP: u32 = 100_000;

pub fn restore(at: &Install, i: &InotifyFd) -> Result<(), RestoreError> {
    let flags = at.cloexec() | (at.entry.flags & libc::O_NONBLOCK);
    let fd = at.call("inotify_init1", libc::SYS_inotify_init1, &[flags as u64])?;
    let mut watches: Vec<&InotifyWatch> = i.watches.iter().collect();
    watches.sort_by_key(|w| w.wd);
    let mut skipped = 0;
    for w in watches {
        skipped += add_at(at, fd, w)?;
    }
    if skipped > 0 {
        drain(at, fd)?;
    }
    at.place(fd)
}

/// Adds `w` so that it gets its saved descriptor; returns how many were skipped.
fn add_at(at: &Install, fd: u64, w: &InotifyWatch) -> Result<u32, RestoreError> {
    let path = at.child.put_str(0, &w.path)?;
    for skipped in 0..MAX_SKIP {
        let args = [fd, path, u64::from(w.mask)];
        let wd = at.call("inotify_add_watch", libc::SYS_inotify_add_watch, &args)? as i32;
        if wd == w.wd {
            return Ok(skipped);
        }
        if wd > w.wd {
            break;
        }
        at.call(
            "inotify_rm_watch",
            libc::SYS_inotify_rm_watch,
            &[fd, wd as u64],
        )?;
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "inotify fd {} of pid {}: cannot get watch descriptor {} back for {}",
            at.entry.fd,
            at.child.pid(),
            w.wd,
            w.path
        ),
    })
}

/// Reads away the events our removals queued.
fn drain(at: &Install, fd: u64) -> Result<(), RestoreError> {
    let ours = at.child.steal(fd)?;
    let fail = |what: String| RestoreError::Unsupported {
        what: format!(
            "drain inotify fd {} of pid {}: {what}",
            at.entry.fd,
            at.child.pid()
        ),
    };
    let n = fionread(ours.as_fd()).map_err(|e| fail(e.desc().to_string()))?;
    let mut buf = vec![0u8; n];
    std::fs::File::from(ours)
        .read_exact(&mut buf)
        .map_err(|e| fail(e.to_string()))
}
