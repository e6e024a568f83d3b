//! Regular files and directories, reopened by path with their status flags and offset;
//! `O_PATH` fds; ghost files, recreated from their saved contents beside their old path,
//! opened by the child and unlinked again; link remaps (`--link-remap`), opened through
//! the link made at dump time, which is removed once the whole restore succeeded. The dump
//! side is `dump/files/path.rs`; `restore/verify.rs` has checked beforehand that each path
//! (and each link) still names the same file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{seek, Ghosts, Install};
use crate::image::files::{FdKind, FilesImage, GhostFd, OPathFd, PathFd, RemapFd};
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

pub fn restore(at: &Install, p: &PathFd) -> Result<(), RestoreError> {
    let (path, flags, fd) = (&p.file.path, at.reopen_flags(), at.entry.fd);
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, fd, path, flags)?;
    at.place(there.map_or_else(|| open_in(at.child, path, flags), Ok)?)?;
    seek(at, p.pos)
}

pub fn restore_opath(at: &Install, p: &OPathFd) -> Result<(), RestoreError> {
    let (path, flags, fd) = (&p.path, at.reopen_flags(), at.entry.fd);
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, fd, path, flags)?;
    at.place(there.map_or_else(|| open_in(at.child, path, flags), Ok)?)
}

/// Ordering requirements: the file exists only between its creation here and the unlink
/// after the child opened it (the guard unlinks it whatever happens).
pub fn restore_ghost(at: &Install, g: &GhostFd) -> Result<(), RestoreError> {
    let path = ghost_path(at, &g.path);
    let ghost = Unlink(path.clone());
    create_ghost(&path, g)?;
    let name = path.to_string_lossy();
    at.place(open_in(at.child, &name, at.reopen_flags())?)?;
    drop(ghost);
    seek(at, g.pos)
}

/// Opens the file through its link. Under its old name when that is free: a second hard
/// link there, opened by the child and unlinked at once, so `/proc/PID/fd` shows the old
/// name with " (deleted)" as before the dump. The link itself stays until
/// [`remove_remap_links`]: a restore that fails leaves the image restorable.
pub fn restore_remap(at: &Install, r: &RemapFd) -> Result<(), RestoreError> {
    let (old, link) = (
        reach_as_opened(at, &r.path),
        reach_as_opened(at, &r.link.path),
    );
    let named = std::fs::symlink_metadata(&old).is_err() && std::fs::hard_link(&link, &old).is_ok();
    let _unlink = named.then_some(Unlink(old));
    at.ghosts.remap_link(link);
    let name = if named { &r.path } else { &r.link.path };
    let (flags, fd) = (at.reopen_flags(), at.entry.fd);
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, fd, name, flags)?;
    at.place(there.map_or_else(|| open_in(at.child, name, flags), Ok)?)?;
    seek(at, r.pos)
}

/// Where stasis reaches `path` of the mount namespace the fd being restored was opened
/// in: another of the tree's than its process's, its process's when that is one made
/// inside the tree (through `/proc/PID/root`), else the tree's root's.
fn reach_as_opened(at: &Install, path: &str) -> PathBuf {
    let (pid, fd) = (at.child.pid(), at.entry.fd);
    let ns_pid = crate::restore::mnt::nested::elsewhere_pid(pid, fd)
        .or_else(|| at.ghosts.in_nested(pid).then_some(pid));
    match ns_pid {
        Some(ns_pid) => format!("/proc/{ns_pid}/root{path}").into(),
        None => at.ghosts.reach(Path::new(path)),
    }
}

/// Removes the links of `files` made for `--link-remap`, once the restore succeeded (a
/// link several fds share is removed once).
pub fn remove_remap_links(files: &FilesImage, ghosts: &Ghosts) -> Result<(), RestoreError> {
    for link in ghosts.remap_links() {
        match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RestoreError::Write {
                    path: link.display().to_string(),
                    source: e,
                })
            }
            _ => {}
        }
    }
    for e in &files.fds {
        let FdKind::Remap(r) = &e.kind else {
            continue;
        };
        match std::fs::remove_file(ghosts.reach(Path::new(&r.link.path))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RestoreError::Write {
                    path: r.link.path.clone(),
                    source: e,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The old path if it is free, else a hidden sibling (the name then shows in
/// `/proc/PID/fd` with " (deleted)" like the original).
fn ghost_path(at: &Install, old: &str) -> PathBuf {
    let old = Path::new(old);
    if std::fs::symlink_metadata(old).is_err() {
        return old.to_path_buf();
    }
    let name = old.file_name().unwrap_or_default().to_string_lossy();
    let hidden = format!(".stasis-ghost-{}-{}-{name}", at.child.pid(), at.entry.fd);
    old.with_file_name(hidden)
}

fn create_ghost(path: &Path, g: &GhostFd) -> Result<(), RestoreError> {
    let fail = |source| RestoreError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(&g.contents).map_err(fail)?;
    std::os::unix::fs::fchown(&file, Some(g.uid), Some(g.gid)).map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(g.mode))
        .map_err(fail)
}

/// Removes a ghost file when dropped.
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
