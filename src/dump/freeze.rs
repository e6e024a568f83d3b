//! Freezing: checks that a task can be dumped, then seizes and stops it.
//!
//! Everything that can refuse a dump without touching the task happens in [`preflight`],
//! before the task is seized.

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
    if status.seccomp != 0 {
        return Err(DumpError::unsupported(format!(
            "pid {pid} runs under seccomp (mode {}); saving seccomp filters is not supported yet",
            status.seccomp
        )));
    }
    let threads = proc::tids(pid)?.len();
    if threads != 1 {
        return Err(DumpError::Threads { pid, threads });
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

/// Seizes `pid` and stops it with `PTRACE_INTERRUPT`.
pub fn freeze(pid: i32) -> Result<Seized, DumpError> {
    let task = ptrace::seize(pid)?;
    match task.interrupt()? {
        Stop::Event(sig) if sig == libc::SIGTRAP => Ok(task),
        Stop::Event(_) => Err(DumpError::unsupported(format!(
            "pid {pid} is stopped by job control; dumping stopped tasks is not supported yet"
        ))),
        other => Err(task.unexpected("freeze", other).into()),
    }
}
