//! Per-task state: registers, signals, rseq, and the values only the task itself can
//! report (sigactions, brk, clear_child_tid, sigaltstack), queried with injected syscalls.
//! The restore side is `restore/task.rs`.

use super::DumpError;
use crate::abi::{AltStack, GpRegs, KernelSigaction};
use crate::image::task::{ProcessAttrs, ThreadImage, ThreadSched, Timers};
use crate::proc::timers::ProcTimer;
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
    pub timers: Timers,
    pub attrs: ProcessAttrs,
    pub pdeathsig: i32,
    pub securebits: u32,
    pub timerslack_ns: u64,
}

/// What the queries need to know from outside: the timers listed in `/proc/PID/timers`.
pub struct Known<'a> {
    pub timers: &'a [ProcTimer],
}

/// A task running our queries, with a scratch page for their results.
pub struct Query<'a> {
    pub remote: &'a Remote<'a>,
    pub mem: Mem,
    pub scratch: u64,
}

impl Query<'_> {
    pub fn call(&self, name: &'static str, nr: i64, args: &[u64]) -> Result<u64, DumpError> {
        Ok(self.remote.call(name, nr, args)?)
    }

    /// The raw result (negative errno on failure), for calls a kernel may lack.
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64, DumpError> {
        Ok(self.remote.raw(nr, args)?)
    }

    /// Reads a `T` from scratch at `off`.
    pub fn read<T: Pod>(&self, off: u64) -> Result<T, DumpError> {
        read_pod(&self.mem, self.scratch + off)
    }
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
        sched: ThreadSched::default(),
        pdeathsig: 0,
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
    known: &Known,
) -> Result<Queried, DumpError> {
    task.set_sigmask(!0)?;
    let remote = Remote::new(task, syscall_ip, *regs);
    let result = run_queries(&remote, known);
    task.set_regs(regs)?;
    task.set_sigmask(sigmask)?;
    task.park()?;
    result
}

fn run_queries(remote: &Remote, known: &Known) -> Result<Queried, DumpError> {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let scratch = remote.call("mmap", libc::SYS_mmap, &[0, 4096, prot, flags, u64::MAX, 0])?;
    let result = Mem::open(remote.task().tid(), false)
        .map_err(DumpError::from)
        .and_then(|mem| {
            let q = Query {
                remote,
                mem,
                scratch,
            };
            queries_with_scratch(&q, known)
        });
    remote.call("munmap", libc::SYS_munmap, &[scratch, 4096])?;
    result
}

fn queries_with_scratch(q: &Query, known: &Known) -> Result<Queried, DumpError> {
    let (remote, mem, scratch) = (q.remote, &q.mem, q.scratch);
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
    remote.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[libc::PR_GET_TID_ADDRESS as u64, scratch],
    )?;
    let clear_child_tid = read_pod::<u64>(mem, scratch)?;
    remote.call("sigaltstack", libc::SYS_sigaltstack, &[0, scratch])?;
    let altstack = read_pod::<AltStack>(mem, scratch)?;
    Ok(Queried {
        sigactions,
        brk,
        clear_child_tid,
        altstack,
        timers: super::timers::query(q, known.timers)?,
        attrs: super::prctl::query_process(q)?,
        pdeathsig: super::prctl::query_pdeathsig(q)?,
        securebits: super::creds::query_securebits(q)?,
        timerslack_ns: super::sched::query_timerslack(q)?,
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
