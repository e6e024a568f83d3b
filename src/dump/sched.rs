//! Scheduling: nice, policy and its parameters, CPU affinity and I/O priority (read from
//! outside, they take a tid), timer slack (injected `PR_GET_TIMERSLACK`), and the
//! process's `oom_score_adj`. The restore side is `restore/sched.rs`.

use super::DumpError;
use crate::image::task::ThreadSched;
use crate::sys::batch::{Batch, Done};
use crate::sys::sched;

/// Scheduling attributes of thread `tid`; `timerslack_ns` comes from the injected query.
pub fn thread_sched(tid: i32, timerslack_ns: u64) -> Result<ThreadSched, DumpError> {
    let attr = sched::sched_getattr(tid)?;
    Ok(ThreadSched {
        nice: sched::nice(tid)?,
        policy: attr.policy,
        flags: attr.flags,
        priority: attr.priority,
        runtime: attr.runtime,
        deadline: attr.deadline,
        period: attr.period,
        util_min: attr.util_min,
        util_max: attr.util_max,
        affinity: affinity(tid)?,
        timerslack_ns,
        ioprio: sched::ioprio(tid)?,
    })
}

fn affinity(tid: i32) -> Result<Vec<u64>, DumpError> {
    let pid = nix::unistd::Pid::from_raw(tid);
    let set = nix::sched::sched_getaffinity(pid)
        .map_err(|e| DumpError::unsupported(format!("sched_getaffinity of tid {tid}: {e}")))?;
    let cpus = nix::sched::CpuSet::count();
    let mut words = vec![0u64; cpus.div_ceil(64)];
    for cpu in (0..cpus).filter(|&c| set.is_set(c).unwrap_or(false)) {
        words[cpu / 64] |= 1 << (cpu % 64);
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

/// `PR_GET_TIMERSLACK` of the querying thread, in ns, asked in batch `b`.
pub fn query_timerslack(b: &mut Batch) -> impl FnOnce(&Done) -> u64 {
    let op = libc::PR_GET_TIMERSLACK as u64;
    let r = b.call("prctl(PR_GET_TIMERSLACK)", libc::SYS_prctl, &[op]);
    move |d| d.ret(r)
}
