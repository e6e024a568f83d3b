//! The address space's shape: the child's inherited mappings are removed, the vDSO block is
//! moved to where the task had it, every mapping is recreated at its address (with its
//! protections, madvise flags, guard regions, locks and seals), and the
//! kernel's mm fields (brk, arg/env, auxv, exe link) are set with `PR_SET_MM_MAP`.
//! The dump side is `dump/mm.rs`; page contents are `restore/memory.rs`.

use std::collections::HashSet;

use super::child::{Child, HELPER_LEN};
use super::{RestoreError, TASK_SIZE};
use crate::abi::PrctlMmMap;
use crate::image::mm::{Guard, MmImage, ShmemOwner, Vma, VmaKind};

const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const MADV_GUARD_INSTALL: u64 = 102;

/// Removes everything but the helper, the vDSO block and the ranges kept copy-on-write
/// from the parent (`restore/cow.rs`), then moves the vDSO block.
pub fn clear_and_move_vdso(child: &Child, mm: &MmImage) -> Result<(), RestoreError> {
    let specials = super::verify::specials(child.pid())?;
    let mut keep: Vec<(u64, u64)> = specials.iter().map(|&(_, s, e)| (s, e)).collect();
    keep.push((child.helper, child.helper + HELPER_LEN));
    keep.extend(mm.cow.iter().map(|c| (c.start, c.end)));
    keep.sort_unstable();
    let remote = child.remote();
    let mut at = 0x1000u64;
    for &(s, e) in keep.iter().chain(std::iter::once(&(TASK_SIZE, TASK_SIZE))) {
        if s > at {
            remote.call("munmap", libc::SYS_munmap, &[at, s - at])?;
        }
        at = at.max(e);
    }
    move_specials(child, mm, &specials)
}

/// Moves each of vvar, vvar_vclock and vdso to its saved address (through a spare hole
/// first when old and new places overlap), or unmaps it if the task had none.
fn move_specials(
    child: &Child,
    mm: &MmImage,
    specials: &[(VmaKind, u64, u64)],
) -> Result<(), RestoreError> {
    let remote = child.remote();
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
        return Ok(()); // a forked child: its parent moved them already
    }
    let overlap = targets
        .iter()
        .any(|(_, _, v)| v.is_some_and(|v| v.start < hi && v.end > lo));
    let spare = child.helper + HELPER_LEN; // never a target address: the helper's hole was free
    let mut moved = Vec::new();
    for (s, e, v) in targets {
        let Some(v) = v else {
            remote.call("munmap(vdso)", libc::SYS_munmap, &[s, e - s])?;
            continue;
        };
        let via = if overlap { spare + (s - lo) } else { v.start };
        remote.call(
            "mremap(vdso)",
            libc::SYS_mremap,
            &[s, e - s, e - s, MREMAP_MAYMOVE | MREMAP_FIXED, via],
        )?;
        moved.push((via, v));
    }
    for (via, v) in moved.into_iter().filter(|(via, v)| *via != v.start) {
        remote.call(
            "mremap(vdso)",
            libc::SYS_mremap,
            &[
                via,
                v.len(),
                v.len(),
                MREMAP_MAYMOVE | MREMAP_FIXED,
                v.start,
            ],
        )?;
    }
    Ok(())
}

/// Recreates every ordinary mapping but those kept from the parent. Mappings that will
/// receive saved pages are made writable for now ([`working_prot`]); [`finish_vmas`] puts
/// the real protection back.
pub fn map_all(child: &Child, mm: &MmImage, filled: &HashSet<u64>) -> Result<(), RestoreError> {
    let mut open: Option<(String, u64)> = None;
    let kept = |v: &&Vma| mm.cow.iter().any(|c| c.start == v.start);
    for v in mm.vmas.iter().filter(|v| !is_special(v) && !kept(v)) {
        let owner = mm.shmem.iter().find(|r| r.start == v.start);
        match owner.and_then(|r| r.owner) {
            Some(o) => map_shared_from(child, v, &o)?,
            None if matches!(v.kind, VmaKind::Unlinked { .. }) => {
                map_unlinked(child, v, working_prot(v, filled))?
            }
            None => map_one(child, v, working_prot(v, filled), &mut open)?,
        }
    }
    if let Some((_, fd)) = open {
        child.remote().call("close", libc::SYS_close, &[fd])?;
    }
    Ok(())
}

/// Maps the shared memory object that an earlier process of the tree created, through
/// that process's `/proc/PID/map_files` entry (the child is still privileged here).
fn map_shared_from(child: &Child, v: &Vma, o: &ShmemOwner) -> Result<(), RestoreError> {
    let path = format!("/proc/{}/map_files/{:x}-{:x}", o.pid, o.start, o.end);
    let fd = open_in(child, &path, libc::O_RDWR | libc::O_CLOEXEC)?;
    let flags = libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE;
    // A memfd or deleted file is rebuilt whole, so offsets in it are the saved ones; a
    // shared anonymous object is created for its owner's mapping, from offset 0.
    let offset = match v.kind {
        VmaKind::Unlinked { offset, .. } => offset,
        _ => o.offset,
    };
    let r = child.remote().call(
        "mmap(shared)",
        libc::SYS_mmap,
        &[
            v.start,
            v.len(),
            u64::from(v.prot),
            flags as u64,
            fd,
            offset,
        ],
    );
    child.remote().call("close", libc::SYS_close, &[fd])?;
    r.map(|_| ()).map_err(RestoreError::from)
}

/// Creates the object of an `Unlinked` mapping in the child and maps it: `memfd_create`,
/// or the deleted file created again (at its old path if that is free, else at a hidden
/// sibling) and unlinked at once; sized as it was. Its pages are filled with the others.
fn map_unlinked(child: &Child, v: &Vma, prot: u64) -> Result<(), RestoreError> {
    let VmaKind::Unlinked {
        name,
        memfd,
        size,
        offset,
        mode,
    } = &v.kind
    else {
        unreachable!("called for Unlinked mappings only");
    };
    let remote = child.remote();
    let fd = if *memfd {
        let addr = child.put_str(0, name)?;
        let flags = (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as u64;
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

fn is_special(v: &Vma) -> bool {
    matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock)
}

fn map_one(
    child: &Child,
    v: &Vma,
    prot: u64,
    open: &mut Option<(String, u64)>,
) -> Result<(), RestoreError> {
    let remote = child.remote();
    let mut flags = libc::MAP_FIXED_NOREPLACE
        | if v.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
    if v.flags.growsdown {
        flags |= libc::MAP_GROWSDOWN;
    }
    if v.flags.noreserve {
        flags |= libc::MAP_NORESERVE;
    }
    let (fd, offset) = match &v.kind {
        VmaKind::File { file, offset } => (file_fd(child, &file.path, v, open)?, *offset),
        _ => {
            flags |= libc::MAP_ANONYMOUS;
            (u64::MAX, 0)
        }
    };
    remote.call(
        "mmap",
        libc::SYS_mmap,
        &[v.start, v.len(), prot, flags as u64, fd, offset],
    )?;
    Ok(())
}

/// An fd in the child for `path`, reusing the last one (libraries map one file many times).
fn file_fd(
    child: &Child,
    path: &str,
    v: &Vma,
    open: &mut Option<(String, u64)>,
) -> Result<u64, RestoreError> {
    let writable = v.shared && v.prot & libc::PROT_WRITE as u32 != 0;
    if let Some((p, fd)) = open {
        if p == path && !writable {
            return Ok(*fd);
        }
        child.remote().call("close", libc::SYS_close, &[*fd])?;
        *open = None;
    }
    let mode = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    let fd = open_in(child, path, mode | libc::O_CLOEXEC)?;
    *open = Some((path.to_string(), fd));
    Ok(fd)
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

/// Final protections, madvise flags, guard regions and mlock. Seals come last of all
/// (see `seal`).
///
/// Ordering requirements: after the pages are filled (installing a guard discards what
/// its pages hold); guards before mlock (the kernel refuses guards in locked mappings).
pub fn finish_vmas(child: &Child, mm: &MmImage, filled: &HashSet<u64>) -> Result<(), RestoreError> {
    let remote = child.remote();
    for v in mm.vmas.iter().filter(|v| !is_special(v)) {
        if filled.contains(&v.start) && v.prot & libc::PROT_WRITE as u32 == 0 {
            remote.call(
                "mprotect",
                libc::SYS_mprotect,
                &[v.start, v.len(), u64::from(v.prot)],
            )?;
        }
        for advice in advices(v) {
            remote.call(
                "madvise",
                libc::SYS_madvise,
                &[v.start, v.len(), advice as u64],
            )?;
        }
        let guards = guards_in(&mm.guards, v);
        install_guards(child, guards)?;
        if v.flags.locked || v.flags.lockonfault {
            lock(child, v, !guards.is_empty())?;
        }
    }
    Ok(())
}

/// `mlock2` of a locked mapping. With guard regions inside, the kernel marks the mapping
/// locked and then fails to fault the guard pages in (ENOMEM), as it did for the task:
/// that error is expected.
fn lock(child: &Child, v: &Vma, has_guards: bool) -> Result<(), RestoreError> {
    let onfault = if v.flags.lockonfault { 1 } else { 0 };
    let args = [v.start, v.len(), onfault];
    let r = child.remote().raw(libc::SYS_mlock2, &args)?;
    if r == 0 || (has_guards && r == -i64::from(libc::ENOMEM)) {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "mlock2 of mapping {:#x}-{:#x} in pid {}: {}",
            v.start,
            v.end,
            child.pid(),
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
fn install_guards(child: &Child, guards: &[Guard]) -> Result<(), RestoreError> {
    for g in guards {
        child.remote().call(
            "madvise(MADV_GUARD_INSTALL)",
            libc::SYS_madvise,
            &[g.start, g.end - g.start, MADV_GUARD_INSTALL],
        )?;
    }
    Ok(())
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
    ];
    table
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, a)| *a)
        .collect()
}

/// `mseal(2)` of sealed mappings; after this nothing may touch them.
pub fn seal(child: &Child, mm: &MmImage) -> Result<(), RestoreError> {
    for v in mm.vmas.iter().filter(|v| v.flags.sealed && !is_special(v)) {
        child.remote().call("mseal", 462, &[v.start, v.len(), 0])?;
    }
    Ok(())
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP)`: brk, code/data/stack bounds, arg/env, auxv and the
/// exe link in one validated call.
///
/// Ordering requirements: the old executable (stasis) must be unmapped first, or the
/// kernel refuses the exe change with EBUSY.
pub fn set_mm_fields(child: &Child, mm: &MmImage) -> Result<(), RestoreError> {
    let exe_fd = match &mm.exe {
        Some(f) => open_in(child, &f.path, libc::O_RDONLY | libc::O_CLOEXEC)?,
        None => u64::from(u32::MAX),
    };
    let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let auxv_addr = child.put(1024, &auxv)?;
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
    let addr = child.put_pod(0, &map)?;
    let size = std::mem::size_of::<PrctlMmMap>() as u64;
    child.remote().call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[PR_SET_MM, PR_SET_MM_MAP, addr, size, 0],
    )?;
    if mm.exe.is_some() {
        child.remote().call("close", libc::SYS_close, &[exe_fd])?;
    }
    Ok(())
}
