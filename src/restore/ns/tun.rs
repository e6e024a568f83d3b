//! The tun and tap devices of a network namespace of the tree, the restore side of
//! `dump/ns/tun.rs`: each is made by a file of stasis opened in the namespace (the
//! restoring thread is in it), under its index (`TUNSETIFINDEX`), with its flags
//! (`TUNSETIFF`), owner, group, the offloads it had in effect (`TUNSETOFFLOAD`,
//! `features.rs`) and — for one no file held — the settings stasis read at dump; then made
//! persistent and the file closed. Its address, MTU and flags follow as
//! for every link (`netlinks.rs`). The files of the tree attach to it later
//! (`restore/files/tun.rs`), the first of them making it not persistent again when it
//! was not: until then, no file holds it.
//!
//! Ordering requirements: while the namespace is filled, before the links are settled
//! (the MAC address of a tap is set there) and before any file of the tree is restored.

use std::os::fd::{AsFd, BorrowedFd};

use super::super::RestoreError;
use crate::image::netns::{Link, LinkMore};
use crate::sys::tun::{self as sys, Setting};

fn fail(link: &Link, what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!(
            "network namespace of the tree: tun device {}: {what}",
            link.name
        ),
    }
}

/// Makes the tun device `link` (`more.info` as `dump/ns/tun.rs` wrote it).
pub fn make(link: &Link, more: &LinkMore) -> Result<(), RestoreError> {
    let err = |what: &str, e: nix::Error| fail(link, format!("{what}: {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| fail(link, format!("open /dev/net/tun: {e}")))?;
    let fd = file.as_fd();
    sys::set_ifindex(fd, link.ifindex).map_err(|e| err("TUNSETIFINDEX", e))?;
    let flags = crate::dump::ns::tun::flags_of(&more.info);
    sys::set_iff(fd, &link.name, flags).map_err(|e| err("TUNSETIFF", e))?;
    let get = |k: &str| {
        more.info
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    };
    let number = |k: &str| -> Result<Option<u32>, RestoreError> {
        get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| fail(link, format!("bad {k} {v:?} in the image")))
            })
            .transpose()
    };
    if let Some(uid) = number("user")? {
        sys::set_owner(fd, uid).map_err(|e| err("TUNSETOWNER", e))?;
    }
    if let Some(gid) = number("group")? {
        sys::set_group(fd, gid).map_err(|e| err("TUNSETGROUP", e))?;
    }
    let saved: Vec<(String, i32)> = Setting::ALL
        .iter()
        .filter_map(|s| Some((s.name().to_string(), get(s.name())?.parse().ok()?)))
        .collect();
    apply(fd, &saved).map_err(|(what, e)| err(what, e))?;
    let offload = super::features::tun_offload(&more.features);
    if offload != 0 {
        sys::set_offload(fd, offload).map_err(|e| err("TUNSETOFFLOAD", e))?;
    }
    sys::set_persist(fd, true).map_err(|e| err("TUNSETPERSIST", e))
}

/// Sets the device-wide `settings` (name, value) through the attached file `fd`.
pub fn apply(
    fd: BorrowedFd<'_>,
    settings: &[(String, i32)],
) -> Result<(), (&'static str, nix::Error)> {
    for (name, value) in settings {
        let Some(s) = Setting::ALL.iter().find(|s| s.name() == name) else {
            return Err(("an unknown setting", nix::Error::EINVAL));
        };
        s.set(fd, *value).map_err(|e| (s.name(), e))?;
    }
    Ok(())
}
