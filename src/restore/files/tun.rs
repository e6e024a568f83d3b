//! `/dev/net/tun` files, the restore side of `dump/files/tun.rs`: opened by the process
//! itself (so in its network namespace, where the file looks its device up), then — from
//! stasis, on the same open file description (`pidfd_getfd`) — attached to its device
//! (`TUNSETIFF` with the device's flags), the device's settings set, its queue detached
//! again if it was, and the device made not persistent again when it was not
//! (`restore/ns/tun.rs` made it persistent so that it lived until its first file).
//!
//! The send buffer is the queue's own (a file attaches with the one it had, the maximum
//! for a new file), and setting it sets that of every queue attached then: an attached
//! file sets its own, which the dump checked is that of every attached queue of its
//! device; a detached one sets its own while attached, then theirs again once detached
//! (`TunFd::attached_sndbuf`).
//!
//! Ordering requirements: after the process's network namespace is filled (its devices
//! exist).

use std::os::fd::AsFd;

use super::Install;
use crate::image::files::TunFd;
use crate::restore::mm::open_in;
use crate::restore::RestoreError;
use crate::sys::tun::{self as sys, Setting};

pub fn restore(at: &Install, t: &TunFd) -> Result<(), RestoreError> {
    let (path, flags) = (&t.path, at.reopen_flags());
    // A node of another mount namespace of the tree is opened there (`mnt/nested.rs`).
    let there = crate::restore::mnt::nested::open_elsewhere(at.child, at.entry.fd, path, flags)?;
    let got = there.map_or_else(|| open_in(at.child, path, flags), Ok)?;
    if !t.device.is_empty() {
        attach(at, got, t)?;
    }
    at.place(got)
}

fn attach(at: &Install, got: u64, t: &TunFd) -> Result<(), RestoreError> {
    let err = |what: &str, e: nix::Error| RestoreError::Unsupported {
        what: format!(
            "fd {} of pid {}: tun device {}: {what}: {e}",
            at.entry.fd,
            at.child.pid(),
            t.device
        ),
    };
    let file = at.child.steal(got)?;
    let fd = file.as_fd();
    sys::set_iff(fd, &t.device, t.flags).map_err(|e| err("attach (TUNSETIFF)", e))?;
    crate::restore::ns::tun::apply(fd, &t.settings).map_err(|(what, e)| err(what, e))?;
    if t.detached {
        sys::set_queue(fd, sys::IFF_DETACH_QUEUE).map_err(|e| err("detach its queue", e))?;
        if let Some(theirs) = t.attached_sndbuf {
            Setting::SndBuf
                .set(fd, theirs)
                .map_err(|e| err("TUNSETSNDBUF", e))?;
        }
    }
    if !t.persist {
        sys::set_persist(fd, false).map_err(|e| err("TUNSETPERSIST 0", e))?;
    }
    Ok(())
}
