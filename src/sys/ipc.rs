//! # Safety
//! System V IPC calls through libc (`shmat`/`shmdt`, `semctl`, `msgrcv`, `msgsnd` take
//! raw pointers to buffers sized here) and the per-thread `setresuid`/`setresgid` raw
//! syscalls. A segment attached by [`Attached`] lives in our address space until its drop
//! detaches it; its bytes are copied with `ptr::copy_nonoverlapping` only within the
//! attached length, as another process may change them at any time (never a `&[u8]`).
//!
//! System V IPC objects seen from the calling thread's IPC namespace, and the thread-local
//! identity switches that make a new object's creator the saved one. Policy (what to
//! save, when to reuse an object) lives in `dump/sysv.rs` and `restore/sysv.rs`.
#![allow(unsafe_code)]

use std::os::fd::AsFd;

use nix::errno::Errno;

/// A failed System V IPC call on object `id` (or key, for a get).
#[derive(Debug, thiserror::Error)]
#[error("{op} of System V IPC object {id}")]
pub struct IpcError {
    pub op: &'static str,
    pub id: i32,
    #[source]
    pub source: Errno,
}

fn check(op: &'static str, id: i32, r: libc::c_long) -> Result<i64, IpcError> {
    Errno::result(r).map_err(|source| IpcError { op, id, source })
}

/// `SHM_HUGETLB` (not in every libc).
pub const SHM_HUGETLB: i32 = 0o4000;
/// `MSG_COPY`: `msgrcv` copies message number `msgtyp` without removing it.
pub const MSG_COPY: i32 = 0o40000;

/// A segment attached into our address space; detached on drop.
#[derive(Debug)]
pub struct Attached {
    addr: *mut u8,
    len: usize,
    id: i32,
}

/// `shmat(id, NULL, SHM_RDONLY or 0)` — attach segment `id` (`len`: its size rounded up to
/// pages, at most the mapping's length)
/// anywhere in our address space; see
/// [shmat(2)](https://man7.org/linux/man-pages/man2/shmat.2.html).
pub fn attach(id: i32, len: usize, read_only: bool) -> Result<Attached, IpcError> {
    let flags = if read_only { libc::SHM_RDONLY } else { 0 };
    // SAFETY: a NULL address lets the kernel choose a free range; nothing of ours is
    // replaced.
    let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if p as isize == -1 {
        return Err(IpcError {
            op: "shmat",
            id,
            source: Errno::last(),
        });
    }
    Ok(Attached {
        addr: p as *mut u8,
        len,
        id,
    })
}

// SAFETY: the attachment is memory of the whole process, not of the thread that made it;
// any thread may copy through it or detach it.
unsafe impl Send for Attached {}

impl Attached {
    /// Where the segment is attached in our address space.
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Copies `out.len()` bytes from offset `off` of the segment.
    pub fn copy_out(&self, off: usize, out: &mut [u8]) {
        assert!(off + out.len() <= self.len, "copy inside the segment");
        // SAFETY: the range lies inside the attached mapping (checked above), which stays
        // mapped while `self` lives; `out` is a distinct buffer of ours.
        unsafe { std::ptr::copy_nonoverlapping(self.addr.add(off), out.as_mut_ptr(), out.len()) }
    }

    /// Copies `data` into the segment at offset `off` (attached writable).
    pub fn copy_in(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "copy inside the segment");
        // SAFETY: as `copy_out`; the mapping was attached without SHM_RDONLY by the
        // caller (a write to a read-only attachment would fault, not corrupt).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(off), data.len()) }
    }

    /// `madvise(MADV_REMOVE)` over `len` bytes (page multiple) at `off`: the segment's
    /// pages there are freed (they read as zeros).
    pub fn remove(&self, off: usize, len: usize) -> Result<(), IpcError> {
        // SAFETY: the range is inside our attached mapping; MADV_REMOVE only frees the
        // backing pages of this shared object.
        let r = unsafe { libc::madvise(self.addr.add(off).cast(), len, libc::MADV_REMOVE) };
        check("madvise(MADV_REMOVE)", self.id, r as libc::c_long).map(|_| ())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: `addr` is the address shmat returned; nothing borrows it past `self`.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}

/// `shmget(key, size, flags)`; see [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html).
pub fn shmget(key: i32, size: u64, flags: i32) -> Result<i32, IpcError> {
    // SAFETY: no pointers.
    let r = unsafe { libc::shmget(key, size as usize, flags) };
    check("shmget", key, r as libc::c_long).map(|v| v as i32)
}

/// `shmctl(id, cmd, NULL)` for commands without a buffer (`IPC_RMID`, `SHM_LOCK`).
pub fn shmctl(id: i32, cmd: i32, op: &'static str) -> Result<(), IpcError> {
    // SAFETY: these commands read no buffer.
    let r = unsafe { libc::shmctl(id, cmd, std::ptr::null_mut()) };
    check(op, id, r as libc::c_long).map(|_| ())
}

/// `shmctl(id, IPC_SET)`: owner and mode bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), IpcError> {
    // SAFETY: shmid_ds is plain data; zeroed is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = mode as _;
    // SAFETY: `ds` is a live shmid_ds the kernel reads.
    let r = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    check("shmctl(IPC_SET)", id, r as libc::c_long).map(|_| ())
}

/// `semget(key, nsems, flags)`.
pub fn semget(key: i32, nsems: i32, flags: i32) -> Result<i32, IpcError> {
    // SAFETY: no pointers.
    let r = unsafe { libc::semget(key, nsems, flags) };
    check("semget", key, r as libc::c_long).map(|v| v as i32)
}

/// `semctl(id, 0, GETALL)`: the values of the set's `n` semaphores.
pub fn sem_values(id: i32, n: usize) -> Result<Vec<u16>, IpcError> {
    let mut v = vec![0u16; n];
    // SAFETY: GETALL writes `nsems` unsigned shorts; `v` holds exactly the set's count.
    let r = unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) };
    check("semctl(GETALL)", id, r as libc::c_long)?;
    Ok(v)
}

/// The kernel's cap on the semaphores of a set (`SEMMSL_FAST`... `SEMMSL` is 32000).
pub const SEMMSL_MAX: usize = 32000;

/// `semctl(id, 0, SETALL)`: `values` in the set's first semaphores, zeros after.
pub fn sem_set_values(id: i32, values: &[u16]) -> Result<(), IpcError> {
    assert!(
        values.len() <= SEMMSL_MAX,
        "at most SEMMSL semaphores in a set"
    );
    let mut v = vec![0u16; SEMMSL_MAX];
    v[..values.len()].copy_from_slice(values);
    // SAFETY: SETALL reads the set's `nsems` unsigned shorts, never more than SEMMSL
    // (the kernel's hard cap); `v` holds that many.
    let r = unsafe { libc::semctl(id, 0, libc::SETALL, v.as_ptr()) };
    check("semctl(SETALL)", id, r as libc::c_long).map(|_| ())
}

/// `semctl(id, 0, IPC_SET)`: owner and mode bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), IpcError> {
    #[repr(C)]
    struct SemidDs {
        perm: libc::ipc_perm,
        rest: [u64; 8],
    }
    // SAFETY: plain data; zeroed is valid.
    let mut ds: SemidDs = unsafe { std::mem::zeroed() };
    ds.perm.uid = uid;
    ds.perm.gid = gid;
    ds.perm.mode = mode as _;
    // SAFETY: IPC_SET reads a semid64_ds (ipc_perm + times + nsems, < our size).
    let r = unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut SemidDs) };
    check("semctl(IPC_SET)", id, r as libc::c_long).map(|_| ())
}

/// `semctl(id, 0, IPC_RMID)`.
pub fn sem_remove(id: i32) -> Result<(), IpcError> {
    // SAFETY: no buffer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    check("semctl(IPC_RMID)", id, r as libc::c_long).map(|_| ())
}

/// `msgget(key, flags)`.
pub fn msgget(key: i32, flags: i32) -> Result<i32, IpcError> {
    // SAFETY: no pointers.
    let r = unsafe { libc::msgget(key, flags) };
    check("msgget", key, r as libc::c_long).map(|v| v as i32)
}

/// `msgctl(id, IPC_STAT)`: the queue's `msg_qbytes`.
pub fn msg_qbytes(id: i32) -> Result<u64, IpcError> {
    // SAFETY: plain data; zeroed is valid.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds into `ds`.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    check("msgctl(IPC_STAT)", id, r as libc::c_long)?;
    Ok(ds.msg_qbytes as u64)
}

/// `msgctl(id, IPC_SET)`: owner, mode bits and `msg_qbytes`.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<(), IpcError> {
    // SAFETY: plain data; zeroed is valid.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = mode as _;
    ds.msg_qbytes = qbytes as _;
    // SAFETY: IPC_SET reads one msqid_ds from `ds`.
    let r = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    check("msgctl(IPC_SET)", id, r as libc::c_long).map(|_| ())
}

/// `msgctl(id, IPC_RMID)`.
pub fn msg_remove(id: i32) -> Result<(), IpcError> {
    // SAFETY: IPC_RMID reads no buffer.
    let r = unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check("msgctl(IPC_RMID)", id, r as libc::c_long).map(|_| ())
}

/// `msgrcv(id, .., max, n, IPC_NOWAIT | MSG_COPY)` — a copy of message number `n` of the
/// queue (type and text), left in place; `max` bounds its size.
pub fn msg_copy(id: i32, n: i64, max: usize) -> Result<(i64, Vec<u8>), IpcError> {
    let got = msgrcv(id, max, n, MSG_COPY, "msgrcv(MSG_COPY)")?;
    got.ok_or(IpcError {
        op: "msgrcv(MSG_COPY)",
        id,
        source: Errno::ENOMSG,
    })
}

/// `msgrcv(id, .., max, 0, IPC_NOWAIT | MSG_NOERROR)` — takes the first message off the
/// queue; false when it is empty.
pub fn msg_take(id: i32, max: usize) -> Result<bool, IpcError> {
    msgrcv(id, max, 0, libc::MSG_NOERROR, "msgrcv").map(|m| m.is_some())
}

/// `msgrcv(id, buf, max, typ, IPC_NOWAIT | flags)`: the message's type and text, or none
/// (`ENOMSG`).
fn msgrcv(
    id: i32,
    max: usize,
    typ: i64,
    flags: i32,
    op: &'static str,
) -> Result<Option<(i64, Vec<u8>)>, IpcError> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: `buf` holds a long mtype and `max` bytes of text, as msgrcv writes at most.
    let r = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            max,
            typ,
            libc::IPC_NOWAIT | flags,
        )
    };
    let len = match Errno::result(r) {
        Ok(n) => n as usize,
        Err(Errno::ENOMSG) => return Ok(None),
        Err(source) => return Err(IpcError { op, id, source }),
    };
    let mtype = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    buf.drain(..8);
    buf.truncate(len);
    Ok(Some((mtype, buf)))
}

/// `msgsnd(id, {mtype, text}, IPC_NOWAIT)`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> Result<(), IpcError> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` is a long mtype followed by `text.len()` bytes, as msgsnd reads.
    let r = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) };
    check("msgsnd", id, r as libc::c_long).map(|_| ())
}

/// `setns(fd, CLONE_NEWIPC)` for the calling thread only (IPC namespaces are per task).
pub fn enter_ipc_ns(ns: &impl AsFd) -> Result<(), Errno> {
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWIPC)
}

/// The IPC namespace of a process could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("setns into the IPC namespace {path}")]
    Setns {
        path: String,
        #[source]
        source: Errno,
    },
    #[error("PR_SET_SECUREBITS(SECBIT_NO_SETUID_FIXUP) in the IPC thread")]
    Securebits(#[source] Errno),
    #[error("the System V IPC thread panicked")]
    Panicked,
}

/// Runs `f` in a new thread of stasis, which enters the IPC namespace of `pid` first if
/// given and keeps its capabilities across uid changes
/// ([`keep_caps_on_setuid`]); what the thread changes of itself dies with it.
pub fn in_ipc_ns_of<T: Send>(pid: Option<i32>, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(pid) = pid {
                let path = format!("/proc/{pid}/ns/ipc");
                let ns = std::fs::File::open(&path).map_err(|source| NsError::Open {
                    path: path.clone(),
                    source,
                })?;
                enter_ipc_ns(&ns).map_err(|source| NsError::Setns { path, source })?;
            }
            keep_caps_on_setuid().map_err(NsError::Securebits)?;
            Ok(f())
        })
        .join()
        .unwrap_or(Err(NsError::Panicked))
    })
}

/// The calling thread's effective uid and gid (raw `setresuid`/`setresgid`, which change
/// this thread only, unlike libc's, which change every thread of the process). The
/// thread keeps its capabilities across the change if its securebits have
/// `SECBIT_NO_SETUID_FIXUP` (see [`keep_caps_on_setuid`]).
pub fn set_thread_euid_egid(uid: u32, gid: u32) -> Result<(), Errno> {
    let keep = u32::MAX as libc::c_long;
    // SAFETY: no pointers; affects this thread's credentials only.
    Errno::result(unsafe { libc::syscall(libc::SYS_setresgid, keep, gid, keep) })?;
    // SAFETY: as above.
    Errno::result(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid, keep) }).map(|_| ())
}

/// `prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP)` for the calling thread: uid changes
/// no longer clear its effective capabilities.
pub fn keep_caps_on_setuid() -> Result<(), Errno> {
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    // SAFETY: no pointers; affects this thread's credentials only.
    let r = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) };
    Errno::result(r).map(|_| ())
}
