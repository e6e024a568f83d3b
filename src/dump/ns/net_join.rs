//! Processes in a network namespace of the tree other than their parent's that they did
//! not make (`setns` into the root's or into one a process made: `netns-join.img`), and
//! the namespace whose socket tables each process's sockets are read in.
//!
//! Sockets of a namespace made inside the tree: only unix sockets, found in the unix
//! tables of the namespaces the process's sockets are of (read from inside each,
//! `dump/files`); the restore makes each in its first holder, in that one's namespace,
//! which must be the socket's. A process that entered a namespace enters it right after
//! its takeover, or, when the sockets it holds are all of its parent's namespace, once
//! its files are open (`late`; refused if it has children, which would be forked into
//! its parent's). Anything else is refused, naming the pid and fd. The restore side is
//! `restore/ns/net_join.rs`.

use std::collections::{HashMap, HashSet};

use super::{inode, DumpError};
use crate::image::netns::NetJoin;
use crate::image::tree::TreeImage;

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The joins of the tree and, for each process holding a unix socket of a namespace
/// made inside the tree, the namespaces (by maker) whose unix tables its sockets are
/// found in.
pub struct Plan {
    pub joins: Vec<NetJoin>,
    pub sockets: HashMap<i32, Vec<i32>>,
}

/// Plans `joined` (pid, maker of the namespace it entered) and the sockets of the
/// tree's processes; `live[0]` is the tree's root, `makers` made the other namespaces.
///
/// A socket is made at restore by its first holder in tree order, in that process's
/// namespace: that must be the socket's (a unix socket of a made namespace is known by
/// its table, `/proc/PID/net/unix`; any other socket must be the root's namespace's).
pub fn plan(
    record: &TreeImage,
    live: &[i32],
    makers: &[i32],
    joined: &[(i32, i32)],
) -> Result<Plan, DumpError> {
    let root = live[0];
    let ino = |pid: i32| inode(&pid.to_string(), "net");
    let spaces: Vec<i32> = std::iter::once(root)
        .chain(makers.iter().copied())
        .collect();
    let maker_of: HashMap<Option<u64>, i32> = spaces.iter().map(|&m| (ino(m), m)).collect();
    let tables: Vec<(i32, HashSet<u64>)> = spaces.iter().map(|&m| (m, unix_inodes(m))).collect();
    let ns_of = |sock: u64| {
        tables
            .iter()
            .find(|(_, t)| t.contains(&sock))
            .map(|(m, _)| *m)
    };
    let mut plan = Plan {
        joins: Vec::new(),
        sockets: HashMap::new(),
    };
    let mut seen = HashSet::new();
    for &pid in live {
        let socks = sockets(pid);
        let Some(&mine) = maker_of.get(&ino(pid)) else {
            continue;
        };
        let home = match joined.iter().find(|(p, _)| *p == pid) {
            Some(&(_, of)) => {
                let join = join(record, pid, of, &socks, &maker_of, &ns_of)?;
                let home = match join.late {
                    true => parent_ns(record, pid, root, &maker_of),
                    false => of,
                };
                plan.joins.push(join);
                home
            }
            None => mine,
        };
        let mut used = vec![home];
        for (fd, sock) in &socks {
            let of = ns_of(*sock).unwrap_or(root);
            if seen.insert(*sock) && of != home {
                return Err(fail(format!(
                    "fd {fd} of pid {pid} is a socket of the network namespace of pid {of}, \
                     not of pid {pid}'s, and pid {pid} is its first holder; stasis makes a \
                     socket in its first holder's namespace"
                )));
            }
            if !used.contains(&of) {
                used.push(of);
            }
        }
        if used.iter().any(|&m| m != root) && !socks.is_empty() {
            plan.sockets.insert(pid, used);
        }
    }
    Ok(plan)
}

/// The namespace (by maker) of the parent of `pid`.
fn parent_ns(record: &TreeImage, pid: i32, root: i32, maker_of: &HashMap<Option<u64>, i32>) -> i32 {
    let ppid = record.get(pid).map_or(0, |e| e.ppid);
    (maker_of.get(&inode(&ppid.to_string(), "net")).copied()).unwrap_or(root)
}

/// How `pid` enters the namespace `of` made: late when the sockets it holds are all of
/// its parent's namespace (refused if it has children then).
fn join(
    record: &TreeImage,
    pid: i32,
    of: i32,
    socks: &[(String, u64)],
    maker_of: &HashMap<Option<u64>, i32>,
    ns_of: &dyn Fn(u64) -> Option<i32>,
) -> Result<NetJoin, DumpError> {
    let root = record.processes.first().map_or(0, |e| e.pid);
    let parents = parent_ns(record, pid, root, maker_of);
    let late = !socks.is_empty() && socks.iter().all(|(_, s)| ns_of(*s) == Some(parents));
    if late && record.processes.iter().any(|e| e.ppid == pid) {
        return Err(fail(format!(
            "pid {pid} entered the network namespace of pid {of}, holds sockets of its \
             parent's and has children; stasis enters such a namespace only once the \
             process's files are open, after its children exist"
        )));
    }
    Ok(NetJoin { pid, of, late })
}

/// The socket fds of `pid` (fd, inode).
fn sockets(pid: i32) -> Vec<(String, u64)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let text = target.to_string_lossy();
            let ino = text
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            Some((fd.file_name().to_string_lossy().into_owned(), ino))
        })
        .collect()
}

/// The inodes of the unix sockets of the network namespace of `pid` (`/proc/PID/net/unix`).
fn unix_inodes(pid: i32) -> HashSet<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect()
}
