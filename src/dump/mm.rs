//! The address space's shape: mappings from smaps, the kernel's mm fields from stat, auxv,
//! the exe link and the vDSO's symbols. Page contents are `dump/memory.rs`; the restore
//! side is `restore/mm.rs`.

use std::os::unix::fs::MetadataExt;

use super::DumpError;
use crate::image::mm::{FileId, HugetlbMemfd, MmFields, Vma, VmaFlags, VmaKind};
use crate::proc::{self, MapEntry, MapPath};
use crate::sys::mem::Mem;

/// How a `memfd_secret(2)` mapping shows in maps (the kernel's internal `secretmem` file).
const SECRETMEM: &str = "/secretmem";
/// How a memfd shows in maps: `/memfd:NAME (deleted)`.
const MEMFD: &str = "/memfd:";
/// How a SysV shared memory segment shows in maps: `/SYSV<key> (deleted)`.
pub const SYSV: &str = "/SYSV";

/// What each mapped file's path names now (`stat`), taken once per path (a library is
/// mapped four or five times).
type Named = std::collections::HashMap<String, FileId>;

/// Converts every mapping, refusing kinds stasis cannot restore.
pub fn vmas(pid: i32, maps: &[MapEntry]) -> Result<Vec<Vma>, DumpError> {
    let mut out = Vec::with_capacity(maps.len());
    let mut named = Named::new();
    for e in maps {
        if let Some(kind) = kind_of(pid, e, &mut named)? {
            out.push(Vma {
                start: e.start,
                end: e.end,
                prot: prot_of(e),
                shared: e.shared,
                kind,
                flags: flags_of(e),
            });
        }
    }
    Ok(out)
}

fn kind_of(pid: i32, e: &MapEntry, named: &mut Named) -> Result<Option<VmaKind>, DumpError> {
    let what = || format!("mapping {:#x}-{:#x} of pid {pid}", e.start, e.end);
    if (e.has_flag("io") || e.has_flag("pf"))
        && !matches!(e.path, MapPath::Vvar | MapPath::VvarVclock)
    {
        return Err(DumpError::unsupported(format!(
            "{} is a device (VM_IO/VM_PFNMAP) mapping, which stasis cannot checkpoint",
            what()
        )));
    }
    Ok(Some(match &e.path {
        MapPath::Anonymous | MapPath::Heap | MapPath::Stack if !e.shared => VmaKind::Anon,
        MapPath::Deleted(p) if p == "/dev/zero" && e.shared => VmaKind::Anon,
        MapPath::Other(name) if name.starts_with("[anon:") && !e.shared => VmaKind::Anon,
        MapPath::File(path) if path.starts_with("socket:[") => packet_ring(pid, e, path)?,
        MapPath::File(path) => VmaKind::File {
            file: mapped_file(pid, e, path, named)?,
            offset: e.offset,
            writable: opened_for_writing(pid, e)?,
        },
        MapPath::Vdso => VmaKind::Vdso,
        MapPath::Vvar => VmaKind::Vvar,
        MapPath::VvarVclock => VmaKind::VvarVclock,
        MapPath::Vsyscall => return Ok(None),
        MapPath::Deleted(p) if p == SECRETMEM => {
            return Err(DumpError::unsupported(format!(
                "{} is a memfd_secret mapping ({SECRETMEM}), whose pages no other process can read, which stasis cannot checkpoint",
                what()
            )))
        }
        MapPath::Deleted(p) if p == super::aio::RING && e.shared => super::aio::ring(pid, e)?,
        MapPath::Deleted(p) if e.has_flag("ht") && !p.starts_with(SYSV) => hugetlb(pid, e, p)?,
        MapPath::Deleted(p) if e.shared && !p.starts_with(SYSV) => unlinked(pid, e, p)?,
        MapPath::Deleted(p) if e.shared => VmaKind::SysvShm {
            id: e.inode as i32,
            offset: e.offset,
            may_write: e.has_flag("mw"),
        },
        MapPath::Deleted(p) if !p.starts_with(SYSV) => private_unlinked(e, p),
        MapPath::Deleted(p) => {
            return Err(DumpError::unsupported(format!(
                "{} is a private mapping of deleted file {p}, which stasis cannot checkpoint yet",
                what()
            )))
        }
        other => {
            return Err(DumpError::unsupported(format!(
                "{} is a {other:?} mapping, which stasis cannot checkpoint",
                what()
            )))
        }
    }))
}

/// A mapping of a socket: the `PACKET_MMAP` rings of a packet socket (the only sockets
/// that can be mapped are packet sockets and TCP zero-copy receive areas, which are
/// refused).
fn packet_ring(pid: i32, e: &MapEntry, path: &str) -> Result<VmaKind, DumpError> {
    let socket = path
        .strip_prefix("socket:[")
        .and_then(|p| p.strip_suffix(']'))
        .and_then(|p| p.parse::<u32>().ok());
    let packet = socket.is_some_and(|ino| {
        crate::sys::sock_diag::packet_sockets().is_ok_and(|t| t.contains_key(&ino))
    });
    match socket {
        Some(socket) if packet => Ok(VmaKind::PacketRing {
            socket: u64::from(socket),
            offset: e.offset,
        }),
        _ => Err(DumpError::unsupported(format!(
            "mapping {:#x}-{:#x} of pid {pid} maps {path}, which is not a packet socket's ring; stasis cannot checkpoint it",
            e.start, e.end
        ))),
    }
}

/// A shared mapping of a memfd or of a deleted file: its name, size and mode, taken
/// through `/proc/PID/map_files` (the object itself).
fn unlinked(pid: i32, e: &MapEntry, path: &str) -> Result<VmaKind, DumpError> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
    let meta = std::fs::metadata(&link).map_err(|source| DumpError::Stat {
        path: link.clone(),
        source,
    })?;
    let memfd = path.strip_prefix(MEMFD);
    Ok(VmaKind::Unlinked {
        name: memfd.unwrap_or(path).to_string(),
        memfd: memfd.is_some(),
        size: meta.size(),
        offset: e.offset,
        mode: meta.mode() & 0o7777,
    })
}

/// A private mapping of a file without a name: which object it maps is decided once the
/// tree's shared mappings are known (`dump/shared.rs`, which also saves a deleted file's
/// contents when no shared mapping does).
fn private_unlinked(e: &MapEntry, path: &str) -> VmaKind {
    VmaKind::PrivateUnlinked {
        name: path.to_string(),
        offset: e.offset,
        ghost: None,
    }
}

/// How anonymous hugetlb memory (`MAP_HUGETLB`) shows in maps.
pub const ANON_HUGEPAGE: &str = "/anon_hugepage";

/// A mapping in huge pages (smaps `ht`): anonymous, or of a hugetlb memfd; the page size
/// is the block size of the hugetlbfs file behind it.
fn hugetlb(pid: i32, e: &MapEntry, path: &str) -> Result<VmaKind, DumpError> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
    let fs = nix::sys::statfs::statfs(link.as_str())
        .map_err(|err| DumpError::unsupported(format!("statfs {link}: {}", err.desc())))?;
    let shift = (fs.block_size() as u64).trailing_zeros() as u8;
    let memfd = match unlinked(pid, e, path)? {
        _ if path == ANON_HUGEPAGE => None,
        _ if !e.shared => return Ok(private_unlinked(e, path)),
        VmaKind::Unlinked {
            name,
            memfd: true,
            size,
            offset,
            mode,
        } => Some(HugetlbMemfd {
            name,
            size,
            offset,
            mode,
        }),
        _ => {
            return Err(DumpError::unsupported(format!(
                "mapping {:#x}-{:#x} of pid {pid} is a shared mapping of deleted hugetlbfs file {path}, which stasis cannot checkpoint yet",
                e.start, e.end
            )))
        }
    };
    Ok(VmaKind::Hugetlb { shift, memfd })
}

fn prot_of(e: &MapEntry) -> u32 {
    let mut p = 0;
    if e.read {
        p |= libc::PROT_READ;
    }
    if e.write {
        p |= libc::PROT_WRITE;
    }
    if e.exec {
        p |= libc::PROT_EXEC;
    }
    p as u32
}

fn flags_of(e: &MapEntry) -> VmaFlags {
    VmaFlags {
        growsdown: e.has_flag("gd"),
        noreserve: e.has_flag("nr"),
        dontdump: e.has_flag("dd") && !matches!(e.path, MapPath::Vvar | MapPath::VvarVclock),
        dontfork: e.has_flag("dc"),
        wipeonfork: e.has_flag("wf"),
        hugepage: e.has_flag("hg"),
        nohugepage: e.has_flag("nh"),
        mergeable: e.has_flag("mg"),
        locked: e.has_flag("lo"),
        lockonfault: e.has_flag("lf"),
        sealed: e.has_flag("sl"),
        seqread: e.has_flag("sr"),
        randread: e.has_flag("rr"),
        droppable: e.has_flag("dp"),
    }
}

/// Identity of a mapped file, checked against what its path names now. The object
/// really mapped is the inode maps names (device and inode number): when the path names
/// that inode, its `stat` is the mapped file's. Otherwise the mapped file is looked at
/// through `/proc/PID/map_files`: the same file on a filesystem whose `st_dev` or
/// `st_ino` differ from what maps shows (overlayfs), or a replaced one, refused.
fn mapped_file(pid: i32, e: &MapEntry, path: &str, named: &mut Named) -> Result<FileId, DumpError> {
    let now = match named.get(path) {
        Some(now) => now.clone(),
        None => {
            // Through `/proc/PID/root` when the process has a mount namespace of its own.
            let at = crate::dump::mnt::reach(pid, path);
            let now = file_id(&at.to_string_lossy(), path);
            let dev = libc::makedev(e.dev_major, e.dev_minor);
            let now = match now {
                Ok(n) if (n.dev, n.ino) == (dev, e.inode) => n,
                now => elsewhere(pid, e, path, now)?,
            };
            named.entry(path.to_string()).or_insert(now).clone()
        }
    };
    let (major, minor) = (libc::major(now.dev), libc::minor(now.dev));
    if (major, minor, now.ino) == (e.dev_major, e.dev_minor, e.inode) {
        crate::dump::mnt::maps::note(pid, path, Some(e.start));
        return Ok(now);
    }
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
    let id = file_id(&link, path)?;
    if (now.dev, now.ino) != (id.dev, id.ino) {
        return Err(DumpError::unsupported(format!(
            "mapping {:#x}-{:#x} of pid {pid}: {path} was replaced after it was mapped (not the same inode), so it cannot be reopened",
            e.start, e.end
        )));
    }
    crate::dump::mnt::maps::note(pid, path, Some(e.start));
    Ok(id)
}

/// Whether the open file description behind mapping `e` was opened for writing: the
/// kernel gives each `/proc/PID/map_files` link the owner write bit exactly then.
fn opened_for_writing(pid: i32, e: &MapEntry) -> Result<bool, DumpError> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
    let m = std::fs::symlink_metadata(&link)
        .map_err(|source| DumpError::Stat { path: link, source })?;
    Ok(m.mode() & libc::S_IWUSR != 0)
}

/// `stat` of `through` (a /proc magic link), recorded under the name `path`.
pub fn file_id(through: &str, path: &str) -> Result<FileId, DumpError> {
    let m = std::fs::metadata(through).map_err(|source| DumpError::Stat {
        path: through.to_string(),
        source,
    })?;
    Ok(FileId {
        path: path.to_string(),
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    })
}

/// The `mm_struct` fields restored with `PR_SET_MM_MAP`.
pub fn fields(stat: &proc::Stat, brk: u64) -> MmFields {
    MmFields {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
    }
}

/// A mapped file whose path does not show the inode maps names: the same file on
/// overlayfs (whose `st_dev`/`st_ino` differ from maps'; the path shows what
/// `map_files` does), or a file of another namespace of the tree, the process having
/// changed root since (found in an ancestor's namespace by the `map_files` identity,
/// which is what a path to it shows there, overlayfs or not).
fn elsewhere(
    pid: i32,
    e: &MapEntry,
    path: &str,
    now: Result<FileId, DumpError>,
) -> Result<FileId, DumpError> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", e.start, e.end);
    let mapped = file_id(&link, path).ok();
    let own = matches!((&now, &mapped), (Ok(n), Some(m)) if (n.dev, n.ino) == (m.dev, m.ino));
    match mapped.filter(|_| !own) {
        Some(m) => match crate::dump::mnt::maps::find(pid, path, m.dev, m.ino) {
            Some(there) => file_id(&there.to_string_lossy(), path),
            None => now,
        },
        None => now,
    }
}

/// The executable, through `/proc/PID/exe`.
pub fn exe(pid: i32) -> Result<Option<FileId>, DumpError> {
    let link = proc::link(pid, "exe")?;
    let path = link.to_string_lossy().into_owned();
    if path.ends_with(" (deleted)") {
        return Err(DumpError::unsupported(format!(
            "the executable of pid {pid} ({path}) was deleted; stasis cannot checkpoint it yet"
        )));
    }
    let id = file_id(&format!("/proc/{pid}/exe"), &path)?;
    let at = crate::dump::mnt::reach(pid, &path);
    let shown = std::fs::metadata(at).is_ok_and(|m| (m.dev(), m.ino()) == (id.dev, id.ino));
    if !shown && crate::dump::mnt::maps::find(pid, &path, id.dev, id.ino).is_some() {
        crate::dump::mnt::maps::note(pid, &path, None);
    }
    Ok(Some(id))
}

/// Where the vDSO is, if the task has one.
pub fn vdso_range(vmas: &[Vma]) -> Option<(u64, u64)> {
    vmas.iter()
        .find(|v| v.kind == VmaKind::Vdso)
        .map(|v| (v.start, v.end))
}

/// How much of a mapping is read at a time while looking for a `syscall` instruction.
const SCAN_CHUNK: u64 = 1 << 20;

/// Finds a `syscall` instruction (`0f 05`) the task can run, so queries run without
/// writing anything into its code: in the vDSO, or else (a task that unmapped it) in any
/// other executable mapping. The kernel runs the two bytes wherever they are, even inside
/// another instruction. Returns it with the vDSO's bytes when they could be read (its
/// symbols are read from them: the vDSO is read once per process).
pub fn find_syscall_insn(pid: i32, vmas: &[Vma]) -> Result<(u64, Option<Vec<u8>>), DumpError> {
    let exec = |v: &&Vma| v.prot & libc::PROT_EXEC as u32 != 0 && v.kind != VmaKind::Vdso;
    let mem = Mem::open(pid, false)?;
    let mut vdso_text = None;
    if let Some(v) = vmas.iter().find(|v| v.kind == VmaKind::Vdso) {
        let mut text = vec![0u8; (v.end - v.start) as usize];
        // A vDSO that cannot be read is passed over, as any other mapping.
        if mem.read(v.start, &mut text).is_ok() {
            if let Some(i) = syscall_at(&text) {
                return Ok((v.start + i as u64, Some(text)));
            }
            vdso_text = Some(text);
        }
    }
    for v in vmas.iter().filter(exec) {
        // A mapping that cannot be read (past the end of its file) is passed over.
        if let Ok(Some(at)) = syscall_in(&mem, v.start, v.end) {
            return Ok((at, vdso_text));
        }
    }
    Err(DumpError::NoSyscallInsn { pid })
}

/// Where the first `0f 05` of `text` is.
fn syscall_at(text: &[u8]) -> Option<usize> {
    text.windows(2).position(|w| w == [0x0f, 0x05])
}

/// The first `0f 05` in `[start, end)` of the task, read a chunk at a time.
fn syscall_in(mem: &Mem, start: u64, end: u64) -> Result<Option<u64>, DumpError> {
    let mut at = start;
    while at < end {
        // Chunks overlap by one byte, so an instruction across their border is found.
        let len = (end - at).min(SCAN_CHUNK);
        let mut text = vec![0u8; len as usize];
        mem.read(at, &mut text)?;
        if let Some(i) = syscall_at(&text) {
            return Ok(Some(at + i as u64));
        }
        at += if at + len >= end { len } else { len - 1 };
    }
    Ok(None)
}
