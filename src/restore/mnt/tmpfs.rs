//! Filling a new tmpfs from `mnt-tmpfs-<id>.img` before it is attached: every entry made
//! relative to the mount's fd (parents come first in the record), data written at its
//! extents and the size set (holes stay holes), then owner and mode; times last, deepest
//! first, so making children does not change their directory's.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};

use super::unsupported;
use crate::image::mnt::{Entry, EntryKind, Mount, TmpfsImage};
use crate::image::Kind;
use crate::restore::RestoreError;

/// The record of tmpfs `mt` (`nested`: of a namespace made inside the tree,
/// `mntns-tmpfs-<id>.img`).
pub fn load(dir: &Path, mt: &Mount, nested: bool) -> Result<TmpfsImage, RestoreError> {
    let (name, kind) = match nested {
        true => (
            crate::image::mnt::nested_tmpfs_name(mt.id),
            Kind::NestedTmpfs,
        ),
        false => (crate::image::mnt::tmpfs_name(mt.id), Kind::MntTmpfs),
    };
    Ok(crate::image::file::read(kind, &dir.join(name))?)
}

pub fn fill(image: &TmpfsImage, mt: &Mount, fd: &OwnedFd) -> Result<(), RestoreError> {
    for e in &image.entries {
        make(fd, e).map_err(|err| {
            unsupported(format!(
                "tmpfs at {}: {}: {}",
                mt.mountpoint,
                e.path,
                err.desc()
            ))
        })?;
    }
    for e in image.entries.iter().rev() {
        times(fd, e).map_err(|err| {
            unsupported(format!(
                "tmpfs at {}: times of {}: {}",
                mt.mountpoint,
                e.path,
                err.desc()
            ))
        })?;
    }
    Ok(())
}

fn name(e: &Entry) -> &str {
    if e.path.is_empty() {
        "."
    } else {
        &e.path
    }
}

fn make(fd: &OwnedFd, e: &Entry) -> nix::Result<()> {
    let (p, perm) = (name(e), Mode::from_bits_truncate(e.mode & 0o7777));
    match &e.kind {
        EntryKind::Dir if e.path.is_empty() => {}
        EntryKind::Dir => mkdirat(fd, p, perm)?,
        EntryKind::File { size, extents } => {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
            let f = openat(fd, p, flags, perm)?;
            for (off, data) in extents {
                let mut done = 0;
                while done < data.len() {
                    done += nix::sys::uio::pwrite(
                        f.as_fd(),
                        &data[done..],
                        (*off + done as u64) as i64,
                    )?;
                }
            }
            nix::unistd::ftruncate(&f, *size as i64)?;
        }
        EntryKind::Symlink { target } => symlinkat(target.as_str(), fd, p)?,
        EntryKind::HardLink { to } => {
            return linkat(fd, to.as_str(), fd, p, AtFlags::empty());
        }
        EntryKind::Node { rdev } => {
            let kind = SFlag::from_bits_truncate(e.mode & libc::S_IFMT);
            mknodat(fd, p, kind, perm, *rdev)?
        }
    }
    let (uid, gid) = (Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)));
    fchownat(fd, p, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if !matches!(e.kind, EntryKind::Symlink { .. }) {
        fchmodat(fd, p, perm, FchmodatFlags::FollowSymlink)?;
    }
    Ok(())
}

fn times(fd: &OwnedFd, e: &Entry) -> nix::Result<()> {
    if matches!(e.kind, EntryKind::HardLink { .. }) {
        return Ok(());
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    utimensat(
        fd,
        name(e),
        &ts(e.atime_ns),
        &ts(e.mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    )
}
