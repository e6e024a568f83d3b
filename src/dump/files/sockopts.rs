//! The options of one socket, read from stasis's duplicate of it (`getsockopt` reads the
//! same socket without changing it), for every option of `image::sockopts::OPTIONS`
//! that sockets of its kind have. An option is saved when its value differs from a new
//! socket's of the same family, type and protocol (a probe socket per kind, created
//! once per process in its network namespace); one stasis cannot restore makes the dump fail, naming the option and
//! its value. Multicast memberships are found by asking the socket about each group
//! joined in its network namespace. The restore side is `restore/files/sockopts.rs`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::image::sockopts::num::{GROUP_FILTER_HEAD, MAX_SOURCES};
use crate::image::sockopts::{show, OptDef, SockKind, SockOpt, SockOpts, Special, OPTIONS};
use crate::proc::netsock::{self, Group};
use crate::sys::socket::getsockopt_bytes;

/// Why an option could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("getsockopt({label}): {source}")]
    Read { label: &'static str, source: Errno },
    #[error("{label} is {value}: {what}, which stasis cannot checkpoint")]
    Refused {
        label: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("enter the network namespace of pid {pid} for a probe socket: {source}")]
    Netns { pid: i32, source: Errno },
    #[error("create a probe socket (family {}, type {}, protocol {}): {source}", .kind.family, .kind.ty, .kind.protocol)]
    Probe { kind: SockKind, source: Errno },
}

/// The largest `TCP_MAXSEG` a process can set.
const MAX_TCP_WINDOW: i32 = 32767;

/// A new socket's value of one option of [`OPTIONS`].
#[derive(Clone, Debug, PartialEq)]
enum Fresh {
    /// Its bytes, or `None` when the kernel does not give it there.
    Value(Option<Vec<u8>>),
    /// Not read from sockets of this kind: outside the option's scope, or a `SOL_SOCKET`
    /// option the kernel does not read for this family and type (`ENOPROTOOPT`,
    /// `EOPNOTSUPP`: a check of the socket's kind, never of its state).
    Skip,
}

/// The value of every option of [`OPTIONS`] on a new socket, by kind; and the multicast groups joined in the dumped process's
/// network namespace, read once.
pub struct Defaults {
    pid: i32,
    by_kind: HashMap<SockKind, Vec<Fresh>>,
    groups: Option<Vec<(i32, Group)>>,
}

impl Defaults {
    /// For the sockets of process `pid`.
    pub fn new(pid: i32) -> Self {
        Defaults {
            pid,
            by_kind: HashMap::new(),
            groups: None,
        }
    }

    /// Every group joined on an interface, with the level of its options (`SOL_IP` for
    /// IPv4 groups, `SOL_IPV6` for IPv6 ones). A kernel without multicast has none.
    fn groups(&mut self) -> &[(i32, Group)] {
        let pid = self.pid;
        self.groups.get_or_insert_with(|| {
            let read = |t: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{t}"));
            let v4 = netsock::igmp_groups(&read("igmp").unwrap_or_default());
            let v6 = netsock::igmp6_groups(&read("igmp6").unwrap_or_default());
            let tag = |level: i32| move |g: Group| (level, g);
            v4.into_iter()
                .map(tag(libc::SOL_IP))
                .chain(v6.into_iter().map(tag(libc::SOL_IPV6)))
                .collect()
        })
    }

    /// Reads, once per kind, what reading the options of a socket of `kind` compares
    /// with: a probe socket's values, and the groups joined when the kind has
    /// memberships. After it, [`read_prepared`] may read sockets of `kind` from any thread.
    pub fn prepare(&mut self, kind: SockKind) -> Result<(), OptError> {
        let memberships = OPTIONS
            .iter()
            .any(|d| d.special == Special::Membership && d.scope.covers(kind));
        if memberships {
            self.groups();
        }
        if !self.by_kind.contains_key(&kind) {
            let probe = probe_in_netns(self.pid, kind)?;
            let values = OPTIONS
                .iter()
                .map(|d| fresh(probe.as_fd(), kind, d))
                .collect();
            self.by_kind.insert(kind, values);
        }
        Ok(())
    }
}

/// A new socket of `kind` in the network namespace of process `pid` (whose sysctls give
/// new sockets their defaults): made by a short-lived thread that joins the namespace
/// when it is not stasis's.
fn probe_in_netns(pid: i32, kind: SockKind) -> Result<OwnedFd, OptError> {
    use std::os::unix::fs::MetadataExt;
    let theirs = format!("/proc/{pid}/ns/net");
    let ino = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    if ino(&theirs).is_none() || ino(&theirs) == ino("/proc/self/ns/net") {
        return probe_socket(kind);
    }
    let enter = |source: std::io::Error| OptError::Netns {
        pid,
        source: Errno::from_raw(source.raw_os_error().unwrap_or(0)),
    };
    let ns = std::fs::File::open(&theirs).map_err(enter)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|source| OptError::Netns { pid, source })?;
            probe_socket(kind)
        })
        .join()
        .unwrap_or(Err(OptError::Netns {
            pid,
            source: Errno::EINTR,
        }))
    })
}

/// A new socket of `kind`. Ping sockets need the creator's group in
/// `net.ipv4.ping_group_range`: when stasis's is not, a UDP socket of the same family
/// stands in (ping sockets share its defaults for every option they have).
fn probe_socket(kind: SockKind) -> Result<OwnedFd, OptError> {
    match crate::sys::socket::socket(kind.family, kind.ty | libc::SOCK_CLOEXEC, kind.protocol) {
        Err(Errno::EACCES) if is_ping(kind) => {
            let udp = SockKind {
                protocol: libc::IPPROTO_UDP,
                ..kind
            };
            probe_socket(udp)
        }
        r => r.map_err(|source| OptError::Probe { kind, source }),
    }
}

fn is_ping(k: SockKind) -> bool {
    k.ty == libc::SOCK_DGRAM
        && (k.protocol == libc::IPPROTO_ICMP || k.protocol == libc::IPPROTO_ICMPV6)
}

/// The options of `sock` (of `kind`) that differ from a new socket's. `connected`: a TCP
/// socket neither closed nor listening (options marked `Unconnected` are then skipped).
pub fn read(
    sock: BorrowedFd<'_>,
    kind: SockKind,
    connected: bool,
    defaults: &mut Defaults,
) -> Result<SockOpts, OptError> {
    defaults.prepare(kind)?;
    read_prepared(sock, kind, connected, defaults)
}

/// [`read`], once `defaults` is prepared for `kind` ([`Defaults::prepare`]): a kind not
/// prepared reads as if every option were a new socket's, so callers prepare first.
pub fn read_prepared(
    sock: BorrowedFd<'_>,
    kind: SockKind,
    connected: bool,
    defaults: &Defaults,
) -> Result<SockOpts, OptError> {
    let fresh = defaults.by_kind.get(&kind).map_or(&[][..], |v| &v[..]);
    let groups = defaults.groups.as_deref().unwrap_or_default();
    let mut opts = Vec::new();
    let mut scratch = [0u8; SCRATCH];
    for (d, fresh) in OPTIONS.iter().zip(fresh) {
        let unconnected_only = matches!(d.special, Special::Unconnected | Special::UserMss);
        let Fresh::Value(fresh) = fresh else {
            continue;
        };
        if connected && unconnected_only {
            continue;
        }
        if d.special == Special::Membership {
            opts.extend(memberships(sock, d, groups)?);
            continue;
        }
        let Some(value) = read_def(sock, d, &mut scratch)? else {
            continue;
        };
        let always = d.special == Special::PeerCred;
        if Some(value.as_ref()) == fresh.as_deref() && !always {
            continue;
        }
        let opt = SockOpt {
            level: d.level,
            name: d.name,
            value: value.into_owned(),
        };
        if d.special == Special::UserMss && opt.int_value() > MAX_TCP_WINDOW {
            continue;
        }
        if let Special::Refuse(what) = d.special {
            return Err(OptError::Refused {
                label: d.label,
                value: show(&opt.value),
                what,
            });
        }
        opts.push(opt);
    }
    Ok(SockOpts { opts })
}

/// Option `d` of `sock` (in `scratch` when it fits), errors named: an eBPF filter is
/// refused.
fn read_def<'b>(
    sock: BorrowedFd<'_>,
    d: &OptDef,
    scratch: &'b mut [u8],
) -> Result<Option<Cow<'b, [u8]>>, OptError> {
    match settle(read_raw(sock, d, scratch)) {
        Err(Errno::EACCES) if d.special == Special::Filter => Err(OptError::Refused {
            label: d.label,
            value: "an eBPF program".into(),
            what: "a socket filter attached with SO_ATTACH_BPF, which has no classic form to save",
        }),
        r => r.map_err(|source| OptError::Read {
            label: d.label,
            source,
        }),
    }
}

/// The memberships of `sock` in the groups of option `d`'s level: `MCAST_MSFILTER` of
/// each group (`EADDRNOTAVAIL`: not a member).
fn memberships(
    sock: BorrowedFd<'_>,
    d: &OptDef,
    groups: &[(i32, Group)],
) -> Result<Vec<SockOpt>, OptError> {
    let mut out = Vec::new();
    for (_, (ifindex, group)) in groups.iter().filter(|g| g.0 == d.level) {
        let mut buf = group_filter(*ifindex, group);
        let len = match getsockopt_bytes(sock, d.level, d.name, &mut buf) {
            Err(Errno::EADDRNOTAVAIL | Errno::EINVAL | Errno::ENOPROTOOPT) => continue,
            r => r.map_err(|source| OptError::Read {
                label: d.label,
                source,
            })?,
        };
        let sources = u32::from_ne_bytes([buf[140], buf[141], buf[142], buf[143]]) as usize;
        if sources > MAX_SOURCES {
            return Err(OptError::Refused {
                label: d.label,
                value: format!("{} sources", sources),
                what: "a multicast membership filtering more sources than stasis saves (64)",
            });
        }
        buf.truncate(len);
        out.push(SockOpt {
            level: d.level,
            name: d.name,
            value: buf,
        });
    }
    Ok(out)
}

/// A `struct group_filter` asking for the sources of `group` on interface `ifindex`.
fn group_filter(ifindex: u32, group: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; GROUP_FILTER_HEAD + 128 * MAX_SOURCES];
    buf[..4].copy_from_slice(&ifindex.to_ne_bytes());
    if group.len() == 4 {
        buf[8..10].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        buf[12..16].copy_from_slice(group);
    } else {
        buf[8..10].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        buf[16..32].copy_from_slice(group);
    }
    buf[140..144].copy_from_slice(&(MAX_SOURCES as u32).to_ne_bytes());
    buf
}

/// Option `d` of `probe`, a new socket of `kind`.
fn fresh(probe: BorrowedFd<'_>, kind: SockKind, d: &OptDef) -> Fresh {
    if !d.scope.covers(kind) {
        return Fresh::Skip;
    }
    match read_raw(probe, d, &mut [0u8; SCRATCH]) {
        Err(Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) if d.level == libc::SOL_SOCKET => Fresh::Skip,
        r => Fresh::Value(settle(r).ok().flatten().map(Cow::into_owned)),
    }
}

/// Errors meaning "no such option here" as `None`.
fn settle<T>(got: Result<T, Errno>) -> Result<Option<T>, Errno> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(Errno::ENOPROTOOPT | Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes of the largest option read into a buffer on the stack (a thousand sockets'
/// forty options each were as many allocations).
const SCRATCH: usize = 256;

/// Option `d`'s bytes as the kernel gives them, in `scratch` when they fit.
fn read_raw<'b>(
    sock: BorrowedFd<'_>,
    d: &OptDef,
    scratch: &'b mut [u8],
) -> Result<Cow<'b, [u8]>, Errno> {
    let size = d.size.buffer();
    if d.special == Special::Filter {
        read_filter(sock).map(Cow::Owned)
    } else if size > scratch.len() {
        let mut buf = vec![0u8; size];
        let n = getsockopt_bytes(sock, d.level, d.name, &mut buf)?;
        buf.truncate(n);
        Ok(Cow::Owned(buf))
    } else {
        let buf = &mut scratch[..size];
        buf.fill(0);
        let n = getsockopt_bytes(sock, d.level, d.name, buf)?;
        Ok(Cow::Borrowed(&scratch[..n.min(size)]))
    }
}

/// The classic BPF program attached with `SO_ATTACH_FILTER`, 8 bytes per instruction
/// (`SO_GET_FILTER` with no room reports how many there are). An eBPF program
/// (`SO_ATTACH_BPF`) has no classic form: the kernel answers `EACCES`.
fn read_filter(sock: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let count = getsockopt_bytes(sock, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &mut [])?;
    let mut buf = vec![0u8; count * 8];
    if count == 0 {
        return Ok(buf);
    }
    // The kernel returns a count of instructions here, not bytes.
    let got = getsockopt_bytes(sock, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &mut buf)?;
    buf.truncate(got * 8);
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sys::socket::setsockopt_int;

    fn kind(family: i32, ty: i32, protocol: i32) -> SockKind {
        SockKind {
            family,
            ty,
            protocol,
        }
    }

    #[test]
    fn a_new_socket_saves_nothing_and_a_changed_one_its_changes() {
        let k = kind(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        let mut defaults = Defaults::new(std::process::id() as i32);
        let s = probe_socket(k).unwrap();
        assert_eq!(
            read(s.as_fd(), k, false, &mut defaults).unwrap(),
            SockOpts::default()
        );
        setsockopt_int(s.as_fd(), libc::SOL_TCP, libc::TCP_KEEPCNT, 5).unwrap();
        setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, 7).unwrap();
        let opts = read(s.as_fd(), k, false, &mut defaults).unwrap();
        assert_eq!(opts.int(libc::SOL_TCP, libc::TCP_KEEPCNT), Some(5));
        assert_eq!(opts.int(libc::SOL_SOCKET, libc::SO_RCVLOWAT), Some(7));
        assert_eq!(opts.opts.len(), 2);
        assert_eq!(opts.check(), Ok(()));
    }
}
