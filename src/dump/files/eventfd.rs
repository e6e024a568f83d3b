//! eventfd: counter and semaphore mode from fdinfo (`O_NONBLOCK` is in the entry's
//! flags). The restore side is `restore/files/eventfd.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{EventFd, FdKind};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let (count, semaphore) = parsed(open, fdkinds::eventfd(&open.info))?;
    Ok(FdKind::EventFd(EventFd { count, semaphore }))
}
