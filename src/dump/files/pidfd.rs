//! pidfd: the process it refers to, which must be one of the image (a pidfd of an
//! outside process cannot be rebuilt: that process is not ours to recreate), or a
//! process that has exited (fdinfo `Pid: -1`), known by its pidfs inode so that pidfds
//! of one dead process stay pidfds of one process. The restore side is
//! `restore/files/pidfd.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{DeadPidFd, FdKind, PidFd};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd, pids: &[i32]) -> Result<FdKind, DumpError> {
    let pid = parsed(open, fdkinds::pidfd_pid(&open.info))?;
    if pid == -1 {
        let ino = open.meta()?.st_ino;
        return Ok(FdKind::DeadPidFd(DeadPidFd { ino }));
    }
    if !pids.contains(&pid) {
        return Err(open.error(&format!(
            "is a pidfd of pid {pid}, which is outside the dumped processes; stasis can only restore pidfds of processes it restores"
        )));
    }
    Ok(FdKind::PidFd(PidFd { pid }))
}
