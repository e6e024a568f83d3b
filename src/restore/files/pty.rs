//! Pseudo-terminal fds: every pair of the image is rebuilt by stasis before any process
//! exists (`restore/tty.rs`); a process takes each master and slave it held from
//! stasis's fd on that open file description. The dump side is `dump/files/pty.rs`.

use std::collections::HashMap;

use super::Install;
use crate::restore::RestoreError;

/// The fd of stasis holding each original pty fd of the image, by `(pid, fd)`.
pub type PtyFds = HashMap<(i32, i32), i32>;

/// A master or slave: the open file description stasis built for it.
pub fn restore(at: &Install) -> Result<(), RestoreError> {
    let (pid, fd) = (at.child.pid(), at.entry.fd);
    let Some(&ours) = at.ptys.get(&(pid, fd)) else {
        return Err(RestoreError::Unsupported {
            what: format!("fd {fd} of pid {pid}: its pty was not rebuilt"),
        });
    };
    super::inherit(at, std::process::id() as i32, ours)
}
