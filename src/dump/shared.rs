//! What the processes of a tree share with each other: open file descriptions (inherited
//! across fork: one offset for every holder) and shared anonymous memory objects. The
//! first process in tree order that holds an object owns it; later holders refer to it.
//! Objects whose *different* open file descriptions are held by several processes (the
//! ends of a pipe, a socket pair) are linked once the whole tree is known
//! (`dump/files/split.rs`). The restore side is `restore/files/mod.rs`
//! (`FdKind::Inherited`) and `restore/mm.rs` (`ShmemRef`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::DumpError;
use crate::image::files::{FdKind, FilesImage};
use crate::image::mm::{ShmemOwner, ShmemRef};
use crate::proc::{MapEntry, MapPath};
use crate::sys::kcmp::{self, Object};

/// The objects seen so far in the tree, by the inode that names them.
#[derive(Default)]
pub struct Shared {
    /// `(dev, ino)` of an open file → its original holders `(pid, fd)`.
    files: HashMap<(u64, u64), Vec<(i32, i32)>>,
    /// Inode of a shmem object → its owner's mapping and that mapping's object offset.
    shmem: HashMap<u64, (ShmemOwner, u64)>,
}

impl Shared {
    /// Turns every fd of `pid` that shares its open file description with an fd of an
    /// earlier process into an `Inherited` reference, and records the rest as originals.
    pub fn link_files(&mut self, pid: i32, files: &mut FilesImage) -> Result<(), DumpError> {
        for e in &mut files.fds {
            if matches!(e.kind, FdKind::Dup { .. }) {
                continue;
            }
            let key = inode(pid, e.fd)?;
            let holders = self.files.entry(key).or_default();
            let same = |&&(p, fd): &&(i32, i32)| {
                kcmp::same(pid, p, Object::File, e.fd as u64, fd as u64).unwrap_or(false)
            };
            match holders.iter().find(same) {
                Some(&(owner, fd)) => e.kind = FdKind::Inherited { pid: owner, fd },
                None => holders.push((pid, e.fd)),
            }
        }
        Ok(())
    }

    /// The shared anonymous mappings of `pid` among `maps`, each owned by the first
    /// process that maps its object.
    pub fn link_shmem(&mut self, pid: i32, maps: &[MapEntry]) -> Result<Vec<ShmemRef>, DumpError> {
        let mut refs = Vec::new();
        for m in maps.iter().filter(|m| is_shared_anon(m)) {
            let owner = match self.shmem.get(&m.inode) {
                Some(&(owner, base)) if m.offset >= base => Some(ShmemOwner {
                    offset: m.offset - base,
                    ..owner
                }),
                Some(&(owner, _)) => {
                    return Err(DumpError::unsupported(format!(
                        "pid {pid} maps shared memory at {:#x} from below the part pid {} maps; stasis cannot rebuild that",
                        m.start, owner.pid
                    )))
                }
                None => {
                    let owner = ShmemOwner {
                        pid,
                        start: m.start,
                        end: m.end,
                        offset: 0,
                    };
                    self.shmem.insert(m.inode, (owner, m.offset));
                    None
                }
            };
            refs.push(ShmemRef {
                start: m.start,
                owner,
            });
        }
        Ok(refs)
    }
}

/// The address ranges of mapping `m` of `pid` whose pages hold data (resident or swapped),
/// found with `SEEK_DATA`/`SEEK_HOLE` on the shmem object itself (`/proc/PID/map_files`):
/// pages that only another process of the tree touched count too, which `PAGEMAP_SCAN`
/// of this process would miss.
pub fn shmem_data(pid: i32, m: &MapEntry) -> Result<Vec<(u64, u64)>, DumpError> {
    use nix::unistd::{lseek, Whence};
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
    let file = std::fs::File::open(&path).map_err(|source| DumpError::Stat {
        path: path.clone(),
        source,
    })?;
    let seek_err = |e: nix::errno::Errno| {
        DumpError::unsupported(format!("lseek in the shared memory {path}: {e}"))
    };
    let page = crate::abi::PAGE_SIZE as i64;
    let (lo, hi) = (m.offset as i64, (m.offset + (m.end - m.start)) as i64);
    let mut out = Vec::new();
    let mut at = lo;
    while at < hi {
        let data = match lseek(&file, at, Whence::SeekData) {
            Ok(d) => d / page * page,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(seek_err(e)),
        };
        if data >= hi {
            break;
        }
        let hole = lseek(&file, data, Whence::SeekHole).map_err(seek_err)?;
        let hole = ((hole + page - 1) / page * page).min(hi);
        out.push((m.start + (data - lo) as u64, m.start + (hole - lo) as u64));
        at = hole;
    }
    Ok(out)
}

/// `MAP_SHARED | MAP_ANONYMOUS`: the kernel backs it with an unlinked `/dev/zero` shmem file.
pub fn is_shared_anon(m: &MapEntry) -> bool {
    m.shared && matches!(&m.path, MapPath::Deleted(p) if p == "/dev/zero")
}

/// `(st_dev, st_ino)` of what fd `fd` of `pid` refers to.
pub fn inode(pid: i32, fd: i32) -> Result<(u64, u64), DumpError> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let meta = std::fs::metadata(&path).map_err(|source| DumpError::Stat { path, source })?;
    Ok((meta.dev(), meta.ino()))
}
