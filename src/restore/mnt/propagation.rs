//! Peer groups and masters among the rebuilt mounts, once every mount exists (they are
//! all private until then). A group's first mount is made shared; the others join it
//! (`MOVE_MOUNT_SET_GROUP`). A slave first joins its master's group, then becomes a
//! slave of it (`MS_SLAVE`), and only then shared in a group of its own if it was.
//! Groups are settled masters first; group numbers are new (the kernel picks them).
//! A group that also has mounts in a namespace of the tree built before (`outside`: a
//! mount of it there, by the dump's group number) is joined through that mount. A master
//! outside the tree (`masters`: by mount) is joined through the restorer's mount that the
//! mount's source is on ([`external_masters`]), as the dump checked or the user vouched.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::unsupported;
use crate::image::mnt::Mount;
use crate::restore::RestoreError;
use crate::sys::mount as m;

pub fn apply(
    mounts: &[Mount],
    fds: &HashMap<u32, OwnedFd>,
    outside: &HashMap<u32, OwnedFd>,
    masters: &HashMap<u32, OwnedFd>,
) -> Result<(), RestoreError> {
    // The mount standing for each settled group of the dump.
    let mut leader: HashMap<u32, BorrowedFd> =
        outside.iter().map(|(g, fd)| (*g, fd.as_fd())).collect();
    let mut done: Vec<u32> = Vec::new();
    let pending = |done: &Vec<u32>| mounts.iter().filter(|mt| !done.contains(&mt.id)).count();
    while pending(&done) > 0 {
        let before = done.len();
        for mt in mounts {
            let master = masters.get(&mt.id).map(|fd| fd.as_fd());
            if !done.contains(&mt.id) && settle(mt, fds, master, &mut leader)? {
                done.push(mt.id);
            }
        }
        if done.len() == before {
            return Err(unsupported("the mounts' masters form a cycle".into()));
        }
    }
    Ok(())
}

/// Settles one mount if its master's group is settled (or `external` stands for it);
/// `false` to come back later.
fn settle<'a>(
    mt: &Mount,
    fds: &'a HashMap<u32, OwnedFd>,
    external: Option<BorrowedFd<'a>>,
    leader: &mut HashMap<u32, BorrowedFd<'a>>,
) -> Result<bool, RestoreError> {
    let fd = fds[&mt.id].as_fd();
    let err = |e: m::MountError| unsupported(format!("mount {} at {}: {e}", mt.id, mt.mountpoint));
    if let Some(master) = mt.master {
        let Some(from) = external.or_else(|| leader.get(&master).copied()) else {
            return Ok(false);
        };
        if let Some(&peer) = mt.shared.and_then(|g| leader.get(&g)) {
            m::set_group(peer, fd, &mt.mountpoint).map_err(err)?;
            return Ok(true);
        }
        m::set_group(from, fd, &mt.mountpoint).map_err(err)?;
        m::set_attr(fd, 0, 0, libc::MS_SLAVE, &mt.mountpoint).map_err(err)?;
    }
    if let Some(g) = mt.shared {
        match leader.get(&g) {
            Some(&peer) if mt.master.is_none() => {
                m::set_group(peer, fd, &mt.mountpoint).map_err(err)?
            }
            _ => {
                m::set_attr(fd, 0, 0, libc::MS_SHARED, &mt.mountpoint).map_err(err)?;
                leader.insert(g, fd);
            }
        }
    }
    Ok(true)
}

/// For each mount of `s` slave of a peer group no mount of the image is in, the mount of
/// the restorer's namespace (`mine`) its source is on, opened (`O_PATH`): it must not be
/// private, as its group (or its master's) is the one the mount is made a slave of.
pub(super) fn external_masters(
    s: &super::Sources,
    mine: &[crate::proc::mountinfo::MountInfo],
) -> Result<HashMap<u32, OwnedFd>, RestoreError> {
    let mounts = &s.image.mounts;
    let led = |g: u32| mounts.iter().any(|o| o.shared == Some(g));
    let mut out = HashMap::new();
    for mt in mounts
        .iter()
        .filter(|mt| mt.master.is_some_and(|g| !led(g)))
    {
        let g = mt.master.unwrap_or_default();
        let what = format!(
            "mount {} at {} was a slave of peer group {g}, outside the tree",
            mt.id, mt.mountpoint
        );
        let path = s
            .host_source(mt)?
            .ok_or_else(|| unsupported(format!("{what}, and it has no source outside the tree")))?;
        let real = std::fs::canonicalize(&path)
            .map_err(|e| unsupported(format!("{what}: its source {path}: {e}")))?;
        let h = crate::proc::mountinfo::holding(mine, &real.to_string_lossy())
            .ok_or_else(|| unsupported(format!("{what}: no mount holds its source {path}")))?;
        if h.shared.is_none() && h.master.is_none() {
            return Err(unsupported(format!(
                "{what}; its source {path} is on mount {} at {}, which is private: make it \
                 shared (mount --make-shared {}) to give the mount its master",
                h.id, h.mountpoint, h.mountpoint
            )));
        }
        let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(h.mountpoint.as_str(), flags, nix::sys::stat::Mode::empty())
            .map_err(|e| unsupported(format!("{what}: open {}: {}", h.mountpoint, e.desc())))?;
        out.insert(mt.id, fd);
    }
    Ok(out)
}
