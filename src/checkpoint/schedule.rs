//! `stasis checkpoint --every`: checkpoints of one tree on a schedule, each followed by
//! the store's gc (`--keep`) and the metrics file, until the tree exits or a signal
//! stops it. SIGINT, SIGTERM and SIGHUP stop the schedule (after the checkpoint under
//! way, if any: they are blocked and read from a signalfd, so a checkpoint is never cut
//! by them); SIGUSR1 takes a checkpoint at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::gc::gc;
use super::metrics::Counters;
use super::take::{take, Taken};
use super::{CheckpointError, Store};
use crate::dump::DumpOptions;

/// What `stasis checkpoint` was asked to do besides the dump itself.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub store: PathBuf,
    /// Between two checkpoints; `None`: one checkpoint.
    pub every: Option<Duration>,
    /// Checkpoints kept by the gc after each checkpoint.
    pub keep: Option<usize>,
    /// Kill the tree after the checkpoint (one checkpoint only).
    pub kill: bool,
    /// The Prometheus text file.
    pub metrics: Option<PathBuf>,
}

/// Why the schedule ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// One checkpoint was asked for, and taken.
    Once,
    TreeExited,
    Signal(Signal),
}

/// What happened, for the caller to print.
pub enum Event<'a> {
    Taken(&'a Taken),
    Failed(&'a CheckpointError),
    Collected(&'a super::gc::Report),
}

/// Signals that stop the schedule.
const STOP: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
/// How often the wait looks whether the tree is still there.
const POLL: Duration = Duration::from_millis(100);

/// Runs the schedule; `report` sees each checkpoint, failure and gc.
pub fn run(
    base: &DumpOptions,
    plan: &Plan,
    report: &mut dyn FnMut(Event),
) -> Result<Ended, CheckpointError> {
    let signals = block_signals()?;
    let mut counters = Counters::default();
    loop {
        let store = Store::open_writer(&plan.store)?;
        let last = plan.every.is_none();
        let taken = take(&store, base, plan.kill && last);
        match &taken {
            Ok(t) => {
                counters.taken(&t.meta);
                report(Event::Taken(t));
                if let Some(keep) = plan.keep {
                    let r = gc(&store, keep, &base.store)?;
                    report(Event::Collected(&r));
                }
            }
            Err(e) => {
                counters.failed();
                if !alive(base.pid) {
                    write_metrics(plan, &store, &counters);
                    return Ok(Ended::TreeExited);
                }
                report(Event::Failed(e));
            }
        }
        write_metrics(plan, &store, &counters);
        drop(store);
        if last {
            return taken.map(|_| Ended::Once);
        }
        let every = plan.every.unwrap_or_default();
        match wait(&signals, every, base.pid)? {
            Wake::Tick => {}
            Wake::Exited => return Ok(Ended::TreeExited),
            Wake::Stop(sig) => {
                // The tree runs on, untracked.
                let _ = crate::dump::predump::stop_tracking(base.pid);
                return Ok(Ended::Signal(sig));
            }
        }
    }
}

fn write_metrics(plan: &Plan, store: &Store, counters: &Counters) {
    if let Some(path) = &plan.metrics {
        if let Err(e) = super::metrics::write(path, store, counters) {
            eprintln!("stasis: warning: metrics file: {}", crate::error_line(&e));
        }
    }
}

enum Wake {
    Tick,
    Exited,
    Stop(Signal),
}

/// Blocks the stop signals and SIGUSR1 in this thread (threads started later inherit
/// it) and reads them from a signalfd.
fn block_signals() -> Result<SignalFd, CheckpointError> {
    let mut set = SigSet::empty();
    STOP.iter().for_each(|&s| set.add(s));
    set.add(Signal::SIGUSR1);
    let fail = |e| CheckpointError::io("block signals", "signalfd")(std::io::Error::from(e));
    set.thread_block().map_err(fail)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(fail)
}

/// Waits `every`, or less: until a signal or the tree's end.
fn wait(signals: &SignalFd, every: Duration, pid: i32) -> Result<Wake, CheckpointError> {
    let until = Instant::now() + every;
    loop {
        if let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGUSR1) => return Ok(Wake::Tick),
                Ok(sig) => return Ok(Wake::Stop(sig)),
                Err(_) => continue,
            }
        }
        if !alive(pid) {
            return Ok(Wake::Exited);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Wake::Tick);
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
