//! Freezing: checks that a process can be dumped, then seizes and stops every thread.
//!
//! Everything that can refuse a dump without touching the task happens in [`preflight`],
//! before the task is seized. [`Frozen`] owns the stopped threads; dropping it detaches
//! them all, so an error anywhere in the dump lets the process run on.

use super::DumpError;
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
    if status.tracer_pid != 0 {
        return Err(DumpError::Traced {
            pid,
            tracer: status.tracer_pid,
        });
    }
    check_ids(pid, &stat, shell_job)?;
    check_alone(pid)?;
    Ok(Preflight { stat, status })
}

/// A lone process restores its session and group only if it leads them (or with -j).
fn check_ids(pid: i32, stat: &proc::Stat, shell_job: bool) -> Result<(), DumpError> {
    if shell_job {
        return Ok(());
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

/// Refuses a task that other processes depend on: its children, or members of the session
/// or process group it leads. Dumping it alone would orphan them (they would keep its pid
/// as their session or group id, so it could not even be restored).
fn check_alone(pid: i32) -> Result<(), DumpError> {
    let Some((other, why)) = dependents(pid)?.into_iter().next() else {
        return Ok(());
    };
    Err(DumpError::unsupported(format!(
        "pid {pid} is not alone: pid {other} is {why}; dumping process trees is not supported yet"
    )))
}

/// Every other process that is a child of `pid` or shares its session or group.
fn dependents(pid: i32) -> Result<Vec<(i32, &'static str)>, DumpError> {
    let dir = std::fs::read_dir("/proc").map_err(|source| DumpError::Stat {
        path: "/proc".into(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(other) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process that exits while we look is no dependent.
        let Ok(st) = proc::stat(other) else { continue };
        if other == pid {
            continue;
        }
        if st.ppid == pid {
            out.push((other, "its child"));
        } else if st.session == pid {
            out.push((other, "in its session"));
        } else if st.pgrp == pid {
            out.push((other, "in its process group"));
        }
    }
    Ok(out)
}

/// Every thread of a process, seized and stopped in a `PTRACE_EVENT_STOP`; the leader
/// (tid == pid) first. Dropping it detaches every thread.
pub struct Frozen {
    threads: Vec<Seized>,
}

impl Frozen {
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

    /// Detach every thread: the process runs on.
    pub fn release(self) -> Result<(), DumpError> {
        for t in self.threads {
            t.release()?;
        }
        Ok(())
    }

    /// SIGKILL the process and reap every thread.
    ///
    /// Ordering requirements: the other threads are reaped before the leader — the kernel
    /// reports a leader's exit only once the rest of its thread group is gone.
    pub fn kill(mut self) -> Result<(), DumpError> {
        let leader = self.threads.remove(0);
        leader.sigkill()?;
        for t in self.threads.drain(..) {
            t.reap()?;
        }
        leader.reap()?;
        Ok(())
    }
}

/// Seizes and stops every thread of `pid`, the leader first.
///
/// Ordering requirements: threads may be created while this runs, so `/proc/PID/task` is
/// listed again until a listing shows no thread that is not stopped yet. A stopped
/// thread creates no threads, and one created by a thread between its seize and its stop
/// is attached by the kernel (`PTRACE_O_TRACECLONE`) and collected from the clone event.
pub fn freeze(pid: i32) -> Result<Frozen, DumpError> {
    let mut frozen = Frozen {
        threads: Vec::new(),
    };
    freeze_thread(pid, pid, &mut frozen)?;
    loop {
        let fresh: Vec<i32> = proc::tids(pid)?
            .into_iter()
            .filter(|&t| !frozen.has(t))
            .collect();
        if fresh.is_empty() {
            return Ok(frozen);
        }
        for tid in fresh {
            if !frozen.has(tid) {
                freeze_thread(pid, tid, &mut frozen)?;
            }
        }
    }
}

/// Seizes and stops thread `tid` of `pid`, and any thread it creates meanwhile. A thread
/// other than the leader that exits first is skipped.
fn freeze_thread(pid: i32, tid: i32, frozen: &mut Frozen) -> Result<(), DumpError> {
    let task = match ptrace::seize(tid) {
        Ok(task) => task,
        Err(_) if tid != pid && thread_gone(tid) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut born = Vec::new();
    task.request_interrupt()?;
    loop {
        match ptrace::wait_tid(tid)? {
            Stop::Event(sig) if sig == libc::SIGTRAP => break,
            Stop::Event(_) => return Err(stopped_by_job_control(pid)),
            Stop::OtherEvent(ptrace::PTRACE_EVENT_CLONE) => {
                born.push(ptrace::adopt(task.event_msg()? as i32));
                task.request_interrupt()?;
                task.cont()?;
            }
            // A signal that arrived before the interrupt: deliver it, then stop.
            Stop::Signal(sig) => task.cont_with(sig)?,
            Stop::Exited(_) | Stop::Killed(_) if tid != pid => {
                task.forget();
                return Ok(());
            }
            other => return Err(task.unexpected("freeze", other).into()),
        }
    }
    frozen.threads.push(task);
    for child in born {
        adopt_born(pid, child, frozen)?;
    }
    Ok(())
}

/// A thread attached by the kernel at its creation starts in a `PTRACE_EVENT_STOP`.
/// A clone that is not a thread of `pid` (no `CLONE_THREAD`) is let go.
fn adopt_born(pid: i32, child: Seized, frozen: &mut Frozen) -> Result<(), DumpError> {
    match ptrace::wait_tid(child.tid())? {
        Stop::Event(sig) if sig == libc::SIGTRAP => {}
        Stop::Event(_) => return Err(stopped_by_job_control(pid)),
        Stop::Exited(_) | Stop::Killed(_) => {
            child.forget();
            return Ok(());
        }
        other => return Err(child.unexpected("freeze new thread", other).into()),
    }
    let tgid = proc::status(child.tid())?.tgid;
    if tgid == pid {
        frozen.threads.push(child);
    } else {
        child.release()?;
    }
    Ok(())
}

/// Whether `tid` has exited or is exiting (seizing it then fails with ESRCH or EPERM).
fn thread_gone(tid: i32) -> bool {
    proc::stat(tid).map_or(true, |s| matches!(s.state, 'Z' | 'X'))
}

fn stopped_by_job_control(pid: i32) -> DumpError {
    DumpError::unsupported(format!(
        "pid {pid} is stopped by job control; dumping stopped tasks is not supported yet"
    ))
}
