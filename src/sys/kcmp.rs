//! # Safety
//! `kcmp(2)` through the raw syscall: integer arguments only, nothing is read or written
//! in our memory.
//!
//! Whether two tasks share a kernel object: an open file description, an fd table, fs
//! context, address space or signal handlers. Used to find what a process tree shares.
#![allow(unsafe_code)]

use nix::errno::Errno;

/// The kernel objects `kcmp` can compare (linux/kcmp.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Object {
    /// Open file descriptions (`idx` are fds).
    File = 0,
    /// Address spaces (`CLONE_VM`).
    Vm = 1,
    /// fd tables (`CLONE_FILES`).
    Files = 2,
    /// cwd/root/umask (`CLONE_FS`).
    Fs = 3,
    /// Signal handler tables (`CLONE_SIGHAND`).
    Sighand = 4,
}

/// `kcmp(pid1, pid2, type, idx1, idx2)`: 0 if both tasks use the same object, 1 or 2
/// for the kernel's ordering of two different ones, 3 if they differ unordered; see
/// [kcmp(2)](https://man7.org/linux/man-pages/man2/kcmp.2.html).
pub fn compare(pid1: i32, pid2: i32, what: Object, idx1: u64, idx2: u64) -> Result<i32, Errno> {
    // SAFETY: integer arguments only; the kernel reads nothing from our memory.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, what as i32, idx1, idx2) };
    Errno::result(ret).map(|r| r as i32)
}

/// Both tasks use the same object (`kcmp(...) == 0`).
pub fn same(pid1: i32, pid2: i32, what: Object, idx1: u64, idx2: u64) -> Result<bool, Errno> {
    compare(pid1, pid2, what, idx1, idx2).map(|r| r == 0)
}

/// Whether `fd` is open in `pid`: `kcmp` of the fd with itself, which fails with `EBADF`
/// when it is not. A few hundred nanoseconds, where listing `/proc/PID/fd` makes the
/// kernel build an entry per open fd.
pub fn fd_open(pid: i32, fd: u64) -> Result<bool, Errno> {
    match compare(pid, pid, Object::File, fd, fd) {
        Ok(_) => Ok(true),
        Err(Errno::EBADF) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn tells_open_fds_from_free_ones() {
        let me = std::process::id() as i32;
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let fd = file.as_raw_fd() as u64;
        assert_eq!(fd_open(me, fd), Ok(true));
        // Far beyond any table this test process has.
        assert_eq!(fd_open(me, 1 << 20), Ok(false));
    }
}
