//! Checks that the host can take the image, before any process is created: the pid is
//! free, the CPU has every saved xsave feature, the vDSO matches, every file the task
//! maps or holds is the one it had, and seccomp can be restored.
//!
//! What the checks compare against is read once per verification, not per process: the
//! restorer's own vDSO, `pid_max`, and the `stat` of each file path (many processes map
//! the same executable and libraries).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use super::RestoreError;
use crate::image::files::FdKind;
use crate::image::mm::{FileId, VmaKind};
use crate::image::{Image, ProcessImage};
use crate::sys::cpu;
use crate::sys::mem::Mem;

/// Every check, in the order a user would want to hear about them.
pub fn host_accepts(
    image: &Image,
    skip_file_check: bool,
    mounts: Option<&super::mnt::Sources>,
) -> Result<(), RestoreError> {
    cpu_features(image.inventory.cpu.xcr0)?;
    let same_host = hostname() == image.inventory.hostname;
    pids_free(image)?;
    let vdso = OwnVdso::read()?;
    let mut stats = Stats {
        cache: HashMap::new(),
        mounts,
        elsewhere: (image.nested_mounts.elsewhere.iter())
            .map(|e| (e.pid, e.fd))
            .collect(),
    };
    let pids: Vec<i32> = image.tree.processes.iter().map(|e| e.pid).collect();
    let nested = in_nested_namespaces(image);
    for p in &image.processes {
        vdso.matches(p)?;
        super::seccomp::host_accepts(&p.task)?;
        // A process of a mount namespace made inside the tree sees its files only once
        // that namespace is built: they are opened there, not checked here.
        if nested.contains(&p.task.pid) {
            continue;
        }
        files_unchanged(p, same_host, &mut stats)?;
        if !skip_file_check {
            fds_unchanged(p, same_host, &pids, &mut stats)?;
        }
    }
    Ok(())
}

/// The processes in a mount namespace made inside the tree: its makers and their
/// descendants (tree order: parents first).
fn in_nested_namespaces(image: &Image) -> Vec<i32> {
    let makers = &image.nested_mounts.namespaces;
    let mut out: Vec<i32> = Vec::new();
    for e in &image.tree.processes {
        if makers.iter().any(|ns| ns.pid == e.pid) || out.contains(&e.ppid) {
            out.push(e.pid);
        }
    }
    out
}

/// Whether `path` is a file of `/proc/PID/` for a process of the image: it exists once
/// that process is restored (a new inode, as every procfs file of a new process).
fn of_restored_process(path: &str, pids: &[i32]) -> bool {
    let pid = path
        .strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next());
    pid.and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|p| pids.contains(&p))
}

/// The `stat` of each path checked, taken once per verification. Exact: the checks only
/// read, and a file changing while they run could as well change right after them.
/// With a mount namespace of the tree's own, paths are looked up where its mounts come
/// from (`restore/mnt`); a file on a mount the restore makes anew is not checked.
struct Stats<'a> {
    cache: HashMap<String, Result<Metadata, String>>,
    mounts: Option<&'a super::mnt::Sources<'a>>,
    /// Fds (pid, fd) open on a mount of a namespace made inside the tree, not built yet:
    /// not checked here.
    elsewhere: Vec<(i32, i32)>,
}

impl Stats<'_> {
    /// The metadata of `path` (following symlinks), or why it could not be had.
    fn of(&mut self, path: &str) -> Result<&Metadata, &str> {
        if !self.cache.contains_key(path) {
            let at = match self.mounts {
                Some(m) => m.host_path(path).unwrap_or_default(),
                None => path.to_string(),
            };
            let m = std::fs::metadata(at).map_err(|e| e.to_string());
            self.cache.insert(path.to_string(), m);
        }
        let m = self.cache.get(path).expect("inserted above");
        m.as_ref().map_err(String::as_str)
    }

    /// Whether the file at `path` is made by the restore itself (a tmpfs of the tree).
    fn made_anew(&self, path: &str) -> bool {
        self.mounts.is_some_and(|m| m.host_path(path).is_none())
    }
}

fn cpu_features(saved: u64) -> Result<(), RestoreError> {
    let missing = saved & !cpu::xcr0();
    if missing == 0 {
        return Ok(());
    }
    Err(RestoreError::CpuFeatures {
        missing: cpu::xfeature_names(missing).join(", "),
    })
}

/// Every pid and tid of the image (zombies included) is unused and below pid_max; if
/// some are taken, the error names them all.
fn pids_free(image: &Image) -> Result<(), RestoreError> {
    let zombies = image.tree.processes.iter().map(|p| p.pid);
    let tids = image
        .processes
        .iter()
        .flat_map(|p| p.task.threads.iter().map(|t| t.tid));
    let mut ids: Vec<i32> = zombies.chain(tids).collect();
    ids.sort_unstable();
    ids.dedup();
    let pid_max: i32 = read_trim("/proc/sys/kernel/pid_max")?
        .parse()
        .unwrap_or(4_194_304);
    let mut taken = Vec::new();
    for id in ids {
        match pid_free(id, pid_max) {
            Ok(()) => {}
            Err(RestoreError::PidTaken { pid, owner }) => taken.push((pid, owner)),
            Err(e) => return Err(e),
        }
    }
    match taken.len() {
        0 => Ok(()),
        1 => {
            let (pid, owner) = taken.remove(0);
            Err(RestoreError::PidTaken { pid, owner })
        }
        _ => Err(RestoreError::PidsTaken {
            list: taken
                .iter()
                .map(|(p, o)| format!("{p} ({o})"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The pid is unused and below `pid_max`.
fn pid_free(pid: i32, pid_max: i32) -> Result<(), RestoreError> {
    if pid >= pid_max {
        return Err(RestoreError::PidMax { pid, pid_max });
    }
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        return Err(RestoreError::PidTaken {
            pid,
            owner: format!("\"{}\"", comm.trim_end()),
        });
    }
    Ok(())
}

fn read_trim(path: &str) -> Result<String, RestoreError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| RestoreError::Read {
            path: path.to_string(),
            source,
        })
}

fn hostname() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The restorer's own vDSO block, read once per verification: each process is compared
/// with it.
struct OwnVdso {
    specials: Vec<Special>,
    /// The symbols our vDSO exports; `None` without a vDSO.
    symbols: Option<Vec<(String, u64)>>,
}

impl OwnVdso {
    fn read() -> Result<OwnVdso, RestoreError> {
        let specials = own_specials()?;
        let symbols = match specials.iter().find(|(k, _, _)| *k == VmaKind::Vdso) {
            Some(&(_, start, end)) => Some(own_vdso_symbols(start, end)?),
            None => None,
        };
        Ok(OwnVdso { specials, symbols })
    }

    /// Our vDSO exports the dumped symbols at the same offsets, and the special mappings
    /// (vvar, vvar_vclock, vdso) have the same sizes.
    fn matches(&self, p: &ProcessImage) -> Result<(), RestoreError> {
        for kind in [VmaKind::Vvar, VmaKind::VvarVclock, VmaKind::Vdso] {
            let saved = p.mm.vmas.iter().find(|v| v.kind == kind).map(|v| v.len());
            let ours = (self.specials.iter())
                .find(|(k, _, _)| *k == kind)
                .map(|(_, s, e)| e - s);
            if saved.is_some() && saved != ours {
                return Err(RestoreError::Vdso {
                    what: format!("{kind:?} is {saved:?} bytes there, {ours:?} here"),
                });
            }
        }
        let Some(symbols) = &self.symbols else {
            return Ok(());
        };
        let diff = crate::vdso::mismatches(&p.mm.vdso_symbols, symbols);
        if diff.is_empty() {
            Ok(())
        } else {
            Err(RestoreError::Vdso {
                what: format!("symbols differ: {}", diff.join(", ")),
            })
        }
    }
}

/// The symbols of our own vDSO at `start..end`.
fn own_vdso_symbols(start: u64, end: u64) -> Result<Vec<(String, u64)>, RestoreError> {
    let mut text = vec![0u8; (end - start) as usize];
    Mem::open(std::process::id() as i32, false)?.read(start, &mut text)?;
    crate::vdso::symbols(&text).map_err(|what| RestoreError::Vdso { what })
}

/// A vvar, vvar_vclock or vdso mapping: its kind, start and end.
pub type Special = (VmaKind, u64, u64);

/// Our own vvar/vvar_vclock/vdso mappings: the restored root inherits exactly these. Read
/// once per run: stasis never moves its own.
pub fn own_specials() -> Result<Vec<Special>, RestoreError> {
    static OWN: OnceLock<Result<Vec<Special>, String>> = OnceLock::new();
    let read = || specials(std::process::id() as i32).map_err(|e| e.to_string());
    let own = OWN.get_or_init(read).clone();
    own.map_err(|what| RestoreError::Unsupported { what })
}

/// The vvar/vvar_vclock/vdso mappings of `pid`.
fn specials(pid: i32) -> Result<Vec<Special>, RestoreError> {
    let maps = crate::proc::maps(pid).map_err(|e| RestoreError::Unsupported {
        what: e.to_string(),
    })?;
    Ok(maps
        .iter()
        .filter_map(|m| {
            let kind = match m.path {
                crate::proc::MapPath::Vdso => VmaKind::Vdso,
                crate::proc::MapPath::Vvar => VmaKind::Vvar,
                crate::proc::MapPath::VvarVclock => VmaKind::VvarVclock,
                _ => return None,
            };
            Some((kind, m.start, m.end))
        })
        .collect())
}

fn files_unchanged(
    p: &ProcessImage,
    same_host: bool,
    stats: &mut Stats,
) -> Result<(), RestoreError> {
    let pid = p.task.pid;
    let mapped = p.mm.vmas.iter().filter_map(|v| match &v.kind {
        VmaKind::File { file, .. } => Some(file),
        _ => None,
    });
    for file in mapped.chain(p.mm.exe.iter()) {
        check_file(pid, file, Contents::Exact, same_host, stats)?;
    }
    Ok(())
}

/// Files open by path must be unchanged: same inode on the same host, and for regular
/// files the same size and mtime (a directory's change with its entries; a FIFO's with
/// its opens), or for a file open only for appending at least the same size. Files of `/proc/PID/` for a process of the image (`pids`) are not there
/// yet. `--skip-file-check` skips this.
fn fds_unchanged(
    p: &ProcessImage,
    same_host: bool,
    pids: &[i32],
    stats: &mut Stats,
) -> Result<(), RestoreError> {
    for fd in &p.files.fds {
        if stats.elsewhere.contains(&(p.task.pid, fd.fd)) {
            continue;
        }
        let (file, contents) = match &fd.kind {
            FdKind::Path(path) if of_restored_process(&path.file.path, pids) => continue,
            FdKind::Path(path) if !is_regular(&path.file.path, stats) => {
                (&path.file, Contents::Ignored)
            }
            FdKind::Path(path) if append_only(fd.flags) => (&path.file, Contents::Grown),
            FdKind::Path(path) => (&path.file, Contents::Exact),
            FdKind::Fifo(fifo) => (&fifo.file, Contents::Ignored),
            FdKind::Remap(r) => (&r.link, Contents::Exact),
            _ => continue,
        };
        if file.path.starts_with(&format!("/proc/{}/", p.task.pid)) {
            // Its own /proc files (`/proc/self/maps` reads as `/proc/PID/maps`) are there
            // only once the process exists, and it opens them itself then.
            continue;
        }
        check_file(p.task.pid, file, contents, same_host, stats)
            .and_then(|()| check_hash(p, fd.fd, file))
            .map_err(|e| match e {
                RestoreError::FileChanged { pid, path, what } => RestoreError::FileChanged {
                    pid,
                    path,
                    what: format!(
                        "{what} (fd {}; --skip-file-check restores it anyway)",
                        fd.fd
                    ),
                },
                other => other,
            })?;
    }
    Ok(())
}

/// With a content hash from `dump --file-hash`: the file's contents have the same CRC-32.
fn check_hash(p: &ProcessImage, fd: i32, f: &FileId) -> Result<(), RestoreError> {
    let Some(saved) = p.files.hashes.iter().find(|h| h.fd == fd) else {
        return Ok(());
    };
    let changed = |what: String| RestoreError::FileChanged {
        pid: p.task.pid,
        path: f.path.clone(),
        what,
    };
    // An append-only fd's file may have grown: the bytes it had are what must not change.
    let now = crate::sys::file::content_crc32(std::path::Path::new(&f.path), f.size)
        .map_err(|e| changed(format!("cannot read it to check its contents: {e}")))?;
    if now != saved.crc32 {
        return Err(changed(format!(
            "its contents changed though size and mtime did not (CRC-32 {:08x} → {now:08x})",
            saved.crc32
        )));
    }
    Ok(())
}

/// A cgroup directory: made again by the restore of the tree's cgroups (before this
/// check), so with a new inode.
fn cgroup_dir(path: &str, m: &std::fs::Metadata) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    m.is_dir()
        && statfs(path).is_ok_and(|s| {
            s.filesystem_type() == CGROUP_SUPER_MAGIC || s.filesystem_type() == CGROUP2_SUPER_MAGIC
        })
}

/// A file of an overlay of the tree's rebuilt mount namespace (a container's rootfs): the
/// overlay's device number is that of its mount, new for the same layers mounted again
/// (podman mounts a container's rootfs anew for its restore); its inodes stay.
fn overlay(stats: &Stats, path: &str) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    let Some(at) = stats.mounts.and_then(|m| m.host_path(path)) else {
        return false;
    };
    nix::sys::statfs::statfs(at.as_str())
        .is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC)
}

fn is_regular(path: &str, stats: &mut Stats) -> bool {
    stats.of(path).is_ok_and(|m| m.is_file())
}

/// What a file's size and mtime must be at restore, against the dump's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contents {
    /// The same size and mtime: mapped files, regular files open for reading or writing.
    Exact,
    /// At least the same size: a regular file open only for appending (`O_WRONLY |
    /// O_APPEND`, a log such as a batch job's output file). Whatever was appended since
    /// the dump, by others or by the checkpoint's own tooling, the process cannot read it,
    /// and its next write goes to the end as it would have anyway.
    Grown,
    /// Not compared: directories, FIFOs, devices.
    Ignored,
}

/// An fd whose writes all go to the end of its file and that cannot read it.
fn append_only(flags: i32) -> bool {
    flags & libc::O_ACCMODE == libc::O_WRONLY && flags & libc::O_APPEND != 0
}

/// Mapped files must be identical (size and mtime), and every file the same inode on
/// the same host.
fn check_file(
    pid: i32,
    f: &FileId,
    contents: Contents,
    same_host: bool,
    stats: &mut Stats,
) -> Result<(), RestoreError> {
    let changed = |what: String| RestoreError::FileChanged {
        pid,
        path: f.path.clone(),
        what,
    };
    if stats.made_anew(&f.path) {
        return Ok(());
    }
    let dev = (stats.of(&f.path)).map_err(|e| changed(format!("cannot stat it: {e}")))?;
    let dev_moved = dev.dev() != f.dev && !overlay(stats, &f.path);
    let m = (stats.of(&f.path)).map_err(|e| changed(format!("cannot stat it: {e}")))?;
    if same_host && (dev_moved || m.ino() != f.ino) && !cgroup_dir(&f.path, m) {
        return Err(changed(format!("inode {} is now {}", f.ino, m.ino())));
    }
    let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    let same = m.size() == f.size && mtime_ns == f.mtime_ns;
    if contents == Contents::Grown && m.size() < f.size {
        return Err(changed(format!(
            "size {} → {}: a file open for appending was cut",
            f.size,
            m.size()
        )));
    }
    if contents == Contents::Exact && !same {
        return Err(changed(format!(
            "size {} → {}, mtime {} → {}",
            f.size,
            m.size(),
            f.mtime_ns,
            mtime_ns
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{append_only, of_restored_process};

    #[test]
    fn only_write_only_append_fds_may_find_their_file_grown() {
        assert!(append_only(libc::O_WRONLY | libc::O_APPEND));
        assert!(append_only(
            libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC
        ));
        assert!(
            !append_only(libc::O_RDWR | libc::O_APPEND),
            "it could read what was added"
        );
        assert!(
            !append_only(libc::O_WRONLY),
            "its writes land at its offset"
        );
        assert!(!append_only(libc::O_RDONLY | libc::O_APPEND));
    }

    #[test]
    fn proc_files_of_restored_processes_are_not_checked() {
        assert!(of_restored_process("/proc/64/maps", &[1, 64]));
        assert!(!of_restored_process("/proc/65/maps", &[1, 64]));
        assert!(!of_restored_process("/proc/self/maps", &[64]));
        assert!(!of_restored_process("/tmp/64/maps", &[64]));
    }
}
