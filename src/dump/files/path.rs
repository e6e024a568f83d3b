//! Regular files and directories, saved by path and identity (device, inode, size,
//! mtime) and reopened by path on restore (`restore/files/path.rs`); `O_PATH` fds of any
//! kind of file. A path that no longer names the open file is refused; files deleted
//! while open are saved as ghosts (`ghost.rs`).
//!
//! `--link-remap` (CRIU's name) covers the files whose name was unlinked that a ghost
//! cannot: one that keeps other links (a ghost would be a different file), and a deleted
//! one above `--ghost-limit`. A link is made beside the old name at dump time,
//! `.stasis-link-PID-FD-NAME`: a hard link (`linkat` of `/proc/PID/fd/N` with
//! `AT_SYMLINK_FOLLOW`) when the kernel allows it — the file has links left, or is an
//! `O_TMPFILE` — and otherwise a copy on the same filesystem: the kernel refuses any new
//! link to a file whose link count fell to zero (`ENOENT`, even with `AT_EMPTY_PATH` and
//! CAP_DAC_READ_SEARCH). The links are removed if the dump fails ([`Held`]), and by the
//! restore once it succeeded.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{FdOptions, Held, OpenFd, Walk};
use crate::dump::mm::file_id;
use crate::dump::DumpError;
use crate::image::files::{ContentHash, FdEntry, FdKind, OPathFd, PathFd, RemapFd};
use crate::image::mm::FileId;

use super::ghost::DELETED;

/// With `--file-hash`: the CRC-32 of every regular file the table holds open by path,
/// whatever its size (read through `/proc/PID/fd/N`, so a write-only fd is read too).
pub fn hashes(pid: i32, fds: &[FdEntry], on: bool) -> Result<Vec<ContentHash>, DumpError> {
    let files = fds
        .iter()
        .filter(|e| on && matches!(e.kind, FdKind::Path(_)));
    let mut out = Vec::new();
    for e in files {
        let link = PathBuf::from(format!("/proc/{pid}/fd/{}", e.fd));
        if !std::fs::metadata(&link).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let crc32 = crate::sys::file::content_crc32(&link, u64::MAX).map_err(|err| {
            DumpError::unsupported(format!(
                "fd {} of pid {pid}: read it to hash it: {err}",
                e.fd
            ))
        })?;
        out.push(ContentHash { fd: e.fd, crc32 });
    }
    Ok(out)
}

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let file = file_id(&open.through(), &open.target)?;
    still_named(open)?;
    Ok(FdKind::Path(PathFd {
        file,
        pos: open.info.pos,
    }))
}

/// An `O_PATH` fd: only the path matters (a deleted file's is a ghost, see `ghost.rs`).
pub fn dump_opath(open: &OpenFd) -> Result<FdKind, DumpError> {
    if open.target.ends_with(DELETED) {
        return Err(open.error(&format!(
            "is an O_PATH fd of {}, a name since unlinked while the file keeps other links, which stasis cannot restore yet",
            open.target
        )));
    }
    still_named(open)?;
    Ok(FdKind::OPath(OPathFd {
        path: open.target.clone(),
    }))
}

/// The link text must still lead to the open file (a symlink itself, for an `O_PATH`
/// fd on one).
pub fn still_named(open: &OpenFd) -> Result<(), DumpError> {
    let meta = open.meta()?;
    let at = reach_as_opened(open, &open.target);
    let now = match meta.st_mode & libc::S_IFMT {
        libc::S_IFLNK => std::fs::symlink_metadata(&at),
        _ => std::fs::metadata(&at),
    };
    match now {
        Ok(m) if m.dev() == meta.st_dev && m.ino() == meta.st_ino => Ok(()),
        _ if exited(open) => Err(open.error(&format!(
            "is open on {}, in the /proc directory of process {}, which has exited: stasis cannot recreate an exited process's /proc files",
            open.target,
            exited_proc_dir(&open.target).unwrap_or_default()
        ))),
        _ => Err(open.error(&format!(
            "is open on {}, a path that no longer names the open file (moved, replaced or in another mount namespace)",
            open.target
        ))),
    }
}

/// Whether `open` is a file of `/proc/PID` whose process is gone (as its owner sees it).
fn exited(open: &OpenFd) -> bool {
    exited_proc_dir(&open.target)
        .is_some_and(|n| !crate::dump::mnt::reach(open.pid, &format!("/proc/{n}")).exists())
}

/// The pid of `/proc/PID` or `/proc/PID/...` (a `/proc/PID (deleted)` too): the file of
/// a process that may have exited.
fn exited_proc_dir(target: &str) -> Option<&str> {
    let rest = target.strip_prefix("/proc/")?;
    let rest = rest.strip_suffix(DELETED).unwrap_or(rest);
    let pid = rest.split('/').next()?;
    (!pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit())).then_some(pid)
}

/// A regular file whose name was unlinked while it is open, and which is no ghost
/// (`ghost.rs`): it keeps other links, or (`stored`) holds that many bytes of data, above
/// `--ghost-limit`. Under `--link-remap` it is reached through a link made beside it,
/// else refused naming the option.
pub fn dump_deleted(
    open: &OpenFd,
    opts: &FdOptions,
    walk: &mut Walk,
    held: &mut Held,
    stored: Option<u64>,
) -> Result<FdKind, DumpError> {
    let path = open.target.strip_suffix(DELETED).unwrap_or(&open.target);
    let limit = opts.ghost_limit;
    if !opts.link_remap {
        return Err(open.error(&match stored {
            None => format!("is open on {path}, a name since unlinked while the file keeps other links; use --link-remap to restore it through a link made beside it"),
            Some(stored) => format!("is deleted file {path} holding {stored} bytes of data, above the --ghost-limit of {limit} bytes; raise --ghost-limit to save it in the image, or use --link-remap to keep it beside its old path"),
        }));
    }
    // One link per file and mount: a link is reached only through the fd's own mount.
    let key = (open.object()?, open.info.mnt_id);
    let elsewhere = |(k, _): (&((u64, u64), i32), _)| k.0 == key.0 && k.1 != key.1;
    if open.meta()?.st_nlink == 0 && walk.remaps.iter().any(elsewhere) {
        return Err(open.error(&format!(
            "is open on {path}, deleted, which another fd holds through another mount: stasis \
             would copy it once per mount, two files where there was one"
        )));
    }
    let (link, copied) = match walk.remaps.get(&key) {
        Some(done) => done.clone(),
        None => {
            let done = remap(open, path, held)?;
            walk.remaps.insert(key, done.clone());
            done
        }
    };
    Ok(FdKind::Remap(RemapFd {
        link,
        path: path.to_string(),
        pos: open.info.pos,
        copied,
    }))
}

/// Makes the link for `open` beside `path` (a hard link, or a copy where the kernel
/// refuses one), registered in `held` for removal should the dump fail; returns its
/// identity and whether it is a copy.
fn remap(open: &OpenFd, path: &str, held: &mut Held) -> Result<(FileId, bool), DumpError> {
    let meta = open.meta()?;
    let link = remap_name(open, path);
    // The link's path in the tree, and where stasis reaches it: through the root of a
    // process of the namespace the fd was opened in (`linkat` links only within the
    // fd's own mount).
    let (link, inside) = (reach_as_opened(open, &link), link);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        open.error(&format!(
            "is open on {path}, unlinked: {what} {inside}: {e}"
        ))
    };
    let flags = nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW;
    let at = nix::fcntl::AT_FDCWD;
    let copied = match nix::unistd::linkat(at, open.through().as_str(), at, &link, flags) {
        Ok(()) => {
            held.link(link.clone(), &inside);
            false
        }
        Err(nix::errno::Errno::ENOENT) if meta.st_nlink == 0 => {
            copy_beside(open, meta, (&link, &inside), held)
                .map_err(|e| fail("cannot copy it to", &e))?;
            true
        }
        Err(e) => return Err(fail("cannot link it as", &e)),
    };
    let file = file_id(&link.to_string_lossy(), &inside)?;
    Ok((file, copied))
}

/// `.stasis-link-PID-FD-NAME` in the directory of `path` or, when that directory was
/// removed too, in its nearest ancestor still there (as the process sees it).
fn remap_name(open: &OpenFd, path: &str) -> String {
    let old = Path::new(path);
    let name = old.file_name().unwrap_or_default().to_string_lossy();
    let mut dir = old.parent().unwrap_or(Path::new("/"));
    while !reach_as_opened(open, &dir.to_string_lossy()).is_dir() {
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    let link = dir.join(format!(".stasis-link-{}-{}-{name}", open.pid, open.fd));
    link.to_string_lossy().into_owned()
}

/// Where stasis reaches `path` of the mount namespace `open` was opened in: its
/// process's, or another of the tree's (`dump/mnt/nested.rs`).
fn reach_as_opened(open: &OpenFd, path: &str) -> PathBuf {
    match crate::dump::mnt::nested::opened_elsewhere(open.pid, open.fd) {
        Some(ns_pid) => format!("/proc/{ns_pid}/root{path}").into(),
        None => crate::dump::mnt::reach(open.pid, path),
    }
}

/// A copy of the open file at `link` (`inside` the tree), with its mode and owner (`copy_file_range` under
/// `std::io::copy`: a reflink or an in-kernel copy where the filesystem offers one).
fn copy_beside(
    open: &OpenFd,
    meta: &nix::sys::stat::FileStat,
    (link, inside): (&Path, &str),
    held: &mut Held,
) -> std::io::Result<()> {
    let mut from = std::fs::File::open(open.through())?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(link)?;
    held.link(link.to_path_buf(), inside);
    std::io::copy(&mut from, &mut to)?;
    std::os::unix::fs::fchown(&to, Some(meta.st_uid), Some(meta.st_gid))?;
    to.set_permissions(std::fs::Permissions::from_mode(meta.st_mode & 0o7777))?;
    to.sync_all()
}

/// Reads the whole file behind the fd through `/proc/PID/fd/N`.
pub fn read_all(open: &OpenFd, size: u64) -> Result<Vec<u8>, DumpError> {
    let through = open.through();
    let io = |source| DumpError::Stat {
        path: through.clone(),
        source,
    };
    let mut contents = Vec::with_capacity(size as usize);
    std::fs::File::open(&through)
        .map_err(io)?
        .read_to_end(&mut contents)
        .map_err(io)?;
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::exited_proc_dir;

    #[test]
    fn proc_pid_paths_name_their_pid() {
        assert_eq!(exited_proc_dir("/proc/6/mountinfo"), Some("6"));
        assert_eq!(exited_proc_dir("/proc/6 (deleted)"), Some("6"));
        assert_eq!(exited_proc_dir("/proc/self/maps"), None);
        assert_eq!(exited_proc_dir("/procs/6"), None);
    }
}
