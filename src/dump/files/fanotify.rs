//! fanotify groups: the `fanotify_init` flags and `event_f_flags`, and every mark
//! (`fanotify` lines of fdinfo): inode marks by the path of the inode (from the line's
//! file handle, as inotify watches), mount marks by the mount point of their mount id,
//! filesystem marks by a mount point of their device; each with its mark flags, mask and
//! ignored mask. Pending events are not saved (they are dropped, as inotify's: documented
//! in docs/ARCHITECTURE.md). The restore side is `restore/files/fanotify.rs`.
//!
//! Refused, naming the fd and the pid: a permission-class group (`FAN_CLASS_CONTENT`,
//! `FAN_CLASS_PRE_CONTENT`) with events queued — a process is waiting for the answer,
//! which the rebuilt group could not give — and a mark stasis cannot find by path.

use std::os::fd::AsFd;

use super::inotify::{device_mount, watched_path};
use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FanotifyFd, FanotifyMark, FanotifyTarget, FdKind};
use crate::proc::fdkinds::{self, FanotifyMarkInfo, MarkedObject};
use crate::sys::fd::fionread;

/// `FAN_CLOEXEC | FAN_NONBLOCK`: per-fd flags, restored from the entry.
const FD_FLAGS: u32 = 0x3;
/// `FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT` (the class bits of the init flags).
const CLASS_MASK: u32 = 0xc;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let info = parsed(open, fdkinds::fanotify(&open.info))?;
    if info.flags & CLASS_MASK != 0 {
        check_no_pending(open)?;
    }
    let marks = info
        .marks
        .iter()
        .map(|m| mark(open, m))
        .collect::<Result<_, _>>()?;
    Ok(FdKind::Fanotify(FanotifyFd {
        flags: info.flags & !FD_FLAGS,
        event_flags: info.event_flags,
        marks,
    }))
}

/// A permission group's queued events may be permission requests a process waits on.
fn check_no_pending(open: &OpenFd) -> Result<(), DumpError> {
    let fail = |e: nix::errno::Errno| open.error(&format!("(fanotify): FIONREAD: {}", e.desc()));
    let dup = open.duplicate().map_err(fail)?;
    match fionread(dup.as_fd()).map_err(fail)? {
        0 => Ok(()),
        n => Err(open.error(&format!(
            "is a fanotify group of a permission class with {n} bytes of events queued (permission requests a process may be waiting on), which stasis cannot rebuild"
        ))),
    }
}

fn mark(open: &OpenFd, m: &FanotifyMarkInfo) -> Result<FanotifyMark, DumpError> {
    let pid = open.pid;
    let target = match &m.on {
        MarkedObject::Inode(h) => watched_path(pid, h).map(|path| FanotifyTarget::Inode { path }),
        MarkedObject::Mount { mnt_id } => {
            mount_by_id(pid, *mnt_id).map(|path| FanotifyTarget::Mount { path })
        }
        MarkedObject::Filesystem { sdev } => {
            device_mount(pid, *sdev).map(|path| FanotifyTarget::Filesystem { path })
        }
    }
    .map_err(|why| {
        open.error(&format!(
            "is a fanotify group with a mark ({:?}) stasis cannot find by path: {why}",
            m.on
        ))
    })?;
    Ok(FanotifyMark {
        target,
        flags: m.flags,
        mask: m.mask,
        ignored_mask: m.ignored_mask,
    })
}

fn mount_by_id(pid: i32, id: u64) -> Result<String, String> {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("read mountinfo: {e}"))?;
    fdkinds::mount_point_by_id(&mountinfo, id).ok_or_else(|| format!("no mount with id {id}"))
}
