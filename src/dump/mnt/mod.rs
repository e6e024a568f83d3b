//! The tree's own mount namespace: when the root's mount namespace is not the dumper's,
//! every mount of it is saved (`mnt.img`) with how to make it again (`tree.rs`), the
//! files of each tmpfs (`tmpfs.rs`, `mnt-tmpfs-<id>.img`) and the peer groups and
//! masters (`propagation.rs`), binds of deleted objects (`deleted.rs`) and the
//! binfmt_misc entries that end with the tree (`binfmt.rs`, `binfmt.img`). Files a
//! process maps from another namespace of the tree are found by `maps.rs`. What cannot
//! be made again is refused in [`plan`], before the tree is frozen, naming the mount and
//! the option that would handle it.
//!
//! It does not own the other namespaces (`dump/ns/` rebuilds or refuses them) nor files
//! held open on these mounts (`dump/files/`, which reach them through `/proc/PID/root`).

mod binfmt;
mod deleted;
pub mod maps;
pub mod nested;
mod overlay;
mod procfs;
mod propagation;
mod tmpfs;
mod tree;

use super::DumpError;
use crate::image::mnt::{How, MountsImage, BINFMT, MOUNTS};
use crate::image::{ImageWriter, Kind};

/// The mounts the user says come from outside the tree.
#[derive(Clone, Debug, Default)]
pub struct Externals {
    /// `--external mnt[MOUNTPOINT]:KEY`: mount points given again at restore by
    /// `--external mnt[KEY]:PATH`.
    pub named: Vec<(String, String)>,
    /// `--external mnt[]` (CRIU's `--ext-mount-map auto`): a mount showing a directory
    /// of a filesystem the dumper has mounted is bound from there at restore, whatever
    /// its kind (without it, only the local filesystems and overlays are, and a tmpfs's
    /// files are copied).
    pub auto: bool,
}

/// The mounts of a tree with a mount namespace of its own, checked and ready to save.
pub struct Plan {
    root: i32,
    image: MountsImage,
    /// The binfmt_misc mount whose entries end with the tree (id, mount point).
    binfmt: Option<(u32, String)>,
}

/// `Some` when the root of the tree lives in another mount namespace than stasis: its
/// mounts are read and every one must be rebuildable (else the dump fails here, before
/// anything is frozen).
pub fn plan(root: i32, externals: &Externals) -> Result<Option<Plan>, DumpError> {
    let (ns, own) = (ns_of(&root.to_string())?, ns_of("self")?);
    if ns == own {
        return refuse_unused(externals).map(|()| None);
    }
    let theirs = read_mountinfo(root)?;
    let mine = read_mountinfo(std::process::id() as i32)?;
    let mut mounts = tree::classify(&theirs, &mine, externals)?;
    deleted::read(root, &mut mounts, false)?;
    propagation::check(&mounts, &mine)?;
    overlay::check(root, &mounts)?;
    procfs::check(root, &mounts)?;
    let binfmt = binfmt::check(root, &mounts, &mine)?;
    let unused =
        (externals.named.iter()).find(|(mp, _)| !mounts.iter().any(|m| &m.mountpoint == mp));
    if let Some((mp, key)) = unused {
        return Err(DumpError::unsupported(format!(
            "--external mnt[{mp}]:{key}: pid {root}'s mount namespace has no mount at {mp}"
        )));
    }
    Ok(Some(Plan {
        root,
        image: MountsImage { mounts },
        binfmt,
    }))
}

fn refuse_unused(externals: &Externals) -> Result<(), DumpError> {
    match externals.named.first() {
        Some((mp, key)) => Err(DumpError::unsupported(format!(
            "--external mnt[{mp}]:{key}: the tree lives in stasis's own mount namespace, \
             whose mounts are not dumped"
        ))),
        None => Ok(()),
    }
}

impl Plan {
    /// The root's mounts, for the nested namespaces' peer groups.
    pub fn image(&self) -> &MountsImage {
        &self.image
    }

    /// Writes `mnt.img` and each tmpfs's contents (the tree is frozen: they hold still).
    pub fn save(&self, writer: &ImageWriter) -> Result<(), DumpError> {
        let mut image = self.image.clone();
        deleted::read(self.root, &mut image.mounts, true)?;
        for m in &image.mounts {
            if m.how == How::Tmpfs {
                let contents = tmpfs::read(self.root, m, &self.image.mounts)?;
                let name = crate::image::mnt::tmpfs_name(m.id);
                writer.write_record(&name, Kind::MntTmpfs, &contents)?;
            }
        }
        if let Some((id, mountpoint)) = &self.binfmt {
            let entries = binfmt::read(self.root, *id, mountpoint)?;
            writer.write_record(BINFMT, Kind::Binfmt, &entries)?;
        }
        writer.write_record(MOUNTS, Kind::Mounts, &image)?;
        Ok(())
    }
}

fn ns_of(pid: &str) -> Result<u64, DumpError> {
    super::ns::ns_inode(pid, "mnt")
}

/// Where stasis reaches the root of `pid`'s mount namespace: `None` when `pid` is in
/// stasis's own (its paths are stasis's), else the pid whose `/proc/PID/root` is that
/// root (see [`ns_root_holder`]). Asked for every file of a process, so stasis's own
/// namespace is read once and the answer for the last process asked is kept, until
/// [`forget_namespaces`] (each dump starts with it: pids are reused).
fn foreign(pid: i32) -> Option<i32> {
    use std::sync::OnceLock;
    static OWN: OnceLock<Option<u64>> = OnceLock::new();
    let own = *OWN.get_or_init(|| ns_of("self").ok());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match *last {
        Some((p, f)) if p == pid => f,
        _ => {
            let ns = ns_of(&pid.to_string()).ok();
            let f = (ns != own).then(|| ns_root_holder(pid, ns));
            *last = Some((pid, f));
            f
        }
    }
}

static LAST: std::sync::Mutex<Option<(i32, Option<i32>)>> = std::sync::Mutex::new(None);

/// The process whose root is the root of `pid`'s mount namespace `ns`: `pid` itself, or,
/// when `pid` changed its root (`chroot`), its nearest ancestor in `ns` that did not.
/// The paths `/proc/PID/...` links give of a process in another mount namespace are
/// relative to its namespace's root, not to the process's own root. Without such an
/// ancestor, `pid` (its paths outside its root then cannot be reached).
fn ns_root_holder(pid: i32, ns: Option<u64>) -> i32 {
    let mut p = pid;
    for _ in 0..64 {
        if crate::proc::link(p, "root").is_ok_and(|r| r.as_os_str() == "/") {
            return p;
        }
        match crate::proc::stat(p) {
            Ok(st) if st.ppid > 0 && ns_of(&st.ppid.to_string()).ok() == ns => p = st.ppid,
            _ => break,
        }
    }
    pid
}

/// Forgets the mount namespace remembered for the last process (a new dump begins).
pub fn forget_namespaces() {
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = None;
    nested::forget();
    maps::forget();
}

/// `/proc/PID/mountinfo`, parsed.
pub(crate) fn read_mountinfo(
    pid: i32,
) -> Result<Vec<crate::proc::mountinfo::MountInfo>, DumpError> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Stat {
        path: path.clone(),
        source,
    })?;
    crate::proc::mountinfo::parse(&text).map_err(|e| DumpError::unsupported(format!("{path}: {e}")))
}

/// The path at which stasis reaches `path` of process `pid`: through `/proc/PID/root`
/// (of the process holding its namespace's root, see [`ns_root_holder`]) when the process
/// is in another mount namespace (its mounts are not stasis's), else itself.
pub fn reach(pid: i32, path: &str) -> std::path::PathBuf {
    match foreign(pid) {
        Some(holder) => format!("/proc/{holder}/root{path}").into(),
        None => path.into(),
    }
}
