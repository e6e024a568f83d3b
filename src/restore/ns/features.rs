//! The changeable features of the links of a new network namespace (`ethtool -k`), the
//! restore side of `dump/ns/netlinks.rs`'s [`features`](crate::dump::ns::netlinks::features):
//! once every link is made, enslaved and settled (`netlinks.rs`; a bridge's features
//! follow its ports, a macvlan's its lower link), each feature asked for otherwise than a
//! new link asks is asked for as saved (`ETHTOOL_SFEATURES`, as `ethtool -K` does); then
//! every saved feature must be in effect as it was, or the restore fails naming the link
//! and the features. A tun device's offloads are given by `tun.rs` when it is made
//! ([`tun_offload`]): the kernel keeps those off whatever is asked until the device's
//! reader takes them (`TUNSETOFFLOAD`).

use std::os::fd::{AsFd, OwnedFd};

use super::super::RestoreError;
use crate::image::netns::{LinkFeature, LinkMore};
use crate::sys::ethtool;
use crate::sys::tun as sys;

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("network namespace of the tree: {what}"),
    }
}

/// Gives the links of `links` (the namespace the thread is in) their saved features.
pub fn apply(links: &[LinkMore]) -> Result<(), RestoreError> {
    let links: Vec<&LinkMore> = links.iter().filter(|l| !l.features.is_empty()).collect();
    if links.is_empty() {
        return Ok(());
    }
    let sock = socket()?;
    for l in &links {
        request(sock.as_fd(), l)?;
    }
    // Checked once all are asked: one link's features may follow another's.
    for l in &links {
        check(sock.as_fd(), l)?;
    }
    Ok(())
}

fn socket() -> Result<OwnedFd, RestoreError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail(format!("a socket to set its links' features: {e}")))
}

fn read(
    sock: std::os::fd::BorrowedFd<'_>,
    name: &str,
) -> Result<Vec<ethtool::Feature>, RestoreError> {
    ethtool::features(sock, name).map_err(|e| {
        fail(format!(
            "link {name}: read its features (ETHTOOL_GFEATURES): {e}"
        ))
    })
}

/// Asks for each feature of `l` that the new link asks for otherwise.
fn request(sock: std::os::fd::BorrowedFd<'_>, l: &LinkMore) -> Result<(), RestoreError> {
    let now = read(sock, &l.name)?;
    let wanted: Vec<(&str, bool)> = (l.features.iter())
        .filter(|f| {
            now.iter()
                .any(|n| n.name == f.name && n.available && n.requested != f.requested)
        })
        .map(|f| (f.name.as_str(), f.requested))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    ethtool::request(sock, &l.name, &wanted).map_err(|e| {
        let names: Vec<&str> = wanted.iter().map(|w| w.0).collect();
        fail(format!(
            "link {}: set its features {} (ETHTOOL_SFEATURES): {e}",
            l.name,
            names.join(", ")
        ))
    })
}

/// Fails unless every saved feature of `l` is in effect as it was.
fn check(sock: std::os::fd::BorrowedFd<'_>, l: &LinkMore) -> Result<(), RestoreError> {
    let now = read(sock, &l.name)?;
    let differ: Vec<String> = (l.features.iter())
        .filter(|f| !now.iter().any(|n| n.name == f.name && n.active == f.active))
        .map(|f| format!("{} {}", f.name, if f.active { "on" } else { "off" }))
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(fail(format!(
        "link {}: features in effect at dump that the new link does not take: {}",
        l.name,
        differ.join(", ")
    )))
}

/// The kernel's names of the features `TUNSETOFFLOAD` gives, with its flags for each.
const TUN_OFFLOADS: [(&str, u32); 5] = [
    ("tx-checksum-ip-generic", sys::TUN_F_CSUM),
    ("tx-tcp-segmentation", sys::TUN_F_TSO4),
    ("tx-tcp6-segmentation", sys::TUN_F_TSO6),
    ("tx-tcp-ecn-segmentation", sys::TUN_F_TSO_ECN),
    ("tx-udp-segmentation", sys::TUN_F_USO4 | sys::TUN_F_USO6),
];

/// The `TUNSETOFFLOAD` flags that give a tun device the offloads `features` had in
/// effect (those the kernel keeps off until the device's reader takes them).
pub fn tun_offload(features: &[LinkFeature]) -> u32 {
    let on = |name: &str| features.iter().any(|f| f.name == name && f.active);
    TUN_OFFLOADS
        .iter()
        .filter(|(name, _)| on(name))
        .fold(0, |flags, (_, f)| flags | f)
}
