//! The address space's shape: the child's inherited mappings are removed, the vDSO block is
//! moved to where the task had it, every mapping is recreated at its address (with its
//! protections, madvise flags, guard regions, locks and seals), and the
//! kernel's mm fields (brk, arg/env, auxv, exe link) are set with `PR_SET_MM_MAP`.
//! The dump side is `dump/mm.rs`; page contents are `restore/memory.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::child::{find_hole, Child, HELPER_LEN};
use super::staged::Staged;
use super::verify::Special;
use super::{RestoreError, TASK_SIZE};
use crate::abi::PrctlMmMap;
use crate::image::mm::{Guard, MmImage, ShmemObject, ShmemOwner, Vma, VmaKind};
use crate::sys::batch::{Batch, Done, Ret};

pub(super) const MREMAP_MAYMOVE: u64 = 1;
pub(super) const MREMAP_FIXED: u64 = 2;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const MADV_GUARD_INSTALL: u64 = 102;
/// `mmap` type (Linux 6.11): private anonymous memory the kernel may drop under pressure.
const MAP_DROPPABLE: i32 = 0x08;

/// Removes everything but the helper, the vDSO block and the ranges kept copy-on-write
/// from the parent (`restore/cow.rs`), then moves the vDSO block; added to the pending
/// batch. `child.specials` then says where the vDSO block is once the batch ran.
///
/// Ordering requirements: the first stage of the address space (`child.specials` are
/// the mappings the child has when the calls run).
pub fn clear_and_move_vdso(s: &mut Staged, mm: &MmImage) -> Result<(), RestoreError> {
    let child = s.child();
    let specials = child.specials.borrow().clone();
    let mut keep: Vec<(u64, u64)> = specials.iter().map(|&(_, s, e)| (s, e)).collect();
    keep.push((child.helper, child.helper + HELPER_LEN));
    keep.extend(mm.cow.iter().map(|c| (c.start, c.end)));
    keep.sort_unstable();
    let b = s.batch();
    let mut at = 0x1000u64;
    for &(s, e) in keep.iter().chain(std::iter::once(&(TASK_SIZE, TASK_SIZE))) {
        if s > at {
            b.call("munmap", libc::SYS_munmap, &[at, s - at]);
        }
        at = at.max(e);
    }
    move_specials(b, child.helper, mm, &specials);
    *child.specials.borrow_mut() = moved(mm, &specials);
    Ok(())
}

/// Where `specials` are once [`move_specials`] ran: each at its saved place, or gone.
fn moved(mm: &MmImage, specials: &[Special]) -> Vec<Special> {
    let saved = |k: &VmaKind| mm.vmas.iter().find(|v| v.kind == *k);
    (specials.iter())
        .filter_map(|(k, _, _)| saved(k).map(|v| (k.clone(), v.start, v.end)))
        .collect()
}

/// Moves each of vvar, vvar_vclock and vdso to its saved address (through a spare hole
/// first when old and new places overlap), or unmaps it if the task had none; added to
/// batch `b`.
fn move_specials(b: &mut Batch, helper: u64, mm: &MmImage, specials: &[Special]) {
    let lo = specials.iter().map(|s| s.1).min().unwrap_or(0);
    let hi = specials.iter().map(|s| s.2).max().unwrap_or(0);
    let targets: Vec<(u64, u64, Option<&Vma>)> = specials
        .iter()
        .map(|(k, s, e)| (*s, *e, mm.vmas.iter().find(|v| &v.kind == k)))
        .collect();
    if targets
        .iter()
        .all(|(s, _, v)| v.is_some_and(|v| v.start == *s))
    {
        return; // a forked child: its parent moved them already
    }
    let overlap = targets
        .iter()
        .any(|(_, _, v)| v.is_some_and(|v| v.start < hi && v.end > lo));
    let spare = helper + HELPER_LEN; // never a target address: the helper's hole was free
    let mut moved = Vec::new();
    for (s, e, v) in targets {
        let Some(v) = v else {
            b.call("munmap(vdso)", libc::SYS_munmap, &[s, e - s]);
            continue;
        };
        let via = if overlap { spare + (s - lo) } else { v.start };
        b.call(
            "mremap(vdso)",
            libc::SYS_mremap,
            &[s, e - s, e - s, MREMAP_MAYMOVE | MREMAP_FIXED, via],
        );
        moved.push((via, v));
    }
    for (via, v) in moved.into_iter().filter(|(via, v)| *via != v.start) {
        b.call(
            "mremap(vdso)",
            libc::SYS_mremap,
            &[
                via,
                v.len(),
                v.len(),
                MREMAP_MAYMOVE | MREMAP_FIXED,
                v.start,
            ],
        );
    }
}

/// At most this many files are open in the child at once while mapping.
const OPEN_AT_ONCE: usize = 256;

/// Recreates every ordinary mapping but those kept from the parent. Mappings that will
/// receive saved pages are made writable for now ([`working_prot`]); [`finish_vmas`] puts
/// the real protection back.
///
/// Added to the pending batch: the files of up to [`OPEN_AT_ONCE`] mappings are opened
/// (at predicted fds), those mappings made and the files closed. The objects of
/// `Unlinked` mappings (memfds, deleted files) are made first, one call at a time.
/// `ghosts`: where the deleted file of each private mapping that saves one was created
/// again, by mapping start (`Ghosts::mapped` in `restore/files/ghost.rs`), and the names of it other private
/// mappings of this process had; the caller unlinks them afterwards.
pub fn map_all(
    s: &mut Staged,
    mm: &MmImage,
    filled: &HashSet<u64>,
    ghosts: &[(u64, PathBuf)],
) -> Result<(), RestoreError> {
    let kept = |v: &&Vma| mm.cow.iter().any(|c| c.start == v.start);
    let owner = |v: &Vma| {
        let r = mm.shmem.iter().find(|r| r.start == v.start);
        r.and_then(|r| r.owner)
    };
    let todo: Vec<&Vma> = mm
        .vmas
        .iter()
        .filter(|v| !is_special(v) && !kept(v) && !super::sysv::is_attached(v))
        .collect();
    super::sysv::attach_all(s, mm)?;
    let ghost = |v: &Vma| ghosts.iter().find(|g| g.0 == v.start).map(|g| &g.1);
    let creates = |v: &Vma| is_unlinked(v) && (owner(v).is_none() || ghost(v).is_some());
    for v in todo.iter().filter(|v| creates(v)) {
        s.flush()?;
        match (&v.kind, ghost(v)) {
            (VmaKind::PrivateUnlinked { offset, .. }, Some(path)) => {
                map_ghost(s.child(), v, path, *offset, working_prot(v, filled))?
            }
            _ => map_unlinked(s.child(), v, working_prot(v, filled))?,
        }
    }
    let objects = Places {
        objects: object_holes(s.child(), mm)?,
        apart: super::apart::plan(s.child(), mm)?,
    };
    // Mappings of an object another mapping of this process creates come last.
    let pid = s.child().pid();
    let (late, first): (Vec<&Vma>, Vec<&Vma>) = (todo.into_iter())
        .filter(|v| !creates(v))
        .partition(|v| owner(v).is_some_and(|o| o.pid == pid));
    map_sources(s, &first, &owner, filled, &objects)?;
    map_sources(s, &late, &owner, filled, &objects)
}

/// Maps `todo` (mappings of files, another mapping's object or anonymous memory) in
/// groups of [`OPEN_AT_ONCE`] files; `objects`: the free places some are made at.
fn map_sources(
    s: &mut Staged,
    todo: &[&Vma],
    owner: &dyn Fn(&Vma) -> Option<ShmemOwner>,
    filled: &HashSet<u64>,
    objects: &Places,
) -> Result<(), RestoreError> {
    let pid = s.child().pid();
    let mut group: Vec<(&Vma, Option<Source>)> = Vec::new();
    let mut files: Vec<Source> = Vec::new();
    for &v in todo {
        let source = match owner(v) {
            Some(o) => Some(Source::shared(&o, v, pid)),
            None => Source::file(v, pid),
        };
        let new = source
            .as_ref()
            .filter(|n| !files.iter().any(|f| f.same_file(n)));
        // This process's own shared memory is opened once its mapping exists.
        let mine = |o: ShmemOwner| o.pid == pid && group.iter().any(|(g, _)| g.start == o.start);
        if new.is_some() && (files.len() == OPEN_AT_ONCE || owner(v).is_some_and(mine)) {
            map_group(s, &group, &files, filled, objects)?;
            (group, files) = (Vec::new(), Vec::new());
        }
        files.extend(new.cloned());
        group.push((v, source));
    }
    map_group(s, &group, &files, filled, objects)
}

/// Free places where some mappings are made before they are moved to their address.
struct Places {
    /// Shared anonymous objects made whole first ([`object_holes`]), by mapping start.
    objects: HashMap<u64, (ShmemObject, u64)>,
    /// Anonymous mappings kept apart from the one before them (`restore/apart.rs`).
    apart: HashMap<u64, u64>,
}

/// The shared anonymous objects this process creates that are larger than the mapping
/// creating them, each with a free place where it is made whole before that mapping's
/// part is moved into place (none of them is left there).
fn object_holes(
    child: &Child,
    mm: &MmImage,
) -> Result<HashMap<u64, (ShmemObject, u64)>, RestoreError> {
    let mut taken: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    taken.extend(child.specials.borrow().iter().map(|&(_, s, e)| (s, e)));
    taken.push((child.helper, child.helper + HELPER_LEN));
    let mut out = HashMap::new();
    for o in &mm.shmem_objects {
        let v = mm.vmas.iter().find(|v| v.start == o.start);
        if v.is_some_and(|v| o.offset == 0 && o.size == v.len()) {
            continue; // made by mapping it
        }
        let hole = find_hole(&mut taken, o.size).ok_or_else(|| RestoreError::Unsupported {
            what: format!(
                "no room for the {} bytes of the shared memory mapped at {:#x} in pid {}",
                o.size,
                o.start,
                child.pid()
            ),
        })?;
        out.insert(o.start, (*o, hole));
    }
    Ok(out)
}

/// Adds to `b`: the whole object `o` made at `hole`, the part mapping `v` maps moved to
/// its place, the rest of the hole unmapped (the object lives on through `v`).
fn map_object(b: &mut Batch, v: &Vma, prot: u64, o: &ShmemObject, hole: u64) {
    let flags = (libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    b.call(
        "mmap(shared object)",
        libc::SYS_mmap,
        &[hole, o.size, prot, flags, u64::MAX, 0],
    );
    let part = hole + o.offset;
    let args = [
        part,
        v.len(),
        v.len(),
        MREMAP_MAYMOVE | MREMAP_FIXED,
        v.start,
    ];
    b.call("mremap(shared object)", libc::SYS_mremap, &args);
    if o.offset > 0 {
        b.call("munmap", libc::SYS_munmap, &[hole, o.offset]);
    }
    let rest = o.size - o.offset - v.len();
    if rest > 0 {
        b.call("munmap", libc::SYS_munmap, &[part + v.len(), rest]);
    }
}

/// A mapping that creates its object, unless it reaches another mapping's.
fn is_unlinked(v: &Vma) -> bool {
    matches!(
        v.kind,
        VmaKind::Unlinked { .. }
            | VmaKind::PrivateUnlinked { .. }
            | VmaKind::Hugetlb { memfd: Some(_), .. }
    )
}

/// What a file mapping maps: a path opened with these flags, at this file offset (the
/// shared memory of an earlier process of the tree through its `/proc/PID/map_files`
/// entry, PID as the opener's `/proc` names it: the child is still privileged here).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    path: String,
    flags: i32,
    offset: u64,
    /// Another mapping's object: mapped as the mapping was, with the saved protection
    /// (a private one receiving pages: writable for now), nothing else.
    shm: bool,
    /// The path stasis opens itself and hands over, when the child cannot: a file on a
    /// mount of another namespace of the tree, through a process of it, or another
    /// process's object for a child whose root shows no `/proc` (`restore/mnt/maps.rs`).
    elsewhere: Option<String>,
}

impl Source {
    /// A memfd or deleted file is rebuilt whole, so offsets in it are the saved ones; so
    /// is a shared anonymous object with a `ShmemObject` (the owner's offset is then
    /// the one in the object), one of an older image is as large as its owner's mapping.
    fn shared(o: &ShmemOwner, v: &Vma, opener: i32) -> Source {
        let offset = match &v.kind {
            VmaKind::Unlinked { offset, .. } | VmaKind::PrivateUnlinked { offset, .. } => *offset,
            VmaKind::Hugetlb { memfd: Some(m), .. } => m.offset,
            _ => o.offset,
        };
        let rest = format!("map_files/{:x}-{:x}", o.start, o.end);
        let by_stasis = crate::restore::mnt::maps::without_proc(opener);
        Source {
            path: super::ns::pid::proc_path(opener, o.pid, &rest),
            flags: libc::O_RDWR | libc::O_CLOEXEC,
            offset,
            shm: true,
            elsewhere: by_stasis.then(|| format!("/proc/{}/{rest}", o.pid)),
        }
    }

    fn file(v: &Vma, pid: i32) -> Option<Source> {
        let VmaKind::File {
            file,
            offset,
            writable,
        } = &v.kind
        else {
            return None;
        };
        let mode = if *writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        Some(Source {
            path: file.path.clone(),
            flags: mode | libc::O_CLOEXEC,
            offset: *offset,
            shm: false,
            elsewhere: crate::restore::mnt::maps::elsewhere(pid, Some(v.start))
                .map(|ns_pid| format!("/proc/{ns_pid}/root{}", file.path)),
        })
    }

    /// Equal files (the offset aside) share one fd.
    fn same_file(&self, other: &Source) -> bool {
        (&self.path, self.flags, &self.elsewhere) == (&other.path, other.flags, &other.elsewhere)
    }
}

/// Opens `files`, maps `group`, closes the files: added to the pending batch (which runs
/// when it is full).
fn map_group(
    s: &mut Staged,
    group: &[(&Vma, Option<Source>)],
    files: &[Source],
    filled: &HashSet<u64>,
    objects: &Places,
) -> Result<(), RestoreError> {
    let fds = open_all(s, files)?;
    let mut flushed = false;
    for (v, source) in group {
        let fd = source.as_ref().map(|s| {
            let i = files.iter().position(|f| f.same_file(s));
            (fds[i.expect("every source was opened")], s.offset)
        });
        let b = s.batch();
        let prot = working_prot(v, filled);
        let (object, apart) = (objects.objects.get(&v.start), objects.apart.get(&v.start));
        match (source, fd, object, apart) {
            (Some(s), Some((fd, offset)), _, _) if s.shm => map_shared(b, v, prot, fd, offset),
            (None, _, Some((o, hole)), _) => map_object(b, v, prot, o, *hole),
            (None, None, None, Some(&hole)) => super::apart::map(b, v, prot, hole),
            _ => map_one(b, v, prot, fd),
        }
        if s.room() < 4096 {
            s.flush()?;
            flushed = true;
        }
    }
    let b = s.batch();
    for fd in fds {
        b.expect("close", libc::SYS_close, &[fd], 0);
    }
    if flushed {
        // The files are open in the child now: the closes must run before a later
        // stage predicts its next fd from `/proc`.
        s.flush()?;
    }
    Ok(())
}

/// Opens every file in the child at the fds it will get (the lowest free ones, which the
/// batch checks); a file that would not open stops the batch, named.
fn open_all(s: &mut Staged, files: &[Source]) -> Result<Vec<u64>, RestoreError> {
    let pid = s.child().pid();
    let mut fds = vec![0; files.len()];
    if files.iter().any(|f| f.elsewhere.is_some()) {
        // Handed over now: the batch's fds are predicted from the table after.
        s.flush()?;
        for (i, f) in files.iter().enumerate() {
            if let Some(there) = &f.elsewhere {
                fds[i] = crate::restore::mnt::maps::give(s.child(), there, &f.path, f.flags)?;
            }
        }
    }
    let near: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].elsewhere.is_none())
        .collect();
    let free = s.child().free_fds(near.len())?;
    let b = s.batch();
    for (&i, &fd) in near.iter().zip(&free) {
        let f = &files[i];
        fds[i] = fd;
        let path = b.put_str(&f.path);
        let args = [libc::AT_FDCWD as u64, path, f.flags as u64, 0];
        b.expect("openat", libc::SYS_openat, &args, fd);
        b.about(format!("open {} in pid {pid}", f.path));
    }
    Ok(fds)
}

/// Adds the `mmap` of an object made by an earlier mapping (fd `fd`) to `b`, shared or
/// private as `v` was.
fn map_shared(b: &mut Batch, v: &Vma, prot: u64, fd: u64, offset: u64) {
    let flags = (sharing(v) | libc::MAP_FIXED_NOREPLACE) as u64;
    let args = [v.start, v.len(), prot, flags, fd, offset];
    b.call("mmap(shared)", libc::SYS_mmap, &args);
}

fn sharing(v: &Vma) -> i32 {
    if v.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    }
}

/// `memfd_create` and `mmap` flags of huge pages of `1 << shift` bytes.
const MFD_HUGETLB: u64 = 4;
const HUGE_SHIFT: u32 = 26;

/// Maps in the child the deleted file of private mapping `v`, created again at `path`
/// from its saved contents. The pages written since are filled with the others.
fn map_ghost(
    child: &Child,
    v: &Vma,
    path: &Path,
    offset: u64,
    prot: u64,
) -> Result<(), RestoreError> {
    let fd = open_in(
        child,
        &path.to_string_lossy(),
        libc::O_RDONLY | libc::O_CLOEXEC,
    )?;
    let remote = child.remote();
    let flags = (libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE) as u64;
    let args = [v.start, v.len(), prot, flags, fd, offset];
    let r = remote.call("mmap(deleted)", libc::SYS_mmap, &args);
    remote.call("close", libc::SYS_close, &[fd])?;
    r.map(|_| ()).map_err(RestoreError::from)
}

/// Creates the object of an `Unlinked` mapping in the child and maps it: `memfd_create`,
/// or the deleted file created again (at its old path if that is free, else at a hidden
/// sibling) and unlinked at once; sized as it was. Its pages are filled with the others.
fn map_unlinked(child: &Child, v: &Vma, prot: u64) -> Result<(), RestoreError> {
    let (name, memfd, size, offset, mode, huge) = match &v.kind {
        VmaKind::Unlinked {
            name,
            memfd,
            size,
            offset,
            mode,
        } => (name, *memfd, size, offset, mode, 0),
        VmaKind::Hugetlb {
            shift,
            memfd: Some(m),
        } => {
            let huge = MFD_HUGETLB | u64::from(*shift) << HUGE_SHIFT;
            (&m.name, true, &m.size, &m.offset, &m.mode, huge)
        }
        _ => unreachable!("called for mappings that create their object only"),
    };
    let remote = child.remote();
    let fd = if memfd {
        let addr = child.put_str(0, name)?;
        let flags = (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as u64 | huge;
        remote.call("memfd_create", libc::SYS_memfd_create, &[addr, flags])?
    } else {
        recreate_deleted(child, name, v.start)?
    };
    let flags = (libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE) as u64;
    let r = remote
        .call("ftruncate", libc::SYS_ftruncate, &[fd, *size])
        .and_then(|_| remote.call("fchmod", libc::SYS_fchmod, &[fd, u64::from(*mode)]))
        .and_then(|_| {
            let args = [v.start, v.len(), prot, flags, fd, *offset];
            remote.call("mmap(unlinked)", libc::SYS_mmap, &args)
        });
    remote.call("close", libc::SYS_close, &[fd])?;
    r.map(|_| ()).map_err(RestoreError::from)
}

/// Creates the deleted file `path` again in the child (or a hidden sibling if the path is
/// taken) and unlinks it; returns the child's fd.
fn recreate_deleted(child: &Child, path: &str, start: u64) -> Result<u64, RestoreError> {
    let old = std::path::Path::new(path);
    let at = if std::fs::symlink_metadata(old).is_err() {
        old.to_path_buf()
    } else {
        let name = old.file_name().unwrap_or_default().to_string_lossy();
        old.with_file_name(format!(".stasis-unlinked-{}-{start:x}-{name}", child.pid()))
    };
    let name = at.to_string_lossy();
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
    let fd = open_in(child, &name, flags)?;
    std::fs::remove_file(&at).map_err(|source| RestoreError::Write {
        path: name.into_owned(),
        source,
    })?;
    Ok(fd)
}

/// The protection of `v` from Mappings to Protections: writable while it receives pages.
pub fn working_prot(v: &Vma, filled: &HashSet<u64>) -> u64 {
    let write = if filled.contains(&v.start) {
        libc::PROT_WRITE as u64
    } else {
        0
    };
    u64::from(v.prot) | write
}

/// Mappings not made by `mmap` here: the kernel's own, moved into place, AIO rings, made
/// by `io_setup` (`restore/aio.rs`), and packet rings, mapped from their socket once the
/// fd table exists (`files/packet.rs`).
fn is_special(v: &Vma) -> bool {
    matches!(
        v.kind,
        VmaKind::Vdso
            | VmaKind::Vvar
            | VmaKind::VvarVclock
            | VmaKind::Aio(_)
            | VmaKind::PacketRing { .. }
    )
}

/// Adds the `mmap` of `v` with `prot` to `b`: from `file` (fd and offset) or anonymous.
fn map_one(b: &mut Batch, v: &Vma, prot: u64, file: Option<(u64, u64)>) {
    let mut flags = libc::MAP_FIXED_NOREPLACE
        | if v.flags.droppable && !v.shared {
            MAP_DROPPABLE
        } else {
            sharing(v)
        };
    if let VmaKind::Hugetlb { shift, memfd: None } = v.kind {
        flags |= libc::MAP_HUGETLB | i32::from(shift) << HUGE_SHIFT;
    }
    if v.flags.growsdown {
        flags |= libc::MAP_GROWSDOWN;
    }
    if v.flags.noreserve {
        flags |= libc::MAP_NORESERVE;
    }
    let (fd, offset) = file.unwrap_or_else(|| {
        flags |= libc::MAP_ANONYMOUS;
        (u64::MAX, 0)
    });
    b.call(
        "mmap",
        libc::SYS_mmap,
        &[v.start, v.len(), prot, flags as u64, fd, offset],
    );
}

/// `openat(AT_FDCWD, path, flags)` run by the child.
pub fn open_in(child: &Child, path: &str, flags: i32) -> Result<u64, RestoreError> {
    let addr = child.put_str(0, path)?;
    let fd = child.remote().raw(
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, addr, flags as u64, 0],
    )?;
    if fd < 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "open {path} in pid {}: {}",
                child.pid(),
                nix::errno::Errno::from_raw(-fd as i32).desc()
            ),
        });
    }
    Ok(fd as u64)
}

/// Final protections, madvise flags, guard regions and mlock. Seals come after every
/// other change to the mappings (see `seal`).
///
/// Ordering requirements: after the pages are filled (installing a guard discards what
/// its pages hold); guards before mlock (the kernel refuses guards in locked mappings).
pub fn finish_vmas<'a>(
    s: &mut Staged<'a>,
    mm: &'a MmImage,
    filled: &HashSet<u64>,
) -> Result<(), RestoreError> {
    let pid = s.child().pid();
    for v in mm.vmas.iter().filter(|v| !is_special(v)) {
        let b = s.batch();
        if filled.contains(&v.start) && v.prot & libc::PROT_WRITE as u32 == 0 {
            b.call(
                "mprotect",
                libc::SYS_mprotect,
                &[v.start, v.len(), u64::from(v.prot)],
            );
        }
        for advice in advices(v) {
            b.call(
                "madvise",
                libc::SYS_madvise,
                &[v.start, v.len(), advice as u64],
            );
        }
        let guards = guards_in(&mm.guards, v);
        install_guards(b, guards);
        if v.flags.locked || v.flags.lockonfault {
            let r = lock(b, v);
            let has_guards = !guards.is_empty();
            s.check(move |done| check_lock(pid, done, r, v, has_guards));
        }
        if s.room() < 4096 {
            s.flush()?;
        }
    }
    Ok(())
}

/// `mlock2` of a locked mapping, added to `b`; its result goes to [`check_locks`].
fn lock(b: &mut Batch, v: &Vma) -> Ret {
    let onfault = if v.flags.lockonfault { 1 } else { 0 };
    b.try_call("mlock2", libc::SYS_mlock2, &[v.start, v.len(), onfault])
}

/// The `mlock2` result of mapping `v` of `pid`. With guard regions inside, the kernel
/// marks the mapping locked and then fails to fault the guard pages in (ENOMEM), as it
/// did for the task: that error is expected.
fn check_lock(
    pid: i32,
    done: &Done,
    r: Ret,
    v: &Vma,
    has_guards: bool,
) -> Result<(), RestoreError> {
    let r = done.raw(r);
    if r == 0 || (has_guards && r == -i64::from(libc::ENOMEM)) {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "mlock2 of mapping {:#x}-{:#x} in pid {pid}: {}",
            v.start,
            v.end,
            nix::errno::Errno::from_raw(-r as i32).desc()
        ),
    })
}

/// The guard regions inside `v`, from the sorted `guards`.
fn guards_in<'a>(guards: &'a [Guard], v: &Vma) -> &'a [Guard] {
    let from = guards.partition_point(|g| g.start < v.start);
    let to = guards.partition_point(|g| g.start < v.end);
    &guards[from..to]
}

/// `madvise(MADV_GUARD_INSTALL)` (Linux 6.13): accesses to these pages fault.
fn install_guards(b: &mut Batch, guards: &[Guard]) {
    for g in guards {
        b.call(
            "madvise(MADV_GUARD_INSTALL)",
            libc::SYS_madvise,
            &[g.start, g.end - g.start, MADV_GUARD_INSTALL],
        );
    }
}

fn advices(v: &Vma) -> Vec<i32> {
    let f = &v.flags;
    let table = [
        (f.dontdump, libc::MADV_DONTDUMP),
        (f.dontfork, libc::MADV_DONTFORK),
        (f.wipeonfork, libc::MADV_WIPEONFORK),
        (f.hugepage, libc::MADV_HUGEPAGE),
        (f.nohugepage, libc::MADV_NOHUGEPAGE),
        (f.mergeable, libc::MADV_MERGEABLE),
        (f.seqread, libc::MADV_SEQUENTIAL),
        (f.randread, libc::MADV_RANDOM),
    ];
    table
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, a)| *a)
        .collect()
}

/// `mseal(2)` of sealed mappings, added to the pending batch; after this nothing may
/// touch them.
pub fn seal(s: &mut Staged, mm: &MmImage) -> Result<(), RestoreError> {
    for v in mm.vmas.iter().filter(|v| v.flags.sealed && !is_special(v)) {
        s.batch().call("mseal", 462, &[v.start, v.len(), 0]);
    }
    Ok(())
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP)`: brk, code/data/stack bounds, arg/env, auxv and the
/// exe link in one validated call.
///
/// Ordering requirements: the old executable (stasis) must be unmapped first, or the
/// kernel refuses the exe change with EBUSY. Added to the pending batch, whose calls
/// leave the fd table as they found it (the exe is opened at the predicted fd).
pub fn set_mm_fields(s: &mut Staged, mm: &MmImage) -> Result<(), RestoreError> {
    let pid = s.child().pid();
    let far = mm
        .exe
        .as_ref()
        .zip(crate::restore::mnt::maps::elsewhere(pid, None));
    let given = match far {
        Some((f, ns_pid)) => {
            // Handed over now, before the batch's fds are predicted.
            s.flush()?;
            let flags = libc::O_RDONLY | libc::O_CLOEXEC;
            let there = format!("/proc/{ns_pid}/root{}", f.path);
            Some(crate::restore::mnt::maps::give(
                s.child(),
                &there,
                &f.path,
                flags,
            )?)
        }
        None => None,
    };
    let child = s.child();
    let fd = match mm.exe {
        Some(_) => child.lowest_free_fd()?,
        None => u64::from(u32::MAX),
    };
    let b = s.batch();
    let exe_fd = match (&mm.exe, given) {
        (Some(_), Some(given)) => given,
        (Some(f), None) => {
            let path = b.put_str(&f.path);
            let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
            let args = [libc::AT_FDCWD as u64, path, flags, 0];
            b.expect("openat", libc::SYS_openat, &args, fd);
            b.about(format!("open {} in pid {}", f.path, child.pid()));
            fd
        }
        (None, _) => u64::from(u32::MAX),
    };
    let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let auxv_addr = b.put(&auxv);
    let f = &mm.fields;
    let map = PrctlMmMap {
        start_code: f.start_code,
        end_code: f.end_code,
        start_data: f.start_data,
        end_data: f.end_data,
        start_brk: f.start_brk,
        brk: f.brk,
        start_stack: f.start_stack,
        arg_start: f.arg_start,
        arg_end: f.arg_end,
        env_start: f.env_start,
        env_end: f.env_end,
        auxv: auxv_addr,
        auxv_size: auxv.len() as u32,
        exe_fd: exe_fd as u32,
    };
    let addr = b.put_pod(&map);
    let size = std::mem::size_of::<PrctlMmMap>() as u64;
    b.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[PR_SET_MM, PR_SET_MM_MAP, addr, size, 0],
    );
    if mm.exe.is_some() {
        b.call("close", libc::SYS_close, &[exe_fd]);
    }
    Ok(())
}
