//! Building the image's mount tree inside the root's new namespace (run by a thread of
//! stasis that entered it, `sys::mount::in_mount_ns`).
//!
//! Ordering requirements: (1) the namespace is made private, so nothing done here
//! reaches the restorer's mounts; (2) every mount is made detached (a clone of a host
//! path, a new superblock, or a clone of a directory of an earlier mount's untouched
//! copy) before anything is attached, since attaching may hide host paths; a tmpfs is
//! filled before it is attached; (3) the root is attached over `/tmp`, then each mount
//! on its parent, parents first, each getting its own flags; (4) peer groups and
//! masters once every mount exists and the new root is the root (`pivot_root` into it
//! and the old one detached: every process of the namespace whose root was the old root
//! now has the new one; `pivot_root` refuses a shared new root); (5) unbindable last (an
//! unbindable mount cannot be a source).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{unsupported, Sources};
use crate::image::mnt::{How, Mount};
use crate::restore::RestoreError;
use crate::sys::mount as m;

/// Where the root is attached while the tree is built.
const STAGE: &str = "/tmp";

/// `premade`: mounts made elsewhere (`procfs.rs`), by image id; `outside`: a mount of
/// each peer group that also has mounts in a namespace of the tree built before.
pub fn build(
    s: &Sources,
    premade: HashMap<u32, OwnedFd>,
    outside: HashMap<u32, OwnedFd>,
) -> Result<(), RestoreError> {
    fn fail(what: &'static str) -> impl Fn(nix::errno::Errno) -> RestoreError {
        move |e| unsupported(format!("{what}: {}", e.desc()))
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(fail("make the new namespace private"))?;
    let mounts = &s.image.mounts;
    // What binds of deleted objects made goes once they are attached, or on failure.
    let mut made = Vec::new();
    let attached = make_all(s, mounts, premade, &mut made)
        .and_then(|fds| attach_all(mounts, &fds).map(|()| fds));
    let removed = made.into_iter().try_for_each(super::deleted::Made::remove);
    let fds = attached?;
    removed?;
    nix::unistd::fchdir(&fds[&mounts[0].id]).map_err(fail("fchdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root into the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detach the old root"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;
    // pivot_root refuses a shared new root: propagation comes once it is the root.
    super::propagation::apply(mounts, &fds, &outside, &s.masters)?;
    for mt in mounts.iter().filter(|mt| mt.unbindable) {
        m::set_attr(
            fds[&mt.id].as_fd(),
            0,
            0,
            libc::MS_UNBINDABLE,
            &mt.mountpoint,
        )
        .map_err(|e| unsupported(e.to_string()))?;
    }
    Ok(())
}

/// Clones of every mount that comes from the restorer's namespace, made in it (before
/// the tree's namespace is entered), by image id: the tree's namespace, when owned by
/// its own user namespace, is a copy whose mounts are locked together, which cannot be
/// cloned one by one.
pub fn clone_host_sources(s: &Sources) -> Result<HashMap<u32, OwnedFd>, RestoreError> {
    let mut fds = HashMap::new();
    for mt in &s.image.mounts {
        if let Some(path) = s.host_source(mt)? {
            fds.insert(mt.id, m::clone_tree(None, &path).map_err(merr)?);
        }
    }
    Ok(fds)
}

fn merr(e: m::MountError) -> RestoreError {
    unsupported(e.to_string())
}

/// Every mount, detached, by image id.
fn make_all(
    s: &Sources,
    mounts: &[Mount],
    mut premade: HashMap<u32, OwnedFd>,
    made: &mut Vec<super::deleted::Made>,
) -> Result<HashMap<u32, OwnedFd>, RestoreError> {
    let sources: std::collections::HashSet<u32> = (mounts.iter())
        .filter_map(|mt| match mt.how {
            How::Bind { of, .. } | How::Deleted { of, .. } => Some(of),
            _ => None,
        })
        .collect();
    let mut fds = HashMap::new();
    let mut pristine: HashMap<u32, OwnedFd> = HashMap::new();
    // The dump judged binds in this order: each bind's source comes before it.
    let order = crate::image::mnt::shallow_first(mounts, |m: &Mount| &m.root);
    let (news, binds): (Vec<&Mount>, Vec<&Mount>) = (order.into_iter())
        .partition(|mt| !matches!(mt.how, How::Bind { .. } | How::Deleted { .. }));
    for mt in news.into_iter().chain(binds) {
        let fd = match premade.remove(&mt.id) {
            Some(fd) => fd,
            None => make(s, mt, &pristine, made)?,
        };
        if mt.fstype == "devpts" {
            premake_ptys(s, mt, fd.as_fd(), sources.contains(&mt.id))?;
        }
        if sources.contains(&mt.id) {
            pristine.insert(mt.id, m::clone_tree(Some(fd.as_fd()), "").map_err(merr)?);
        }
        fds.insert(mt.id, fd);
    }
    Ok(fds)
}

/// The ptys of the new devpts `mt` made before anything is bound from it (`fd`): the
/// orphan pty, and, when it is the source of a bind mount (`bound`), each of the tree's
/// own (a bind of a node needs the node).
fn premake_ptys(
    s: &Sources,
    mt: &Mount,
    fd: std::os::fd::BorrowedFd<'_>,
    bound: bool,
) -> Result<(), RestoreError> {
    let orphan = s.orphan.as_ref();
    if let Some((_, index)) = orphan.filter(|(at, _)| *at == mt.mountpoint) {
        super::super::orphan_pty::premake(fd, *index)?;
    }
    let own = (s.devpts_ptys.iter()).filter(|(at, ..)| bound && *at == mt.mountpoint);
    for (at, index, access) in own {
        super::super::pty_devpts::premake(fd, at, *index, *access)?;
    }
    Ok(())
}

/// Mount `mt`, detached; what a bind of a deleted object made is added to `made`.
fn make(
    s: &Sources,
    mt: &Mount,
    pristine: &HashMap<u32, OwnedFd>,
    made: &mut Vec<super::deleted::Made>,
) -> Result<OwnedFd, RestoreError> {
    if let Some(path) = s.host_source(mt)? {
        return m::clone_tree(None, &path).map_err(merr);
    }
    match &mt.how {
        How::Bind { of, rel } => m::clone_tree(Some(source(pristine, *of, mt)?), rel).map_err(merr),
        How::Deleted { of, rel, gone } => {
            let (fd, what) = super::deleted::bind(source(pristine, *of, mt)?, mt, rel, gone)?;
            made.push(what);
            Ok(fd)
        }
        How::Tmpfs => {
            let (opts, ro) = super_opts(mt);
            let fd = m::new_fs("tmpfs", &opts).map_err(merr)?;
            match s.tmpfs.get(&mt.id) {
                Some(image) => super::tmpfs::fill(image, mt, &fd)?,
                None => super::tmpfs::fill(&super::tmpfs::load(&s.dir, mt, false)?, mt, &fd)?,
            }
            if ro {
                m::superblock_readonly(fd.as_fd(), &mt.mountpoint).map_err(merr)?;
            }
            Ok(fd)
        }
        _ => {
            let (opts, ro) = super_opts(mt);
            let mut opts = opts;
            if ro {
                opts.push("ro".into());
            }
            let fd = m::new_fs(&mt.fstype, &opts).map_err(merr)?;
            match mt.root.trim_start_matches('/') {
                "" => Ok(fd),
                rel => m::clone_tree(Some(fd.as_fd()), rel).map_err(merr),
            }
        }
    }
}

/// The untouched clone of mount `of`, which `mt` is bound from.
fn source<'a>(
    pristine: &'a HashMap<u32, OwnedFd>,
    of: u32,
    mt: &Mount,
) -> Result<std::os::fd::BorrowedFd<'a>, RestoreError> {
    pristine.get(&of).map(|fd| fd.as_fd()).ok_or_else(|| {
        unsupported(format!(
            "mount {} at {}: its source mount {of} is not made yet",
            mt.id, mt.mountpoint
        ))
    })
}

/// The superblock options to give again (`rw`/`ro` apart, and those the kernel shows
/// but takes from elsewhere), and whether it was read-only.
pub(super) fn super_opts(mt: &Mount) -> (Vec<String>, bool) {
    let opts = &mt.super_opts;
    let ro = opts.split(',').any(|o| o == "ro");
    let keep = |o: &&str| !matches!(*o, "rw" | "ro" | "seclabel" | "");
    let mut out: Vec<String> = vec![format!("source={}", mt.source)];
    out.extend(opts.split(',').filter(keep).map(String::from));
    (out, ro)
}

/// Attaches the root at the stage, then each mount on its parent, with its flags.
///
/// Ordering requirements: parents first; a mount is reached by its path from its
/// parent's root, so a sibling mounted below another sibling's mount point (hidden by
/// it, as a propagated mount may be) is attached before that sibling.
fn attach_all(mounts: &[Mount], fds: &HashMap<u32, OwnedFd>) -> Result<(), RestoreError> {
    let root = &mounts[0];
    m::attach(fds[&root.id].as_fd(), None, STAGE).map_err(merr)?;
    set_flags(root, &fds[&root.id])?;
    let mut done = std::collections::HashSet::from([root.id]);
    for mt in &mounts[1..] {
        let hidden: Vec<&Mount> = (mounts.iter())
            .filter(|c| c.parent == mt.parent && !done.contains(&c.id))
            .filter(|c| below(&c.mountpoint, &mt.mountpoint))
            .collect();
        for c in hidden.into_iter().chain(std::iter::once(mt)) {
            if done.insert(c.id) {
                attach(mounts, c, fds)?;
            }
        }
    }
    Ok(())
}

/// Whether `path` is strictly below `base`.
fn below(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|r| r.starts_with('/') && r.len() > 1)
}

fn attach(mounts: &[Mount], mt: &Mount, fds: &HashMap<u32, OwnedFd>) -> Result<(), RestoreError> {
    let parent = mounts.iter().find(|p| p.id == mt.parent).ok_or_else(|| {
        unsupported(format!(
            "mount {} at {} has no parent in the image",
            mt.id, mt.mountpoint
        ))
    })?;
    let rel = relative(&mt.mountpoint, &parent.mountpoint);
    m::attach(fds[&mt.id].as_fd(), Some(fds[&parent.id].as_fd()), &rel).map_err(merr)?;
    set_flags(mt, &fds[&mt.id])
}

/// `path` relative to `base` (a mount point below it, or `base` itself: empty).
fn relative(path: &str, base: &str) -> String {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .unwrap_or(path)
        .trim_start_matches('/')
        .to_string()
}

/// The per-mount flags of `mnt_opts` (`ro`, `nosuid`, `nodev`, `noexec`, atime,
/// `nodiratime`, `nosymfollow`), set and every other cleared.
fn set_flags(mt: &Mount, fd: &OwnedFd) -> Result<(), RestoreError> {
    let (set, clr) = attr_bits(&mt.mnt_opts);
    m::set_attr(fd.as_fd(), set, clr, 0, &mt.mountpoint).map_err(merr)
}

/// The `MOUNT_ATTR_*` bits to set and to clear for the per-mount options `mnt_opts`. The
/// kernel shows `relatime` or `noatime`, and nothing for strictatime (runc's `/dev`).
fn attr_bits(mnt_opts: &str) -> (u64, u64) {
    let opts: Vec<&str> = mnt_opts.split(',').collect();
    let mut set = match ["relatime", "noatime"].iter().any(|a| opts.contains(a)) {
        true => 0,
        false => m::ATTR_STRICTATIME,
    };
    for o in opts {
        set |= match o {
            "ro" => m::ATTR_RDONLY,
            "nosuid" => m::ATTR_NOSUID,
            "nodev" => m::ATTR_NODEV,
            "noexec" => m::ATTR_NOEXEC,
            "noatime" => m::ATTR_NOATIME,
            "strictatime" => m::ATTR_STRICTATIME,
            "nodiratime" => m::ATTR_NODIRATIME,
            "nosymfollow" => m::ATTR_NOSYMFOLLOW,
            _ => 0,
        };
    }
    let all = m::ATTR_RDONLY
        | m::ATTR_NOSUID
        | m::ATTR_NODEV
        | m::ATTR_NOEXEC
        | m::ATTR_ATIME_MASK
        | m::ATTR_NODIRATIME
        | m::ATTR_NOSYMFOLLOW;
    (set, (all & !set) | m::ATTR_ATIME_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictatime_is_shown_as_no_atime_option() {
        let (set, clr) = attr_bits("rw,nosuid");
        assert_eq!(set, m::ATTR_NOSUID | m::ATTR_STRICTATIME);
        assert_ne!(clr & m::ATTR_ATIME_MASK, 0);
        assert_eq!(attr_bits("rw,relatime").0, 0);
        assert_eq!(attr_bits("ro,noatime").0, m::ATTR_RDONLY | m::ATTR_NOATIME);
    }

    #[test]
    fn relative_mount_points() {
        assert_eq!(relative("/a/b", "/"), "a/b");
        assert_eq!(relative("/a/b", "/a"), "b");
        assert_eq!(relative("/a", "/a"), "");
    }

    #[test]
    fn super_options_drop_rw_and_keep_the_rest() {
        let mt = Mount {
            id: 1,
            parent: 0,
            dev: (0, 1),
            mountpoint: "/t".into(),
            root: "/".into(),
            fstype: "tmpfs".into(),
            source: "none".into(),
            mnt_opts: "rw".into(),
            super_opts: "ro,size=64k,mode=755".into(),
            shared: None,
            master: None,
            unbindable: false,
            how: How::Tmpfs,
        };
        let (o, ro) = super_opts(&mt);
        assert!(ro);
        assert_eq!(o, vec!["source=none", "size=64k", "mode=755"]);
    }
}
