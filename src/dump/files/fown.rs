//! The owner of an open file description — the thread, process or group that gets its
//! I/O signals (`F_SETOWN`, `F_SETOWN_EX`; set also by taking a lease), with the real
//! and effective uid of whoever set it — and the signal it sends (`F_SETSIG`). Any kind
//! of file has them; fdinfo shows neither, so they are read with `fcntl`: by the process
//! itself, three calls per fd in its batch of injected queries (`dump/task.rs`), when it
//! sees pids and uids as stasis does ([`in_target`]); else, and for files in flight, on
//! stasis's own copy of the description (`pidfd_getfd`). The restore side is
//! `restore/files/fown.rs`.

use std::os::fd::BorrowedFd;

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::FdOwner;
use crate::sys::batch::{Batch, Done, Out, Ret};
use crate::sys::fd::{self, owner, Owner};

/// Whether process `pid` sees pids and uids as stasis does (same pid and user
/// namespace): then what its own `fcntl`s report (`pid_vnr`, `from_kuid_munged` of the
/// caller's namespaces) is what stasis's would, and its fds' owners are asked in it.
pub fn in_target(pid: i32) -> bool {
    static OURS: std::sync::OnceLock<Option<[u64; 2]>> = std::sync::OnceLock::new();
    let ours = OURS.get_or_init(|| namespaces("self"));
    ours.is_some() && *ours == namespaces(&pid.to_string())
}

/// The inode numbers of the pid and user namespaces of `/proc/WHO`.
fn namespaces(who: &str) -> Option<[u64; 2]> {
    let ino = |ns| crate::dump::ns::inode_of(who, ns);
    Some([ino("pid").ok()?, ino("user").ok()?])
}

/// One fd's owner queries in a batch.
struct Asked {
    fd: i32,
    ex: Out<[i32; 2]>,
    uids: Out<[u32; 2]>,
    signal: Ret,
}

/// Adds to `b` (a batch run by the process itself, see [`in_target`]) the
/// `F_GETOWN_EX`, `F_GETOWNER_UIDS` and `F_GETSIG` of each of `fds`; the closure reads
/// the answers, by fd.
pub fn query(b: &mut Batch, fds: &[i32]) -> impl FnOnce(&Done) -> Vec<(i32, Owner)> {
    let asked: Vec<Asked> = fds
        .iter()
        .map(|&fd| {
            let (ex, uids) = (b.out::<[i32; 2]>(), b.out::<[u32; 2]>());
            let mut ask = |name, cmd: libc::c_int, arg: u64| {
                let r = b.call(name, libc::SYS_fcntl, &[fd as u64, cmd as u64, arg]);
                b.about(format!("fd {fd}"));
                r
            };
            ask("fcntl(F_GETOWN_EX)", fd::F_GETOWN_EX, ex.addr());
            ask("fcntl(F_GETOWNER_UIDS)", fd::F_GETOWNER_UIDS, uids.addr());
            let signal = ask("fcntl(F_GETSIG)", fd::F_GETSIG, 0);
            Asked {
                fd,
                ex,
                uids,
                signal,
            }
        })
        .collect();
    move |d| {
        asked
            .iter()
            .map(|a| {
                let [kind, pid] = d.get(a.ex);
                let [uid, euid] = d.get(a.uids);
                let signal = d.raw(a.signal) as i32;
                (
                    a.fd,
                    Owner {
                        kind,
                        pid,
                        uid,
                        euid,
                        signal,
                    },
                )
            })
            .collect()
    }
}

/// The owner of fd `fd` of `pid` as its process reported it ([`query`]), when set;
/// checked as [`read`] does.
pub fn reported(pid: i32, fd: i32, o: &Owner, pids: &[i32]) -> Result<Option<FdOwner>, DumpError> {
    recorded(fd, o, pids, |what| {
        DumpError::unsupported(format!("fd {fd} of pid {pid} {what}"))
    })
}

/// The owner and signal of the open file description of `open`, read on `copy`
/// (stasis's duplicate of it), when either is set. `pids`: the processes of the image;
/// an owner outside them is refused.
pub fn read(
    open: &OpenFd,
    copy: BorrowedFd<'_>,
    pids: &[i32],
) -> Result<Option<FdOwner>, DumpError> {
    let o = owner(copy)
        .map_err(|e| open.error(&format!("cannot be asked for its owner (F_GETOWN_EX): {e}")))?;
    recorded(open.fd, &o, pids, |what| open.error(what))
}

/// `o` as the record of fd `fd`, if an owner or signal is set; `error` names the fd.
fn recorded(
    fd: i32,
    o: &Owner,
    pids: &[i32],
    error: impl Fn(&str) -> DumpError,
) -> Result<Option<FdOwner>, DumpError> {
    if o.pid == 0 && o.signal == 0 {
        return Ok(None);
    }
    check_owner(o, pids, error)?;
    Ok(Some(FdOwner {
        fd,
        kind: o.kind,
        pid: o.pid,
        uid: o.uid,
        euid: o.euid,
        signal: o.signal,
    }))
}

/// The owner must be restored with the image: a process of it, a thread of one (its
/// tid), or a group led by one.
fn check_owner(
    o: &Owner,
    pids: &[i32],
    error: impl Fn(&str) -> DumpError,
) -> Result<(), DumpError> {
    let known = match o.kind {
        fd::F_OWNER_PID | fd::F_OWNER_PGRP => pids.contains(&o.pid),
        _ => pids.contains(&tgid_of(o.pid)),
    };
    if o.pid == 0 || known {
        return Ok(());
    }
    let whom = match o.kind {
        fd::F_OWNER_PGRP => "process group",
        fd::F_OWNER_PID => "pid",
        _ => "thread",
    };
    Err(error(&format!(
        "sends its I/O signals (F_SETOWN) to {whom} {}, which is outside the dumped processes",
        o.pid
    )))
}

/// The process a thread belongs to (itself if it cannot be read).
fn tgid_of(tid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}
