//! # Safety
//! Raw `ptrace(2)` requests that nix does not wrap (register sets by `NT_*`, signal masks,
//! siginfo peeking, rseq configuration, seccomp filters and their metadata). Each passes a pointer to a local buffer of the
//! size the kernel is told about, so the kernel never writes past it.
//!
//! [`Seized`] is the typed handle: only a task we seized and stopped offers register and
//! signal access. Dropping it detaches (best effort); callers choose [`Seized::release`]
//! (leave it running) or [`Seized::kill`] explicitly.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{deadline, Pod};
use crate::abi::{GpRegs, RseqConfig, SigInfo};

const NT_PRSTATUS: usize = 1;
const NT_X86_XSTATE: usize = 0x202;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
const PTRACE_GET_SECCOMP_METADATA: u32 = 0x420d;
/// `PTRACE_O_SUSPEND_SECCOMP` (nix lacks it).
const PTRACE_O_SUSPEND_SECCOMP: usize = 1 << 21;
/// `BPF_MAXINSNS`: no seccomp filter is longer.
const BPF_MAXINSNS: usize = 4096;
const PTRACE_EVENT_STOP: i32 = 128;
/// `PTRACE_EVENT_FORK`: the tracee created a process (reported with `PTRACE_O_TRACEFORK`).
pub const PTRACE_EVENT_FORK: i32 = 1;
/// `PTRACE_EVENT_CLONE`: the tracee created a thread, or a process with an exit signal
/// other than SIGCHLD (reported with `PTRACE_O_TRACECLONE`).
pub const PTRACE_EVENT_CLONE: i32 = 3;
/// Upper bound for the xsave regset; the kernel reports the real size it filled.
const XSTATE_MAX: usize = 64 * 1024;

/// Errors of ptrace operations, each naming the task.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("ptrace {op} of tid {tid}")]
    Request {
        op: &'static str,
        tid: i32,
        #[source]
        source: Errno,
    },
    #[error("wait for tid {tid}")]
    Wait {
        tid: i32,
        #[source]
        source: Errno,
    },
    #[error(
        "tid {tid} did not stop or exit within {after:?} (--timeout); it may be blocked in \
         the kernel, or wait for a task that stasis holds"
    )]
    Timeout {
        tid: i32,
        after: std::time::Duration,
    },
    #[error("tid {tid} {what} while stopped for {op}")]
    Unexpected {
        tid: i32,
        op: &'static str,
        what: String,
    },
}

/// How a traced task stopped (or ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP`: interrupt or group stop; the signal is SIGTRAP or the stop signal.
    Event(i32),
    /// Syscall entry or exit (`PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// Signal-delivery stop with this signal.
    Signal(i32),
    /// Other ptrace event (fork, exec...) with its number.
    OtherEvent(i32),
    Exited(i32),
    Killed(i32),
}

/// A task seized with `PTRACE_SEIZE`.
#[derive(Debug)]
pub struct Seized {
    tid: i32,
    released: bool,
}

const SEIZE_OPTIONS: ptrace::Options = ptrace::Options::PTRACE_O_TRACESYSGOOD
    .union(ptrace::Options::PTRACE_O_TRACECLONE)
    .union(ptrace::Options::PTRACE_O_TRACEFORK);

/// `ptrace(PTRACE_SEIZE, tid, 0, TRACESYSGOOD | TRACECLONE | TRACEFORK)` — attach without
/// stopping; see [ptrace(2)](https://man7.org/linux/man-pages/man2/ptrace.2.html).
///
/// With `PTRACE_O_TRACECLONE` and `PTRACE_O_TRACEFORK`, a thread or process the task
/// creates is attached by the kernel before it runs a single instruction and starts in a
/// `PTRACE_EVENT_STOP` (see [`adopt`]).
pub fn seize(tid: i32) -> Result<Seized, PtraceError> {
    ptrace::seize(Pid::from_raw(tid), SEIZE_OPTIONS).map_err(|source| PtraceError::Request {
        op: "seize",
        tid,
        source,
    })?;
    Ok(adopt(tid))
}

/// `ptrace(PTRACE_SEIZE, tid, 0, TRACESYSGOOD)` — attach without stopping, and without
/// reports of the tasks it creates: a `clone3` with `CLONE_PTRACE` attaches the new task
/// to us all the same, starting in a `PTRACE_EVENT_STOP` before its first instruction
/// (the kernel's `ptrace_init_task`, as `PTRACE_O_TRACECLONE` would), while its creator
/// runs on without the event stop. For tasks that create many whose ids are known (the
/// restore's `set_tid`), in one batch of syscalls. The tasks it creates inherit these
/// options.
pub fn seize_silent(tid: i32) -> Result<Seized, PtraceError> {
    let opts = ptrace::Options::PTRACE_O_TRACESYSGOOD;
    ptrace::seize(Pid::from_raw(tid), opts).map_err(|source| PtraceError::Request {
        op: "seize",
        tid,
        source,
    })?;
    Ok(adopt(tid))
}

/// The handle of a task the kernel attached to us (`PTRACE_O_TRACECLONE` or
/// `CLONE_PTRACE`): the tid came from [`Seized::event_msg`] after a
/// [`PTRACE_EVENT_CLONE`] stop of its creator, or was chosen by it (`set_tid`).
pub fn adopt(tid: i32) -> Seized {
    Seized {
        tid,
        released: false,
    }
}

/// Waits for any state change of `tid` (`__WALL`: threads too), at most for the bound
/// of waits ([`deadline::bound`], set by the dump's `--timeout`).
pub fn wait_tid(tid: i32) -> Result<Stop, PtraceError> {
    crate::profile::count("ptrace waits", 1);
    let bound = deadline::bound();
    let wait = deadline::Wait::start(bound);
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(status) => return Ok(classify(status)),
            Err(Errno::EINTR) => match bound {
                Some(after) if wait.timed_out() => {
                    settle(tid, after);
                    return Err(PtraceError::Timeout { tid, after });
                }
                _ => continue,
            },
            Err(source) => return Err(PtraceError::Wait { tid, source }),
        }
    }
}

/// After a wait for `tid` timed out: asks it to stop (`PTRACE_INTERRUPT`) and waits once
/// more, at most `bound`, so that the caller's clean-up finds it stopped and can put its
/// registers back. A task resumed into a syscall we injected and held before running it
/// (a frozen cgroup traps it on its way to user space) would else run on with our
/// registers once let go.
fn settle(tid: i32, bound: std::time::Duration) {
    let _ = ptrace::interrupt(Pid::from_raw(tid));
    let _alarm = deadline::Alarm::arm(Some(bound));
    let _ = waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL));
}

fn classify(status: WaitStatus) -> Stop {
    match status {
        WaitStatus::PtraceEvent(_, sig, PTRACE_EVENT_STOP) => Stop::Event(sig as i32),
        WaitStatus::PtraceEvent(_, _, ev) => Stop::OtherEvent(ev),
        WaitStatus::PtraceSyscall(_) => Stop::Syscall,
        WaitStatus::Stopped(_, sig) => Stop::Signal(sig as i32),
        WaitStatus::Exited(_, code) => Stop::Exited(code),
        WaitStatus::Signaled(_, sig, _) => Stop::Killed(sig as i32),
        _ => Stop::OtherEvent(-1),
    }
}

impl Seized {
    pub fn tid(&self) -> i32 {
        self.tid
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.tid)
    }

    fn err(&self, op: &'static str) -> impl FnOnce(Errno) -> PtraceError {
        let tid = self.tid;
        move |source| PtraceError::Request { op, tid, source }
    }

    /// `PTRACE_INTERRUPT` and wait for the resulting stop.
    pub fn interrupt(&self) -> Result<Stop, PtraceError> {
        self.request_interrupt()?;
        self.wait_event("interrupt")
    }

    /// `PTRACE_INTERRUPT` without waiting: the task stops in a `PTRACE_EVENT_STOP` the next
    /// time it is about to return to user space. Repeating it before that stop is harmless
    /// (the kernel sets one flag).
    pub fn request_interrupt(&self) -> Result<(), PtraceError> {
        ptrace::interrupt(self.pid()).map_err(self.err("interrupt"))
    }

    /// Waits until the task reports `PTRACE_EVENT_STOP`, passing through nothing else.
    pub fn wait_event(&self, op: &'static str) -> Result<Stop, PtraceError> {
        match wait_tid(self.tid)? {
            s @ Stop::Event(_) => Ok(s),
            other => Err(self.unexpected(op, other)),
        }
    }

    pub fn unexpected(&self, op: &'static str, stop: Stop) -> PtraceError {
        PtraceError::Unexpected {
            tid: self.tid,
            op,
            what: format!("reported {stop:?}"),
        }
    }

    /// `PTRACE_SYSCALL`: run to the next syscall entry/exit stop.
    pub fn resume_to_syscall(&self) -> Result<(), PtraceError> {
        ptrace::syscall(self.pid(), None).map_err(self.err("syscall"))
    }

    /// `PTRACE_CONT` with no signal.
    pub fn cont(&self) -> Result<(), PtraceError> {
        ptrace::cont(self.pid(), None).map_err(self.err("cont"))
    }

    /// `PTRACE_CONT` delivering `sig`: passes on a signal that arrived while seized.
    pub fn cont_with(&self, sig: i32) -> Result<(), PtraceError> {
        let sig = Signal::try_from(sig).ok();
        ptrace::cont(self.pid(), sig).map_err(self.err("cont"))
    }

    /// `PTRACE_GETEVENTMSG`: after a [`PTRACE_EVENT_CLONE`] stop, the new thread's tid.
    pub fn event_msg(&self) -> Result<u64, PtraceError> {
        let msg = ptrace::getevent(self.pid()).map_err(self.err("geteventmsg"))?;
        Ok(msg as u64)
    }

    /// Parks a task that sits in a syscall-exit stop back in a clean `PTRACE_EVENT_STOP`
    /// inside signal delivery, where resuming applies the kernel's syscall-restart rules
    /// to whatever registers are set now. Ordering: set the final registers first.
    pub fn park(&self) -> Result<(), PtraceError> {
        ptrace::interrupt(self.pid()).map_err(self.err("interrupt"))?;
        self.cont()?;
        self.wait_event("park").map(|_| ())
    }

    /// Detach and let the task run on. Consumes the handle.
    pub fn release(mut self) -> Result<(), PtraceError> {
        self.released = true;
        ptrace::detach(self.pid(), None).map_err(self.err("detach"))
    }

    /// SIGKILL the task while it is still traced and wait until it is gone.
    pub fn kill(self) -> Result<(), PtraceError> {
        self.sigkill()?;
        self.reap()
    }

    /// Send SIGKILL (to the whole thread group: signals sent by tid are process-wide).
    pub fn sigkill(&self) -> Result<(), PtraceError> {
        nix::sys::signal::kill(self.pid(), Signal::SIGKILL).map_err(self.err("kill"))
    }

    /// Wait until the task, killed, has exited, and consume the handle.
    pub fn reap(mut self) -> Result<(), PtraceError> {
        self.released = true;
        loop {
            match wait_tid(self.tid) {
                Ok(Stop::Exited(_)) | Ok(Stop::Killed(_)) => return Ok(()),
                Ok(_) => continue,
                Err(PtraceError::Wait {
                    source: Errno::ECHILD,
                    ..
                }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Forget the handle without detaching (the task is gone or was handed over).
    pub fn forget(mut self) {
        self.released = true;
    }

    /// `PTRACE_GETREGSET NT_PRSTATUS`.
    pub fn regs(&self) -> Result<GpRegs, PtraceError> {
        let mut regs = GpRegs::default();
        let len = self
            .get_regset(NT_PRSTATUS, regs.as_bytes_mut())
            .map_err(self.err("getregs"))?;
        if len != std::mem::size_of::<GpRegs>() {
            return Err(self.unexpected("getregs", Stop::OtherEvent(len as i32)));
        }
        Ok(regs)
    }

    /// `PTRACE_SETREGSET NT_PRSTATUS`.
    pub fn set_regs(&self, regs: &GpRegs) -> Result<(), PtraceError> {
        self.set_regset(NT_PRSTATUS, regs.as_bytes())
            .map_err(self.err("setregs"))
    }

    /// `PTRACE_GETREGSET NT_X86_XSTATE`: the xsave area, as long as the kernel makes it.
    pub fn xstate(&self) -> Result<Vec<u8>, PtraceError> {
        let mut buf = vec![0u8; XSTATE_MAX];
        let len = self
            .get_regset(NT_X86_XSTATE, &mut buf)
            .map_err(self.err("get xstate"))?;
        buf.truncate(len);
        Ok(buf)
    }

    /// `PTRACE_SETREGSET NT_X86_XSTATE`.
    pub fn set_xstate(&self, xsave: &[u8]) -> Result<(), PtraceError> {
        self.set_regset(NT_X86_XSTATE, xsave)
            .map_err(self.err("set xstate"))
    }

    fn get_regset(&self, kind: usize, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the iovec describes `buf`, which outlives the call; the kernel writes at
        // most iov_len bytes and updates iov_len to the amount written.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                self.tid,
                kind,
                &mut iov as *mut libc::iovec,
            )
        };
        Errno::result(r).map(|_| iov.iov_len)
    }

    fn set_regset(&self, kind: usize, buf: &[u8]) -> Result<(), Errno> {
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: the kernel only reads iov_len bytes from `buf`, which outlives the call.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_SETREGSET,
                self.tid,
                kind,
                &mut iov as *mut libc::iovec,
            )
        };
        Errno::result(r).map(drop)
    }

    /// `PTRACE_GETSIGMASK`: the blocked-signal mask.
    pub fn sigmask(&self) -> Result<u64, PtraceError> {
        let mut mask = 0u64;
        // SAFETY: data points to a u64 and addr gives its size (8), as PTRACE_GETSIGMASK requires.
        let r = unsafe { libc::ptrace(PTRACE_GETSIGMASK, self.tid, 8usize, &mut mask as *mut u64) };
        Errno::result(r).map_err(self.err("getsigmask"))?;
        Ok(mask)
    }

    /// `PTRACE_SETSIGMASK`.
    pub fn set_sigmask(&self, mask: u64) -> Result<(), PtraceError> {
        // SAFETY: the kernel reads 8 bytes from a live u64.
        let r = unsafe { libc::ptrace(PTRACE_SETSIGMASK, self.tid, 8usize, &mask as *const u64) };
        Errno::result(r).map(drop).map_err(self.err("setsigmask"))
    }

    /// `PTRACE_PEEKSIGINFO`: queued signals without dequeuing them; `shared` reads the
    /// process-wide queue instead of the thread's.
    pub fn pending(&self, shared: bool) -> Result<Vec<SigInfo>, PtraceError> {
        let mut out = Vec::new();
        loop {
            let mut batch = [SigInfo::default(); 32];
            let args = peek_args(out.len() as u64, shared, batch.len() as u32);
            // SAFETY: `args` is a struct ptrace_peeksiginfo_args {u64 off; u32 flags; s32 nr}
            // and `batch` has room for nr siginfos of 128 bytes each.
            let r = unsafe {
                libc::ptrace(
                    PTRACE_PEEKSIGINFO,
                    self.tid,
                    args.as_ptr(),
                    batch.as_mut_ptr(),
                )
            };
            let n = Errno::result(r).map_err(self.err("peeksiginfo"))? as usize;
            out.extend_from_slice(&batch[..n]);
            if n < batch.len() {
                return Ok(out);
            }
        }
    }

    /// `PTRACE_SETOPTIONS` adding `PTRACE_O_SUSPEND_SECCOMP` to the seize options: the
    /// task's seccomp mode and filters ignore its syscalls while we trace it (so injected
    /// syscalls pass), until it is detached. Needs CAP_SYS_ADMIN, and a tracer that runs
    /// under no seccomp itself (EPERM otherwise). Threads the task creates inherit it.
    pub fn suspend_seccomp(&self) -> Result<(), PtraceError> {
        let opts = SEIZE_OPTIONS.bits() as usize | PTRACE_O_SUSPEND_SECCOMP;
        // SAFETY: PTRACE_SETOPTIONS takes the options in `data` as an integer; no memory
        // is passed.
        let r = unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, self.tid, 0usize, opts) };
        Errno::result(r)
            .map(drop)
            .map_err(self.err("setoptions(SUSPEND_SECCOMP)"))
    }

    /// `PTRACE_SECCOMP_GET_FILTER`: the classic BPF instructions of filter `index` of
    /// the task's chain (0 is the oldest), each `struct sock_filter` as a u64; `None`
    /// past the newest (ENOENT). Needs CAP_SYS_ADMIN.
    pub fn seccomp_filter(&self, index: u64) -> Result<Option<Vec<u64>>, PtraceError> {
        let mut insns = vec![0u64; BPF_MAXINSNS];
        // SAFETY: `insns` has room for BPF_MAXINSNS 8-byte sock_filter entries, the most
        // the kernel accepts in one filter, so its copy of the program fits.
        let r = unsafe {
            libc::ptrace(
                PTRACE_SECCOMP_GET_FILTER,
                self.tid,
                index as usize,
                insns.as_mut_ptr(),
            )
        };
        match Errno::result(r) {
            Ok(n) => {
                insns.truncate(n as usize);
                Ok(Some(insns))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.err("seccomp get filter")(e)),
        }
    }

    /// `PTRACE_GET_SECCOMP_METADATA`: the flags of filter `index` (only
    /// `SECCOMP_FILTER_FLAG_LOG` is reported).
    pub fn seccomp_flags(&self, index: u64) -> Result<u64, PtraceError> {
        // struct seccomp_metadata { u64 filter_off; u64 flags; }
        let mut meta = [index, 0u64];
        // SAFETY: addr is the size of `meta` (16 bytes, struct seccomp_metadata), which
        // the kernel reads filter_off from and writes flags into.
        let r = unsafe {
            libc::ptrace(
                PTRACE_GET_SECCOMP_METADATA,
                self.tid,
                std::mem::size_of_val(&meta),
                meta.as_mut_ptr(),
            )
        };
        Errno::result(r).map_err(self.err("get seccomp metadata"))?;
        Ok(meta[1])
    }

    /// `PTRACE_GET_RSEQ_CONFIGURATION`; `None` when no rseq area is registered.
    pub fn rseq(&self) -> Result<Option<RseqConfig>, PtraceError> {
        let mut conf = RseqConfig::default();
        let size = std::mem::size_of::<RseqConfig>();
        // SAFETY: the kernel writes at most `size` bytes (addr) into `conf`.
        let r = unsafe {
            libc::ptrace(
                PTRACE_GET_RSEQ_CONFIGURATION,
                self.tid,
                size,
                &mut conf as *mut RseqConfig,
            )
        };
        Errno::result(r).map_err(self.err("get rseq configuration"))?;
        Ok((conf.rseq_abi_pointer != 0).then_some(conf))
    }
}

/// `struct ptrace_peeksiginfo_args { u64 off; u32 flags; s32 nr; }` as two u64 words.
fn peek_args(off: u64, shared: bool, nr: u32) -> [u64; 2] {
    let flags = if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 };
    [off, u64::from(flags) | (u64::from(nr) << 32)]
}

impl Drop for Seized {
    /// Policy: a handle dropped without `release`/`kill` detaches, so an error path never
    /// leaves a task stopped under a tracer that is about to go away.
    fn drop(&mut self) {
        if !self.released {
            let _ = ptrace::detach(self.pid(), None);
        }
    }
}
