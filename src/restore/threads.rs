//! Threads, the restore side of the thread discovery in `dump/freeze.rs`: every thread of
//! the image but the leader is created with its exact tid by a `clone3` injected into the
//! leader, once the shared address space, files and handlers are in place. Each thread's
//! own attributes are set in `task.rs`, its registers at the resume.

use super::child::{Child, NewTask, Thread};
use super::RestoreError;
use crate::image::task::TaskImage;
use crate::sys::ptrace::{self, Stop};

/// A thread of the same process: shared memory, fs context, fd table, handlers, SysV
/// semaphore undo list; `exit_signal` 0 as for every thread.
const THREAD_FLAGS: i32 = libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM;

/// At most this many threads are created per batch.
const THREADS_PER_BATCH: usize = 512;

/// Creates every thread but the leader, in image order.
///
/// Ordering requirements: after the address space, the files, fs context, personality and
/// signal handlers are restored (the new threads share or inherit them), and before the
/// credentials are dropped (`clone3` with `set_tid` needs CAP_CHECKPOINT_RESTORE or
/// CAP_SYS_ADMIN). The new threads inherit the leader's all-blocked signal mask.
pub fn create(child: &mut Child, task: &TaskImage) -> Result<(), RestoreError> {
    let tids: Vec<i32> = task.threads[1..].iter().map(|t| t.tid).collect();
    // Steered host tids: one thread per batch, each steered right before its clone.
    let per = match super::ns::pid::steered(true) {
        true => 1,
        false => THREADS_PER_BATCH,
    };
    for some in tids.chunks(per) {
        create_some(child, some)?;
    }
    Ok(())
}

/// `clone3(THREAD_FLAGS, set_tid = [tid])` for each of `tids`, run by the leader in one
/// batch. The kernel attaches each thread to us (`CLONE_PTRACE`: the leader, seized
/// without `PTRACE_O_TRACECLONE`, runs on); it stops before its first instruction, which would be the
/// stub's, right after `syscall`. Every thread created is kept in `child.threads`, also
/// on error, so that a failed restore reaps it.
fn create_some(child: &mut Child, tids: &[i32]) -> Result<(), RestoreError> {
    if let Some(&first) = tids.first() {
        super::ns::pid::steer(first, true)?;
    }
    let remote = child.remote();
    let mut b = remote.batch();
    let stack = child.thread_stack();
    for &tid in tids {
        let task = NewTask {
            id: tid,
            flags: THREAD_FLAGS as u64,
            exit_signal: 0,
            stack,
        };
        task.add_clone3(&mut b, child.pid(), "clone3(thread)");
    }
    let (made, result) = remote.run_creating(&b);
    let result = result.map_err(RestoreError::from).and_then(|_| {
        let check = |&tid: &i32| super::ns::pid::check_steered(child.pid(), tid);
        tids.iter().try_for_each(check)
    });
    let mut first_err = result.err();
    for &want in &tids[..made] {
        let (thread, started) = first_stop(child, want, ptrace::adopt(want));
        child.threads.push(thread);
        if let Err(e) = started {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Waits for a new thread's first stop and checks where it is.
fn first_stop(
    child: &Child,
    want: i32,
    task: crate::sys::ptrace::Seized,
) -> (Thread, Result<(), RestoreError>) {
    let stopped = match ptrace::wait_tid(task.tid()) {
        Ok(Stop::Event(_)) => task.regs().map_err(RestoreError::from),
        Ok(other) => Err(task.unexpected("clone3 start", other).into()),
        Err(e) => Err(e.into()),
    };
    let checked = stopped.and_then(|base| {
        check_start(child, want, task.tid(), &base)?;
        Ok(base)
    });
    let base = checked.as_ref().copied().unwrap_or_default();
    (Thread { task, base }, checked.map(drop))
}

/// The new thread has the asked tid and sits where `clone3` returns in the helper.
fn check_start(
    child: &Child,
    want: i32,
    got: i32,
    regs: &crate::abi::GpRegs,
) -> Result<(), RestoreError> {
    let at = child.batch_call_return();
    if got != want || regs.rip != at || regs.rax != 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "thread {want} of pid {} started as tid {got} at {:#x} with rax {:#x}, not in the helper at {at:#x}",
                child.pid(),
                regs.rip,
                regs.rax,
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::abi::CloneArgs;
    use crate::sys::Pod;

    #[test]
    fn clone_args_are_ver2_sized() {
        assert_eq!(
            std::mem::size_of::<CloneArgs>(),
            CloneArgs::default().as_bytes().len()
        );
    }
}
