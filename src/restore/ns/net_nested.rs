//! A network namespace made inside the tree (`netlinks.img`'s `nested`, dumped by
//! `dump/ns/net_nested.rs`), rebuilt by the process that made it: right after its
//! takeover it leaves its parent's namespace (`unshare(CLONE_NEWNET)`, injected: a new,
//! empty one), and a thread of stasis that entered it fills it like the root's
//! (`net.rs`'s `fill`: links, firewall, sysctls, addresses, routes, rules).
//!
//! Ordering requirements: after the process's takeover, before its Files stage (its
//! sockets are made in its namespace) and before its children are forked (they inherit
//! it).

use std::path::PathBuf;

use super::super::RestoreError;
use crate::image::netns::{NestedNet, NetLinksImage};
use crate::restore::child::Child;

fn fail(pid: i32, what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("network namespace made by pid {pid}: {what}"),
    }
}

/// Makes `ns` in `child`, the process that made it.
pub fn restore(
    child: &Child,
    ns: &NestedNet,
    peers: &super::netlinks::Peers,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    let r = (child.remote()).raw(libc::SYS_unshare, &[libc::CLONE_NEWNET as u64])?;
    if r < 0 {
        let errno = nix::errno::Errno::from_raw(-r as i32);
        return Err(fail(
            pid,
            format!("unshare(CLONE_NEWNET): {}", errno.desc()),
        ));
    }
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let more = NetLinksImage {
        links: ns.links.clone(),
        nested: Vec::new(),
    };
    crate::netns::within(&path, || {
        // Its links' other ends are inside or in another of the tree's namespaces
        // (checked at dump): nothing goes to `own`.
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| fail(pid, format!("open its namespace: {e}")))?;
        let making = super::netlinks::Making {
            ns: &ns.ns,
            more: &more,
            own: &own,
            root: pid,
            externals: &[],
            peers,
        };
        super::net::fill(&making, true)
    })
    .map_err(|e| fail(pid, e.to_string()))?
}
