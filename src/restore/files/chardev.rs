//! Character devices, reopened by path; `/dev/tty`, reopened once the session has its
//! controlling terminal again (`restore/tty.rs`); and the shell job's terminal, which
//! becomes the restorer's own. The dump side is `dump/files/chardev.rs`.

use std::io::IsTerminal;
use std::os::fd::AsRawFd;

use super::{seek, Install};
use crate::image::files::CharDevFd;
use crate::restore::child::Child;
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

pub fn restore(at: &Install, c: &CharDevFd) -> Result<(), RestoreError> {
    let (path, flags, fd) = (&c.path, at.reopen_flags(), at.entry.fd);
    // A node of another mount namespace of the tree is opened there (`mnt/nested.rs`).
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, fd, path, flags)?;
    at.place(there.map_or_else(|| open_in(at.child, path, flags), Ok)?)?;
    seek(at, c.pos)
}

/// `/dev/tty`: the process's controlling terminal, which it has again since its
/// Session stage.
pub fn restore_controlling(at: &Install) -> Result<(), RestoreError> {
    at.place(open_in(at.child, "/dev/tty", at.reopen_flags())?)
}

/// A terminal fd: a duplicate of the restorer's terminal.
pub fn restore_tty(at: &Install) -> Result<(), RestoreError> {
    at.dup_of(
        at.tty
            .expect("a terminal fd exists when the table holds one"),
    )
}

/// The restorer's terminal (the first of its stdin/stdout/stderr that is one), duplicated
/// in the child above every saved fd number.
pub fn terminal_in_child(child: &Child, above: u64) -> Result<u64, RestoreError> {
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
