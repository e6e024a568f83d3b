//! The devpts instance of each pseudo-terminal the tree holds (a fd on its master or a
//! slave), by the superblock device of its node: a slave fd's own `st_dev`, a master's
//! that of its slave node reached through the master itself. Ptys of the instance
//! the restorer's `/dev/ptmx` reaches (the dumper's `/dev/pts`) are left out, as every
//! pty was before; each other one is recorded with a mount of its instance that the
//! tree's root sees (`/dev/pts` of a container's own devpts). Written to
//! `pty-devpts.img`; the restore side is `restore/pty_devpts.rs`.
//!
//! Refused, naming the fds: one pts number in two instances (the image keys ptys by
//! number), an instance the tree's mount namespace shows nowhere, a master whose devpts
//! is no longer the one beside the `ptmx` it was opened by.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::files::pty::{is_master, master_index, master_node, slave_index};
use super::DumpError;
use crate::image::files::{FdKind, FilesImage};
use crate::image::pty_devpts::{PtyDevpts, PtyDevptsImage};
use crate::proc::mountinfo::MountInfo;

/// A fd of the tree on a pty, and the device of its pty's devpts instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PtyFd {
    pid: i32,
    fd: i32,
    index: u32,
    dev: u64,
}

/// The record for the ptys held by the processes of `tables` (the tree of root `root`,
/// with the fd tables the dump read); `orphans`: the pts numbers whose master is outside
/// (their devpts is `orphan-pty.img`'s).
pub fn collect(
    root: i32,
    tables: &[(i32, FilesImage)],
    orphans: &[u32],
) -> Result<PtyDevptsImage, DumpError> {
    let mut all = Vec::new();
    if !tables.iter().any(|(_, files)| holds_pty(files)) {
        // No fd of the tree on a pty: nothing to walk /proc for.
        return Ok(PtyDevptsImage::default());
    }
    for (pid, _) in tables {
        pty_fds(*pid, &mut all)?;
    }
    let host = std::fs::metadata("/dev/pts").ok().map(|m| m.dev());
    let mut mounts = None;
    let mut ptys = Vec::new();
    for f in instances(&all)?.into_values() {
        if orphans.contains(&f.index) || Some(f.dev) == host {
            continue;
        }
        let mounts = match &mut mounts {
            Some(m) => m,
            None => mounts.insert(super::mnt::read_mountinfo(root)?),
        };
        let devpts = mount_of(root, mounts, &f)?;
        ptys.push(PtyDevpts {
            index: f.index,
            devpts,
        });
    }
    Ok(PtyDevptsImage { ptys })
}

/// Whether a fd table holds a terminal (a pty's master or slave, of any devpts
/// instance, or the invoking terminal); without one, /proc is not walked.
fn holds_pty(files: &FilesImage) -> bool {
    files.fds.iter().any(|e| {
        matches!(
            e.kind,
            FdKind::PtyMaster(_)
                | FdKind::PtySlave { .. }
                | FdKind::Tty(_)
                | FdKind::ControllingTty
        )
    })
}

/// The first fd of each pts number; refused when two fds of one number are on ptys of
/// two instances.
fn instances(all: &[PtyFd]) -> Result<BTreeMap<u32, PtyFd>, DumpError> {
    let mut by: BTreeMap<u32, PtyFd> = BTreeMap::new();
    for f in all {
        match by.get(&f.index) {
            Some(first) if first.dev != f.dev => {
                return Err(DumpError::unsupported(format!(
                    "fd {} of pid {} and fd {} of pid {} are both pts {}, of two devpts instances \
                     (devices {} and {}); stasis keys the tree's ptys by number and cannot restore both",
                    first.fd,
                    first.pid,
                    f.fd,
                    f.pid,
                    f.index,
                    dev_name(first.dev),
                    dev_name(f.dev)
                )))
            }
            Some(_) => {}
            None => {
                by.insert(f.index, *f);
            }
        }
    }
    Ok(by)
}

/// Every fd of `pid` on a pty master or slave.
fn pty_fds(pid: i32, out: &mut Vec<PtyFd>) -> Result<(), DumpError> {
    let dir = crate::proc::FdDir::open(pid)?;
    for fd in crate::proc::fds(pid)? {
        let Ok(link) = dir.link(fd) else { continue };
        let link = link.to_string_lossy();
        if is_master(&link) {
            let Some(index) = dir.info(fd).ok().and_then(|i| master_index(&i.extra)) else {
                continue;
            };
            let dev = master_dev(pid, fd, index)?;
            out.push(PtyFd {
                pid,
                fd,
                index,
                dev,
            });
            continue;
        }
        let Ok(st) = dir.stat(fd) else { continue };
        let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        if let Some(index) = slave_index(st.st_rdev).filter(|_| is_chr) {
            out.push(PtyFd {
                pid,
                fd,
                index,
                dev: st.st_dev,
            });
        }
    }
    Ok(())
}

/// The devpts instance of the master at fd `fd` of `pid`: that of its slave node
/// (reached through the master). Refused when the devpts beside the `ptmx` it was
/// opened by is another instance now (a devpts mounted over it since): the restore could
/// not tell which instance to make it in.
fn master_dev(pid: i32, fd: i32, index: u32) -> Result<u64, DumpError> {
    match master_node(pid, fd) {
        Ok(st) => Ok(st.st_dev),
        Err(nix::errno::Errno::ENODEV) => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is the master of pts {index} of a devpts instance that is \
             no longer mounted beside the ptmx it was opened by; stasis cannot tell which \
             devpts to make it in"
        ))),
        Err(e) => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid} (pty master of pts {index}): the slave node: {e}"
        ))),
    }
}

/// A mount of `f`'s devpts instance that the tree's root reaches by its path (not
/// hidden under another mount), `/dev/pts` first.
fn mount_of(root: i32, mounts: &[MountInfo], f: &PtyFd) -> Result<String, DumpError> {
    let dev = (libc::major(f.dev), libc::minor(f.dev));
    let mut shown: Vec<&MountInfo> = (mounts.iter())
        .filter(|m| m.fstype == "devpts" && m.dev == dev && m.root == "/")
        .collect();
    shown.sort_by_key(|m| m.mountpoint != "/dev/pts");
    let reached = |m: &&MountInfo| {
        std::fs::metadata(format!("/proc/{root}/root{}", m.mountpoint))
            .is_ok_and(|meta| meta.dev() == f.dev)
    };
    match shown.into_iter().find(reached) {
        Some(m) => Ok(m.mountpoint.clone()),
        None => Err(DumpError::unsupported(format!(
            "fd {} of pid {} is pts {} of a devpts instance (device {}) that the mount \
             namespace of pid {root} shows nowhere; stasis cannot make it there again",
            f.fd,
            f.pid,
            f.index,
            dev_name(f.dev)
        ))),
    }
}

fn dev_name(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn pty(pid: i32, fd: i32, index: u32, dev: u64) -> PtyFd {
        PtyFd {
            pid,
            fd,
            index,
            dev,
        }
    }

    #[test]
    fn one_number_in_two_instances_is_refused_naming_both_fds() {
        let ok = [pty(1, 3, 0, 7), pty(2, 0, 0, 7), pty(2, 4, 1, 9)];
        let by = instances(&ok).unwrap();
        assert_eq!(by.len(), 2);
        assert_eq!(by[&0], ok[0]);
        let bad = [pty(1, 3, 0, 7), pty(2, 5, 0, 9)];
        let err = instances(&bad).unwrap_err().to_string();
        assert!(
            err.contains("fd 3 of pid 1 and fd 5 of pid 2 are both pts 0"),
            "{err}"
        );
    }
}
