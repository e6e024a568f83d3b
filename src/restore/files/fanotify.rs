//! fanotify groups, recreated with `fanotify_init` (saved flags, `FAN_CLOEXEC` and
//! `FAN_NONBLOCK` from the entry) and every mark added again with `fanotify_mark` by
//! path: the mask first, then the ignored mask. Events pending at the dump are not
//! restored. The dump side is `dump/files/fanotify.rs`.

use super::Install;
use crate::image::files::{FanotifyFd, FanotifyMark, FanotifyTarget};
use crate::restore::RestoreError;

const FAN_CLOEXEC: u32 = 0x1;
const FAN_NONBLOCK: u32 = 0x2;
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_EVICTABLE: u32 = 0x200;
const FAN_MARK_IGNORE: u32 = 0x400;
const AT_FDCWD: i32 = -100;

pub fn restore(at: &Install, f: &FanotifyFd) -> Result<(), RestoreError> {
    let mut flags = f.flags;
    if at.entry.cloexec {
        flags |= FAN_CLOEXEC;
    }
    if at.entry.flags & libc::O_NONBLOCK != 0 {
        flags |= FAN_NONBLOCK;
    }
    let args = [u64::from(flags), u64::from(f.event_flags)];
    let fd = at.call("fanotify_init", libc::SYS_fanotify_init, &args)?;
    for m in &f.marks {
        mark(at, fd, m)?;
    }
    at.place(fd)
}

/// `fanotify_mark(FAN_MARK_ADD)` of the mask, then of the ignored mask (with the old
/// `FAN_MARK_IGNORED_MASK` or the newer `FAN_MARK_IGNORE`, as the mark was made).
fn mark(at: &Install, fd: u64, m: &FanotifyMark) -> Result<(), RestoreError> {
    let (kind, path) = match &m.target {
        FanotifyTarget::Inode { path } => (0, path),
        FanotifyTarget::Mount { path } => (FAN_MARK_MOUNT, path),
        FanotifyTarget::Filesystem { path } => (FAN_MARK_FILESYSTEM, path),
    };
    let path = at.child.put_str(0, path)?;
    let add = |flags: u32, mask: u32| {
        let args = [fd, u64::from(flags), u64::from(mask), AT_FDCWD as u64, path];
        at.call("fanotify_mark", libc::SYS_fanotify_mark, &args)
    };
    let base = FAN_MARK_ADD | kind | (m.flags & FAN_MARK_EVICTABLE);
    if m.mask != 0 {
        add(base, m.mask)?;
    }
    if m.ignored_mask != 0 {
        let ignore = if m.flags & FAN_MARK_IGNORE != 0 {
            FAN_MARK_IGNORE
        } else {
            FAN_MARK_IGNORED_MASK
        };
        add(
            base | ignore | (m.flags & FAN_MARK_IGNORED_SURV_MODIFY),
            m.ignored_mask,
        )?;
    }
    Ok(())
}
