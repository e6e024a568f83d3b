//! Per-task state: registers, signals, rseq, and the values only the task itself can
//! report (sigactions, brk, clear_child_tid, sigaltstack), queried with injected syscalls.
//! The restore side is `restore/task.rs`.

use super::DumpError;
use crate::abi::{AltStack, GpRegs, KernelSigaction};
use crate::image::task::ThreadImage;
use crate::sys::inject::Remote;
use crate::sys::mem::Mem;
use crate::sys::ptrace::Seized;
use crate::sys::Pod;

/// What the injected queries return.
pub struct Queried {
    pub sigactions: Vec<KernelSigaction>,
    pub brk: u64,
    pub clear_child_tid: u64,
    pub altstack: AltStack,
}

/// Registers, xsave area, mask, per-thread pending signals and rseq of a stopped thread.
pub fn thread_state(task: &Seized) -> Result<ThreadImage, DumpError> {
    Ok(ThreadImage {
        tid: task.tid(),
        regs: task.regs()?,
        xsave: task.xstate()?,
        sigmask: task.sigmask()?,
        pending: task.pending(false)?,
        rseq: task.rseq()?,
        clear_child_tid: 0,
        altstack: AltStack::default(),
    })
}

/// Runs the queries inside the task.
///
/// Ordering requirements: every signal is blocked while the task runs our syscalls (so no
/// handler can run on borrowed registers), and the task's own registers and mask are put
/// back, then the task is parked in a clean stop, before this returns — on error too.
pub fn query(
    task: &Seized,
    regs: &GpRegs,
    sigmask: u64,
    syscall_ip: u64,
) -> Result<Queried, DumpError> {
    task.set_sigmask(!0)?;
    let remote = Remote::new(task, syscall_ip, *regs);
    let result = run_queries(&remote);
    task.set_regs(regs)?;
    task.set_sigmask(sigmask)?;
    task.park()?;
    result
}

fn run_queries(remote: &Remote) -> Result<Queried, DumpError> {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let scratch = remote.call("mmap", libc::SYS_mmap, &[0, 4096, prot, flags, u64::MAX, 0])?;
    let result = queries_with_scratch(remote, scratch);
    remote.call("munmap", libc::SYS_munmap, &[scratch, 4096])?;
    result
}

fn queries_with_scratch(remote: &Remote, scratch: u64) -> Result<Queried, DumpError> {
    let mem = Mem::open(remote.task().tid(), false)?;
    let mut sigactions = Vec::with_capacity(64);
    for sig in 1..=64u64 {
        remote.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[sig, 0, scratch, 8],
        )?;
        sigactions.push(read_pod::<KernelSigaction>(&mem, scratch)?);
    }
    let brk = remote.call("brk", libc::SYS_brk, &[0])?;
    remote.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[libc::PR_GET_TID_ADDRESS as u64, scratch],
    )?;
    let clear_child_tid = read_pod::<u64>(&mem, scratch)?;
    remote.call("sigaltstack", libc::SYS_sigaltstack, &[0, scratch])?;
    let altstack = read_pod::<AltStack>(&mem, scratch)?;
    Ok(Queried {
        sigactions,
        brk,
        clear_child_tid,
        altstack,
    })
}

fn read_pod<T: Pod>(mem: &Mem, addr: u64) -> Result<T, DumpError> {
    let mut v = T::default();
    mem.read(addr, v.as_bytes_mut())?;
    Ok(v)
}

/// Finds a `syscall` instruction (`0f 05`) in the task's vDSO, so queries run without
/// writing anything into the task's memory.
pub fn find_syscall_insn(pid: i32, vdso: Option<(u64, u64)>) -> Result<u64, DumpError> {
    let (start, end) = vdso.ok_or(DumpError::NoSyscallInsn { pid })?;
    let mut text = vec![0u8; (end - start) as usize];
    Mem::open(pid, false)?.read(start, &mut text)?;
    let at = text
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .ok_or(DumpError::NoSyscallInsn { pid })?;
    Ok(start + at as u64)
}
