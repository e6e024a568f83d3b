//! "Impossible values" checks on decoded records: pure functions that refuse what no kernel
//! could have produced, so that restore never acts on a crafted or corrupted image. Each
//! failure is an [`ImageError::Invalid`] naming the file and what is wrong. It does not check
//! anything against the live system (that is `check`'s and `restore`'s job).

use std::collections::HashSet;
use std::path::Path;

use super::error::ImageError;
use super::files::{FdEntry, FdKind, FilesImage, MappedFd};
use super::inventory::Inventory;
use super::mm::{MmImage, Vma, VmaKind};
use super::task::{PosixTimer, TaskImage, ThreadImage};
use super::tree::{ProcEntry, ProcState, TreeImage};
use crate::sys::socket::TERMIOS_LEN;

/// Linux's `PID_MAX_LIMIT` on 64-bit.
pub const PID_MAX: i32 = 4_194_304;
/// Exclusive end of the x86_64 user address space (4-level paging).
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// Signals 1..=64.
pub const SIGNALS: usize = 64;
/// The legacy area plus the xsave header: the smallest real xsave image.
pub const XSAVE_MIN: usize = 576;
pub const XSAVE_MAX: usize = 1 << 20;

mod mm;
pub use mm::{cow_parent, mm};

type Check = Result<(), ImageError>;

fn fail(path: &Path, what: String) -> Check {
    Err(ImageError::invalid(path, what))
}

/// pids in range and unique, the root first.
pub fn inventory(inv: &Inventory, path: &Path) -> Check {
    let Some(&first) = inv.pids.first() else {
        return fail(path, "lists no processes".into());
    };
    check_ids(&inv.pids, "pid", path)?;
    if inv.root_pid != first {
        return fail(
            path,
            format!(
                "root pid {} is not the first listed pid {first}",
                inv.root_pid
            ),
        );
    }
    Ok(())
}

/// The tree lists every process once, the root first, parents before children; its live
/// processes are exactly `inventory.pids`, in the same order; ids and statuses are sane.
pub fn tree(tree: &TreeImage, inv: &Inventory, path: &Path) -> Check {
    let pids: Vec<i32> = tree.processes.iter().map(|p| p.pid).collect();
    check_ids(&pids, "pid", path)?;
    if pids.first() != Some(&inv.root_pid) {
        return fail(
            path,
            format!("does not start with the root pid {}", inv.root_pid),
        );
    }
    let alive: Vec<i32> = tree.alive().map(|p| p.pid).collect();
    if alive != inv.pids {
        return fail(
            path,
            "its live processes are not the inventory's pids".into(),
        );
    }
    for (i, p) in tree.processes.iter().enumerate().skip(1) {
        if !tree.processes[..i].iter().any(|q| q.pid == p.ppid) {
            return fail(
                path,
                format!("pid {} comes before its parent {}", p.pid, p.ppid),
            );
        }
        proc_entry(p, path)?;
        sharing(tree, p, path)?;
    }
    let termios = tree
        .terminal
        .as_ref()
        .map_or(TERMIOS_LEN, |t| t.termios.len());
    if termios != TERMIOS_LEN {
        return fail(path, format!("its terminal's termios has {termios} bytes"));
    }
    let root = &tree.processes[0];
    if shares_any(root) {
        return fail(path, format!("the root {} shares with a parent", root.pid));
    }
    proc_entry(root, path)
}

fn shares_any(p: &ProcEntry) -> bool {
    p.shares_files || p.shares_fs || p.shares_vm || p.shares_sighand
}

/// What `p` shares with its parent: only a live process with a live parent shares, and
/// signal handlers only along with the address space (`CLONE_SIGHAND` needs `CLONE_VM`).
fn sharing(tree: &TreeImage, p: &ProcEntry, path: &Path) -> Check {
    let alive = |e: &ProcEntry| matches!(e.state, ProcState::Alive { .. });
    let parent_alive = tree.get(p.ppid).is_some_and(alive);
    if shares_any(p) && !(alive(p) && parent_alive) {
        return fail(
            path,
            format!(
                "pid {} shares with its parent {}, but one of them is a zombie",
                p.pid, p.ppid
            ),
        );
    }
    if p.shares_sighand && !p.shares_vm {
        return fail(
            path,
            format!(
                "pid {} shares signal handlers but not the address space with its parent",
                p.pid
            ),
        );
    }
    Ok(())
}

fn proc_entry(p: &ProcEntry, path: &Path) -> Check {
    let ids_ok = [p.ppid, p.pgid, p.sid]
        .iter()
        .all(|id| (0..=PID_MAX).contains(id));
    if !ids_ok || !(0..=SIGNALS as i32).contains(&p.exit_signal) {
        return fail(
            path,
            format!("pid {} has impossible ids or exit signal", p.pid),
        );
    }
    if let ProcState::Alive { stop_signal } = p.state {
        if !matches!(stop_signal, 0 | 1) && !crate::jobctl::is_stop_signal(stop_signal.into()) {
            return fail(
                path,
                format!(
                    "pid {} was stopped by signal {stop_signal}, not a stop signal",
                    p.pid
                ),
            );
        }
    }
    if p.state == ProcState::GroupHelper && p.pgid != p.pid {
        return fail(
            path,
            format!("group helper {} does not lead its group {}", p.pid, p.pgid),
        );
    }
    if p.state == ProcState::SessionHelper && (p.sid != p.pid || p.pgid != p.pid) {
        return fail(
            path,
            format!(
                "session helper {} does not lead its session and group",
                p.pid
            ),
        );
    }
    if p.state == ProcState::SessionForker && (p.sid == p.pid || p.pgid != p.sid) {
        return fail(
            path,
            format!(
                "session forker {} leads its session, or is not in its leader's group",
                p.pid
            ),
        );
    }
    if let ProcState::Zombie { status } = p.state {
        if status & !0xffff != 0 {
            return fail(
                path,
                format!("zombie {} has wait status {status:#x}", p.pid),
            );
        }
    }
    Ok(())
}

/// Own credentials are listed once each, for threads of the task other than the leader.
fn thread_creds(task: &TaskImage, tids: &[i32], path: &Path) -> Check {
    let listed: Vec<i32> = task.thread_creds.iter().map(|t| t.tid).collect();
    for (i, tid) in listed.iter().enumerate() {
        if *tid == task.pid || !tids.contains(tid) || listed[..i].contains(tid) {
            return fail(
                path,
                format!("lists credentials of thread {tid}, not another thread of its own"),
            );
        }
    }
    Ok(())
}

/// Every `Inherited` fd names an original fd (not itself a reference) of a process that
/// comes earlier in `order`; every `Reopen` a memfd, deleted file (ghost or copied link
/// remap) or pipe created by an earlier
/// fd of its own process or by an earlier process; every spare fd is taken by a later
/// process.
pub fn inherited_fds(order: &[(i32, &FilesImage)], path: &Path) -> Check {
    for (i, (pid, files)) in order.iter().enumerate() {
        for e in &files.fds {
            let (owner, fd, ok) = match e.kind {
                FdKind::Inherited { pid, fd } => (pid, fd, &order[..i]),
                FdKind::Reopen { pid: p, fd, .. } if p == *pid && fd < e.fd => {
                    (p, fd, &order[i..=i])
                }
                FdKind::Reopen { pid, fd, .. } => (pid, fd, &order[..i]),
                _ => continue,
            };
            let can: fn(&FdKind) -> bool = if matches!(e.kind, FdKind::Inherited { .. }) {
                |k: &FdKind| !is_reference(k)
            } else {
                reopenable
            };
            if !holds(ok, owner, fd, can) {
                return fail(
                    path,
                    format!("fd {} of pid {pid} refers to fd {fd} of pid {owner}, which is not an earlier original fd of a kind it can refer to", e.fd),
                );
            }
        }
    }
    for (i, (pid, files)) in order.iter().enumerate() {
        if let Some(m) = files
            .epoll_moved
            .iter()
            .find(|m| !holds(&order[..=i], m.pid, m.fd, |_| true))
        {
            return fail(
                path,
                format!(
                    "the file registered as fd {} (offset {}) in epoll fd {} of pid {pid} is said to be fd {} of pid {}, which is not an fd of this or an earlier process",
                    m.tfd, m.toff, m.epoll, m.fd, m.pid
                ),
            );
        }
        if let Some(fd) = files
            .spares
            .iter()
            .find(|&&fd| !taken(&order[i + 1..], *pid, fd))
        {
            return fail(
                path,
                format!("spare fd {fd} of pid {pid} is taken by no later process"),
            );
        }
    }
    Ok(())
}

/// Some process `pid` of `procs` has an entry at `fd` whose kind passes `ok`.
fn holds(procs: &[(i32, &FilesImage)], pid: i32, fd: i32, ok: fn(&FdKind) -> bool) -> bool {
    procs
        .iter()
        .any(|(p, f)| *p == pid && f.fds.iter().any(|x| x.fd == fd && ok(&x.kind)))
}

/// Some process of `procs` inherits fd `fd` of `pid`.
fn taken(procs: &[(i32, &FilesImage)], pid: i32, fd: i32) -> bool {
    let inherited = FdKind::Inherited { pid, fd };
    procs
        .iter()
        .any(|(_, f)| f.fds.iter().any(|x| x.kind == inherited))
}

/// An entry that refers to another one's open file description instead of making one.
fn is_reference(kind: &FdKind) -> bool {
    matches!(kind, FdKind::Dup { .. } | FdKind::Inherited { .. })
}

/// What a `Reopen` may name: a file restore creates (or a copied link remap, which
/// only its first fd opens), or a pipe (another open of it through `/proc`).
fn reopenable(kind: &FdKind) -> bool {
    matches!(kind, FdKind::Memfd(_) | FdKind::Ghost(_) | FdKind::Pipe(_))
        || matches!(kind, FdKind::Remap(r) if r.copied)
}

/// Every `Mapped` fd names a mapping of a memfd, deleted file or shared memory that a
/// process of the image has at exactly that range.
pub fn mapped_fds<'a>(
    files: &FilesImage,
    mm_of: impl Fn(i32) -> Option<&'a MmImage>,
    path: &Path,
) -> Check {
    for e in &files.fds {
        let FdKind::Mapped(MappedFd {
            pid, start, end, ..
        }) = e.kind
        else {
            continue;
        };
        let found = mm_of(pid).is_some_and(|mm| {
            mm.vmas
                .iter()
                .any(|v| v.start == start && v.end == end && rebuilds_object(v))
        });
        if !found {
            return fail(
                path,
                format!("fd {} reopens the mapping {start:#x}-{end:#x} of pid {pid}, which is not a mapping of a memfd, deleted file or shared memory in the image", e.fd),
            );
        }
    }
    Ok(())
}

/// Whether mapping `v` maps an object without a name that it may create at restore: a
/// shared mapping of a memfd, deleted file or shared memory, a private one that saves
/// its deleted file.
fn rebuilds_object(v: &Vma) -> bool {
    let shared = matches!(
        v.kind,
        VmaKind::Unlinked { .. } | VmaKind::Hugetlb { .. } | VmaKind::Anon
    );
    (v.shared && shared) || matches!(v.kind, VmaKind::PrivateUnlinked { ghost: Some(_), .. })
}

/// A process's own record agrees with the tree on its ids.
pub fn process_in_tree(task: &TaskImage, tree: &TreeImage, path: &Path) -> Check {
    let e = match tree.get(task.pid) {
        Some(e) if e.pgid == task.pgid && e.sid == task.sid => e,
        _ => {
            return fail(
                path,
                format!(
                    "pid {}: session or group differ from its task record",
                    task.pid
                ),
            )
        }
    };
    if task.sigactions.is_empty() != e.shares_sighand {
        return fail(
            path,
            format!(
                "pid {}: its task record lists {} signal handlers, but it {} them with its parent",
                task.pid,
                task.sigactions.len(),
                if e.shares_sighand {
                    "shares"
                } else {
                    "does not share"
                }
            ),
        );
    }
    Ok(())
}

/// Each id in `1..=PID_MAX`, none twice.
fn check_ids(ids: &[i32], what: &str, path: &Path) -> Check {
    let mut seen = HashSet::new();
    for &id in ids {
        if !(1..=PID_MAX).contains(&id) {
            return fail(path, format!("{what} {id} is outside 1..={PID_MAX}"));
        }
        if !seen.insert(id) {
            return fail(path, format!("{what} {id} is listed twice"));
        }
    }
    Ok(())
}

/// `task` is the record of `pid` (from the file name) with a leader thread and sane sizes.
pub fn task(task: &TaskImage, pid: i32, path: &Path) -> Check {
    if task.pid != pid {
        return fail(
            path,
            format!("holds pid {}, but the file name says {pid}", task.pid),
        );
    }
    let Some(leader) = task.threads.first() else {
        return fail(path, "has no threads".into());
    };
    if leader.tid != pid {
        return fail(
            path,
            format!(
                "first thread {} is not the thread-group leader {pid}",
                leader.tid
            ),
        );
    }
    let tids: Vec<i32> = task.threads.iter().map(|t| t.tid).collect();
    check_ids(&tids, "tid", path)?;
    thread_creds(task, &tids, path)?;
    if task.rlimits.len() != 16 || task.rlimits.iter().any(|(soft, hard)| soft > hard) {
        return fail(
            path,
            "resource limits are not 16 (soft <= hard) pairs".to_string(),
        );
    }
    // None: the table is its parent's (`shares_sighand`, checked against the tree).
    if !matches!(task.sigactions.len(), 0 | SIGNALS) {
        return fail(
            path,
            format!(
                "has {} signal handlers, expected {SIGNALS} (or none)",
                task.sigactions.len()
            ),
        );
    }
    task.threads
        .iter()
        .try_for_each(|t| xsave(t.tid, t.xsave.len(), path))?;
    task.threads
        .iter()
        .try_for_each(|t| thread_attrs(t, path))?;
    attrs(task, path)?;
    let seccomp: Vec<_> = task.threads.iter().map(|t| (t.tid, t.seccomp)).collect();
    super::seccomp::validate(&task.seccomp, &seccomp, path)?;
    posix_timers(&task.timers.posix, path)
}

/// Policy, nice, affinity and parent-death signal of a thread.
fn thread_attrs(t: &ThreadImage, path: &Path) -> Check {
    let s = &t.sched;
    if !matches!(s.policy, 0..=3 | 5 | 6) {
        return fail(
            path,
            format!("thread {} has scheduling policy {}", t.tid, s.policy),
        );
    }
    if !(-20..=19).contains(&s.nice) {
        return fail(path, format!("thread {} has nice {}", t.tid, s.nice));
    }
    if s.affinity.iter().all(|&w| w == 0) {
        return fail(path, format!("thread {} may run on no CPU", t.tid));
    }
    if !(0..=SIGNALS as i32).contains(&t.pdeathsig) {
        return fail(
            path,
            format!("thread {} has parent-death signal {}", t.tid, t.pdeathsig),
        );
    }
    Ok(())
}

/// oom_score_adj, dumpable, securebits and capability-set relations.
fn attrs(task: &TaskImage, path: &Path) -> Check {
    if !(-1000..=1000).contains(&task.oom_score_adj) {
        return fail(
            path,
            format!(
                "oom_score_adj {} is outside -1000..=1000",
                task.oom_score_adj
            ),
        );
    }
    if task.attrs.dumpable > 2 {
        return fail(path, format!("dumpable is {}", task.attrs.dumpable));
    }
    let c = &task.creds;
    if c.securebits >= 1 << 8 {
        return fail(
            path,
            format!("securebits {:#x} has unknown bits", c.securebits),
        );
    }
    let caps = &c.caps;
    if caps.effective & !caps.permitted != 0 {
        return fail(
            path,
            "effective capabilities outside the permitted set".into(),
        );
    }
    if caps.ambient & !(caps.permitted & caps.inheritable) != 0 {
        return fail(
            path,
            "ambient capabilities outside permitted and inheritable".into(),
        );
    }
    Ok(())
}

/// Timer ids unique and increasing, a known notify kind, a real signal where one is sent.
fn posix_timers(timers: &[PosixTimer], path: &Path) -> Check {
    let mut prev = -1;
    for t in timers {
        if t.id <= prev {
            return fail(
                path,
                format!("POSIX timer {} comes after timer {prev}", t.id),
            );
        }
        prev = t.id;
        if !matches!(t.notify, 0 | 1 | 2 | 4) {
            return fail(
                path,
                format!("POSIX timer {} has notify {}", t.id, t.notify),
            );
        }
        if t.notify != 1 && !(1..=SIGNALS as i32).contains(&t.signal) {
            return fail(
                path,
                format!("POSIX timer {} sends signal {}", t.id, t.signal),
            );
        }
    }
    Ok(())
}

fn xsave(tid: i32, len: usize, path: &Path) -> Check {
    if len > XSAVE_MAX || (len != 0 && len < XSAVE_MIN) {
        return fail(
            path,
            format!(
                "thread {tid} has an xsave area of {len} bytes, outside {XSAVE_MIN}..={XSAVE_MAX}"
            ),
        );
    }
    Ok(())
}

/// fds non-negative, unique, in increasing order; every fd an entry or a lock refers to
/// is in the table (a `Dup` or `PipePeer` refers to an earlier fd, a pipe's `peer` to the
/// `PipePeer` naming it back).
pub fn files(files: &FilesImage, path: &Path) -> Check {
    references(files, path)?;
    socket_options(files, path)?;
    side_tables(files, path)?;
    order(files, path)?;
    spares(files, path)?;
    in_flight(files, path)?;
    memfd_modes(files, path)
}

/// Every memfd mode belongs to an entry of the table (a `Memfd` one uses it; one that
/// became a reopen of a mapped or earlier memfd has the object's already), listed once,
/// with permission bits only.
fn memfd_modes(files: &FilesImage, path: &Path) -> Check {
    for (i, &(fd, mode)) in files.modes.iter().enumerate() {
        let held = files.fds.iter().any(|e| e.fd == fd);
        if !held || mode > 0o7777 || files.modes[..i].iter().any(|x| x.0 == fd) {
            return fail(
                path,
                format!("mode {mode:#o} of fd {fd} names no fd of the table, is no permission bits or is listed twice"),
            );
        }
    }
    Ok(())
}

/// Every saved socket option is one stasis knows, listed once, sized as it should be.
fn socket_options(files: &FilesImage, path: &Path) -> Check {
    for e in &files.fds {
        let opts = match &e.kind {
            FdKind::Unix(u) => &u.opts,
            FdKind::Inet(s) => &s.opts,
            _ => continue,
        };
        if let Err(why) = opts.check() {
            return fail(path, format!("fd {}: {why}", e.fd));
        }
    }
    Ok(())
}

/// Every moved epoll registration belongs to a registration of an epoll entry, listed
/// once; every content hash to a file entry, listed once.
fn side_tables(files: &FilesImage, path: &Path) -> Check {
    for (i, m) in files.epoll_moved.iter().enumerate() {
        let registered = files.fds.iter().any(|e| {
            e.fd == m.epoll
                && matches!(&e.kind, FdKind::Epoll(ep) if ep.numbered().any(|(t, toff)| (t.fd, toff) == (m.tfd, m.toff)))
        });
        let twice = files.epoll_moved[..i]
            .iter()
            .any(|x| (x.epoll, x.tfd, x.toff) == (m.epoll, m.tfd, m.toff));
        if !registered || twice {
            return fail(
                path,
                format!(
                    "moved registration {} (offset {}) of epoll fd {} is not a registration of the table or is listed twice",
                    m.tfd, m.toff, m.epoll
                ),
            );
        }
    }
    for (i, h) in files.hashes.iter().enumerate() {
        let file = files
            .fds
            .iter()
            .any(|e| e.fd == h.fd && matches!(e.kind, FdKind::Path(_)));
        if !file || files.hashes[..i].iter().any(|x| x.fd == h.fd) {
            return fail(
                path,
                format!(
                    "content hash of fd {} names no file of the table or is listed twice",
                    h.fd
                ),
            );
        }
    }
    Ok(())
}

/// Files in flight ride on an existing message of a unix socket of the table (one list
/// per message, 1 to 253 files), each an entry above every fd the process held, named
/// once, neither a spare nor locked nor watched by an epoll.
fn in_flight(files: &FilesImage, path: &Path) -> Check {
    let flying = |fd: i32| files.is_in_flight(fd);
    let held_top = files
        .fds
        .iter()
        .map(|e| e.fd)
        .filter(|&fd| !flying(fd) && !files.spares.contains(&fd))
        .max();
    let mut named = Vec::new();
    for (i, m) in files.in_flight.iter().enumerate() {
        let socket = files.fds.iter().find_map(|e| match &e.kind {
            FdKind::Unix(u) if u.ino == m.socket => Some(u),
            _ => None,
        });
        let earlier = &files.in_flight[..i];
        let why = match socket {
            None => "goes to no unix socket of the table".to_string(),
            Some(u) if m.message as usize >= u.queue.len() => "rides on no queued message".into(),
            _ if earlier
                .iter()
                .any(|x| (x.socket, x.message) == (m.socket, m.message)) =>
            {
                "is listed twice".into()
            }
            _ if m.fds.is_empty() || m.fds.len() > 253 => format!("has {} files", m.fds.len()),
            _ => match m
                .fds
                .iter()
                .find_map(|&fd| flying_fd_error(files, fd, held_top, &named))
            {
                Some(why) => why,
                None => {
                    named.extend(&m.fds);
                    continue;
                }
            },
        };
        let (socket, message) = (m.socket, m.message);
        return fail(
            path,
            format!("message {message} of socket:[{socket}] in flight {why}"),
        );
    }
    Ok(())
}

/// What is wrong with fd `fd` as a file in flight, if anything.
fn flying_fd_error(
    files: &FilesImage,
    fd: i32,
    held_top: Option<i32>,
    named: &[i32],
) -> Option<String> {
    let watched =
        |e: &FdEntry| matches!(&e.kind, FdKind::Epoll(ep) if ep.targets.iter().any(|t| t.fd == fd));
    let why = if named.contains(&fd) {
        "is sent twice"
    } else if !files.fds.iter().any(|e| e.fd == fd) {
        "is not in the table"
    } else if held_top.is_some_and(|top| top > fd) {
        "is below an fd the process held"
    } else if files.spares.contains(&fd) {
        "is a spare"
    } else if files.locks.iter().any(|l| l.fd == fd) || files.fds.iter().any(watched) {
        "is locked or watched"
    } else {
        return None;
    };
    Some(format!("names fd {fd}, which {why}"))
}

/// Spare fds are listed once, in the table, above every fd the process held, objects
/// the process creates (not references), and no `Dup` of the process refers to them.
fn spares(files: &FilesImage, path: &Path) -> Check {
    let is_spare = |fd: i32| files.spares.contains(&fd);
    let held_top = files
        .fds
        .iter()
        .map(|e| e.fd)
        .filter(|&fd| !is_spare(fd))
        .max();
    for (i, &fd) in files.spares.iter().enumerate() {
        let entry = files.fds.iter().find(|e| e.fd == fd);
        let why = match entry {
            _ if files.spares[..i].contains(&fd) => "is listed twice",
            None => "is not in the table",
            Some(_) if held_top.is_some_and(|top| top > fd) => "is below an fd the process held",
            Some(e) if is_reference(&e.kind) || matches!(e.kind, FdKind::Reopen { .. }) => {
                "refers to another fd"
            }
            _ if files.fds.iter().any(|e| e.kind == FdKind::Dup { of: fd }) => {
                "is duplicated by the process"
            }
            _ => continue,
        };
        return fail(path, format!("spare fd {fd} {why}"));
    }
    Ok(())
}

fn references(files: &FilesImage, path: &Path) -> Check {
    let has = |fd: i32| files.fds.iter().any(|e| e.fd == fd);
    for (i, e) in files.fds.iter().enumerate() {
        let earlier = &files.fds[..i];
        let bad = match &e.kind {
            FdKind::PipePeer { of } => !earlier
                .iter()
                .any(|x| x.fd == *of && matches!(&x.kind, FdKind::Pipe(p) if p.peer == Some(e.fd))),
            FdKind::Pipe(p) => p.peer.is_some_and(|peer| {
                !files
                    .fds
                    .iter()
                    .any(|x| x.fd == peer && x.kind == FdKind::PipePeer { of: e.fd })
            }),
            FdKind::Epoll(ep) => ep
                .numbered()
                .any(|(t, toff)| !has(t.fd) && files.epoll_moved(e.fd, t.fd, toff).is_none()),
            _ => false,
        };
        if bad {
            return fail(
                path,
                format!("fd {} refers to an fd that is not in the table", e.fd),
            );
        }
    }
    if let Some(l) = files.locks.iter().find(|l| !has(l.fd)) {
        return fail(
            path,
            format!(
                "a lock is held through fd {}, which is not in the table",
                l.fd
            ),
        );
    }
    Ok(())
}

fn order(files: &FilesImage, path: &Path) -> Check {
    let mut prev = None;
    for (i, e) in files.fds.iter().enumerate() {
        if let FdKind::Dup { of } = e.kind {
            let earlier = &files.fds[..i];
            if !earlier
                .iter()
                .any(|x| x.fd == of && !matches!(x.kind, FdKind::Dup { .. }))
            {
                return fail(
                    path,
                    format!(
                        "fd {} duplicates fd {of}, which is not an earlier original fd",
                        e.fd
                    ),
                );
            }
        }
    }
    for fd in files.fds.iter().map(|e| e.fd) {
        if fd < 0 {
            return fail(path, format!("fd {fd} is negative"));
        }
        match prev {
            Some(p) if p == fd => return fail(path, format!("fd {fd} is listed twice")),
            Some(p) if p > fd => return fail(path, format!("fd {fd} comes after fd {p}")),
            _ => prev = Some(fd),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
