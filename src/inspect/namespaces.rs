//! What an image holds of the tree's surroundings, as `stasis inspect` shows it: its pid,
//! UTS and time namespaces, its cgroups, its mount table (and the processes joined to an
//! ancestor's), its network namespaces (the root's, with its links' kind-specific side, and
//! those processes of the tree made, and the sockets made in another's than their
//! holder's), the
//! consoles whose master was outside the tree, and where the image stands in a chain of
//! incremental images. Each section is printed only when the image has that record.

use std::io::Write;

use crate::image::cgroup::CgroupImage;
use crate::image::chain::ChainImage;
use crate::image::mnt::{How, Mount, MountsImage};
use crate::image::netns::{LinkMore, NetLinksImage, NetNsImage};
use crate::image::ns::NsImage;
use crate::image::orphan_pty::OrphanPtyImage;
use crate::image::Image;

/// Every section of this module, in the order the text shows them.
pub(super) fn sections(image: &Image, out: &mut impl Write) -> std::io::Result<()> {
    namespaces(&image.ns, out)?;
    cgroups(&image.cgroup, out)?;
    if let Some(m) = &image.mounts {
        mounts(m, out)?;
    }
    for j in &image.mnt_joins.joins {
        writeln!(
            out,
            "pid {} is in the mount namespace of pid {}",
            j.pid, j.of
        )?;
    }
    if let Some(n) = &image.netns {
        netns(n, out)?;
        links_more(&image.netlinks.links, out)?;
    }
    for n in &image.netlinks.nested {
        writeln!(out, "\nnetwork namespace made by pid {}:", n.pid)?;
        netns(&n.ns, out)?;
        links_more(&n.links, out)?;
    }
    for p in &image.netpeers.pairs {
        let [a, b] = &p.ends;
        writeln!(
            out,
            "veth pair: {} of pid {}'s network namespace, {} of pid {}'s",
            a.name, a.pid, b.name, b.pid
        )?;
    }
    for j in &image.netjoins.joins {
        let when = if j.late {
            " once its files are open"
        } else {
            ""
        };
        writeln!(
            out,
            "pid {} enters the network namespace of pid {}{when}",
            j.pid, j.of
        )?;
    }
    for s in &image.socket_nets.sockets {
        writeln!(
            out,
            "socket:[{}] is made in the network namespace of pid {}",
            s.ino, s.of
        )?;
    }
    consoles(&image.orphan_pty, out)?;
    for p in &image.pty_devpts.ptys {
        writeln!(out, "pty {} of the tree's own devpts {}", p.index, p.devpts)?;
    }
    if let Some(c) = &image.chain {
        chain(c, out)?;
    }
    Ok(())
}

/// The tree's own pid, UTS and time namespaces.
fn namespaces(ns: &NsImage, out: &mut impl Write) -> std::io::Result<()> {
    if ns.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nnamespaces:")?;
    for p in &ns.pids {
        let inner: Vec<String> = p.inner.iter().map(i32::to_string).collect();
        writeln!(
            out,
            "  pid {}: {} in the pid namespaces below",
            p.id,
            inner.join(" / ")
        )?;
    }
    for (process, child) in &ns.pid_for_children {
        writeln!(
            out,
            "  pid {process}: its children's pid namespace is the one of init {child}"
        )?;
    }
    if let Some(u) = &ns.uts {
        writeln!(
            out,
            "  uts: hostname {:?}, domainname {:?}",
            u.hostname, u.domainname
        )?;
    }
    if let Some(t) = &ns.time {
        writeln!(
            out,
            "  time: monotonic {} ns, boottime {} ns at dump",
            t.monotonic, t.boottime
        )?;
    }
    Ok(())
}

/// Each hierarchy with its recorded directories, then each thread's cgroup in it.
fn cgroups(c: &CgroupImage, out: &mut impl Write) -> std::io::Result<()> {
    if c.is_empty() {
        return Ok(());
    }
    writeln!(out, "\ncgroups:")?;
    for (i, h) in c.hierarchies.iter().enumerate() {
        let name = if h.controllers.is_empty() {
            "unified (v2)"
        } else {
            &h.controllers
        };
        let ns_root = c.ns_roots.as_ref().and_then(|r| r.get(i));
        let ns_root = ns_root.map_or(String::new(), |r| format!(", namespace root {r}"));
        writeln!(
            out,
            "  hierarchy {name}: tops {}{ns_root}",
            h.tops.join(" ")
        )?;
        for d in &h.dirs {
            let set = d.props.iter().filter(|p| p.value.is_some()).count();
            writeln!(
                out,
                "    {} mode {:o} owner {}:{}, {set} settings",
                d.path, d.perms.mode, d.perms.uid, d.perms.gid
            )?;
        }
    }
    for t in &c.tasks {
        writeln!(out, "  task {}/{}: {}", t.pid, t.tid, t.paths.join(" "))?;
    }
    Ok(())
}

/// The tree's mount table, one mount a line, and how each is made again.
fn mounts(m: &MountsImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\nmounts: {} (the tree's own mount namespace)",
        m.mounts.len()
    )?;
    for mount in &m.mounts {
        writeln!(out, "  {}", mount_line(mount))?;
    }
    Ok(())
}

fn mount_line(m: &Mount) -> String {
    let mut propagation = String::new();
    if let Some(s) = m.shared {
        propagation += &format!(" shared:{s}");
    }
    if let Some(s) = m.master {
        propagation += &format!(" master:{s}");
    }
    if m.unbindable {
        propagation += " unbindable";
    }
    format!(
        "{} (parent {}) {} {} root {} source {} opts {}{propagation}: {}",
        m.id,
        m.parent,
        m.mountpoint,
        m.fstype,
        m.root,
        m.source,
        m.mnt_opts,
        how(&m.how)
    )
}

fn how(h: &How) -> String {
    match h {
        How::Host => "the restorer's mount at the same place".into(),
        How::HostBind { path } => format!("bind of {path}"),
        How::External { key } => format!("external, key {key}"),
        How::Root { hint: Some(h) } => format!("the root (--root, else {h})"),
        How::Root { hint: None } => "the root (--root)".into(),
        How::New => "new superblock".into(),
        How::Tmpfs => "new tmpfs, contents saved".into(),
        How::Bind { of, rel } if rel.is_empty() => format!("bind of mount {of}"),
        How::Bind { of, rel } => format!("bind of {rel} in mount {of}"),
        How::Deleted { of, rel, .. } => format!("bind of {rel} in mount {of}, deleted"),
    }
}

/// The tree's network namespace: links, and how much of the rest was saved.
fn netns(n: &NetNsImage, out: &mut impl Write) -> std::io::Result<()> {
    if !n.external.is_empty() {
        return writeln!(
            out,
            "\nnetwork namespace: external, joined at restore (key {})",
            n.external
        );
    }
    writeln!(out, "\nnetwork namespace: {} links", n.links.len())?;
    for l in &n.links {
        let peer = match l.peer.is_empty() {
            true => String::new(),
            false => format!(", peer {} outside", l.peer),
        };
        writeln!(
            out,
            "  {} {} ({}) mtu {} <{}> {}{peer}",
            l.ifindex,
            l.name,
            l.kind,
            l.mtu,
            l.flags.join(","),
            l.address
        )?;
    }
    let rules = |saved: &str| match saved.is_empty() {
        true => "none".to_string(),
        false => format!("{} lines", saved.lines().count()),
    };
    writeln!(
        out,
        "  addresses {} bytes, routes {}+{} bytes, rules {}+{} bytes, {} sysctls",
        n.addrs.len(),
        n.routes[0].len(),
        n.routes[1].len(),
        n.rules[0].len(),
        n.rules[1].len(),
        n.sysctls.len()
    )?;
    writeln!(
        out,
        "  iptables-legacy {} / ip6tables-legacy {}, nft ruleset {}",
        rules(&n.iptables_legacy[0]),
        rules(&n.iptables_legacy[1]),
        rules(&n.nft)
    )
}

/// What `netlinks.img` adds to a namespace's links: bridge ports, veth pairs inside,
/// macvlans' lower links and each kind's attributes.
fn links_more(links: &[LinkMore], out: &mut impl Write) -> std::io::Result<()> {
    for l in links {
        let mut what = Vec::new();
        if !l.master.is_empty() {
            what.push(format!(
                "port of {} ({} port attributes)",
                l.master,
                l.port.len()
            ));
        }
        if !l.peer.is_empty() {
            what.push(format!("veth peer {} inside", l.peer));
        }
        if !l.lower.is_empty() {
            what.push(format!("on {}", l.lower));
        }
        what.push(format!("{} attributes of its kind", l.info.len()));
        writeln!(out, "  {}: {}", l.name, what.join(", "))?;
    }
    Ok(())
}

/// `netlinks.img` for JSON: the links as they are, each nested namespace as
/// [`netns_json`] shows the root's.
pub(super) fn netlinks_json(n: &NetLinksImage) -> serde_json::Value {
    let nested: Vec<serde_json::Value> = (n.nested.iter())
        .map(|m| serde_json::json!({"pid": m.pid, "netns": netns_json(&m.ns), "links": m.links}))
        .collect();
    serde_json::json!({ "links": n.links, "nested": nested })
}

/// The network namespace for JSON: the saved `ip ... save` dumps (binary netlink) as
/// their sizes, everything else as it is.
pub(super) fn netns_json(n: &NetNsImage) -> serde_json::Value {
    serde_json::json!({
        "links": n.links,
        "addrs_bytes": n.addrs.len(),
        "routes_bytes": [n.routes[0].len(), n.routes[1].len()],
        "rules_bytes": [n.rules[0].len(), n.rules[1].len()],
        "sysctls": n.sysctls,
        "iptables_legacy": n.iptables_legacy,
        "nft": n.nft,
        "external": n.external,
    })
}

/// Ptys whose master was held outside the tree (a runtime's console).
fn consoles(o: &OrphanPtyImage, out: &mut impl Write) -> std::io::Result<()> {
    for p in &o.ptys {
        let [rows, cols, ..] = p.winsize;
        writeln!(
            out,
            "console pty {} of devpts {}: master outside the tree, {rows}x{cols}",
            p.index, p.devpts
        )?;
    }
    Ok(())
}

/// Where the image stands in a chain of incremental images.
fn chain(c: &ChainImage, out: &mut impl Write) -> std::io::Result<()> {
    let what = if c.predump { "pre-dump" } else { "dump" };
    write!(out, "\nchain: {what} {:016x}", c.id)?;
    match &c.parent {
        Some(p) => write!(out, ", parent {:016x} in {}", p.id, p.dir)?,
        None => write!(out, ", no parent")?,
    }
    match &c.tracker {
        Some(t) => writeln!(out, ", memory tracked by {t}"),
        None => writeln!(out),
    }
}
