//! # Safety
//! Raw kernel interfaces that, so far, only `stasis check` calls to find out whether the
//! running kernel has them: ptrace requests nix does not wrap, pidfd, the
//! `PAGEMAP_SCAN` and `UFFDIO_API` ioctls, `PR_SET_MM_MAP_SIZE`, and short-lived children
//! (a paused tracee, a vDSO mover, a `clone3` with `set_tid`).
//!
//! Every wrapper has a safe signature: the pointers it hands the kernel come from Rust
//! references or slices whose sizes it passes alongside, and file descriptors the kernel
//! returns are wrapped in `OwnedFd` at once. The process calling these may be
//! multi-threaded, so code that runs in a forked child lives only in this file and makes
//! nothing but raw system calls (async-signal-safe: no allocation, no locks) before `_exit`.
//! Policy (what a result means, what to tell the user) lives in `crate::check`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::abi::{IoVec, RseqConfig, SigInfo};

/// `PTRACE_PEEKSIGINFO_SHARED`: peek the process-wide queue instead of the thread's.
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `UFFD_API` (linux/userfaultfd.h).
const UFFD_API: u64 = 0xaa;
/// `UFFDIO_API` = `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;

/// How a probe child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    /// It called `_exit` with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(Signal),
}

/// A forked child that sits in `pause()` until it is killed: a tracee for ptrace probes.
///
/// Drop policy: the child is sent `SIGKILL` and reaped, whether or not it is traced, so a
/// probe can never leak a process or a zombie.
#[derive(Debug)]
pub struct PausedChild {
    pid: Pid,
}

impl PausedChild {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }
}

impl Drop for PausedChild {
    fn drop(&mut self) {
        // Errors are ignored: the child may already be dead, and `reap` then collects it.
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = reap(self.pid);
    }
}

/// `fork()` a child that sleeps in `pause()` forever (and dies with the forking thread
/// through `PR_SET_PDEATHSIG`). It shares this process's memory image and fds at fork time.
pub fn spawn_paused() -> nix::Result<PausedChild> {
    fork_paused(Pid::this())
}

/// [`spawn_paused`] with the child in the pid namespace `ns` (one below this process's):
/// forked while this thread's `pid_for_children` is `ns`, which is set back after.
pub fn spawn_paused_in(ns: BorrowedFd<'_>) -> nix::Result<PausedChild> {
    let own = std::fs::File::open("/proc/thread-self/ns/pid")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWPID)?;
    // Its parent is outside its namespace: `getppid()` is 0 there.
    let child = fork_paused(Pid::from_raw(0));
    let back = nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWPID);
    let child = child?;
    back?;
    Ok(child)
}

/// Forks the paused child, which expects `getppid()` to be `parent`.
fn fork_paused(parent: Pid) -> nix::Result<PausedChild> {
    // SAFETY: the child runs only `paused_child`, which makes raw system calls and never
    // returns, so no lock or allocator state copied from other threads is touched.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(PausedChild { pid: child }),
        ForkResult::Child => paused_child(parent),
    }
}

/// Body of [`spawn_paused`]'s child: async-signal-safe system calls only.
fn paused_child(parent: Pid) -> ! {
    // SAFETY: prctl, getppid, pause and _exit are plain system calls taking integers.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent.as_raw() {
            libc::_exit(1);
        }
        loop {
            libc::pause();
        }
    }
}

/// Fork a child that moves its own `[vdso]` (`start`, `len` bytes, as in this process's
/// maps) to a fresh address with `mremap(MREMAP_MAYMOVE | MREMAP_FIXED)`, then exits: 0 if
/// the move worked, otherwise the errno of the failing call.
/// See [mremap(2)](https://man7.org/linux/man-pages/man2/mremap.2.html).
pub fn mremap_vdso_in_child(start: u64, len: u64) -> nix::Result<ChildEnd> {
    // SAFETY: the child runs only `vdso_mover_child`, which makes raw system calls and
    // never returns; it alters nothing but its own copy of the address space.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => reap(child),
        ForkResult::Child => vdso_mover_child(start, len),
    }
}

/// Body of [`mremap_vdso_in_child`]'s child: async-signal-safe system calls only.
fn vdso_mover_child(start: u64, len: u64) -> ! {
    // SAFETY: mmap of fresh anonymous memory and mremap of the vDSO change only this
    // child's address space; after the move nothing calls into the vDSO (the child only
    // reads errno and exits). The pointers are never dereferenced here.
    unsafe {
        let len = len as libc::size_t;
        let dest = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if dest == libc::MAP_FAILED {
            libc::_exit(Errno::last_raw());
        }
        let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
        let moved = libc::mremap(start as *mut libc::c_void, len, len, flags, dest);
        libc::_exit(if moved == libc::MAP_FAILED {
            Errno::last_raw()
        } else {
            0
        })
    }
}

/// `clone3()` a child into a new PID namespace with `set_tid = [1]`, which exits at once:
/// 0 if it found itself to be pid 1, 1 otherwise. `Err` is the errno of `clone3` itself
/// (`EPERM` without the capability, `ENOSYS`/`E2BIG` on kernels without `set_tid`).
/// See [clone3(2)](https://man7.org/linux/man-pages/man2/clone3.2.html).
pub fn clone3_set_tid_in_new_pidns() -> nix::Result<ChildEnd> {
    let set_tid: [libc::pid_t; 1] = [1];
    let args = libc::clone_args {
        flags: libc::CLONE_NEWPID as u64,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: set_tid.len() as u64,
        cgroup: 0,
    };
    // SAFETY: `args` and `set_tid` outlive the call and `args`' size is passed with it.
    // Without CLONE_VM and with stack 0 the child runs on a copy-on-write copy of this
    // stack, like after fork, and immediately takes the `0` branch below, which makes only
    // raw system calls before `_exit`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of_val(&args),
        )
    };
    match Errno::result(ret)? {
        0 => {
            // SAFETY: getpid and _exit are plain system calls; see above.
            unsafe {
                let pid = libc::syscall(libc::SYS_getpid);
                libc::_exit(if pid == 1 { 0 } else { 1 })
            }
        }
        child => reap(Pid::from_raw(child as libc::pid_t)),
    }
}

/// Wait for `pid` to end (skipping ptrace stops) and report how.
fn reap(pid: Pid) -> nix::Result<ChildEnd> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ChildEnd::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ChildEnd::Signaled(sig)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `ptrace(request, pid, addr, data)` for requests that return a count or 0.
///
/// # Safety
/// `addr` and `data` must be what `request` expects: null, an integer, or a pointer to
/// memory of the size the request reads or writes.
unsafe fn ptrace_raw(
    request: libc::c_uint,
    pid: Pid,
    addr: *mut libc::c_void,
    data: *mut libc::c_void,
) -> nix::Result<libc::c_long> {
    // SAFETY: forwarded to the caller.
    Errno::result(unsafe { libc::ptrace(request, pid.as_raw(), addr, data) })
}

/// `ptrace(PTRACE_GETREGSET, pid, note, &iov)` — copy register set `note` (e.g.
/// `NT_X86_XSTATE`) of a ptrace-stopped tracee into `buf`; returns the bytes written.
/// See [ptrace(2)](https://man7.org/linux/man-pages/man2/ptrace.2.html).
pub fn getregset(pid: Pid, note: u32, buf: &mut [u8]) -> nix::Result<usize> {
    let mut iov = IoVec {
        base: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    };
    // SAFETY: `iov` describes `buf`, which stays borrowed for the call; the kernel writes
    // at most `iov.len` bytes there and updates `iov.len` (a kernel promise).
    unsafe {
        ptrace_raw(
            libc::PTRACE_GETREGSET,
            pid,
            note as usize as *mut libc::c_void,
            &mut iov as *mut IoVec as *mut libc::c_void,
        )?;
    }
    Ok(iov.len.min(buf.len() as u64) as usize)
}

/// `ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, size, &conf)` — where the tracee's rseq
/// area is; returns it and the number of bytes the kernel filled in (Linux 5.13).
pub fn get_rseq_configuration(pid: Pid) -> nix::Result<(RseqConfig, usize)> {
    let mut conf = RseqConfig::default();
    let size = std::mem::size_of::<RseqConfig>();
    // SAFETY: `data` points to `conf` and `addr` carries its size, which bounds the copy
    // (a kernel promise: it copies min(addr, sizeof(struct ptrace_rseq_configuration))).
    let written = unsafe {
        ptrace_raw(
            libc::PTRACE_GET_RSEQ_CONFIGURATION,
            pid,
            size as *mut libc::c_void,
            &mut conf as *mut RseqConfig as *mut libc::c_void,
        )?
    };
    Ok((conf, written as usize))
}

/// `ptrace(PTRACE_GETSIGMASK, pid, 8, &mask)` — the tracee's blocked-signal mask.
pub fn getsigmask(pid: Pid) -> nix::Result<u64> {
    let mut mask = 0u64;
    // SAFETY: `data` points to a u64 and `addr` says 8 bytes, the kernel sigset size.
    unsafe {
        ptrace_raw(
            libc::PTRACE_GETSIGMASK,
            pid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            &mut mask as *mut u64 as *mut libc::c_void,
        )?;
    }
    Ok(mask)
}

/// `struct ptrace_peeksiginfo_args` (linux/ptrace.h).
#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// `ptrace(PTRACE_PEEKSIGINFO, ..)` — copy up to `out.len()` pending signals of the tracee,
/// starting at queue position `off`, from its own queue or (`shared`) the process's;
/// returns how many were copied (0 when none is pending).
pub fn peeksiginfo(pid: Pid, off: u64, shared: bool, out: &mut [SigInfo]) -> nix::Result<usize> {
    let mut args = PeekSigInfoArgs {
        off,
        flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
        nr: i32::try_from(out.len()).map_err(|_| Errno::EINVAL)?,
    };
    // SAFETY: `args` is the kernel's struct; `out` has room for `args.nr` 128-byte siginfos,
    // and the kernel copies at most that many (a kernel promise).
    let n = unsafe {
        ptrace_raw(
            libc::PTRACE_PEEKSIGINFO,
            pid,
            &mut args as *mut PeekSigInfoArgs as *mut libc::c_void,
            out.as_mut_ptr() as *mut libc::c_void,
        )?
    };
    Ok(n as usize)
}

/// `pidfd_open(pid, 0)` — a file descriptor referring to process `pid` (Linux 5.3).
/// See [pidfd_open(2)](https://man7.org/linux/man-pages/man2/pidfd_open.2.html).
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    pidfd_open_with(pid, 0)
}

/// `pidfd_open(pid, flags)` (`PIDFD_NONBLOCK`, `PIDFD_THREAD`).
pub fn pidfd_open_with(pid: Pid, flags: i32) -> nix::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), flags) })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `process_mrelease(pidfd, 0)` — free the memory of a process that is being killed
/// (SIGKILL sent) from the caller's context, beside its own exit (Linux 5.15).
/// See [process_mrelease(2)](https://man7.org/linux/man-pages/man2/process_mrelease.2.html).
pub fn process_mrelease(pidfd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: integer arguments only; `pidfd` is open for the call.
    let r = unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd.as_raw_fd(), 0) };
    Errno::result(r).map(drop)
}

/// `pidfd_getfd(pidfd, target_fd, 0)` — a duplicate of fd `target_fd` of the process
/// `pidfd` refers to (Linux 5.6).
/// See [pidfd_getfd(2)](https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: integer arguments only; `pidfd` is open for the call.
    let fd = Errno::result(unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0)
    })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `userfaultfd(O_CLOEXEC | O_NONBLOCK)` — a new, not yet initialized userfaultfd.
/// See [userfaultfd(2)](https://man7.org/linux/man-pages/man2/userfaultfd.2.html).
pub fn userfaultfd() -> nix::Result<OwnedFd> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: an integer argument only.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `struct uffdio_api` (linux/userfaultfd.h).
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `ioctl(uffd, UFFDIO_API, ..)` — the API handshake asking for `features`; fails with
/// `EINVAL` if the kernel lacks one of them, else returns the features it enabled.
pub fn uffdio_api(uffd: BorrowedFd<'_>, features: u64) -> nix::Result<u64> {
    let mut api = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: `api` is the kernel's 24-byte struct, which the ioctl reads and writes.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    Errno::result(ret).map(|_| api.features)
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size)` — the size of `struct prctl_mm_map` the
/// kernel expects; fails with `EINVAL` when it lacks `PR_SET_MM_MAP` (no
/// CONFIG_CHECKPOINT_RESTORE). Changes nothing.
pub fn prctl_mm_map_size() -> nix::Result<u32> {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE only stores an unsigned int through the pointer, which
    // points to `size`.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE as libc::c_ulong,
            &mut size as *mut libc::c_uint,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(ret).map(|_| size)
}
