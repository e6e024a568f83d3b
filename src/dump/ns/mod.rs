//! The namespaces a dumped tree lives in, and the record of those stasis rebuilds
//! (`namespaces.img`): pid namespaces whose init is in the tree (`pid.rs`) and the root's
//! UTS namespace (`uts.rs`); the IPC namespace its root made is `dump/sysv.rs`. The restore
//! side is `restore/ns/`.
//!
//! The time namespace of a pid namespace's init is rebuilt too (`time.rs`), any other is
//! refused there once the tree is frozen; the root's mount namespace is `dump/mnt/` (which
//! checks the whole tree shares it). The root's network namespace is `net.rs` (entered for
//! the whole dump when it is not the dumper's, saved in `netns.img`); those processes of
//! the tree made are `net_nested.rs`'s (`netlinks.img`). The tree's user
//! namespace, a child of the dumper's, is `user.rs` (`userns.img`); a deeper one is
//! refused before anything is frozen, naming the pid and namespace.

pub mod net;
pub mod net_join;
pub mod net_nested;
pub mod net_peers;
pub mod netlinks;
pub mod pid;
pub mod time;
pub mod tun;
pub mod user;
pub mod uts;

use std::collections::HashMap;

use super::tree::FrozenTree;
use super::DumpError;
use crate::image::ns::{NsImage, NAMESPACES};
use crate::image::{ImageWriter, Kind};

/// The inode of `/proc/PID/ns/KIND` (`pid` may be "self").
pub(crate) fn inode(pid: &str, kind: &'static str) -> Option<u64> {
    inode_of(pid, kind).ok()
}

/// The inode of `/proc/PID/ns/KIND`, or why it could not be stat'ed. Remembered while a
/// [`Frozen`] guard lives (see there).
pub(crate) fn inode_of(pid: &str, kind: &'static str) -> std::io::Result<u64> {
    let key = (pid.to_owned(), kind);
    let remembered = |memo: &Memo| memo.as_ref().and_then(|m| m.get(&key).copied());
    if let Some(ino) = remembered(&lock_memo()) {
        return Ok(ino);
    }
    if is_pid(pid) && lock_memo().is_some() {
        return read_all(pid, kind);
    }
    let ino = read_inode(&format!("/proc/{pid}/ns/{kind}"))?;
    if let Some(m) = lock_memo().as_mut().filter(|_| rememberable(pid, kind)) {
        m.insert(key, ino);
    }
    Ok(ino)
}

/// The kinds of `/proc/PID/ns/` (those of kernels without time namespaces are missing).
pub(crate) const KINDS: [&str; 10] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

fn is_pid(pid: &str) -> bool {
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
}

/// Every namespace inode of process `pid`, remembered, while the tree is frozen: the
/// dump asks the nine a process has, one check after another. One `/proc/PID/ns`
/// directory and a `readlinkat` in it per kind (1.6 µs each) instead of a `readlink` of
/// the whole path (3.0 µs, the kernel walking `/proc/PID` again each time). Returns the
/// inode of `kind`, or why it could not be read.
fn read_all(pid: &str, kind: &'static str) -> std::io::Result<u64> {
    let path = format!("/proc/{pid}/ns");
    let dir = std::fs::File::open(&path)?;
    let mut asked = None;
    let mut found = Vec::with_capacity(KINDS.len());
    for k in KINDS {
        let got = nix::fcntl::readlinkat(&dir, k)
            .map_err(std::io::Error::from)
            .and_then(|text| parse_inode(&format!("{path}/{k}"), &text.to_string_lossy()));
        if let Ok(ino) = got {
            found.push(((pid.to_owned(), k), ino));
        }
        if k == kind {
            asked = Some(got);
        }
    }
    if let Some(m) = lock_memo().as_mut() {
        m.extend(found);
    }
    asked.unwrap_or_else(|| read_inode(&format!("{path}/{kind}")))
}

/// The inode of a namespace file, from its link text `KIND:[INODE]` (the nsfs inode
/// number, what `stat` gives; a `readlink` costs half a `stat`: 2.3 against 4.5 µs).
fn read_inode(path: &str) -> std::io::Result<u64> {
    let text = std::fs::read_link(path)?;
    parse_inode(path, &text.to_string_lossy())
}

/// The inode in the text `KIND:[INODE]` of the namespace link at `path`.
fn parse_inode(path: &str, text: &str) -> std::io::Result<u64> {
    let number = (text.split_once(":[")).and_then(|(_, rest)| rest.strip_suffix(']'));
    number.and_then(|n| n.parse().ok()).ok_or_else(|| {
        let what = format!("{path} links to {text}, not KIND:[INODE]");
        std::io::Error::new(std::io::ErrorKind::InvalidData, what)
    })
}

/// [`inode_of`], its failure the dump's error naming the path.
pub(crate) fn ns_inode(pid: &str, kind: &'static str) -> Result<u64, DumpError> {
    inode_of(pid, kind).map_err(|source| DumpError::Stat {
        path: format!("/proc/{pid}/ns/{kind}"),
        source,
    })
}

/// Namespace inodes asked while the tree is frozen (`None`: not frozen, nothing kept).
type Memo = Option<HashMap<(String, &'static str), u64>>;
static MEMO: std::sync::Mutex<Memo> = std::sync::Mutex::new(None);

fn lock_memo() -> std::sync::MutexGuard<'static, Memo> {
    MEMO.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `/proc/PID/ns/KIND` holds still while the tree is frozen: any kind of a
/// process of the tree (a stopped task changes no namespace; stasis injects no `setns`),
/// and stasis's own namespaces but those its main thread enters during a dump (the
/// tree's network namespace, `ns/net.rs`; a pid namespace for children,
/// `sys/probe.rs`). Threads that enter others (`sys/mount.rs`, `uts.rs`, cgroups) are
/// not `self`.
fn rememberable(pid: &str, kind: &str) -> bool {
    match pid {
        "self" => !matches!(kind, "net" | "pid_for_children" | "time_for_children"),
        "thread-self" => false,
        _ => true,
    }
}

/// While it lives, the namespace inodes the dump asks ([`inode_of`]) are stat'ed once
/// each: the user namespace of every process was asked four times, its mount namespace
/// three (user, mounts, fd owners, pid and time checks), ~14 stats a process.
///
/// Ordering requirements: made once every task of the tree is frozen, dropped before
/// the tree is released or killed (pids are reused after).
pub struct Frozen(());

impl Frozen {
    pub fn remember() -> Self {
        *lock_memo() = Some(HashMap::new());
        Frozen(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        *lock_memo() = None;
    }
}

/// Refuses `pid` if one of its namespaces that stasis does not rebuild is not the
/// dumper's (a user namespace other than the dumper's or a child of it).
pub fn refuse_foreign(pid: i32) -> Result<(), DumpError> {
    user::refuse_foreign(pid)
}

/// Checks the tree's pid, UTS and network namespaces and writes `namespaces.img` and
/// `netns.img` (nothing when the tree lives in the dumper's). With a lock (not `skip`),
/// a network namespace of the tree's own is locked whole: returns the mode it was locked
/// with, if it was (`net::lock`). Fills `sockets`: the processes holding sockets of a
/// namespace made inside the tree, with the makers of their sockets' namespaces, and
/// the namespace of each socket not of the root's (`net_join.rs`); writes
/// `netns-sockets.img`, the sockets held outside their namespace; and `tuns`: the tun
/// devices of the tree's namespaces (`dump/files/tun.rs` attaches the tree's files to
/// them).
///
/// Ordering requirements: while the tree is frozen, before any socket is dumped (the
/// firewall is saved before the lock is added to it).
pub fn dump(
    tree: &FrozenTree,
    writer: &ImageWriter,
    in_net: Option<&net::InTree>,
    opts: &super::DumpOptions,
    sockets: &mut net_join::SocketSpaces,
    tuns: &mut tun::Devices,
) -> Result<Option<crate::netlock::LockMode>, DumpError> {
    let lock = opts.network_lock;
    let threads: HashMap<i32, Vec<i32>> = (tree.procs.iter())
        .map(|f| (f.pid(), f.threads().iter().map(|t| t.tid()).collect()))
        .collect();
    let pids = pid::collect(&tree.record, &threads)?;
    let live: Vec<i32> = tree.procs.iter().map(|f| f.pid()).collect();
    let image = NsImage {
        pids: pids.pids,
        pid_for_children: pids.pid_for_children,
        uts: uts::collect(&live)?,
        time: time::collect(&live)?,
    };
    if !image.is_empty() {
        writer.write_record(NAMESPACES, Kind::Namespaces, &image)?;
    }
    if let Some(userns) = user::collect(&live)? {
        writer.write_record(crate::image::userns::USERNS, Kind::UserNs, &userns)?;
    }
    let (makers, joined) = net_nested::makers(&tree.record, &live)?;
    let planned = net_join::plan(&live, &makers, &joined)?;
    if !planned.joins.is_empty() {
        let joins = crate::image::netns::NetJoinsImage {
            joins: planned.joins,
        };
        writer.write_record(crate::image::netns::NETJOINS, Kind::NetJoins, &joins)?;
    }
    if !planned.crossing.is_empty() {
        let crossing = crate::image::netns::SocketNetsImage {
            sockets: planned.crossing,
        };
        let name = crate::image::netns::SOCKETNETS;
        writer.write_record(name, Kind::SocketNets, &crossing)?;
    }
    *sockets = planned.spaces;
    let collected = net_nested::collect(&makers)?;
    let nested: Vec<_> = collected.iter().map(|(n, _)| n.clone()).collect();
    for n in &nested {
        tuns.extend(tun::devices(
            ns_inode(&n.pid.to_string(), "net")?,
            &n.ns,
            &n.links,
        ));
    }
    let spaces = |root| net_peers::spaces(root, &collected);
    let write_peers = |spaces: Vec<net_peers::Space>| -> Result<(), DumpError> {
        let peers = net_peers::pair(&spaces)?;
        if peers.pairs.is_empty() {
            return Ok(());
        }
        writer.write_record(crate::image::netns::NETPEERS, Kind::NetPeers, &peers)?;
        Ok(())
    };
    let write_more = |mut more: crate::image::netns::NetLinksImage| {
        more.nested = nested.clone();
        if more.links.is_empty() && more.nested.is_empty() {
            return Ok(());
        }
        writer.write_record(crate::image::netns::NETLINKS, Kind::NetLinks, &more)
    };
    if let Some(ext) = &opts.net_external {
        let saved = net::external(opts.pid, in_net, ext)?;
        writer.write_record(crate::image::netns::NETNS, Kind::NetNs, &saved)?;
        write_more(Default::default())?;
        write_peers(spaces(None))?;
        // Connections are locked one by one, as in the dumper's namespace.
        return Ok(None);
    }
    let Some(in_net) = in_net else {
        write_more(Default::default())?;
        write_peers(spaces(None))?;
        return Ok(None);
    };
    let (saved, more, outside) = net::collect(in_net, &opts.veth_externals)?;
    tuns.extend(tun::devices(
        ns_inode(&opts.pid.to_string(), "net")?,
        &saved,
        &more.links,
    ));
    writer.write_record(crate::image::netns::NETNS, Kind::NetNs, &saved)?;
    write_more(more)?;
    write_peers(spaces(Some((opts.pid, &saved, &outside[..]))))?;
    if lock == crate::netlock::LockMode::Skip {
        return Ok(None);
    }
    net::lock(in_net, lock).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn link_text_gives_the_inode_stat_gives() {
        for kind in ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"] {
            let path = format!("/proc/self/ns/{kind}");
            let stat = std::fs::metadata(&path).expect("stat own namespace").ino();
            assert_eq!(read_inode(&path).expect("readlink"), stat, "{kind}");
        }
        assert!(read_inode("/proc/self/ns/nosuch").is_err());
        assert!(read_inode("/proc/self/exe").is_err());
    }

    /// While frozen, one ask reads every kind of the process through its `ns` directory,
    /// each the inode `stat` gives; an unknown kind is still an error.
    #[test]
    fn one_ask_remembers_every_kind_of_a_process() {
        let pid = std::process::id().to_string();
        let _frozen = Frozen::remember();
        let stat = |kind: &str| {
            let path = format!("/proc/{pid}/ns/{kind}");
            std::fs::metadata(path).expect("stat own namespace").ino()
        };
        assert_eq!(inode_of(&pid, "mnt").expect("mnt"), stat("mnt"));
        for kind in ["user", "pid", "net", "uts", "ipc", "cgroup"] {
            let kept = lock_memo()
                .as_ref()
                .and_then(|m| m.get(&(pid.clone(), kind)).copied());
            assert_eq!(kept, Some(stat(kind)), "{kind}");
        }
        assert!(inode_of(&pid, "nosuch").is_err());
    }
}
