//! The network namespace record (`netns.img`, kind 16): the tree's own network namespace
//! (one per tree, the root's, not the dumper's). Absent: the tree lived in the dumper's
//! network namespace and comes back in the restorer's.
//!
//! Addresses, routes and rules are kept as iproute2 writes them (`ip addr save`,
//! `ip -4|-6 route save table all`, `ip -4|-6 rule save`: the kernel's own rtnetlink
//! messages, every attribute included) and given back to `ip ... restore`; the routes
//! the kernel makes itself from addresses (`proto kernel`) and the default rules are left
//! out at dump (`dump/ns/net.rs`). The firewall is kept as its tools print it.
//!
//! What `netns.img`'s links do not say is in `netlinks.img` (format 15, [`NetLinksImage`],
//! `dump/ns/netlinks.rs`): each link's kind-specific attributes, bridge and other end,
//! and since format 18 its features ([`LinkFeature`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file.
pub const NETNS: &str = "netns.img";
/// Name of the links' record file (format 15).
pub const NETLINKS: &str = "netlinks.img";
/// Name of the record of veth pairs between the tree's namespaces (format 16).
pub const NETPEERS: &str = "netpeers.img";
/// Name of the record of processes that entered a namespace of the tree (format 16).
pub const NETJOINS: &str = "netns-join.img";
/// Name of the record of sockets held outside their namespace (format 17).
pub const SOCKETNETS: &str = "netns-sockets.img";

/// `netns-sockets.img` (format 17): the sockets of a network namespace of the tree that
/// a process of another of the tree's namespaces holds. Absent: none (every socket is of
/// the namespace of each process holding it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketNetsImage {
    pub sockets: Vec<SocketNet>,
}

/// Socket `ino` (its inode at dump, as the fd records name it) is of the network
/// namespace process `of` made (the root's for the tree's own): whichever process makes
/// it at restore makes it there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketNet {
    pub ino: u64,
    pub of: i32,
}

/// A socket is listed once, and its namespace is the root's or one a process of the
/// tree made (`makers`: the root and the makers of `netlinks.img`'s namespaces).
pub fn check_socket_nets(
    img: &SocketNetsImage,
    makers: &[i32],
    path: &Path,
) -> Result<(), ImageError> {
    for (i, s) in img.sockets.iter().enumerate() {
        let what = if img.sockets[..i].iter().any(|o| o.ino == s.ino) {
            format!("socket:[{}] is listed twice", s.ino)
        } else if !makers.contains(&s.of) {
            format!(
                "socket:[{}] is of the network namespace of pid {}, which made none",
                s.ino, s.of
            )
        } else {
            continue;
        };
        return Err(ImageError::Invalid {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(())
}

/// `netns-join.img` (format 16): the processes in a network namespace of the tree other
/// than their parent's that they did not make. Absent: none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetJoinsImage {
    pub joins: Vec<NetJoin>,
}

/// Process `pid` is in the network namespace process `of` made (the root's for the
/// tree's own): it enters it right after its takeover, or with `late` once its files are
/// open (its sockets are of its parent's namespace; it has no children).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetJoin {
    pub pid: i32,
    pub of: i32,
    pub late: bool,
}

/// A process joins at most once, never its own namespace.
pub fn validate_joins(img: &NetJoinsImage, path: &Path) -> Result<(), ImageError> {
    for (i, j) in img.joins.iter().enumerate() {
        if j.pid == j.of || img.joins[..i].iter().any(|o| o.pid == j.pid) {
            return Err(ImageError::Invalid {
                path: path.to_path_buf(),
                what: format!(
                    "pid {} joins the network namespace of {} twice or itself",
                    j.pid, j.of
                ),
            });
        }
    }
    Ok(())
}

/// `netns.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetNsImage {
    /// Every link of the namespace, in ifindex order (the loopback first).
    pub links: Vec<Link>,
    /// `ip addr save`.
    pub addrs: Vec<u8>,
    /// `ip -4 route save table all`, then `ip -6 ...`, without `proto kernel` routes.
    pub routes: [Vec<u8>; 2],
    /// `ip -4 rule save`, then `ip -6 ...`, without the default rules.
    pub rules: [Vec<u8>; 2],
    /// Every readable and writable file below `/proc/sys/net` in the namespace (path
    /// below `/proc/sys/net/`, value without its trailing newline).
    pub sysctls: Vec<(String, String)>,
    /// `iptables-legacy-save -c` and `ip6tables-legacy-save -c` (empty: no legacy table).
    pub iptables_legacy: [String; 2],
    /// `nft list ruleset` (iptables-nft rules included; empty: no table).
    pub nft: String,
    /// Not empty: the namespace was the caller's (`--external net[INO]:KEY`), nothing of it
    /// above is saved, and the restore joins the namespace given under this KEY.
    pub external: String,
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub ifindex: i32,
    pub name: String,
    /// `loopback`, `dummy`, `veth`, `bridge`, `macvlan` (what stasis makes again; the
    /// last two from format 15).
    pub kind: String,
    pub mtu: u32,
    /// Its flags as `ip link` names them (`UP`, `LOOPBACK`, `PROMISC`...).
    pub flags: Vec<String>,
    /// Hardware address, `aa:bb:..` (empty for none).
    pub address: String,
    /// A veth's other end, outside the namespace (`--external veth[NAME]:PEER` at dump;
    /// empty: named at restore).
    pub peer: String,
}

/// `netlinks.img` (format 15): what `netns.img` does not say of its links, one entry per
/// link that has more (by name), and the network namespaces made inside the tree.
/// Absent: no link has more, every process was in the root's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLinksImage {
    pub links: Vec<LinkMore>,
    /// The network namespaces processes of the tree made (`unshare(CLONE_NEWNET)`), in
    /// tree order.
    pub nested: Vec<NestedNet>,
}

/// A network namespace made inside the tree: every process in it is `pid` or a
/// descendant of it that did not leave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedNet {
    /// The process that made it (the first in tree order whose parent is elsewhere).
    pub pid: i32,
    pub ns: NetNsImage,
    /// What `ns`'s links have more, as [`NetLinksImage::links`].
    pub links: Vec<LinkMore>,
}

/// The kind-specific side of one link of `netns.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMore {
    /// The link of `netns.img` it completes.
    pub name: String,
    /// The bridge it is a port of (empty: none).
    pub master: String,
    /// A veth's other end when it is in the same namespace (empty: outside).
    pub peer: String,
    /// A macvlan's lower link when it is in the same namespace (empty: outside, named at
    /// restore with `--external macvlan[NAME]:LOWER`).
    pub lower: String,
    /// The kind's attributes as `ip link add NAME type KIND` takes them (key, value).
    pub info: Vec<(String, String)>,
    /// Its attributes as a bridge port, as `ip link set NAME type bridge_slave` takes
    /// them.
    pub port: Vec<(String, String)>,
    /// Its features the driver lets change (`ethtool -k`), asked for and in effect
    /// (format 18; `restore/ns/features.rs`). Empty in an older image.
    pub features: Vec<LinkFeature>,
}

/// One changeable feature of a link, by the kernel's name (`tx-tcp-segmentation`...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFeature {
    pub name: String,
    /// Asked for (`ethtool -K`, `TUNSETOFFLOAD`, or the driver's default).
    pub requested: bool,
    /// In effect.
    pub active: bool,
}

/// `netlinks.img` as versions 15 to 17 wrote it: links without their features.
#[derive(Deserialize)]
pub struct NetLinksImageV17 {
    links: Vec<LinkMoreV17>,
    nested: Vec<NestedNetV17>,
}

#[derive(Deserialize)]
struct NestedNetV17 {
    pid: i32,
    ns: NetNsImage,
    links: Vec<LinkMoreV17>,
}

#[derive(Deserialize)]
struct LinkMoreV17 {
    name: String,
    master: String,
    peer: String,
    lower: String,
    info: Vec<(String, String)>,
    port: Vec<(String, String)>,
}

impl From<LinkMoreV17> for LinkMore {
    fn from(l: LinkMoreV17) -> Self {
        let (name, master, peer, lower) = (l.name, l.master, l.peer, l.lower);
        LinkMore {
            name,
            master,
            peer,
            lower,
            info: l.info,
            port: l.port,
            features: Vec::new(),
        }
    }
}

impl From<NetLinksImageV17> for NetLinksImage {
    fn from(old: NetLinksImageV17) -> Self {
        let links = |l: Vec<LinkMoreV17>| l.into_iter().map(Into::into).collect();
        NetLinksImage {
            links: links(old.links),
            nested: (old.nested.into_iter())
                .map(|n| NestedNet {
                    pid: n.pid,
                    ns: n.ns,
                    links: links(n.links),
                })
                .collect(),
        }
    }
}

/// `netpeers.img` (format 16): the veth pairs whose two ends are in two different network
/// namespaces of the tree. Each end is also a link of its namespace's record, as a veth
/// whose other end is outside. Absent: none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPeersImage {
    pub pairs: Vec<NetPeer>,
}

/// One veth pair between two namespaces of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPeer {
    pub ends: [LinkEnd; 2],
}

/// One end of a [`NetPeer`]: the link `name` of the namespace process `pid` made (the
/// root's for the tree's own namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEnd {
    pub pid: i32,
    pub name: String,
}

impl NetPeersImage {
    /// The other end of link `name` of the namespace of `pid`, if it is one of a pair.
    pub fn other_end(&self, pid: i32, name: &str) -> Option<&LinkEnd> {
        self.pairs.iter().find_map(|p| {
            let at = p.ends.iter().position(|e| e.pid == pid && e.name == name)?;
            Some(&p.ends[1 - at])
        })
    }
}

/// Checks each end's name is a link name.
pub fn validate_peers(peers: &NetPeersImage, path: &Path) -> Result<(), ImageError> {
    match (peers.pairs.iter().flat_map(|p| &p.ends)).find(|e| !link_name(&e.name)) {
        Some(e) => Err(ImageError::Invalid {
            path: path.to_path_buf(),
            what: format!("bad veth end {:?} of pid {}", e.name, e.pid),
        }),
        None => Ok(()),
    }
}

impl NetLinksImage {
    /// The entry of link `name`, if any.
    pub fn of(&self, name: &str) -> Option<&LinkMore> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// A link name as the kernel takes it (`IFNAMSIZ`, no `/` or space).
fn link_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' '])
}

/// Checks each name and attribute is one `ip` reads as such (no option, no space).
pub fn validate_links(links: &NetLinksImage, path: &Path) -> Result<(), ImageError> {
    let bad = |what: String| ImageError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    let word = |w: &str| !w.is_empty() && !w.starts_with('-') && !w.contains(char::is_whitespace);
    let nested = links.nested.iter().flat_map(|n| &n.links);
    for n in &links.nested {
        validate(&n.ns, path)?;
    }
    for l in links.links.iter().chain(nested) {
        let names = [&l.master, &l.peer, &l.lower];
        if !link_name(&l.name) || names.iter().any(|n| !n.is_empty() && !link_name(n)) {
            return Err(bad(format!("bad link names of {:?}", l.name)));
        }
        if let Some((k, v)) = (l.info.iter().chain(&l.port)).find(|(k, v)| !word(k) || !word(v)) {
            return Err(bad(format!(
                "bad attribute {k:?} {v:?} of link {:?}",
                l.name
            )));
        }
    }
    Ok(())
}

impl Link {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Checks what a restore relies on: a loopback with ifindex 1, sane names and sysctls.
pub fn validate(ns: &NetNsImage, path: &Path) -> Result<(), ImageError> {
    let bad = |what: String| ImageError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    for l in &ns.links {
        if !link_name(&l.name) || l.ifindex <= 0 {
            return Err(bad(format!("bad link {:?} (index {})", l.name, l.ifindex)));
        }
    }
    for (name, _) in &ns.sysctls {
        if name.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(bad(format!("bad sysctl name {name:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn more(key: &str, value: &str) -> NetLinksImage {
        NetLinksImage {
            links: vec![LinkMore {
                name: "br0".into(),
                info: vec![(key.into(), value.into())],
                ..LinkMore::default()
            }],
            nested: Vec::new(),
        }
    }

    #[test]
    fn link_attributes_must_be_words_ip_reads_as_such() {
        let path = Path::new("netlinks.img");
        assert!(validate_links(&more("forward_delay", "700"), path).is_ok());
        for (k, v) in [("-netns", "1"), ("stp_state", "1 name x"), ("", "1")] {
            assert!(validate_links(&more(k, v), path).is_err(), "{k:?} {v:?}");
        }
        let mut nested = more("forward_delay", "700");
        nested.nested.push(NestedNet {
            pid: 7,
            links: vec![LinkMore {
                name: "a b".into(),
                ..LinkMore::default()
            }],
            ..NestedNet::default()
        });
        assert!(validate_links(&nested, path).is_err());
    }

    #[test]
    fn netlinks_round_trip_through_postcard() {
        let mut img = more("mode", "private");
        img.links[0].features.push(LinkFeature {
            name: "tx-tcp-segmentation".into(),
            requested: true,
            active: false,
        });
        let bytes = postcard::to_allocvec(&img).expect("encode");
        let back: NetLinksImage = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, img);
    }

    /// A link as versions 15 to 17 wrote it: the fields of today but the features.
    type OldLink = (
        String,
        String,
        String,
        String,
        Vec<(String, String)>,
        Vec<(String, String)>,
    );

    #[derive(Serialize)]
    struct Old {
        links: Vec<OldLink>,
        nested: Vec<(i32, NetNsImage, Vec<OldLink>)>,
    }

    #[test]
    fn netlinks_of_version_17_read_without_features() {
        let link = |name: &str| {
            (
                name.to_string(),
                "br0".to_string(),
                String::new(),
                String::new(),
                vec![("mode".to_string(), "bridge".to_string())],
                Vec::new(),
            )
        };
        let old = Old {
            links: vec![link("mv0")],
            nested: vec![(7, NetNsImage::default(), vec![link("mv1")])],
        };
        let bytes = postcard::to_allocvec(&old).expect("encode");
        let back: NetLinksImage = postcard::from_bytes::<NetLinksImageV17>(&bytes)
            .expect("decode")
            .into();
        let want = |name: &str| LinkMore {
            name: name.into(),
            master: "br0".into(),
            info: vec![("mode".into(), "bridge".into())],
            ..LinkMore::default()
        };
        assert_eq!(back.links, vec![want("mv0")]);
        assert_eq!(back.nested[0].pid, 7);
        assert_eq!(back.nested[0].links, vec![want("mv1")]);
    }

    #[test]
    fn a_socket_is_made_once_in_a_namespace_of_the_tree() {
        let path = Path::new("netns-sockets.img");
        let net = |ino, of| SocketNet { ino, of };
        let img = |sockets| SocketNetsImage { sockets };
        let makers = [10, 12];
        assert!(check_socket_nets(&img(vec![net(5, 10), net(6, 12)]), &makers, path).is_ok());
        assert!(check_socket_nets(&img(vec![net(5, 10), net(5, 12)]), &makers, path).is_err());
        assert!(check_socket_nets(&img(vec![net(5, 11)]), &makers, path).is_err());
        let bytes = postcard::to_allocvec(&img(vec![net(5, 10)])).expect("encode");
        let back: SocketNetsImage = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, img(vec![net(5, 10)]));
    }
}
