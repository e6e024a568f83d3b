//! timerfd: clock, time left, interval, settime flags and unread expirations (ticks),
//! all from fdinfo. The restore side is `restore/files/timerfd.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, TimerFd};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let t = parsed(open, fdkinds::timerfd(&open.info))?;
    Ok(FdKind::TimerFd(TimerFd {
        clock: t.clock,
        ticks: t.ticks,
        settime_flags: t.settime_flags,
        value_ns: t.value_ns,
        interval_ns: t.interval_ns,
    }))
}
