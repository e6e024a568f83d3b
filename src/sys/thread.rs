//! # Safety
//! `get_robust_list(2)` through the raw syscall: the kernel writes one pointer-sized head
//! and one `size_t` length into two live locals of exactly those sizes; `tgkill(2)` takes
//! only integers.
//!
//! Per-thread kernel state that another task may read from outside (with ptrace access).
#![allow(unsafe_code)]

use nix::errno::Errno;

/// A thread's robust futex list registration (`set_robust_list(2)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RobustList {
    /// Address of the `struct robust_list_head` (0: none registered).
    pub head: u64,
    /// Its length as registered (the kernel accepts only `sizeof(struct robust_list_head)`).
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("get_robust_list of tid {tid}")]
pub struct RobustListError {
    pub tid: i32,
    #[source]
    pub source: Errno,
}

/// `get_robust_list(tid, &head, &len)` — the robust futex list head of thread `tid`; see
/// [get_robust_list(2)](https://man7.org/linux/man-pages/man2/get_robust_list.2.html).
/// Needs ptrace read access to `tid` (we are its tracer).
pub fn robust_list(tid: i32) -> Result<RobustList, RobustListError> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: the kernel stores a `struct robust_list_head *` (8 bytes on x86_64) into
    // `head` and a `size_t` into `len`; both are live, writable and correctly sized.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    Errno::result(r).map_err(|source| RobustListError { tid, source })?;
    Ok(RobustList {
        head,
        len: len as u64,
    })
}

/// `tgkill(pid, tid, sig)` — send `sig` to thread `tid` of process `pid`; see
/// [tgkill(2)](https://man7.org/linux/man-pages/man2/tgkill.2.html).
pub fn tgkill(pid: i32, tid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    Errno::result(r).map(drop)
}
