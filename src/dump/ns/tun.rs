//! The tun and tap devices of a network namespace of the tree (link kind `tun`), their
//! device side: what `ip -j -d link` reports of them — type, packet information,
//! virtio-net header, multi-queue, persistence, owner, group, queues attached and
//! detached — kept as the link's `info` in `netlinks.img` (format 17). A device no file
//! holds attached (a persistent one, or one whose queues are all detached) is attached
//! for a moment by stasis, inside the namespace, for what only an attached file reads
//! (virtio-net header size and byte order, a tap's socket filter; a send buffer is each
//! queue's own, `dump/files/tun.rs`) — only while it is down: attaching turns the carrier
//! on, which an up device shows the tree (its carrier counters alone change otherwise); the files of the tree report those of the other
//! devices (`dump/files/tun.rs`, which also checks that every queue of every device is
//! a file of the tree: [`Device::queues`]). The restore side is `restore/ns/tun.rs`.
//!
//! Refused, naming the link: a link type changed with `TUNSETLINK`, a tap's socket
//! filter (`TUNATTACHFILTER`), a device up with no file attached, an attribute `ip`
//! reports that is none of the above.
//! The offloads its reader took (`TUNSETOFFLOAD`) are saved as every link's features are
//! (`netlinks.rs`), in effect. Not seen by any kernel interface, so neither saved nor
//! refused: a tap's MAC filter (`TUNSETTXFILTER`), eBPF steering and filter programs
//! (`TUNSETSTEERINGEBPF`, `TUNSETFILTEREBPF`). `IFF_NAPI` is refused: read from
//! a file of the tree, or for a device none holds attached from a sysfs made in the
//! namespace before stasis attaches (where sysfs cannot be made, attaching would clear
//! it unseen).

use std::collections::HashMap;
use std::os::fd::AsFd;

use serde_json::Value;

use super::DumpError;
use crate::image::netns::{LinkMore, NetNsImage};
use crate::sys::tun::{self as sys, Setting};

/// What `ip -j -d link` reports of a tun device, saved or derived.
const KEYS: [&str; 9] = [
    "type",
    "pi",
    "vnet_hdr",
    "multi_queue",
    "persist",
    "user",
    "group",
    "numqueues",
    "numdisabled",
];

/// The link type each kind of device has unless `TUNSETLINK` changed it.
const LINK_TYPES: [(&str, &str); 2] = [("tun", "none"), ("tap", "ether")];

/// A device of the tree as its files need it (`dump/files/tun.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// `TUNSETIFF` flags: type, `IFF_NO_PI`, `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`.
    pub flags: u16,
    pub persist: bool,
    /// Files attached to it, queues detached included.
    pub queues: u32,
}

/// The `info` of tun link `l` (`ip -j -d link` JSON), `refuse` naming it.
pub fn info(
    l: &Value,
    refuse: &dyn Fn(String) -> DumpError,
) -> Result<Vec<(String, String)>, DumpError> {
    let empty = serde_json::Map::new();
    let data = l["linkinfo"]["info_data"].as_object().unwrap_or(&empty);
    if let Some((k, v)) = data.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
        return Err(refuse(format!("has tun attribute {k} = {v}")));
    }
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some((_, link_type)) = LINK_TYPES.iter().find(|(k, _)| *k == kind) else {
        return Err(refuse(format!("is a tun device of type {kind:?}")));
    };
    let now = l["link_type"].as_str().unwrap_or_default();
    if now != *link_type {
        return Err(refuse(format!(
            "is a {kind} device whose link type was changed to {now} (TUNSETLINK)"
        )));
    }
    let on = |k: &str| data.get(k).and_then(Value::as_bool).unwrap_or(false);
    let word = |b: bool| if b { "on" } else { "off" }.to_string();
    let mut out = vec![("type".to_string(), kind.to_string())];
    for k in ["pi", "vnet_hdr", "multi_queue", "persist"] {
        out.push((k.to_string(), word(on(k))));
    }
    for (k, user) in [("user", true), ("group", false)] {
        match owner(data.get(k).unwrap_or(&Value::Null), user) {
            Some(Ok(id)) => out.push((k.to_string(), id.to_string())),
            Some(Err(name)) => return Err(refuse(format!("has {k} {name}, unknown here"))),
            None => {}
        }
    }
    let name = l["ifname"].as_str().unwrap_or_default();
    let flags = flags_of(&out);
    // Files attached to it (detached ones included), and those attached now.
    let (mut queues, attached) = match (on("multi_queue"), on("persist")) {
        (true, _) => {
            let attached = count(data, "numqueues");
            (attached + count(data, "numdisabled"), attached)
        }
        // A device without persistence exists while a file holds it.
        (false, false) => (1, 1),
        (false, true) => (0, 0),
    };
    // None attached now: stasis attaches to read the device's own settings (a
    // single-queue device busy is held elsewhere).
    if attached == 0 && is_up(l) {
        return Err(refuse(UP_WITHOUT_FILE.to_string()));
    }
    let mut read = Vec::new();
    if attached == 0 && !settings(name, flags, &mut read, refuse)? {
        queues = 1;
    }
    out.extend(read);
    out.push(("queues".to_string(), queues.to_string()));
    Ok(out)
}

/// Why a device that is up with no file attached is refused: attaching turns its
/// carrier on until the file is closed, and an up device's carrier is seen at once —
/// the link watch reports it up (for up to a second after), IPv6 addrconf gives it a
/// link-local address that stays — by a tree that runs on (`--leave-running`, or a dump
/// that fails later).
const UP_WITHOUT_FILE: &str = "(tun) is up with no file attached: reading its settings \
    needs a file attached for a moment, which would turn its carrier on where the tree \
    sees it (operstate, an IPv6 link-local address); set it down or keep a file of it \
    in the tree";

/// Whether link `l` (`ip -j link` JSON) is administratively up.
fn is_up(l: &Value) -> bool {
    l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

fn count(data: &serde_json::Map<String, Value>, key: &str) -> u32 {
    data.get(key).and_then(Value::as_u64).unwrap_or(0) as u32
}

/// A uid (`user`) or gid as `ip` prints it: its name if it has one here, else its
/// number; `Err(name)` for a name that resolves to none.
fn owner(v: &Value, user: bool) -> Option<Result<u32, String>> {
    if let Some(n) = v.as_u64() {
        return Some(Ok(n as u32));
    }
    let name = v.as_str()?;
    let id = match user {
        true => nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw()),
        false => nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw()),
    };
    Some(id.ok_or_else(|| name.to_string()))
}

/// The `TUNSETIFF` flags `info` (as [`info`] writes it) says.
pub fn flags_of(info: &[(String, String)]) -> u16 {
    let has = |k: &str, v: &str| info.iter().any(|(a, b)| a == k && b == v);
    let mut flags = if has("type", "tap") {
        sys::IFF_TAP
    } else {
        sys::IFF_TUN
    };
    for (k, v, f) in [
        ("pi", "off", sys::IFF_NO_PI),
        ("vnet_hdr", "on", sys::IFF_VNET_HDR),
        ("multi_queue", "on", sys::IFF_MULTI_QUEUE),
    ] {
        if has(k, v) {
            flags |= f;
        }
    }
    flags
}

/// Attaches a file of stasis to the device `name` of the namespace the thread is in and
/// reads into `out` what only a file reads; `false` if it is busy (a single-queue device
/// attached elsewhere). The file is closed at once: the device is left as it was.
fn settings(
    name: &str,
    flags: u16,
    out: &mut Vec<(String, String)>,
    refuse: &dyn Fn(String) -> DumpError,
) -> Result<bool, DumpError> {
    let failed =
        |what: &str, e: nix::Error| refuse(format!("(tun) could not be read: {what}: {e}"));
    // Attaching sets the device's flags to the file's: one stasis could not give back is
    // refused before (where sysfs can be read).
    let napi = sysfs_flags(name).map_or(0, |f| f & (sys::IFF_NAPI | sys::IFF_NAPI_FRAGS));
    if napi != 0 {
        return Err(refuse(format!(
            "(tun) has IFF_NAPI or IFF_NAPI_FRAGS (flags {napi:#x})"
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| refuse(format!("(tun) could not be read: open /dev/net/tun: {e}")))?;
    match sys::set_iff(file.as_fd(), name, flags) {
        Err(nix::Error::EBUSY) => return Ok(false),
        Err(e) => return Err(failed("attach to it (TUNSETIFF)", e)),
        Ok(()) => {}
    }
    read(file.as_fd(), false, out).map_err(|(what, e)| failed(what, e))?;
    if flags & sys::IFF_TAP != 0
        && sys::filter_len(file.as_fd()).map_err(|e| failed("TUNGETFILTER", e))? > 0
    {
        return Err(refuse("has a socket filter (TUNATTACHFILTER)".into()));
    }
    Ok(true)
}

/// The flags of device `name` of the namespace the thread is in, as a sysfs made here
/// shows them (`tun_flags`: a new sysfs shows the devices of its maker's namespace).
fn sysfs_flags(name: &str) -> std::io::Result<u16> {
    use std::os::fd::AsRawFd;
    let sysfs = crate::sys::mount::new_fs("sysfs", &[]).map_err(std::io::Error::other)?;
    let path = format!(
        "/proc/thread-self/fd/{}/class/net/{name}/tun_flags",
        sysfs.as_raw_fd()
    );
    let text = std::fs::read_to_string(path)?;
    let hex = text.trim().trim_start_matches("0x");
    u16::from_str_radix(hex, 16).map_err(std::io::Error::other)
}

/// The settings an attached file `fd` reads (name, value): the device's, and its queue's
/// send buffer with `with_sndbuf`; `vnet_be` is left out where the kernel has none
/// (`EINVAL`).
pub fn read(
    fd: std::os::fd::BorrowedFd<'_>,
    with_sndbuf: bool,
    out: &mut Vec<(String, String)>,
) -> Result<(), (&'static str, nix::Error)> {
    for s in Setting::ALL {
        if !with_sndbuf && matches!(s, Setting::SndBuf) {
            continue;
        }
        match s.get(fd) {
            Ok(v) => out.push((s.name().to_string(), v.to_string())),
            Err(nix::Error::EINVAL) if matches!(s, Setting::VnetBe) => {}
            Err(e) => return Err((s.name(), e)),
        }
    }
    Ok(())
}

/// The tun devices of the tree's namespaces, by (namespace inode, name).
pub type Devices = HashMap<(u64, String), Device>;

/// The tun devices of a saved namespace whose inode is `ino`.
pub fn devices(ino: u64, ns: &NetNsImage, more: &[LinkMore]) -> Devices {
    let tuns = ns.links.iter().filter(|l| l.kind == "tun");
    tuns.filter_map(|l| more.iter().find(|m| m.name == l.name))
        .map(|m| {
            let get = |k: &str| m.info.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
            let device = Device {
                flags: flags_of(&m.info),
                persist: get("persist") == Some("on"),
                queues: get("queues").and_then(|q| q.parse().ok()).unwrap_or(0),
            };
            ((ino, m.name.clone()), device)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tun_info_is_kept_and_unknown_attributes_refused() {
        let l: Value = serde_json::from_str(
            r#"{"ifname":"t","link_type":"none","linkinfo":{"info_kind":"tun","info_data":
            {"type":"tun","pi":false,"vnet_hdr":true,"multi_queue":true,"numqueues":1,
            "numdisabled":1,"persist":false,"user":4242}}}"#,
        )
        .expect("json");
        let refuse = |w: String| DumpError::unsupported(w);
        let info = info(&l, &refuse).expect("kept");
        let flags = sys::IFF_TUN | sys::IFF_NO_PI | sys::IFF_VNET_HDR | sys::IFF_MULTI_QUEUE;
        assert_eq!(flags_of(&info), flags);
        assert!(info.contains(&("user".into(), "4242".into())));
        assert!(info.contains(&("queues".into(), "2".into())));
        let l: Value = serde_json::from_str(
            r#"{"ifname":"t","link_type":"none","linkinfo":{"info_kind":"tun","info_data":
            {"type":"tun","new_one":1}}}"#,
        )
        .expect("json");
        assert!(info_err(&l).contains("new_one"));
        let l: Value = serde_json::from_str(
            r#"{"ifname":"t","link_type":"ether","linkinfo":{"info_kind":"tun","info_data":
            {"type":"tun"}}}"#,
        )
        .expect("json");
        assert!(info_err(&l).contains("TUNSETLINK"));
        let l: Value = serde_json::from_str(
            r#"{"ifname":"t","link_type":"ether","flags":["BROADCAST","UP"],"linkinfo":
            {"info_kind":"tun","info_data":{"type":"tap","persist":true}}}"#,
        )
        .expect("json");
        assert!(info_err(&l).contains("up with no file attached"));
    }

    fn info_err(l: &Value) -> String {
        let refuse = |w: String| DumpError::unsupported(w);
        info(l, &refuse).expect_err("refused").to_string()
    }
}
