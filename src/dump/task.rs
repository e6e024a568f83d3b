//! Per-task and per-thread state: registers, signals, rseq, names, robust futex lists, and
//! the values only the task itself can report, queried with injected syscalls: sigactions,
//! brk, timers, process attributes and securebits, asked in the leader; clear_child_tid,
//! sigaltstack, parent-death signal and timer slack, asked in each thread.
//! The restore side is `restore/task.rs`.

use super::freeze::Frozen;
use super::DumpError;
use crate::abi::{AltStack, KernelSigaction, SigInfo};
use crate::image::task::{ProcessAttrs, ThreadImage, ThreadSched, Timers};
use crate::proc::timers::ProcTimer;
use crate::sys::batch::{Area, Batch, Done, Out, STUB};
use crate::sys::inject::Remote;
use crate::sys::ptrace::Seized;

/// What the process-wide injected queries return.
pub struct Queried {
    pub sigactions: Vec<KernelSigaction>,
    pub brk: u64,
    pub timers: Timers,
    pub attrs: ProcessAttrs,
    /// The leader's; the other threads' are compared with it (see `dump/creds.rs`).
    pub securebits: u32,
    /// The other threads' securebits, in image order.
    pub thread_securebits: Vec<u32>,
    /// Owner and signal of each of `Known::owner_fds`, by fd.
    pub owners: Vec<(i32, crate::sys::fd::Owner)>,
}

/// What the queries need to know from outside: the timers listed in `/proc/PID/timers`,
/// the process's tids and its AIO rings.
pub struct Known<'a> {
    pub timers: &'a [ProcTimer],
    pub tids: &'a [i32],
    /// Where the process maps AIO rings (`dump/aio.rs`).
    pub aio_rings: Vec<u64>,
    /// The fds whose owner and signal are asked in the process (`files/fown.rs`).
    pub owner_fds: &'a [i32],
}

/// Most fds whose owners are asked in the process queries' batch (3 calls and 16 bytes
/// of answers each: 208 bytes of the scratch area per fd); the fds before the last such
/// chunk are asked in batches of their own first.
const OWNER_FDS_PER_BATCH: usize = 2048;

/// Puts the SIGSTOPs the freeze took off their queues (`Frozen::withheld`) back into the
/// saved queues: process-wide ones into `shared`, a thread's into its own.
pub fn add_withheld(frozen: &Frozen, shared: &mut Vec<SigInfo>, threads: &mut [ThreadImage]) {
    for (tid, info) in &frozen.withheld {
        match tid.and_then(|tid| threads.iter_mut().find(|t| t.tid == tid)) {
            Some(t) => t.pending.push(*info),
            None => shared.push(*info),
        }
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

/// Size of the scratch mapping the leader maps for the queries: the batch stub in its
/// first page, the batches' data and tables after it (only touched pages cost memory).
const SCRATCH_LEN: u64 = 1 << 20;

/// Runs the queries: the process-wide ones in the leader, the per-thread ones in each
/// thread itself, filling `states`. `threads` and `states` are in the same order, the
/// leader first. Each thread's queries are one batch (`sys/batch.rs`): one ptrace round
/// trip, unless a SIGTRAP is pending (the batch stops on one) or the process may not map
/// executable memory it can write (`PR_SET_MDWE`), where each call is injected alone.
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
    let stub = !sigtrap_pending(&threads[0], states)?;
    let (leader, others) = states.split_first_mut().expect("a process has a leader");
    let leader_state = leader.clone();
    let entry = Lend {
        syscall_ip,
        area: None,
    };
    borrowed(&threads[0], &leader_state, &entry, |remote| {
        let area = map_scratch(remote, stub)?;
        let lend = Lend {
            syscall_ip,
            area: Some(area),
        };
        let result = borrowed_in_place(remote, &lend)
            .and_then(|remote| all_queries(&remote, known, leader, threads, others, &lend));
        let scratch = area.region - 4096;
        remote.call("munmap", libc::SYS_munmap, &[scratch, SCRATCH_LEN])?;
        result
    })
}

/// Whether a SIGTRAP waits in the process's queue or a thread's: a batch would stop on it.
fn sigtrap_pending(leader: &Seized, states: &[ThreadImage]) -> Result<bool, DumpError> {
    let trap = |i: &crate::abi::SigInfo| i.signo() == libc::SIGTRAP;
    Ok(leader.pending(true)?.iter().any(trap) || states.iter().any(|t| t.pending.iter().any(trap)))
}

/// Maps the scratch area in the leader: executable, with the batch stub in its first
/// page, if `stub` and the process allows it; else plain memory for one-by-one calls.
fn map_scratch(remote: &Remote, stub: bool) -> Result<Area, DumpError> {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let mmap = |prot: u64| remote.raw(libc::SYS_mmap, &[0, SCRATCH_LEN, prot, flags, u64::MAX, 0]);
    let rwx = if stub {
        mmap(rw | libc::PROT_EXEC as u64)?
    } else {
        -1
    };
    let (at, stub) = if rwx >= 0 {
        remote.write_mem(rwx as u64, &STUB)?;
        (rwx as u64, Some(rwx as u64))
    } else {
        let at = remote.call(
            "mmap",
            libc::SYS_mmap,
            &[0, SCRATCH_LEN, rw, flags, u64::MAX, 0],
        )?;
        (at, None)
    };
    Ok(Area {
        stub,
        region: at + 4096,
        len: SCRATCH_LEN - 4096,
    })
}

/// How a thread is lent: the `syscall` instruction for single calls, the batch area.
struct Lend {
    syscall_ip: u64,
    area: Option<Area>,
}

/// The leader's remote again, now with the scratch area.
fn borrowed_in_place<'a>(remote: &Remote<'a>, lend: &Lend) -> Result<Remote<'a>, DumpError> {
    let again = Remote::new(remote.task(), lend.syscall_ip, remote.base());
    Ok(match lend.area {
        Some(a) => again.with_area(a),
        None => again,
    })
}

fn all_queries(
    remote: &Remote,
    known: &Known,
    leader: &mut ThreadImage,
    threads: &[Seized],
    others: &mut [ThreadImage],
    lend: &Lend,
) -> Result<Queried, DumpError> {
    let mut queried = process_queries(remote, known, leader)?;
    for (task, state) in threads[1..].iter().zip(others.iter_mut()) {
        let saved = state.clone();
        let securebits = borrowed(task, &saved, lend, |remote| {
            let mut b = remote.batch();
            let own = thread_queries(&mut b);
            let securebits = super::creds::query_securebits(&mut b);
            let d = remote.run(&b)?;
            own(&d, state)?;
            Ok(securebits(&d))
        })?;
        queried.thread_securebits.push(securebits);
    }
    Ok(queried)
}

/// Lends `task` to `f` as a [`Remote`] and puts it back as `state` says.
fn borrowed<T>(
    task: &Seized,
    state: &ThreadImage,
    lend: &Lend,
    f: impl FnOnce(&Remote) -> Result<T, DumpError>,
) -> Result<T, DumpError> {
    task.set_sigmask(!0)?;
    let remote = Remote::new(task, lend.syscall_ip, state.regs);
    let remote = match lend.area {
        Some(a) => remote.with_area(a),
        None => remote,
    };
    let result = f(&remote);
    task.set_regs(&state.regs)?;
    task.set_sigmask(state.sigmask)?;
    task.park()?;
    result
}

/// Shared by the whole process, asked once in the leader: the 64 sigactions, `brk`,
/// timers, prctl attributes; and the leader's securebits and own per-thread values, all
/// in one batch.
fn process_queries(
    remote: &Remote,
    known: &Known,
    leader: &mut ThreadImage,
) -> Result<Queried, DumpError> {
    let mut owners = Vec::new();
    let per = OWNER_FDS_PER_BATCH;
    let (early, rest) =
        (known.owner_fds).split_at(known.owner_fds.len().saturating_sub(1) / per * per);
    for chunk in early.chunks(per) {
        let mut b = remote.batch();
        let asked = super::files::fown::query(&mut b, chunk);
        owners.extend(asked(&remote.run(&b)?));
    }
    let mut b = remote.batch();
    let last = super::files::fown::query(&mut b, rest);
    let actions: Vec<Out<KernelSigaction>> = (1..=64u64)
        .map(|sig| {
            let out = b.out::<KernelSigaction>();
            let args = [sig, 0, out.addr(), 8];
            b.call("rt_sigaction", libc::SYS_rt_sigaction, &args);
            out
        })
        .collect();
    let brk = b.call("brk", libc::SYS_brk, &[0]);
    let pid = remote.task().tid();
    let timers = super::timers::query(&mut b, pid, known.timers, known.tids)?;
    let attrs = super::prctl::query_process(&mut b);
    let securebits = super::creds::query_securebits(&mut b);
    let rings = super::aio::query_owned(&mut b, pid, known.aio_rings.clone());
    let own = thread_queries(&mut b);
    let d = remote.run(&b)?;
    own(&d, leader)?;
    rings(&d)?;
    owners.extend(last(&d));
    Ok(Queried {
        sigactions: actions.into_iter().map(|a| d.get(a)).collect(),
        brk: d.ret(brk),
        timers: timers(&d),
        attrs: attrs(&d),
        securebits: securebits(&d),
        thread_securebits: Vec::new(),
        owners,
    })
}

/// Per thread, asked in the thread (batch `b`): `clear_child_tid`, the alternate signal
/// stack, the parent-death signal and the scheduling attributes (timer slack injected,
/// the rest read from outside by tid).
fn thread_queries(b: &mut Batch) -> impl FnOnce(&Done, &mut ThreadImage) -> Result<(), DumpError> {
    let tid_address = b.out::<u64>();
    let op = libc::PR_GET_TID_ADDRESS as u64;
    b.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[op, tid_address.addr()],
    );
    let alt = b.out::<AltStack>();
    b.call("sigaltstack", libc::SYS_sigaltstack, &[0, alt.addr()]);
    let pdeathsig = super::prctl::query_pdeathsig(b);
    let timerslack = super::sched::query_timerslack(b);
    move |d, state| {
        state.clear_child_tid = d.get(tid_address);
        state.altstack = d.get(alt);
        state.pdeathsig = pdeathsig(d);
        state.sched = super::sched::thread_sched(state.tid, timerslack(d))?;
        Ok(())
    }
}
