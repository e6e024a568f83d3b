//! Per-process and per-thread records: identity, registers, signals, fs context, creds,
//! capabilities, timers, scheduling and prctl attributes.

use serde::{Deserialize, Serialize};

use super::seccomp::{SeccompFilter, ThreadSeccomp};
use crate::abi::{AltStack, GpRegs, KernelSigaction, RseqConfig, SigInfo};

/// `task-<pid>.img`: one process and its threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskImage {
    pub pid: i32,
    /// Process group and session at dump time.
    pub pgid: i32,
    pub sid: i32,
    /// Parent pid at dump time (informational: a dumped root gets the restorer as parent).
    pub ppid: i32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// `personality(2)` value.
    pub personality: u32,
    pub umask: u32,
    /// `(soft, hard)` per `RLIMIT_*` (16 entries); `u64::MAX` is unlimited.
    pub rlimits: Vec<(u64, u64)>,
    /// Working directory and root, as paths in the dumper's mount namespace.
    pub cwd: String,
    pub root: String,
    pub creds: Creds,
    /// `/proc/PID/oom_score_adj`.
    pub oom_score_adj: i32,
    /// Process-wide prctl and mm attributes.
    pub attrs: ProcessAttrs,
    /// Interval timers and POSIX timers.
    pub timers: Timers,
    /// Handlers for signals 1..=64, index 0 is signal 1.
    pub sigactions: Vec<KernelSigaction>,
    /// Signals queued for the whole process (shared pending queue).
    pub shared_pending: Vec<SigInfo>,
    /// The threads; the first is the thread-group leader (tid == pid).
    pub threads: Vec<ThreadImage>,
    /// The distinct seccomp filters of all threads (see [`ThreadImage::seccomp`]); threads
    /// whose chains hold identical filters share them.
    pub seccomp: Vec<SeccompFilter>,
    /// Audit identity; `None` when the kernel has no audit (`/proc/PID/loginuid` absent).
    pub audit: Option<Audit>,
    /// The threads whose credentials differ from the leader's (`creds`), with their own
    /// (Linux keeps credentials per thread; `setresuid` and friends change one thread,
    /// libc broadcasts them to all). A thread not listed has the leader's.
    pub thread_creds: Vec<ThreadCreds>,
}

/// One thread's own credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCreds {
    pub tid: i32,
    pub creds: Creds,
}

impl TaskImage {
    /// The credentials of thread `tid`: its own if listed in `thread_creds`, else the
    /// leader's.
    pub fn creds_of(&self, tid: i32) -> &Creds {
        let own = self.thread_creds.iter().find(|t| t.tid == tid);
        own.map_or(&self.creds, |t| &t.creds)
    }
}

/// `$to { the fields a task record of versions 5 to 8 and of 9 share, from $t, $($rest)* }`.
macro_rules! task_fields {
    ($to:ident, $t:expr, $($rest:tt)*) => {
        $to {
            pid: $t.pid,
            pgid: $t.pgid,
            sid: $t.sid,
            ppid: $t.ppid,
            comm: $t.comm,
            personality: $t.personality,
            umask: $t.umask,
            rlimits: $t.rlimits,
            cwd: $t.cwd,
            root: $t.root,
            creds: $t.creds,
            oom_score_adj: $t.oom_score_adj,
            attrs: $t.attrs,
            timers: $t.timers,
            sigactions: $t.sigactions,
            shared_pending: $t.shared_pending,
            threads: $t.threads,
            seccomp: $t.seccomp,
            audit: $t.audit,
            $($rest)*
        }
    };
}

/// The task record of format versions 5 to 8: no `thread_creds` (every thread had the
/// leader's credentials: a dump refused any other).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub struct TaskImageV8 {
    pid: i32,
    pgid: i32,
    sid: i32,
    ppid: i32,
    comm: String,
    personality: u32,
    umask: u32,
    rlimits: Vec<(u64, u64)>,
    cwd: String,
    root: String,
    creds: Creds,
    oom_score_adj: i32,
    attrs: ProcessAttrs,
    timers: Timers,
    sigactions: Vec<KernelSigaction>,
    shared_pending: Vec<SigInfo>,
    threads: Vec<ThreadImage>,
    seccomp: Vec<SeccompFilter>,
    audit: Option<Audit>,
}

impl From<TaskImageV8> for TaskImage {
    fn from(old: TaskImageV8) -> Self {
        task_fields!(TaskImage, old, thread_creds: Vec::new())
    }
}

/// A current task record as version 8 wrote it, for tests of old images.
#[cfg(test)]
impl From<TaskImage> for TaskImageV8 {
    fn from(task: TaskImage) -> Self {
        task_fields!(TaskImageV8, task,)
    }
}

/// The audit login identity of a process (`/proc/PID/loginuid`, `/proc/PID/sessionid`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// `u32::MAX` is unset.
    pub loginuid: u32,
    /// Informational: the kernel hands out a new session id whenever loginuid is set, and
    /// none can be chosen.
    pub sessionid: u32,
}

/// Credentials, restored last so that privileged steps run first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    /// The capability sets (`/proc/PID/status` `CapInh`..`CapAmb`).
    pub caps: Caps,
    /// `PR_GET_SECUREBITS`.
    pub securebits: u32,
    /// `PR_GET_NO_NEW_PRIVS` (`NoNewPrivs` in status); set last at restore.
    pub no_new_privs: bool,
}

/// Capability sets, one bit per `CAP_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
}

/// Process-wide attributes set with prctl/membarrier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessAttrs {
    /// `PR_GET_DUMPABLE`: 0, 1, or 2 (`suid_dumpable`, which prctl cannot set: restored as 0).
    pub dumpable: u32,
    /// `PR_GET_THP_DISABLE`: bit 0 disabled, the other bits its flags
    /// (`PR_THP_DISABLE_EXCEPT_ADVISED`).
    pub thp_disable: u32,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS`: the `MEMBARRIER_CMD_REGISTER_*` commands done.
    pub membarrier: u32,
}

/// The timers of a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
    pub itimers: [ITimer; 3],
    /// POSIX timers in increasing id order.
    pub posix: Vec<PosixTimer>,
}

/// One `getitimer(2)` value, in microseconds; `value_us == 0` is disarmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ITimer {
    pub interval_us: u64,
    pub value_us: u64,
}

/// One POSIX timer (`timer_create(2)`), restored under the same id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    /// `SIGEV_SIGNAL` 0, `SIGEV_NONE` 1, `SIGEV_THREAD` 2, or'ed with `SIGEV_THREAD_ID` 4.
    pub notify: i32,
    pub signal: i32,
    /// The thread signalled under `SIGEV_THREAD_ID` (else the pid).
    pub target: i32,
    pub sigev_value: u64,
    pub interval_ns: u64,
    /// Time left until the next expiry; 0 is disarmed.
    pub remaining_ns: u64,
    /// `timer_getoverrun(2)` (informational: no call sets it).
    pub overrun: i32,
}

/// One thread's CPU and signal state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    pub tid: i32,
    /// General-purpose registers as seen at the freeze (possibly inside a syscall).
    pub regs: GpRegs,
    /// The raw `NT_X86_XSTATE` regset (the kernel's xsave layout).
    pub xsave: Vec<u8>,
    /// Blocked signals.
    pub sigmask: u64,
    /// Signals queued for this thread only.
    pub pending: Vec<SigInfo>,
    /// The registered rseq area, if any.
    pub rseq: Option<RseqConfig>,
    /// `set_tid_address(2)` value (`PR_GET_TID_ADDRESS`).
    pub clear_child_tid: u64,
    pub altstack: AltStack,
    /// `/proc/PID/task/TID/comm`: the thread's name.
    pub comm: String,
    /// Robust futex list head (`get_robust_list(2)`), 0 when none is registered.
    pub robust_list: u64,
    /// Its registered length.
    pub robust_list_len: u64,
    /// Scheduling attributes.
    pub sched: ThreadSched,
    /// `PR_GET_PDEATHSIG` (0 none).
    pub pdeathsig: i32,
    /// Seccomp mode and filter chain.
    pub seccomp: ThreadSeccomp,
}

/// A thread's scheduling attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSched {
    /// `getpriority(PRIO_PROCESS, tid)`: -20..=19, kept under real-time policies too.
    pub nice: i32,
    /// `sched_getattr(2)`: `SCHED_*` policy, flags, rt priority, deadline parameters.
    pub policy: u32,
    pub flags: u64,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
    /// CPU affinity mask, 64 CPUs per word, trailing zero words dropped.
    pub affinity: Vec<u64>,
    /// `PR_GET_TIMERSLACK` in ns (0 under real-time policies).
    pub timerslack_ns: u64,
    /// `ioprio_get(IOPRIO_WHO_PROCESS, tid)`: class << 13 | level.
    pub ioprio: u32,
}
