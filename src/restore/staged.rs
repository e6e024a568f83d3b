//! Consecutive stages of one process sharing batches of syscalls (`sys/batch.rs`): each
//! stage adds its calls to the pending batch of the process's leader and leaves a check
//! of their results for when it ran; the batch runs when a stage needs results at once,
//! does something else to the task (a single injected call, a ptrace request, a write
//! into scratch), runs out of room, or the run of stages ends. Most processes thus run a
//! handful of batches where each stage used to run its own.
//!
//! This module owns the pending batch and the naming of failures: every call and every
//! check is tagged with the stage that added it, so a failure still names its stage and
//! the pid ([`RestoreError::Stage`]), and the failing call. It does not know what the
//! stages do.
//!
//! Ordering requirements, for every stage function given a [`Staged`]:
//! - calls run in the order they are added, after every call added before them;
//! - anything but adding calls (a single injected syscall, a ptrace request, a write
//!   into scratch, a call in another thread that must follow the pending calls) comes
//!   after a [`Staged::flush`];
//! - state of the child read from `/proc` is what it will be when the pending calls ran
//!   only if they do not change it: in particular every stage that opens fds in the
//!   pending batch closes them in it too, so `/proc/PID/fd` predicts the next fd
//!   (a wrong prediction still stops the batch, see `Batch::expect`).

use super::child::Child;
use super::{RestoreError, RestoreStage};
use crate::sys::batch::{Batch, Done};
use crate::sys::inject::Remote;

/// A check of the results of a stage's calls, run once they ran.
type Check<'a> = Box<dyn FnOnce(&Done) -> Result<(), RestoreError> + 'a>;

/// The pending batch of a process's leader and whose calls it holds.
pub struct Staged<'a> {
    child: &'a Child,
    remote: Remote<'a>,
    batch: Batch,
    stage: RestoreStage,
    /// `(first call, stage)` for each stage with calls in `batch`, in table order.
    marks: Vec<(usize, RestoreStage)>,
    checks: Vec<(RestoreStage, Check<'a>)>,
}

impl<'a> Staged<'a> {
    pub fn new(child: &'a Child) -> Self {
        let remote = child.remote();
        Staged {
            child,
            batch: remote.batch(),
            remote,
            stage: RestoreStage::Takeover,
            marks: Vec::new(),
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

    /// The pending batch, to add the current stage's calls to.
    pub fn batch(&mut self) -> &mut Batch {
        if self.marks.last().map(|m| m.1) != Some(self.stage) {
            self.marks.push((self.batch.calls().len(), self.stage));
        }
        &mut self.batch
    }

    /// Bytes still free in the pending batch.
    pub fn room(&self) -> u64 {
        self.batch.room()
    }

    /// Checks the current stage's results with `f` once the batch ran.
    pub fn check(&mut self, f: impl FnOnce(&Done) -> Result<(), RestoreError> + 'a) {
        self.checks.push((self.stage, Box::new(f)));
    }

    /// Runs the pending calls, then the checks, in order; a failure is named after the
    /// stage of the failing call or check. Nothing to do when nothing is pending.
    pub fn flush(&mut self) -> Result<(), RestoreError> {
        if self.batch.is_empty() && self.checks.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, self.remote.batch());
        let marks = std::mem::take(&mut self.marks);
        let checks = std::mem::take(&mut self.checks);
        let done = self.remote.run_traced(&batch).map_err(|s| {
            let stage = stage_of(&marks, s.call).unwrap_or(self.stage);
            self.named(stage, s.error.into())
        })?;
        for (stage, check) in checks {
            check(&done).map_err(|e| self.named(stage, e))?;
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
