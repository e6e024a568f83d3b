//! The ptys of another devpts instance than the host's (`pty-devpts.img`, a container's
//! own `/dev/pts`): each pair is made through the `ptmx` of that devpts mount as the
//! restored tree sees it (`/proc/<root>/root<devpts>` when the tree has its mount
//! namespace rebuilt, else the path itself) with the saved number, then finished as
//! every pair of the [`Bank`] is. The node `<devpts>/<index>` is checked to be the new
//! pty's, so inside the tree `/dev/pts/N` names the same pty again. The dump side is
//! `dump/pty_devpts.rs`.
//!
//! A pty of a devpts that a bind mount of the tree takes its source from (CRIU's
//! pty-console: `/dev/console` bound from `/dev/pts/0`) has its master opened while the
//! mounts are built, as soon as that devpts exists ([`premake`]): the bind needs the node.
//!
//! Ordering requirements: after the root's mount namespace is built and before its
//! session takes its controlling terminal.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::tty::{errno, open_master_at, Bank};
use super::RestoreError;
use crate::image::pty_devpts::PtyDevpts;
use crate::image::Image;

/// `DEVPTS_SUPER_MAGIC` (`linux/magic.h`).
const DEVPTS_MAGIC: i64 = 0x1cd1;

/// Masters made while the tree's mounts were built ([`premake`]), by devpts mount point
/// and pts number, for [`build`].
static PREMADE: Mutex<Option<HashMap<(String, u32), OwnedFd>>> = Mutex::new(None);

/// Opens the master of pts `index` (access mode `access`) in the devpts instance
/// `devpts` (a mount being built, detached, that the tree sees at `at`): its node exists
/// from then on, so a bind mount of it can be made; [`build`] finishes the pair.
pub fn premake(
    devpts: BorrowedFd<'_>,
    at: &str,
    index: u32,
    access: i32,
) -> Result<(), RestoreError> {
    let master = open_master_at(devpts, "ptmx", index, access)?;
    if let Ok(mut slot) = PREMADE.lock() {
        slot.get_or_insert_with(HashMap::new)
            .insert((at.to_string(), index), master);
    }
    Ok(())
}

fn take_premade(at: &str, index: u32) -> Option<OwnedFd> {
    let mut slot = PREMADE.lock().ok()?;
    slot.as_mut()?.remove(&(at.to_string(), index))
}

/// Makes every pair of the record for the tree of root `root` (`own_mounts`: in a
/// mount namespace of its own); the fds go to `bank`.
pub fn build(
    bank: &mut Bank,
    image: &Image,
    root: i32,
    own_mounts: bool,
) -> Result<(), RestoreError> {
    for p in &image.pty_devpts.ptys {
        let dir = match own_mounts {
            true => format!("/proc/{root}/root{}", p.devpts),
            false => p.devpts.clone(),
        };
        let open = |access| match take_premade(&p.devpts, p.index) {
            Some(master) => check_made(&dir, p, master),
            None => open_master(&dir, p, access),
        };
        (bank.build_pair(image, p.index, open)).map_err(|e| RestoreError::Unsupported {
            what: format!("rebuild pts {} of the devpts at {}: {e}", p.index, p.devpts),
        })?;
    }
    Ok(())
}

/// A new master of pts `p.index` through `<dir>/ptmx`, checked to be made in the devpts
/// mounted at `dir`: its node there is the new pty.
fn open_master(dir: &str, p: &PtyDevpts, access: i32) -> Result<OwnedFd, RestoreError> {
    let ptmx = format!("{dir}/ptmx");
    let master = open_master_at(nix::fcntl::AT_FDCWD, &ptmx, p.index, access)?;
    check_made(dir, p, master)
}

/// `master`, checked to be made in the devpts mounted at `dir`: its node there is the
/// new pty.
fn check_made(dir: &str, p: &PtyDevpts, master: OwnedFd) -> Result<OwnedFd, RestoreError> {
    let fs = errno(nix::sys::statfs::fstatfs(master.as_fd()), "fstatfs ptmx")?;
    let own = errno(nix::sys::stat::fstat(master.as_fd()), "fstat ptmx")?;
    let node = format!("{dir}/{}", p.index);
    let want = libc::makedev(136 + p.index / 256, p.index % 256);
    let same = std::fs::metadata(&node).is_ok_and(|n| n.dev() == own.st_dev && n.rdev() == want);
    if fs.filesystem_type().0 as i64 != DEVPTS_MAGIC || !same {
        return Err(RestoreError::Unsupported {
            what: format!(
                "{} is not a devpts mount whose node {}/{} is the new pty",
                p.devpts, p.devpts, p.index
            ),
        });
    }
    Ok(master)
}
