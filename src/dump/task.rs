//! Per-task and per-thread state: registers, signals, rseq, names, robust futex lists, and
//! the values only the task itself can report (sigactions and brk, asked in the leader;
//! clear_child_tid and sigaltstack, asked in each thread), queried with injected syscalls.
//! The restore side is `restore/task.rs`.

use super::DumpError;
use crate::abi::{AltStack, KernelSigaction};
use crate::image::task::ThreadImage;
use crate::sys::inject::Remote;
use crate::sys::mem::Mem;
use crate::sys::ptrace::Seized;
use crate::sys::Pod;

/// What the injected queries return.
pub struct Queried {
    pub sigactions: Vec<KernelSigaction>,
    pub brk: u64,
}

/// Registers, xsave area, mask, per-thread pending signals, rseq, name and robust list of
/// a stopped thread of `pid`. `clear_child_tid` and `altstack` are filled by [`query`].
pub fn thread_state(pid: i32, task: &Seized) -> Result<ThreadImage, DumpError> {
    let robust = crate::sys::thread::robust_list(task.tid())?;
    Ok(ThreadImage {
        tid: task.tid(),
        regs: task.regs()?,
        xsave: task.xstate()?,
        sigmask: task.sigmask()?,
        pending: task.pending(false)?,
        rseq: task.rseq()?,
        clear_child_tid: 0,
        altstack: AltStack::default(),
        comm: crate::proc::thread_comm(pid, task.tid())?,
        robust_list: robust.head,
        robust_list_len: robust.len,
    })
}

/// Runs the queries: the process-wide ones in the leader, the per-thread ones
/// (`clear_child_tid`, `sigaltstack`) in each thread itself, filling `states`.
/// `threads` and `states` are in the same order, the leader first.
///
/// Ordering requirements: the leader maps a scratch page first and unmaps it last; each
/// thread borrowed for queries gets every signal blocked while it runs our syscalls (so
/// no handler runs on borrowed registers) and its own registers and mask back, then is
/// parked in a clean stop, before the next thread is borrowed — on error too.
pub fn query(
    threads: &[Seized],
    states: &mut [ThreadImage],
    syscall_ip: u64,
) -> Result<Queried, DumpError> {
    let (leader, others) = states.split_first_mut().expect("a process has a leader");
    let leader_state = leader.clone();
    borrowed(&threads[0], &leader_state, syscall_ip, |remote| {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let scratch = remote.call("mmap", libc::SYS_mmap, &[0, 4096, prot, flags, u64::MAX, 0])?;
        let result = all_queries(remote, scratch, threads, leader, others, syscall_ip);
        remote.call("munmap", libc::SYS_munmap, &[scratch, 4096])?;
        result
    })
}

fn all_queries(
    remote: &Remote,
    scratch: u64,
    threads: &[Seized],
    leader: &mut ThreadImage,
    others: &mut [ThreadImage],
    syscall_ip: u64,
) -> Result<Queried, DumpError> {
    let mem = Mem::open(remote.task().tid(), false)?;
    let q = process_queries(remote, &mem, scratch)?;
    thread_queries(remote, &mem, scratch, leader)?;
    for (task, state) in threads[1..].iter().zip(others.iter_mut()) {
        let saved = state.clone();
        borrowed(task, &saved, syscall_ip, |r| {
            thread_queries(r, &mem, scratch, state)
        })?;
    }
    Ok(q)
}

/// Lends `task` to `f` as a [`Remote`] and puts it back as `state` says.
fn borrowed<T>(
    task: &Seized,
    state: &ThreadImage,
    syscall_ip: u64,
    f: impl FnOnce(&Remote) -> Result<T, DumpError>,
) -> Result<T, DumpError> {
    task.set_sigmask(!0)?;
    let remote = Remote::new(task, syscall_ip, state.regs);
    let result = f(&remote);
    task.set_regs(&state.regs)?;
    task.set_sigmask(state.sigmask)?;
    task.park()?;
    result
}

/// The 64 sigactions and `brk`: shared by the whole process, asked once.
fn process_queries(remote: &Remote, mem: &Mem, scratch: u64) -> Result<Queried, DumpError> {
    let mut sigactions = Vec::with_capacity(64);
    for sig in 1..=64u64 {
        remote.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[sig, 0, scratch, 8],
        )?;
        sigactions.push(read_pod::<KernelSigaction>(mem, scratch)?);
    }
    let brk = remote.call("brk", libc::SYS_brk, &[0])?;
    Ok(Queried { sigactions, brk })
}

/// `clear_child_tid` and the alternate signal stack: per thread, asked in the thread.
fn thread_queries(
    remote: &Remote,
    mem: &Mem,
    scratch: u64,
    state: &mut ThreadImage,
) -> Result<(), DumpError> {
    remote.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[libc::PR_GET_TID_ADDRESS as u64, scratch],
    )?;
    state.clear_child_tid = read_pod::<u64>(mem, scratch)?;
    remote.call("sigaltstack", libc::SYS_sigaltstack, &[0, scratch])?;
    state.altstack = read_pod::<AltStack>(mem, scratch)?;
    Ok(())
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
