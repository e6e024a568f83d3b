//! timerfd, recreated on its clock with its time left, interval and unread expirations
//! (`TFD_IOC_SET_TICKS`). The dump side is `dump/files/timerfd.rs`.
//!
//! The saved value is the time left at the dump (for a periodic timer with unread
//! expirations: none, so it is armed an interval ahead); a relative timer is armed with it; an
//! absolute one (`TFD_TIMER_ABSTIME`, perhaps with `TFD_TIMER_CANCEL_ON_SET`) is armed at
//! now + time left on its clock, keeping its flags.

use super::Install;
use crate::image::files::TimerFd;
use crate::restore::RestoreError;

/// `TFD_IOC_SET_TICKS` = `_IOW('T', 0, __u64)`.
const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;
const NS: u64 = 1_000_000_000;

pub fn restore(at: &Install, t: &TimerFd) -> Result<(), RestoreError> {
    let flags = at.cloexec() | (at.entry.flags & libc::O_NONBLOCK);
    let args = [t.clock as u64, flags as u64];
    at.place(at.call("timerfd_create", libc::SYS_timerfd_create, &args)?)?;
    // A periodic timer that expired and was not read since shows no time left (the
    // kernel re-arms it on read): its next expiration is at most an interval away.
    let left = match t.value_ns {
        0 => t.interval_ns,
        v => v,
    };
    if left != 0 {
        let value = match t.settime_flags & libc::TFD_TIMER_ABSTIME != 0 {
            true => now_ns(t.clock)? + left,
            false => left,
        };
        let spec = [
            t.interval_ns / NS,
            t.interval_ns % NS,
            value / NS,
            value % NS,
        ];
        let bytes: Vec<u8> = spec.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let addr = at.child.put(0, &bytes)?;
        let args = [at.fd(), t.settime_flags as u64, addr, 0];
        at.call("timerfd_settime", libc::SYS_timerfd_settime, &args)?;
    }
    if t.ticks != 0 {
        let addr = at.child.put(0, &t.ticks.to_ne_bytes())?;
        let args = [at.fd(), TFD_IOC_SET_TICKS, addr];
        at.call("ioctl(TFD_IOC_SET_TICKS)", libc::SYS_ioctl, &args)?;
    }
    Ok(())
}

fn now_ns(clock: i32) -> Result<u64, RestoreError> {
    let now = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock)).map_err(|e| {
        RestoreError::Unsupported {
            what: format!(
                "clock_gettime({clock}) for an absolute timerfd: {}",
                e.desc()
            ),
        }
    })?;
    Ok(now.tv_sec() as u64 * NS + now.tv_nsec() as u64)
}
