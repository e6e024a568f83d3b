//! The tree's own mount namespace (`mnt.img`), rebuilt before its root's files are
//! opened: the root, right after its takeover, leaves stasis's namespace
//! (`unshare(CLONE_NEWNS)`, injected) and enters the image directory (its later page
//! reads go through that cwd, as the directory is not in the rebuilt tree); a thread of
//! stasis then enters the new namespace and builds the tree there (`tree.rs`: every
//! mount detached first, then attached parents first; tmpfs contents `tmpfs.rs`; peer
//! groups and masters `propagation.rs`; proc mounts made by the root, in its pid
//! namespace, `procfs.rs`; binds of deleted objects `deleted.rs`) and makes it the
//! namespace's root (`pivot_root`), then registers the binfmt_misc entries that ended
//! with the tree (`binfmt.rs`). Children of the root inherit the namespace. Files mapped
//! from another namespace of the tree are opened there (`maps.rs`).
//!
//! [`verify`] runs with the other host checks, before any process exists: every
//! external mount given, the root directory there, the host's mounts the tree used
//! still mounted, the new mount API present.

mod binfmt;
mod deleted;
pub mod maps;
pub mod nested;
mod procfs;
mod propagation;
mod tmpfs;
mod tree;

use std::path::{Path, PathBuf};

use super::child::Child;
use super::{RestoreError, RestoreOptions};
use crate::image::mnt::{How, MountsImage};
use crate::image::Image;
use crate::proc::mountinfo::MountInfo;

/// Where each mount of the image comes from on this host.
pub struct Sources<'a> {
    image: &'a MountsImage,
    dir: PathBuf,
    root: Option<PathBuf>,
    externals: Vec<(String, String)>,
    /// The devpts mount point and number of the pty whose master was outside the tree
    /// (`orphan-pty.img`): its pair is made as soon as that devpts exists, before any
    /// bind mount of its node (runc's `/dev/console`).
    orphan: Option<(String, u32)>,
    /// The ptys of the tree's own devpts instances (`pty-devpts.img`): devpts mount point,
    /// number and the master's access mode. Those of a devpts that a bind mount takes its
    /// source from are made as soon as it exists (`/dev/console` bound from `/dev/pts/0`).
    devpts_ptys: Vec<(String, u32, i32)>,
    /// The tmpfs records of a namespace made inside the tree (`nested.rs`), read before
    /// its build (the image directory is not in it); the root's are read as they are made.
    tmpfs: std::collections::HashMap<u32, crate::image::mnt::TmpfsImage>,
    /// For each mount (by image id) slave of a peer group no mount of the image is in, the
    /// mount of the restorer's namespace its source is on, which is in that group
    /// (`propagation::external_masters`): the master is taken from there.
    masters: std::collections::HashMap<u32, std::os::fd::OwnedFd>,
    /// The binfmt_misc entries to register again once the tree is built (`binfmt.rs`).
    binfmt: Option<&'a crate::image::mnt::BinfmtImage>,
}

fn unsupported(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// Checks that this host can give the tree its mounts; `None` for an image without a
/// mount namespace of its own.
pub fn verify<'a>(
    image: &'a Image,
    opts: &RestoreOptions,
) -> Result<Option<Sources<'a>>, RestoreError> {
    let Some(mounts) = &image.mounts else {
        if let Some((k, _)) = opts.mnt_externals.first() {
            return Err(unsupported(format!(
                "--external mnt[{k}]:...: the image has no mount namespace of its own"
            )));
        }
        if let Some(root) = &opts.root {
            return Err(unsupported(format!(
                "--root {}: the image has no mount namespace of its own",
                root.display()
            )));
        }
        return Ok(None);
    };
    let s = Sources {
        image: mounts,
        dir: std::path::absolute(&image.dir).unwrap_or(image.dir.clone()),
        root: opts.root.clone(),
        externals: opts.mnt_externals.clone(),
        orphan: (image.orphan_pty.ptys.first()).map(|p| (p.devpts.clone(), p.index)),
        devpts_ptys: (image.pty_devpts.ptys.iter())
            .map(|p| {
                (
                    p.devpts.clone(),
                    p.index,
                    super::tty::master_access(image, p.index),
                )
            })
            .collect(),
        tmpfs: Default::default(),
        masters: Default::default(),
        binfmt: Some(&image.binfmt).filter(|b| !b.entries.is_empty()),
    };
    let mine = own_mountinfo()?;
    for m in &mounts.mounts {
        s.check(m, &mine)?;
    }
    let s = Sources {
        masters: propagation::external_masters(&s, &mine)?,
        ..s
    };
    crate::sys::mount::new_fs("tmpfs", &[])
        .map_err(|e| unsupported(format!("cannot rebuild the tree's mounts: {e}")))?;
    Ok(Some(s))
}

fn own_mountinfo() -> Result<Vec<MountInfo>, RestoreError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| unsupported(format!("read /proc/self/mountinfo: {e}")))?;
    crate::proc::mountinfo::parse(&text).map_err(|e| unsupported(e.to_string()))
}

impl Sources<'_> {
    /// The host path a mount is cloned from, `None` for one made anew.
    fn host_source(&self, m: &crate::image::mnt::Mount) -> Result<Option<String>, RestoreError> {
        Ok(match &m.how {
            How::Host => Some(m.mountpoint.clone()),
            How::HostBind { path } => Some(path.clone()),
            How::External { key } => {
                let found = self.externals.iter().find(|(k, _)| k == key);
                let (_, path) = found.ok_or_else(|| {
                    unsupported(format!(
                        "mount {} at {} is external (key {key}): give it with --external mnt[{key}]:PATH",
                        m.id, m.mountpoint
                    ))
                })?;
                Some(path.clone())
            }
            How::Root { hint } => {
                let root = self.root.as_ref().map(|r| r.to_string_lossy().into_owned());
                Some(root.or_else(|| hint.clone()).ok_or_else(|| {
                    unsupported(format!(
                        "the tree had its own root ({} {} at /): give it with --root PATH",
                        m.fstype, m.source
                    ))
                })?)
            }
            How::New | How::Tmpfs | How::Bind { .. } | How::Deleted { .. } => None,
        })
    }

    fn check(&self, m: &crate::image::mnt::Mount, mine: &[MountInfo]) -> Result<(), RestoreError> {
        let Some(path) = self.host_source(m)? else {
            return Ok(());
        };
        if m.how == How::Host {
            let same = |h: &MountInfo| {
                h.mountpoint == m.mountpoint && h.fstype == m.fstype && h.root == m.root
            };
            if !mine.iter().any(same) {
                return Err(unsupported(format!(
                    "mount {} at {} ({} {}) came from the dumper's namespace, but stasis has no \
                     such mount here; give it with --external, or restore where it is mounted",
                    m.id, m.mountpoint, m.fstype, m.source
                )));
            }
        }
        if !Path::new(&path).exists() {
            return Err(unsupported(format!(
                "mount {} at {}: its source {path} does not exist here",
                m.id, m.mountpoint
            )));
        }
        Ok(())
    }

    /// Where stasis finds `path` of the tree before the tree exists (to check the files it
    /// maps and holds), `None` for a file on a mount the restore makes anew.
    pub fn host_path(&self, path: &str) -> Option<String> {
        let inside = |mp: &str| {
            mp == "/" || path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
        };
        let m = (self.image.mounts.iter())
            .filter(|m| inside(&m.mountpoint))
            .max_by_key(|m| m.mountpoint.len())?;
        let src = self.host_source(m).ok().flatten()?;
        let rest = &path[m.mountpoint.trim_end_matches('/').len()..];
        Some(format!("{}{rest}", src.trim_end_matches('/')))
    }
}

/// The hook at the root's clone: moves the root into a mount namespace of its own (that
/// of the holder of the tree's user namespace, if it has one) and builds the image's
/// mount tree there.
///
/// Ordering requirements: right after the root's takeover, before its Mappings stage
/// (files are opened in the rebuilt tree) and before its children are forked (they
/// inherit the namespace and the cwd through which pages are read).
pub fn restore(
    child: &Child,
    sources: &Sources,
    userns: Option<&crate::restore::ns::user::Made>,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    let remote = child.remote();
    match userns {
        // The namespace must be owned by the tree's user namespace: its holder's.
        Some(made) => crate::restore::ns::user::enter_mnt(child, made)?,
        None => unshare_mounts(child)?,
    }
    let addr = child.put_str(0, &sources.dir.to_string_lossy())?;
    let r = remote.raw(libc::SYS_chdir, &[addr])?;
    if r < 0 {
        return Err(unsupported(format!(
            "chdir to the image directory in pid {pid}: errno {}",
            -r
        )));
    }
    CWD_MOVED.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut premade = procfs::make_in_root(sources, child)?;
    if userns.is_some() {
        premade.extend(tree::clone_host_sources(sources)?);
    }
    let outside = std::collections::HashMap::new();
    let build = || {
        tree::build(sources, premade, outside)?;
        match sources.binfmt {
            Some(entries) => binfmt::register(entries, sources.image),
            None => Ok(()),
        }
    };
    crate::sys::mount::in_mount_ns(pid, build)
        .map_err(|e| unsupported(format!("pid {pid}: {e}")))?
}

/// `unshare(CLONE_NEWNS)` run by `child`: a copy of its mount namespace of its own.
fn unshare_mounts(child: &Child) -> Result<(), RestoreError> {
    let r = (child.remote()).raw(libc::SYS_unshare, &[libc::CLONE_NEWNS as u64])?;
    if r < 0 {
        return Err(unsupported(format!(
            "unshare(CLONE_NEWNS) in pid {}: {}",
            child.pid(),
            nix::errno::Errno::from_raw(-r as i32).desc()
        )));
    }
    Ok(())
}

/// Where stasis reaches `path` of the tree as `child` sees it: through the child's
/// `/proc/PID/root` (its root is the tree's, in the tree's mount namespace if it has
/// one, until its Fs stage sets the saved root).
pub fn in_tree(child: &Child, path: &str) -> PathBuf {
    let rest = path.trim_start_matches('/');
    PathBuf::from(format!("/proc/{}/root", child.pid())).join(rest)
}

/// Set once the root was moved into the image directory: its cwd (and its children's) is
/// then not the restorer's, and the Fs stage must set the saved one whatever it is.
static CWD_MOVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the tree's processes were given the image directory as cwd.
pub fn cwd_moved() -> bool {
    CWD_MOVED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The name under which the child opens pages file `path` when the image has a mount
/// namespace: relative to its cwd, the image directory.
pub fn child_path(has_mounts: bool, path: &Path) -> PathBuf {
    match (has_mounts, path.file_name()) {
        (true, Some(name)) => PathBuf::from(name),
        _ => path.to_path_buf(),
    }
}
