//! Files in flight: fds sent with `SCM_RIGHTS` to a unix socket of the table and not
//! received yet. The restore side is `restore/files/unix.rs` (`finish`), which sends
//! them again with their messages.
//!
//! Every unix socket's receive queue is peeked before the table is classified
//! ([`collect`]); a peek installs copies of the files riding on each message in stasis
//! itself. Each copy becomes one more [`OpenFd`] of the table, numbered above every fd
//! the process holds ("in flight", [`Flying`]), and goes through the same code as a held
//! fd, reached through stasis's own `/proc/PID/fd`: the same open file description as a
//! held fd becomes a `Dup` of it, as an fd of an earlier process of the tree an
//! `Inherited` reference ([`identify`]), anything else is saved as the object itself
//! (a pipe with its bytes, a file with its offset, a socket with its own queue — whose
//! in-flight files are collected the same way —, a memfd, an eventfd...).
//!
//! Refused, naming the pid, the receiving fd and the kind (or dropped from its message
//! under `--skip-in-flight`): what the table walk cannot save, a pseudo-terminal in
//! flight, a file with locks, the same description held by a later
//! process of the tree, and a pipe, memfd or deleted file whose other descriptions are
//! held by another process (or, for memfds and deleted files, by any fd).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::sock::{socket_inode, SockCtx};
use super::unix::{peek_queue, Queued};
use super::{FdOptions, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FdKind, InFlight};
use crate::proc;
use crate::sys::kcmp::{self, Object};
use crate::sys::sock_diag::TCP_LISTEN;

/// Where a file in flight is: stasis's own copy and the socket it rides to.
#[derive(Clone, Copy, Debug)]
pub struct Flying {
    /// The copy the peek installed in stasis.
    pub copy: i32,
    /// The receiving socket's fd in the table (a number of the image for a socket that
    /// is itself in flight).
    pub socket: i32,
}

/// Every fd of the tree's processes by the file it refers to, in tree then fd order;
/// read once, when a file in flight is first identified.
pub type TreeFiles = std::cell::OnceCell<HashMap<(u64, u64), Vec<(i32, i32)>>>;

/// The files in flight to the sockets of one table (stasis's copies are kept in the
/// `SockCtx`, open while the table is classified).
#[derive(Default)]
pub struct Collected {
    pub opened: Vec<OpenFd>,
    pub messages: Vec<InFlight>,
}

/// Peeks the queue of every unix socket of the table (and of every socket in flight to
/// them), keeps the queues in `ctx` for `unix.rs` and returns the files in flight,
/// numbered from above the table's highest fd.
pub fn collect(ctx: &mut SockCtx<'_>, held: &[OpenFd]) -> Result<Collected, DumpError> {
    let mut next = held.iter().map(|o| o.fd + 1).max().unwrap_or(0);
    let mut work: Vec<(i32, u64)> = Vec::new();
    for open in held {
        if let Some(ino) = socket_inode(&open.target) {
            if ctx.inodes.get(&ino) == Some(&open.fd) {
                work.push((open.fd, ino));
            }
        }
    }
    let mut out = Collected::default();
    while let Some((fd, ino)) = work.pop() {
        let Some(queue) = peek(ctx, fd, ino)? else {
            continue;
        };
        let mut messages = Vec::new();
        let mut senders = Vec::new();
        for (index, (msg, fds, sender)) in queue.into_iter().enumerate() {
            let mut numbers = Vec::new();
            for copy in fds {
                let open = OpenFd::in_flight(ctx.pid, next, &copy, fd)?;
                if let Some(sock) = socket_inode(&open.target) {
                    if let std::collections::hash_map::Entry::Vacant(e) = ctx.inodes.entry(sock) {
                        e.insert(next);
                        work.push((next, sock));
                    }
                }
                ctx.copies.insert(next, copy);
                numbers.push(next);
                out.opened.push(open);
                next += 1;
            }
            if !numbers.is_empty() {
                out.messages.push(InFlight {
                    socket: ino,
                    message: index as u32,
                    fds: numbers,
                });
            }
            messages.push(msg);
            senders.push(sender);
        }
        ctx.queues.insert(ino, messages);
        ctx.senders.insert(ino, senders);
    }
    out.opened.sort_by_key(|o| o.fd);
    Ok(out)
}

/// The queue of unix socket `ino` at fd `fd` (`None`: not a unix socket with a queue).
fn peek(ctx: &mut SockCtx<'_>, fd: i32, ino: u64) -> Result<Option<Queued>, DumpError> {
    let pid = ctx.pid;
    let Some(d) = ctx.unix_table()?.get(&(ino as u32)).cloned() else {
        return Ok(None);
    };
    if d.state == TCP_LISTEN {
        return Ok(None);
    }
    let queue = match ctx.peeked(fd) {
        Some(queue) => queue,
        None => peek_queue(ctx.steal(fd)?.as_fd(), &d),
    };
    queue.map(Some).map_err(|e| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid}: peek at its receive queue: {e}"
        ))
    })
}

/// What a file in flight is in the tree: `Some(Inherited)` when an earlier process
/// holds its open file description, `None` when this process does (the table walk
/// makes it a `Dup`) or nobody does (saved as the object itself).
pub fn identify(open: &OpenFd, opts: &FdOptions) -> Result<Option<FdKind>, DumpError> {
    let Some(flying) = open.flying else {
        return Ok(None);
    };
    let holders = tree_files(opts)
        .get(&open.object()?)
        .cloned()
        .unwrap_or_default();
    let own = std::process::id() as i32;
    let same = |&&(q, f): &&(i32, i32)| {
        kcmp::same(own, q, Object::File, flying.copy as u64, f as u64).unwrap_or(false)
    };
    if let Some(&(q, f)) = holders.iter().find(same) {
        return match position(opts, q).cmp(&position(opts, open.pid)) {
            std::cmp::Ordering::Less => Ok(Some(FdKind::Inherited { pid: q, fd: f })),
            std::cmp::Ordering::Equal => Ok(None),
            std::cmp::Ordering::Greater => Err(open.error(&format!(
                "is also held by pid {q} (fd {f}), a later process of the tree; stasis cannot rebuild a file in flight that a later process holds"
            ))),
        };
    }
    check_other_descriptions(open, &holders)?;
    Ok(None)
}

/// A pipe end in flight whose other descriptions another process holds, or a memfd or
/// deleted file in flight opened elsewhere too, would come back as two objects.
fn check_other_descriptions(open: &OpenFd, holders: &[(i32, i32)]) -> Result<(), DumpError> {
    let pipe = open.target.starts_with("pipe:");
    let shared_file = open.target.starts_with("/memfd:") || open.target.ends_with(" (deleted)");
    let elsewhere = holders.iter().find(|(q, _)| *q != open.pid || shared_file);
    match elsewhere {
        Some((q, f)) if pipe || shared_file => Err(open.error(&format!(
            "is {}, whose other open file description fd {f} of pid {q} holds; stasis cannot rebuild such a file in flight",
            open.target
        ))),
        _ => Ok(()),
    }
}

/// Kinds the table walk saves for a held fd but not in flight (terminals of the
/// process). An epoll in flight is saved like a held one: its registrations name fds of
/// the table (or, when moved, the fd of the tree that holds the file).
pub fn refuse_kind(open: &OpenFd, locks: bool) -> Result<(), DumpError> {
    if open.flying.is_none() {
        return Ok(());
    }
    let what = if super::pty::is_master(&open.target) || open.pty_slave()?.is_some() {
        "a pseudo-terminal"
    } else if locks {
        "a file with locks"
    } else {
        return Ok(());
    };
    Err(open.refuse(what))
}

/// Under `--skip-in-flight`, a file in flight that cannot be saved is dropped from its
/// message; otherwise the dump is refused, naming the receiving fd.
pub fn refused(open: &OpenFd, opts: &FdOptions, why: DumpError) -> Result<(), DumpError> {
    let Some(flying) = open.flying else {
        return Err(why);
    };
    if opts.skip_in_flight {
        return Ok(());
    }
    Err(DumpError::unsupported(format!(
        "fd {} of pid {} has file descriptors in flight (sent with SCM_RIGHTS, not yet received) that stasis cannot save (the one numbered {} in the image): {why}; use --skip-in-flight to restore the messages without such files",
        flying.socket, open.pid, open.fd
    )))
}

/// Removes dropped files from their messages (a message left without files is kept
/// without them).
pub fn drop_files(messages: &mut Vec<InFlight>, dropped: &[i32]) {
    for m in messages.iter_mut() {
        m.fds.retain(|fd| !dropped.contains(fd));
    }
    messages.retain(|m| !m.fds.is_empty());
}

fn position(opts: &FdOptions, pid: i32) -> usize {
    opts.pids
        .iter()
        .position(|&p| p == pid)
        .unwrap_or(usize::MAX)
}

fn tree_files(opts: &FdOptions) -> &HashMap<(u64, u64), Vec<(i32, i32)>> {
    opts.tree_files.get_or_init(|| {
        let mut all: HashMap<(u64, u64), Vec<(i32, i32)>> = HashMap::new();
        for &pid in &opts.pids {
            for fd in proc::fds(pid).unwrap_or_default() {
                if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) {
                    all.entry((m.dev(), m.ino())).or_default().push((pid, fd));
                }
            }
        }
        all
    })
}
