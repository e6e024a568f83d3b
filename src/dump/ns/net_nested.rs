//! Network namespaces made inside the tree (`netlinks.img`'s `nested`): a process whose
//! network namespace is not its parent's made it (`unshare(CLONE_NEWNET)`), and every
//! other process in it must have inherited it from that one. Each is saved like the
//! root's (`net.rs`'s `collect`, with the dumping thread inside it), its links included;
//! the restore side is `restore/ns/net_nested.rs`.
//!
//! Refused, naming the pid: a process that entered a namespace of another process
//! (`setns`), a process of the tree in the dumper's namespace while the root is not,
//! a socket held by a process of such a namespace (its socket tables are not read), and
//! a macvlan of one whose lower link is outside it. A veth whose other end is outside
//! is paired with it in another namespace of the tree by `net_peers.rs`.

use std::collections::HashMap;

use super::net::Outside;
use super::{inode, net, DumpError};
use crate::image::netns::{NestedNet, NetLinksImage};
use crate::image::tree::TreeImage;

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The processes of `record` (live ones: `live`) that made a network namespace.
pub fn makers(record: &TreeImage, live: &[i32]) -> Result<Vec<i32>, DumpError> {
    let ino = |pid: i32| inode(&pid.to_string(), "net");
    let root = live[0];
    let mut made: HashMap<Option<u64>, i32> = HashMap::from([(ino(root), root)]);
    let dumper = inode("self", "net");
    let mut out = Vec::new();
    let entries = (record.processes.iter()).filter(|e| e.pid != root && live.contains(&e.pid));
    for e in entries {
        let mine = ino(e.pid);
        if mine == ino(e.ppid) {
            continue;
        }
        if let Some(first) = made.get(&mine) {
            return Err(fail(format!(
                "pid {} entered the network namespace of pid {first} (not its parent's); \
                 stasis restores a namespace made inside the tree only in its maker and \
                 the maker's descendants",
                e.pid
            )));
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
    Ok(out)
}

/// Saves the namespace of each maker of `makers`, with its veths whose other end is
/// in another namespace; `live`: the tree's live processes.
pub fn collect(makers: &[i32], live: &[i32]) -> Result<Vec<(NestedNet, Vec<Outside>)>, DumpError> {
    makers.iter().map(|&pid| collect_one(pid, live)).collect()
}

fn collect_one(pid: i32, live: &[i32]) -> Result<(NestedNet, Vec<Outside>), DumpError> {
    let ino = inode(&pid.to_string(), "net");
    for &p in live
        .iter()
        .filter(|&&p| inode(&p.to_string(), "net") == ino)
    {
        no_socket(p, pid)?;
    }
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

/// Refuses a socket fd of `pid`, a process of the namespace `maker` made.
fn no_socket(pid: i32, maker: i32) -> Result<(), DumpError> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Ok(());
    };
    for fd in fds.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:[") {
            return Err(fail(format!(
                "fd {} of pid {pid} is a socket, in the network namespace pid {maker} made \
                 inside the tree; stasis does not dump sockets of such a namespace",
                fd.file_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}
