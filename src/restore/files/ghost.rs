//! Ghost files (`ghosts.img`): every file deleted while in use is recreated before the
//! first process is built — at its old path when that is free (making the missing
//! directories above it), else beside it under a hidden name — with its data (holes
//! left as holes), mode, owner and times; the fds that held it open it by that path
//! ([`restore`]) and a removed working directory is entered by it (`restore_fs`). Once
//! every process is rebuilt, before any runs, every ghost is removed again
//! ([`Ghosts::remove`]); a failed restore removes them when dropped. `/proc` then shows
//! the old path with " (deleted)", as before the dump. The dump side is
//! `dump/files/ghost.rs`.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::{seek, Install};
use crate::image::files::{DeletedFd, FdEntry, FdKind};
use crate::image::ghost::{Extent, GhostBody, GhostFile, GhostHomesImage, GhostsImage};
use crate::image::mm::{MmImage, Vma, VmaKind};
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

/// The ghosts of an image, recreated, and where each one is.
pub struct Ghosts<'a> {
    image: &'a GhostsImage,
    /// Where ghost `i` is in the tree, by index (set by [`Ghosts::make`]).
    paths: std::cell::OnceCell<Vec<PathBuf>>,
    /// The tree's root as stasis reaches it (an `O_PATH` fd of the root process's root,
    /// when the tree has a mount namespace of its own), `None` for stasis's own root.
    root: std::cell::OnceCell<Option<std::os::fd::OwnedFd>>,
    /// Every ghost and directory made for them, in creation order, until removed (as
    /// stasis reaches them).
    pub(super) made: std::cell::RefCell<Vec<PathBuf>>,
    /// Ghosts made by their one open file description, created with `O_TMPFILE`: that
    /// fd recreates the file itself ([`restore`]), nothing is made at its path.
    unnamed: HashSet<u32>,
    /// The ghosts made elsewhere than at their path in the root's namespace, with the
    /// tree's root (an image pid), and their names as made (`homes.rs`).
    pub(super) homes: super::homes::Homes<'a>,
    /// The process of the tree's root mount namespace as stasis sees it (set by
    /// [`Ghosts::make`]), `None` for stasis's own.
    pub(super) root_pid: std::cell::Cell<Option<i32>>,
}

impl<'a> Ghosts<'a> {
    /// The ghosts of `image`, made by [`Ghosts::make`]; `fds` are the fd entries of every
    /// process (a ghost whose one open file description was made with `O_TMPFILE` is
    /// recreated by that fd instead).
    pub fn new<'f>(image: &'a GhostsImage, fds: impl Iterator<Item = &'f FdEntry>) -> Ghosts<'a> {
        Ghosts {
            image,
            paths: Default::default(),
            root: Default::default(),
            made: Default::default(),
            unnamed: unnamed(fds),
            homes: Default::default(),
            root_pid: Default::default(),
        }
    }

    /// With `homes` (`ghost-homes.img`) of a tree whose root is `root` (an image pid).
    pub fn with_homes(mut self, homes: &'a GhostHomesImage, root: i32) -> Self {
        self.homes = super::homes::Homes::new(homes, root);
        self.unnamed.retain(|g| homes.of(*g).is_none());
        self
    }

    /// Recreates every ghost, parents before what they hold: in stasis's own mount
    /// namespace (`in_tree` `None`), or in that of process `in_tree` (the root of a tree
    /// with a mount namespace of its own, reached through its `/proc/PID/root`).
    ///
    /// Ordering requirements: after the image is verified (and the tree's mounts are
    /// rebuilt, for `in_tree`), before any process's Mappings and Files stages.
    pub fn make(&self, in_tree: Option<i32>) -> Result<(), RestoreError> {
        let root = match in_tree {
            Some(pid) => Some(open_root(pid)?),
            None => None,
        };
        let _ = self.root.set(root);
        self.root_pid.set(in_tree);
        let mut paths = vec![PathBuf::new(); self.image.files.len()];
        let mut order: Vec<usize> = (0..self.image.files.len()).collect();
        order.sort_by_key(|&i| Path::new(&self.image.files[i].path).components().count());
        for i in order {
            if self.homes.has(i as u32) {
                paths[i] = PathBuf::from(&self.image.files[i].path);
                continue;
            }
            let path = self.place(i)?;
            if !self.unnamed.contains(&(i as u32)) {
                let g = &self.image.files[i];
                let made = self.create_at(&path, &|p| self.reach(p), g, in_tree)?;
                self.made.borrow_mut().push(made);
            }
            paths[i] = path;
        }
        let _ = self.paths.set(paths);
        self.make_homes_in(self.homes.root(), &|p| self.reach(p), in_tree)
    }

    /// Where stasis reaches `path` of the tree (once [`Ghosts::make`] ran: the tree's
    /// root is known then).
    pub fn reach(&self, path: &Path) -> PathBuf {
        match self.root.get() {
            Some(Some(fd)) => {
                let rest = path.strip_prefix("/").unwrap_or(path);
                PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(rest)
            }
            _ => path.to_path_buf(),
        }
    }

    /// Where ghost `index` is.
    pub fn path(&self, index: u32) -> &Path {
        match self.paths.get() {
            Some(paths) => &paths[index as usize],
            None => Path::new(""),
        }
    }

    /// Ghost `index` (the image was checked to have every ghost an fd names).
    pub(super) fn file(&self, index: u32) -> Result<&GhostFile, RestoreError> {
        self.image
            .get(index)
            .ok_or_else(|| RestoreError::Unsupported {
                what: format!("ghost {index} is not in the image"),
            })
    }

    /// The ghost that is `pid`'s working directory, by where it is.
    pub fn cwd_of(&self, pid: i32) -> Option<&Path> {
        self.image.cwd_of(pid).map(|i| self.path(i))
    }

    /// Removes every ghost and every directory made for them, the last made first.
    ///
    /// Ordering requirements: once every process holds what it needs of them, before any
    /// runs.
    pub fn remove(&self) -> Result<(), RestoreError> {
        let mut made = self.made.borrow_mut();
        while let Some(path) = made.pop() {
            remove(&path).map_err(|source| RestoreError::GhostRemove {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Where ghost `i` goes: its old path if free, else a hidden sibling; the missing
    /// directories above it are made (and recorded for removal).
    fn place(&self, i: usize) -> Result<PathBuf, RestoreError> {
        let g = &self.image.files[i];
        let old = PathBuf::from(&g.path);
        let parent = old.parent().unwrap_or(Path::new("/")).to_path_buf();
        self.make_parents(&parent, g, &|p| self.reach(p))?;
        if std::fs::symlink_metadata(self.reach(&old)).is_err() {
            return Ok(old);
        }
        let name = old.file_name().unwrap_or_default().to_string_lossy();
        let hidden = format!(".stasis-ghost-{}-{i}-{name}", std::process::id());
        Ok(parent.join(hidden))
    }

    /// `mkdir -p dir` (reached through `reach`), recording each directory made.
    pub(super) fn make_parents(
        &self,
        dir: &Path,
        g: &GhostFile,
        reach: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<(), RestoreError> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .map(reach)
            .take_while(|d| std::fs::symlink_metadata(d).is_err())
            .collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).map_err(|source| RestoreError::GhostCreate {
                what: "a directory above",
                path: g.path.clone(),
                source,
            })?;
            self.made.borrow_mut().push(d);
        }
        Ok(())
    }
}

/// An `O_PATH` fd of the root directory of process `pid` (kept: ghosts made through it
/// can be removed even once the process is gone).
pub(super) fn open_root(pid: i32) -> Result<std::os::fd::OwnedFd, RestoreError> {
    let path = format!("/proc/{pid}/root");
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&path)
        .map(std::os::fd::OwnedFd::from)
        .map_err(|source| RestoreError::GhostCreate {
            what: "the root of the tree for",
            path,
            source,
        })
}

/// Where the deleted file of each private mapping of `mm` that maps one is during the
/// restore, by mapping start, and guards that remove the links made for it.
pub type MappedGhosts = (Vec<(u64, PathBuf)>, Links);

impl Ghosts<'_> {
    /// The places of the deleted files the private mappings of process `pid` map
    /// (`VmaKind::PrivateUnlinked`): a mapping that names its ghost maps it where it was
    /// recreated; one that maps the same file under another of its (deleted) names, through
    /// a mapping of this process that names the ghost, maps a hard link of that name, made
    /// beside the ghost (or hidden, if taken) and removed once mapped (dropping the guard).
    ///
    /// Ordering requirements: after [`Ghosts::make`], before the Mappings stage.
    pub fn mapped(&self, pid: i32, mm: &MmImage) -> Result<MappedGhosts, RestoreError> {
        let mut made = Vec::new();
        for v in &mm.vmas {
            if let VmaKind::PrivateUnlinked { ghost: Some(i), .. } = &v.kind {
                made.push((v.start, self.path(*i).to_path_buf()));
            }
        }
        let mut links = Links(Vec::new());
        for (v, name, ghost) in other_names(pid, mm) {
            let path = self.hidden_if_taken(name, pid, v.start);
            let (from, to) = (self.reach(self.path(ghost)), self.reach(&path));
            std::fs::hard_link(from, &to).map_err(|source| RestoreError::GhostCreate {
                what: "a link of another name of",
                path: name.to_string(),
                source,
            })?;
            links.0.push(to);
            made.push((v.start, path));
        }
        Ok((made, links))
    }
}

/// The private mappings of `mm` that map, under another name, a deleted file that a
/// mapping of this process (`pid`) saves as a ghost: each with its name and that ghost.
fn other_names(pid: i32, mm: &MmImage) -> Vec<(&Vma, &str, u32)> {
    let mut out = Vec::new();
    for v in &mm.vmas {
        let VmaKind::PrivateUnlinked {
            name, ghost: None, ..
        } = &v.kind
        else {
            continue;
        };
        let owner = mm.shmem.iter().find(|r| r.start == v.start);
        let Some(o) = owner.and_then(|r| r.owner).filter(|o| o.pid == pid) else {
            continue;
        };
        let saved = mm.vmas.iter().find(|w| w.start == o.start).map(|w| &w.kind);
        if let Some(VmaKind::PrivateUnlinked {
            name: first,
            ghost: Some(g),
            ..
        }) = saved
        {
            if first != name {
                out.push((v, name.as_str(), *g));
            }
        }
    }
    out
}

impl Ghosts<'_> {
    /// `old` if it is free, else `.stasis-ghost-PID-START-NAME` beside it.
    fn hidden_if_taken(&self, old: &str, pid: i32, start: u64) -> PathBuf {
        let old = Path::new(old);
        if std::fs::symlink_metadata(self.reach(old)).is_err() {
            return old.to_path_buf();
        }
        let name = old.file_name().unwrap_or_default().to_string_lossy();
        old.with_file_name(format!(".stasis-ghost-{pid}-{start:x}-{name}"))
    }
}

/// Links made for mappings, removed when dropped.
pub struct Links(Vec<PathBuf>);

impl Drop for Links {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Ghosts<'_> {
    /// A restore that failed leaves nothing behind.
    fn drop(&mut self) {
        while let Some(path) = self.made.get_mut().pop() {
            let _ = remove(&path);
        }
    }
}

/// The fd of a ghost: the ghost opened by path with the entry's flags, at `pos` (a FIFO
/// through the keeper that refills its buffer, see `pipe.rs`; an `O_TMPFILE` one made
/// anew, see [`restore_unnamed`]).
pub fn restore(at: &Install, d: &DeletedFd) -> Result<(), RestoreError> {
    if let Some(path) = at.ghosts.home_fd_path(d.ghost, at.entry.fd) {
        return super::homes::restore(at, d, &path);
    }
    let path = at.ghosts.path(d.ghost).to_string_lossy();
    let g = at.ghosts.file(d.ghost)?;
    if g.body == GhostBody::Fifo {
        let bytes = d.fifo.clone().unwrap_or_default();
        return super::pipe::restore_fifo_at(at, &path, bytes.size, &bytes.data);
    }
    if at.ghosts.unnamed.contains(&d.ghost) {
        return restore_unnamed(at, g, at.ghosts.path(d.ghost), d.pos);
    }
    at.place(open_in(at.child, &path, at.reopen_flags())?)?;
    seek(at, d.pos)
}

/// A file made with `open(O_TMPFILE)`, which keeps that flag (`F_GETFL` shows it): made
/// again the same way in the directory of `path`, filled from stasis through a
/// duplicate of the child's fd.
fn restore_unnamed(at: &Install, g: &GhostFile, path: &Path, pos: u64) -> Result<(), RestoreError> {
    let dir = path.parent().unwrap_or(Path::new("/")).to_string_lossy();
    let got = open_in(at.child, &dir, at.tmpfile_flags())?;
    let file = std::fs::File::from(at.child.steal(got)?);
    let fail = |source: std::io::Error| RestoreError::GhostCreate {
        what: "a deleted O_TMPFILE file",
        path: g.path.clone(),
        source,
    };
    if let GhostBody::Regular { size, extents } = &g.body {
        write_data(&file, *size, extents).map_err(fail)?;
    }
    std::os::unix::fs::fchown(&file, Some(g.uid), Some(g.gid)).map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(g.mode))
        .map_err(fail)?;
    let (atime, mtime) = times(g);
    nix::sys::stat::futimens(&file, &atime, &mtime).map_err(|e| fail(e.into()))?;
    at.place(got)?;
    seek(at, pos)
}

/// The ghosts whose one open file description in `fds` was made with `O_TMPFILE` (only
/// such a file can be made again with the flag: `O_TMPFILE` always makes a new file).
/// An `O_TMPFILE` file opened again (through `/proc/self/fd`) comes back with every
/// description opened by path, without the flag in `F_GETFL`.
fn unnamed<'f>(fds: impl Iterator<Item = &'f FdEntry>) -> HashSet<u32> {
    let mut descriptions: HashMap<u32, (u32, bool)> = HashMap::new();
    for e in fds {
        if let FdKind::Deleted(d) = &e.kind {
            let (count, tmpfile) = descriptions.entry(d.ghost).or_default();
            *count += 1;
            *tmpfile |= e.flags & super::O_TMPFILE_ONLY != 0;
        }
    }
    descriptions
        .into_iter()
        .filter(|(_, (count, tmpfile))| *count == 1 && *tmpfile)
        .map(|(ghost, _)| ghost)
        .collect()
}

/// Makes ghost `g` at `path`: the file of its type with its data, then owner, mode (after
/// the owner: `chown` clears set-id bits) and times (last: writing changes them).
pub(super) fn create(path: &Path, g: &GhostFile) -> Result<(), RestoreError> {
    let fail = |source: std::io::Error| RestoreError::GhostCreate {
        what: g.body.describe(),
        path: path.display().to_string(),
        source,
    };
    make(path, &g.body).map_err(fail)?;
    std::os::unix::fs::lchown(path, Some(g.uid), Some(g.gid)).map_err(fail)?;
    if !matches!(g.body, GhostBody::Symlink { .. }) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(g.mode)).map_err(fail)?;
    }
    let (atime, mtime) = times(g);
    let flags = UtimensatFlags::NoFollowSymlink;
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &atime, &mtime, flags)
        .map_err(|e| fail(e.into()))
}

/// The ghost's access and modification times.
fn times(g: &GhostFile) -> (TimeSpec, TimeSpec) {
    let time = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    (time(g.atime_ns), time(g.mtime_ns))
}

/// A regular file's size and data: `size` bytes, holes but for `extents`.
fn write_data(file: &std::fs::File, size: u64, extents: &[Extent]) -> std::io::Result<()> {
    file.set_len(size)?;
    for e in extents {
        file.write_all_at(&e.data, e.offset)?;
    }
    Ok(())
}

/// The bare file of `body`'s type at `path`, owned by the restorer, mode 0600 (0700).
fn make(path: &Path, body: &GhostBody) -> std::io::Result<()> {
    let node = |kind: SFlag, rdev: u64| {
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(0o600), rdev)
            .map_err(std::io::Error::from)
    };
    match body {
        GhostBody::Regular { size, extents } => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            write_data(&file, *size, extents)
        }
        GhostBody::Directory => std::fs::create_dir(path),
        GhostBody::Fifo => node(SFlag::S_IFIFO, 0),
        GhostBody::CharDevice { rdev } => node(SFlag::S_IFCHR, *rdev),
        GhostBody::BlockDevice { rdev } => node(SFlag::S_IFBLK, *rdev),
        GhostBody::Symlink { target } => std::os::unix::fs::symlink(target, path),
    }
}

/// Removes what [`make`] or [`Ghosts::make_parents`] made at `path`.
fn remove(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn ghost(path: &Path, body: GhostBody) -> GhostFile {
        GhostFile {
            path: path.to_string_lossy().into_owned(),
            dev: 0,
            ino: 0,
            mode: 0o6604,
            uid: 0,
            gid: 0,
            atime_ns: 5_000_000_007,
            mtime_ns: 123_456_000_000_000,
            body,
            cwd_of: vec![42],
        }
    }

    #[test]
    fn recreates_sparse_files_and_removed_directories_then_removes_them() {
        let top = std::env::temp_dir().join(format!("stasis-ghosts-{}", std::process::id()));
        let regular = GhostBody::Regular {
            size: 1 << 30,
            extents: vec![Extent {
                offset: 1 << 20,
                data: vec![9; 4096],
            }],
        };
        let dir = top.join("gone/sub");
        let file = top.join("gone/sub/file");
        let mut image = GhostsImage {
            files: vec![ghost(&file, regular), ghost(&dir, GhostBody::Directory)],
        };
        image.files[0].cwd_of.clear();
        let ghosts = Ghosts::new(&image, std::iter::empty());
        ghosts.make(None).unwrap();
        assert_eq!(ghosts.path(0), file);
        assert_eq!(ghosts.cwd_of(42), Some(dir.as_path()));
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        assert_eq!(meta.mode() & 0o7777, 0o6604);
        assert_eq!((meta.mtime(), meta.atime_nsec()), (123_456, 7));
        let data = std::fs::read(&file).unwrap();
        assert_eq!(&data[(1 << 20)..(1 << 20) + 4096], &[9; 4096][..]);
        assert!(data[..1 << 20].iter().all(|&b| b == 0));
        ghosts.remove().unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn a_taken_path_gets_a_hidden_sibling_and_a_failure_leaves_nothing() {
        let top = std::env::temp_dir().join(format!("stasis-ghosts-taken-{}", std::process::id()));
        std::fs::create_dir_all(&top).unwrap();
        let taken = top.join("fifo");
        std::fs::write(&taken, b"here").unwrap();
        let image = GhostsImage {
            files: vec![ghost(&taken, GhostBody::Fifo)],
        };
        let ghosts = Ghosts::new(&image, std::iter::empty());
        ghosts.make(None).unwrap();
        let hidden = ghosts.path(0).to_path_buf();
        assert_ne!(hidden, taken);
        assert!(std::fs::symlink_metadata(&hidden)
            .unwrap()
            .file_type()
            .is_fifo());
        drop(ghosts);
        assert!(!hidden.exists());
        assert_eq!(std::fs::read(&taken).unwrap(), b"here");
        std::fs::remove_dir_all(&top).unwrap();
    }
}
