//! What the processes of a tree share with each other: open file descriptions (inherited
//! across fork: one offset for every holder), shared anonymous memory objects, and the
//! pages a child still shares copy-on-write with its parent (found in `dump/cow.rs`). The
//! first process in tree order that holds an object owns it; later holders refer to it.
//! Objects whose *different* open file descriptions are held by several processes (the
//! ends of a pipe, a socket pair) are linked once the whole tree is known
//! (`dump/files/split.rs`). The restore side is `restore/files/mod.rs`
//! (`FdKind::Inherited`) and `restore/mm.rs` (`ShmemRef`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::mm::ANON_HUGEPAGE;
use super::DumpError;
use crate::dump::files::ghost;
use crate::image::files::{FdKind, FilesImage, MappedFd};
use crate::image::mm::{ShmemObject, ShmemOwner, ShmemRef, Vma, VmaKind};
use crate::proc::{MapEntry, MapPath};
use crate::sys::kcmp::{self, Object};

/// The objects seen so far in the tree, by the inode that names them.
#[derive(Default)]
pub struct Shared {
    /// `(dev, ino)` of an open file → its original holders `(pid, fd)`.
    files: HashMap<(u64, u64), Vec<(i32, i32)>>,
    /// `(dev, ino)` of a shmem object (shared anonymous memory, a memfd, a deleted file)
    /// → the mapping that rebuilds it.
    shmem: HashMap<(u64, u64), Unnamed>,
    /// `(dev, ino)` of a shmem object → the object ranges whose pages a mapping saves
    /// already (each part of an object is saved by the first mapping of it).
    shmem_saved: HashMap<(u64, u64), Vec<(u64, u64)>>,
    /// `(dev, ino)` of the memfds and deleted files held open, by the fd's description.
    unlinked_fds: HashMap<(u64, u64), String>,
    /// The pages every process dumped so far holds once restored, for its children's
    /// copy-on-write ranges (`dump/cow.rs`).
    pub restored_pages: HashMap<i32, Vec<(u64, u64)>>,
    /// (`--lazy-pages`) The processes whose private anonymous pages may be served after
    /// the restore (`lazy::plan`), and the runs left out of each one's pages files.
    pub lazy_pids: std::collections::HashSet<i32>,
    pub lazy: Vec<crate::image::lazy::LazyProcess>,
    /// By pid, the process whose memory it starts with at restore, when not its parent
    /// (`image::forks::Plan::memory_from`): its copy-on-write source.
    pub memory_from: HashMap<i32, i32>,
    /// The child subreapers (`PR_GET_CHILD_SUBREAPER`), for the sessions' plan.
    pub subreapers: std::collections::HashSet<i32>,
}

impl Shared {
    /// Turns every fd of `pid` that shares its open file description with an fd of an
    /// earlier process into an `Inherited` reference, and records the rest as originals.
    pub fn link_files(&mut self, pid: i32, files: &mut FilesImage) -> Result<(), DumpError> {
        let in_flight: Vec<i32> = files.in_flight.iter().flat_map(|m| m.fds.clone()).collect();
        let mut pipe_creators = HashMap::new();
        for e in &mut files.fds {
            // Files in flight were identified across the tree already (`inflight.rs`).
            if matches!(e.kind, FdKind::Dup { .. }) || in_flight.contains(&e.fd) {
                continue;
            }
            let key = inode(pid, e.fd)?;
            let holders = self.files.entry(key).or_default();
            // Two descriptions of one process are never the same (dups are `Dup`s).
            let same = |&&(p, fd): &&(i32, i32)| {
                p != pid
                    && kcmp::same(pid, p, Object::File, e.fd as u64, fd as u64).unwrap_or(false)
            };
            match holders.iter().find(same) {
                Some(&(owner, fd)) => {
                    if let FdKind::Pipe(p) = &e.kind {
                        pipe_creators.insert(e.fd, p.clone());
                    }
                    e.kind = FdKind::Inherited { pid: owner, fd }
                }
                None => holders.push((pid, e.fd)),
            }
        }
        crate::dump::files::pipe::unpair_inherited(&mut files.fds, &pipe_creators);
        Ok(())
    }

    /// The mappings of objects without a name among `maps` (`vmas` converted from them):
    /// the shared ones, each object owned by the first mapping of it in the tree (in this
    /// process, the one from the lowest offset); then the private mappings of such
    /// objects (`VmaKind::PrivateUnlinked`): of an object owned already, or the first
    /// mapping of a deleted file, whose contents then go to the tree's ghosts (`ghosts`,
    /// `ghost_limit` bytes of data at most) and which owns it.
    pub fn link_shmem(
        &mut self,
        pid: i32,
        maps: &[MapEntry],
        vmas: &mut [Vma],
        ghosts: &mut ghost::Table,
        ghost_limit: u64,
    ) -> Result<LinkedShmem, DumpError> {
        let mut out = LinkedShmem::default();
        let mut shmem: Vec<&MapEntry> = maps.iter().filter(|m| is_shmem(m)).collect();
        shmem.sort_by_key(|m| (m.offset, std::cmp::Reverse(m.end - m.start)));
        for m in shmem {
            let (key, _) = map_inode(pid, m)?;
            if let Some(fd) = self.unlinked_fds.get(&key) {
                return Err(mapped_and_open(pid, m, fd));
            }
            let owner = match self.shmem.get(&key) {
                Some(o) => Some(o.reach(pid, m)?),
                None => {
                    // Offsets in an anonymous object are kept as they are: it is made
                    // whole (`ShmemObject`); a memfd or deleted file is rebuilt whole.
                    if is_anon(m) {
                        out.objects.push(object(pid, m)?);
                    }
                    self.shmem.insert(key, Unnamed::new(pid, m, false));
                    None
                }
            };
            out.save.insert(m.start, self.first_saved_by(key, m));
            out.refs.push(ShmemRef {
                start: m.start,
                owner,
            });
        }
        for v in vmas.iter_mut() {
            let m = maps.iter().find(|m| m.start == v.start);
            let m = m.expect("vmas come from these maps");
            if !v.shared && matches!(v.kind, VmaKind::Hugetlb { memfd: None, .. }) {
                // Its own anonymous memory, unless it maps shared hugetlb memory
                // privately (through `map_files`).
                if !self.shmem.contains_key(&map_inode(pid, m)?.0) {
                    continue;
                }
                v.kind = VmaKind::PrivateUnlinked {
                    name: ANON_HUGEPAGE.to_string(),
                    offset: m.offset,
                    ghost: None,
                };
            }
            if let VmaKind::PrivateUnlinked { .. } = v.kind {
                out.refs
                    .push(self.link_private(pid, m, v, ghosts, ghost_limit)?);
            }
        }
        out.refs.sort_by_key(|r| r.start);
        Ok(out)
    }

    /// The object reference of private mapping `v` (`m` in maps) of `pid`; a deleted
    /// file that no earlier mapping rebuilds is saved in the ghost table and named in
    /// `v` ([`ghost`]).
    fn link_private(
        &mut self,
        pid: i32,
        m: &MapEntry,
        v: &mut Vma,
        ghosts: &mut ghost::Table,
        ghost_limit: u64,
    ) -> Result<ShmemRef, DumpError> {
        let (key, _) = map_inode(pid, m)?;
        if let Some(fd) = self.unlinked_fds.get(&key) {
            return Err(mapped_and_open(pid, m, fd));
        }
        let VmaKind::PrivateUnlinked {
            name,
            offset,
            ghost: saved,
        } = &mut v.kind
        else {
            unreachable!("called for private mappings of unlinked objects only");
        };
        let owner = match self.shmem.get(&key) {
            Some(o) => {
                let owner = o.reach(pid, m)?;
                if o.relative {
                    *offset = owner.offset;
                }
                Some(owner)
            }
            None => {
                *saved = Some(ghost(pid, m, name, ghosts, ghost_limit)?);
                self.shmem.insert(key, Unnamed::new(pid, m, true));
                None
            }
        };
        Ok(ShmemRef {
            start: m.start,
            owner,
        })
    }

    /// The address ranges of `m` (a mapping of object `key`) that no earlier mapping of
    /// the tree saves, which `m` saves then.
    fn first_saved_by(&mut self, key: (u64, u64), m: &MapEntry) -> Vec<(u64, u64)> {
        let saved = self.shmem_saved.entry(key).or_default();
        let own = (m.offset, m.offset + (m.end - m.start));
        let new = super::memory::subtract(&[own], saved);
        saved.extend(new.iter().copied());
        saved.sort_unstable();
        let shift = |o: u64| m.start + (o - m.offset);
        new.into_iter().map(|(a, b)| (shift(a), shift(b))).collect()
    }
}

/// The shared memory of one process, as linked with the tree's.
#[derive(Default)]
pub struct LinkedShmem {
    pub refs: Vec<ShmemRef>,
    /// The anonymous objects this process creates.
    pub objects: Vec<ShmemObject>,
    /// By mapping start: the address ranges whose pages this process saves.
    pub save: HashMap<u64, Vec<(u64, u64)>>,
}

/// An object without a name, as the mapping that rebuilds it at restore sees it.
#[derive(Clone, Copy, Debug)]
struct Unnamed {
    /// That mapping (`offset` 0).
    owner: ShmemOwner,
    /// The object offset that offsets through the owner are relative to (0 for an
    /// object made whole with its offsets kept).
    base: u64,
    /// A deleted file saved whole as a ghost (by a private mapping of it).
    whole: bool,
    /// Anonymous hugetlb memory, recreated as its owner's mapping: offsets in it are
    /// relative to that mapping.
    relative: bool,
}

impl Unnamed {
    fn new(pid: i32, m: &MapEntry, whole: bool) -> Unnamed {
        let owner = ShmemOwner {
            pid,
            start: m.start,
            end: m.end,
            offset: 0,
        };
        let relative = matches!(&m.path, MapPath::Deleted(p) if p == ANON_HUGEPAGE);
        let base = if whole || is_anon(m) { 0 } else { m.offset };
        Unnamed {
            owner,
            base,
            whole,
            relative,
        }
    }

    /// How mapping `m` of `pid` reaches the object: refused below the offset its owner
    /// maps from.
    fn reach(&self, pid: i32, m: &MapEntry) -> Result<ShmemOwner, DumpError> {
        let owner = self.owner;
        let offset = m
            .offset
            .checked_sub(self.base)
            .ok_or_else(|| below(pid, m, &owner))?;
        Ok(ShmemOwner { offset, ..owner })
    }
}

/// A mapping of a memfd or deleted file below the offset its first mapping maps from.
fn below(pid: i32, m: &MapEntry, owner: &ShmemOwner) -> DumpError {
    DumpError::unsupported(format!(
        "pid {pid} maps shared memory at {:#x} from an offset below that of its first mapping, at {:#x} in pid {}, which stasis cannot rebuild",
        m.start, owner.start, owner.pid
    ))
}

/// How shared anonymous memory shows in maps.
const DEV_ZERO: &str = "/dev/zero";

/// `MAP_SHARED | MAP_ANONYMOUS` memory (the kernel's unlinked `/dev/zero` shmem file).
fn is_anon(m: &MapEntry) -> bool {
    matches!(&m.path, MapPath::Deleted(p) if p == DEV_ZERO)
}

/// The size of the anonymous object `m` maps (at least as far as `m` reaches into it).
fn object(pid: i32, m: &MapEntry) -> Result<ShmemObject, DumpError> {
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
    let meta = std::fs::metadata(&path).map_err(|source| DumpError::Stat { path, source })?;
    let reach = m.offset + (m.end - m.start);
    Ok(ShmemObject {
        start: m.start,
        size: meta
            .size()
            .next_multiple_of(crate::abi::PAGE_SIZE)
            .max(reach),
        offset: m.offset,
    })
}

/// The deleted file that private mapping `m` of `pid` maps (`name` in maps), saved in
/// the tree's ghost table (`dump/files/ghost.rs`, once per file, holes kept): its index.
/// Refused for an object that is no regular deleted file, one that keeps other links,
/// or one with more data than `limit` bytes.
fn ghost(
    pid: i32,
    m: &MapEntry,
    name: &str,
    ghosts: &mut ghost::Table,
    limit: u64,
) -> Result<u32, DumpError> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
    let what = format!(
        "mapping {:#x}-{:#x} of pid {pid} is a private mapping of {name}",
        m.start, m.end
    );
    let refuse = |why: String| Err(DumpError::unsupported(format!("{what}, {why}")));
    if name.starts_with("/memfd:") || name == DEV_ZERO || m.has_flag("ht") {
        return refuse("an object no shared mapping of the tree saves before it, which stasis cannot checkpoint yet".into());
    }
    let io = |source: std::io::Error| DumpError::Stat {
        path: link.clone(),
        source,
    };
    let file = std::fs::File::open(&link).map_err(io)?;
    let meta = nix::sys::stat::fstat(&file).map_err(|e| io(e.into()))?;
    if meta.st_nlink != 0 {
        return refuse("a name since unlinked while the file keeps other links, which stasis cannot checkpoint yet".into());
    }
    if meta.st_mode & libc::S_IFMT != libc::S_IFREG {
        return refuse("which is no regular file, which stasis cannot checkpoint yet".into());
    }
    let runs = ghost::data_runs(&file, meta.st_size as u64).map_err(io)?;
    let stored: u64 = runs.iter().map(|r| r.1).sum();
    if stored > limit {
        return refuse(format!("a deleted file of {stored} bytes of data, above the --ghost-limit of {limit} bytes; raise --ghost-limit to save it in the image"));
    }
    ghosts.add((meta.st_dev, meta.st_ino), || {
        let body = ghost::regular(&file, &meta).map_err(io)?;
        Ok(ghost::ghost_file(name, &meta, body))
    })
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
    if m.has_flag("ht") {
        return hugetlb_data(&file, m, &path);
    }
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

/// The address ranges of hugetlb mapping `m` whose pages hold anything but zeros, read
/// through the object (`file`, at `path`): hugetlbfs reports every offset as data to
/// `SEEK_DATA`, and reading a hole through the mapping would allocate a huge page, while
/// `pread` reads holes as zeros.
fn hugetlb_data(
    file: &std::fs::File,
    m: &MapEntry,
    path: &str,
) -> Result<Vec<(u64, u64)>, DumpError> {
    use std::os::unix::fs::FileExt;
    let page = crate::abi::PAGE_SIZE as usize;
    let mut buf = vec![0u8; super::memory::CHUNK];
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    while at < m.end - m.start {
        let want = buf.len().min((m.end - m.start - at) as usize);
        let got =
            (file.read_at(&mut buf[..want], m.offset + at)).map_err(|source| DumpError::Stat {
                path: path.to_string(),
                source,
            })?;
        for (i, p) in buf[..got].chunks(page).enumerate() {
            let addr = m.start + at + (i * page) as u64;
            match out.last_mut() {
                _ if p.iter().all(|&b| b == 0) => {}
                Some(last) if last.1 == addr => last.1 += page as u64,
                _ => out.push((addr, addr + page as u64)),
            }
        }
        if got < want {
            break; // the object ends here
        }
        at += got as u64;
    }
    Ok(out)
}

/// A shared mapping of an object without a name, saved once for the tree from its own
/// data: `MAP_SHARED | MAP_ANONYMOUS` (the kernel backs it with an unlinked `/dev/zero`
/// shmem file), a memfd or a deleted file (`dump/mm.rs` refuses memfd_secret; SysV
/// segments, `/SYSV<key>`, are saved by `dump/sysv.rs`). AIO rings are the kernel's, one
/// per context (`dump/aio.rs`).
pub fn is_shmem(m: &MapEntry) -> bool {
    m.shared
        && matches!(&m.path, MapPath::Deleted(p)
            if p != super::aio::RING && !p.starts_with(super::mm::SYSV))
}

/// `(st_dev, st_ino)` and size of the object mapped by `m`.
fn map_inode(pid: i32, m: &MapEntry) -> Result<((u64, u64), u64), DumpError> {
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
    let meta = std::fs::metadata(&path).map_err(|source| DumpError::Stat { path, source })?;
    Ok(((meta.dev(), meta.ino()), meta.size()))
}

fn mapped_and_open(pid: i32, m: &MapEntry, fd: &str) -> DumpError {
    DumpError::unsupported(format!(
        "mapping {:#x}-{:#x} of pid {pid} maps {:?}, which {fd} holds open in a process before any that maps it; stasis rebuilds such an object from its first mapping and cannot yet reach it from an fd restored before it",
        m.start, m.end, m.path
    ))
}

impl Shared {
    /// Turns each memfd or deleted-file fd of `pid` whose object a process of the tree
    /// maps already (this one included: its mappings are linked first) into a
    /// [`FdKind::Mapped`] reopen of that mapping, which rebuilds the object. Records the
    /// others, so that a later mapping of their object is refused: the fd would come
    /// back as a second object. Files in flight are in no table: they are left out.
    pub fn link_unlinked_fds(&mut self, pid: i32, files: &mut FilesImage) -> Result<(), DumpError> {
        let flying: Vec<i32> = files
            .fds
            .iter()
            .map(|e| e.fd)
            .filter(|&fd| files.is_in_flight(fd))
            .collect();
        for e in files.fds.iter_mut().filter(|e| !flying.contains(&e.fd)) {
            let (kind, pos, seals) = match &e.kind {
                FdKind::Memfd(m) => ("a memfd", m.pos, m.seals),
                FdKind::Ghost(g) => ("a deleted file", g.pos, 0),
                // Only a regular file's inode can be mapped too.
                FdKind::Deleted(d) => ("a deleted file", d.pos, 0),
                _ => continue,
            };
            let meta = fd_meta(pid, e.fd)?;
            let key = (meta.dev(), meta.ino());
            let what = format!("fd {} of pid {pid} ({kind})", e.fd);
            match self.shmem.get(&key) {
                Some(o) => {
                    e.kind = mapped(&what, meta.len(), o, pos, seals)?;
                }
                None => {
                    self.unlinked_fds.insert(key, what);
                }
            }
        }
        Ok(())
    }
}

/// The [`FdKind::Mapped`] kind of an fd (`what`) whose object of `size` bytes is
/// rebuilt by the mapping of `o`; refused unless that mapping covers the whole object
/// (or it is rebuilt whole), since only the mapped pages are saved.
fn mapped(what: &str, size: u64, o: &Unnamed, pos: u64, seals: u32) -> Result<FdKind, DumpError> {
    let owner = o.owner;
    let covered = owner.end - owner.start;
    if !o.whole && (o.base != 0 || covered < size.next_multiple_of(crate::abi::PAGE_SIZE)) {
        return Err(DumpError::unsupported(format!(
            "{what} is also mapped, by the mapping {:#x}-{:#x} of pid {}, which covers only part of its {size} bytes; stasis saves a mapped object through that mapping and cannot rebuild the rest",
            owner.start, owner.end, owner.pid
        )));
    }
    Ok(FdKind::Mapped(MappedFd {
        pid: owner.pid,
        start: owner.start,
        end: owner.end,
        pos,
        seals,
    }))
}

/// `(st_dev, st_ino)` of what fd `fd` of `pid` refers to.
pub fn inode(pid: i32, fd: i32) -> Result<(u64, u64), DumpError> {
    let meta = fd_meta(pid, fd)?;
    Ok((meta.dev(), meta.ino()))
}

/// `stat` of what fd `fd` of `pid` refers to.
fn fd_meta(pid: i32, fd: i32) -> Result<std::fs::Metadata, DumpError> {
    let path = format!("/proc/{pid}/fd/{fd}");
    std::fs::metadata(&path).map_err(|source| DumpError::Stat { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shm(start: u64, end: u64, offset: u64) -> MapEntry {
        MapEntry {
            start,
            end,
            read: true,
            write: true,
            exec: false,
            shared: true,
            offset,
            dev_major: 0,
            dev_minor: 1,
            inode: 7,
            path: MapPath::Deleted("/dev/zero".into()),
            vm_flags: Vec::new(),
            rss_kb: 0,
        }
    }

    /// Each part of an object is saved by the first mapping of it: pieces, then a mapping
    /// of the whole object, which saves only what the pieces left.
    #[test]
    fn each_part_is_saved_by_its_first_mapping() {
        let mut s = Shared::default();
        let key = (1, 7);
        let piece = s.first_saved_by(key, &shm(0x10_1000, 0x10_3000, 0x1000));
        assert_eq!(piece, vec![(0x10_1000, 0x10_3000)]);
        let again = s.first_saved_by(key, &shm(0x20_0000, 0x20_1000, 0x2000));
        assert!(again.is_empty(), "page 2 is saved already");
        let far = s.first_saved_by(key, &shm(0x30_0000, 0x30_1000, 0x5000));
        assert_eq!(far, vec![(0x30_0000, 0x30_1000)]);
        let whole = s.first_saved_by(key, &shm(0x40_0000, 0x40_8000, 0));
        assert_eq!(
            whole,
            vec![
                (0x40_0000, 0x40_1000),
                (0x40_3000, 0x40_5000),
                (0x40_6000, 0x40_8000)
            ]
        );
    }
}
