//! # Safety
//! `rt_sigaction(2)` with a null new action and `prlimit64(2)` with a null new limit, both
//! on stasis itself: the kernel only writes the old value into a live local of the kernel's
//! own layout (`KernelSigaction`, two `u64`s); `prctl(PR_GET_SECUREBITS)` takes no pointer.
//!
//! What a child made by `clone3` inherits from stasis: its signal actions, resource limits
//! and credentials (securebits here, the rest from `/proc/self/status`). Restore reads its
//! own to skip setting, in the child, what the child already has (each setting there is an
//! injected syscall, a ptrace round trip).
//!
//! Each is read once per run and kept: the cache is exact because stasis never changes
//! its own signal actions, limits or securebits (it only reads them; the Rust runtime
//! sets its actions before `main`), so the first reading stays true until it exits.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use nix::errno::Errno;

use crate::abi::KernelSigaction;

/// Signals 1..=64, the kernel's `_NSIG`.
const SIGNALS: i32 = 64;
/// `RLIM_NLIMITS`: resources 0..16.
const RLIMITS: u32 = 16;

/// The action of `sig` in stasis, read once per run (see the module doc).
pub fn own_sigaction(sig: i32) -> Result<KernelSigaction, Errno> {
    static ALL: OnceLock<Vec<Result<KernelSigaction, Errno>>> = OnceLock::new();
    let all = ALL.get_or_init(|| (1..=SIGNALS).map(read_sigaction).collect());
    let cached = usize::try_from(sig - 1).ok().and_then(|i| all.get(i));
    cached.copied().unwrap_or_else(|| read_sigaction(sig))
}

/// stasis's own `(soft, hard)` limit of `resource`, read once per run (see the module doc).
pub fn own_rlimit(resource: u32) -> Result<(u64, u64), Errno> {
    static ALL: OnceLock<Vec<Result<(u64, u64), Errno>>> = OnceLock::new();
    let all = ALL.get_or_init(|| (0..RLIMITS).map(read_rlimit).collect());
    let cached = all.get(resource as usize);
    cached.copied().unwrap_or_else(|| read_rlimit(resource))
}

/// stasis's own securebits, read once per run (see the module doc).
pub fn own_securebits() -> Result<u32, Errno> {
    static BITS: OnceLock<Result<u32, Errno>> = OnceLock::new();
    *BITS.get_or_init(read_securebits)
}

/// `rt_sigaction(sig, NULL, &old, 8)` on stasis itself — the action of `sig` here; see
/// [rt_sigaction(2)](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html).
fn read_sigaction(sig: i32) -> Result<KernelSigaction, Errno> {
    let mut old = KernelSigaction::default();
    // SAFETY: the new-action pointer is null (nothing is read); `old` is a live local of
    // the kernel's x86_64 `struct sigaction` layout (repr(C), four u64s), and 8 is the
    // size of the kernel's sigset_t, so the kernel writes exactly `old`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            std::ptr::null::<KernelSigaction>(),
            &mut old as *mut KernelSigaction,
            8usize,
        )
    };
    Errno::result(r).map(|_| old)
}

/// `prlimit64(0, resource, NULL, &old)` — stasis's own `(soft, hard)` limit; see
/// [prlimit(2)](https://man7.org/linux/man-pages/man2/prlimit.2.html).
fn read_rlimit(resource: u32) -> Result<(u64, u64), Errno> {
    let mut old = [0u64; 2];
    // SAFETY: pid 0 is ourselves, the new-limit pointer is null (nothing is read), and
    // `old` is a live local with the layout of `struct rlimit64` (two u64s).
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            std::ptr::null::<u64>(),
            old.as_mut_ptr(),
        )
    };
    Errno::result(r).map(|_| (old[0], old[1]))
}

/// `prctl(PR_GET_SECUREBITS)` of the calling thread; see
/// [prctl(2)](https://man7.org/linux/man-pages/man2/prctl.2.html).
fn read_securebits() -> Result<u32, Errno> {
    // SAFETY: PR_GET_SECUREBITS reads no argument and writes no memory.
    let r = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    Errno::result(r).map(|bits| bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_actions_and_limits() {
        // Rust's runtime ignores SIGPIPE; SIGKILL's action is always the default.
        assert_eq!(own_sigaction(libc::SIGPIPE).map(|a| a.handler), Ok(1));
        assert_eq!(own_sigaction(libc::SIGKILL).map(|a| a.handler), Ok(0));
        let (soft, hard) = own_rlimit(libc::RLIMIT_NOFILE).expect("prlimit");
        assert!(soft <= hard && soft > 0);
        assert!(own_securebits().is_ok());
    }

    #[test]
    fn cached_readings_match_fresh_ones() {
        for sig in 1..=SIGNALS {
            assert_eq!(own_sigaction(sig), read_sigaction(sig), "signal {sig}");
        }
        for res in 0..RLIMITS {
            assert_eq!(own_rlimit(res), read_rlimit(res), "resource {res}");
        }
        assert_eq!(own_securebits(), read_securebits());
    }
}
