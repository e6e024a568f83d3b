//! System V IPC: the shared memory segments, semaphore sets and message queues of the
//! tree's IPC namespace, saved into `sysv.img` (+ `sysv-shm.img` for segment contents).
//! The restore side is `restore/sysv.rs`; the mappings of attached segments are
//! `VmaKind::SysvShm` (`dump/mm.rs`).
//!
//! What is saved depends on whose namespace it is (`IpcNs`):
//! - the host's initial namespace: only the segments the tree has attached. Semaphores
//!   and queues are referenced by ids the kernel cannot tell us about, and objects of the
//!   host belong to everyone on it; they survive the dump (which kills processes, not
//!   objects), so they are not saved.
//! - the dumper's own namespace (not the initial one, e.g. a container both run in):
//!   every object in it, as the namespace is the tree's to use.
//! - a namespace the tree's root made (neither its parent's nor the dumper's), or the
//!   one of a root that is the init of its pid namespace (a container's): every
//!   object and the namespace's sysctls; the restore makes a new namespace for the tree.
//!
//! The POSIX message queues of a namespace that is not the host's are saved too
//! (`dump/mqueue.rs`, into `mqueue.img`), by the same thread.
//!
//! The objects are read from a thread of stasis that enters the tree's namespace: segments
//! are attached read-only there for a moment (their `shm_atime`/`shm_lpid` change),
//! semaphores read with `GETALL`, messages copied with `MSG_COPY` (left queued).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::DumpError;
use crate::image::mm::{Vma, VmaKind};
use crate::image::mqueue::MQUEUE;
use crate::image::sysv::{
    IpcNs, IpcPerm, Message, MsgQueue, SemSet, ShmSegment, SysvImage, SYSCTLS, SYSV, SYSV_SHM_PAGES,
};
use crate::image::{ImageWriter, Kind};
use crate::proc::sysvipc::{self, Perm};
use crate::sys::ipc;

/// The inode of the host's initial IPC namespace (`PROC_IPC_INIT_INO`), the same on every
/// kernel.
pub const INIT_IPC_NS: u64 = 0xEFFF_FFFF;

/// Bytes copied per step from a segment into the pages file.
const CHUNK: usize = 4 << 20;

/// Saves the IPC objects of the tree: `pids` (live processes, the root first), `ppid` the
/// root's parent, `vmas` every process's mappings. Writes nothing when there is nothing
/// to carry.
///
/// Ordering requirements: while the tree is frozen (no attach, detach or message races).
pub fn dump(
    pids: &[i32],
    ppid: i32,
    vmas: &[&[Vma]],
    writer: &ImageWriter,
) -> Result<(), DumpError> {
    let ns = namespace(pids, ppid)?;
    let mut attached = Vec::new();
    for (&pid, v) in pids.iter().zip(vmas) {
        attached.extend(
            attachments(pid, v)?
                .into_iter()
                .map(|(id, len)| (pid, id, len)),
        );
    }
    if ns.0 == IpcNs::Host && attached.is_empty() {
        return Ok(());
    }
    let root = pids[0];
    let enter = ns.1.then_some(root);
    let (image, queues) = ipc::in_ipc_ns_of(enter, || {
        let image = collect(ns.0, &attached, writer)?;
        let queues = match ns.0 {
            IpcNs::Host => Default::default(),
            _ => super::mqueue::collect(root)?,
        };
        Ok::<_, DumpError>((image, queues))
    })??;
    if !image.is_empty() {
        writer.write_record(SYSV, Kind::Sysv, &image)?;
    }
    if !queues.queues.is_empty() {
        writer.write_record(MQUEUE, Kind::Mqueue, &queues)?;
    }
    Ok(())
}

/// The kind of the tree's namespace and whether the reader must enter it.
fn namespace(pids: &[i32], ppid: i32) -> Result<(IpcNs, bool), DumpError> {
    let ipc = |pid: i32| super::ns::ns_inode(&pid.to_string(), "ipc");
    let tree = ipc(pids[0])?;
    for &pid in &pids[1..] {
        if ipc(pid)? != tree {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is in another IPC namespace than the tree's root {}; stasis restores one IPC namespace per tree",
                pids[0]
            )));
        }
    }
    if tree == super::ns::ns_inode("thread-self", "ipc")? {
        let kind = if tree == INIT_IPC_NS {
            IpcNs::Host
        } else {
            IpcNs::Dumper
        };
        return Ok((kind, false));
    }
    // The init of a pid namespace is a container's root: the namespace is the tree's,
    // whoever made it.
    let shared_with_parent = ns_inode(&format!("/proc/{ppid}/ns/ipc")).ok() == Some(tree)
        && !super::ns::pid::is_ns_init(pids[0])?;
    if tree == INIT_IPC_NS || shared_with_parent {
        return Err(DumpError::unsupported(format!(
            "the IPC namespace of pid {} is neither the dumper's nor one the tree made (its parent {ppid} is in it too); run stasis in that namespace",
            pids[0]
        )));
    }
    Ok((IpcNs::Own, true))
}

/// The inode of the namespace file at `path` (a process outside the tree: its parent).
fn ns_inode(path: &str) -> Result<u64, DumpError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| DumpError::Stat {
            path: path.to_string(),
            source,
        })
}

/// The attachments of `pid` (segment id, length), checking each is one `shmat`: a mapping
/// at offset 0 and the ones following it contiguously (mprotect splits one).
fn attachments(pid: i32, vmas: &[Vma]) -> Result<Vec<(i32, u64)>, DumpError> {
    let mut out: Vec<(i32, u64)> = Vec::new();
    let mut prev: Option<(&Vma, i32, u64)> = None;
    for v in vmas {
        let VmaKind::SysvShm { id, offset, .. } = v.kind else {
            prev = None;
            continue;
        };
        let follows = matches!(prev, Some((p, prev_id, off)) if prev_id == id && p.end == v.start && off + p.len() == offset);
        if offset != 0 && !follows {
            return Err(DumpError::unsupported(format!(
                "mapping {:#x}-{:#x} of pid {pid} is part of System V segment {id} (offset {offset:#x}) whose start is not attached before it; stasis restores whole attachments only",
                v.start, v.end
            )));
        }
        match out.last_mut() {
            Some(last) if follows => last.1 += v.len(),
            _ => out.push((id, v.len())),
        }
        prev = Some((v, id, offset));
    }
    Ok(out)
}

/// Lists and reads the objects (in a thread that is in the tree's namespace).
fn collect(
    ns: IpcNs,
    attached: &[(i32, i32, u64)],
    writer: &ImageWriter,
) -> Result<SysvImage, DumpError> {
    let all = ns != IpcNs::Host;
    let mut shm = sysvipc::read("shm", sysvipc::parse_shm)?;
    shm.retain(|s| all || attached.iter().any(|a| a.1 == s.perm.id));
    for &(pid, id, len) in attached {
        let Some(s) = shm.iter().find(|s| s.perm.id == id) else {
            return Err(DumpError::unsupported(format!(
                "System V segment {id} attached by pid {pid} is not listed in /proc/sysvipc/shm"
            )));
        };
        if len < s.size.div_ceil(crate::abi::PAGE_SIZE) * crate::abi::PAGE_SIZE {
            return Err(DumpError::unsupported(format!(
                "pid {pid} has only {len:#x} bytes of System V segment {id} ({} bytes) attached (the rest unmapped); stasis restores whole attachments only",
                s.size
            )));
        }
    }
    if all && shm.iter().any(|s| s.nattch == 0) && rmid_forced()? {
        let id = shm.iter().find(|s| s.nattch == 0).map_or(0, |s| s.perm.id);
        return Err(DumpError::unsupported(format!(
            "System V segment {id} is attached by no process and kernel.shm_rmid_forced is set in the tree's IPC namespace: only its creator's life keeps it, which stasis cannot restore"
        )));
    }
    let mut image = SysvImage {
        ns,
        ..Default::default()
    };
    let mut pages = None;
    for s in &shm {
        let w = match &mut pages {
            Some(w) => w,
            None => pages.insert(writer.pages(SYSV_SHM_PAGES)?),
        };
        image.shm.push(segment(s, w)?);
    }
    if let Some(w) = pages {
        w.finish()?;
    }
    if all {
        image.sem = semaphores()?;
        image.msg = queues()?;
    }
    if ns == IpcNs::Own {
        image.sysctls = sysctls()?;
    }
    Ok(image)
}

fn perm(p: &Perm) -> IpcPerm {
    IpcPerm {
        key: p.key,
        id: p.id,
        mode: p.mode,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
    }
}

/// One segment: attached read-only, its pages holding data (`SEEK_DATA` on the object)
/// copied into the pages file.
fn segment(
    s: &sysvipc::Shm,
    w: &mut crate::image::pages::PagesWriter,
) -> Result<ShmSegment, DumpError> {
    let id = s.perm.id;
    let end = s.size.div_ceil(crate::abi::PAGE_SIZE) * crate::abi::PAGE_SIZE;
    let at = ipc::attach(id, end as usize, true)?;
    let me = std::process::id() as i32;
    let map = crate::proc::maps(me)?
        .into_iter()
        .find(|m| m.start == at.addr())
        .ok_or_else(|| {
            DumpError::unsupported(format!("segment {id} attached but not in our maps"))
        })?;
    let hugetlb = hugetlb_page(&format!(
        "/proc/{me}/map_files/{:x}-{:x}",
        map.start, map.end
    ))?;
    let ranges = match hugetlb {
        // hugetlbfs has no SEEK_DATA: every page counts.
        Some(_) => vec![(map.start, map.end)],
        None => super::shared::shmem_data(me, &map)?,
    };
    let mut runs = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    for (a, b) in ranges {
        let (lo, hi) = (a - map.start, (b - map.start).min(end));
        if lo >= hi {
            continue;
        }
        let mut off = lo;
        while off < hi {
            let n = ((hi - off) as usize).min(CHUNK);
            at.copy_out(off as usize, &mut buf[..n]);
            w.write(&buf[..n])?;
            off += n as u64;
        }
        runs.push((lo, (hi - lo) / crate::abi::PAGE_SIZE));
    }
    Ok(ShmSegment {
        perm: perm(&s.perm),
        size: s.size,
        hugetlb,
        runs,
    })
}

/// The huge page size if the object at `path` lives on hugetlbfs.
fn hugetlb_page(path: &str) -> Result<Option<u64>, DumpError> {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let st = nix::sys::statfs::statfs(path)
        .map_err(|e| DumpError::unsupported(format!("statfs {path}: {e}")))?;
    Ok((st.filesystem_type().0 as i64 == HUGETLBFS_MAGIC).then(|| st.block_size() as u64))
}

fn semaphores() -> Result<Vec<SemSet>, DumpError> {
    sysvipc::read("sem", sysvipc::parse_sem)?
        .iter()
        .map(|s| {
            Ok(SemSet {
                perm: perm(&s.perm),
                values: ipc::sem_values(s.perm.id, s.nsems as usize)?,
            })
        })
        .collect()
}

fn queues() -> Result<Vec<MsgQueue>, DumpError> {
    let mut out = Vec::new();
    for q in sysvipc::read("msg", sysvipc::parse_msg)? {
        let id = q.perm.id;
        let max = q.cbytes as usize;
        let messages = (0..q.qnum as i64)
            .map(|n| {
                let (mtype, text) = ipc::msg_copy(id, n, max)?;
                Ok(Message { mtype, text })
            })
            .collect::<Result<Vec<_>, DumpError>>()?;
        out.push(MsgQueue {
            perm: perm(&q.perm),
            qbytes: ipc::msg_qbytes(id)?,
            messages,
        });
    }
    Ok(out)
}

/// Whether `kernel.shm_rmid_forced` is set in the calling thread's namespace (then a
/// segment nobody attaches dies with its creator).
fn rmid_forced() -> Result<bool, DumpError> {
    let path = "/proc/sys/kernel/shm_rmid_forced";
    match std::fs::read_to_string(path) {
        Ok(v) => Ok(v.trim() != "0"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DumpError::Stat {
            path: path.to_string(),
            source,
        }),
    }
}

/// The namespace's IPC sysctls ([`SYSCTLS`]) as the calling thread sees them.
fn sysctls() -> Result<Vec<(String, String)>, DumpError> {
    SYSCTLS
        .iter()
        .filter_map(|name| {
            let path = format!("/proc/sys/{name}");
            match crate::proc::sysctl::read(Path::new(&path)) {
                Ok(v) => Some(Ok((name.to_string(), v.trim().to_string()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => Some(Err(DumpError::Stat { path, source })),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::mm::VmaFlags;

    fn shm(start: u64, end: u64, id: i32, offset: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 3,
            shared: true,
            kind: VmaKind::SysvShm {
                id,
                offset,
                may_write: true,
            },
            flags: VmaFlags::default(),
        }
    }

    #[test]
    fn a_split_attachment_is_one_shmat() {
        let v = [shm(0x1000, 0x3000, 5, 0), shm(0x3000, 0x4000, 5, 0x2000)];
        assert_eq!(attachments(1, &v).unwrap(), vec![(5, 0x3000)]);
    }

    #[test]
    fn a_partial_attachment_is_refused() {
        let v = [shm(0x1000, 0x3000, 5, 0x1000)];
        assert!(attachments(1, &v).is_err());
        let v = [shm(0x1000, 0x2000, 5, 0), shm(0x3000, 0x4000, 5, 0x2000)];
        assert!(attachments(1, &v).is_err());
    }
}
