//! A mount namespace made inside the tree (`mntns.img`, dumped by `dump/mnt/nested.rs`),
//! rebuilt by the process that made it: right after its takeover it leaves its parent's
//! namespace (`unshare(CLONE_NEWNS)`, injected: a copy of the parent's, already rebuilt),
//! and a thread of stasis builds the namespace's mounts there like the root's
//! (`tree.rs`), taking `How::Host` and `How::HostBind` mounts from that copy. A peer
//! group or master that also has mounts in a namespace built before is joined through a
//! mount of it there, opened beforehand through `/proc/PID/root` of a process of that
//! namespace (inside the new namespace, `/proc` is the tree's).
//!
//! Ordering requirements: after the parent's namespace is built (tree order: parents
//! first), before the process's Mappings and Files stages (its files are opened in its
//! namespace) and before its children are forked (they inherit it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use super::{procfs, tree, unsupported, Sources};
use crate::image::mnt::{How, Mount, MountsImage, NestedNs};
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// A namespace of the tree already built: a process of it (its pid as stasis sees it)
/// and its mounts.
pub struct Built<'a> {
    pub pid: i32,
    pub mounts: &'a MountsImage,
}

/// Builds `ns` in `child`, the process that made it. `built`: the tree's namespaces
/// built before (the root's first when it has one of its own).
pub fn restore(
    child: &Child,
    dir: &std::path::Path,
    ns: &NestedNs,
    built: &[Built],
) -> Result<(), RestoreError> {
    let outside = outside_groups(&ns.mounts.mounts, built)?;
    let all = &ns.mounts.mounts;
    let tmpfs = (all.iter().filter(|m| m.how == How::Tmpfs))
        .map(|m| Ok((m.id, super::tmpfs::load(dir, m, true)?)))
        .collect::<Result<_, RestoreError>>()?;
    super::unshare_mounts(child)?;
    let sources = Sources {
        image: &ns.mounts,
        dir: std::path::absolute(dir).unwrap_or(dir.to_path_buf()),
        root: None,
        externals: Vec::new(),
        orphan: None,
        devpts_ptys: Vec::new(),
        tmpfs,
        masters: Default::default(),
        binfmt: None,
    };
    let pid = child.pid();
    let premade = procfs::make_in_root(&sources, child)?;
    crate::sys::mount::in_mount_ns(pid, || tree::build(&sources, premade, outside))
        .map_err(|e| unsupported(format!("pid {pid}: {e}")))?
}

/// For each peer group of `mounts` (as peer or master) that a namespace built before
/// has mounts in: one of those mounts, the one showing most of its filesystem.
fn outside_groups(
    mounts: &[Mount],
    built: &[Built],
) -> Result<HashMap<u32, OwnedFd>, RestoreError> {
    let groups = mounts
        .iter()
        .flat_map(|m| m.shared.into_iter().chain(m.master));
    let mut out = HashMap::new();
    for g in groups {
        if out.contains_key(&g) {
            continue;
        }
        let found = built.iter().flat_map(|b| {
            (b.mounts.mounts.iter())
                .filter(move |m| m.shared == Some(g))
                .map(move |m| (b.pid, m))
        });
        let Some((pid, m)) = found.min_by_key(|(_, m)| m.root.len()) else {
            continue;
        };
        out.insert(g, open_mount(pid, m)?);
    }
    Ok(out)
}

/// `O_PATH` of mount `m` of the namespace of `pid`, at its mount point.
fn open_mount(pid: i32, m: &Mount) -> Result<OwnedFd, RestoreError> {
    let path = format!("/proc/{pid}/root{}", m.mountpoint);
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC;
    nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty()).map_err(|e| {
        unsupported(format!(
            "open mount {} at {} of pid {pid}'s namespace (peer group {:?}): {}",
            m.id,
            m.mountpoint,
            m.shared,
            e.desc()
        ))
    })
}

/// Fds open on a mount of another namespace of the tree than their process's: by (pid of
/// the process, fd) as stasis sees them, the pid of a process of that namespace. Set
/// once every process exists, before the Files stages.
static ELSEWHERE: std::sync::Mutex<Vec<((i32, i32), i32)>> = std::sync::Mutex::new(Vec::new());

/// Records where each fd of `elsewhere` is reopened (pids as stasis sees them).
pub fn set_elsewhere(fds: Vec<((i32, i32), i32)>) {
    *ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner()) = fds;
}

/// Whether fd `fd` of `pid` is open in another mount namespace than its process's.
pub fn is_elsewhere(pid: i32, fd: i32) -> bool {
    let found = ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    found.iter().any(|(k, _)| *k == (pid, fd))
}

/// The process of the namespace fd `fd` of `pid` was open in, if another than its own
/// (pids as stasis sees them).
pub fn elsewhere_pid(pid: i32, fd: i32) -> Option<i32> {
    let found = ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    found.iter().find(|(k, _)| *k == (pid, fd)).map(|(_, p)| *p)
}

/// Opens `path` in the namespace `fd` of `child` was open in, if that is another than
/// the child's; returns the fd number in the child.
pub fn open_elsewhere(
    child: &Child,
    fd: i32,
    path: &str,
    flags: i32,
) -> Result<Option<u64>, RestoreError> {
    let found = ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(&(_, ns_pid)) = found.iter().find(|(k, _)| *k == (child.pid(), fd)) else {
        return Ok(None);
    };
    drop(found);
    let file = super::maps::open_there(ns_pid, path, flags).map_err(|e| {
        unsupported(format!(
            "open {path} for fd {fd} of pid {} in the mount namespace of pid {ns_pid}: {}",
            child.pid(),
            e.desc()
        ))
    })?;
    let what = format!("fd {fd} ({path})");
    crate::restore::ns::handover::give_own(child, &file, &what).map(Some)
}

/// `child` enters the mount namespace of `of` (its ancestor, as stasis sees it: restored
/// before it), keeping its cwd (the image directory, through which its pages are read:
/// `setns` would move it to the namespace's root).
///
/// Ordering requirements: right after its takeover (as a namespace's maker unshares),
/// before its Mappings and Files stages and before its children are forked.
pub fn join(child: &Child, of: i32) -> Result<(), RestoreError> {
    let pid = child.pid();
    let path = format!("/proc/{of}/ns/mnt");
    let ns = std::fs::File::open(&path).map_err(|e| {
        unsupported(format!(
            "pid {pid} joins the mount namespace of {of}: {path}: {e}"
        ))
    })?;
    let fd = crate::restore::ns::handover::give_own(child, &ns, "a mount namespace")?;
    let remote = child.remote();
    let dot = child.put_str(0, ".")?;
    let flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    let cwd = remote.call(
        "openat(cwd)",
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, dot, flags],
    )?;
    let r = remote.raw(libc::SYS_setns, &[fd, libc::CLONE_NEWNS as u64])?;
    let back = remote.raw(libc::SYS_fchdir, &[cwd])?;
    remote.call("close", libc::SYS_close, &[fd])?;
    remote.call("close", libc::SYS_close, &[cwd])?;
    match (r, back) {
        (0, 0) => Ok(()),
        (0, e) | (e, _) => Err(unsupported(format!(
            "pid {pid} joins the mount namespace of {of} (setns, then fchdir back): {}",
            nix::errno::Errno::from_raw(-e as i32).desc()
        ))),
    }
}
