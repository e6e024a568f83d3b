//! Veth pairs between two network namespaces of the tree (`netpeers.img`): the root's
//! and one a process made, or two made ones. Each namespace's record keeps its end as a
//! veth whose other end is outside (`link_netnsid`, `link_index`); here each such end is
//! matched with its other end: the namespace whose id in the end's own namespace is
//! `link_netnsid` (`RTM_GETNSID`, asked from inside it), and that namespace's veth of
//! index `link_index`. The restore side is `restore/ns/netlinks.rs`'s `Peers`.
//!
//! An end of a namespace made inside the tree whose other end is in none of the tree's
//! is refused, naming it; one of the root's namespace is left to `--external veth[..]` /
//! `--external netdev[..]` at restore.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use super::net::Outside;
use super::DumpError;
use crate::image::netns::{Link, LinkEnd, NestedNet, NetNsImage, NetPeer, NetPeersImage};

/// One network namespace of the tree, as saved.
pub struct Space<'a> {
    /// The process that made it (the root for the tree's own).
    pub pid: i32,
    /// Whether it is the root's (whose veths may have their other end outside the tree).
    pub root: bool,
    pub links: &'a [Link],
    pub outside: &'a [Outside],
}

/// The tree's namespaces: the root's (its pid, record and veths with their other end
/// elsewhere), if it has its own, then those its processes made.
pub fn spaces<'a>(
    root: Option<(i32, &'a NetNsImage, &'a [Outside])>,
    made: &'a [(NestedNet, Vec<Outside>)],
) -> Vec<Space<'a>> {
    let root = root.map(|(pid, ns, outside)| Space {
        pid,
        root: true,
        links: &ns.links,
        outside,
    });
    let made = made.iter().map(|(n, outside)| Space {
        pid: n.pid,
        root: false,
        links: &n.ns.links,
        outside,
    });
    root.into_iter().chain(made).collect()
}

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The veth pairs between the namespaces of `spaces`.
pub fn pair(spaces: &[Space]) -> Result<NetPeersImage, DumpError> {
    let mut out = NetPeersImage::default();
    for (i, x) in spaces.iter().enumerate() {
        if x.outside.is_empty() {
            continue;
        }
        let ids = nsids(x.pid, spaces)?;
        for o in x.outside {
            let far = (ids.iter().filter(|(_, id)| i64::from(*id) == o.nsid))
                .find_map(|&(j, _)| Some((j, other_end(&spaces[j], o.peer_index)?)));
            match far {
                Some((j, name)) if i < j => out.pairs.push(NetPeer {
                    ends: [end(x.pid, &o.name), end(spaces[j].pid, name)],
                }),
                Some(_) => {}
                None if x.root => {}
                None => {
                    return Err(fail(format!(
                        "link {} of the network namespace pid {} made is a veth link whose \
                         other end is outside the tree's namespaces, which stasis does not \
                         rebuild",
                        o.name, x.pid
                    )))
                }
            }
        }
    }
    Ok(out)
}

fn end(pid: i32, name: &str) -> LinkEnd {
    LinkEnd {
        pid,
        name: name.to_string(),
    }
}

/// The veth of index `index` of `space`.
fn other_end<'a>(space: &Space<'a>, index: i64) -> Option<&'a str> {
    (space.links.iter())
        .find(|l| l.kind == "veth" && i64::from(l.ifindex) == index)
        .map(|l| l.name.as_str())
}

/// The id each other namespace of `spaces` has in that of `pid` (by position; those
/// without one left out).
fn nsids(pid: i32, spaces: &[Space]) -> Result<Vec<(usize, i32)>, DumpError> {
    let err = |e: String| fail(format!("network namespace ids in that of pid {pid}: {e}"));
    let others: Vec<(usize, File)> = (spaces.iter().enumerate())
        .filter(|(_, s)| s.pid != pid)
        .map(|(j, s)| {
            let path = format!("/proc/{}/ns/net", s.pid);
            File::open(&path)
                .map(|f| (j, f))
                .map_err(|e| err(format!("open {path}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let ids = crate::netns::within(&path, || {
        let mut out = Vec::new();
        for (j, f) in &others {
            if let Some(id) = crate::rtnl::nsid_of(f.as_fd())? {
                out.push((*j, id));
            }
        }
        Ok::<_, crate::rtnl::RtnlError>(out)
    });
    ids.map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))
}
