//! Verified loading of an image directory: every record is decoded, validated and the page
//! files verified before restore touches the system. It owns the directory's file names and
//! the order of checks, not the framing (`file`, `pages`) nor the rules (`validate`).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::cgroup::{CgroupImage, CGROUP};
use super::chain::AncestorFiles;
use super::error::ImageError;
use super::file::{decode, read, read_since, read_versioned, Kind};
use super::files::{FdKind, FilesImage};
use super::files_v16::FilesImageV16;
use super::files_v8::{FilesImageV6, FilesImageV8};
use super::ghost::{GhostsImage, GHOSTS};
use super::inventory::Inventory;
use super::mm::{MmImage, MmImageV6, MmImageV7, MmImageV8, VmaKind};
use super::mqueue::{MqueueImage, MQUEUE};
use super::ns::{NsImage, NAMESPACES};
use super::orphan_pty::{OrphanPtyImage, ORPHAN_PTY};
use super::pages::{check_pages, verify_pages, Unverified};
use super::pty_devpts::{PtyDevptsImage, PTY_DEVPTS};
use super::sysv::{SysvImage, SYSV, SYSV_SHM_PAGES};
use super::task::{TaskImage, TaskImageV8};
use super::tree::{TreeImage, TreeImageV6};
use super::tty::{TtyImage, TTY};
use super::validate;

/// Name of the inventory file; a directory without it is not an image.
pub const INVENTORY: &str = "inventory.img";
/// Name of the process tree record.
pub const TREE: &str = "tree.img";

/// The records of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessImage {
    pub task: TaskImage,
    /// Empty for a process that shares its parent's address space (`shares_vm`): it has
    /// no `mm`/`pages` files; [`TreeImage::mm_owner`] names the process whose records
    /// describe it.
    pub mm: MmImage,
    pub files: FilesImage,
}

/// A loaded and verified image directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub dir: PathBuf,
    pub inventory: Inventory,
    pub tree: TreeImage,
    /// Terminals the tree created and its sessions' controlling terminals (empty for
    /// images older than format 9).
    pub tty: TtyImage,
    /// The live processes, in tree order (`inventory.pids`).
    pub processes: Vec<ProcessImage>,
    /// Files deleted while in use (empty without `ghosts.img`).
    pub ghosts: GhostsImage,
    /// (format 16) The ghosts made through a mount other than their path's (empty
    /// without `ghost-homes.img`).
    pub ghost_homes: super::ghost::GhostHomesImage,
    /// The System V IPC objects (empty when the image has no `sysv.img`).
    pub sysv: SysvImage,
    /// The POSIX message queues (none when the image has no `mqueue.img`).
    pub mqueue: MqueueImage,
    /// The pty whose master was outside the tree (none without `orphan-pty.img`).
    pub orphan_pty: OrphanPtyImage,
    /// The ptys of another devpts instance than the host's (`pty-devpts.img`).
    pub pty_devpts: PtyDevptsImage,
    /// Pid and UTS namespaces (empty when the image has no `namespaces.img`).
    pub ns: NsImage,
    /// The tree's cgroups (empty when the image has no `cgroup.img`).
    pub cgroup: CgroupImage,
    /// The tree's own mount namespace (none without `mnt.img`).
    pub mounts: Option<super::mnt::MountsImage>,
    /// The mount namespaces made inside the tree (empty without `mntns.img`).
    pub nested_mounts: super::mnt::NestedImage,
    /// (format 15) Processes in an ancestor's mount namespace (empty without
    /// `mntns-join.img`).
    pub mnt_joins: super::mnt::JoinsImage,
    /// (format 16) The binfmt_misc entries of its namespace (none without `binfmt.img`).
    pub binfmt: super::mnt::BinfmtImage,
    /// (format 16) Mappings on a mount of another of the tree's namespaces than their
    /// process's (none without `mntns-maps.img`).
    pub maps_elsewhere: super::mnt::MapsElsewhereImage,
    /// The tree's own network namespace (none without `netns.img`).
    pub netns: Option<super::netns::NetNsImage>,
    /// (format 15) The kind-specific attributes of its links (empty without
    /// `netlinks.img`).
    pub netlinks: super::netns::NetLinksImage,
    /// Veth pairs between the tree's network namespaces (`netpeers.img`).
    pub netpeers: super::netns::NetPeersImage,
    /// Processes that entered a network namespace of the tree (`netns-join.img`).
    pub netjoins: super::netns::NetJoinsImage,
    /// (format 17) Sockets held outside their network namespace (`netns-sockets.img`).
    pub socket_nets: super::netns::SocketNetsImage,
    /// (format 12) The tree's own user namespace (none without `userns.img`).
    pub userns: Option<super::userns::UserNsImage>,
    /// (format 11) Where the image stands in a chain of incremental images.
    pub chain: Option<super::chain::ChainImage>,
    /// Where each process's pages kept in parent images are (`image::chain`), by pid.
    pub parent_pages: std::collections::BTreeMap<i32, Vec<super::chain::Piece>>,
    /// The directory's file names as listed when it was loaded, so that the restore's
    /// optional records need no lookup of their own.
    pub listed: Listing,
}

impl Image {
    /// Reads inventory.img, then task-/mm-/files-<pid>.img for every pid in inventory.pids,
    /// validates every record and verifies every pages file (length == the pages of its
    /// runs, crc).
    pub fn load(dir: &Path) -> Result<Image, ImageError> {
        let (image, ancestors) = {
            let _s = crate::profile::span("load records");
            Self::load_records(dir)?
        };
        let _s = crate::profile::span("load: pages files checked");
        for (path, pages) in image.page_files().chain(ancestors) {
            verify_pages(&path, pages)?;
        }
        Ok(image)
    }

    /// Like [`Image::load`] but skips the page checksum pass (for `inspect`): the page files'
    /// headers, lengths and sizes are still checked.
    pub fn load_metadata(dir: &Path) -> Result<Image, ImageError> {
        Self::load_trusting(dir, &|_| true)
    }

    /// Like [`Image::load`], but the pages files in a directory `verified` accepts (the
    /// caller checked their checksums already: `stasis receive` as each image came) only
    /// have their headers, lengths and sizes checked.
    pub fn load_trusting(
        dir: &Path,
        verified: &dyn Fn(&Path) -> bool,
    ) -> Result<Image, ImageError> {
        Self::load_deferring(dir, verified, &|_| false).map(|(image, _)| image)
    }

    /// Like [`Image::load_trusting`], but the crc of the own pages files of each process
    /// `defer` picks (not those of parent images nor System V memory) is not checked:
    /// they are returned, headers, lengths and sizes checked, for the caller to check
    /// their data as it reads it (`restore/checked.rs`).
    pub fn load_deferring(
        dir: &Path,
        verified: &dyn Fn(&Path) -> bool,
        defer: &dyn Fn(&ProcessImage) -> bool,
    ) -> Result<(Image, Vec<Unverified>), ImageError> {
        let (image, ancestors) = {
            let _s = crate::profile::span("load records");
            Self::load_records(dir)?
        };
        let _s = crate::profile::span("load: pages files checked");
        let deferred: Vec<PathBuf> = (image.processes.iter())
            .filter(|p| image.owns_mm(p.task.pid) && defer(p))
            .flat_map(|p| (0..p.mm.stripes()).map(|s| image.pages_path(p.task.pid, s)))
            .collect();
        let mut unverified = Vec::new();
        for (path, pages) in image.page_files().chain(ancestors) {
            if path.parent().is_some_and(verified) {
                drop(check_pages(&path, pages)?);
            } else if deferred.contains(&path) {
                unverified.push(super::pages::unverified(&path, pages)?);
            } else {
                verify_pages(&path, pages)?;
            }
        }
        Ok((image, unverified))
    }

    /// Every pages file (each stripe of each address space) with the number of pages its
    /// mm record promises it.
    fn page_files(&self) -> impl Iterator<Item = (PathBuf, u64)> + '_ {
        let owners = self.processes.iter().filter(|p| self.owns_mm(p.task.pid));
        let sysv =
            (!self.sysv.shm.is_empty()).then(|| (self.dir.join(SYSV_SHM_PAGES), self.sysv.pages()));
        owners
            .flat_map(move |p| {
                let pid = p.task.pid;
                (0..p.mm.stripes()).map(move |s| (self.pages_path(pid, s), p.mm.stripe_pages(s)))
            })
            .chain(sysv)
    }

    /// Every record read and validated, the pages files not opened yet.
    ///
    /// Ordering requirements: an mm record is validated before the caller trusts its page
    /// count.
    fn load_records(dir: &Path) -> Result<(Image, AncestorFiles), ImageError> {
        let chain = super::chain::load(dir)?;
        if chain.as_ref().is_some_and(|c| c.predump) {
            let what = "a pre-dump is not restorable by itself: restore a dump made with \
                        --prev-images-dir pointing at it";
            return Err(ImageError::invalid(dir.join(super::chain::CHAIN), what));
        }
        let inventory = load_inventory(dir)?;
        let path = dir.join(TREE);
        let tree = read_since::<TreeImage, TreeImageV6>(Kind::Tree, &path, 7)?;
        validate::tree(&tree, &inventory, &path)?;
        let processes = inventory
            .pids
            .iter()
            .map(|&pid| load_process(dir, pid, tree.mm_owner(pid) == pid))
            .collect::<Result<Vec<_>, _>>()?;
        let present = Present::list(dir);
        let ghosts = load_ghosts(&present, &processes)?;
        let tty = load_optional(&present, TTY, Kind::Tty, |_, _| Ok(()))?;
        let homes = super::ghost::HOMES;
        let ghost_homes: super::ghost::GhostHomesImage =
            load_optional(&present, homes, Kind::GhostHomes, |_, _| Ok(()))?;
        ghost_homes.validate(&ghosts, &dir.join(homes))?;
        let sysv = load_optional(&present, SYSV, Kind::Sysv, super::sysv::validate)?;
        let mqueue = load_optional(&present, MQUEUE, Kind::Mqueue, super::mqueue::validate)?;
        let orphan_pty = load_optional(
            &present,
            ORPHAN_PTY,
            Kind::OrphanPty,
            super::orphan_pty::validate,
        )?;
        let pty_devpts = load_optional(
            &present,
            PTY_DEVPTS,
            Kind::PtyDevpts,
            super::pty_devpts::validate,
        )?;
        let ns = load_optional(&present, NAMESPACES, Kind::Namespaces, super::ns::validate)?;
        let cgroup = load_optional(&present, CGROUP, Kind::Cgroup, super::cgroup::validate)?;
        let mounts = load_present(&present, super::mnt::MOUNTS, Kind::Mounts, |_, _| Ok(()))?;
        let nested_mounts = load_optional(
            &present,
            super::mnt::NESTED,
            Kind::NestedMounts,
            super::mnt::validate_nested,
        )?;
        let mnt_joins = load_optional(
            &present,
            super::mnt::JOINS,
            Kind::MntJoins,
            super::mnt::validate_joins,
        )?;
        let binfmt = load_optional(&present, super::mnt::BINFMT, Kind::Binfmt, |_, _| Ok(()))?;
        let maps_elsewhere = load_optional(
            &present,
            super::mnt::MAPS_ELSEWHERE,
            Kind::MapsElsewhere,
            |_, _| Ok(()),
        )?;
        let netns = load_present(
            &present,
            super::netns::NETNS,
            Kind::NetNs,
            super::netns::validate,
        )?;
        let netlinks = match present.path(super::netns::NETLINKS) {
            Some(path) => read_netlinks(&path)?,
            None => Default::default(),
        };
        let netpeers = load_optional(
            &present,
            super::netns::NETPEERS,
            Kind::NetPeers,
            super::netns::validate_peers,
        )?;
        let netjoins = load_optional(
            &present,
            super::netns::NETJOINS,
            Kind::NetJoins,
            super::netns::validate_joins,
        )?;
        let socket_nets = load_optional(
            &present,
            super::netns::SOCKETNETS,
            Kind::SocketNets,
            |_, _| Ok(()),
        )?;
        let userns = load_present(
            &present,
            super::userns::USERNS,
            Kind::UserNs,
            super::userns::validate,
        )?;
        let dir = dir.to_path_buf();
        let mut image = Image {
            dir,
            inventory,
            tree,
            tty,
            processes,
            ghosts,
            ghost_homes,
            sysv,
            mqueue,
            orphan_pty,
            pty_devpts,
            ns,
            cgroup,
            mounts,
            nested_mounts,
            mnt_joins,
            binfmt,
            maps_elsewhere,
            netns,
            netlinks,
            netpeers,
            netjoins,
            socket_nets,
            userns,
            chain,
            parent_pages: Default::default(),
            listed: present.names,
        };
        let ancestors = image.resolve_parents()?;
        let tree_path = image.dir.join(TREE);
        for p in &image.processes {
            validate::process_in_tree(&p.task, &image.tree, &tree_path)?;
            let pid = p.task.pid;
            let parent = (pid != image.inventory.root_pid)
                .then(|| image.tree.get(pid).and_then(|e| image.process(e.ppid)))
                .flatten();
            let path = image.dir.join(record_name("mm", pid));
            validate::cow_parent(&p.mm, parent.map(|p| &p.mm), &path)?;
            super::sysv::attached_known(&image.sysv, &p.mm, &path)?;
            let mm_of = |pid| image.process(pid).map(|p| &p.mm);
            let path = image.dir.join(record_name("files", pid));
            validate::mapped_fds(&p.files, mm_of, &path)?;
        }
        let order: Vec<_> = image
            .processes
            .iter()
            .map(|p| (p.task.pid, &p.files))
            .collect();
        validate::inherited_fds(&order, &tree_path)?;
        let makers: Vec<i32> = std::iter::once(image.inventory.root_pid)
            .chain(image.netlinks.nested.iter().map(|n| n.pid))
            .collect();
        let path = image.dir.join(super::netns::SOCKETNETS);
        super::netns::check_socket_nets(&image.socket_nets, &makers, &path)?;
        let orphans: Vec<u32> = image.orphan_pty.ptys.iter().map(|p| p.index).collect();
        let tty_path = image.dir.join(TTY);
        super::tty::check(&image.tty, &image.tree, &order, &orphans, &tty_path)?;
        let path = image.dir.join(PTY_DEVPTS);
        super::pty_devpts::check_orphans(&image.pty_devpts, &orphans, &path)?;
        Ok((image, ancestors))
    }

    /// Finds, for every process with pages kept in parent images, where they are, each
    /// ancestor checked to be the image its child was made against; returns the
    /// ancestors' pages files to verify.
    fn resolve_parents(&mut self) -> Result<AncestorFiles, ImageError> {
        let mut files = AncestorFiles::new();
        for p in &self.processes {
            let refs = p.mm.parent_ranges();
            if refs.is_empty() {
                continue;
            }
            let pid = p.task.pid;
            let Some(chain) = &self.chain else {
                let what = format!("pid {pid} has pages in a parent image, but no chain record");
                return Err(ImageError::invalid(
                    self.dir.join(record_name("mm", pid)),
                    what,
                ));
            };
            let pieces = super::chain::resolve(&self.dir, chain, pid, refs, &mut files)?;
            self.parent_pages.insert(pid, pieces);
        }
        Ok(files)
    }

    /// The records of live process `pid`.
    /// Whether the image directory holds `name` (from the listing made at load).
    pub fn has(&self, name: &str) -> bool {
        self.listed.has(&self.dir, name)
    }

    pub fn process(&self, pid: i32) -> Option<&ProcessImage> {
        self.processes.iter().find(|p| p.task.pid == pid)
    }

    /// Whether live process `pid` has its own `mm`/`pages` records (it shares no address
    /// space with its parent).
    pub fn owns_mm(&self, pid: i32) -> bool {
        self.tree.mm_owner(pid) == pid
    }

    /// Pages file `stripe` of `pid` in this image's directory (see [`pages_name`]).
    pub fn pages_path(&self, pid: i32, stripe: u8) -> PathBuf {
        self.dir.join(pages_name(pid, stripe))
    }
}

/// The file name of a per-process file: `record_name("task", 123)` is `task-123.img`.
pub fn record_name(prefix: &str, pid: i32) -> String {
    format!("{prefix}-{pid}.img")
}

/// The name of pages file `stripe` of `pid` (`PageRun::stripe`): `pages-123.img` for
/// stripe 0, `pages-123.1.img` for stripe 1.
pub fn pages_name(pid: i32, stripe: u8) -> String {
    match stripe {
        0 => record_name("pages", pid),
        n => format!("pages-{pid}.{n}.img"),
    }
}

fn load_inventory(dir: &Path) -> Result<Inventory, ImageError> {
    let path = dir.join(INVENTORY);
    let inventory = read(Kind::Inventory, &path).map_err(|e| match e {
        ImageError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
            ImageError::NotAnImage { path: dir.into() }
        }
        e => e,
    })?;
    validate::inventory(&inventory, &path)?;
    Ok(inventory)
}

/// `ghosts.img` if the image has one, checked against the fds that refer to it.
fn load_ghosts(present: &Present, processes: &[ProcessImage]) -> Result<GhostsImage, ImageError> {
    let dir = present.dir;
    let ghosts: GhostsImage = load_optional(present, GHOSTS, Kind::Ghosts, GhostsImage::validate)?;
    for p in processes {
        for e in &p.files.fds {
            let FdKind::Deleted(d) = &e.kind else {
                continue;
            };
            if ghosts.get(d.ghost).is_none() {
                let what = format!(
                    "fd {} refers to ghost {}, which {GHOSTS} lacks",
                    e.fd, d.ghost
                );
                return Err(ImageError::invalid(
                    dir.join(record_name("files", p.task.pid)),
                    what,
                ));
            }
        }
        mapped_ghosts(dir, p, &ghosts)?;
    }
    Ok(ghosts)
}

/// Each private mapping of `p` that names a ghost names a regular file of `ghosts`.
fn mapped_ghosts(dir: &Path, p: &ProcessImage, ghosts: &GhostsImage) -> Result<(), ImageError> {
    for v in &p.mm.vmas {
        let VmaKind::PrivateUnlinked { ghost: Some(i), .. } = &v.kind else {
            continue;
        };
        let regular = ghosts.get(*i).map(|g| g.body.file_type()) == Some(libc::S_IFREG);
        if !regular {
            let what = format!(
                "mapping {:#x}-{:#x} refers to ghost {i}, which {GHOSTS} lacks or is no regular file",
                v.start, v.end
            );
            return Err(ImageError::invalid(
                dir.join(record_name("mm", p.task.pid)),
                what,
            ));
        }
    }
    Ok(())
}

/// The records of `pid`; `mm` only if it `owns_mm` (else its mm is empty).
fn load_process(dir: &Path, pid: i32, owns_mm: bool) -> Result<ProcessImage, ImageError> {
    let path = dir.join(record_name("task", pid));
    let task = read_since::<TaskImage, TaskImageV8>(Kind::Task, &path, 9)?;
    validate::task(&task, pid, &path)?;
    let mm = if owns_mm {
        load_mm(dir, pid)?
    } else {
        MmImage::default()
    };
    let path = dir.join(record_name("files", pid));
    let files = read_files(&path)?;
    validate::files(&files, &path)?;
    Ok(ProcessImage { task, mm, files })
}

/// A files record of any supported version: `spares` and the lists after it came in
/// version 7, `owners` and `unlinked_sockets` in 9, `dgram_senders` in 17.
fn read_files(path: &Path) -> Result<FilesImage, ImageError> {
    read_versioned(Kind::Files, path, |version, bytes| match version {
        ..7 => decode::<FilesImageV6>(Kind::Files, bytes, path).map(Into::into),
        7 | 8 => decode::<FilesImageV8>(Kind::Files, bytes, path).map(Into::into),
        9..=16 => decode::<FilesImageV16>(Kind::Files, bytes, path).map(Into::into),
        _ => decode(Kind::Files, bytes, path),
    })
}

/// The file names of an image directory, listed once: the records later formats added
/// are optional, and one listing answers for all of them (a `stat` each before). A
/// directory that could not be listed is asked file by file. A lookup cache, not part of
/// what the image holds: any two listings compare equal.
#[derive(Clone, Debug, Default)]
pub struct Listing(Option<std::collections::HashSet<std::ffi::OsString>>);

impl Listing {
    fn of(dir: &Path) -> Self {
        let names = std::fs::read_dir(dir)
            .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
            .ok();
        Listing(names)
    }

    /// Whether `dir` (the directory listed) holds `name`.
    fn has(&self, dir: &Path, name: &str) -> bool {
        match &self.0 {
            Some(names) => names.contains(std::ffi::OsStr::new(name)),
            None => dir.join(name).exists(),
        }
    }
}

impl PartialEq for Listing {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Listing {}

/// An image directory and its [`Listing`], while its records are read.
struct Present<'a> {
    dir: &'a Path,
    names: Listing,
}

impl<'a> Present<'a> {
    fn list(dir: &'a Path) -> Self {
        Present {
            dir,
            names: Listing::of(dir),
        }
    }

    /// The path of `name` in the directory, if it is there.
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.names.has(self.dir, name).then(|| self.dir.join(name))
    }
}

/// The record `name` checked by `validate`, or `None` when the image has no such file.
fn load_present<T: serde::de::DeserializeOwned>(
    present: &Present,
    name: &str,
    kind: Kind,
    validate: fn(&T, &Path) -> Result<(), ImageError>,
) -> Result<Option<T>, ImageError> {
    let Some(path) = present.path(name) else {
        return Ok(None);
    };
    let record = read(kind, &path)?;
    validate(&record, &path)?;
    Ok(Some(record))
}

/// The record `name` checked by `validate`, or its default (none) when the image has no
/// such file: the records later formats added, which older images lack.
fn load_optional<T: serde::de::DeserializeOwned + Default>(
    present: &Present,
    name: &str,
    kind: Kind,
    validate: fn(&T, &Path) -> Result<(), ImageError>,
) -> Result<T, ImageError> {
    Ok(load_present(present, name, kind, validate)?.unwrap_or_default())
}

/// `netlinks.img` of any supported version (links' features came in 18), checked.
fn read_netlinks(path: &Path) -> Result<super::netns::NetLinksImage, ImageError> {
    use super::netns::{validate_links, NetLinksImage, NetLinksImageV17};
    let links = read_since::<NetLinksImage, NetLinksImageV17>(Kind::NetLinks, path, 18)?;
    validate_links(&links, path)?;
    Ok(links)
}

pub(crate) fn load_mm(dir: &Path, pid: i32) -> Result<MmImage, ImageError> {
    let path = dir.join(record_name("mm", pid));
    let mm = read_mm(&path)?;
    validate::mm(&mm, &path)?;
    Ok(mm)
}

/// An mm record of any supported version: `cow` came in version 7, `PageRun::stripe` in 8,
/// the `sr`/`rr`/`dp` flags, file access modes and AIO rings in 9.
fn read_mm(path: &Path) -> Result<MmImage, ImageError> {
    read_versioned(Kind::Mm, path, |version, bytes| match version {
        ..=6 => decode::<MmImageV6>(Kind::Mm, bytes, path).map(Into::into),
        7 => decode::<MmImageV7>(Kind::Mm, bytes, path).map(Into::into),
        8 => decode::<MmImageV8>(Kind::Mm, bytes, path).map(Into::into),
        _ => decode(Kind::Mm, bytes, path),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "load_tests.rs"]
mod tests;
