//! The links of a new network namespace, made again (the restore side of
//! `dump/ns/netlinks.rs`, called by `net.rs`'s `fill` with the restoring thread inside):
//! each link with its index, address and kind-specific attributes (`netlinks.img`), down;
//! a macvlan after its lower link. Then bridge ports are enslaved with their port
//! attributes, then each link gets its MTU (when the kernel did not already give it
//! that one: a bridge's follows its ports unless set), address (a bridge's follows its
//! ports too) and flags, and last its features (`features.rs`).
//!
//! A veth pair inside is made once, both ends with their indexes and addresses. A pair
//! between two of the tree's namespaces (`netpeers.img`) is made by the first filled,
//! its other end parked in a namespace of stasis's own until the second takes it in
//! with its name and index (`crate::rtnl`, [`Peers`]). A veth
//! whose other end was outside gets that end made inside under a spare index, moved to
//! stasis's own namespace, named as `--external veth[..]` says, attached to its bridge
//! and up — or, with `--external netdev[NAME]:OUTSIDE`, the end OUTSIDE of a pair the
//! restorer made is moved in as NAME with its index (`crate::rtnl`). A macvlan whose
//! lower link was outside is made by `ip` run in stasis's own
//! namespace (the lower link named by `--external macvlan[NAME]:LOWER` resolved there)
//! straight into the tree's (`netns ROOT`).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::{Mutex, OnceLock};

use super::super::RestoreError;
use crate::image::netns::{Link, LinkEnd, LinkMore, NetLinksImage, NetNsImage, NetPeersImage};
use crate::netns::VethExternal;

const IPROUTE: &str = "iproute2";

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("network namespace of the tree: {what}"),
    }
}

fn ip(args: &[&str], stdin: Option<&[u8]>) -> Result<(), RestoreError> {
    crate::netns::run_here(IPROUTE, "ip", args, stdin)
        .map(drop)
        .map_err(|e| fail(e.to_string()))
}

/// `ip` run in stasis's own namespace `own`.
fn ip_outside(own: &File, args: &[&str]) -> Result<(), RestoreError> {
    crate::netns::within_fd(own.as_fd(), || ip(args, None)).map_err(|e| fail(e.to_string()))?
}

/// What the links are made with: the saved namespace, the restorer's namespace and the
/// root's pid as stasis sees it, the externals given at restore.
pub struct Making<'a> {
    pub ns: &'a NetNsImage,
    pub more: &'a NetLinksImage,
    pub own: &'a File,
    pub root: i32,
    pub externals: &'a [VethExternal],
    pub peers: &'a Peers<'a>,
}

/// The veth pairs between the tree's namespaces (`netpeers.img`) as they are made: the
/// first of the two namespaces filled makes the pair and parks its other end in a
/// namespace of stasis's own; the second takes that end in, with its name and index.
pub struct Peers<'a> {
    image: &'a NetPeersImage,
    parking: OnceLock<File>,
    /// The far end each parked link is, and its name while parked.
    parked: Mutex<Vec<(LinkEnd, String)>>,
    /// Ends parked so far (each parked under a name of its own).
    count: std::sync::atomic::AtomicUsize,
}

impl<'a> Peers<'a> {
    pub fn new(image: &'a NetPeersImage) -> Self {
        Peers {
            image,
            parking: OnceLock::new(),
            parked: Mutex::new(Vec::new()),
            count: Default::default(),
        }
    }

    /// The namespace parked ends wait in, made on first use.
    fn parking(&self) -> Result<&File, RestoreError> {
        if let Some(f) = self.parking.get() {
            return Ok(f);
        }
        let made = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                File::open("/proc/thread-self/ns/net")
            })
            .join()
        });
        let file = match made {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(fail(format!("make a namespace to park veth ends in: {e}"))),
            Err(_) => {
                return Err(fail(
                    "the thread making the parking namespace panicked".into(),
                ))
            }
        };
        Ok(self.parking.get_or_init(|| file))
    }

    /// Makes `link` of the namespace `m` fills, one end of a pair between two of the
    /// tree's namespaces: taken in from the parking if its other end was made, else made
    /// with its other end parked.
    fn make(&self, m: &Making, link: &Link, far: &LinkEnd) -> Result<(), RestoreError> {
        let mine = LinkEnd {
            pid: m.root,
            name: link.name.clone(),
        };
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = parked.iter().position(|(end, _)| *end == mine) {
            let (_, tmp) = parked.remove(at);
            let path = format!("/proc/{}/ns/net", m.root);
            let here = File::open(&path).map_err(|e| fail(format!("open {path}: {e}")))?;
            let moved = crate::netns::within_fd(self.parking()?.as_fd(), || {
                crate::rtnl::move_link(&tmp, here.as_fd(), &link.name, link.ifindex)
            });
            return moved.map_err(|e| fail(e.to_string()))?.map_err(|e| {
                fail(format!(
                    "take in veth {} (its other end is {} of pid {}'s namespace): {e}",
                    link.name, far.name, far.pid
                ))
            });
        }
        let n = (self.count).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = format!("stasisv{n}");
        let spare = spare_index(m.ns).to_string();
        add(link, &[], "veth", &["peer", "name", &tmp, "index", &spare])?;
        crate::rtnl::move_link(&tmp, self.parking()?.as_fd(), &tmp, 0).map_err(|e| {
            fail(format!(
                "park the other end of veth {} (for pid {}'s namespace): {e}",
                link.name, far.pid
            ))
        })?;
        parked.push((far.clone(), tmp));
        Ok(())
    }
}

/// An index no link of `ns` has (above them all).
fn spare_index(ns: &NetNsImage) -> i32 {
    ns.links.iter().map(|l| l.ifindex).max().unwrap_or(1) + 1
}

/// Makes every link of `m.ns` in the namespace the restoring thread is in, all down.
pub fn make(m: &Making) -> Result<(), RestoreError> {
    let none = LinkMore::default();
    let more = |l: &Link| m.more.of(&l.name).unwrap_or(&none);
    // Lower links before the macvlans on them.
    let mut order: Vec<&Link> = m.ns.links.iter().collect();
    order.sort_by_key(|l| l.kind == "macvlan");
    let mut made: Vec<&str> = Vec::new();
    for link in order {
        if !made.contains(&link.name.as_str()) {
            made.extend(make_one(m, link, more(link))?);
        }
    }
    for link in &m.ns.links {
        enslave(more(link))?;
    }
    let mtus = mtus()?;
    for link in &m.ns.links {
        settle(link, mtus.get(&link.name))?;
    }
    super::features::apply(&m.more.links)
}

/// Makes `link`; returns the names of the links made (a veth pair's both ends).
fn make_one<'a>(
    m: &Making<'a>,
    link: &'a Link,
    more: &'a LinkMore,
) -> Result<Vec<&'a str>, RestoreError> {
    let info: Vec<&str> = (more.info.iter())
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    match link.kind.as_str() {
        "loopback" => {}
        "veth" if !more.peer.is_empty() => return veth_pair(m.ns, link, &more.peer),
        "veth" if m.peers.image.other_end(m.root, &link.name).is_some() => {
            let far = m.peers.image.other_end(m.root, &link.name);
            m.peers.make(m, link, far.expect("checked above"))?
        }
        "veth" => make_veth(m, link)?,
        "macvlan" if more.lower.is_empty() => macvlan_outside(m, link, &info)?,
        "macvlan" => add(link, &["link", &more.lower], "macvlan", &info)?,
        "tun" => super::tun::make(link, more)?,
        kind => add(link, &[], kind, &info)?,
    }
    Ok(vec![link.name.as_str()])
}

/// `ip link add NAME [BEFORE] index I [address A] type KIND [INFO]`.
fn add(link: &Link, before: &[&str], kind: &str, info: &[&str]) -> Result<(), RestoreError> {
    let id = identity(link);
    let mut args = vec!["link", "add", "name", link.name.as_str()];
    args.extend(before);
    args.extend(id.iter().map(String::as_str));
    args.extend(["type", kind]);
    args.extend(info);
    ip(&args, None)
}

/// `index I [address A]` of `link`.
fn identity(link: &Link) -> Vec<String> {
    let mut out = vec!["index".to_string(), link.ifindex.to_string()];
    if !link.address.is_empty() {
        out.extend(["address".to_string(), link.address.clone()]);
    }
    out
}

/// Makes the veth pair `link`–`peer`, both inside, each with its index and address.
fn veth_pair<'a>(
    ns: &'a NetNsImage,
    link: &'a Link,
    peer: &str,
) -> Result<Vec<&'a str>, RestoreError> {
    let Some(other) = ns.links.iter().find(|l| l.name == peer) else {
        return Err(fail(format!(
            "veth {} has its other end {peer} inside, which the image does not have",
            link.name
        )));
    };
    let (mine, theirs) = (identity(link), identity(other));
    let mut args = vec!["link", "add", "name", link.name.as_str()];
    args.extend(mine.iter().map(String::as_str));
    args.extend(["type", "veth", "peer", "name", other.name.as_str()]);
    args.extend(theirs.iter().map(String::as_str));
    ip(&args, None)?;
    Ok(vec![link.name.as_str(), other.name.as_str()])
}

/// Makes the veth `link` inside with its index and address (its other end first under
/// a spare index: the kernel would give it the first free one, maybe another link's), its
/// other end named as `--external veth[..]` says at restore (else as at dump) and moved
/// to stasis's own namespace, attached to the bridge asked for, and up.
fn make_veth(m: &Making, link: &Link) -> Result<(), RestoreError> {
    if let Some(pre) = (m.externals.iter()).find(|v| v.kind == "netdev" && v.inside == link.name) {
        return move_in(m, link, &pre.outside);
    }
    let given = (m.externals.iter()).find(|v| v.kind == "veth" && v.inside == link.name);
    let outside = given.map_or(link.peer.as_str(), |v| v.outside.as_str());
    if outside.is_empty() {
        return Err(fail(format!(
            "veth {} had its other end outside: name it with --external veth[{}]:OUTSIDE",
            link.name, link.name
        )));
    }
    let spare = spare_index(m.ns).to_string();
    let info = ["peer", "name", outside, "index", &spare];
    add(link, &[], "veth", &info)?;
    move_out(outside, m.own)?;
    if let Some(bridge) = given.and_then(|v| v.bridge.as_deref()) {
        ip_outside(m.own, &["link", "set", "dev", outside, "master", bridge])?;
    }
    ip_outside(m.own, &["link", "set", "dev", outside, "up"])
}

/// Moves the link `outside` the restorer made (`--external netdev[NAME]:OUTSIDE`, one
/// end of its veth pair) from stasis's namespace into the tree's as `link`, with its
/// index (its address, MTU and flags follow as for every link).
fn move_in(m: &Making, link: &Link, outside: &str) -> Result<(), RestoreError> {
    let path = format!("/proc/{}/ns/net", m.root);
    let tree = File::open(&path).map_err(|e| fail(format!("open {path}: {e}")))?;
    let moved = crate::netns::within_fd(m.own.as_fd(), || {
        crate::rtnl::move_link(outside, tree.as_fd(), &link.name, link.ifindex)
    });
    moved.map_err(|e| fail(e.to_string()))?.map_err(|e| {
        fail(format!(
            "move {outside} in as veth {} (--external netdev[{}]:{outside}): {e}",
            link.name, link.name
        ))
    })
}

/// Makes the macvlan `link` whose lower link was outside on the link
/// `--external macvlan[NAME]:LOWER` names: `ip` in stasis's namespace makes it in the
/// root's.
fn macvlan_outside(m: &Making, link: &Link, info: &[&str]) -> Result<(), RestoreError> {
    let given = (m.externals.iter()).find(|v| v.kind == "macvlan" && v.inside == link.name);
    let Some(lower) = given.map(|v| v.outside.as_str()) else {
        return Err(fail(format!(
            "macvlan {} had its lower link outside: name it with --external macvlan[{}]:LOWER",
            link.name, link.name
        )));
    };
    let root = m.root.to_string();
    let mut args = vec!["link", "add", "name", link.name.as_str(), "link", lower];
    args.extend(["netns", &root]);
    let id = identity(link);
    args.extend(id.iter().map(String::as_str));
    args.extend(["type", "macvlan"]);
    args.extend(info);
    ip_outside(m.own, &args)
}

/// Moves link `name` to the namespace `own`: `ip link set netns` takes a task, here a
/// thread of stasis that entered `own` and waits until the move is done.
fn move_out(name: &str, own: &File) -> Result<(), RestoreError> {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let entered = nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWNET)
                .map(|()| nix::unistd::gettid().as_raw());
            let _ = tid_tx.send(entered);
            let _ = done_rx.recv();
        });
        let tid = match tid_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => return Err(fail(format!("enter stasis's own namespace: {e}"))),
            Err(_) => return Err(fail("the thread in stasis's own namespace died".into())),
        };
        let moved = ip(
            &["link", "set", "dev", name, "netns", &tid.to_string()],
            None,
        );
        drop(done_tx);
        moved
    })
}

/// Makes a bridge port of the link `more` is of, with its port attributes.
fn enslave(more: &LinkMore) -> Result<(), RestoreError> {
    let name = more.name.as_str();
    if !more.master.is_empty() {
        ip(&["link", "set", "dev", name, "master", &more.master], None)?;
    }
    if more.port.is_empty() {
        return Ok(());
    }
    let mut args = vec!["link", "set", "dev", name, "type", "bridge_slave"];
    args.extend(more.port.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
    ip(&args, None)
}

/// Each link's MTU and address now, by name.
fn mtus() -> Result<HashMap<String, (u64, String)>, RestoreError> {
    let json = crate::netns::run_here(IPROUTE, "ip", &["-j", "link", "show"], None)
        .map_err(|e| fail(e.to_string()))?;
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| fail(format!("read `ip -j link`: {e}")))?;
    Ok(all
        .iter()
        .map(|l| {
            let name = l["ifname"].as_str().unwrap_or_default().to_string();
            let address = l["address"].as_str().unwrap_or_default().to_string();
            (name, (l["mtu"].as_u64().unwrap_or(0), address))
        })
        .collect())
}

/// Gives `link` its MTU and address where they differ from `now`, and its flags but up.
fn settle(link: &Link, now: Option<&(u64, String)>) -> Result<(), RestoreError> {
    let name = link.name.as_str();
    let mtu = link.mtu.to_string();
    let mut args = vec!["link", "set", "dev", name];
    if now.map(|n| n.0) != Some(u64::from(link.mtu)) {
        args.extend(["mtu", &mtu]);
    }
    let kept = link.kind == "loopback" || link.address.is_empty();
    if !kept && now.map(|n| n.1.as_str()) != Some(link.address.as_str()) {
        args.extend(["address", link.address.as_str()]);
    }
    let on = |flag: &str| if link.has(flag) { "on" } else { "off" };
    args.extend([
        "promisc",
        on("PROMISC"),
        "allmulticast",
        on("ALLMULTI"),
        "multicast",
        on("MULTICAST"),
        "arp",
        if link.has("NOARP") { "off" } else { "on" },
    ]);
    ip(&args, None)
}
