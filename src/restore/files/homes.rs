//! Ghosts made elsewhere than at their path in the root's mount namespace
//! (`ghost-homes.img`, dumped by `dump/files/homes.rs`): each is made through one mount
//! showing all its names — of the root's namespace with the other ghosts, or of a
//! namespace made inside the tree right after its maker built it ([`Ghosts::make_in`]) —
//! the first name as the file, the others as hard links of it (each at a hidden sibling
//! if taken); each fd then opens its own name in the namespace it was opened in
//! ([`restore`]), and [`Ghosts::remove`] removes them with the other ghosts.
//!
//! Also here: a ghost on a read-only mount (a bind remounted read-only over a writable
//! filesystem) is made through a writable clone of that mount (`open_tree` with
//! `OPEN_TREE_CLONE` in the mount's namespace, `MOUNT_ATTR_RDONLY` cleared on the
//! detached copy), kept until the ghost is removed through it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::ghost::{create, open_root};
use super::{seek, Ghosts, Install};
use crate::image::files::DeletedFd;
use crate::image::ghost::{GhostBody, GhostFile, GhostHome, GhostHomesImage};
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

/// The homes of an image's ghosts and what was made for them.
#[derive(Default)]
pub struct Homes<'a> {
    image: Option<&'a GhostHomesImage>,
    /// The tree's root (an image pid): its namespace's homes are made with the ghosts.
    root: i32,
    /// The names each ghost with a home was made under, by ghost (tree paths there).
    names: RefCell<HashMap<u32, Vec<PathBuf>>>,
    /// Roots of namespaces and writable clones of read-only mounts, through which the
    /// ghosts made there are reached until removed.
    keep: RefCell<Vec<OwnedFd>>,
    /// The process (image pid) whose fds are being restored.
    restoring: Cell<i32>,
    /// The links of `--link-remap` fds as stasis reached them, removed once the restore
    /// succeeded.
    links: RefCell<Vec<PathBuf>>,
}

impl<'a> Homes<'a> {
    pub fn new(image: &'a GhostHomesImage, root: i32) -> Self {
        Homes {
            image: Some(image),
            root,
            ..Default::default()
        }
    }

    /// Whether ghost `ghost` has a home.
    pub fn has(&self, ghost: u32) -> bool {
        self.image.is_some_and(|i| i.of(ghost).is_some())
    }

    /// The tree's root (an image pid).
    pub fn root(&self) -> i32 {
        self.root
    }

    /// The homes in the namespace of `ns_pid` (an image pid).
    fn in_ns(&self, ns_pid: i32) -> impl Iterator<Item = &'a GhostHome> {
        let all = self.image.map(|i| i.homes.as_slice()).unwrap_or_default();
        all.iter().filter(move |h| h.ns_pid == ns_pid)
    }
}

impl Ghosts<'_> {
    /// Makes the ghosts whose home is in the mount namespace process `pid` (an image pid,
    /// `host` as stasis sees it) made inside the tree.
    ///
    /// Ordering requirements: right after that namespace is built, before the Mappings
    /// and Files stages of any process in it.
    pub fn make_in(&self, pid: i32, host: i32) -> Result<(), RestoreError> {
        if pid == self.homes.root || self.homes.in_ns(pid).next().is_none() {
            return Ok(());
        }
        let root = open_root(host)?;
        let base = PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
        self.homes.keep.borrow_mut().push(root);
        let reach = |p: &Path| base.join(p.strip_prefix("/").unwrap_or(p));
        self.make_homes_in(pid, &reach, Some(host))
    }

    /// Makes the ghosts whose home is in the namespace of `ns_pid` (an image pid),
    /// reached through `reach`; `host`: a process of it as stasis sees it (`None`:
    /// stasis's own namespace).
    pub(super) fn make_homes_in(
        &self,
        ns_pid: i32,
        reach: &dyn Fn(&Path) -> PathBuf,
        host: Option<i32>,
    ) -> Result<(), RestoreError> {
        for h in self.homes.in_ns(ns_pid) {
            self.make_home(h, reach, host)?;
        }
        Ok(())
    }

    /// Ghost `h.ghost` under each of its home's names: the first made, the others
    /// linked to it; each at a hidden sibling if taken.
    fn make_home(
        &self,
        h: &GhostHome,
        reach: &dyn Fn(&Path) -> PathBuf,
        host: Option<i32>,
    ) -> Result<(), RestoreError> {
        let g = self.file(h.ghost)?;
        let mut made: Vec<PathBuf> = Vec::new();
        for (k, name) in h.names.iter().enumerate() {
            let old = Path::new(name);
            let parent = old.parent().unwrap_or(Path::new("/"));
            self.make_parents(parent, g, reach)?;
            let place = match std::fs::symlink_metadata(reach(old)) {
                Err(_) => old.to_path_buf(),
                Ok(_) => parent.join(format!(
                    ".stasis-ghost-{}-{}-{k}-{}",
                    std::process::id(),
                    h.ghost,
                    old.file_name().unwrap_or_default().to_string_lossy()
                )),
            };
            let outside = match made.first() {
                None => self.create_at(&place, reach, g, host)?,
                Some(first) => {
                    let to = reach(&place);
                    std::fs::hard_link(reach(first), &to).map_err(|source| {
                        RestoreError::GhostCreate {
                            what: "a link of another name of",
                            path: name.clone(),
                            source,
                        }
                    })?;
                    to
                }
            };
            self.made.borrow_mut().push(outside);
            made.push(place);
        }
        self.homes.names.borrow_mut().insert(h.ghost, made);
        Ok(())
    }

    /// Makes ghost `g` at `path` (a tree path, reached through `reach`) and returns where
    /// stasis reaches it; on a read-only mount, through a writable clone of it made in
    /// the namespace of `host` (`None`: stasis's own).
    pub(super) fn create_at(
        &self,
        path: &Path,
        reach: &dyn Fn(&Path) -> PathBuf,
        g: &GhostFile,
        host: Option<i32>,
    ) -> Result<PathBuf, RestoreError> {
        let outside = reach(path);
        match create(&outside, g) {
            Err(RestoreError::GhostCreate { source, .. })
                if source.raw_os_error() == Some(libc::EROFS) =>
            {
                let dir = path.parent().unwrap_or(Path::new("/"));
                let host = host.unwrap_or(std::process::id() as i32);
                let clone = writable_clone(host, dir)?;
                let name = path.file_name().unwrap_or_default();
                let through = PathBuf::from(format!("/proc/self/fd/{}", clone.as_raw_fd()));
                self.homes.keep.borrow_mut().push(clone);
                create(&through.join(name), g).map(|()| through.join(name))
            }
            other => other.map(|()| outside),
        }
    }

    /// Where fd `fd` of the process being restored opens ghost `ghost`, if it has a home:
    /// its own name, at the hidden sibling its home's name was made at if that was taken.
    pub fn home_fd_path(&self, ghost: u32, fd: i32) -> Option<PathBuf> {
        let h = self.homes.image?.of(ghost)?;
        let pid = self.homes.restoring.get();
        let f = h.fds.iter().find(|f| f.pid == pid && f.fd == fd)?;
        let names = self.homes.names.borrow();
        let made = names.get(&ghost)?.get(f.name as usize)?;
        let path = Path::new(&f.path);
        let same = made.file_name() == Path::new(&h.names[f.name as usize]).file_name();
        match (same, made.file_name()) {
            (false, Some(hidden)) => Some(path.with_file_name(hidden)),
            _ => Some(path.to_path_buf()),
        }
    }

    /// Whether process `pid` (as stasis sees it) is in another mount namespace than the
    /// tree's root's (one made inside the tree).
    pub fn in_nested(&self, pid: i32) -> bool {
        let ns = |of: &str| std::fs::read_link(format!("/proc/{of}/ns/mnt")).ok();
        let root = self
            .root_pid
            .get()
            .map_or("self".to_string(), |p| p.to_string());
        ns(&pid.to_string()) != ns(&root)
    }

    /// Records the link of a `--link-remap` fd, as stasis reaches it.
    pub fn remap_link(&self, link: PathBuf) {
        self.homes.links.borrow_mut().push(link);
    }

    /// The links of `--link-remap` fds recorded, each once.
    pub fn remap_links(&self) -> Vec<PathBuf> {
        let mut links = self.homes.links.borrow().clone();
        links.dedup();
        links
    }

    /// The fds of process `pid` (an image pid) are restored next.
    ///
    /// Ordering requirements: before its Files stage.
    pub fn restoring(&self, pid: i32) {
        self.homes.restoring.set(pid);
    }
}

/// A detached writable copy of the read-only mount holding directory `dir` (a path of the
/// mount namespace of `pid`), rooted at `dir`.
fn writable_clone(pid: i32, dir: &Path) -> Result<OwnedFd, RestoreError> {
    use crate::sys::mount::{clone_tree, in_mount_ns, set_attr};
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let at = dir.to_string_lossy().into_owned();
    let fail = |e: crate::sys::mount::MountError| RestoreError::GhostCreate {
        what: "a writable clone of the read-only mount of",
        path: at.clone(),
        source: std::io::Error::from(e.source),
    };
    let made = in_mount_ns(pid, || {
        let fd = clone_tree(None, &at)?;
        set_attr(fd.as_fd(), 0, MOUNT_ATTR_RDONLY, 0, &at)?;
        Ok(fd)
    });
    made.map_err(fail)?.map_err(fail)
}

/// The fd of a ghost with a home: its own name (`path`) opened in the namespace it was
/// opened in, at `pos` (a FIFO through the keeper that refills it, see `pipe.rs`).
pub fn restore(at: &Install, d: &DeletedFd, path: &Path) -> Result<(), RestoreError> {
    let g = at.ghosts.file(d.ghost)?;
    let path = path.to_string_lossy();
    if g.body == GhostBody::Fifo {
        let bytes = d.fifo.clone().unwrap_or_default();
        return super::pipe::restore_fifo_at(at, &path, bytes.size, &bytes.data);
    }
    let (flags, fd) = (at.reopen_flags(), at.entry.fd);
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, fd, &path, flags)?;
    at.place(there.map_or_else(|| open_in(at.child, &path, flags), Ok)?)?;
    seek(at, d.pos)
}
