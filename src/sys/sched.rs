//! # Safety
//! Raw scheduling syscalls on another task, which nix does not wrap: `sched_getattr`,
//! `sched_setattr`, `getpriority`/`setpriority`, `ioprio_get`/`ioprio_set`. Each passes
//! plain integers or a pointer to a live, correctly sized [`SchedAttr`].
#![allow(unsafe_code)]

use nix::errno::Errno;

use super::Pod;
use crate::abi::SchedAttr;

/// A scheduling syscall on `tid` failed.
#[derive(Debug, thiserror::Error)]
#[error("{call} on tid {tid}")]
pub struct SchedError {
    pub call: &'static str,
    pub tid: i32,
    #[source]
    pub source: Errno,
}

const PRIO_PROCESS: i64 = 0;
const IOPRIO_WHO_PROCESS: i64 = 1;

fn check(call: &'static str, tid: i32, r: i64) -> Result<i64, SchedError> {
    if r == -1 {
        return Err(SchedError {
            call,
            tid,
            source: Errno::last(),
        });
    }
    Ok(r)
}

/// `sched_getattr(tid, attr, 56, 0)` — a thread's policy and its parameters.
/// <https://man7.org/linux/man-pages/man2/sched_getattr.2.html>
pub fn sched_getattr(tid: i32) -> Result<SchedAttr, SchedError> {
    let mut attr = SchedAttr::default();
    let size = attr.as_bytes().len() as u64;
    // SAFETY: `attr` is a live, writable SchedAttr of `size` bytes; the kernel writes at
    // most `size` bytes into it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    check("sched_getattr", tid, r)?;
    Ok(attr)
}

/// `sched_setattr(tid, attr, 0)` — set a thread's policy and its parameters.
/// <https://man7.org/linux/man-pages/man2/sched_setattr.2.html>
pub fn sched_setattr(tid: i32, attr: &SchedAttr) -> Result<(), SchedError> {
    // SAFETY: `attr` points at a live SchedAttr whose `size` field the caller set to at
    // most its size; the kernel only reads it.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, tid, attr as *const SchedAttr, 0) };
    check("sched_setattr", tid, r).map(drop)
}

/// `getpriority(PRIO_PROCESS, tid)` — the nice value (-20..=19).
/// <https://man7.org/linux/man-pages/man2/getpriority.2.html>
pub fn nice(tid: i32) -> Result<i32, SchedError> {
    // SAFETY: integer arguments only. The raw syscall returns 20 - nice, never -1.
    let r = unsafe { libc::syscall(libc::SYS_getpriority, PRIO_PROCESS, tid) };
    Ok(20 - check("getpriority", tid, r)? as i32)
}

/// `setpriority(PRIO_PROCESS, tid, nice)`.
pub fn set_nice(tid: i32, nice: i32) -> Result<(), SchedError> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_setpriority, PRIO_PROCESS, tid, nice) };
    check("setpriority", tid, r).map(drop)
}

/// `ioprio_get(IOPRIO_WHO_PROCESS, tid)` — the I/O priority (class << 13 | level).
/// <https://man7.org/linux/man-pages/man2/ioprio_get.2.html>
pub fn ioprio(tid: i32) -> Result<u32, SchedError> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
    Ok(check("ioprio_get", tid, r)? as u32)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, tid, prio)`.
pub fn set_ioprio(tid: i32, prio: u32) -> Result<(), SchedError> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, prio) };
    check("ioprio_set", tid, r).map(drop)
}
