//! The kind-specific side of the links of the tree's network namespace (`netlinks.img`,
//! format 15), read from the same `ip -j -d link show` as `net.rs`'s links: a bridge's
//! attributes, a bridge port's, a veth's other end when it is inside, a macvlan's mode and
//! lower link, a tun device's attributes (`tun.rs`, format 17). Each attribute the kernel
//! reports is either one `ip link` sets again (tables [`BRIDGE`], [`PORT`]: the key as
//! `ip -j` prints it, as `ip link` takes it) or state the kernel derives (timers, ids:
//! [`BRIDGE_STATE`], [`PORT_STATE`]); one of neither is refused, naming it, rather than
//! left different. Each link's changeable features (`ethtool -k`: asked for and in
//! effect, [`features`]) are kept beside, made again by `restore/ns/features.rs`. The
//! restore side is `restore/ns/netlinks.rs`.

use std::os::fd::{AsFd, OwnedFd};

use serde_json::Value;

use super::DumpError;
use crate::image::netns::{LinkFeature, LinkMore};

/// A bridge's attributes: as `ip -j -d link` prints them, as `ip link add type bridge`
/// takes them.
const BRIDGE: &[(&str, &str)] = &[
    ("forward_delay", "forward_delay"),
    ("hello_time", "hello_time"),
    ("max_age", "max_age"),
    ("ageing_time", "ageing_time"),
    ("stp_state", "stp_state"),
    ("priority", "priority"),
    ("vlan_filtering", "vlan_filtering"),
    ("vlan_protocol", "vlan_protocol"),
    ("vlan_default_pvid", "vlan_default_pvid"),
    ("vlan_stats_enabled", "vlan_stats_enabled"),
    ("vlan_stats_per_port", "vlan_stats_per_port"),
    ("group_fwd_mask", "group_fwd_mask"),
    ("group_addr", "group_address"),
    ("mcast_snooping", "mcast_snooping"),
    ("no_linklocal_learn", "no_linklocal_learn"),
    ("mcast_vlan_snooping", "mcast_vlan_snooping"),
    ("mcast_router", "mcast_router"),
    ("mcast_query_use_ifaddr", "mcast_query_use_ifaddr"),
    ("mcast_querier", "mcast_querier"),
    ("mcast_hash_elasticity", "mcast_hash_elasticity"),
    ("mcast_hash_max", "mcast_hash_max"),
    ("mcast_last_member_cnt", "mcast_last_member_count"),
    ("mcast_startup_query_cnt", "mcast_startup_query_count"),
    ("mcast_last_member_intvl", "mcast_last_member_interval"),
    ("mcast_membership_intvl", "mcast_membership_interval"),
    ("mcast_querier_intvl", "mcast_querier_interval"),
    ("mcast_query_intvl", "mcast_query_interval"),
    (
        "mcast_query_response_intvl",
        "mcast_query_response_interval",
    ),
    ("mcast_startup_query_intvl", "mcast_startup_query_interval"),
    ("mcast_stats_enabled", "mcast_stats_enabled"),
    ("mcast_igmp_version", "mcast_igmp_version"),
    ("mcast_mld_version", "mcast_mld_version"),
    ("nf_call_iptables", "nf_call_iptables"),
    ("nf_call_ip6tables", "nf_call_ip6tables"),
    ("nf_call_arptables", "nf_call_arptables"),
];

/// What a bridge reports that the kernel derives (ids, timers, the STP topology).
const BRIDGE_STATE: &[&str] = &[
    "bridge_id",
    "root_id",
    "root_port",
    "root_path_cost",
    "topology_change",
    "topology_change_detected",
    "hello_timer",
    "tcn_timer",
    "topology_change_timer",
    "gc_timer",
    "fdb_n_learned",
];

/// A bridge port's attributes: as `ip -j -d link` prints them, as `ip link set type
/// bridge_slave` takes them.
const PORT: &[(&str, &str)] = &[
    ("priority", "priority"),
    ("cost", "cost"),
    ("hairpin", "hairpin"),
    ("guard", "guard"),
    ("root_block", "root_block"),
    ("fastleave", "fastleave"),
    ("learning", "learning"),
    ("flood", "flood"),
    ("proxy_arp", "proxy_arp"),
    ("proxy_arp_wifi", "proxy_arp_wifi"),
    ("multicast_router", "mcast_router"),
    ("mcast_flood", "mcast_flood"),
    ("bcast_flood", "bcast_flood"),
    ("mcast_to_unicast", "mcast_to_unicast"),
    ("neigh_suppress", "neigh_suppress"),
    ("group_fwd_mask", "group_fwd_mask"),
    ("vlan_tunnel", "vlan_tunnel"),
    ("isolated", "isolated"),
    ("locked", "locked"),
    ("mab", "mab"),
];

/// What a bridge port reports that the kernel derives (its STP state and timers).
const PORT_STATE: &[&str] = &[
    "state",
    "id",
    "no",
    "designated_port",
    "designated_cost",
    "bridge_id",
    "root_id",
    "hold_timer",
    "message_age_timer",
    "forward_delay_timer",
    "topology_change_ack",
    "config_pending",
    "group_fwd_mask_str",
    "mcast_eht_hosts_cnt",
];

/// Attributes left out at these values, their defaults: a kernel without them refuses
/// even these (`vlan_filtering` without `CONFIG_BRIDGE_VLAN_FILTERING`).
const DEFAULTS: &[(&str, &str)] = &[("vlan_filtering", "0")];

/// The macvlan modes made again (`source` also needs its address list, not saved).
const MACVLAN_MODES: [&str; 4] = ["private", "vepa", "bridge", "passthru"];

fn fail(what: String) -> DumpError {
    DumpError::unsupported(what)
}

/// The other side of link `l` (`kind` as `net.rs` named it) of the namespace of pid
/// `root`; `None` when it has nothing more than `netns.img` says.
pub fn more(l: &Value, kind: &str, root: i32) -> Result<Option<LinkMore>, DumpError> {
    let name = l["ifname"].as_str().unwrap_or_default().to_string();
    let info = &l["linkinfo"];
    let refuse = |what: String| {
        fail(format!(
            "link {name} of the network namespace of pid {root} {what}, which stasis does \
             not rebuild"
        ))
    };
    // The kernel names the namespace of a link's other end (veth peer, macvlan lower)
    // when it is not this one.
    let inside = l.get("link_netnsid").is_none();
    let other = l["link"].as_str().filter(|_| inside).unwrap_or_default();
    let mut out = LinkMore {
        name: name.clone(),
        ..LinkMore::default()
    };
    match kind {
        "bridge" => out.info = attributes(&info["info_data"], BRIDGE, BRIDGE_STATE, &refuse)?,
        "veth" => out.peer = other.to_string(),
        "tun" => out.info = super::tun::info(l, &refuse)?,
        "macvlan" => {
            let mode = info["info_data"]["mode"].as_str().unwrap_or_default();
            if !MACVLAN_MODES.contains(&mode) {
                return Err(refuse(format!("is a macvlan link in mode {mode:?}")));
            }
            out.info.push(("mode".into(), mode.into()));
            if let Some(flag) = info["info_data"]["flag"].as_str() {
                out.info.push(("flag".into(), flag.into()));
            }
            out.lower = other.to_string();
        }
        _ => {}
    }
    if let Some(slave) = info["info_slave_kind"].as_str() {
        if slave != "bridge" {
            return Err(refuse(format!("is a port of a {slave} link")));
        }
        out.master = l["master"].as_str().unwrap_or_default().to_string();
        out.port = attributes(&info["info_slave_data"], PORT, PORT_STATE, &refuse)?;
    }
    let empty = LinkMore {
        name: name.clone(),
        ..LinkMore::default()
    };
    Ok((out != empty).then_some(out))
}

/// A socket of the namespace the thread is in, to read its links' features through.
pub fn feature_socket(root: i32) -> Result<OwnedFd, DumpError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| {
        fail(format!(
            "network namespace of pid {root}: a socket to read its links' features: {e}"
        ))
    })
}

/// The features of link `name` the driver lets change, as asked for and in effect.
pub fn features(sock: &OwnedFd, name: &str, root: i32) -> Result<Vec<LinkFeature>, DumpError> {
    let all = crate::sys::ethtool::features(sock.as_fd(), name).map_err(|e| {
        fail(format!(
            "link {name} of the network namespace of pid {root}: read its features \
             (ETHTOOL_GFEATURES): {e}"
        ))
    })?;
    Ok(all
        .into_iter()
        .filter(|f| f.available)
        .map(|f| LinkFeature {
            name: f.name,
            requested: f.requested,
            active: f.active,
        })
        .collect())
}

/// The attributes of `data` named in `table` (as `ip link` takes them, booleans as
/// `on`/`off`); one that is neither there nor in `state` is refused.
fn attributes(
    data: &Value,
    table: &[(&str, &str)],
    state: &[&str],
    refuse: &dyn Fn(String) -> DumpError,
) -> Result<Vec<(String, String)>, DumpError> {
    let Some(data) = data.as_object() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, value) in data {
        if state.contains(&key.as_str()) {
            continue;
        }
        let Some((_, arg)) = table.iter().find(|(k, _)| k == key) else {
            return Err(refuse(format!("has attribute {key} = {value}")));
        };
        let text = match value {
            Value::Bool(b) => if *b { "on" } else { "off" }.to_string(),
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(refuse(format!("has attribute {key} = {other}"))),
        };
        if !DEFAULTS.contains(&(key.as_str(), text.as_str())) {
            out.push((arg.to_string(), text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_port_and_peer_are_kept() {
        let l: Value = serde_json::from_str(
            r#"{"ifname":"va","link":"vb","master":"br0","linkinfo":{"info_kind":"veth",
            "info_slave_kind":"bridge","info_slave_data":{"state":"disabled","cost":2,
            "hairpin":false}}}"#,
        )
        .expect("json");
        let m = more(&l, "veth", 1).expect("kept").expect("some");
        assert_eq!((m.peer.as_str(), m.master.as_str()), ("vb", "br0"));
        assert_eq!(
            m.port,
            [
                ("cost".into(), "2".into()),
                ("hairpin".into(), "off".into())
            ]
        );
    }

    #[test]
    fn unknown_attribute_and_outside_peer() {
        let l: Value = serde_json::from_str(
            r#"{"ifname":"br0","linkinfo":{"info_kind":"bridge","info_data":{"new_one":1}}}"#,
        )
        .expect("json");
        let e = more(&l, "bridge", 7).expect_err("refused").to_string();
        assert!(
            e.contains("br0") && e.contains("new_one") && e.contains("pid 7"),
            "{e}"
        );
        let l: Value =
            serde_json::from_str(r#"{"ifname":"v","link":"if4","link_netnsid":0}"#).expect("json");
        assert_eq!(more(&l, "veth", 1).expect("ok"), None);
    }
}
