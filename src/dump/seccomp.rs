//! Seccomp: each thread's mode (`/proc/PID/task/TID/status` `Seccomp:`) and filter chain
//! (`PTRACE_SECCOMP_GET_FILTER`, flags from `PTRACE_GET_SECCOMP_METADATA`). The kernel
//! shares one chain between threads (inherited at clone, or synced with
//! `SECCOMP_FILTER_FLAG_TSYNC`) without showing it, so, as CRIU does, identical filters
//! on identical chains are taken to be one: the image holds them once, as a tree.
//!
//! Every thread under seccomp is first switched to `PTRACE_O_SUSPEND_SECCOMP`, so the
//! queries injected into it later pass its filters. A filter that can hand syscalls to a
//! user-space listener (`SECCOMP_RET_USER_NOTIF`) is refused: the listener lives outside
//! the task. The restore side is `restore/seccomp.rs`.

use super::DumpError;
use crate::image::seccomp::{
    SeccompFilter, ThreadSeccomp, FILTER_FLAG_LOG, MODE_DISABLED, MODE_FILTER, MODE_STRICT,
};
use crate::image::task::ThreadImage;
use crate::sys::ptrace::Seized;

/// `BPF_RET | BPF_K`: return a constant.
const BPF_RET_K: u64 = 0x06;
/// `SECCOMP_RET_ACTION_FULL` and `SECCOMP_RET_USER_NOTIF`.
const RET_ACTION_FULL: u64 = 0xffff_0000;
const RET_USER_NOTIF: u64 = 0x7fc0_0000;

/// Suspends seccomp in every filtered thread and fills each thread's `seccomp` in
/// `states` (same order as `threads`); returns the process's distinct filters.
///
/// Ordering requirements: before any syscall is injected into the threads.
pub fn collect(
    pid: i32,
    threads: &[Seized],
    states: &mut [ThreadImage],
) -> Result<Vec<SeccompFilter>, DumpError> {
    let mut filters = Vec::new();
    for (task, state) in threads.iter().zip(states.iter_mut()) {
        state.seccomp = thread(pid, task, &mut filters)?;
    }
    Ok(filters)
}

fn thread(
    pid: i32,
    task: &Seized,
    filters: &mut Vec<SeccompFilter>,
) -> Result<ThreadSeccomp, DumpError> {
    let tid = task.tid();
    let mode = crate::proc::thread_status(pid, tid)?.seccomp;
    if mode == MODE_DISABLED {
        return Ok(ThreadSeccomp::default());
    }
    if mode != MODE_STRICT && mode != MODE_FILTER {
        return Err(DumpError::unsupported(format!(
            "thread {tid} of pid {pid} has seccomp mode {mode}, which stasis does not know"
        )));
    }
    task.suspend_seccomp().map_err(|e| {
        let why = std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
        DumpError::unsupported(format!(
            "thread {tid} of pid {pid} runs under seccomp (mode {mode}) and suspending it with PTRACE_O_SUSPEND_SECCOMP failed ({why}): stasis needs CAP_SYS_ADMIN and must not run under seccomp itself"
        ))
    })?;
    if mode == MODE_STRICT {
        return Ok(ThreadSeccomp { mode, filter: None });
    }
    let mut newest = None;
    for (index, filter) in chain(task)?.into_iter().enumerate() {
        refuse_listener(pid, tid, index, &filter.insns)?;
        newest = Some(intern(
            filters,
            SeccompFilter {
                prev: newest,
                ..filter
            },
        ));
    }
    Ok(ThreadSeccomp {
        mode,
        filter: newest,
    })
}

/// The thread's filters, oldest first, `prev` not yet set.
fn chain(task: &Seized) -> Result<Vec<SeccompFilter>, DumpError> {
    let mut out = Vec::new();
    while let Some(insns) = task.seccomp_filter(out.len() as u64)? {
        let flags = task.seccomp_flags(out.len() as u64)? as u32 & FILTER_FLAG_LOG;
        out.push(SeccompFilter {
            prev: None,
            flags,
            insns,
        });
    }
    Ok(out)
}

/// The index of `f` in `filters`, added if no equal filter (same program, flags and
/// predecessor) is there yet.
fn intern(filters: &mut Vec<SeccompFilter>, f: SeccompFilter) -> u32 {
    let at = filters.iter().position(|g| *g == f).unwrap_or_else(|| {
        filters.push(f);
        filters.len() - 1
    });
    at as u32
}

/// Refuses a filter with a `return SECCOMP_RET_USER_NOTIF` instruction. (One that computes
/// its return value cannot be told apart: such programs are not generated in practice.)
fn refuse_listener(pid: i32, tid: i32, index: usize, insns: &[u64]) -> Result<(), DumpError> {
    let notifies = insns
        .iter()
        .any(|&i| i & 0xffff == BPF_RET_K && (i >> 32) & RET_ACTION_FULL == RET_USER_NOTIF);
    if !notifies {
        return Ok(());
    }
    Err(DumpError::unsupported(format!(
        "seccomp filter {index} of thread {tid} of pid {pid} passes syscalls to a user-space listener (SECCOMP_RET_USER_NOTIF), which stasis cannot checkpoint"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(prev: Option<u32>, k: u64) -> SeccompFilter {
        SeccompFilter {
            prev,
            flags: 0,
            insns: vec![BPF_RET_K | k << 32],
        }
    }

    #[test]
    fn equal_chains_share_filters() {
        let mut filters = Vec::new();
        let a = intern(&mut filters, filter(None, 0x7fff_0000));
        let b = intern(&mut filters, filter(Some(a), 0x0005_0001));
        // Another thread with the same first filter but a different second one.
        assert_eq!(intern(&mut filters, filter(None, 0x7fff_0000)), a);
        let c = intern(&mut filters, filter(Some(a), 0x0005_0002));
        assert_eq!((a, b, c), (0, 1, 2));
        // The same program on another chain is another filter.
        assert_eq!(intern(&mut filters, filter(Some(c), 0x0005_0001)), 3);
    }

    #[test]
    fn user_notif_is_refused() {
        let allow = [BPF_RET_K | 0x7fff_0000 << 32];
        assert!(refuse_listener(1, 1, 0, &allow).is_ok());
        let notify = [0x20, BPF_RET_K | RET_USER_NOTIF << 32];
        let e = refuse_listener(7, 8, 1, &notify).unwrap_err().to_string();
        assert_eq!(
            e,
            "seccomp filter 1 of thread 8 of pid 7 passes syscalls to a user-space listener (SECCOMP_RET_USER_NOTIF), which stasis cannot checkpoint"
        );
    }
}
