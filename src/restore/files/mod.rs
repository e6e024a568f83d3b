//! The fd table, cwd/root and umask, rebuilt inside the child. Each kind of fd is
//! recreated by the twin of its dump module (`dump/files/<kind>.rs`):
//!
//! - [`path`]: regular files and directories;
//! - [`chardev`]: character devices and the shell job's terminal.
//!
//! Ordering requirements: runs after memory is filled (the pages fd is gone) and installs
//! fds in increasing order, so every fd an entry refers to (`Dup { of }`) exists already;
//! objects are created wherever the kernel puts them and then moved to their number
//! ([`place`]), so a lower free number handed out meanwhile does no harm.

mod chardev;
mod path;

use super::child::Child;
use super::RestoreError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::task::TaskImage;

const CLOSE_RANGE_ALL: u64 = u32::MAX as u64;

/// What the kind modules get to build one fd.
pub struct Install<'a> {
    pub child: &'a Child,
    pub entry: &'a FdEntry,
    /// The restorer's terminal duplicated in the child, when the table holds one.
    pub tty: Option<u64>,
}

impl Install<'_> {
    /// `O_CLOEXEC` if the fd had `FD_CLOEXEC`.
    pub fn cloexec(&self) -> i32 {
        if self.entry.cloexec {
            libc::O_CLOEXEC
        } else {
            0
        }
    }

    /// Open flags that recreate the file status flags without side effects on the file.
    pub fn reopen_flags(&self) -> i32 {
        let flags = self.entry.flags;
        flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC)
            | libc::O_NOCTTY
            | self.cloexec()
    }

    /// Moves the child's fd `got` to the entry's number (with its `FD_CLOEXEC`).
    pub fn place(&self, got: u64) -> Result<(), RestoreError> {
        let want = self.entry.fd as u64;
        if got != want {
            let remote = self.child.remote();
            remote.call("dup3", libc::SYS_dup3, &[got, want, self.cloexec() as u64])?;
            remote.call("close", libc::SYS_close, &[got])?;
        }
        Ok(())
    }

    /// Duplicates the child's fd `of` at the entry's number (one open file description).
    pub fn dup_of(&self, of: u64) -> Result<(), RestoreError> {
        let args = [of, self.entry.fd as u64, self.cloexec() as u64];
        self.child.remote().call("dup3", libc::SYS_dup3, &args)?;
        Ok(())
    }
}

/// Replaces the inherited fds with the saved table.
pub fn restore_fds(child: &Child, files: &FilesImage) -> Result<(), RestoreError> {
    let remote = child.remote();
    let top = files.fds.iter().map(|f| f.fd).max().unwrap_or(0) as u64 + 1;
    let has_tty = files.fds.iter().any(|f| matches!(f.kind, FdKind::Tty(_)));
    let tty = if has_tty {
        Some(chardev::terminal_in_child(child, top)?)
    } else {
        None
    };
    // Drop everything inherited from stasis, keeping only the terminal duplicate.
    let ranges = match tty {
        Some(t) => vec![(0, t - 1), (t + 1, CLOSE_RANGE_ALL)],
        None => vec![(0, CLOSE_RANGE_ALL)],
    };
    for (first, last) in ranges {
        remote.call("close_range", libc::SYS_close_range, &[first, last, 0])?;
    }
    for entry in &files.fds {
        install(&Install { child, entry, tty })?;
    }
    if let Some(t) = tty {
        remote.call("close", libc::SYS_close, &[t])?;
    }
    Ok(())
}

/// Dispatches by kind.
fn install(at: &Install) -> Result<(), RestoreError> {
    match &at.entry.kind {
        FdKind::Path(p) => path::restore(at, p),
        FdKind::CharDev(c) => chardev::restore(at, c),
        FdKind::Tty(_) => chardev::restore_tty(at),
        FdKind::Dup { of } => at.dup_of(*of as u64),
    }
}

/// Sets the file offset of the entry's fd.
pub fn seek(at: &Install, pos: u64) -> Result<(), RestoreError> {
    if pos != 0 {
        let args = [at.entry.fd as u64, pos, libc::SEEK_SET as u64];
        at.child.remote().call("lseek", libc::SYS_lseek, &args)?;
    }
    Ok(())
}

/// cwd, root and umask. Ordering requirements: after every open by absolute path, and
/// `chdir` before `chroot` (the cwd path is absolute in the restorer's root).
pub fn restore_fs(child: &Child, task: &TaskImage) -> Result<(), RestoreError> {
    let remote = child.remote();
    let cwd = child.put_str(0, &task.cwd)?;
    remote.call("chdir", libc::SYS_chdir, &[cwd])?;
    if task.root != "/" {
        let root = child.put_str(0, &task.root)?;
        remote.call("chroot", libc::SYS_chroot, &[root])?;
    }
    remote.call("umask", libc::SYS_umask, &[u64::from(task.umask)])?;
    Ok(())
}
