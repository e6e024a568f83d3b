//! Scheduling, the restore side of `dump/sched.rs`: timer slack (injected), I/O
//! priority, nice, CPU affinity and policy (set from outside on the child's tid), and
//! the process's `oom_score_adj`. Every thread gets its own.

use super::staged::Staged;
use super::RestoreError;
use crate::abi::SchedAttr;
use crate::image::task::{TaskImage, ThreadSched};
use crate::sys::sched;

const SCHED_ATTR_SIZE: u32 = 56;
/// `SCHED_FLAG_RESET_ON_FORK | SCHED_FLAG_RECLAIM | SCHED_FLAG_DL_OVERRUN`.
const SETTABLE_FLAGS: u64 = 0x7;
const SCHED_FLAG_UTIL_CLAMP: u64 = 0x20 | 0x40;
const UCLAMP_DEFAULT: (u32, u32) = (0, 1024);

/// Scheduling of every thread (each sets its own timer slack) and `oom_score_adj`.
///
/// Ordering requirements: after the threads exist (each gets its own attributes, not the
/// leader's it inherited), before the credentials drop (raising nice or a real-time
/// policy needs CAP_SYS_NICE). The timer slacks are added to the threads' pending
/// batches, which run before anything is set from outside (see [`restore_thread`]);
/// nothing else here concerns the pending calls.
pub fn restore_sched(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    let mut slack = false;
    for (i, t) in task.threads.iter().enumerate() {
        if let Some(args) = timerslack(&t.sched) {
            s.batch_of(i)
                .call("prctl(PR_SET_TIMERSLACK)", libc::SYS_prctl, &args);
            slack = true;
        }
    }
    if slack {
        s.flush()?;
    }
    for t in &task.threads {
        restore_thread(t.tid, &t.sched)?;
    }
    if super::inherited::oom_score_adj() == Some(task.oom_score_adj) {
        return Ok(()); // inherited already
    }
    restore_oom_score_adj(task.pid, task.oom_score_adj)
}

/// The arguments of the `prctl(PR_SET_TIMERSLACK)` a thread with `s` runs, unless its
/// slack is the inherited one.
fn timerslack(s: &ThreadSched) -> Option<[u64; 2]> {
    let set = s.timerslack_ns != 0 && Some(s.timerslack_ns) != super::inherited::timerslack();
    set.then_some([libc::PR_SET_TIMERSLACK as u64, s.timerslack_ns])
}

/// One thread's scheduling attributes but its timer slack, set from outside.
///
/// Ordering requirements: timer slack before the policy (a real-time policy forces the
/// slack to 0 and ignores `PR_SET_TIMERSLACK`); nice before the policy (under a
/// real-time policy `sched_setattr` carries no nice value); affinity before the policy
/// (a `SCHED_DEADLINE` task's affinity cannot be changed).
fn restore_thread(tid: i32, s: &ThreadSched) -> Result<(), RestoreError> {
    sched::set_ioprio(tid, s.ioprio)?;
    sched::set_nice(tid, s.nice)?;
    set_affinity(tid, &s.affinity)?;
    sched::sched_setattr(tid, &sched_attr(s))?;
    Ok(())
}

fn sched_attr(s: &ThreadSched) -> SchedAttr {
    let clamp = (s.util_min, s.util_max);
    let clamped = clamp != UCLAMP_DEFAULT && clamp != (0, 0);
    SchedAttr {
        size: SCHED_ATTR_SIZE,
        policy: s.policy,
        flags: (s.flags & SETTABLE_FLAGS) | if clamped { SCHED_FLAG_UTIL_CLAMP } else { 0 },
        nice: s.nice,
        priority: s.priority,
        runtime: s.runtime,
        deadline: s.deadline,
        period: s.period,
        util_min: s.util_min,
        util_max: s.util_max,
    }
}

fn set_affinity(tid: i32, words: &[u64]) -> Result<(), RestoreError> {
    let mut set = nix::sched::CpuSet::new();
    for cpu in 0..words.len() * 64 {
        if words[cpu / 64] & (1 << (cpu % 64)) != 0 {
            set.set(cpu).map_err(|_| RestoreError::Unsupported {
                what: format!("tid {tid} was bound to CPU {cpu}, beyond what stasis can set"),
            })?;
        }
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).map_err(|e| {
        RestoreError::Unsupported {
            what: format!("restore the CPU affinity {words:x?} of tid {tid}: {e} (are those CPUs online here?)"),
        }
    })
}

/// `/proc/PID/oom_score_adj`. Lowering it below the restorer's own needs CAP_SYS_RESOURCE.
fn restore_oom_score_adj(pid: i32, value: i32) -> Result<(), RestoreError> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, value.to_string()).map_err(|source| RestoreError::Write { path, source })
}
