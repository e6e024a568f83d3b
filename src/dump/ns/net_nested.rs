//! Network namespaces made inside the tree (`netlinks.img`'s `nested`): a process whose
//! network namespace is not its parent's made it (`unshare(CLONE_NEWNET)`), and every
//! other process in it must have inherited it from that one. Each is saved like the
//! root's (`net.rs`'s `collect`, with the dumping thread inside it), its links included;
//! the restore side is `restore/ns/net_nested.rs`.
//!
//! Refused, naming the pid: a process of the tree in the dumper's namespace while the
//! root is not, and a macvlan of one whose lower link is outside it. A process that
//! entered another's namespace (`setns`) and the namespace of every socket of the tree
//! are `net_join.rs`'s. A veth whose other end is outside
//! is paired with it in another namespace of the tree by `net_peers.rs`.

use std::collections::HashMap;

use super::net::Outside;
use super::{inode, net, DumpError};
use crate::image::netns::{NestedNet, NetLinksImage};
use crate::image::tree::TreeImage;

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The makers of the tree's network namespaces (tree order), and the processes that
/// entered one (pid, the namespace's maker).
pub type Makers = (Vec<i32>, Vec<(i32, i32)>);

/// The processes of `record` (live ones: `live`) that made a network namespace, and
/// those in one of the tree's namespaces other than their parent's that they did not
/// make (`setns`), each with the process that made it (`net_join.rs` plans them).
pub fn makers(record: &TreeImage, live: &[i32]) -> Result<Makers, DumpError> {
    let ino = |pid: i32| inode(&pid.to_string(), "net");
    let root = live[0];
    let mut made: HashMap<Option<u64>, i32> = HashMap::from([(ino(root), root)]);
    let dumper = inode("self", "net");
    let mut out = Vec::new();
    let mut joined = Vec::new();
    let entries = (record.processes.iter()).filter(|e| e.pid != root && live.contains(&e.pid));
    for e in entries {
        let mine = ino(e.pid);
        if mine == ino(e.ppid) {
            continue;
        }
        if let Some(&first) = made.get(&mine) {
            joined.push((e.pid, first));
            continue;
        }
        if mine == dumper {
            return Err(fail(format!(
                "pid {} is in stasis's network namespace, not in the tree root {root}'s",
                e.pid
            )));
        }
        made.insert(mine, e.pid);
        out.push(e.pid);
    }
    Ok((out, joined))
}

/// Saves the namespace of each maker of `makers`, with its veths whose other end is
/// in another namespace.
pub fn collect(makers: &[i32]) -> Result<Vec<(NestedNet, Vec<Outside>)>, DumpError> {
    makers.iter().map(|&pid| collect_one(pid)).collect()
}

fn collect_one(pid: i32) -> Result<(NestedNet, Vec<Outside>), DumpError> {
    let Some(inside) = net::enter_tree(pid)? else {
        return Err(fail(format!(
            "pid {pid} made a network namespace that stasis is in already"
        )));
    };
    let (ns, NetLinksImage { links, .. }, veths) = net::collect(&inside, &[])?;
    for l in &ns.links {
        let more = links.iter().find(|m| m.name == l.name);
        let outside = match l.kind.as_str() {
            "veth" => {
                !more.is_some_and(|m| !m.peer.is_empty()) && !veths.iter().any(|v| v.name == l.name)
            }
            "macvlan" => !more.is_some_and(|m| !m.lower.is_empty()),
            _ => false,
        };
        if outside {
            return Err(fail(format!(
                "link {} of the network namespace pid {pid} made is a {} link whose other \
                 end is outside it, which stasis does not rebuild",
                l.name, l.kind
            )));
        }
    }
    Ok((NestedNet { pid, ns, links }, veths))
}
