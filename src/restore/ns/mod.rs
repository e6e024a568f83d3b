//! The namespaces a restored tree gets, the restore side of `dump/ns/`: the flags of the
//! root's `clone3` (one hook: [`root_clone_flags`]; a new pid, UTS and IPC namespace as
//! the image says, and a network namespace: `net.rs`), what stasis sets up before it ([`before_root`]: a time namespace) and
//! what is set in them once the root exists ([`after_root`]).
//! `pid.rs` gives every task its ids in the nested pid namespaces; `uts.rs` the names.
//!
//! Ordering requirements: the root's namespaces are made by its `clone3`, before anything
//! of it is restored; each nested pid namespace by the `clone3` of its init, run by its
//! parent (`child::fork_many`).

pub mod features;
pub mod handover;
pub mod net;
pub mod net_join;
pub mod net_nested;
pub mod net_sockets;
pub mod netlinks;
pub mod pid;
pub mod time;
pub mod tun;
pub mod user;
pub mod uts;

use super::child::Child;
use super::RestoreError;
use crate::image::load::Image;

/// The namespace flags of the root's `clone3` (`joined_net`: it is cloned in a network
/// namespace given at restore).
pub fn root_clone_flags(image: &Image, joined_net: bool) -> u64 {
    let root = image.inventory.root_pid;
    let mut flags = 0;
    if image.netns.is_some() && !joined_net {
        flags |= libc::CLONE_NEWNET as u64;
    }
    if image.sysv.ns == crate::image::sysv::IpcNs::Own {
        flags |= libc::CLONE_NEWIPC as u64;
    }
    if image.ns.uts.is_some() {
        flags |= libc::CLONE_NEWUTS as u64;
    }
    flags | pid::clone_flags(root)
}

/// What must be set up in stasis itself before the root's `clone3` (a time namespace
/// for its children, with the saved clocks); dropped once the root exists.
pub fn before_root(image: &Image) -> Result<Option<time::ForRoot>, RestoreError> {
    image.ns.time.as_ref().map(time::enter_for_root).transpose()
}

/// Fills the namespaces the root was created in (their names), before any of its
/// children exists.
pub fn after_root(image: &Image, root: &Child) -> Result<(), RestoreError> {
    match &image.ns.uts {
        Some(names) => uts::restore(root, names),
        None => Ok(()),
    }
}
