//! Per-task and per-thread state: registers, signals, rseq, names, robust futex lists, and
//! the values only the task itself can report, queried with injected syscalls: sigactions,
//! brk, timers, process attributes and securebits, asked in the leader; clear_child_tid,
//! sigaltstack, parent-death signal and timer slack, asked in each thread.
//! The restore side is `restore/task.rs`.

use super::DumpError;
use crate::abi::{AltStack, KernelSigaction};
use crate::image::task::{ProcessAttrs, ThreadImage, ThreadSched, Timers};
use crate::proc::timers::ProcTimer;
use crate::sys::inject::Remote;
use crate::sys::mem::Mem;
use crate::sys::ptrace::Seized;
use crate::sys::Pod;

/// What the process-wide injected queries return.
pub struct Queried {
    pub sigactions: Vec<KernelSigaction>,
    pub brk: u64,
    pub timers: Timers,
    pub attrs: ProcessAttrs,
    /// The leader's; every thread's is checked against it (see `dump/creds.rs`).
    pub securebits: u32,
    /// The other threads' securebits, in image order.
    pub thread_securebits: Vec<u32>,
}

/// What the queries need to know from outside: the timers listed in `/proc/PID/timers`
/// and the process's tids.
pub struct Known<'a> {
    pub timers: &'a [ProcTimer],
    pub tids: &'a [i32],
}

/// A thread running our queries, with the process's scratch page for their results.
pub struct Query<'a> {
    pub remote: &'a Remote<'a>,
    pub mem: &'a Mem,
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
        read_pod(self.mem, self.scratch + off)
    }
}

/// Registers, xsave area, mask, per-thread pending signals, rseq, name and robust list of
/// a stopped thread of `pid`. `clear_child_tid`, `altstack`, `pdeathsig` and `sched` are
/// filled by [`query`], `seccomp` by `dump/seccomp.rs`.
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
        sched: ThreadSched::default(),
        pdeathsig: 0,
        seccomp: Default::default(),
    })
}

/// Runs the queries: the process-wide ones in the leader, the per-thread ones in each
/// thread itself, filling `states`. `threads` and `states` are in the same order, the
/// leader first.
///
/// Ordering requirements: the leader maps a scratch page first and unmaps it last; each
/// thread borrowed for queries gets every signal blocked while it runs our syscalls (so
/// no handler runs on borrowed registers) and its own registers and mask back, then is
/// parked in a clean stop, before the next thread is borrowed — on error too.
pub fn query(
    threads: &[Seized],
    states: &mut [ThreadImage],
    syscall_ip: u64,
    known: &Known,
) -> Result<Queried, DumpError> {
    let (leader, others) = states.split_first_mut().expect("a process has a leader");
    let leader_state = leader.clone();
    borrowed(&threads[0], &leader_state, syscall_ip, |remote| {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let scratch = remote.call("mmap", libc::SYS_mmap, &[0, 4096, prot, flags, u64::MAX, 0])?;
        let result = Mem::open(remote.task().tid(), false)
            .map_err(DumpError::from)
            .and_then(|mem| {
                let q = Query {
                    remote,
                    mem: &mem,
                    scratch,
                };
                let all = All {
                    threads,
                    others,
                    syscall_ip,
                };
                all_queries(&q, known, leader, all)
            });
        remote.call("munmap", libc::SYS_munmap, &[scratch, 4096])?;
        result
    })
}

/// The threads other than the leader, to borrow in turn.
struct All<'a, 'b> {
    threads: &'a [Seized],
    others: &'b mut [ThreadImage],
    syscall_ip: u64,
}

fn all_queries(
    q: &Query,
    known: &Known,
    leader: &mut ThreadImage,
    all: All,
) -> Result<Queried, DumpError> {
    let mut queried = process_queries(q, known)?;
    thread_queries(q, leader)?;
    for (task, state) in all.threads[1..].iter().zip(all.others.iter_mut()) {
        let saved = state.clone();
        let securebits = borrowed(task, &saved, all.syscall_ip, |remote| {
            let tq = Query { remote, ..*q };
            thread_queries(&tq, state)?;
            super::creds::query_securebits(&tq)
        })?;
        queried.thread_securebits.push(securebits);
    }
    Ok(queried)
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

/// Shared by the whole process, asked once in the leader: the 64 sigactions, `brk`,
/// timers, prctl attributes; and the leader's securebits.
fn process_queries(q: &Query, known: &Known) -> Result<Queried, DumpError> {
    let mut sigactions = Vec::with_capacity(64);
    for sig in 1..=64u64 {
        q.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[sig, 0, q.scratch, 8],
        )?;
        sigactions.push(q.read::<KernelSigaction>(0)?);
    }
    let brk = q.call("brk", libc::SYS_brk, &[0])?;
    Ok(Queried {
        sigactions,
        brk,
        timers: super::timers::query(q, known.timers, known.tids)?,
        attrs: super::prctl::query_process(q)?,
        securebits: super::creds::query_securebits(q)?,
        thread_securebits: Vec::new(),
    })
}

/// Per thread, asked in the thread: `clear_child_tid`, the alternate signal stack, the
/// parent-death signal and the scheduling attributes (timer slack injected, the rest read
/// from outside by tid).
fn thread_queries(q: &Query, state: &mut ThreadImage) -> Result<(), DumpError> {
    q.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[libc::PR_GET_TID_ADDRESS as u64, q.scratch],
    )?;
    state.clear_child_tid = q.read::<u64>(0)?;
    q.call("sigaltstack", libc::SYS_sigaltstack, &[0, q.scratch])?;
    state.altstack = q.read::<AltStack>(0)?;
    state.pdeathsig = super::prctl::query_pdeathsig(q)?;
    let timerslack_ns = super::sched::query_timerslack(q)?;
    state.sched = super::sched::thread_sched(state.tid, timerslack_ns)?;
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
