//! Binds of a file or directory deleted since it was bound (`How::Deleted`, dumped by
//! `dump/mnt/deleted.rs`): the object is made again at its old path in a clone of the
//! mount it was bound from (with any missing parent directory), with its mode, owner and
//! contents; bound; then removed with the parents made, so that the bind shows it deleted
//! again and the filesystem is as it was (on a host filesystem too, as CRIU does).
//! An object at that path already is another one: refused.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode};
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::unsupported;
use crate::image::mnt::{Gone, Mount};
use crate::restore::RestoreError;
use crate::sys::mount as m;

/// What was made for a bind: removed once the bind is attached (the kernel does not
/// attach a detached mount whose root is unlinked).
pub struct Made {
    /// A clone of the mount it was made in.
    at: OwnedFd,
    /// Paths relative to it, in the order made (directory or not).
    paths: Vec<(String, bool)>,
    what: String,
}

/// The detached bind of `rel` of `src` (a clone of mount `of`), made again as `gone`
/// says; what was made is removed by [`Made::remove`] once the bind is attached.
pub fn bind(
    src: BorrowedFd,
    mt: &Mount,
    rel: &str,
    gone: &Gone,
) -> Result<(OwnedFd, Made), RestoreError> {
    let mut made = Made {
        at: m::clone_tree(Some(src), "").map_err(|e| unsupported(e.to_string()))?,
        paths: Vec::new(),
        what: made_what(mt, rel),
    };
    let fail =
        |what: &str, e: Errno| unsupported(format!("{}: {what}: {}", made_what(mt, rel), e.desc()));
    let bound = make(made.at.as_fd(), rel, gone, &mut made.paths)
        .map_err(|(what, e)| fail(&what, e))
        .and_then(|()| m::clone_tree(Some(src), rel).map_err(|e| unsupported(e.to_string())));
    match bound {
        Ok(fd) => Ok((fd, made)),
        Err(e) => {
            made.remove()?;
            Err(e)
        }
    }
}

fn made_what(mt: &Mount, rel: &str) -> String {
    format!(
        "mount {} at {}, a bind of deleted {rel}",
        mt.id, mt.mountpoint
    )
}

impl Made {
    /// Removes what was made, deepest first.
    pub fn remove(self) -> Result<(), RestoreError> {
        for (path, dir) in self.paths.iter().rev() {
            let how = match dir {
                true => UnlinkatFlags::RemoveDir,
                false => UnlinkatFlags::NoRemoveDir,
            };
            unlinkat(self.at.as_fd(), path.as_str(), how)
                .map_err(|e| unsupported(format!("{}: remove {path}: {}", self.what, e.desc())))?;
        }
        Ok(())
    }
}

/// Makes `rel` (and its missing parents) below `src`, recording each path made.
fn make(
    src: BorrowedFd,
    rel: &str,
    gone: &Gone,
    made: &mut Vec<(String, bool)>,
) -> Result<(), (String, Errno)> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for i in 1..parts.len() {
        let parent = parts[..i].join("/");
        match fstatat(
            src,
            parent.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err((format!("stat {parent}"), e)),
        }
        mkdirat(src, parent.as_str(), Mode::from_bits_truncate(0o700))
            .map_err(|e| (format!("make its parent {parent}"), e))?;
        made.push((parent, true));
    }
    let mode = Mode::from_bits_truncate(gone.mode);
    if gone.dir {
        mkdirat(src, rel, mode).map_err(|e| ("make it again".to_string(), e))?;
        made.push((rel.to_string(), true));
    } else {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
        let file = openat(src, rel, flags, mode).map_err(|e| ("make it again".into(), e))?;
        made.push((rel.to_string(), false));
        write_all(&file, &gone.data).map_err(|e| ("write its contents".into(), e))?;
    }
    let owner = (Some(Uid::from_raw(gone.uid)), Some(Gid::from_raw(gone.gid)));
    let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
    fchownat(src, rel, owner.0, owner.1, nofollow).map_err(|e| ("chown".into(), e))?;
    // The mode again: umask, and chown's clearing of set-id bits.
    nix::sys::stat::fchmodat(src, rel, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
        .map_err(|e| ("chmod".into(), e))
}

fn write_all(file: &OwnedFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        let n = nix::unistd::write(file, data)?;
        data = &data[n..];
    }
    Ok(())
}
