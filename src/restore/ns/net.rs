//! The tree's own network namespace, the restore side of `dump/ns/net.rs`: the root is
//! cloned into a new one (`CLONE_NEWNET`, [`super::root_clone_flags`]) — or into the one
//! `--join-ns net:PATH` names, entered around its clone ([`Entered::join`]) — and stasis's
//! restoring thread then enters it until the restore is over ([`Entered::tree`]): the
//! sockets stasis opens for the tree (fd handovers, the raw socket replaying a closing
//! connection's segments) and the lifting of the network lock belong there. Sockets of
//! the tree are created by its own tasks, so in its namespace.
//!
//! A new namespace is filled ([`fill`]) before any task of the tree but the root exists,
//! in this order: links made and set (MTU, flags but up: `netlinks.rs`); the firewall
//! (`iptables-legacy-restore`, `nft -f`: it may load the modules whose sysctls follow);
//! the sysctls that differ from the new namespace's (`all`/`default` before the links'
//! own); links up; addresses (`ip addr restore`: the loopback's own, made as it comes
//! up, are already there), routes and rules (`ip ... restore`).
//!
//! The root's namespace, locked with nftables (or not locked) while the tree is rebuilt,
//! gets its firewall last instead ([`Entered::finish`]): after every socket of the tree
//! is made and a closing connection's replayed segments reached it (a rule of the tree
//! may drop them, as the lock's mark does not pass another table's `drop`), before the
//! lock is lifted and any process runs. Its sysctls missing until then (those of a module
//! the firewall loads) are written after it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::super::RestoreError;
use crate::image::netns::NetNsImage;
use crate::netlock::LockMode;
use crate::netns::VethExternal;

const IPROUTE: &str = "iproute2";

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("network namespace of the tree: {what}"),
    }
}

/// While alive, stasis's restoring thread is in another network namespace; dropping it
/// puts the thread back into its own.
pub struct Entered {
    own: File,
    /// The lock a new namespace holds while the tree is rebuilt (mode, root).
    lock: Option<(crate::netlock::LockMode, i32)>,
    /// The firewall and sysctls left for [`Entered::finish`].
    late: Option<Late>,
}

/// What a new namespace gets once the tree's sockets exist: its firewall and every
/// sysctl again (those of the modules it loads were missing before).
struct Late {
    firewall: Firewall,
    sysctls: Vec<(String, String)>,
}

/// A namespace's saved firewall: iptables-legacy tables (IPv4, IPv6), nftables rule set.
#[derive(Clone)]
struct Firewall {
    legacy: [String; 2],
    nft: String,
}

impl Firewall {
    fn of(ns: &NetNsImage) -> Firewall {
        Firewall {
            legacy: ns.iptables_legacy.clone(),
            nft: ns.nft.clone(),
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.own, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// The inode of stasis's own network namespace, taken when it first enters another.
static OWN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The inode of the network namespace stasis was started in, also while it is in the
/// tree's.
pub fn own_ino() -> std::io::Result<u64> {
    match OWN.get() {
        Some(&ino) => Ok(ino),
        None => std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()),
    }
}

impl Entered {
    /// Enters the namespace at `path` (`--join-ns net:PATH`, before the root's clone).
    pub fn join(path: &Path) -> Result<Entered, RestoreError> {
        let err = |e: String| fail(format!("join {}: {e}", path.display()));
        let own = File::open("/proc/thread-self/ns/net").map_err(|e| err(e.to_string()))?;
        if let Ok(m) = own.metadata() {
            let _ = OWN.set(m.ino());
        }
        let ns = File::open(path).map_err(|e| err(e.to_string()))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| err(e.to_string()))?;
        Ok(Entered {
            own,
            lock: None,
            late: None,
        })
    }

    /// Enters the namespace the root `root` was cloned into.
    pub fn tree(root: i32) -> Result<Entered, RestoreError> {
        Self::join(&PathBuf::from(format!("/proc/{root}/ns/net")))
    }
}

/// The network namespace the tree is restored into instead of a new one: the one given
/// under the key of an external namespace (`--inherit-fd fd[N]:KEY`, for a dump with
/// `--external net[INO]:KEY`), else `join` (`--join-ns net:PATH`). A tree whose namespace
/// was external needs one; an inherited fd whose key names neither a pipe nor that
/// namespace is refused.
pub fn to_join(
    image: &crate::image::Image,
    join: Option<&Path>,
    inherit: &[(String, i32)],
) -> Result<Option<PathBuf>, RestoreError> {
    let external = image.netns.as_ref().map_or("", |n| n.external.as_str());
    let mut given = None;
    for (key, fd) in inherit.iter().filter(|(k, _)| !k.starts_with("pipe:[")) {
        if key != external {
            return Err(fail(format!(
                "inherited fd {fd} has key {key:?}, which names no external of the image"
            )));
        }
        given = Some(PathBuf::from(format!("/proc/self/fd/{fd}")));
    }
    match (given, join) {
        (Some(path), _) => Ok(Some(path)),
        (None, Some(path)) => Ok(Some(path.to_path_buf())),
        (None, None) if external.is_empty() => Ok(None),
        (None, None) => Err(fail(format!(
            "it was the caller's (external, key {external:?}): give the namespace to restore \
             into with --inherit-fd fd[N]:{external} or --join-ns net:PATH"
        ))),
    }
}

/// Enters the new network namespace the root `root` was cloned into and fills it, if
/// the image has one; locks it whole with `lock` (the dumped namespace's lock), as the
/// dump did, until the restore lifts the lock (`restore/netlock.rs`): a connection
/// rebuilt before its peer would otherwise meet a reset.
pub fn enter_new(
    image: &crate::image::Image,
    root: i32,
    lock: LockMode,
    veths: &[VethExternal],
    peers: &super::netlinks::Peers,
) -> Result<Option<Entered>, RestoreError> {
    let Some(ns) = &image.netns else {
        return Ok(None);
    };
    let mut entered = Entered::tree(root)?;
    // nftables when nft is there: a table of its own, removed whole (iptables-nft would
    // leave behind the filter tables it makes for its chains).
    let mode = match lock {
        LockMode::Skip => LockMode::Skip,
        _ if crate::netlock::available(LockMode::Nftables).is_ok() => LockMode::Nftables,
        other => other,
    };
    // An iptables lock shares the firewall's tables (restoring them would flush it):
    // then the firewall goes first, as before the lock.
    let firewall_last = mode != LockMode::Iptables;
    let making = super::netlinks::Making {
        ns,
        more: &image.netlinks,
        own: &entered.own,
        root,
        externals: veths,
        peers,
    };
    fill(&making, !firewall_last)?;
    if firewall_last {
        entered.late = Some(Late {
            firewall: Firewall::of(ns),
            sysctls: ns.sysctls.clone(),
        });
    }
    if mode == LockMode::Skip {
        return Ok(Some(entered));
    }
    crate::netlock::lock_namespace(mode, &crate::netlock::Netns::Ours, root)
        .map_err(|e| fail(format!("lock it while the tree is rebuilt: {e}")))?;
    entered.lock = Some((mode, root));
    Ok(Some(entered))
}

impl Entered {
    /// Installs the firewall [`enter_new`] left for after the tree's sockets, then writes
    /// the sysctls again (a missing one fails now). Ordering requirements: every socket
    /// of the tree made and every closing connection replayed; before the lock is lifted
    /// and any process runs.
    pub fn finish(&mut self) -> Result<(), RestoreError> {
        let Some(late) = self.late.take() else {
            return Ok(());
        };
        firewall(&late.firewall)?;
        sysctls(&late.sysctls, true)
    }

    /// Lifts the lock [`enter_new`] took, if it still holds; whether it did.
    pub fn unlock(&mut self) -> Result<bool, RestoreError> {
        let Some((mode, root)) = self.lock.take() else {
            return Ok(false);
        };
        crate::netlock::unlock(mode, root)
            .map_err(|e| fail(format!("lift the lock of the new namespace: {e}")))?;
        Ok(true)
    }
}

/// Fills the new namespace the restoring thread is in with what `m.ns` saved; its
/// firewall too with `with_firewall` (else the caller installs it later, and a sysctl
/// missing until then is left for that time).
pub fn fill(m: &super::netlinks::Making, with_firewall: bool) -> Result<(), RestoreError> {
    let ns = m.ns;
    super::netlinks::make(m)?;
    if with_firewall {
        firewall(&Firewall::of(ns))?;
    }
    sysctls(&ns.sysctls, with_firewall)?;
    for link in ns.links.iter().filter(|l| l.has("UP")) {
        ip(&["link", "set", "dev", &link.name, "up"], None)?;
    }
    ip(&["addr", "restore"], Some(&ns.addrs))?;
    for blob in &ns.routes {
        if has_messages(blob) {
            ip(&["route", "restore"], Some(blob))?;
        }
    }
    for blob in &ns.rules {
        if has_messages(blob) {
            ip(&["rule", "restore"], Some(blob))?;
        }
    }
    // Bringing a link up sets some of them again (IPv6's `conf/LINK/mtu` becomes the
    // link's MTU): those that changed are written once more. The first pass stays, for
    // what must hold before a link is up (`disable_ipv6`, `addr_gen_mode`...).
    sysctls(&ns.sysctls, with_firewall)
}

fn has_messages(blob: &[u8]) -> bool {
    crate::dump::ns::net::messages(blob).next().is_some()
}

fn ip(args: &[&str], stdin: Option<&[u8]>) -> Result<(), RestoreError> {
    crate::netns::run_here(IPROUTE, "ip", args, stdin)
        .map(drop)
        .map_err(|e| fail(e.to_string()))
}

/// The saved firewall: iptables-legacy tables, then the nftables rule set.
fn firewall(ns: &Firewall) -> Result<(), RestoreError> {
    let legacy = ["iptables-legacy-restore", "ip6tables-legacy-restore"];
    for (tool, saved) in legacy.iter().zip(&ns.legacy) {
        if !saved.is_empty() {
            crate::netns::run_here("iptables", tool, &["-c"], Some(saved.as_bytes()))
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    if !ns.nft.trim().is_empty() {
        crate::netns::run_here("nftables", "nft", &["-f", "-"], Some(ns.nft.as_bytes()))
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Writes each saved sysctl whose value differs from the namespace's now, the
/// namespace-wide ones and `all`/`default` before the links' own, a link's IPv6
/// `stable_secret` before its other settings; one missing fails with `all`, else it is
/// left out (its module not loaded yet).
///
/// Ordering requirements: `addr_gen_mode` set to `random` (what the kernel gives a link
/// without a hardware address, a tun) makes the link-local address at once from the
/// link's secret, drawn at random if it has none yet: its saved secret first, or the
/// link ends up with two link-local addresses.
fn sysctls(saved: &[(String, String)], all: bool) -> Result<(), RestoreError> {
    let rank = |name: &str| match name.split('/').nth(2) {
        Some("all") => 0,
        Some("default") => 1,
        _ if name.contains("/conf/") && name.ends_with("/stable_secret") => 2,
        _ if name.contains("/conf/") || name.contains("/neigh/") => 3,
        _ => 0,
    };
    let mut order: Vec<&(String, String)> = saved.iter().collect();
    order.sort_by_key(|(name, _)| rank(name));
    for (name, value) in order {
        let path = Path::new("/proc/sys/net").join(name);
        if !all && !path.exists() {
            continue;
        }
        // Unreadable now (`stable_secret` answers EIO until it is set): written.
        let now = crate::proc::sysctl::read(&path).ok();
        if now.as_deref().map(|n| n.trim_end_matches('\n')) == Some(value.as_str()) {
            continue;
        }
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| fail(format!("set sysctl net/{name} to {value:?}: {e}")))?;
    }
    Ok(())
}
