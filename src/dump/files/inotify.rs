//! inotify: every watch (`inotify wd:` lines of fdinfo), by the path of the watched
//! inode, found from the line's file handle with `open_by_handle_at` on the mount of its
//! device; a watched file that was deleted but is held open by an fd of the process is
//! watched through that fd (`/proc/self/fd/N`); an inode on a mount of another mount
//! namespace of the tree is watched through `/proc/VPID/root` of a process of it.
//! Pending events are not saved (they are dropped: documented in
//! docs/ARCHITECTURE.md). The restore side is `restore/files/inotify.rs`.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, InotifyFd, InotifyWatch, HELD_FD_PREFIX};
use crate::proc::fdkinds::{self, FileHandle, InotifyWatchInfo};
use crate::sys::fd::open_by_handle_at;

/// `tree`: every process of the tree, whose other mount namespaces may hold a watched
/// inode.
pub fn dump(open: &OpenFd, tree: &[i32]) -> Result<FdKind, DumpError> {
    let watches = parsed(open, fdkinds::inotify_watches(&open.info))?
        .iter()
        .map(|w| watch(open, w, tree))
        .collect::<Result<_, _>>()?;
    Ok(FdKind::Inotify(InotifyFd { watches }))
}

fn watch(open: &OpenFd, w: &InotifyWatchInfo, tree: &[i32]) -> Result<InotifyWatch, DumpError> {
    let handle = FileHandle {
        ino: w.ino,
        sdev: w.sdev,
        handle_type: w.handle_type,
        handle: w.handle.clone(),
    };
    let path = watched_path(open.pid, &handle)
        .or_else(|why| held_open(open, &handle).ok_or(why))
        .or_else(|why| in_other_namespace(open.pid, &handle, tree).ok_or(why))
        .map_err(|why| {
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

/// The path of the inode behind a file handle (of an inotify watch or a fanotify mark)
/// in the mount namespace of `pid` (reached through its `/proc/PID/root` when it is not
/// stasis's), checked to be that inode.
pub fn watched_path(pid: i32, w: &FileHandle) -> Result<String, String> {
    let mnt = device_mount(pid, w.sdev)?;
    let mnt_fd = std::fs::File::open(crate::dump::mnt::reach(pid, &mnt))
        .map_err(|e| format!("open {mnt}: {e}"))?;
    let file = open_by_handle_at(mnt_fd.as_fd(), w.handle_type, &w.handle, libc::O_PATH)
        .map_err(|e| format!("open_by_handle_at: {}", e.desc()))?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        file.as_raw_fd()
    }))
    .map_err(|e| format!("readlink: {e}"))?
    .to_string_lossy()
    .into_owned();
    match std::fs::metadata(crate::dump::mnt::reach(pid, &path)) {
        Ok(m) if m.ino() == w.ino => Ok(path),
        _ => Err(format!(
            "{path} is not the watched inode any more (deleted or moved?)"
        )),
    }
}

/// For a watched inode without a path (a deleted file) that the process holds open:
/// `/proc/self/fd/N` of the first fd holding it, through which the restore adds the watch
/// once that fd is in place.
fn held_open(open: &OpenFd, w: &FileHandle) -> Option<String> {
    let (major, minor) = (w.sdev >> 20, w.sdev & 0xf_ffff);
    let fds = crate::proc::fds(open.pid).ok()?;
    fds.into_iter().find_map(|fd| {
        let m = std::fs::metadata(format!("/proc/{}/fd/{fd}", open.pid)).ok()?;
        let dev = m.dev();
        let same = m.ino() == w.ino
            && u64::from(libc::major(dev)) == major
            && u64::from(libc::minor(dev)) == minor;
        same.then(|| format!("{HELD_FD_PREFIX}{fd}"))
    })
}

/// For a watched inode on a mount of another mount namespace of the tree than the
/// process's: `/proc/VPID/root/PATH`, VPID a process of that namespace as the tree's
/// `/proc` numbers it (restored with the same number, and alive when files are).
fn in_other_namespace(pid: i32, w: &FileHandle, tree: &[i32]) -> Option<String> {
    let ns = |p: i32| {
        std::fs::metadata(format!("/proc/{p}/ns/mnt"))
            .ok()
            .map(|m| m.ino())
    };
    let own = ns(pid)?;
    let mut tried = vec![own];
    for &other in tree {
        let Some(n) = ns(other).filter(|n| !tried.contains(n)) else {
            continue;
        };
        tried.push(n);
        if let Ok(path) = watched_path(other, w) {
            let status = std::fs::read_to_string(format!("/proc/{other}/status")).ok()?;
            let status = crate::proc::status::parse_status(&status).ok()?;
            let vpid = status.ns_pid.last().copied().unwrap_or(other);
            return Some(format!("/proc/{vpid}/root{path}"));
        }
    }
    None
}

/// A mount point of device `sdev` (kernel `dev_t`: 12 bits of major above 20 bits of
/// minor) in the mount namespace of `pid`.
pub fn device_mount(pid: i32, sdev: u64) -> Result<String, String> {
    let (major, minor) = (sdev >> 20, sdev & 0xf_ffff);
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("read mountinfo: {e}"))?;
    fdkinds::mount_point(&mountinfo, major, minor)
        .ok_or_else(|| format!("no mount of device {major}:{minor}"))
}
