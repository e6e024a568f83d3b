//! Socket options set back in the child, in `image::sockopts::OPTIONS` order, each at its
//! stage: [`early`] right after the socket is created (before `bind`: `IP_FREEBIND`,
//! `SO_BINDTODEVICE`, `IPV6_V6ONLY`...; before a connection's queues are refilled: the
//! buffer sizes), [`late`] once it is complete (the socket filter, which would filter
//! refilled data again, and the buffer locks). A multicast membership is joined again,
//! with its source filter. `SO_PEERCRED` is never set (read-only; `unix_peercred.rs`
//! compares it). The dump side is `dump/files/sockopts.rs`.
//!
//! Buffer sizes are set with `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` (the saved size is
//! what `getsockopt` reported, twice what is set), which locks them: `late` then sets
//! `SO_BUF_LOCK` to the saved locks, so a size the kernel had tuned by itself is back
//! unlocked and keeps being tuned, and one the owner set stays pinned. A task born inside
//! the tree's user namespace (`restore/ns/user.rs`) may not force (the kernel asks
//! `CAP_NET_ADMIN` of the initial user namespace): it sets `SO_RCVBUF` / `SO_SNDBUF`,
//! which give the same size and lock up to `net.core.rmem_max` / `wmem_max`; a larger
//! size is refused naming the option ([`buffer_call`]).

use super::prep;
use crate::image::sockopts::num::{GROUP_FILTER_HEAD, GROUP_REQ_LEN, MCAST_JOIN_GROUP};
use crate::image::sockopts::{lookup, show, OptDef, SockOpt, SockOpts, Special, Stage};
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// Options of the early stage (buffer sizes included).
pub fn early(child: &Child, fd: u64, opts: &SockOpts) -> Result<(), RestoreError> {
    set_stage(child, fd, opts, Stage::Early)
}

/// Options of the late stage, then `SO_BUF_LOCK` (unless saved: the locks of a new
/// socket, none) when the buffers were set by [`early`] or `touched` otherwise.
pub fn late(child: &Child, fd: u64, opts: &SockOpts, touched: bool) -> Result<(), RestoreError> {
    set_stage(child, fd, opts, Stage::Late)?;
    let lock = crate::image::sockopts::num::SO_BUF_LOCK;
    let saved = opts.int(libc::SOL_SOCKET, lock).is_some();
    if !saved && (touched || has_buffers(opts)) {
        set(child, fd, &int_opt(libc::SOL_SOCKET, lock, 0))?;
    }
    Ok(())
}

/// Address reuse again: leaving TCP repair mode resets it.
pub fn reuse(child: &Child, fd: u64, opts: &SockOpts) -> Result<(), RestoreError> {
    let s = libc::SOL_SOCKET;
    for name in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        if let Some(o) = opts.opts.iter().find(|o| (o.level, o.name) == (s, name)) {
            set(child, fd, o)?;
        }
    }
    Ok(())
}

/// The `setsockopt` calls (level, name, value) of [`early`] then [`late`] (`touched` as
/// there), for a caller that runs them in a batch; `None` when some option needs more
/// than one plain call (a filter, a membership) or is unknown.
pub fn plain_calls(opts: &SockOpts, touched: bool) -> Option<Vec<(i32, i32, Vec<u8>)>> {
    let mut calls = Vec::new();
    for stage in [Stage::Early, Stage::Late] {
        for o in &opts.opts {
            let def = lookup(o.level, o.name)?;
            if def.stage != stage {
                continue;
            }
            calls.push(match def.special {
                Special::Buffer { force } => {
                    let (name, v) = buffer_call(force, o.int_value() / 2).ok()?;
                    (libc::SOL_SOCKET, name, v.to_ne_bytes().to_vec())
                }
                Special::Filter | Special::Membership => return None,
                Special::PeerCred => continue,
                _ => (o.level, o.name, o.value.clone()),
            });
        }
    }
    let lock = crate::image::sockopts::num::SO_BUF_LOCK;
    let saved = opts.int(libc::SOL_SOCKET, lock).is_some();
    if !saved && (touched || has_buffers(opts)) {
        calls.push((libc::SOL_SOCKET, lock, 0i32.to_ne_bytes().to_vec()));
    }
    Some(calls)
}

/// The option that sets a buffer to `v` (half the saved size): `force`
/// (`SO_*BUFFORCE`), or for a task born inside the tree's user namespace the plain
/// option, if `v` is within its sysctl maximum.
pub(crate) fn buffer_call(force: i32, v: i32) -> Result<(i32, i32), RestoreError> {
    if !crate::restore::ns::user::born_inside() {
        return Ok((force, v));
    }
    let (plain, sysctl) = match force {
        libc::SO_RCVBUFFORCE => (libc::SO_RCVBUF, "rmem_max"),
        _ => (libc::SO_SNDBUF, "wmem_max"),
    };
    let path = format!("/proc/sys/net/core/{sysctl}");
    let max = std::fs::read_to_string(&path).ok();
    let max: Option<i64> = max.and_then(|m| m.trim().parse().ok());
    match max {
        Some(max) if i64::from(v) <= max => Ok((plain, v)),
        _ => Err(RestoreError::Unsupported {
            what: format!(
                "a socket buffer of {} bytes, above net.core.{sysctl} ({max:?}): a task \
                 inside the tree's user namespace cannot force it (SO_*BUFFORCE needs \
                 CAP_NET_ADMIN in the initial user namespace)",
                i64::from(v) * 2
            ),
        }),
    }
}

/// The option that raises a send buffer for a queue to refill: `SO_SNDBUFFORCE`, or
/// `SO_SNDBUF` (which caps it at `net.core.wmem_max`) for a task born inside the tree's
/// user namespace.
pub(crate) fn raise_name() -> i32 {
    match crate::restore::ns::user::born_inside() {
        true => libc::SO_SNDBUF,
        false => libc::SO_SNDBUFFORCE,
    }
}

fn has_buffers(opts: &SockOpts) -> bool {
    opts.opts.iter().any(|o| {
        lookup(o.level, o.name).is_some_and(|d| matches!(d.special, Special::Buffer { .. }))
    })
}

fn int_opt(level: i32, name: i32, value: i32) -> SockOpt {
    SockOpt {
        level,
        name,
        value: value.to_ne_bytes().to_vec(),
    }
}

fn set_stage(child: &Child, fd: u64, opts: &SockOpts, stage: Stage) -> Result<(), RestoreError> {
    for o in &opts.opts {
        if lookup(o.level, o.name).is_some_and(|d| d.stage == stage) {
            set(child, fd, o)?;
        }
    }
    Ok(())
}

/// `setsockopt` of one saved option, named in the error.
fn set(child: &Child, fd: u64, o: &SockOpt) -> Result<(), RestoreError> {
    let Some(def) = lookup(o.level, o.name) else {
        return Err(RestoreError::Unsupported {
            what: format!("unknown socket option ({}, {})", o.level, o.name),
        });
    };
    set_as(child, fd, def, o).map_err(|e| RestoreError::SockOpt {
        option: def.label,
        value: show(&o.value),
        source: Box::new(e),
    })
}

fn set_as(child: &Child, fd: u64, def: &OptDef, o: &SockOpt) -> Result<(), RestoreError> {
    match def.special {
        Special::Buffer { force } => {
            let (name, v) = buffer_call(force, o.int_value() / 2)?;
            prep::set_int(child, fd, libc::SOL_SOCKET, name, v)
        }
        Special::Filter => attach_filter(child, fd, &o.value),
        Special::Membership => join(child, fd, o),
        // Read-only: made by the connection calls, compared by `unix_peercred.rs`.
        Special::PeerCred => Ok(()),
        _ => prep::set_bytes(child, fd, o.level, o.name, &o.value),
    }
}

/// A multicast membership: `MCAST_JOIN_GROUP` (a `struct group_req`: the interface and
/// group that start the saved `struct group_filter`), then the source filter unless it
/// is a plain join's (exclude mode, no source).
fn join(child: &Child, fd: u64, o: &SockOpt) -> Result<(), RestoreError> {
    let Some(req) = o.value.get(..GROUP_REQ_LEN) else {
        return Err(RestoreError::Unsupported {
            what: format!("a multicast membership of {} bytes", o.value.len()),
        });
    };
    prep::set_bytes(child, fd, o.level, MCAST_JOIN_GROUP, req)?;
    let plain = o.value.get(GROUP_REQ_LEN..GROUP_FILTER_HEAD) == Some(&[0u8; 8][..]);
    if !plain {
        prep::set_bytes(child, fd, o.level, o.name, &o.value)?;
    }
    Ok(())
}

/// `SO_ATTACH_FILTER` with a `struct sock_fprog` (u16 count, padding, pointer) pointing
/// at the instructions, both in the child's scratch memory.
fn attach_filter(child: &Child, fd: u64, insns: &[u8]) -> Result<(), RestoreError> {
    let at = child.put(prep::DATA_OFF, insns)?;
    let mut fprog = ((insns.len() / 8) as u64).to_ne_bytes().to_vec();
    fprog.extend_from_slice(&at.to_ne_bytes());
    prep::set_bytes(child, fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}
