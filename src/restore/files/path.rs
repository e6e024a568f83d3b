//! Regular files and directories, reopened by path with their status flags and offset.
//! The dump side is `dump/files/path.rs`; `restore/verify.rs` has checked beforehand that
//! the path still names the same file.

use super::{seek, Install};
use crate::image::files::PathFd;
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

pub fn restore(at: &Install, p: &PathFd) -> Result<(), RestoreError> {
    at.place(open_in(at.child, &p.file.path, at.reopen_flags())?)?;
    seek(at, p.pos)
}
