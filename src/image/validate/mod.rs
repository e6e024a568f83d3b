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
mod tests {
    use super::*;
    use crate::abi::PAGE_SIZE;
    use crate::image::mm::{Guard, MmFields, PageRun, VmaKind, MAX_STRIPES};
    use crate::image::sample;

    fn path() -> &'static Path {
        Path::new("x.img")
    }

    fn message(r: Check) -> String {
        match r {
            Err(ImageError::Invalid { what, .. }) => what,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn inv_err(f: impl FnOnce(&mut Inventory)) -> String {
        let mut inv = sample::inventory(&[10, 11]);
        f(&mut inv);
        message(inventory(&inv, path()))
    }

    /// A root 10 with live children 11 and 12, changed by `f`.
    fn tree_err(f: impl FnOnce(&mut TreeImage)) -> String {
        let mut t = sample::tree(&[10, 11, 12]);
        f(&mut t);
        let inv = sample::inventory(&t.alive().map(|p| p.pid).collect::<Vec<_>>());
        message(tree(&t, &inv, path()))
    }

    #[test]
    fn thread_credentials() {
        use crate::image::task::{Creds, ThreadCreds};
        let mut task = sample::task(10);
        let own = |tid| ThreadCreds {
            tid,
            creds: Creds::default(),
        };
        task.thread_creds = vec![own(11)];
        assert!(super::task(&task, 10, path()).is_ok());
        assert_eq!(task.creds_of(11), &Creds::default());
        assert_eq!(task.creds_of(10), &task.creds);
        for bad in [vec![own(10)], vec![own(12)], vec![own(11), own(11)]] {
            task.thread_creds = bad;
            let tid = task.thread_creds.last().map(|t| t.tid);
            let err = message(super::task(&task, 10, path()));
            assert!(err.contains(&format!("thread {}", tid.unwrap())), "{err}");
        }
    }

    #[test]
    fn stop_signals() {
        for stop_signal in [0, 1, 19, 20, 21, 22] {
            let mut ok = sample::tree(&[10, 11, 12]);
            ok.processes[1].state = ProcState::Alive { stop_signal };
            assert!(tree(&ok, &sample::inventory(&[10, 11, 12]), path()).is_ok());
        }
        assert_eq!(
            tree_err(|t| t.processes[1].state = ProcState::Alive { stop_signal: 10 }),
            "pid 11 was stopped by signal 10, not a stop signal"
        );
        let old = ProcState::Alive { stop_signal: 1 };
        assert_eq!(
            old.stop_signal(),
            Some(libc::SIGSTOP),
            "version 8's stopped: true"
        );
        assert_eq!(
            ProcState::alive(Some(libc::SIGTTOU)).stop_signal(),
            Some(libc::SIGTTOU)
        );
        assert_eq!(ProcState::alive(None).stop_signal(), None);
    }

    #[test]
    fn sharing_with_the_parent() {
        let mut ok = sample::tree(&[10, 11, 12]);
        (ok.processes[1].shares_vm, ok.processes[1].shares_sighand) = (true, true);
        ok.processes[2].shares_vm = true;
        assert!(tree(&ok, &sample::inventory(&[10, 11, 12]), path()).is_ok());
        assert_eq!(ok.mm_owner(12), 10, "up the chain of sharers");
        assert_eq!(ok.mm_owner(10), 10);
        assert_eq!(
            tree_err(|t| t.processes[0].shares_vm = true),
            "the root 10 shares with a parent"
        );
        assert_eq!(
            tree_err(|t| t.processes[1].shares_sighand = true),
            "pid 11 shares signal handlers but not the address space with its parent"
        );
        assert_eq!(
            tree_err(|t| {
                t.processes[1].state = ProcState::Zombie { status: 0 };
                t.processes[2].ppid = 10;
                t.processes[1].shares_vm = true;
            }),
            "pid 11 shares with its parent 10, but one of them is a zombie"
        );
        let child_task = |pid| TaskImage {
            pgid: 10,
            sid: 10,
            ..sample::task(pid)
        };
        let mut task = child_task(11);
        let in_tree = |task: &TaskImage| message(process_in_tree(task, &ok, path()));
        assert_eq!(
            in_tree(&task),
            "pid 11: its task record lists 64 signal handlers, but it shares them with its parent"
        );
        task.sigactions.clear();
        assert!(process_in_tree(&task, &ok, path()).is_ok());
        let mut task = child_task(12);
        task.sigactions.clear();
        assert_eq!(
            in_tree(&task),
            "pid 12: its task record lists 0 signal handlers, but it does not share them with its parent"
        );
    }

    fn task_err(f: impl FnOnce(&mut TaskImage)) -> String {
        let mut t = sample::task(10);
        f(&mut t);
        message(task(&t, 10, path()))
    }

    fn mm_err(f: impl FnOnce(&mut MmImage)) -> String {
        let mut m = sample::mm();
        f(&mut m);
        message(mm(&m, path()))
    }

    fn files_err(f: impl FnOnce(&mut FilesImage)) -> String {
        let mut fi = sample::files();
        f(&mut fi);
        message(files(&fi, path()))
    }

    #[test]
    fn samples_are_valid() {
        inventory(&sample::inventory(&[10, 11]), path()).unwrap();
        task(&sample::task(10), 10, path()).unwrap();
        mm(&sample::mm(), path()).unwrap();
        files(&sample::files(), path()).unwrap();
        assert_eq!(sample::mm().pages(), 3);
    }

    #[test]
    fn a_job_terminal_needs_a_whole_termios() {
        use crate::image::tree::JobTerminal;
        let inv = sample::inventory(&[10]);
        let mut t = sample::tree(&[10]);
        t.terminal = Some(JobTerminal {
            foreground: 10,
            termios: vec![0; TERMIOS_LEN],
        });
        tree(&t, &inv, path()).unwrap();
        t.terminal.as_mut().unwrap().termios.pop();
        assert_eq!(
            message(tree(&t, &inv, path())),
            "its terminal's termios has 35 bytes"
        );
    }

    #[test]
    fn inventory_rules() {
        assert_eq!(inv_err(|i| i.pids.clear()), "lists no processes");
        assert_eq!(inv_err(|i| i.pids[1] = 0), "pid 0 is outside 1..=4194304");
        assert_eq!(
            inv_err(|i| i.pids[1] = PID_MAX + 1),
            "pid 4194305 is outside 1..=4194304"
        );
        assert_eq!(inv_err(|i| i.pids[1] = 10), "pid 10 is listed twice");
        assert_eq!(
            inv_err(|i| i.root_pid = 11),
            "root pid 11 is not the first listed pid 10"
        );
    }

    #[test]
    fn task_rules() {
        assert_eq!(
            task_err(|t| t.pid = 12),
            "holds pid 12, but the file name says 10"
        );
        assert_eq!(task_err(|t| t.threads.clear()), "has no threads");
        assert_eq!(
            task_err(|t| t.threads.swap(0, 1)),
            "first thread 11 is not the thread-group leader 10"
        );
        assert_eq!(
            task_err(|t| t.threads[1].tid = 10),
            "tid 10 is listed twice"
        );
        assert_eq!(
            task_err(|t| t.threads[1].tid = -1),
            "tid -1 is outside 1..=4194304"
        );
        assert_eq!(
            task_err(|t| t.sigactions.pop().map(drop).unwrap()),
            "has 63 signal handlers, expected 64 (or none)"
        );
    }

    #[test]
    fn attribute_rules() {
        assert_eq!(
            task_err(|t| t.threads[0].sched.policy = 4),
            "thread 10 has scheduling policy 4"
        );
        assert_eq!(
            task_err(|t| t.threads[0].sched.nice = 20),
            "thread 10 has nice 20"
        );
        assert_eq!(
            task_err(|t| t.threads[1].sched.affinity.clear()),
            "thread 11 may run on no CPU"
        );
        assert_eq!(
            task_err(|t| t.threads[0].pdeathsig = 65),
            "thread 10 has parent-death signal 65"
        );
        assert_eq!(
            task_err(|t| t.oom_score_adj = 1001),
            "oom_score_adj 1001 is outside -1000..=1000"
        );
        assert_eq!(task_err(|t| t.attrs.dumpable = 3), "dumpable is 3");
        assert_eq!(
            task_err(|t| t.creds.securebits = 0x100),
            "securebits 0x100 has unknown bits"
        );
        assert_eq!(
            task_err(|t| t.creds.caps.effective = 1),
            "effective capabilities outside the permitted set"
        );
        assert_eq!(
            task_err(|t| t.creds.caps.ambient = 1),
            "ambient capabilities outside permitted and inheritable"
        );
    }

    #[test]
    fn timer_rules() {
        let dup = task_err(|t| t.timers.posix.push(t.timers.posix[0]));
        assert_eq!(dup, "POSIX timer 0 comes after timer 0");
        assert_eq!(
            task_err(|t| t.timers.posix[0].notify = 3),
            "POSIX timer 0 has notify 3"
        );
        assert_eq!(
            task_err(|t| t.timers.posix[0].signal = 0),
            "POSIX timer 0 sends signal 0"
        );
        let mut t = sample::task(10);
        t.timers.posix[0].notify = 1;
        t.timers.posix[0].signal = 0;
        task(&t, 10, path()).unwrap();
    }

    #[test]
    fn xsave_size_rules() {
        let too_small = task_err(|t| t.threads[1].xsave = vec![0; 575]);
        assert_eq!(
            too_small,
            "thread 11 has an xsave area of 575 bytes, outside 576..=1048576"
        );
        let too_big = task_err(|t| t.threads[0].xsave = vec![0; XSAVE_MAX + 1]);
        assert!(too_big.contains("1048577 bytes"));
        let mut t = sample::task(10);
        t.threads[0].xsave.clear();
        task(&t, 10, path()).unwrap();
    }

    #[test]
    fn shmem_object_rules() {
        let object = |offset, size| {
            let mut m = sample::mm();
            m.vmas[1].shared = true;
            m.shmem.push(crate::image::mm::ShmemRef {
                start: 0x60_0000,
                owner: None,
            });
            m.shmem_objects.push(crate::image::mm::ShmemObject {
                start: 0x60_0000,
                size,
                offset,
            });
            mm(&m, path()).map(|_| ())
        };
        object(0x1000, 0x5000).unwrap();
        let err = message(object(0x2000, 0x5000));
        assert_eq!(
            err,
            "shared memory object of 20480 bytes made by the mapping at 0x600000 (offset 0x2000) is impossible"
        );
        assert!(object(0x800, 0x5000).is_err(), "unaligned offset");
    }

    #[test]
    fn aio_ring_rules() {
        let ring = |head, events| {
            VmaKind::Aio(crate::image::mm::AioRing {
                nr_req: 62,
                nr: 127,
                head,
                tail: 0,
                events: vec![0; events],
            })
        };
        let mut m = sample::mm();
        m.vmas[0].kind = ring(3, 127 * 32);
        mm(&m, path()).unwrap();
        assert_eq!(
            mm_err(|m| m.vmas[0].kind = ring(127, 127 * 32)),
            "AIO ring 0x400000-0x402000 of 127 events (head 127, tail 0, 4064 bytes of events) is impossible"
        );
        assert!(mm_err(|m| m.vmas[0].kind = ring(0, 32)).starts_with("AIO ring"));
    }

    #[test]
    fn vma_rules() {
        assert_eq!(
            mm_err(|m| m.vmas[0].start += 1),
            "mapping 0x400001-0x402000 is not page aligned"
        );
        assert_eq!(
            mm_err(|m| m.vmas[0].end = 0x40_0000),
            "mapping 0x400000-0x400000 is empty or reversed"
        );
        let high = mm_err(|m| m.vmas[2].end = USER_END + PAGE_SIZE);
        assert_eq!(
            high,
            "mapping 0x7ffd00000000-0x800000001000 extends beyond user space"
        );
        let unsorted = mm_err(|m| m.vmas.swap(0, 1));
        assert_eq!(
            unsorted,
            "mapping 0x400000-0x402000 overlaps or precedes 0x600000-0x604000"
        );
        let overlap = mm_err(|m| m.vmas[0].end = 0x60_1000);
        assert_eq!(
            overlap,
            "mapping 0x600000-0x604000 overlaps or precedes 0x400000-0x601000"
        );
    }

    #[test]
    fn page_run_rules() {
        let run = |addr, pages| PageRun {
            addr,
            pages,
            stripe: 0,
        };
        assert_eq!(
            mm_err(|m| m.page_runs[0] = run(0x60_0010, 1)),
            "page run 0x600010+1 is not page aligned"
        );
        assert_eq!(
            mm_err(|m| m.page_runs[1].stripe = MAX_STRIPES),
            "page run 0x7ffd00000000+1 is in pages file 4, beyond the last one (3)"
        );
        assert_eq!(
            mm_err(|m| m.page_runs[0] = run(0x60_0000, 0)),
            "page run 0x600000+0 is empty"
        );
        let outside = mm_err(|m| m.page_runs[0] = run(0x1000, 3));
        assert_eq!(outside, "page run 0x1000+3 lies outside every mapping");
        let overhang = mm_err(|m| m.page_runs[0] = run(0x60_2000, 3));
        assert_eq!(overhang, "page run 0x602000+3 lies outside every mapping");
        let huge = mm_err(|m| m.page_runs[0] = run(0x60_0000, u64::MAX));
        assert!(huge.ends_with("lies outside every mapping"));
        let unsorted = mm_err(|m| m.page_runs.swap(0, 1));
        assert_eq!(
            unsorted,
            "page run 0x600000+2 overlaps or precedes the previous run"
        );
        let overlap = mm_err(|m| m.page_runs.insert(1, run(0x60_1000, 1)));
        assert_eq!(
            overlap,
            "page run 0x601000+1 overlaps or precedes the previous run"
        );
    }

    #[test]
    fn private_unlinked_rules() {
        use crate::image::mm::ShmemRef;
        let at = 0x7fff_0000_0000;
        let private = |ghost: Option<u32>| {
            let kind = VmaKind::PrivateUnlinked {
                name: "/tmp/gone".into(),
                offset: 0,
                ghost,
            };
            move |m: &mut MmImage| m.vmas.push(sample::vma(at, at + 0x1000, kind))
        };
        let no_object =
            "mapping 0x7fff00000000-0x7fff00001000 of an unlinked object is not private, or has no object or two";
        assert_eq!(mm_err(private(None)), no_object);
        let own = |m: &mut MmImage| {
            m.shmem.push(ShmemRef {
                start: at,
                owner: None,
            })
        };
        let mut m = sample::mm();
        private(Some(0))(&mut m);
        own(&mut m);
        mm(&m, path()).unwrap();
        assert_eq!(
            mm_err(|m| {
                private(None)(m);
                own(m);
            }),
            no_object
        );
        let hugetlb = VmaKind::Hugetlb {
            shift: 21,
            memfd: None,
        };
        let mut shared = sample::vma(at, at + 0x20_0000, hugetlb);
        shared.shared = true;
        assert_eq!(
            mm_err(|m| m.vmas.push(shared)),
            "mapping 0x7fff00000000-0x7fff00200000 of an unlinked object is not shared memory"
        );
    }

    #[test]
    fn guard_rules() {
        let guard = |start, end| Guard { start, end };
        assert_eq!(
            mm_err(|m| m.guards[0] = guard(0x60_3000, 0x60_3000)),
            "guard region 0x603000-0x603000 is empty or not page aligned"
        );
        assert_eq!(
            mm_err(|m| m.guards[0] = guard(0x60_3000, 0x60_5000)),
            "guard region 0x603000-0x605000 lies outside every mapping"
        );
        assert_eq!(
            mm_err(|m| m.guards[0] = guard(0x60_1000, 0x60_3000)),
            "guard region 0x601000-0x603000 overlaps saved pages"
        );
        assert_eq!(
            mm_err(|m| m.guards.push(guard(0x40_0000, 0x40_1000))),
            "guard region 0x400000-0x401000 overlaps or precedes the previous one"
        );
    }

    #[test]
    fn seccomp_rules() {
        assert_eq!(
            task_err(|t| t.threads[1].seccomp.filter = Some(5)),
            "thread 11 has seccomp mode 2 with filter Some(5) of 2"
        );
        assert_eq!(
            task_err(|t| t.seccomp[0].prev = Some(1)),
            "seccomp filter 0 follows a later filter"
        );
    }

    #[test]
    fn run_spanning_two_adjacent_mappings_is_refused() {
        let mut m = sample::mm();
        m.vmas
            .insert(2, sample::vma(0x60_4000, 0x60_5000, VmaKind::Anon));
        m.page_runs[0] = PageRun {
            addr: 0x60_3000,
            pages: 2,
            stripe: 0,
        };
        assert!(message(mm(&m, path())).ends_with("lies outside every mapping"));
    }

    #[test]
    fn mm_field_rules() {
        assert_eq!(
            mm_err(|m| m.fields.start_code = 0x50_0000),
            "start_code 0x500000 is above end_code 0x402000"
        );
        let f = |set: fn(&mut MmFields)| mm_err(|m| set(&mut m.fields));
        assert_eq!(
            f(|f| f.start_data = 1),
            "start_data 0x1 is above end_data 0x0"
        );
        assert_eq!(f(|f| f.start_brk = 1), "start_brk 0x1 is above brk 0x0");
        assert_eq!(f(|f| f.arg_start = 1), "arg_start 0x1 is above arg_end 0x0");
        assert_eq!(f(|f| f.env_start = 1), "env_start 0x1 is above env_end 0x0");
    }

    #[test]
    fn auxv_rules() {
        assert_eq!(
            mm_err(|m| m.auxv.push(0)),
            "auxv has an odd number of words (5)"
        );
        assert_eq!(
            mm_err(|m| m.auxv = vec![0, 0, 6, 4096]),
            "auxv does not end with AT_NULL (0, 0)"
        );
        assert_eq!(
            mm_err(|m| m.auxv.clear()),
            "auxv does not end with AT_NULL (0, 0)"
        );
    }

    #[test]
    fn fd_rules() {
        assert_eq!(files_err(|f| f.fds[0].fd = -1), "fd -1 is negative");
        assert_eq!(files_err(|f| f.fds[1].fd = 0), "fd 0 is listed twice");
        assert_eq!(files_err(|f| f.fds.swap(1, 2)), "fd 1 comes after fd 3");
    }

    #[test]
    fn fd_references() {
        let dangling = |fd: i32| format!("fd {fd} refers to an fd that is not in the table");
        assert_eq!(files_err(|f| f.fds.retain(|e| e.fd != 5)), dangling(4));
        assert_eq!(
            files_err(|f| f.fds[4].kind = FdKind::PipePeer { of: 3 }),
            dangling(4)
        );
        let unmoved = |f: &mut FilesImage| {
            f.fds.retain(|e| e.fd != 7);
            f.epoll_moved.clear();
        };
        assert_eq!(files_err(unmoved), dangling(8));
        assert_eq!(
            files_err(|f| f.locks[0].fd = 9),
            "a lock is held through fd 9, which is not in the table"
        );
    }

    /// `inherited_fds` over the split sample (pids 1 and 2) after `f` changed it.
    fn split_err(f: impl FnOnce(&mut FilesImage, &mut FilesImage)) -> String {
        let (mut a, mut b) = sample::split_files(1);
        f(&mut a, &mut b);
        files(&a, path()).and_then(|()| files(&b, path())).unwrap();
        message(inherited_fds(&[(1, &a), (2, &b)], path()))
    }

    fn spare_err(f: impl FnOnce(&mut FilesImage)) -> String {
        let (mut a, _) = sample::split_files(1);
        f(&mut a);
        message(files(&a, path()))
    }

    #[test]
    fn split_objects_are_valid() {
        let (a, b) = sample::split_files(1);
        files(&a, path()).unwrap();
        files(&b, path()).unwrap();
        inherited_fds(&[(1, &a), (2, &b)], path()).unwrap();
    }

    #[test]
    fn split_object_rules() {
        assert_eq!(
            split_err(|_, b| b.fds.retain(|e| e.fd != 3)),
            "spare fd 10 of pid 1 is taken by no later process"
        );
        let wrong = |fd: i32, to: i32| {
            format!("fd {fd} of pid 2 refers to fd {to} of pid 1, which is not an earlier original fd of a kind it can refer to")
        };
        // A socket cannot be opened again (a pipe can).
        let reopen_socket = FdKind::Reopen {
            pid: 1,
            fd: 4,
            pos: 0,
        };
        assert_eq!(split_err(|_, b| b.fds[3].kind = reopen_socket), wrong(4, 4));
        let inherit_missing = FdKind::Inherited { pid: 1, fd: 11 };
        assert_eq!(
            split_err(|_, b| b.fds[2].kind = inherit_missing),
            wrong(3, 11)
        );
        // The spares' taker listed before their creator.
        let (a, b) = sample::split_files(1);
        assert!(inherited_fds(&[(2, &b), (1, &a)], path()).is_err());
        // A reopen of a later fd of its own process.
        let (mut a, _) = sample::split_files(1);
        a.fds[1].kind = FdKind::Reopen {
            pid: 1,
            fd: 5,
            pos: 0,
        };
        assert!(message(inherited_fds(&[(1, &a)], path())).contains("fd 4 of pid 1 refers to fd 5"));
    }

    #[test]
    fn spare_rules() {
        assert_eq!(
            spare_err(|a| a.spares = vec![9, 9, 10]),
            "spare fd 9 is listed twice"
        );
        assert_eq!(
            spare_err(|a| a.spares.push(11)),
            "spare fd 11 is not in the table"
        );
        assert_eq!(
            spare_err(|a| a.spares = vec![4, 9, 10]),
            "spare fd 4 is below an fd the process held"
        );
        assert_eq!(
            spare_err(|a| a.fds[4].kind = FdKind::Dup { of: 4 }),
            "spare fd 10 refers to another fd"
        );
    }

    #[test]
    fn moved_epoll_registrations_and_hashes_rules() {
        let moved = "moved registration 7 (offset 1) of epoll fd 8 is not a registration of the table or is listed twice";
        assert_eq!(files_err(|f| f.epoll_moved[0].toff = 1), moved);
        let mut two = sample::files();
        two.epoll_moved.push(two.epoll_moved[0].clone());
        assert!(message(files(&two, path())).contains("listed twice"));
        assert_eq!(
            files_err(|f| f.hashes[0].fd = 7),
            "content hash of fd 7 names no file of the table or is listed twice"
        );
        let mut mode = sample::files();
        mode.modes.push((3, 0o10642));
        let bad = "mode 0o10642 of fd 3 names no fd of the table, is no permission bits or is listed twice";
        assert_eq!(message(files(&mode, path())), bad);
        // The target fd may be missing from the table when the registration is moved.
        let mut gone = sample::files();
        gone.fds.retain(|e| e.fd != 7);
        if let FdKind::Epoll(ep) = &mut gone.fds.last_mut().expect("epoll").kind {
            ep.targets[0].fd = 12;
        }
        gone.epoll_moved[0].tfd = 12;
        files(&gone, path()).unwrap();
        // The file must be in this or an earlier process.
        let f = sample::files();
        inherited_fds(&[(42, &f)], path()).unwrap();
        let later = message(inherited_fds(&[(41, &f)], path()));
        assert!(later.contains("is said to be fd 3 of pid 42"), "{later}");
    }

    fn flying_err(f: impl FnOnce(&mut FilesImage)) -> String {
        let mut files_image = sample::in_flight_files();
        f(&mut files_image);
        message(files(&files_image, path()))
    }

    #[test]
    fn files_in_flight_are_valid() {
        files(&sample::in_flight_files(), path()).unwrap();
    }

    #[test]
    fn files_in_flight_rules() {
        let m0 = "message 0 of socket:[100] in flight";
        assert_eq!(
            flying_err(|f| f.in_flight[1].message = 2),
            "message 2 of socket:[100] in flight rides on no queued message"
        );
        assert_eq!(
            flying_err(|f| f.in_flight[0].socket = 7),
            "message 0 of socket:[7] in flight goes to no unix socket of the table"
        );
        assert_eq!(
            flying_err(|f| f.in_flight[1].message = 0),
            "message 0 of socket:[100] in flight is listed twice"
        );
        assert_eq!(
            flying_err(|f| f.in_flight[1].fds = vec![8, 6]),
            "message 1 of socket:[100] in flight names fd 6, which is sent twice"
        );
        assert_eq!(
            flying_err(|f| f.in_flight[1].fds = vec![8, 4]),
            "message 1 of socket:[100] in flight names fd 4, which is below an fd the process held"
        );
        assert_eq!(
            flying_err(|f| f.in_flight[0].fds.push(9)),
            format!("{m0} names fd 9, which is not in the table")
        );
        assert_eq!(
            flying_err(|f| f.in_flight[0].fds.clear()),
            format!("{m0} has 0 files")
        );
    }
}
