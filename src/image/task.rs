//! Per-process and per-thread records: identity, registers, signals, fs context, creds.

use serde::{Deserialize, Serialize};

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
    /// Handlers for signals 1..=64, index 0 is signal 1.
    pub sigactions: Vec<KernelSigaction>,
    /// Signals queued for the whole process (shared pending queue).
    pub shared_pending: Vec<SigInfo>,
    /// The threads; the first is the thread-group leader (tid == pid).
    pub threads: Vec<ThreadImage>,
}

/// Credentials, restored last so that privileged steps run first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
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
}
