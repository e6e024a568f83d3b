//! Threads, the restore side of the thread discovery in `dump/freeze.rs`: every thread of
//! the image but the leader is created with its exact tid by a `clone3` injected into the
//! leader, once the shared address space, files and handlers are in place. Each thread's
//! own attributes are set in `task.rs`, its registers at the resume.

use super::child::{Child, Thread, CLONE_ARGS_OFF, SET_TID_OFF};
use super::RestoreError;
use crate::abi::CloneArgs;
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

/// Creates every thread but the leader, in image order.
///
/// Ordering requirements: after the address space, the files, fs context, personality and
/// signal handlers are restored (the new threads share or inherit them), and before the
/// credentials are dropped (`clone3` with `set_tid` needs CAP_CHECKPOINT_RESTORE or
/// CAP_SYS_ADMIN). The new threads inherit the leader's all-blocked signal mask.
pub fn create(child: &mut Child, task: &TaskImage) -> Result<(), RestoreError> {
    for t in &task.threads[1..] {
        let thread = create_one(child, t.tid)?;
        child.threads.push(thread);
    }
    Ok(())
}

/// `clone3(THREAD_FLAGS, set_tid = [tid])` run by the leader from the helper. The kernel
/// attaches the thread to us (the leader is seized with `PTRACE_O_TRACECLONE`); it stops
/// before its first instruction, which would be the helper's, right after `syscall`.
fn create_one(child: &Child, tid: i32) -> Result<Thread, RestoreError> {
    let set_tid = child.put(SET_TID_OFF, &tid.to_ne_bytes())?;
    let (stack, stack_size) = child.thread_stack();
    let args = CloneArgs {
        flags: THREAD_FLAGS as u64,
        stack,
        stack_size,
        set_tid,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let addr = child.put_pod(CLONE_ARGS_OFF, &args)?;
    let size = std::mem::size_of::<CloneArgs>() as u64;
    let task = child
        .remote()
        .clone_task("clone3(thread)", libc::SYS_clone3, &[addr, size])?;
    let thread = Thread {
        base: Default::default(),
        task,
    };
    match ptrace::wait_tid(thread.task.tid())? {
        Stop::Event(_) => {}
        other => return Err(thread.task.unexpected("clone3 start", other).into()),
    }
    let base = thread.task.regs()?;
    check_start(child, tid, thread.task.tid(), &base)?;
    Ok(Thread { base, ..thread })
}

/// The new thread has the asked tid and sits where `clone3` returns in the helper.
fn check_start(
    child: &Child,
    want: i32,
    got: i32,
    regs: &crate::abi::GpRegs,
) -> Result<(), RestoreError> {
    if got != want || regs.rip != child.helper + 2 || regs.rax != 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "thread {want} of pid {} started as tid {got} at {:#x} with rax {:#x}, not in the helper at {:#x}",
                child.pid(),
                regs.rip,
                regs.rax,
                child.helper + 2
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Pod;

    const _: () = assert!(SET_TID_OFF + 4 <= CLONE_ARGS_OFF);

    #[test]
    fn clone_args_are_ver2_sized() {
        assert_eq!(
            std::mem::size_of::<CloneArgs>(),
            CloneArgs::default().as_bytes().len()
        );
    }
}
