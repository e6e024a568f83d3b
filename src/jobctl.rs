//! Job-control stops, shared by the dump (`-R` lets a stopped process go) and the
//! restore: stopping a restored process again with the very signal that stopped it (its
//! parent's `waitid(WSTOPPED)` and a shell's job table report that signal; a process
//! released by `-R` never left its group stop and needs none), and queueing again the
//! stop signals sent to it while it was stopped, which the kernel keeps queued until a
//! SIGCONT discards them (`/proc/PID/status` shows them in `SigPnd`/`ShdPnd`).
//!
//! It does not own the freeze of a stopped process (`dump/freeze.rs`) nor the saved
//! queues (`dump/task.rs`, `restore/task.rs`).

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::abi::SigInfo;

/// How long a released process may take to enter its stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: the signals whose default action stops the group.
pub fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// A stop signal queued while the process was stopped: process-wide (`tid` None) or for
/// one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedStop {
    pub tid: Option<i32>,
    pub signal: i32,
}

impl QueuedStop {
    /// The stop signals among saved queues: `shared` (process-wide) and each thread's.
    pub fn from_queues<'a>(
        shared: &'a [SigInfo],
        threads: impl Iterator<Item = (i32, &'a [SigInfo])>,
    ) -> Vec<QueuedStop> {
        let own = threads.flat_map(|(tid, q)| q.iter().map(move |i| (Some(tid), i)));
        let all = shared.iter().map(|i| (None, i)).chain(own);
        all.filter(|(_, i)| is_stop_signal(i.signo()))
            .map(|(tid, i)| QueuedStop {
                tid,
                signal: i.signo(),
            })
            .collect()
    }
}

/// Queues `signal` for process `pid` (`kill`). Sent while the process is still traced and
/// parked, it is taken as soon as it is let go, before any instruction runs.
pub fn stop(pid: i32, signal: i32) -> Result<(), String> {
    let sig = Signal::try_from(signal).map_err(|e| format!("stop signal {signal}: {e}"))?;
    kill(Pid::from_raw(pid), sig).map_err(|e| format!("kill({pid}, {sig}): {e}"))
}

/// Waits until every thread of `pid` is stopped (`T` in `/proc/PID/task/TID/stat`), then
/// queues `queued` again.
///
/// Ordering requirements: after the process was let go with its stop signal queued
/// ([`stop`]). Sending these any earlier would let one of them stop it instead (SIGSTOP,
/// the lowest, is taken first), and the stop would report another signal.
pub fn requeue_after_stop(pid: i32, queued: &[QueuedStop]) -> Result<(), String> {
    if queued.is_empty() {
        return Ok(());
    }
    wait_stopped(pid)?;
    for q in queued {
        let sig = Signal::try_from(q.signal).map_err(|e| format!("signal {}: {e}", q.signal))?;
        let sent = match q.tid {
            None => kill(Pid::from_raw(pid), sig),
            Some(tid) => crate::sys::thread::tgkill(pid, tid, q.signal),
        };
        sent.map_err(|e| format!("queue {sig} again for {pid}/{:?}: {e}", q.tid))?;
    }
    Ok(())
}

fn wait_stopped(pid: i32) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let tids = crate::proc::tids(pid).map_err(|e| e.to_string())?;
        let stopped = tids
            .iter()
            .all(|&tid| crate::proc::thread_stat(pid, tid).is_ok_and(|s| s.state == 'T'));
        if stopped {
            return Ok(());
        }
        if start.elapsed() > STOP_TIMEOUT {
            return Err(format!(
                "pid {pid} did not stop within {STOP_TIMEOUT:?} of its stop signal"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sig: i32) -> SigInfo {
        let mut i = SigInfo([0; 128]);
        i.0[..4].copy_from_slice(&sig.to_ne_bytes());
        i
    }

    #[test]
    fn stop_signals_are_picked_from_every_queue() {
        let shared = [info(libc::SIGUSR1), info(libc::SIGSTOP)];
        let own = [info(libc::SIGTSTP)];
        let found = QueuedStop::from_queues(&shared, [(7, &own[..])].into_iter());
        assert_eq!(
            found,
            [
                QueuedStop {
                    tid: None,
                    signal: libc::SIGSTOP
                },
                QueuedStop {
                    tid: Some(7),
                    signal: libc::SIGTSTP
                }
            ]
        );
        assert!(!is_stop_signal(libc::SIGCONT));
    }
}
