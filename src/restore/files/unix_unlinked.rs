//! Unix sockets bound to a path that no longer leads to them (`FilesImage::
//! unlinked_sockets`: their file was deleted, or they are accepted connections sharing
//! their listener's name): they get their name back without a file. The child binds them
//! with its root moved (`chroot`) to an empty directory stasis makes, where the name's
//! directories are created, connects to them whatever connected by that name, unlinks
//! each new file and comes back to its own root and cwd: nothing of the host's tree is
//! touched, even when another file now has the name. The dump side is
//! `dump/files/unix.rs` (`name_unlinked`).
//!
//! Ordering requirements: after every socket exists; before the connections to other
//! names (made from the real root).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::prep;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// The empty directory the child binds in, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// A new directory in the system's temporary directory holding the parents of
    /// `names` (absolute ones; relative names are bound at its top).
    fn new(pid: i32, names: &[&[u8]]) -> Result<Scratch, RestoreError> {
        let dir = std::env::temp_dir().join(format!(".stasis-unix-{pid}-{}", std::process::id()));
        let made = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|source| RestoreError::Write {
                path: p.display().to_string(),
                source,
            })
        };
        let _ = std::fs::remove_dir_all(&dir);
        made(&dir)?;
        let scratch = Scratch(dir);
        for name in names {
            let path = Path::new(OsStr::from_bytes(name));
            let rel = path.strip_prefix("/").unwrap_or(path);
            if let Some(parent) = rel.parent() {
                made(&scratch.0.join(parent))?;
            }
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `inside` (binds and connects by the names `names`) in the child with its root at
/// a scratch directory (given to `inside`, as stasis sees it: another process reaches
/// the names' files through it), then unlinks the names there and puts the child's root
/// and cwd back.
pub fn in_scratch_root(
    child: &Child,
    names: &[&[u8]],
    inside: impl FnOnce(&Path) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let scratch = Scratch::new(child.pid(), names)?;
    let remote = child.remote();
    let flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    let open = |path: &str| -> Result<u64, RestoreError> {
        let addr = child.put_str(prep::ARG_OFF, path)?;
        let at = libc::AT_FDCWD as u64;
        Ok(remote.call("openat", libc::SYS_openat, &[at, addr, flags])?)
    };
    let root = open("/")?;
    let cwd = open(".")?;
    enter(child, &scratch)?;
    let done = enter_and_bind(child, names, || inside(&scratch.0));
    remote.call("fchdir", libc::SYS_fchdir, &[root])?;
    let dot = child.put_str(prep::ARG_OFF, ".")?;
    remote.call("chroot", libc::SYS_chroot, &[dot])?;
    remote.call("fchdir", libc::SYS_fchdir, &[cwd])?;
    remote.call("close", libc::SYS_close, &[root])?;
    remote.call("close", libc::SYS_close, &[cwd])?;
    done
}

/// Moves the child's root to the scratch directory: by its path when the child sees the
/// restorer's root, else (a tree with a root of its own) through an fd of it handed over,
/// `fchdir` and `chroot(".")`.
fn enter(child: &Child, scratch: &Scratch) -> Result<(), RestoreError> {
    let remote = child.remote();
    let path = scratch.0.display().to_string();
    if Path::new(&format!("/proc/{}/root{path}", child.pid())).is_dir() {
        let dir = child.put_str(prep::ARG_OFF, &path)?;
        remote.call("chroot", libc::SYS_chroot, &[dir])?;
        return Ok(());
    }
    let own = std::fs::File::open(&scratch.0).map_err(|source| RestoreError::Write {
        path: path.clone(),
        source,
    })?;
    let what = format!("the scratch directory {path}");
    let fd = crate::restore::ns::handover::give_own(child, &own, &what)?;
    remote.call("fchdir", libc::SYS_fchdir, &[fd])?;
    remote.call("close", libc::SYS_close, &[fd])?;
    let dot = child.put_str(prep::ARG_OFF, ".")?;
    remote.call("chroot", libc::SYS_chroot, &[dot])?;
    Ok(())
}

/// Inside the scratch root: `inside`, then every name unlinked.
fn enter_and_bind(
    child: &Child,
    names: &[&[u8]],
    inside: impl FnOnce() -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let remote = child.remote();
    let slash = child.put_str(prep::ARG_OFF, "/")?;
    remote.call("chdir", libc::SYS_chdir, &[slash])?;
    inside()?;
    for name in names {
        let mut path = name.to_vec();
        path.push(0);
        let addr = child.put(prep::ARG_OFF, &path)?;
        let at = libc::AT_FDCWD as u64;
        remote.call("unlinkat", libc::SYS_unlinkat, &[at, addr, 0])?;
    }
    Ok(())
}
