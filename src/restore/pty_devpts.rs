//! The ptys of another devpts instance than the host's (`pty-devpts.img`, a container's
//! own `/dev/pts`): each pair is made through the `ptmx` of that devpts mount as the
//! restored tree sees it (`/proc/<root>/root<devpts>` when the tree has its mount
//! namespace rebuilt, else the path itself) with the saved number, then finished as
//! every pair of the [`Bank`] is. The node `<devpts>/<index>` is checked to be the new
//! pty's, so inside the tree `/dev/pts/N` names the same pty again. The dump side is
//! `dump/pty_devpts.rs`.
//!
//! Ordering requirements: after the root's mount namespace is built and before its
//! session takes its controlling terminal.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::tty::{errno, open_master_at, Bank};
use super::RestoreError;
use crate::image::pty_devpts::PtyDevpts;
use crate::image::Image;

/// `DEVPTS_SUPER_MAGIC` (`linux/magic.h`).
const DEVPTS_MAGIC: i64 = 0x1cd1;

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
        (bank.build_pair(image, p.index, |access| open_master(&dir, p, access))).map_err(|e| {
            RestoreError::Unsupported {
                what: format!("rebuild pts {} of the devpts at {}: {e}", p.index, p.devpts),
            }
        })?;
    }
    Ok(())
}

/// A new master of pts `p.index` through `<dir>/ptmx`, checked to be made in the devpts
/// mounted at `dir`: its node there is the new pty.
fn open_master(dir: &str, p: &PtyDevpts, access: i32) -> Result<OwnedFd, RestoreError> {
    let ptmx = format!("{dir}/ptmx");
    let master = open_master_at(nix::fcntl::AT_FDCWD, &ptmx, p.index, access)?;
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
