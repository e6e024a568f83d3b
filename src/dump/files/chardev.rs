//! Character devices, reopened by path (`/dev/null`, `/dev/urandom`...), and terminals,
//! which become the restorer's terminal under `--shell-job`. The restore side is
//! `restore/files/chardev.rs`.

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::{CharDevFd, FdKind, TtyFd};

/// Terminals become `Tty` under `--shell-job` and are refused otherwise; other character
/// devices reopen by path.
pub fn dump(open: &OpenFd, shell_job: bool) -> Result<FdKind, DumpError> {
    let rdev = open.meta()?.st_rdev;
    if !is_tty(rdev) {
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

/// Pseudo-terminal slaves (136-143), virtual consoles (4) and /dev/tty, /dev/console (5).
pub fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    (136..=143).contains(&major) || major == 4 || (major == 5 && libc::minor(rdev) < 2)
}
