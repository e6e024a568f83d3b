//! Kernel ABI types for x86_64 that both the system layer and the image format speak.
//!
//! These are plain data with the kernel's field order and layout (`#[repr(C)]`), so `sys`
//! can hand them to ptrace and the injected syscalls as bytes (through [`crate::sys::Pod`]),
//! and `image` can serialize them. This module owns layouts only, no behaviour.

use serde::{Deserialize, Serialize};

/// `struct user_regs_struct` (asm/user_64.h): what `PTRACE_GETREGS` and `NT_PRSTATUS` carry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)` on x86_64 (not glibc's layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `stack_t` for `sigaltstack(2)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub _pad: i32,
    pub size: u64,
}

/// `struct ptrace_rseq_configuration` (linux/ptrace.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub _pad: u32,
}

/// A `siginfo_t` as the kernel copies it: 128 opaque bytes, first the signal number.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo(pub [u8; 128]);

impl SigInfo {
    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        i32::from_ne_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl Serialize for SigInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SigInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        let arr: [u8; 128] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("siginfo must be 128 bytes"))?;
        Ok(SigInfo(arr))
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}

/// `struct prctl_mm_map` (linux/prctl.h) for `PR_SET_MM_MAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// `struct clone_args` for `clone3(2)` (linux/sched.h, `CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}

/// Page size on x86_64; stasis refuses to run elsewhere.
pub const PAGE_SIZE: u64 = 4096;

/// Syscall restart codes the kernel leaves in `rax` while a task sits in a signal stop.
pub const ERESTARTSYS: i64 = 512;
pub const ERESTARTNOINTR: i64 = 513;
pub const ERESTARTNOHAND: i64 = 514;
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// `struct itimerspec` (`timer_gettime`/`timer_settime`, sub-second part in ns) and
/// `struct itimerval` (`getitimer`/`setitimer`, in µs): both are two (seconds, sub-second)
/// pairs of i64, the interval first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerPair {
    pub interval_sec: i64,
    pub interval_sub: i64,
    pub value_sec: i64,
    pub value_sub: i64,
}

impl TimerPair {
    /// From (interval, value) in units of `1/per_sec` seconds.
    pub fn from_units(interval: u64, value: u64, per_sec: u64) -> Self {
        let split = |v: u64| ((v / per_sec) as i64, (v % per_sec) as i64);
        let (interval_sec, interval_sub) = split(interval);
        let (value_sec, value_sub) = split(value);
        TimerPair {
            interval_sec,
            interval_sub,
            value_sec,
            value_sub,
        }
    }

    /// (interval, value) in units of `1/per_sec` seconds; negative parts count as 0.
    pub fn to_units(self, per_sec: u64) -> (u64, u64) {
        let join = |s: i64, sub: i64| {
            (s.max(0) as u64)
                .saturating_mul(per_sec)
                .saturating_add(sub.max(0) as u64)
        };
        (
            join(self.interval_sec, self.interval_sub),
            join(self.value_sec, self.value_sub),
        )
    }
}

/// The kernel's `struct sigevent` as `timer_create(2)` reads it (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSigevent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    /// The target thread for `SIGEV_THREAD_ID`.
    pub tid: i32,
    pub _pad: [i32; 11],
}

/// `struct __user_cap_header_struct` for `capget`/`capset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapHeader {
    pub version: u32,
    pub pid: i32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two `CapData` halves.
pub const CAP_VERSION_3: u32 = 0x2008_0522;

/// Two `struct __user_cap_data_struct`: the low 32 capabilities, then the high ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapData {
    pub effective_lo: u32,
    pub permitted_lo: u32,
    pub inheritable_lo: u32,
    pub effective_hi: u32,
    pub permitted_hi: u32,
    pub inheritable_hi: u32,
}

impl CapData {
    pub fn new(effective: u64, permitted: u64, inheritable: u64) -> Self {
        CapData {
            effective_lo: effective as u32,
            permitted_lo: permitted as u32,
            inheritable_lo: inheritable as u32,
            effective_hi: (effective >> 32) as u32,
            permitted_hi: (permitted >> 32) as u32,
            inheritable_hi: (inheritable >> 32) as u32,
        }
    }

    pub fn permitted(&self) -> u64 {
        u64::from(self.permitted_lo) | (u64::from(self.permitted_hi) << 32)
    }
}

/// `struct sched_attr` (linux/sched/types.h), `SCHED_ATTR_SIZE_VER1` = 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}
