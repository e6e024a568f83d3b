//! Consecutive stages of one process sharing batches of syscalls (`sys/batch.rs`): each
//! stage adds its calls to the pending batch of the thread that must run them (most to
//! the leader's) and leaves a check of their results for when they ran; the batches run
//! when a stage needs results at once, does something else to the task (a single
//! injected call, a ptrace request, a write into scratch, a call from outside on a tid),
//! runs out of room, or the run of stages ends. Most processes thus run a handful of
//! batches where each stage used to run its own.
//!
//! This module owns the pending batches and the naming of failures: every call and every
//! check is tagged with the stage that added it, so a failure still names its stage and
//! the pid ([`RestoreError::Stage`]), and the failing call. It does not know what the
//! stages do.
//!
//! Ordering requirements, for every stage function given a [`Staged`]:
//! - a thread's calls run in the order they are added, after every call added before
//!   them; the other threads' batches run before the leader's (the leader changes its
//!   credentials last, see `creds.rs`), nothing else orders calls of different threads;
//! - anything but adding calls (a single injected syscall, a ptrace request, a write
//!   into scratch, a call that must follow another thread's pending calls) comes after a
//!   [`Staged::flush`];
//! - state of the child read from `/proc` is what it will be when the pending calls ran
//!   only if they do not change it: in particular every stage that opens fds in a
//!   pending batch closes them in it too, so `/proc/PID/fd` predicts the next fd (a
//!   wrong prediction still stops the batch, see `Batch::expect`).

use super::child::Child;
use super::{RestoreError, RestoreStage};
use crate::sys::batch::{Batch, Done};
use crate::sys::inject::Remote;

/// A check of the results of a stage's calls, run once they ran.
type Check<'a> = Box<dyn FnOnce(&Done) -> Result<(), RestoreError> + 'a>;

/// The calls pending in one thread.
struct Pending {
    batch: Batch,
    /// `(first call, stage)` for each stage with calls in `batch`, in table order.
    marks: Vec<(usize, RestoreStage)>,
}

/// The pending batches of a process's threads and whose calls they hold.
pub struct Staged<'a> {
    child: &'a Child,
    /// By thread, in image order: the leader's first, then `child.threads`'.
    pending: Vec<Pending>,
    stage: RestoreStage,
    /// By thread, like `pending`.
    checks: Vec<(usize, RestoreStage, Check<'a>)>,
}

impl<'a> Staged<'a> {
    /// For the child's threads as they are now (made again once Threads created more).
    pub fn new(child: &'a Child) -> Self {
        let pending = (0..=child.threads.len())
            .map(|i| Pending {
                batch: remote(child, i).batch(),
                marks: Vec::new(),
            })
            .collect();
        Staged {
            child,
            pending,
            stage: RestoreStage::Takeover,
            checks: Vec::new(),
        }
    }

    pub fn child(&self) -> &'a Child {
        self.child
    }

    /// Runs stage `stage`: `f` adds its calls (and may flush). Its own errors are named
    /// after the stage, as are those of its calls and checks whenever they run.
    pub fn stage(
        &mut self,
        stage: RestoreStage,
        f: impl FnOnce(&mut Self) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        self.stage = stage;
        f(self).map_err(|e| self.named(stage, e))
    }

    /// The leader's pending batch, to add the current stage's calls to.
    pub fn batch(&mut self) -> &mut Batch {
        self.batch_of(0)
    }

    /// The pending batch of thread `thread` (its index in the image, 0 the leader).
    pub fn batch_of(&mut self, thread: usize) -> &mut Batch {
        let p = &mut self.pending[thread];
        if p.marks.last().map(|m| m.1) != Some(self.stage) {
            p.marks.push((p.batch.calls().len(), self.stage));
        }
        &mut p.batch
    }

    /// Bytes still free in the leader's pending batch.
    pub fn room(&self) -> u64 {
        self.pending[0].batch.room()
    }

    /// Checks the current stage's results in the leader's batch with `f` once it ran.
    pub fn check(&mut self, f: impl FnOnce(&Done) -> Result<(), RestoreError> + 'a) {
        self.checks.push((0, self.stage, Box::new(f)));
    }

    /// Runs the pending calls, the other threads' then the leader's, then the checks, in
    /// order; a failure is named after the stage of the failing call or check.
    pub fn flush(&mut self) -> Result<(), RestoreError> {
        let n = self.pending.len();
        let mut done: Vec<Option<Done>> = (0..n).map(|_| None).collect();
        for i in (1..n).chain([0]) {
            if self.pending[i].batch.is_empty() {
                continue;
            }
            let remote = remote(self.child, i);
            let fresh = Pending {
                batch: remote.batch(),
                marks: Vec::new(),
            };
            let p = std::mem::replace(&mut self.pending[i], fresh);
            let ran = remote.run_traced(&p.batch).map_err(|s| {
                let stage = stage_of(&p.marks, s.call).unwrap_or(self.stage);
                self.named(stage, s.error.into())
            })?;
            done[i] = Some(ran);
        }
        for (i, stage, check) in std::mem::take(&mut self.checks) {
            let ran = done[i]
                .as_ref()
                .expect("a check follows calls of its thread");
            check(ran).map_err(|e| self.named(stage, e))?;
        }
        Ok(())
    }

    /// `e` as a failure of `stage` of this process, unless it names a stage already.
    fn named(&self, stage: RestoreStage, e: RestoreError) -> RestoreError {
        match e {
            e @ RestoreError::Stage { .. } => e,
            e => super::at(stage, self.child.pid())(e),
        }
    }
}

/// A remote in thread `i` of the image (0 the leader).
fn remote(child: &Child, i: usize) -> Remote<'_> {
    match i {
        0 => child.remote(),
        i => child.remote_in(&child.threads[i - 1]),
    }
}

/// The stage that added call `call`: that of the last mark at or before it (a stage that
/// added nothing leaves a mark the next one shares).
fn stage_of(marks: &[(usize, RestoreStage)], call: Option<usize>) -> Option<RestoreStage> {
    let call = call?;
    let i = marks.partition_point(|m| m.0 <= call);
    marks[..i].last().map(|m| m.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_belong_to_the_last_stage_marked_before_them() {
        let marks = [
            (0, RestoreStage::Protections),
            (3, RestoreStage::MmFields),
            (3, RestoreStage::Files),
            (5, RestoreStage::Fs),
        ];
        assert_eq!(stage_of(&marks, Some(2)), Some(RestoreStage::Protections));
        assert_eq!(stage_of(&marks, Some(3)), Some(RestoreStage::Files));
        assert_eq!(stage_of(&marks, Some(9)), Some(RestoreStage::Fs));
        assert_eq!(stage_of(&marks, None), None);
    }
}
