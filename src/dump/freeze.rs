//! Freezing one process: checks that it can be dumped, then seizes and stops every thread.
//! The tree around it is `tree.rs`.
//!
//! Everything that can refuse a dump without touching the root happens in [`preflight`],
//! before it is seized; [`check_process`] repeats the per-process refusals for every
//! process of the tree. [`Frozen`] owns the stopped threads; dropping it detaches them
//! all, so an error anywhere in the dump lets the process run on.

use super::DumpError;
use crate::abi::SigInfo;
use crate::jobctl::{self, QueuedStop};
use crate::proc;
use crate::sys::ptrace::{self, Seized, Stop};

/// Facts gathered before the freeze.
pub struct Preflight {
    pub stat: proc::Stat,
    pub status: proc::Status,
}

/// Refuses tasks stasis cannot dump, naming why.
pub fn preflight(pid: i32, shell_job: bool) -> Result<Preflight, DumpError> {
    if pid == std::process::id() as i32 {
        return Err(DumpError::SelfDump { pid });
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::NoSuchTask { pid });
    }
    let stat = proc::stat(pid)?;
    let status = proc::status(pid)?;
    if status.tgid != pid {
        return Err(DumpError::unsupported(format!(
            "pid {pid} is a thread of process {}; dump the process",
            status.tgid
        )));
    }
    if matches!(stat.state, 'Z' | 'X') {
        return Err(DumpError::Zombie { pid });
    }
    check_process(pid, &status)?;
    check_ids(pid, &stat, shell_job)?;
    Ok(Preflight { stat, status })
}

/// Refusals that apply to every process of the tree: traced by someone else, in
/// namespaces other than the dumper's, frozen by its cgroup, waiting in `vfork`. (Seccomp is dumped: see `seccomp.rs`.)
pub fn check_process(pid: i32, status: &proc::Status) -> Result<(), DumpError> {
    let me = std::process::id() as i32;
    if status.tracer_pid != 0 && status.tracer_pid != me {
        return Err(DumpError::Traced {
            pid,
            tracer: status.tracer_pid,
        });
    }
    super::ns::refuse_foreign(pid)?;
    super::cgroup::refuse_frozen(pid)?;
    refuse_vfork_wait(pid)
}

/// A thread inside `vfork` (or `clone`/`clone3` with `CLONE_VFORK`) sleeps until its child
/// execs or exits, and no ptrace stop interrupts that sleep: freezing it would wait
/// forever. Its child shares its address space; the usual wait is short (the child
/// execs). A thread that enters vfork between this check and its freeze is not caught.
fn refuse_vfork_wait(pid: i32) -> Result<(), DumpError> {
    const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
    for tid in proc::tids(pid)? {
        // A thread that exits meanwhile has nothing to say.
        let Ok(Some((nr, arg))) = proc::thread_syscall(pid, tid) else {
            continue;
        };
        let vfork = match nr {
            libc::SYS_vfork => true,
            libc::SYS_clone => arg & CLONE_VFORK != 0,
            libc::SYS_clone3 => clone3_flags(pid, arg) & CLONE_VFORK != 0,
            _ => false,
        };
        if vfork {
            return Err(DumpError::unsupported(format!(
                "thread {tid} of pid {pid} waits in vfork until its child execs or exits; stasis cannot checkpoint a vfork in progress, dump again once it is over"
            )));
        }
    }
    Ok(())
}

/// `clone_args.flags` at `args` in `pid` (0 if unreadable).
fn clone3_flags(pid: i32, args: u64) -> u64 {
    let mut flags = [0u8; 8];
    match crate::sys::mem::Mem::open(pid, false).and_then(|m| m.read(args, &mut flags)) {
        Ok(()) => u64::from_ne_bytes(flags),
        Err(_) => 0,
    }
}

/// The root restores its session and group only if it leads them (or with -j).
fn check_ids(pid: i32, stat: &proc::Stat, shell_job: bool) -> Result<(), DumpError> {
    if shell_job {
        return Ok(());
    }
    if stat.session != pid && super::ns::pid::is_ns_init(pid)? {
        return Err(DumpError::unsupported(format!(
            "the session leader {} of pid {pid}, the init of its pid namespace, is outside \
             that namespace (as CRIU, stasis refuses it); dump with --shell-job to restore \
             it in the restorer's session, which it cannot see either",
            stat.session
        )));
    }
    if stat.session != pid {
        return Err(DumpError::ForeignSession {
            pid,
            sid: stat.session,
        });
    }
    if stat.pgrp != pid {
        return Err(DumpError::ForeignGroup {
            pid,
            pgid: stat.pgrp,
        });
    }
    Ok(())
}

/// Every thread of a process, seized and stopped in a `PTRACE_EVENT_STOP`; the leader
/// (tid == pid) first. Dropping it detaches every thread.
pub struct Frozen {
    threads: Vec<Seized>,
    /// The signal that stopped the process by job control, if it was stopped when seized:
    /// it is stopped again with it when let go.
    pub stop_signal: Option<i32>,
    /// SIGSTOPs queued while it was stopped (process-wide: tid `None`), taken off their
    /// queue by the freeze (see [`take_queued_sigstops`]): saved with the queues, and
    /// queued again when it is let go.
    pub withheld: Vec<(Option<i32>, SigInfo)>,
}

/// A failed dump drops its `Frozen` processes, which detaches their threads: the
/// SIGSTOPs the freeze took from a stopped one are queued again, so that it is left as
/// it was.
impl Drop for Frozen {
    fn drop(&mut self) {
        let Some(pid) = self.threads.first().map(Seized::tid) else {
            return;
        };
        if self.withheld.is_empty() {
            return;
        }
        drop(std::mem::take(&mut self.threads));
        let _ = self.requeue_withheld(pid);
    }
}

/// Tasks attached to us before their turn in the freeze, by tid: processes the kernel
/// attached because a frozen task forked them (already stopped), and tasks seized while
/// their cgroup was frozen (an interrupt requested, not waited for yet).
#[derive(Default)]
pub struct Adopted {
    pub stopped: std::collections::HashMap<i32, Seized>,
    pub interrupted: std::collections::HashMap<i32, Seized>,
}

impl Frozen {
    pub fn pid(&self) -> i32 {
        self.threads[0].tid()
    }

    pub fn leader(&self) -> &Seized {
        &self.threads[0]
    }

    /// All threads, the leader first.
    pub fn threads(&self) -> &[Seized] {
        &self.threads
    }

    fn has(&self, tid: i32) -> bool {
        self.threads.iter().any(|t| t.tid() == tid)
    }

    /// Detach every thread: the process runs on (or stays stopped, if it was, by the same
    /// signal, with the SIGSTOPs the freeze took queued again). A process stopped by job
    /// control was never let out of its group stop (only out of the ptrace stop inside
    /// it): detached, each thread stops again at once with the signal of that stop
    /// (`JOBCTL_STOP_SIGMASK`), so no stop signal is sent — it would stay queued.
    pub fn release(mut self) -> Result<(), DumpError> {
        let pid = self.pid();
        for t in std::mem::take(&mut self.threads) {
            t.release()?;
        }
        self.requeue_withheld(pid)
    }

    /// Queues the SIGSTOPs the freeze took again, once the detached process is stopped.
    fn requeue_withheld(&mut self, pid: i32) -> Result<(), DumpError> {
        let withheld: Vec<QueuedStop> = (std::mem::take(&mut self.withheld).iter())
            .map(|&(tid, _)| QueuedStop {
                tid,
                signal: libc::SIGSTOP,
            })
            .collect();
        jobctl::requeue_after_stop(pid, &withheld).map_err(|what| DumpError::Unsupported { what })
    }

    /// SIGKILL the process: no thread of it runs another instruction. Returns a pidfd
    /// for [`Frozen::release_memory`] (none if that cannot be had: it is only a speed-up).
    pub fn sigkill(&self) -> Result<Option<std::os::fd::OwnedFd>, DumpError> {
        let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(self.pid())).ok();
        self.threads[0].sigkill()?;
        Ok(pidfd)
    }

    /// Frees the memory of the killed process from our side (`process_mrelease`) while
    /// its exit frees it from the other: two CPUs instead of one for what is most of the
    /// time a large process takes to die (1 GiB: about 120 ms alone, 60 ms so). Best
    /// effort: the process frees whatever is left itself.
    pub fn release_memory(pidfd: Option<std::os::fd::OwnedFd>) {
        use std::os::fd::AsFd;
        if let Some(fd) = pidfd {
            let _ = crate::sys::probe::process_mrelease(fd.as_fd());
        }
    }

    /// Waits until every thread of the killed process is gone.
    ///
    /// Ordering requirements: after [`Frozen::sigkill`]; the other threads are reaped
    /// before the leader — the kernel reports a leader's exit only once the rest of its
    /// thread group is gone.
    pub fn reap(mut self) -> Result<(), DumpError> {
        self.withheld.clear(); // killed: nothing to queue again
        let leader = self.threads.remove(0);
        for t in self.threads.drain(..) {
            t.reap()?;
        }
        leader.reap()?;
        Ok(())
    }
}

/// Seizes and stops every thread of `pid`, the leader first; `None` if the process turned
/// out to have exited (a zombie or gone) before it could be seized. `leader` is the
/// leader already attached and stopped by the kernel (a process forked during the freeze).
/// Processes forked meanwhile by the threads frozen here are added to `adopted`.
///
/// Ordering requirements: threads may be created while this runs, so `/proc/PID/task` is
/// listed again until a listing shows no thread that is not stopped yet. A stopped
/// thread creates no threads, and one created by a thread between its seize and its stop
/// is attached by the kernel (`PTRACE_O_TRACECLONE`) and collected from the clone event.
pub fn freeze(
    pid: i32,
    leader: Option<Seized>,
    adopted: &mut Adopted,
) -> Result<Option<Frozen>, DumpError> {
    let mut frozen = Frozen {
        threads: Vec::new(),
        stop_signal: None,
        withheld: Vec::new(),
    };
    match leader {
        Some(task) => frozen.threads.push(task),
        None => {
            if !freeze_thread(pid, pid, &mut frozen, adopted)? {
                return Ok(None);
            }
        }
    }
    loop {
        let fresh: Vec<i32> = proc::tids(pid)?
            .into_iter()
            .filter(|&t| !frozen.has(t))
            .collect();
        if fresh.is_empty() {
            return Ok(Some(frozen));
        }
        for tid in fresh {
            if !frozen.has(tid) {
                freeze_thread(pid, tid, &mut frozen, adopted)?;
            }
        }
    }
}

/// Seizes and stops thread `tid` of `pid`, and any thread or process it creates
/// meanwhile. Returns false if the thread exited first (a leader that did so leaves a
/// zombie, which the tree records as such).
fn freeze_thread(
    pid: i32,
    tid: i32,
    frozen: &mut Frozen,
    adopted: &mut Adopted,
) -> Result<bool, DumpError> {
    let task = match adopted.interrupted.remove(&tid) {
        Some(task) => task,
        None => match ptrace::seize(tid) {
            Ok(task) => {
                task.request_interrupt()?;
                task
            }
            Err(_) if thread_gone(tid) => return Ok(false),
            Err(e) => return Err(e.into()),
        },
    };
    let mut born = Vec::new();
    let mut group_stop = false;
    loop {
        match ptrace::wait_tid(tid)? {
            Stop::Event(sig) if sig == libc::SIGTRAP || group_stop => break,
            Stop::Event(sig) => {
                // A group stop (SIGSTOP, SIGTSTP...), which seizing does not end: start
                // the thread again and it traps at once on our interrupt, where syscalls
                // can be injected (the kernel labels that trap with the stop signal too,
                // while the group is stopped). It is stopped again when released, by the
                // signal the kernel reports here (the one of its last group stop).
                frozen.stop_signal = Some(sig);
                group_stop = true;
                task.request_interrupt()?;
                task.cont()?;
            }
            Stop::OtherEvent(ptrace::PTRACE_EVENT_CLONE | ptrace::PTRACE_EVENT_FORK) => {
                born.push(ptrace::adopt(task.event_msg()? as i32));
                task.request_interrupt()?;
                task.cont()?;
            }
            // A signal that arrived before the interrupt: deliver it, then stop.
            Stop::Signal(sig) => task.cont_with(sig)?,
            Stop::Exited(_) | Stop::Killed(_) => {
                task.forget();
                return Ok(false);
            }
            other => return Err(task.unexpected("freeze", other).into()),
        }
    }
    if group_stop {
        take_queued_sigstops(&task, frozen)?;
    }
    frozen.threads.push(task);
    for child in born {
        adopt_born(pid, child, frozen, adopted)?;
    }
    Ok(true)
}

/// A SIGSTOP sent to a process already stopped stays queued (only SIGCONT discards it),
/// and, being unblockable, it would be taken at the first syscall injected. Each one
/// queued for `task` (its own, then the process-wide one) is taken now with every
/// signal blocked — the thread is continued, reports it in a signal-delivery stop and
/// is continued without it into our interrupt — and kept in `frozen.withheld`.
fn take_queued_sigstops(task: &Seized, frozen: &mut Frozen) -> Result<(), DumpError> {
    let mut queued = Vec::new();
    for shared in [false, true] {
        let found = task.pending(shared)?;
        if let Some(&info) = found.iter().find(|i| i.signo() == libc::SIGSTOP) {
            queued.push(((!shared).then_some(task.tid()), info));
        }
    }
    if queued.is_empty() {
        return Ok(());
    }
    let mask = task.sigmask()?;
    task.set_sigmask(!0)?;
    for _ in &queued {
        task.cont()?;
        match ptrace::wait_tid(task.tid())? {
            Stop::Signal(libc::SIGSTOP) => {}
            other => return Err(task.unexpected("take a queued SIGSTOP", other).into()),
        }
        task.request_interrupt()?;
        task.cont()?;
        match ptrace::wait_tid(task.tid())? {
            Stop::Event(_) => {}
            other => return Err(task.unexpected("stop after a SIGSTOP", other).into()),
        }
    }
    task.set_sigmask(mask)?;
    frozen.withheld.extend(queued);
    Ok(())
}

/// A task attached by the kernel at its creation starts in a `PTRACE_EVENT_STOP`. A new
/// thread of `pid` joins `frozen`; a new process goes to `adopted`, stopped.
fn adopt_born(
    pid: i32,
    child: Seized,
    frozen: &mut Frozen,
    adopted: &mut Adopted,
) -> Result<(), DumpError> {
    match ptrace::wait_tid(child.tid())? {
        Stop::Event(_) => {}
        Stop::Exited(_) | Stop::Killed(_) => {
            child.forget();
            return Ok(());
        }
        other => return Err(child.unexpected("freeze new task", other).into()),
    }
    if proc::status(child.tid())?.tgid == pid {
        frozen.threads.push(child);
    } else {
        adopted.stopped.insert(child.tid(), child);
    }
    Ok(())
}

/// Whether `tid` has exited or is exiting (seizing it then fails with ESRCH or EPERM).
fn thread_gone(tid: i32) -> bool {
    proc::stat(tid).map_or(true, |s| matches!(s.state, 'Z' | 'X'))
}
