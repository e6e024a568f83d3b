//! Timers, the restore side of `dump/timers.rs`: interval timers with `setitimer`, POSIX
//! timers with `timer_create` under their saved ids, then `timer_settime`.
//!
//! Remaining times are restored as saved (relative), so the time the task spent frozen
//! does not count, as for CRIU. Overrun counts cannot be set and start again at 0.

use super::child::Child;
use super::staged::Staged;
use super::RestoreError;
use crate::abi::{KernelSigevent, TimerPair};
use crate::image::task::{PosixTimer, Timers};

/// `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.15): while on, `timer_create` takes the id to
/// allocate from its `created_timer_id` argument (EBUSY if taken).
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const RESTORE_IDS_OFF: u64 = 0;
const RESTORE_IDS_ON: u64 = 1;
/// Scratch offsets: the sigevent, the timer id, the itimerspec.
const SEV_OFF: u64 = 0;
const ID_OFF: u64 = 128;
const SPEC_OFF: u64 = 256;

/// Every interval timer and POSIX timer of the task.
///
/// Ordering requirements: late, so restore work does not eat the remaining times, and
/// before the credentials change: timers on `*_ALARM` clocks need CAP_WAKE_ALARM
/// (`PR_TIMER_CREATE_RESTORE_IDS` itself needs no privilege on Linux 6.18). Expiries until the resume
/// only queue signals (all are blocked in the child). Made by single calls, after the
/// pending batch ran, if there is anything to set.
pub fn restore_timers(s: &mut Staged, timers: &Timers) -> Result<(), RestoreError> {
    let armed = timers
        .itimers
        .iter()
        .any(|it| it.value_us | it.interval_us != 0);
    if !armed && timers.posix.is_empty() {
        return Ok(());
    }
    s.flush()?;
    let child = s.child();
    for (which, it) in timers.itimers.iter().enumerate() {
        // A periodic ITIMER_REAL whose SIGALRM was pending at the dump reads as disarmed:
        // since Linux 6.13 the kernel re-arms it when the signal is dequeued. Its next
        // expiry is at most an interval away. (A timer disarmed with a non-zero interval,
        // which getitimer cannot tell apart, would come back armed.)
        let value_us = match it.value_us {
            0 => it.interval_us,
            v => v,
        };
        if value_us == 0 {
            continue;
        }
        let val = TimerPair::from_units(it.interval_us, value_us, 1_000_000);
        let addr = child.put_pod(SPEC_OFF, &val)?;
        let args = [which as u64, addr, 0];
        child
            .remote()
            .call("setitimer", libc::SYS_setitimer, &args)?;
    }
    if timers.posix.is_empty() {
        return Ok(());
    }
    let exact = restore_ids(child, RESTORE_IDS_ON)?;
    let created = timers
        .posix
        .iter()
        .try_for_each(|t| create(child, t, exact));
    if exact {
        restore_ids(child, RESTORE_IDS_OFF)?;
    }
    created?;
    timers.posix.iter().try_for_each(|t| arm(child, t))
}

/// Turns id-restoring mode on or off; `false` if this kernel lacks it.
fn restore_ids(child: &Child, mode: u64) -> Result<bool, RestoreError> {
    let args = [PR_TIMER_CREATE_RESTORE_IDS, mode, 0, 0, 0];
    match child.remote().raw(libc::SYS_prctl, &args)? {
        0 => Ok(true),
        r if r == -(libc::EINVAL as i64) && mode == RESTORE_IDS_ON => Ok(false),
        r => Err(RestoreError::Unsupported {
            what: format!(
                "prctl(PR_TIMER_CREATE_RESTORE_IDS, {mode}) in pid {}: {}",
                child.pid(),
                nix::errno::Errno::from_raw(-r as i32)
            ),
        }),
    }
}

/// Creates timer `t`. Without `exact` ids (kernels before 6.15) the kernel hands out ids
/// in increasing order from 0, so timers created in id order get theirs only if the saved
/// ids were dense; anything else is refused.
fn create(child: &Child, t: &PosixTimer, exact: bool) -> Result<(), RestoreError> {
    let sev = KernelSigevent {
        value: t.sigev_value,
        signo: t.signal,
        notify: t.notify,
        // The target thread as the child's namespace names it (0: none).
        tid: super::ns::pid::view(child.pid(), t.target),
        ..KernelSigevent::default()
    };
    let sev_addr = child.put_pod(SEV_OFF, &sev)?;
    let id_addr = child.put_pod(ID_OFF, &t.id)?;
    let args = [t.clock as i64 as u64, sev_addr, id_addr];
    child
        .remote()
        .call("timer_create", libc::SYS_timer_create, &args)?;
    let got = i32::from_ne_bytes(read_back(child, ID_OFF)?);
    if got != t.id {
        let how = if exact {
            ""
        } else {
            " (this kernel lacks PR_TIMER_CREATE_RESTORE_IDS)"
        };
        return Err(RestoreError::Unsupported {
            what: format!(
                "POSIX timer {} of pid {} came back as id {got}{how}",
                t.id,
                child.pid()
            ),
        });
    }
    Ok(())
}

fn read_back(child: &Child, off: u64) -> Result<[u8; 4], RestoreError> {
    let mut id = [0u8; 4];
    child.mem.read(child.scratch() + off, &mut id)?;
    Ok(id)
}

fn arm(child: &Child, t: &PosixTimer) -> Result<(), RestoreError> {
    if t.remaining_ns == 0 {
        return Ok(());
    }
    let spec = TimerPair::from_units(t.interval_ns, t.remaining_ns, 1_000_000_000);
    let addr = child.put_pod(SPEC_OFF, &spec)?;
    let args = [t.id as u64, 0, addr, 0];
    child
        .remote()
        .call("timer_settime", libc::SYS_timer_settime, &args)?;
    Ok(())
}
