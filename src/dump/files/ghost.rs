//! Files deleted while in use ("ghost" files): a regular file, directory, FIFO, device
//! node or (held by an `O_PATH` fd) symlink whose last name is gone. Each is saved once
//! for the whole tree ([`Table`], by `(st_dev, st_ino)`) into `ghosts.img` with its mode,
//! owner and times — a regular file with its data extents only (`SEEK_DATA`/`SEEK_HOLE`),
//! so a sparse file keeps its holes and `--ghost-limit` counts the data stored, not the
//! apparent size. The fds holding it become [`FdKind::Deleted`] references, a removed
//! working directory is listed in its ghost. The restore side is `restore/files/ghost.rs`.
//!
//! A regular file with more data than `--ghost-limit`, or whose name was unlinked while
//! other links remain, is not a ghost: see `path.rs` (`--link-remap`).
//!
//! For other callers (mappings of deleted files): `Table::add` with [`ghost_file`] and
//! [`regular`] saves any open deleted file by its `stat` (`FdOptions::ghosts` is the
//! tree's table); the restore side's `Ghosts::path` says where ghost `i` is meanwhile.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use nix::sys::stat::FileStat;
use nix::unistd::Whence;

use super::homes;
use super::sock::SockCtx;
use super::{FdOptions, OpenFd, Walk};
use crate::dump::DumpError;
use crate::image::files::{DeletedFd, FdKind};
use crate::image::ghost::{Extent, GhostBody, GhostFile, GhostsImage};

/// What `/proc` appends to the link of a file whose name is gone.
pub const DELETED: &str = " (deleted)";

/// The ghosts of the tree, each file once.
#[derive(Clone, Debug, Default)]
pub struct Table {
    image: GhostsImage,
    index: HashMap<(u64, u64), u32>,
    /// The names each ghost's fds held it under, by ghost.
    names: HashMap<u32, Vec<homes::Name>>,
}

impl Table {
    /// The index of the ghost of file `key` (`(st_dev, st_ino)`), saved by `capture` the
    /// first time the file is seen.
    pub fn add(
        &mut self,
        key: (u64, u64),
        capture: impl FnOnce() -> Result<GhostFile, DumpError>,
    ) -> Result<u32, DumpError> {
        if let Some(&i) = self.index.get(&key) {
            return Ok(i);
        }
        let i = self.image.files.len() as u32;
        self.image.files.push(capture()?);
        self.index.insert(key, i);
        Ok(i)
    }

    /// The record to write.
    pub fn image(&self) -> &GhostsImage {
        &self.image
    }

    /// Where each ghost some fd held where the root's namespace does not show it is made
    /// (`homes.rs`); `pids`: the tree's live processes in tree order, the root first.
    pub fn homes(&self, pids: &[i32]) -> Result<crate::image::ghost::GhostHomesImage, DumpError> {
        homes::plan(&self.image, &self.names, pids)
    }
}

/// The deleted file behind `open` (nothing links it any more): its ghost, and the fd as
/// a reference to it. A regular file above `--ghost-limit` is left to `path.rs`.
/// The restore makes a deleted file again through the root's view of the tree's mounts
/// (`restore/files/ghost.rs`) when the nearest existing directory above it is on the
/// file's filesystem there too; a ghost some fd holds otherwise (a mount only a namespace
/// made inside the tree has, or an fd opened in another namespace than its process's) is
/// made through a mount showing all its names ([`Table::homes`], `homes.rs`).
pub fn dump(
    open: &OpenFd,
    opts: &FdOptions,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<FdKind, DumpError> {
    let meta = *open.meta()?;
    let path = open.target.strip_suffix(DELETED).unwrap_or(&open.target);
    let name = homes::Name::of(open, opts.pids.first().copied(), path, &meta);
    let body = || body(open, &meta);
    let key = (meta.st_dev, meta.st_ino);
    let mut table = opts.ghosts.borrow_mut();
    let ghost = table.add(key, || Ok(ghost_file(path, &meta, body()?)))?;
    table.names.entry(ghost).or_default().push(name);
    drop(table);
    let fifo = match meta.st_mode & libc::S_IFMT {
        libc::S_IFIFO if open.info.flags & libc::O_PATH == 0 => {
            super::pipe::fifo_bytes(open, walk, ctx)?
        }
        _ => None,
    };
    Ok(FdKind::Deleted(DeletedFd {
        ghost,
        pos: open.info.pos,
        fifo,
    }))
}

/// Whether the regular file behind `open` has more data than `limit` bytes (then it is
/// no ghost: `path.rs` links it or refuses it); returns the data it holds.
pub fn over_limit(open: &OpenFd, limit: u64) -> Result<Option<u64>, DumpError> {
    let file = reopen(open)?;
    let size = open.meta()?.st_size as u64;
    let runs = data_runs(&file, size).map_err(|e| io_error(open, "find its data", e))?;
    let stored: u64 = runs.iter().map(|r| r.1).sum();
    Ok((stored > limit).then_some(stored))
}

/// What the deleted file behind `open` holds, by its type.
fn body(open: &OpenFd, meta: &FileStat) -> Result<GhostBody, DumpError> {
    Ok(match meta.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            regular(&reopen(open)?, meta).map_err(|e| io_error(open, "read its data", e))?
        }
        libc::S_IFDIR => GhostBody::Directory,
        libc::S_IFIFO => GhostBody::Fifo,
        libc::S_IFCHR => GhostBody::CharDevice { rdev: meta.st_rdev },
        libc::S_IFBLK => GhostBody::BlockDevice { rdev: meta.st_rdev },
        libc::S_IFLNK => GhostBody::Symlink {
            target: symlink_target(open)?,
        },
        _ => return Err(open.refuse("a deleted file of unknown type")),
    })
}

/// The attributes of the deleted file `meta` describes, which lived at `path`.
pub fn ghost_file(path: &str, meta: &FileStat, body: GhostBody) -> GhostFile {
    GhostFile {
        path: path.to_string(),
        dev: meta.st_dev,
        ino: meta.st_ino,
        mode: meta.st_mode & 0o7777,
        uid: meta.st_uid,
        gid: meta.st_gid,
        atime_ns: meta.st_atime * 1_000_000_000 + meta.st_atime_nsec,
        mtime_ns: meta.st_mtime * 1_000_000_000 + meta.st_mtime_nsec,
        body,
        cwd_of: Vec::new(),
    }
}

/// The body of the regular file `file` whose `stat` is `meta`: its size and data extents
/// (a deleted file reached through `/proc/PID/fd/N` or `/proc/PID/map_files/...`).
pub fn regular(file: &File, meta: &FileStat) -> std::io::Result<GhostBody> {
    let size = meta.st_size as u64;
    let runs = data_runs(file, size)?;
    let extents = read_runs(file, &runs)?;
    Ok(GhostBody::Regular { size, extents })
}

/// The runs of data of regular file `file` of `size` bytes, `(offset, length)` in offset
/// order (`lseek(SEEK_DATA)`, `lseek(SEEK_HOLE)`; a filesystem without holes reports the
/// whole file as one run). Moves `file`'s offset.
pub fn data_runs(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match nix::unistd::lseek(file.as_fd(), at as i64, Whence::SeekData) {
            Ok(data) => data as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = nix::unistd::lseek(file.as_fd(), data as i64, Whence::SeekHole)? as u64;
        let end = hole.min(size);
        if end > data {
            runs.push((data, end - data));
        }
        at = end.max(data + 1);
    }
    Ok(runs)
}

/// The data of `runs` of `file` (a file shrunk meanwhile reads short: what is there).
pub fn read_runs(file: &File, runs: &[(u64, u64)]) -> std::io::Result<Vec<Extent>> {
    let mut extents = Vec::with_capacity(runs.len());
    for &(offset, len) in runs {
        let mut data = vec![0u8; len as usize];
        let mut got = 0;
        while got < data.len() {
            match file.read_at(&mut data[got..], offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        data.truncate(got);
        extents.push(Extent { offset, data });
    }
    Ok(extents)
}

/// A new read-only open file description of the file behind `open` (through
/// `/proc/PID/fd/N`: the target's offset is untouched), with `O_NOATIME` where allowed
/// (the owner's or CAP_FOWNER): reading it for the image leaves its atime as it was.
fn reopen(open: &OpenFd) -> Result<File, DumpError> {
    let with = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(open.through())
    };
    with(libc::O_NOATIME)
        .or_else(|_| with(0))
        .map_err(|source| DumpError::Stat {
            path: open.through(),
            source,
        })
}

/// What the deleted symlink an `O_PATH | O_NOFOLLOW` fd holds points to
/// (`readlinkat(fd, "")` on stasis's duplicate of the fd).
fn symlink_target(open: &OpenFd) -> Result<String, DumpError> {
    let fail =
        |e: nix::errno::Errno| open.error(&format!("is a deleted symlink: read it: {}", e.desc()));
    let fd = open.duplicate().map_err(fail)?;
    let target = nix::fcntl::readlinkat(fd.as_fd(), "").map_err(fail)?;
    Ok(target.to_string_lossy().into_owned())
}

fn io_error(open: &OpenFd, what: &str, e: std::io::Error) -> DumpError {
    open.error(&format!("is a deleted file ({}): {what}: {e}", open.target))
}

/// The working directory of `pid` as its `/proc` link reads; a removed one is saved as
/// a ghost directory of `table` listing `pid` in its `cwd_of`.
pub fn cwd(pid: i32, table: &mut Table) -> Result<String, DumpError> {
    let link = crate::proc::link(pid, "cwd")?
        .to_string_lossy()
        .into_owned();
    let Some(path) = link.strip_suffix(DELETED) else {
        return Ok(link);
    };
    let through = format!("/proc/{pid}/cwd");
    let meta = nix::sys::stat::stat(through.as_str()).map_err(|e| DumpError::Stat {
        path: through,
        source: e.into(),
    })?;
    if meta.st_nlink != 0 {
        return Ok(link); // a directory whose name ends so
    }
    let key = (meta.st_dev, meta.st_ino);
    let i = table.add(key, || Ok(ghost_file(path, &meta, GhostBody::Directory)))?;
    table.image.files[i as usize].cwd_of.push(pid);
    Ok(link)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn data_runs_skip_holes_and_read_back() {
        let mut f = tempfile_in_tmp();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.set_len(3 << 20).unwrap();
        let runs = data_runs(&f, 3 << 20).unwrap();
        // A filesystem without holes reports everything as data.
        if runs.len() == 1 && runs[0] == (0, 3 << 20) {
            return;
        }
        assert_eq!(runs, vec![(1 << 20, 4096)]);
        let extents = read_runs(&f, &runs).unwrap();
        assert_eq!(extents[0].data, vec![1u8; 4096]);
        assert!(data_runs(&tempfile_in_tmp(), 0).unwrap().is_empty());
    }

    fn tempfile_in_tmp() -> File {
        let path = std::env::temp_dir().join(format!(
            "stasis-ghost-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
