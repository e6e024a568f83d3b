//! The pty whose master was outside the tree (`orphan-pty.img`, a container runtime's
//! console): a new pair is made in the tree's devpts instance with the same number —
//! while the tree's own mount namespace is built, as soon as its devpts exists (a bind
//! mount of the node may follow), else through the restorer's `<devpts>/ptmx` — given the saved termios, window size and the
//! node's owner and mode; the slaves go to the [`Bank`] as every pty's do, and the
//! master to the front end (`Hooks::orphan_pts_master`: criu-compat sends it to the
//! runtime, which hands it to the container's console). The dump side is
//! `dump/orphan_pty.rs`.
//!
//! Ordering requirements: after the root's mount namespace is built and before its
//! session takes its controlling terminal.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use super::tty::{errno, ioctl_int, open_master_at, set_node, Bank};
use super::RestoreError;
use crate::image::orphan_pty::OrphanPty;
use crate::image::Image;
use crate::sys::socket::{ioctl_buf, TCSETS, TIOCSPTLCK, TIOCSWINSZ};

/// A master made while the tree's mounts were built (see [`premake`]), for [`build`].
static PREMADE: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Refuses, before any process exists, an image with such a pty when nobody takes the
/// new master (`allowed`: the front end asked for it).
pub fn check(image: &Image, allowed: bool) -> Result<(), RestoreError> {
    take_premade();
    match image.orphan_pty.ptys.first() {
        Some(p) if !allowed => Err(RestoreError::Unsupported {
            what: format!(
                "pts {} ({}) had its master outside the dumped tree (a container runtime's \
                 console); only a front end that takes the new master can restore it \
                 (criu-compat with orphan_pts_master, as runc and podman ask)",
                p.index, p.devpts
            ),
        }),
        _ => Ok(()),
    }
}

/// Makes the pair of the image's orphan pty, if it has one, for the tree of root `root`
/// (`own_mounts`: in a mount namespace of its own); the slaves go to `bank`, the master
/// is returned for the front end.
pub fn build(
    bank: &mut Bank,
    image: &Image,
    root: i32,
    own_mounts: bool,
) -> Result<Option<OwnedFd>, RestoreError> {
    let Some(p) = image.orphan_pty.ptys.first() else {
        return Ok(None);
    };
    let master = match take_premade() {
        Some(m) => m,
        None => {
            let ptmx = match own_mounts {
                true => format!("/proc/{root}/root{}/ptmx", p.devpts),
                false => format!("{}/ptmx", p.devpts),
            };
            open_master_at(nix::fcntl::AT_FDCWD, &ptmx, p.index, libc::O_RDWR)?
        }
    };
    let m = master.as_fd();
    ioctl_int(m, TIOCSPTLCK, 0, "TIOCSPTLCK")?;
    bank.open_slaves_of(image, p.index, m)?;
    if let Some(node) = image.tty.pty(p.index) {
        set_node(m, None, node)?;
    }
    set_state(m, p)?;
    Ok(Some(master))
}

/// Opens the master of pts `index` in the devpts instance `devpts` (a mount being built,
/// detached): its node exists from then on, so a bind mount of it (runc's
/// `/dev/console`) can be made; [`build`] finishes the pair.
pub fn premake(devpts: BorrowedFd<'_>, index: u32) -> Result<(), RestoreError> {
    let master = open_master_at(devpts, "ptmx", index, libc::O_RDWR)?;
    if let Ok(mut slot) = PREMADE.lock() {
        *slot = Some(master);
    }
    Ok(())
}

fn take_premade() -> Option<OwnedFd> {
    PREMADE.lock().ok().and_then(|mut s| s.take())
}

fn set_state(master: BorrowedFd<'_>, p: &OrphanPty) -> Result<(), RestoreError> {
    errno(ioctl_buf(master, TCSETS, &mut p.termios.clone()), "TCSETS")?;
    let mut ws: Vec<u8> = p.winsize.iter().flat_map(|w| w.to_ne_bytes()).collect();
    errno(ioctl_buf(master, TIOCSWINSZ, &mut ws), "TIOCSWINSZ")
}
