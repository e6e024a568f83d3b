//! Processes in a network namespace of the tree other than their parent's that they did
//! not make (`setns` into the root's or into one a process made: `netns-join.img`), the
//! namespace each socket of the tree belongs to, and the sockets held by a process of
//! another of the tree's namespaces (`netns-sockets.img`).
//!
//! A socket's namespace: a unix socket's is the one whose unix table lists it
//! (`/proc/PID/net/unix` of the root and of each maker); any other's is asked of the
//! socket itself (`SIOCGSKNS` on stasis's duplicate). One of a namespace outside the
//! tree's is refused, naming the pid and fd. The socket records are then read in the
//! socket's namespace (`dump/files`, [`SocketSpaces::of`]).
//!
//! A process that entered a namespace enters it right after its takeover (never `late`
//! any more); a socket some holder of which is in another namespace than the socket's is
//! listed in `netns-sockets.img`, and whichever process makes it at restore makes it in
//! its namespace (`restore/ns/net_sockets.rs`). The restore side of the joins is
//! `restore/ns/net_join.rs`.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use super::{inode, DumpError};
use crate::image::netns::{NetJoin, SocketNet};

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The joins of the tree and where its sockets belong.
#[derive(Default)]
pub struct Plan {
    pub joins: Vec<NetJoin>,
    pub spaces: SocketSpaces,
    /// The sockets a process of another namespace holds (`netns-sockets.img`).
    pub crossing: Vec<SocketNet>,
}

/// Where the sockets of the tree belong, for reading their records (`dump/files`).
#[derive(Clone, Debug, Default)]
pub struct SocketSpaces {
    /// For each process holding a socket of a namespace made inside the tree, the
    /// namespaces (by maker) whose unix tables its sockets are found in.
    pub tables: HashMap<i32, Vec<i32>>,
    /// Every socket of the tree not of the root's namespace: inode → the maker of its
    /// namespace (where its kernel tables are read).
    pub of: HashMap<u64, i32>,
    /// The tree's root, when processes of the tree made network namespaces (0: none
    /// did; every process and socket of the tree is taken as of the root's namespace).
    pub root: i32,
}

/// Plans `joined` (pid, maker of the namespace it entered) and the sockets of the
/// tree's processes; `live[0]` is the tree's root, `makers` made the other namespaces
/// (none: every process is in the root's, nothing to plan).
pub fn plan(live: &[i32], makers: &[i32], joined: &[(i32, i32)]) -> Result<Plan, DumpError> {
    let mut plan = Plan::default();
    if makers.is_empty() {
        return Ok(plan);
    }
    let root = live[0];
    plan.spaces.root = root;
    let ino = |pid: i32| inode(&pid.to_string(), "net");
    let spaces: Vec<i32> = std::iter::once(root)
        .chain(makers.iter().copied())
        .collect();
    let maker_of: HashMap<Option<u64>, i32> = spaces.iter().map(|&m| (ino(m), m)).collect();
    let tables: Vec<(i32, HashSet<u64>)> = spaces.iter().map(|&m| (m, unix_inodes(m))).collect();
    let unix_ns = |sock: u64| {
        tables
            .iter()
            .find(|(_, t)| t.contains(&sock))
            .map(|(m, _)| *m)
    };
    plan.joins = (joined.iter())
        .map(|&(pid, of)| NetJoin {
            pid,
            of,
            late: false,
        })
        .collect();
    let mut crossing = HashSet::new();
    for &pid in live {
        let socks = sockets(pid);
        let Some(&mine) = maker_of.get(&ino(pid)) else {
            continue;
        };
        let mut used = vec![mine];
        for (fd, sock) in &socks {
            let of = match unix_ns(*sock) {
                Some(m) => m,
                None => asked_ns(pid, fd, &maker_of)?,
            };
            if of != root {
                plan.spaces.of.insert(*sock, of);
            }
            if of != mine && crossing.insert(*sock) {
                plan.crossing.push(SocketNet { ino: *sock, of });
            }
            if !used.contains(&of) {
                used.push(of);
            }
        }
        if used.iter().any(|&m| m != root) && !socks.is_empty() {
            plan.spaces.tables.insert(pid, used);
        }
    }
    Ok(plan)
}

/// The namespace (by maker) of socket fd `fd` of `pid`, asked of the socket
/// (`SIOCGSKNS` on a duplicate); refused if it is none of the tree's.
fn asked_ns(pid: i32, fd: &str, maker_of: &HashMap<Option<u64>, i32>) -> Result<i32, DumpError> {
    use std::os::unix::fs::MetadataExt;
    let err = |e: String| {
        fail(format!(
            "fd {fd} of pid {pid}: the socket's network namespace: {e}"
        ))
    };
    let n: i32 = fd
        .parse()
        .map_err(|_| err(format!("{fd} is not an fd number")))?;
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))
        .map_err(|e| err(format!("pidfd_open: {e}")))?;
    let sock = crate::sys::probe::pidfd_getfd(pidfd.as_fd(), n)
        .map_err(|e| err(format!("pidfd_getfd: {e}")))?;
    let ns = crate::sys::socket::socket_netns(sock.as_fd())
        .map_err(|e| err(format!("ioctl(SIOCGSKNS): {e}")))?;
    let ino = std::fs::File::from(ns)
        .metadata()
        .map_err(|e| err(format!("fstat: {e}")))?
        .ino();
    maker_of.get(&Some(ino)).copied().ok_or_else(|| {
        fail(format!(
            "fd {fd} of pid {pid} is a socket of the network namespace net:[{ino}], which \
             is not one of the tree's; stasis makes a socket again only in a namespace it \
             rebuilds"
        ))
    })
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
