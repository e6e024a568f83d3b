//! # Safety
//! `rt_sigaction(2)` with a null new action and `prlimit64(2)` with a null new limit, both
//! on stasis itself: the kernel only writes the old value into a live local of the kernel's
//! own layout (`KernelSigaction`, two `u64`s); `prctl(PR_GET_SECUREBITS)` takes no pointer.
//!
//! What a child made by `clone3` inherits from stasis: its signal actions, resource limits
//! and credentials (securebits here, the rest from `/proc/self/status`). Restore reads its
//! own to skip setting, in the child, what the child already has (each setting there is an
//! injected syscall, a ptrace round trip).
#![allow(unsafe_code)]

use nix::errno::Errno;

use crate::abi::KernelSigaction;

/// `rt_sigaction(sig, NULL, &old, 8)` on stasis itself — the action of `sig` here; see
/// [rt_sigaction(2)](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html).
pub fn own_sigaction(sig: i32) -> Result<KernelSigaction, Errno> {
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
pub fn own_rlimit(resource: u32) -> Result<(u64, u64), Errno> {
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
pub fn own_securebits() -> Result<u32, Errno> {
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
}
