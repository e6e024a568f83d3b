//! Timers: the three interval timers (`getitimer`) and the POSIX timers, listed by
//! `/proc/PID/timers` and read with `timer_gettime`/`timer_getoverrun`, all injected
//! into the task. The restore side is `restore/timers.rs`.

use super::task::Query;
use super::DumpError;
use crate::abi::TimerPair;
use crate::image::task::{ITimer, PosixTimer, Timers};
use crate::proc::timers::ProcTimer;

/// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
const ITIMERS: [u64; 3] = [0, 1, 2];

/// Reads every timer of the task. `listed` is `/proc/PID/timers`.
/// `tids` are the process's threads, whose CPU clocks a timer may measure.
pub fn query(q: &Query, listed: &[ProcTimer], tids: &[i32]) -> Result<Timers, DumpError> {
    let mut itimers = [ITimer::default(); 3];
    for (slot, which) in itimers.iter_mut().zip(ITIMERS) {
        q.call("getitimer", libc::SYS_getitimer, &[which, q.scratch])?;
        let (interval_us, value_us) = q.read::<TimerPair>(0)?.to_units(1_000_000);
        *slot = ITimer {
            interval_us,
            value_us,
        };
    }
    let pid = q.remote.task().tid();
    let mut posix = listed
        .iter()
        .map(|t| posix_timer(q, pid, tids, t))
        .collect::<Result<Vec<_>, _>>()?;
    posix.sort_by_key(|t| t.id);
    Ok(Timers { itimers, posix })
}

fn posix_timer(q: &Query, pid: i32, tids: &[i32], t: &ProcTimer) -> Result<PosixTimer, DumpError> {
    check_clock(pid, tids, t)?;
    let id = t.id as u64;
    q.call("timer_gettime", libc::SYS_timer_gettime, &[id, q.scratch])?;
    let (interval_ns, remaining_ns) = q.read::<TimerPair>(0)?.to_units(1_000_000_000);
    let overrun = q.call("timer_getoverrun", libc::SYS_timer_getoverrun, &[id])? as i32;
    Ok(PosixTimer {
        id: t.id,
        clock: t.clock,
        notify: t.notify,
        signal: t.signal,
        target: t.target,
        sigev_value: t.sigev_value,
        interval_ns,
        remaining_ns,
        overrun,
    })
}

/// Refuses clocks that name something outside the task: a clock fd (`FD_TO_CLOCKID`) or
/// the CPU clock of another process (its own threads' clocks are fine).
fn check_clock(pid: i32, tids: &[i32], t: &ProcTimer) -> Result<(), DumpError> {
    if t.clock >= 0 {
        return Ok(());
    }
    let what = match cpu_clock_owner(t.clock) {
        None => "a clock file descriptor (dynamic POSIX clock)".to_string(),
        Some(owner) if owner == 0 || owner == pid || tids.contains(&owner) => return Ok(()),
        Some(owner) => format!("the CPU time of pid {owner}, outside the dump"),
    };
    Err(DumpError::unsupported(format!(
        "POSIX timer {} of pid {pid} measures {what}, which stasis cannot checkpoint",
        t.id
    )))
}

/// The pid or tid a CPU clock id names (0: the caller), `None` for a clock fd.
/// The kernel encodes them as `(~pid << 3) | per_thread << 2 | type`, type 3 being CLOCKFD.
pub fn cpu_clock_owner(clock: i32) -> Option<i32> {
    (clock & 7 != 3).then_some(!(clock >> 3))
}

#[cfg(test)]
mod tests {
    use super::cpu_clock_owner;

    #[test]
    fn cpu_clock_ids() {
        assert_eq!(cpu_clock_owner(-6), Some(0)); // CLOCK_PROCESS_CPUTIME_ID as stored
        assert_eq!(cpu_clock_owner(-253878), Some(31734)); // clock_getcpuclockid(31734)
        assert_eq!(cpu_clock_owner(((!5) << 3) | 3), None); // FD_TO_CLOCKID(5)
    }
}
