//! The fd table, cwd/root and umask, rebuilt inside the child. The dump side is
//! `dump/files.rs`.
//!
//! Ordering requirements: runs after memory is filled (the pages fd is gone) and installs
//! fds in increasing order, so `openat` — which returns the lowest free number — never
//! hands out a number that a later entry needs.

use std::io::IsTerminal;
use std::os::fd::AsRawFd;

use super::child::Child;
use super::mm::open_in;
use super::RestoreError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::task::TaskImage;

const CLOSE_RANGE_ALL: u64 = u32::MAX as u64;

/// Replaces the inherited fds with the saved table.
pub fn restore_fds(child: &Child, files: &FilesImage) -> Result<(), RestoreError> {
    let remote = child.remote();
    let top = files.fds.iter().map(|f| f.fd).max().unwrap_or(0) as u64 + 1;
    let tty = if files
        .fds
        .iter()
        .any(|f| matches!(f.kind, FdKind::Tty { .. }))
    {
        Some(terminal_in_child(child, top)?)
    } else {
        None
    };
    // Drop everything inherited from stasis, keeping only the terminal duplicate.
    match tty {
        Some(t) => {
            remote.call("close_range", libc::SYS_close_range, &[0, t - 1, 0])?;
            remote.call(
                "close_range",
                libc::SYS_close_range,
                &[t + 1, CLOSE_RANGE_ALL, 0],
            )?;
        }
        None => {
            remote.call(
                "close_range",
                libc::SYS_close_range,
                &[0, CLOSE_RANGE_ALL, 0],
            )?;
        }
    }
    for entry in &files.fds {
        install(child, entry, tty)?;
    }
    if let Some(t) = tty {
        remote.call("close", libc::SYS_close, &[t])?;
    }
    Ok(())
}

/// The restorer's terminal (the first of its stdin/stdout/stderr that is one), duplicated
/// in the child above every saved fd number.
fn terminal_in_child(child: &Child, above: u64) -> Result<u64, RestoreError> {
    let ours = [
        std::io::stdin().as_raw_fd(),
        std::io::stdout().as_raw_fd(),
        std::io::stderr().as_raw_fd(),
    ];
    let terminal = [
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    let Some(i) = terminal.iter().position(|t| *t) else {
        return Err(RestoreError::Unsupported {
            what: "the image holds terminal fds (--shell-job) but stasis restore is not running on a terminal".into(),
        });
    };
    Ok(child.remote().call(
        "fcntl(F_DUPFD)",
        libc::SYS_fcntl,
        &[ours[i] as u64, libc::F_DUPFD as u64, above],
    )?)
}

fn install(child: &Child, e: &FdEntry, tty: Option<u64>) -> Result<(), RestoreError> {
    let remote = child.remote();
    let cloexec = if e.cloexec { libc::O_CLOEXEC } else { 0 };
    let (got, pos) = match &e.kind {
        FdKind::Tty { .. } => {
            let t = tty.expect("a terminal fd exists when the table holds one");
            remote.call("dup3", libc::SYS_dup3, &[t, e.fd as u64, cloexec as u64])?;
            return Ok(());
        }
        FdKind::Dup { of } => {
            remote.call(
                "dup3",
                libc::SYS_dup3,
                &[*of as u64, e.fd as u64, cloexec as u64],
            )?;
            return Ok(());
        }
        FdKind::Inherited { pid, fd } => {
            let got = take_from(child, *pid, *fd)?;
            if got == e.fd as u64 && !e.cloexec {
                // pidfd_getfd always sets FD_CLOEXEC.
                remote.call(
                    "fcntl(F_SETFD)",
                    libc::SYS_fcntl,
                    &[got, libc::F_SETFD as u64, 0],
                )?;
            }
            (got, 0)
        }
        FdKind::Path { file, pos } => (
            open_in(child, &file.path, reopen_flags(e.flags) | cloexec)?,
            *pos,
        ),
        FdKind::CharDev { path, pos, .. } => {
            (open_in(child, path, reopen_flags(e.flags) | cloexec)?, *pos)
        }
    };
    if got != e.fd as u64 {
        remote.call("dup3", libc::SYS_dup3, &[got, e.fd as u64, cloexec as u64])?;
        remote.call("close", libc::SYS_close, &[got])?;
    }
    if pos != 0 {
        remote.call(
            "lseek",
            libc::SYS_lseek,
            &[e.fd as u64, pos, libc::SEEK_SET as u64],
        )?;
    }
    Ok(())
}

/// A copy, in the child, of fd `fd` of the already restored process `owner`: the same
/// open file description (`pidfd_open` + `pidfd_getfd`, Linux 5.6, run by the child,
/// which is still privileged here). Returns the new fd number.
fn take_from(child: &Child, owner: i32, fd: i32) -> Result<u64, RestoreError> {
    let remote = child.remote();
    let pidfd = remote.call("pidfd_open", libc::SYS_pidfd_open, &[owner as u64, 0])?;
    let got = remote.raw(libc::SYS_pidfd_getfd, &[pidfd, fd as u64, 0]);
    remote.call("close", libc::SYS_close, &[pidfd])?;
    let got = got?;
    if got < 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "pidfd_getfd of fd {fd} of pid {owner} into pid {}: {}",
                child.pid(),
                nix::errno::Errno::from_raw(-got as i32)
            ),
        });
    }
    Ok(got as u64)
}

/// Open flags that recreate the file status flags without side effects on the file.
fn reopen_flags(flags: i32) -> i32 {
    flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC) | libc::O_NOCTTY
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
