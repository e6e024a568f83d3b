//! signalfd: its signal mask from fdinfo (`sigmask:`). The signals themselves are in the
//! task's queues, saved with the task. The restore side is `restore/files/signalfd.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, SignalFd};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let mask = parsed(open, fdkinds::signalfd_mask(&open.info))?;
    Ok(FdKind::SignalFd(SignalFd { mask }))
}
