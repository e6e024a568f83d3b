//! pidfd: the process it refers to, which must be one of the image (a pidfd of an
//! outside process cannot be rebuilt: that process is not ours to recreate). The restore
//! side is `restore/files/pidfd.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, PidFd};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd, pids: &[i32]) -> Result<FdKind, DumpError> {
    let pid = parsed(open, fdkinds::pidfd_pid(&open.info))?;
    if !pids.contains(&pid) {
        let whom = match pid {
            -1 => "a process that has exited".to_string(),
            p => format!("pid {p}, which is outside the dumped processes"),
        };
        return Err(open.error(&format!(
            "is a pidfd of {whom}; stasis can only restore pidfds of processes it restores"
        )));
    }
    Ok(FdKind::PidFd(PidFd { pid }))
}
