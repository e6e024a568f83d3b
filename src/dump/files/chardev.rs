//! Character devices, reopened by path (`/dev/null`, `/dev/urandom`...), and terminals,
//! which become the restorer's terminal under `--shell-job`. The restore side is
//! `restore/files/chardev.rs`.

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::{CharDevFd, FdKind, TtyFd};

/// Terminals become `Tty` under `--shell-job` and are refused otherwise; other character
/// devices reopen by path, which must name the same device (any node of it: CRIU's
/// `--evasive-devices` behaviour, always stasis's).
pub fn dump(open: &OpenFd, shell_job: bool) -> Result<FdKind, DumpError> {
    let rdev = open.meta()?.st_rdev;
    if !is_tty(rdev) {
        check_path_names(open, rdev)?;
        return Ok(FdKind::CharDev(CharDevFd {
            path: open.target.clone(),
            rdev,
            pos: open.info.pos,
        }));
    }
    if shell_job {
        return Ok(FdKind::Tty(TtyFd { rdev }));
    }
    Err(open.error(&format!(
        "is a terminal ({}); use --shell-job (-j) to restore it on the current terminal",
        open.target
    )))
}

/// Refuses a device whose path no longer names it (the node deleted, or replaced by
/// another file): the restore would open something else.
fn check_path_names(open: &OpenFd, rdev: u64) -> Result<(), DumpError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let named = std::fs::metadata(&open.target)
        .ok()
        .filter(|m| m.file_type().is_char_device())
        .map(|m| m.rdev());
    if named == Some(rdev) {
        return Ok(());
    }
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Err(open.error(&format!(
        "is character device {major}:{minor} opened as {}, a path that names no such device now (deleted or replaced); stasis reopens a device by its path",
        open.target
    )))
}

/// Pseudo-terminal slaves (136-143), virtual consoles (4) and /dev/tty, /dev/console (5).
pub fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    (136..=143).contains(&major) || major == 4 || (major == 5 && libc::minor(rdev) < 2)
}
