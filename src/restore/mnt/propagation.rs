//! Peer groups and masters among the rebuilt mounts, once every mount exists (they are
//! all private until then). A group's first mount is made shared; the others join it
//! (`MOVE_MOUNT_SET_GROUP`). A slave first joins its master's group, then becomes a
//! slave of it (`MS_SLAVE`), and only then shared in a group of its own if it was.
//! Groups are settled masters first; group numbers are new (the kernel picks them).
//! A group that also has mounts in a namespace of the tree built before (`outside`: a
//! mount of it there, by the dump's group number) is joined through that mount.

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
) -> Result<(), RestoreError> {
    // The mount standing for each settled group of the dump.
    let mut leader: HashMap<u32, BorrowedFd> =
        outside.iter().map(|(g, fd)| (*g, fd.as_fd())).collect();
    let mut done: Vec<u32> = Vec::new();
    let pending = |done: &Vec<u32>| mounts.iter().filter(|mt| !done.contains(&mt.id)).count();
    while pending(&done) > 0 {
        let before = done.len();
        for mt in mounts {
            if !done.contains(&mt.id) && settle(mt, fds, &mut leader)? {
                done.push(mt.id);
            }
        }
        if done.len() == before {
            return Err(unsupported("the mounts' masters form a cycle".into()));
        }
    }
    Ok(())
}

/// Settles one mount if its master's group is settled; `false` to come back later.
fn settle<'a>(
    mt: &Mount,
    fds: &'a HashMap<u32, OwnedFd>,
    leader: &mut HashMap<u32, BorrowedFd<'a>>,
) -> Result<bool, RestoreError> {
    let fd = fds[&mt.id].as_fd();
    let err = |e: m::MountError| unsupported(format!("mount {} at {}: {e}", mt.id, mt.mountpoint));
    if let Some(master) = mt.master {
        let Some(&from) = leader.get(&master) else {
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
