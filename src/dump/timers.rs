//! Timers: the three interval timers (`getitimer`) and the POSIX timers, listed by
//! `/proc/PID/timers` and read with `timer_gettime`/`timer_getoverrun`, all injected
//! into the task. The restore side is `restore/timers.rs`.

use super::DumpError;
use crate::abi::TimerPair;
use crate::image::task::{ITimer, PosixTimer, Timers};
use crate::proc::timers::ProcTimer;
use crate::sys::batch::{Batch, Done, Out, Ret};

/// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
const ITIMERS: [u64; 3] = [0, 1, 2];

/// Reads every timer of the task, in batch `b`. `listed` is `/proc/PID/timers`.
/// `tids` are the process's threads, whose CPU clocks a timer may measure.
pub fn query<'a>(
    b: &mut Batch,
    pid: i32,
    listed: &'a [ProcTimer],
    tids: &[i32],
) -> Result<impl FnOnce(&Done) -> Timers + 'a, DumpError> {
    let itimers: Vec<Out<TimerPair>> = ITIMERS
        .iter()
        .map(|&which| {
            let out = b.out::<TimerPair>();
            b.call("getitimer", libc::SYS_getitimer, &[which, out.addr()]);
            out
        })
        .collect();
    let posix = listed
        .iter()
        .map(|t| posix_timer(b, pid, tids, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(move |d: &Done| {
        let mut out = Timers::default();
        for (slot, pair) in out.itimers.iter_mut().zip(itimers) {
            let (interval_us, value_us) = d.get(pair).to_units(1_000_000);
            *slot = ITimer {
                interval_us,
                value_us,
            };
        }
        out.posix = posix.into_iter().map(|p| p.finish(d)).collect();
        out.posix.sort_by_key(|t| t.id);
        out
    })
}

/// A POSIX timer whose value and overrun a batch reads.
struct Asked<'a> {
    t: &'a ProcTimer,
    value: Out<TimerPair>,
    overrun: Ret,
}

impl Asked<'_> {
    fn finish(self, d: &Done) -> PosixTimer {
        let t = self.t;
        let (interval_ns, remaining_ns) = d.get(self.value).to_units(1_000_000_000);
        PosixTimer {
            id: t.id,
            clock: t.clock,
            notify: t.notify,
            signal: t.signal,
            target: t.target,
            sigev_value: t.sigev_value,
            interval_ns,
            remaining_ns,
            overrun: d.ret(self.overrun) as i32,
        }
    }
}

fn posix_timer<'a>(
    b: &mut Batch,
    pid: i32,
    tids: &[i32],
    t: &'a ProcTimer,
) -> Result<Asked<'a>, DumpError> {
    check_clock(pid, tids, t)?;
    let id = t.id as u64;
    let value = b.out::<TimerPair>();
    b.call(
        "timer_gettime",
        libc::SYS_timer_gettime,
        &[id, value.addr()],
    );
    let overrun = b.call("timer_getoverrun", libc::SYS_timer_getoverrun, &[id]);
    Ok(Asked { t, value, overrun })
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
