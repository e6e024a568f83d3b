//! `/dev/net/tun` files (misc device 10:200), attached to a tun or tap device or not: the
//! file is taken from its process (`pidfd_getfd`, the same open file description) and
//! asked what device it is attached to (`TUNGETIFF`), whether its queue is detached, and
//! the device's settings only an attached file reads. The device itself is a link of a
//! network namespace of the tree (`dump/ns/tun.rs`); once every table is read,
//! [`finish`] checks each device's queues are all files of the tree. The restore
//! side is `restore/files/tun.rs`.
//!
//! Refused, naming the fd: a file opened in another network namespace than its
//! process's, one attached to a device of a namespace stasis does not save with the tree
//! (the dumper's, or one outside), `IFF_NAPI`/`IFF_NAPI_FRAGS`, a tap's socket filter.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::{FdOptions, OpenFd};
use crate::dump::DumpError;
use crate::image::files::FilesImage;
use crate::image::files::{FdKind, TunFd};
use crate::sys::tun::{self as sys, Setting};

/// Whether `rdev` is `/dev/net/tun`.
pub fn is_tun(rdev: u64) -> bool {
    rdev == libc::makedev(10, 200)
}

pub fn dump(open: &OpenFd, opts: &FdOptions) -> Result<FdKind, DumpError> {
    let err = |what: String| open.error(&format!("(/dev/net/tun) {what}"));
    let (pid, fd) = open.reach();
    let file = steal(pid, fd).map_err(|e| err(format!("could not be taken: {e}")))?;
    let own = crate::dump::ns::ns_inode(&open.pid.to_string(), "net")?;
    let looks_in =
        ino(sys::file_netns(file.as_fd())).map_err(|e| err(format!("SIOCGSKNS: {e}")))?;
    if looks_in != own {
        return Err(err(format!(
            "was opened in network namespace net:[{looks_in}], not its process's \
             (net:[{own}]), which stasis does not restore"
        )));
    }
    let mut out = TunFd {
        path: open.target.clone(),
        device: String::new(),
        flags: 0,
        detached: false,
        persist: false,
        settings: Vec::new(),
        attached_sndbuf: None,
    };
    let (name, flags) = match sys::get_iff(file.as_fd()) {
        Err(nix::Error::EBADFD) => return Ok(FdKind::Tun(out)),
        Err(e) => return Err(err(format!("TUNGETIFF: {e}"))),
        Ok(got) => got,
    };
    let napi = flags & (sys::IFF_NAPI | sys::IFF_NAPI_FRAGS);
    if napi != 0 {
        return Err(err(format!(
            "is attached to tun device {name} with IFF_NAPI or IFF_NAPI_FRAGS (flags \
             {napi:#x}), which stasis does not restore"
        )));
    }
    let dev_ns =
        ino(sys::device_netns(file.as_fd())).map_err(|e| err(format!("TUNGETDEVNETNS: {e}")))?;
    let key = (dev_ns, name.clone());
    let Some(device) = opts.tun_devices.get(&key) else {
        return Err(err(format!(
            "is attached to tun device {name} of network namespace net:[{dev_ns}], not one \
             stasis saves with the tree (its own, or one a process of it made); stasis \
             rebuilds tun devices only there"
        )));
    };
    let kept = sys::IFF_TUN | sys::IFF_TAP | sys::IFF_MULTI_QUEUE | sys::IFF_VNET_HDR;
    if flags & kept != device.flags & kept {
        return Err(err(format!(
            "reports flags {flags:#x} of tun device {name}, whose link reports {:#x}",
            device.flags
        )));
    }
    if device.flags & sys::IFF_TAP != 0 {
        let len = sys::filter_len(file.as_fd()).map_err(|e| err(format!("TUNGETFILTER: {e}")))?;
        if len > 0 {
            return Err(err(format!(
                "is attached to tap device {name}, which has a socket filter \
                 (TUNATTACHFILTER), which stasis does not restore"
            )));
        }
    }
    let mut read = Vec::new();
    crate::dump::ns::tun::read(file.as_fd(), true, &mut read)
        .map_err(|(what, e)| err(format!("{what} of tun device {name}: {e}")))?;
    out.settings = read
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    out.device = name;
    out.flags = device.flags;
    out.detached = flags & sys::IFF_DETACH_QUEUE != 0;
    out.persist = device.persist;
    let sndbuf = (out.settings.iter()).find(|(k, _)| k == Setting::SndBuf.name());
    opts.tun_files.borrow_mut().push(Seen {
        pid: open.pid,
        fd: open.fd,
        device: key,
        detached: out.detached,
        sndbuf: sndbuf.map_or(0, |(_, v)| *v),
    });
    Ok(FdKind::Tun(out))
}

/// A file of the tree attached to a tun device, as [`dump`] found it.
#[derive(Clone, Debug)]
pub struct Seen {
    pid: i32,
    fd: i32,
    /// (namespace inode, name).
    device: (u64, String),
    detached: bool,
    sndbuf: i32,
}

fn steal(pid: i32, fd: i32) -> nix::Result<OwnedFd> {
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
    crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)
}

/// The inode of a namespace file an ioctl returned.
fn ino(ns: nix::Result<OwnedFd>) -> std::io::Result<u64> {
    Ok(std::fs::File::from(ns?).metadata()?.ino())
}

/// Refuses a tun device of the tree's namespaces some of whose queues (files attached,
/// detached or not) are not files of the tree — they would be missing after the
/// restore — or whose attached queues have different send buffers (setting one sets
/// them all); gives each detached queue's record the send buffer of the attached ones.
///
/// Ordering requirements: after every fd table of the tree is read.
pub fn finish(opts: &FdOptions, tables: &mut [(i32, FilesImage)]) -> Result<(), DumpError> {
    let seen = opts.tun_files.borrow();
    for ((ns, name), device) in &opts.tun_devices {
        let refuse = |what: String| {
            DumpError::unsupported(format!(
                "tun device {name} of network namespace net:[{ns}] {what}"
            ))
        };
        let files: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.device == (*ns, name.clone()))
            .collect();
        if (files.len() as u32) < device.queues {
            return Err(refuse(format!(
                "has {} files attached and the tree holds {} of them: the others are held \
                 outside the tree, which stasis cannot restore",
                device.queues,
                files.len()
            )));
        }
        let mut attached: Vec<i32> = files
            .iter()
            .filter(|s| !s.detached)
            .map(|s| s.sndbuf)
            .collect();
        attached.sort_unstable();
        attached.dedup();
        if attached.len() > 1 {
            return Err(refuse(format!(
                "has attached queues with different send buffers ({attached:?}), which \
                 stasis cannot set apart (TUNSETSNDBUF sets them all)"
            )));
        }
        for s in files.iter().filter(|s| s.detached) {
            set_attached_sndbuf(tables, s, attached.first().copied())?;
        }
    }
    Ok(())
}

fn set_attached_sndbuf(
    tables: &mut [(i32, FilesImage)],
    s: &Seen,
    sndbuf: Option<i32>,
) -> Result<(), DumpError> {
    let table = tables.iter_mut().find(|(pid, _)| *pid == s.pid);
    let entry = table.and_then(|(_, t)| t.fds.iter_mut().find(|e| e.fd == s.fd));
    match entry.map(|e| &mut e.kind) {
        Some(FdKind::Tun(t)) => {
            t.attached_sndbuf = sndbuf;
            Ok(())
        }
        _ => Err(DumpError::unsupported(format!(
            "fd {} of pid {} (/dev/net/tun) is a detached queue of tun device {} that is \
             not in its fd table (a file in flight), which stasis does not restore",
            s.fd, s.pid, s.device.1
        ))),
    }
}
