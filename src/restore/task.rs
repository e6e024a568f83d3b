//! Per-task and per-thread state, the restore side of `dump/task.rs`: session and group,
//! personality, name, signal handlers; per thread altstack, clear_child_tid, rseq, robust
//! list and name; queued signals; and finally the registers and the resume. Credentials
//! (per thread too) are `restore/creds.rs`.

use super::child::Child;
use super::staged::Staged;
use super::RestoreError;
use crate::abi::{AltStack, SigInfo};
use crate::image::task::{TaskImage, ThreadImage};
use crate::jobctl::{self, QueuedStop};
use crate::sys::batch::Batch;
use crate::sys::inherit;
use crate::sys::ptrace::Seized;

const RSEQ_SIG_FLAGS: u64 = 0;

/// Personality, added to the pending batch. (Names are per thread: the leader's, which
/// is `comm`, is set with the others in [`restore_thread_attrs`].)
pub fn restore_attrs(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    if super::inherited::personality() == Some(task.personality) {
        return Ok(()); // inherited already (no earlier stage changes it)
    }
    s.batch().call(
        "personality",
        libc::SYS_personality,
        &[u64::from(task.personality)],
    );
    Ok(())
}

/// Resource limits. Raising a hard limit above the restorer's needs CAP_SYS_RESOURCE,
/// which is refused with the limit named rather than restored lower.
///
/// The child inherited stasis's limits: only those that differ are set, in the pending
/// batch.
pub fn restore_rlimits(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    let pid = task.pid;
    for (res, &(soft, hard)) in task.rlimits.iter().enumerate() {
        if inherit::own_rlimit(res as u32) == Ok((soft, hard)) {
            continue;
        }
        let b = s.batch();
        let addr = b.put(&[soft.to_ne_bytes(), hard.to_ne_bytes()].concat());
        let r = b.try_call("prlimit64", libc::SYS_prlimit64, &[0, res as u64, addr, 0]);
        s.check(move |done| match done.raw(r) {
            r if r < 0 => Err(RestoreError::Unsupported {
                what: format!("set resource limit {res} of pid {pid} to {soft}/{hard}: {} (raising a hard limit needs CAP_SYS_RESOURCE)", nix::errno::Errno::from_raw(-r as i32)),
            }),
            _ => Ok(()),
        });
    }
    Ok(())
}

/// Handlers for every signal but SIGKILL and SIGSTOP. The child inherited stasis's
/// actions (handlers, flags, masks): only those that differ are set, in the pending
/// batch.
pub fn restore_sigactions(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    let b = s.batch();
    for (i, act) in task.sigactions.iter().enumerate() {
        let sig = i as u64 + 1;
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        if inherit::own_sigaction(sig as i32).as_ref() == Ok(act) {
            continue;
        }
        let addr = b.put_pod(act);
        b.call("rt_sigaction", libc::SYS_rt_sigaction, &[sig, addr, 0, 8]);
    }
    Ok(())
}

/// sigaltstack, clear_child_tid, rseq, robust list and name of every thread, each set by
/// the thread itself (all of these are per-thread kernel state), in its pending batch.
pub fn restore_thread_attrs(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    for (i, t) in task.threads.iter().enumerate() {
        thread_attrs(s.batch_of(i), t);
    }
    Ok(())
}

/// The calls that set thread `t`'s attributes, run by that thread, added to `b`.
fn thread_attrs(b: &mut Batch, t: &ThreadImage) {
    // SS_ONSTACK is reported, not settable: the kernel derives it from the stack pointer.
    let alt = AltStack {
        flags: t.altstack.flags & !libc::SS_ONSTACK,
        ..t.altstack
    };
    let alt = if alt.flags & libc::SS_DISABLE != 0 {
        AltStack {
            flags: libc::SS_DISABLE,
            ..Default::default()
        }
    } else {
        alt
    };
    let addr = b.put_pod(&alt);
    b.call("sigaltstack", libc::SYS_sigaltstack, &[addr, 0]);
    b.call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        &[t.clear_child_tid],
    );
    if t.robust_list != 0 {
        b.call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            &[t.robust_list, t.robust_list_len],
        );
    }
    if let Some(r) = &t.rseq {
        let args = [
            r.rseq_abi_pointer,
            u64::from(r.rseq_abi_size),
            RSEQ_SIG_FLAGS,
            u64::from(r.signature),
        ];
        b.call("rseq", libc::SYS_rseq, &args);
    }
    let name = b.put_str(&t.comm);
    b.call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, name],
    );
}

/// Requeues saved signals, process-wide then per thread, with their full siginfo. Every
/// signal is blocked in the child until the final mask is set. In a process that was
/// `stopped` by job control, the stop signals queued behind its stop are left for
/// [`resume`], which queues them once it is stopped again.
///
/// Added to the pending batch, unless a SIGTRAP is among them: a batch lets SIGTRAP
/// through while it runs (see `sys/batch.rs`), so once one is queued every call must be
/// a single one (the pending batch runs first).
pub fn queue_signals(s: &mut Staged, task: &TaskImage, stopped: bool) -> Result<(), RestoreError> {
    let seen = |id: i32| super::ns::pid::view(task.pid, id) as u64;
    let pid = seen(task.pid);
    let shared = task.shared_pending.iter().map(|i| (None, i));
    let own = task
        .threads
        .iter()
        .flat_map(|t| t.pending.iter().map(move |i| (Some(seen(t.tid)), i)));
    let all: Vec<(Option<u64>, &SigInfo)> = shared
        .chain(own)
        .filter(|(_, i)| !(stopped && jobctl::is_stop_signal(i.signo())))
        .collect();
    if all.iter().any(|(_, i)| i.signo() == libc::SIGTRAP) {
        s.flush()?;
        return queue_singly(s.child(), &all);
    }
    for (tid, info) in all {
        if s.room() < 1024 {
            s.flush()?;
        }
        queue(s.batch(), pid, tid, info);
    }
    Ok(())
}

/// Every signal of `all` queued by its own injected call, with every signal blocked in
/// every thread first (a thread forked or created by a batch inherited a mask letting
/// SIGTRAP through, which would let the queued one in at the next injected call).
fn queue_singly(child: &Child, all: &[(Option<u64>, &SigInfo)]) -> Result<(), RestoreError> {
    child.task.set_sigmask(!0)?;
    for t in &child.threads {
        t.task.set_sigmask(!0)?;
    }
    let remote = child.remote();
    for &(tid, info) in all {
        let mut b = remote.batch();
        let pid = super::ns::pid::view(child.pid(), child.pid()) as u64;
        queue(&mut b, pid, tid, info);
        remote.run_singly(&b)?;
    }
    Ok(())
}

/// `rt_sigqueueinfo` (process-wide) or `rt_tgsigqueueinfo` (to thread `tid`) of `info`.
fn queue(b: &mut Batch, pid: u64, tid: Option<u64>, info: &SigInfo) {
    let addr = b.put_pod(info);
    let signo = info.signo() as u64;
    match tid {
        None => b.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            &[pid, signo, addr],
        ),
        Some(tid) => b.call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            &[pid, tid, signo, addr],
        ),
    };
}

/// Loads every thread's saved registers and mask, unmaps the helper and lets the process
/// go; on failure the half-built process is killed.
///
/// Ordering requirements: this is the last step. Every other thread gets its final
/// registers and is parked first, so none will execute helper code again; then the
/// leader unmaps the helper, from the helper itself: it is stopped at its syscall exit
/// and never returns there, because its saved registers replace the injected ones before
/// it resumes. Parking puts each thread inside signal delivery so the kernel applies its
/// own syscall-restart rules to the saved registers (a thread frozen in `read` re-enters
/// it, one in `nanosleep` returns EINTR, as after any signal). Only then is any thread
/// detached. A process sharing its parent's address space (`unmap_helper` false) leaves
/// the helper to that parent, which resumes after it and still runs from it.
pub fn resume(
    child: Child,
    task: &TaskImage,
    stop_signal: Option<i32>,
    unmap_helper: bool,
) -> Result<(), RestoreError> {
    match load_all(&child, task, unmap_helper) {
        Ok(()) => release_all(child, task, stop_signal),
        Err(e) => {
            child.kill_and_reap();
            Err(e)
        }
    }
}

fn load_all(child: &Child, task: &TaskImage, unmap_helper: bool) -> Result<(), RestoreError> {
    for (thread, t) in child.threads.iter().zip(&task.threads[1..]) {
        load_and_park(&thread.task, t)?;
    }
    if unmap_helper {
        child.remote().call(
            "munmap(helper)",
            libc::SYS_munmap,
            &[child.helper, super::child::HELPER_LEN],
        )?;
    }
    load_and_park(&child.task, &task.threads[0])
}

/// Registers, xsave area and mask of one thread, then a clean stop.
fn load_and_park(task: &Seized, t: &ThreadImage) -> Result<(), RestoreError> {
    task.set_regs(&t.regs)?;
    if !t.xsave.is_empty() {
        let mut xsave = t.xsave.clone();
        xsave.resize(xstate_len(task)?, 0);
        task.set_xstate(&xsave)?;
    }
    task.set_sigmask(t.sigmask)?;
    task.park()?;
    Ok(())
}

/// The size of the xsave area `PTRACE_GETREGSET` hands out: the same for every task of
/// this boot (the kernel's `fpu_user_cfg.max_size`), so read from the first thread
/// loaded and kept for the run.
fn xstate_len(task: &Seized) -> Result<usize, RestoreError> {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&len) = LEN.get() {
        return Ok(len);
    }
    let len = task.xstate()?.len();
    Ok(*LEN.get_or_init(|| len))
}

/// Detaches every thread. A process that was stopped by job control gets its stop signal
/// first: queued while it is still parked, it stops the process before any instruction
/// runs; the stop signals that were queued behind that stop follow once it is stopped.
fn release_all(
    child: Child,
    task: &TaskImage,
    stop_signal: Option<i32>,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    let stop_failed = |e: String| RestoreError::Unsupported {
        what: format!("stop pid {pid} again (it was stopped at dump): {e}"),
    };
    if let Some(sig) = stop_signal {
        jobctl::stop(pid, sig).map_err(stop_failed)?;
    }
    for thread in child.threads {
        thread.task.release()?;
    }
    child.task.release()?;
    if stop_signal.is_some() {
        let threads = task.threads.iter().map(|t| (t.tid, &t.pending[..]));
        let queued = QueuedStop::from_queues(&task.shared_pending, threads);
        jobctl::requeue_after_stop(pid, &queued).map_err(stop_failed)?;
    }
    Ok(())
}
