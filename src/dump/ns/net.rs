//! The tree's own network namespace (those its processes made: `net_nested.rs`); when
//! it is not the dumper's, stasis enters it for the whole dump ([`enter_tree`]: the
//! socket tables of `sock_diag`, `/proc/sys/net` and the tools then see the tree's
//! namespace, as if stasis ran inside it) and saves it ([`collect`], `netns.img`): its
//! links, addresses, routes, rules, sysctls and firewall. With a network lock, the whole
//! namespace is then locked ([`lock`]: everything but marked packets dropped, as CRIU
//! does), before any connection is put in repair mode. The restore side is
//! `restore/ns/net.rs`.
//!
//! Links are read with `ip -j -d link show` (JSON); addresses, routes and rules are kept
//! as `ip ... save` writes them — the kernel's rtnetlink messages, every attribute of
//! every object, which `ip ... restore` sends back unchanged. stasis reads only two bytes
//! of them (a route's and a rule's protocol, to leave out what the kernel makes itself)
//! rather than translating each attribute through a netlink crate and back: iproute2 is
//! the kernel's own tool for exactly this, and the firewall needs its tools anyway.
//! Loopback, dummy, bridge, veth, macvlan and tun/tap links are rebuilt (their
//! kind-specific side is `netlinks.rs`'s, `netlinks.img`; a tun device's is `tun.rs`'s): a veth's other end and a macvlan's lower link may
//! be outside, then named at restore (`--external veth[INSIDE]:OUTSIDE[@BRIDGE]`,
//! `--external macvlan[INSIDE]:LOWER`); any other kind is refused naming it.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{inode, DumpError};
use crate::image::netns::{Link, LinkMore, NetLinksImage, NetNsImage};
use crate::netns::{NetnsError, VethExternal};

/// iproute2's package, for messages.
const IPROUTE: &str = "iproute2";
/// The link kinds stasis makes again.
const KINDS: [&str; 6] = ["loopback", "dummy", "veth", "bridge", "macvlan", "tun"];
/// `RTPROT_KERNEL`: routes and rules the kernel makes itself.
const RTPROT_KERNEL: u8 = 2;
/// `FRA_PROTOCOL` (linux/fib_rules.h).
const FRA_PROTOCOL: u16 = 21;
/// The rules every new namespace has (IPv4: local, main, default; IPv6: local, main).
const DEFAULT_RULES: [usize; 2] = [3, 2];

/// While alive, stasis's dumping thread is in the tree's network namespace; dropping it
/// puts the thread back into its own.
pub struct InTree {
    own: File,
    /// `/proc/ROOT/ns/net` of the tree's root.
    pub path: PathBuf,
    pub root: i32,
}

impl Drop for InTree {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.own, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// Enters the network namespace of `root` if it is not the dumper's (`None` then).
pub fn enter_tree(root: i32) -> Result<Option<InTree>, DumpError> {
    let path = PathBuf::from(format!("/proc/{root}/ns/net"));
    if inode(&root.to_string(), "net") == inode("thread-self", "net") {
        return Ok(None);
    }
    let err = |e: String| fail(format!("enter the network namespace of pid {root}: {e}"));
    let own = File::open("/proc/thread-self/ns/net").map_err(|e| err(e.to_string()))?;
    let theirs = File::open(&path).map_err(|e| err(e.to_string()))?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| err(e.to_string()))?;
    Ok(Some(InTree { own, path, root }))
}

/// `--external net[INO]:KEY`: the record of a namespace the caller keeps (only KEY), once
/// INO is checked to be the tree's own namespace (`in_net`, entered for the root `root`).
pub fn external(
    root: i32,
    in_net: Option<&InTree>,
    ext: &crate::netns::NetExternal,
) -> Result<NetNsImage, DumpError> {
    let tree = inode(&root.to_string(), "net");
    if in_net.is_none() || tree != Some(ext.ino) {
        let tree = tree.map_or("unknown".into(), |i| format!("net[{i}]"));
        let whose = match in_net {
            Some(_) => "its own",
            None => "the dumper's",
        };
        return Err(fail(format!(
            "external net[{}]:{} is not the network namespace of pid {root} ({tree}, {whose})",
            ext.ino, ext.key
        )));
    }
    Ok(NetNsImage {
        external: ext.key.clone(),
        ..NetNsImage::default()
    })
}

/// A veth of a namespace whose other end is in another (`link_netnsid`): its name, the
/// id the namespace of its other end has in its own, and that end's index there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outside {
    pub name: String,
    pub nsid: i64,
    pub peer_index: i64,
}

/// What [`collect`] saves of a namespace: its record, its links' kind-specific side, and
/// its veths whose other end is in another namespace (paired by `net_peers.rs`).
pub type Collected = (NetNsImage, NetLinksImage, Vec<Outside>);

/// Everything of the namespace the dumping thread is in (that of `tree`).
pub fn collect(tree: &InTree, veths: &[VethExternal]) -> Result<Collected, DumpError> {
    let tool_err = |e: NetnsError| {
        fail(format!(
            "network namespace of pid {} ({}): {e}",
            tree.root,
            tree.path.display()
        ))
    };
    let ip = |args: &[&str]| crate::netns::run_here(IPROUTE, "ip", args, None).map_err(tool_err);
    let out = Outputs::take(&ip)?;
    let (links, more, outside) = links(&out.links, tree.root, veths)?;
    let routes = out.routes.map(|r| without_kernel(&r, 16 + 5, None));
    let mut rules = [Vec::new(), Vec::new()];
    for (i, blob) in out.rules.iter().enumerate() {
        let kept = without_kernel(blob, 0, Some(FRA_PROTOCOL));
        let defaults = count(blob) - count(&kept);
        if defaults != DEFAULT_RULES[i] {
            return Err(fail(format!(
                "the network namespace of pid {} lacks one of its default {} routing \
                 rules (it has {defaults} of {}), which stasis cannot take away from a new \
                 namespace",
                tree.root,
                if i == 0 { "IPv4" } else { "IPv6" },
                DEFAULT_RULES[i]
            )));
        }
        rules[i] = kept;
    }
    let ns = NetNsImage {
        links,
        addrs: out.addrs,
        routes,
        rules,
        sysctls: out.sysctls,
        iptables_legacy: out.legacy,
        nft: out.nft,
        external: String::new(),
    };
    Ok((ns, more, outside))
}

/// Runs `ip` with these arguments in the namespace, errors naming it.
type IpTool<'a> = dyn Fn(&[&str]) -> Result<Vec<u8>, DumpError> + Sync + 'a;

/// What the namespace's tools print and its sysctls, read side by side: each tool is a few
/// milliseconds of start-up, all spent while the tree is frozen. The threads are in the
/// namespace of the one that spawns them, and so are the tools they run.
struct Outputs {
    links: Vec<u8>,
    routes: [Vec<u8>; 2],
    rules: [Vec<u8>; 2],
    addrs: Vec<u8>,
    sysctls: Vec<(String, String)>,
    legacy: [String; 2],
    nft: String,
}

impl Outputs {
    fn take(ip: &IpTool) -> Result<Self, DumpError> {
        let joined = |r: std::thread::Result<Result<Vec<u8>, DumpError>>| {
            r.unwrap_or_else(|_| Err(fail("a thread running ip panicked".into())))
        };
        std::thread::scope(|s| {
            let ip_of = |args: &'static [&'static str]| s.spawn(move || ip(args));
            let links = ip_of(&["-j", "-d", "link", "show"]);
            let routes = [
                ip_of(&["-4", "route", "save", "table", "all"]),
                ip_of(&["-6", "route", "save", "table", "all"]),
            ];
            let rules = [
                ip_of(&["-4", "rule", "save"]),
                ip_of(&["-6", "rule", "save"]),
            ];
            let addrs = ip_of(&["addr", "save"]);
            let legacy4 = s.spawn(|| legacy("iptables-legacy-save"));
            let legacy6 = s.spawn(|| legacy("ip6tables-legacy-save"));
            let nft = s.spawn(nft);
            let sysctls = sysctls();
            let text = |r: std::thread::Result<Result<String, DumpError>>| {
                r.unwrap_or_else(|_| Err(fail("a thread running a firewall tool panicked".into())))
            };
            let [r4, r6] = routes;
            let [u4, u6] = rules;
            Ok(Outputs {
                links: joined(links.join())?,
                routes: [joined(r4.join())?, joined(r6.join())?],
                rules: [joined(u4.join())?, joined(u6.join())?],
                addrs: joined(addrs.join())?,
                sysctls,
                legacy: [text(legacy4.join())?, text(legacy6.join())?],
                nft: text(nft.join())?,
            })
        })
    }
}

/// The links of `ip -j -d link show` and their kind-specific side; one stasis cannot
/// make again is refused.
fn links(
    json: &[u8],
    root: i32,
    veths: &[VethExternal],
) -> Result<(Vec<Link>, NetLinksImage, Vec<Outside>), DumpError> {
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| fail(format!("read `ip -j link show`: {e}")))?;
    let mut more = NetLinksImage::default();
    let mut links = Vec::new();
    let mut outside = Vec::new();
    let sock = super::netlinks::feature_socket(root)?;
    for l in &all {
        let link = link(l, root, veths)?;
        let mut m = super::netlinks::more(l, &link.kind, root)?.unwrap_or_else(|| LinkMore {
            name: link.name.clone(),
            ..LinkMore::default()
        });
        m.features = super::netlinks::features(&sock, &link.name, root)?;
        more.links.push(m);
        if let (true, Some(nsid)) = (link.kind == "veth", l["link_netnsid"].as_i64()) {
            outside.push(Outside {
                name: link.name.clone(),
                nsid,
                peer_index: l["link_index"].as_i64().unwrap_or(0),
            });
        }
        links.push(link);
    }
    Ok((links, more, outside))
}

fn link(l: &serde_json::Value, root: i32, veths: &[VethExternal]) -> Result<Link, DumpError> {
    let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
    let kind = match (
        text("link_type").as_str(),
        l["linkinfo"]["info_kind"].as_str(),
    ) {
        ("loopback", _) => "loopback".to_string(),
        (_, Some(k)) => k.to_string(),
        (t, None) => t.to_string(),
    };
    let name = text("ifname");
    let external = veths.iter().find(|v| v.inside == name && v.kind == kind);
    if !KINDS.contains(&kind.as_str()) {
        return Err(fail(format!(
            "link {name} of the network namespace of pid {root} is a {kind} link; stasis \
             rebuilds loopback, dummy, bridge, veth, macvlan and tun/tap links"
        )));
    }
    let flags = l["flags"].as_array().map_or(Vec::new(), |f| {
        f.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    });
    // A veth's other end outside keeps the name given at dump, if any (else the one
    // given at restore); a macvlan's lower link outside is named at restore.
    let peer = external.filter(|_| kind == "veth");
    Ok(Link {
        ifindex: l["ifindex"].as_i64().unwrap_or(0) as i32,
        name,
        kind,
        mtu: l["mtu"].as_u64().unwrap_or(0) as u32,
        flags,
        address: text("address"),
        peer: peer.map(|v| v.outside.clone()).unwrap_or_default(),
    })
}

/// The rtnetlink messages of an `ip ... save` blob (a 4-byte magic, then messages).
pub fn messages(blob: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 4.min(blob.len());
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
        let msg = blob.get(at..at + len).filter(|_| len >= 16)?;
        at += (len + 3) & !3;
        Some(msg)
    })
}

fn count(blob: &[u8]) -> usize {
    messages(blob).count()
}

/// The blob without the messages made by the kernel: protocol byte at `offset` of the
/// message (a route's `rtm_protocol`), or in attribute `attr` (a rule's).
fn without_kernel(blob: &[u8], offset: usize, attr: Option<u16>) -> Vec<u8> {
    let mut out = blob.get(..4).unwrap_or_default().to_vec();
    for msg in messages(blob) {
        let proto = match attr {
            None => msg.get(offset).copied(),
            Some(a) => crate::rtnl::attribute(msg, 16 + 12, a).and_then(|v| v.first().copied()),
        };
        if proto != Some(RTPROT_KERNEL) {
            out.extend_from_slice(msg);
            out.resize((out.len() + 3) & !3, 0);
        }
    }
    out
}

/// Every readable and writable file below `/proc/sys/net`, as the dumping thread's
/// namespace shows it.
fn sysctls() -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(Path::new("/proc/sys/net"), "", &mut out);
    out
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(&e.path(), &format!("{name}/"), out);
        } else if meta.permissions().mode() & 0o600 == 0o600 && meta.uid() == 0 {
            if let Ok(v) = crate::proc::sysctl::read(&e.path()) {
                out.push((name, v.trim_end_matches('\n').to_string()));
            }
        }
    }
}

/// `TOOL -c` of iptables-legacy (empty when it has no table or is not installed: then
/// the namespace has none).
fn legacy(tool: &str) -> Result<String, DumpError> {
    match crate::netns::run_here("iptables", tool, &["-c"], None) {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out).into_owned();
            let any = text.lines().any(|l| l.starts_with('*'));
            Ok(if any { text } else { String::new() })
        }
        Err(NetnsError::NoTool { .. }) => Ok(String::new()),
        Err(e) => Err(fail(format!("save the firewall: {e}"))),
    }
}

/// `nft list ruleset` (empty without tables). Without nft, rules iptables-nft shows
/// would be lost: refused.
fn nft() -> Result<String, DumpError> {
    match crate::netns::run_here("nftables", "nft", &["list", "ruleset"], None) {
        Ok(out) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(NetnsError::NoTool { .. }) => no_nft_rules().map(|()| String::new()),
        Err(e) => Err(fail(format!("save the firewall: {e}"))),
    }
}

/// Checks that `iptables-nft-save` (if installed) shows no table nft could have saved.
fn no_nft_rules() -> Result<(), DumpError> {
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        let Ok(out) = crate::netns::run_here("iptables", tool, &[], None) else {
            continue;
        };
        if String::from_utf8_lossy(&out)
            .lines()
            .any(|l| l.starts_with('*'))
        {
            return Err(fail(format!(
                "the network namespace has nftables tables ({tool} shows them) and nft is \
                 not installed to save them; install nftables"
            )));
        }
    }
    Ok(())
}

/// Locks the whole namespace under the root's name (`crate::netlock::lock_namespace`);
/// returns the mode used. nftables when `nft` is there, whatever `mode` asked (as the
/// restore's lock of a new namespace): a table of stasis's own is removed whole, while
/// iptables-nft leaves behind the `filter` tables it made for its chains, which a dump
/// that lets the tree run on (`--leave-running`, a failure) would add to the
/// namespace's rule set.
pub fn lock(
    tree: &InTree,
    mode: crate::netlock::LockMode,
) -> Result<crate::netlock::LockMode, DumpError> {
    use crate::netlock::LockMode;
    let mode = match mode {
        LockMode::Iptables if crate::netlock::available(LockMode::Nftables).is_ok() => {
            LockMode::Nftables
        }
        other => other,
    };
    let ns = crate::netlock::Netns::Ours;
    crate::netlock::lock_namespace(mode, &ns, tree.root).map_err(|e| {
        fail(format!(
            "lock the network namespace of pid {} ({}): {e}",
            tree.root,
            tree.path.display()
        ))
    })?;
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(proto_at: usize, proto: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[proto_at] = proto;
        m
    }

    #[test]
    fn kernel_routes_are_left_out() {
        let mut blob = vec![1, 2, 3, 4];
        blob.extend(msg(21, RTPROT_KERNEL, 28));
        blob.extend(msg(21, 3, 30));
        blob.extend([0, 0]);
        let kept = without_kernel(&blob, 21, None);
        assert_eq!(count(&blob), 2);
        assert_eq!(count(&kept), 1);
        assert_eq!(messages(&kept).next().map(|m| m[21]), Some(3));
    }

    #[test]
    fn rule_protocol_is_read_from_its_attribute() {
        let mut m = vec![0u8; 28];
        m.extend([5, 0, 21, 0, RTPROT_KERNEL, 0, 0, 0]);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let mut blob = vec![0; 4];
        blob.extend(&m);
        assert_eq!(count(&without_kernel(&blob, 0, Some(FRA_PROTOCOL))), 0);
    }
}
