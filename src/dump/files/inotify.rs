//! inotify: every watch (`inotify wd:` lines of fdinfo), by the path of the watched
//! inode, found from the line's file handle with `open_by_handle_at` on the mount of its
//! device. Pending events are not saved (they are dropped: documented in
//! docs/ARCHITECTURE.md). The restore side is `restore/files/inotify.rs`.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, InotifyFd, InotifyWatch};
use crate::proc::fdkinds::{self, InotifyWatchInfo};
use crate::sys::fd::open_by_handle_at;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let watches = parsed(open, fdkinds::inotify_watches(&open.info))?
        .iter()
        .map(|w| watch(open, w))
        .collect::<Result<_, _>>()?;
    Ok(FdKind::Inotify(InotifyFd { watches }))
}

fn watch(open: &OpenFd, w: &InotifyWatchInfo) -> Result<InotifyWatch, DumpError> {
    let path = watched_path(open.pid, w).map_err(|why| {
        open.error(&format!(
            "is an inotify instance whose watch {} (inode {}) cannot be found by path: {why}",
            w.wd, w.ino
        ))
    })?;
    Ok(InotifyWatch {
        wd: w.wd,
        mask: w.mask,
        path,
    })
}

/// The path of the watched inode, checked to be that inode.
fn watched_path(pid: i32, w: &InotifyWatchInfo) -> Result<String, String> {
    // The kernel's dev_t: 12 bits of major above 20 bits of minor.
    let (major, minor) = (w.sdev >> 20, w.sdev & 0xf_ffff);
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("read mountinfo: {e}"))?;
    let mnt = fdkinds::mount_point(&mountinfo, major, minor)
        .ok_or_else(|| format!("no mount of device {major}:{minor}"))?;
    let mnt_fd = std::fs::File::open(&mnt).map_err(|e| format!("open {mnt}: {e}"))?;
    let file = open_by_handle_at(mnt_fd.as_fd(), w.handle_type, &w.handle, libc::O_PATH)
        .map_err(|e| format!("open_by_handle_at: {}", e.desc()))?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        file.as_raw_fd()
    }))
    .map_err(|e| format!("readlink: {e}"))?
    .to_string_lossy()
    .into_owned();
    match std::fs::metadata(&path) {
        Ok(m) if m.ino() == w.ino => Ok(path),
        _ => Err(format!(
            "{path} is not the watched inode any more (deleted or moved?)"
        )),
    }
}
