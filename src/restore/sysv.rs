//! System V IPC: the objects of `sysv.img` made again with their ids, keys, modes, owners,
//! creators and contents, before any process maps memory; the segments attached again at
//! their addresses in each process's Mappings stage ([`attach_all`]); segments that were
//! removed while attached (`SHM_DEST`) removed again once every process holds them. The
//! dump side is `dump/sysv.rs`.
//!
//! The objects are made by a thread of stasis, in the restorer's IPC namespace, or (for
//! `IpcNs::Own`) in the new namespace of the root, which it enters. Each object gets its
//! id through the namespace's `kernel/{shm,sem,msg}_next_id` sysctl, and its creator
//! (`cuid`/`cgid`) by being made while the thread's effective ids are the saved creator's
//! (the thread keeps its capabilities across the switch). An object already holding the
//! id (the original survived the dump: same host, same namespace) is reused if it is the
//! same object — same key, creator and size (segments) or number of semaphores — and gets
//! the saved contents, values or messages back; a different object there is refused,
//! named. On failure, the objects this restore made are removed again.
//!
//! The POSIX message queues (`restore/mqueue.rs`) are made by the same thread, after the
//! System V objects; a `kernel/*_next_id` the tree had set is set again last.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::staged::Staged;
use super::RestoreError;
use crate::image::mm::{MmImage, Vma, VmaKind};
use crate::image::pages::PAGES_DATA_OFFSET;
use crate::image::sysv::{
    IpcNs, IpcPerm, MsgQueue, SemSet, ShmSegment, SysvImage, SHM_DEST, SHM_LOCKED, SYSV_SHM_PAGES,
};
use crate::image::Image;
use crate::proc::sysvipc::{self, Perm};
use crate::sys::ipc::{self, IpcError};

const PAGE: u64 = crate::abi::PAGE_SIZE;
/// `SHM_HUGE_SHIFT`: where `shmget` takes the log2 of a huge page size.
const SHM_HUGE_SHIFT: u32 = 26;

/// What this restore made, to finish or undo it.
#[derive(Debug, Default)]
pub struct Made {
    /// The namespace the objects are in, when it is not the restorer's (the root's).
    ns_of: Option<i32>,
    /// Segments (by id) this restore created.
    shm: Vec<i32>,
    sem: Vec<i32>,
    msg: Vec<i32>,
    /// POSIX message queues (by name) this restore created (`restore/mqueue.rs`).
    mq: Vec<String>,
    /// Segments to remove once attached (`SHM_DEST`).
    destroyed: Vec<i32>,
    /// Our own attachment of every segment, until the processes have theirs.
    held: Vec<ipc::Attached>,
}

/// Makes every object of the image. `root`: the restored root, whose (new) namespace
/// receives them for `IpcNs::Own`.
///
/// Ordering requirements: after the root exists (its namespace), before any process's
/// Mappings stage (it attaches segments).
pub fn restore(image: &Image, root: i32) -> Result<Made, RestoreError> {
    let sysv = &image.sysv;
    let mut made = Made {
        ns_of: (sysv.ns == IpcNs::Own).then_some(root),
        ..Default::default()
    };
    let pages = image.dir.join(SYSV_SHM_PAGES);
    let r = in_namespace(made.ns_of, || {
        make_all(sysv, &pages, &mut made)?;
        super::mqueue::make_all(&image.mqueue, &mut made.mq)
    });
    match r {
        Ok(()) => Ok(made),
        Err(e) => {
            undo(made);
            Err(e)
        }
    }
}

/// Removes the segments that were removed at the dump, now that every process attached
/// them, and detaches ours.
///
/// Ordering requirements: after every process's Mappings stage.
pub fn finish(made: &mut Made) -> Result<(), RestoreError> {
    let destroyed = &made.destroyed;
    in_namespace(made.ns_of, || {
        for &id in destroyed {
            ipc::shmctl(id, libc::IPC_RMID, "shmctl(IPC_RMID)")?;
        }
        Ok(())
    })?;
    made.held.clear();
    Ok(())
}

/// Removes what this restore made (a failed restore).
pub fn undo(made: Made) {
    drop(made.held);
    if made.ns_of.is_some() {
        return; // the new namespace goes with the killed tree
    }
    for &id in &made.shm {
        let _ = ipc::shmctl(id, libc::IPC_RMID, "shmctl(IPC_RMID)");
    }
    for &id in &made.sem {
        let _ = ipc::sem_remove(id);
    }
    for &id in &made.msg {
        let _ = ipc::msg_remove(id);
    }
    super::mqueue::undo(&made.mq);
}

/// Runs `f` in a thread of its own, in the IPC namespace of `pid` if given.
fn in_namespace<T: Send>(
    pid: Option<i32>,
    f: impl FnOnce() -> Result<T, RestoreError> + Send,
) -> Result<T, RestoreError> {
    ipc::in_ipc_ns_of(pid, f)?
}

fn unsupported(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// The objects of the namespace that the saved ones would land on.
struct Existing {
    shm: Vec<sysvipc::Shm>,
    sem: Vec<sysvipc::Sem>,
    msg: Vec<sysvipc::Msg>,
}

impl Existing {
    /// Read in the calling thread's namespace.
    fn read() -> Result<Existing, RestoreError> {
        Ok(Existing {
            shm: sysvipc::read("shm", sysvipc::parse_shm).map_err(io_err)?,
            sem: sysvipc::read("sem", sysvipc::parse_sem).map_err(io_err)?,
            msg: sysvipc::read("msg", sysvipc::parse_msg).map_err(io_err)?,
        })
    }

    /// None: the id is free; else whether its holder is the saved segment.
    fn segment(&self, s: &ShmSegment) -> Option<bool> {
        let found = self.shm.iter().find(|e| e.perm.id == s.perm.id);
        found.map(|e| same_object(&e.perm, &s.perm) && e.size == s.size)
    }

    fn semaphores(&self, s: &SemSet) -> Option<bool> {
        let found = self.sem.iter().find(|e| e.perm.id == s.perm.id);
        found.map(|e| same_object(&e.perm, &s.perm) && e.nsems == s.values.len() as u64)
    }

    fn queue(&self, q: &MsgQueue) -> Option<bool> {
        let found = self.msg.iter().find(|e| e.perm.id == q.perm.id);
        found.map(|e| same_object(&e.perm, &q.perm))
    }
}

/// Refuses, before any process exists, an image whose objects would land on other
/// objects holding their ids in the restorer's namespace (a new namespace has none).
pub fn verify(sysv: &SysvImage) -> Result<(), RestoreError> {
    if sysv.ns == IpcNs::Own || sysv.is_empty() {
        return Ok(());
    }
    let e = Existing::read()?;
    if let Some(s) = sysv.shm.iter().find(|s| e.segment(s) == Some(false)) {
        return Err(taken("shared memory segment", &s.perm, "m"));
    }
    if let Some(s) = sysv.sem.iter().find(|s| e.semaphores(s) == Some(false)) {
        return Err(taken("semaphore set", &s.perm, "s"));
    }
    if let Some(q) = sysv.msg.iter().find(|q| e.queue(q) == Some(false)) {
        return Err(taken("message queue", &q.perm, "q"));
    }
    Ok(())
}

fn make_all(sysv: &SysvImage, pages: &Path, made: &mut Made) -> Result<(), RestoreError> {
    let (next_ids, limits): (Vec<_>, Vec<_>) = sysv
        .sysctls
        .iter()
        .partition(|(n, _)| n.ends_with("_next_id"));
    for (name, value) in limits {
        as_ns_root(|| write_sysctl(name, value))?;
    }
    let existing = Existing::read()?;
    let file = (!sysv.shm.is_empty())
        .then(|| File::open(pages).map_err(|source| read_err(pages, source)))
        .transpose()?;
    let mut first_page = 0;
    for s in &sysv.shm {
        segment(s, existing.segment(s), file.as_ref(), first_page, made)?;
        first_page += s.pages();
    }
    for s in &sysv.sem {
        semaphores(s, existing.semaphores(s), made)?;
    }
    for q in &sysv.msg {
        queue(q, existing.queue(q), made)?;
    }
    // Making the objects used the next ids; one set by the tree and not used yet is
    // set again (-1, unset, is what the kernel leaves).
    for (name, value) in next_ids {
        if value.trim() != "-1" {
            write_sysctl(name, value)?;
        }
    }
    Ok(())
}

/// Runs `f` with this thread's effective ids those of the root of the tree's user
/// namespace, if it has one: only its root may write the namespace's IPC limits.
fn as_ns_root(f: impl FnOnce() -> Result<(), RestoreError>) -> Result<(), RestoreError> {
    let Some((uid, gid)) = crate::restore::ns::user::ns_root() else {
        return f();
    };
    let switch = |uid, gid| {
        ipc::set_thread_euid_egid(uid, gid)
            .map_err(|e| unsupported(format!("switch to uid {uid} gid {gid}: {e}")))
    };
    let (own_uid, own_gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    switch(uid, gid)?;
    let done = f();
    switch(own_uid.as_raw(), own_gid.as_raw())?;
    done
}

fn io_err(e: crate::proc::ProcError) -> RestoreError {
    unsupported(format!("{e}"))
}

fn read_err(path: &Path, source: std::io::Error) -> RestoreError {
    RestoreError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// Whether the object found holding the saved id is the saved one: same key and creator.
fn same_object(found: &Perm, saved: &IpcPerm) -> bool {
    (found.key, found.cuid, found.cgid) == (saved.key, saved.cuid, saved.cgid)
}

/// Refusal of an object holding the saved id that is another one.
fn taken(kind: &str, p: &IpcPerm, rm: &str) -> RestoreError {
    unsupported(format!(
        "System V {kind} id {} exists here but is not the dumped one (key {:#x}, creator uid {}): remove it (ipcrm -{rm} {}) or restore elsewhere",
        p.id, p.key as u32, p.cuid, p.id
    ))
}

/// Makes an object with the saved id: `kernel/<kind>_next_id` set, `get` run with the
/// creator's effective ids; checks the kernel gave that id.
fn create_with_id(
    kind: &str,
    p: &IpcPerm,
    get: impl FnOnce() -> Result<i32, IpcError>,
    remove: impl FnOnce(i32),
) -> Result<(), RestoreError> {
    write_sysctl(&format!("kernel/{kind}_next_id"), &p.id.to_string())?;
    let as_creator = |uid, gid| {
        ipc::set_thread_euid_egid(uid, gid)
            .map_err(|e| unsupported(format!("switch to creator uid {uid} gid {gid}: {e}")))
    };
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    as_creator(p.cuid, p.cgid)?;
    let got = get();
    as_creator(uid.as_raw(), gid.as_raw())?;
    let got = got.map_err(|e| match e.source {
        nix::errno::Errno::EEXIST => unsupported(format!(
            "System V {kind} key {:#x} (id {}) is taken here by another object",
            p.key as u32, p.id
        )),
        _ => e.into(),
    })?;
    if got != p.id {
        remove(got);
        return Err(unsupported(format!(
            "System V {kind} id {} could not be had again (the kernel gave {got})",
            p.id
        )));
    }
    Ok(())
}

fn create_flags(p: &IpcPerm) -> i32 {
    let key_flags = if p.key == libc::IPC_PRIVATE {
        0
    } else {
        libc::IPC_EXCL
    };
    libc::IPC_CREAT | key_flags | (p.mode & 0o777) as i32
}

/// One segment: made (or the surviving one reused), filled, owner and lock set.
fn segment(
    s: &ShmSegment,
    same: Option<bool>,
    pages: Option<&File>,
    first_page: u64,
    made: &mut Made,
) -> Result<(), RestoreError> {
    let p = &s.perm;
    match same {
        Some(false) => return Err(taken("shared memory segment", p, "m")),
        Some(true) => {}
        None => {
            let huge = s.hugetlb.map_or(0, |size| {
                ipc::SHM_HUGETLB | ((size.trailing_zeros() as i32) << SHM_HUGE_SHIFT)
            });
            let key = if p.mode & SHM_DEST != 0 {
                libc::IPC_PRIVATE
            } else {
                p.key
            };
            let perm = IpcPerm { key, ..*p };
            create_with_id(
                "shm",
                &perm,
                || ipc::shmget(key, s.size, create_flags(&perm) | huge),
                |got| {
                    let _ = ipc::shmctl(got, libc::IPC_RMID, "shmctl(IPC_RMID)");
                },
            )?;
            made.shm.push(p.id);
        }
    }
    // Held until every process attached it: a segment nobody attaches is destroyed when
    // its creator (our thread) exits if `kernel.shm_rmid_forced` is set.
    made.held.push(fill(s, same.is_some(), pages, first_page)?);
    ipc::shm_set(p.id, p.uid, p.gid, p.mode & 0o777)?;
    let lock = if p.mode & SHM_LOCKED != 0 {
        (libc::SHM_LOCK, "shmctl(SHM_LOCK)")
    } else {
        (libc::SHM_UNLOCK, "shmctl(SHM_UNLOCK)")
    };
    ipc::shmctl(p.id, lock.0, lock.1)?;
    if p.mode & SHM_DEST != 0 {
        made.destroyed.push(p.id);
    }
    Ok(())
}

/// Writes the stored pages of `s` into it (a reused segment is emptied first).
/// Attaches the segment, writes the stored pages of `s` into it (a reused segment is
/// emptied first) and returns the attachment.
fn fill(
    s: &ShmSegment,
    reused: bool,
    pages: Option<&File>,
    first_page: u64,
) -> Result<ipc::Attached, RestoreError> {
    let p = &s.perm;
    let len = s.size.div_ceil(PAGE) * PAGE;
    let at = ipc::attach(p.id, len as usize, false)?;
    if reused {
        let whole = s.hugetlb.map_or(len, |h| len.div_ceil(h) * h);
        at.remove(0, whole as usize)?;
    }
    let Some(file) = pages else {
        return Ok(at);
    };
    let mut page = first_page;
    let mut buf = vec![0u8; 4 << 20];
    for &(off, n) in &s.runs {
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len() as u64 / PAGE);
            let bytes = &mut buf[..(k * PAGE) as usize];
            file.read_exact_at(bytes, PAGES_DATA_OFFSET + page * PAGE)
                .map_err(|source| read_err(Path::new(SYSV_SHM_PAGES), source))?;
            at.copy_in((off + done * PAGE) as usize, bytes);
            done += k;
            page += k;
        }
    }
    Ok(at)
}

fn semaphores(s: &SemSet, same: Option<bool>, made: &mut Made) -> Result<(), RestoreError> {
    let p = &s.perm;
    match same {
        Some(false) => return Err(taken("semaphore set", p, "s")),
        Some(true) => {}
        None => {
            let n = s.values.len() as i32;
            create_with_id(
                "sem",
                p,
                || ipc::semget(p.key, n, create_flags(p)),
                |got| {
                    let _ = ipc::sem_remove(got);
                },
            )?;
            made.sem.push(p.id);
        }
    }
    ipc::sem_set_values(p.id, &s.values)?;
    ipc::sem_set(p.id, p.uid, p.gid, p.mode & 0o777)?;
    Ok(())
}

fn queue(q: &MsgQueue, same: Option<bool>, made: &mut Made) -> Result<(), RestoreError> {
    let p = &q.perm;
    let biggest = q
        .messages
        .iter()
        .map(|m| m.text.len() as u64)
        .max()
        .unwrap_or(0);
    // A queue holds more than msgmnb, and a message is longer than msgmax, only if they
    // were raised (or CAP_SYS_RESOURCE, which the restorer may lack): raised meanwhile.
    with_at_least("kernel/msgmnb", q.qbytes, || {
        with_at_least("kernel/msgmax", biggest, || {
            match same {
                Some(false) => return Err(taken("message queue", p, "q")),
                Some(true) => while ipc::msg_take(p.id, 1 << 20)? {},
                None => {
                    create_with_id(
                        "msg",
                        p,
                        || ipc::msgget(p.key, create_flags(p)),
                        |got| {
                            let _ = ipc::msg_remove(got);
                        },
                    )?;
                    made.msg.push(p.id);
                }
            }
            ipc::msg_set(p.id, p.uid, p.gid, p.mode & 0o777, q.qbytes)?;
            for m in &q.messages {
                ipc::msg_send(p.id, m.mtype, &m.text)?;
            }
            Ok(())
        })
    })
}

/// Runs `f` with sysctl `name` (a number) raised to at least `value`, put back after.
fn with_at_least(
    name: &str,
    value: u64,
    f: impl FnOnce() -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let path = format!("/proc/sys/{name}");
    let now = std::fs::read_to_string(&path).map_err(|source| RestoreError::Read {
        path: path.clone(),
        source,
    })?;
    let old: u64 = now.trim().parse().unwrap_or(u64::MAX);
    if value <= old {
        return f();
    }
    write_sysctl(name, &value.to_string())?;
    let r = f();
    write_sysctl(name, now.trim())?;
    r
}

fn write_sysctl(name: &str, value: &str) -> Result<(), RestoreError> {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value).map_err(|source| RestoreError::Write { path, source })
}

/// Adds to the pending batch the `shmat` of every attachment of `mm` at its address
/// (`SHM_RDONLY` unless it was writable-capable), then an `mprotect` of each of its
/// mappings whose protection is not the attachment's.
pub fn attach_all(s: &mut Staged, mm: &MmImage) -> Result<(), RestoreError> {
    for v in mm.vmas.iter() {
        let VmaKind::SysvShm {
            id,
            offset,
            may_write,
        } = v.kind
        else {
            continue;
        };
        let attached = attach_prot(may_write);
        let b = s.batch();
        if offset == 0 {
            let flags = if may_write { 0 } else { libc::SHM_RDONLY };
            b.expect(
                "shmat",
                libc::SYS_shmat,
                &[id as u64, v.start, flags as u64],
                v.start,
            );
            b.about(format!("attach System V segment {id} at {:#x}", v.start));
        }
        if u64::from(v.prot) != attached {
            b.call(
                "mprotect",
                libc::SYS_mprotect,
                &[v.start, v.len(), u64::from(v.prot)],
            );
        }
        if s.room() < 4096 {
            s.flush()?;
        }
    }
    Ok(())
}

fn attach_prot(may_write: bool) -> u64 {
    let w = if may_write { libc::PROT_WRITE } else { 0 };
    (libc::PROT_READ | w) as u64
}

/// Whether `v` is an attached segment (made by [`attach_all`], not by `mmap`).
pub fn is_attached(v: &Vma) -> bool {
    matches!(v.kind, VmaKind::SysvShm { .. })
}
