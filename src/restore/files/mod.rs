//! The fd table, cwd/root and umask, rebuilt inside the child. Each kind of fd is
//! recreated by the twin of its dump module (`dump/files/<kind>.rs`):
//!
//! - [`path`]: regular files, directories, `O_PATH` fds, ghost files of older images and
//!   link remaps;
//! - [`ghost`]: files deleted while in use (`ghosts.img`), recreated for the whole
//!   restore;
//! - [`chardev`]: character devices and the shell job's terminal;
//! - [`pipe`]: pipes and FIFOs with their bytes;
//! - [`eventfd`], [`timerfd`], [`signalfd`], [`epoll`], [`inotify`], [`fanotify`],
//!   [`memfd`], [`pidfd`];
//! - [`locks`]: file locks and leases, taken once every fd exists;
//! - [`fown`]: owners and signals of the descriptions, set after Threads (own stage);
//! - `unix`, `inet`: sockets, built before the table loop at temporary numbers (`prep`:
//!   pairs, connections and queued data need every end at once) and `dup3`ed into place
//!   by it (a pair of two unnamed sockets of the table is made in the fd batch instead,
//!   `unix_pair`);
//! - `packet`, `netlink`: packet and netlink sockets, made in the table loop;
//! - `tun`: `/dev/net/tun` files, attached to their devices again;
//! - [`pty`]: pseudo-terminal masters and slaves, taken from stasis, which built every
//!   pair before the tree (`restore/tty.rs`).
//!
//! Ordering requirements: runs after memory is filled (the pages fd is gone) and installs
//! fds in increasing order, so every fd an entry refers to (`Dup { of }`, `PipePeer`)
//! exists already; objects are created wherever the kernel puts them and then moved to
//! their number ([`Install::place`]), so a lower free number handed out meanwhile does no
//! harm. Epoll instances (and their dups) come last, once every target exists, an epoll
//! watching an epoll after that one. Locks come after every fd. Spare fds (objects a
//! later process takes, `FilesImage::spares`) are built like any other and closed by
//! [`close_spares`] once every process of the tree has its fds.

mod batched;
mod chardev;
pub use chardev::terminal_in_child;
mod epoll;
mod eventfd;
mod fanotify;
mod fown;
pub use fown::restore as restore_owners;
mod ghost;
pub use ghost::Ghosts;
mod homes;
mod inet;
mod inotify;
mod locks;
mod memfd;
mod mqueue;
mod netlink;
mod ns;
mod packet;
pub use packet::map_rings as map_packet_rings;
mod path;
mod pidfd;
mod pipe;
mod prep;
pub mod pty;
mod signalfd;
mod sockopts;
mod tcp_replay;
mod timerfd;
mod tun;
mod unix;
mod unix_cross;
mod unix_ids;
mod unix_pair;
mod unix_peercred;
mod unix_senders;
mod unix_unlinked;

use super::child::Child;
use super::staged::Staged;
use super::RestoreError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::task::TaskImage;

const CLOSE_RANGE_ALL: u64 = u32::MAX as u64;
/// `__O_TMPFILE`: `O_TMPFILE` without the `O_DIRECTORY` it includes.
const O_TMPFILE_ONLY: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;

/// What the kind modules get to build one fd.
pub struct Install<'a> {
    pub child: &'a Child,
    /// The whole table (moved epoll registrations).
    pub files: &'a FilesImage,
    pub entry: &'a FdEntry,
    /// The restorer's terminal duplicated in the child, when the table holds one.
    pub tty: Option<u64>,
    /// Sockets built ahead of the loop.
    pub prepared: &'a prep::Prepared,
    /// The image's ghost files, recreated.
    pub ghosts: &'a Ghosts<'a>,
    /// Stasis's fds on the pty pairs it built, and the restorer's fds given in place of
    /// fds on objects outside the tree (`given_fds`).
    pub ptys: &'a pty::PtyFds,
    /// The unix socket pairs rebuilt in the fd batch.
    pub pairs: &'a unix_pair::Pairs<'a>,
}

impl Install<'_> {
    /// `O_CLOEXEC` if the fd had `FD_CLOEXEC`.
    pub fn cloexec(&self) -> i32 {
        if self.entry.cloexec {
            libc::O_CLOEXEC
        } else {
            0
        }
    }

    /// Open flags that recreate the file status flags without side effects on the file.
    /// A file made by `open(O_TMPFILE)` keeps that flag (with `O_DIRECTORY`, which it
    /// includes) in its status flags; it is how the file was created, not how to open it.
    pub fn reopen_flags(&self) -> i32 {
        let flags = self.tmpfile_flags();
        if flags & O_TMPFILE_ONLY != 0 {
            return flags & !libc::O_TMPFILE;
        }
        flags
    }

    /// [`Install::reopen_flags`] with `O_TMPFILE` kept: those that make such a file anew.
    pub fn tmpfile_flags(&self) -> i32 {
        self.entry.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC)
            | libc::O_NOCTTY
            | self.cloexec()
    }

    /// The entry's fd number.
    pub fn fd(&self) -> u64 {
        self.entry.fd as u64
    }

    /// Moves the child's fd `got` to the entry's number (with its `FD_CLOEXEC`).
    pub fn place(&self, got: u64) -> Result<(), RestoreError> {
        let want = self.fd();
        if got != want {
            let remote = self.child.remote();
            remote.call("dup3", libc::SYS_dup3, &[got, want, self.cloexec() as u64])?;
            remote.call("close", libc::SYS_close, &[got])?;
        }
        Ok(())
    }

    /// A helper fd of the child moved above the entry's number if it sits on it (so
    /// placing the entry's object cannot close it); returns where it is now.
    pub fn aside(&self, fd: u64) -> Result<u64, RestoreError> {
        if fd != self.fd() {
            return Ok(fd);
        }
        let args = [fd, libc::F_DUPFD_CLOEXEC as u64, self.fd() + 1];
        let moved = self.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &args)?;
        self.call("close", libc::SYS_close, &[fd])?;
        Ok(moved)
    }

    /// Sets `FD_CLOEXEC` of the entry's fd as saved (for objects created with a fixed one).
    pub fn set_cloexec(&self) -> Result<(), RestoreError> {
        let flag = u64::from(self.entry.cloexec);
        let args = [self.fd(), libc::F_SETFD as u64, flag];
        self.child
            .remote()
            .call("fcntl(F_SETFD)", libc::SYS_fcntl, &args)?;
        Ok(())
    }

    /// Sets the entry's file status flags (`O_NONBLOCK`, `O_DIRECT`, `O_APPEND`...) on
    /// the child's fd `fd`.
    pub fn set_status_flags(&self, fd: u64) -> Result<(), RestoreError> {
        let args = [fd, libc::F_SETFL as u64, self.entry.flags as u64];
        self.child
            .remote()
            .call("fcntl(F_SETFL)", libc::SYS_fcntl, &args)?;
        Ok(())
    }

    /// Runs a syscall in the child, naming the fd in the error.
    pub fn call(&self, name: &'static str, nr: i64, args: &[u64]) -> Result<u64, RestoreError> {
        self.child
            .remote()
            .call(name, nr, args)
            .map_err(|e| RestoreError::Unsupported {
                what: format!("fd {} of pid {}: {e}", self.entry.fd, self.child.pid()),
            })
    }

    /// Duplicates the child's fd `of` at the entry's number (one open file description).
    pub fn dup_of(&self, of: u64) -> Result<(), RestoreError> {
        let args = [of, self.entry.fd as u64, self.cloexec() as u64];
        self.child.remote().call("dup3", libc::SYS_dup3, &args)?;
        Ok(())
    }
}

/// Replaces the inherited fds with the saved table. `tcp_close`: established TCP
/// connections come back closed. `later`: the processes whose stages have not run yet,
/// where sockets their credentials name are made (`unix_cross`).
///
/// A table of [`batched`] kinds only is added to the pending batch whole (its fd numbers
/// predicted from an empty table, after the `close_range`); any other runs the pending
/// batch first and last, and between the single calls of the other kinds.
pub fn restore_fds(
    s: &mut Staged,
    task: &crate::image::task::TaskImage,
    files: &FilesImage,
    tcp_close: bool,
    (ghosts, ptys): (&Ghosts, &pty::PtyFds),
    later: &[&Child],
) -> Result<(), RestoreError> {
    // Sockets connected with other ids than the restorer's are made one call at a time.
    let ids = unix_ids::of(task);
    let pairs = match ids {
        None => unix_pair::Pairs::of(files, s.child().pid()),
        Some(_) => unix_pair::Pairs::default(),
    };
    let plain = batched_only(files, &pairs, s.child().pid());
    if !plain {
        s.flush()?;
    }
    let child = s.child();
    let top = files.fds.iter().map(|f| f.fd).max().unwrap_or(0) as u64 + 1;
    let has_tty = files.fds.iter().any(|f| matches!(f.kind, FdKind::Tty(_)));
    let tty = if has_tty {
        Some(chardev::terminal_in_child(child, top)?)
    } else {
        None
    };
    // Drop everything inherited from stasis, keeping only the terminal duplicate.
    let ranges = match tty {
        Some(t) => vec![(0, t - 1), (t + 1, CLOSE_RANGE_ALL)],
        None => vec![(0, CLOSE_RANGE_ALL)],
    };
    for (first, last) in ranges {
        s.batch()
            .call("close_range", libc::SYS_close_range, &[first, last, 0]);
    }
    if !plain {
        s.flush()?;
    }
    let mut prepared = prep::Prepared::new(tty.map_or(top, |t| t + 1));
    let sockets = unix::prepare(child, (files, later), &pairs, ids, &mut prepared)?;
    inet::prepare(child, files, &mut prepared, tcp_close)?;
    let known = plain.then(std::collections::BTreeSet::new);
    let mut batcher = batched::Batcher::new(s, known);
    for entry in install_order(files, child.pid()) {
        let at = Install {
            child,
            files,
            entry,
            tty,
            prepared: &prepared,
            ghosts,
            ptys,
            pairs: &pairs,
        };
        if given(&at) {
            batcher.flush()?;
            pty::restore(&at)?;
            batcher.forget();
            continue;
        }
        if batched::takes(entry, &pairs, child.pid()) {
            batcher.add(&at)?;
            continue;
        }
        batcher.flush()?;
        install(&at)?;
        batcher.forget();
    }
    if plain {
        return Ok(());
    }
    batcher.flush()?;
    unix::finish(child, files, sockets, &mut prepared)?;
    prepared.close_all(child)?;
    if let Some(t) = tty {
        child.remote().call("close", libc::SYS_close, &[t])?;
    }
    locks::restore(child, &files.locks)
}

/// Whether the table is only [`batched`] kinds, with no lock and no fd in flight: then
/// no call but the pending batch's is needed (no terminal, no socket, no pty).
fn batched_only(files: &FilesImage, pairs: &unix_pair::Pairs, pid: i32) -> bool {
    files.fds.iter().all(|e| batched::takes(e, pairs, pid))
        && files.locks.is_empty()
        && files.in_flight.is_empty()
}

/// Fd order, except that epoll instances and their dups (and inotify instances, and
/// theirs: see [`is_inotify`]) come after every other fd, each
/// epoll after the epolls it watches (a cycle cannot be built by epoll_ctl, so none is
/// in an image) — for a moved registration, the fd of this process holding the file.
fn install_order(files: &FilesImage, pid: i32) -> Vec<&FdEntry> {
    let fds = &files.fds[..];
    let late = |e: &FdEntry, done: &[i32]| match &e.kind {
        FdKind::Epoll(ep) => Some(ep.numbered().all(|(t, toff)| {
            let fd = match files.epoll_moved(e.fd, t.fd, toff) {
                Some(m) if m.pid != pid => return true,
                Some(m) => m.fd,
                None => t.fd,
            };
            let target = fds.iter().find(|x| x.fd == fd);
            !target.is_some_and(|x| is_epoll(fds, x)) || done.contains(&fd)
        })),
        FdKind::Dup { of } if fds.iter().any(|x| x.fd == *of && is_epoll(fds, x)) => {
            Some(done.contains(of))
        }
        FdKind::Inotify(_) => Some(true),
        FdKind::Dup { of } if fds.iter().any(|x| x.fd == *of && is_inotify(x)) => {
            Some(done.contains(of))
        }
        _ => None,
    };
    let mut order: Vec<&FdEntry> = fds.iter().filter(|e| late(e, &[]).is_none()).collect();
    let mut done: Vec<i32> = Vec::new();
    let mut left: Vec<&FdEntry> = fds.iter().filter(|e| late(e, &[]).is_some()).collect();
    while !left.is_empty() {
        let (ready, rest): (Vec<&FdEntry>, Vec<&FdEntry>) =
            left.iter().partition(|e| late(e, &done) == Some(true));
        if ready.is_empty() {
            order.extend(rest);
            break;
        }
        done.extend(ready.iter().map(|e| e.fd));
        order.extend(ready);
        left = rest;
    }
    order
}

/// Inotify instances are built after the other fds, like epolls: a watch may be added
/// through an fd of the process (a deleted file it holds open), and files the restore
/// creates (deleted files, made again and unlinked) must raise no event in them.
fn is_inotify(e: &FdEntry) -> bool {
    matches!(e.kind, FdKind::Inotify(_))
}

fn is_epoll(fds: &[FdEntry], e: &FdEntry) -> bool {
    match &e.kind {
        FdKind::Epoll(_) => true,
        FdKind::Dup { of } => fds
            .iter()
            .any(|x| x.fd == *of && matches!(x.kind, FdKind::Epoll(_))),
        _ => false,
    }
}

/// Dispatches by kind.
fn install(at: &Install) -> Result<(), RestoreError> {
    match &at.entry.kind {
        FdKind::Path(p) => path::restore(at, p),
        FdKind::OPath(p) => path::restore_opath(at, p),
        FdKind::Ghost(g) => path::restore_ghost(at, g),
        FdKind::Remap(r) => path::restore_remap(at, r),
        FdKind::CharDev(c) => chardev::restore(at, c),
        FdKind::Tty(_) => chardev::restore_tty(at),
        FdKind::ControllingTty => chardev::restore_controlling(at),
        FdKind::PtyMaster(_) | FdKind::PtySlave { .. } => pty::restore(at),
        FdKind::Dup { of } => at.dup_of(*of as u64),
        FdKind::Inherited { pid, fd } => inherit(at, *pid, *fd),
        FdKind::Reopen { pid, fd, pos } => reopen(at, *pid, *fd, *pos),
        FdKind::Mapped(m) => {
            let range = format!("map_files/{:x}-{:x}", m.start, m.end);
            let path = crate::restore::ns::pid::proc_path(at.child.pid(), m.pid, &range);
            open_at(at, &path, m.pos)?;
            memfd::add_seals(at, m.seals)
        }
        FdKind::Pipe(p) => pipe::restore(at, p),
        FdKind::PipePeer { .. } => pipe::restore_peer(at),
        FdKind::Fifo(f) => pipe::restore_fifo(at, f),
        FdKind::EventFd(e) => eventfd::restore(at, e),
        FdKind::TimerFd(t) => timerfd::restore(at, t),
        FdKind::SignalFd(s) => signalfd::restore(at, s),
        FdKind::Epoll(e) => epoll::restore(at, e),
        FdKind::Inotify(i) => inotify::restore(at, i),
        FdKind::Fanotify(f) => fanotify::restore(at, f),
        FdKind::Deleted(d) => ghost::restore(at, d),
        FdKind::Memfd(m) => memfd::restore(at, m),
        FdKind::PidFd(p) => pidfd::restore(at, p),
        FdKind::DeadPidFd(p) => pidfd::restore_dead(at, p),
        FdKind::Namespace(n) => ns::restore(at, n),
        FdKind::Packet(p) => packet::restore(at, p),
        FdKind::Netlink(n) => netlink::restore(at, n),
        FdKind::Mqueue(q) => mqueue::restore(at, q),
        FdKind::Tun(t) => tun::restore(at, t),
        FdKind::Unix(_) | FdKind::Inet(_) => match at.prepared.get(at.entry.fd) {
            Some(t) => at.dup_of(t),
            None => Err(RestoreError::Unsupported {
                what: format!(
                    "fd {} of pid {} was not prepared",
                    at.entry.fd,
                    at.child.pid()
                ),
            }),
        },
    }
}

/// Whether the entry is a pipe end given by the restorer (`inherit_fds`), taken as it
/// is: its flags and buffered bytes are the restorer's pipe's.
fn given(at: &Install) -> bool {
    matches!(at.entry.kind, FdKind::Pipe(_)) && at.ptys.contains_key(&(at.child.pid(), at.entry.fd))
}

/// The restorer's fds (`inherit_fds`: key, fd) that replace fds of the image, by
/// `(pid, fd)`: every pipe end whose other end no process held and whose dump-time
/// link text (`pipe:[INO]`) is a key. Their `Dup`s and inheritances follow them.
pub fn given_fds(image: &crate::image::load::Image, inherit: &[(String, i32)]) -> pty::PtyFds {
    let mut out = pty::PtyFds::new();
    for p in &image.processes {
        for e in &p.files.fds {
            let FdKind::Pipe(pipe) = &e.kind else {
                continue;
            };
            let key = format!("pipe:[{}]", pipe.ino);
            if let Some((_, fd)) = inherit.iter().find(|(k, _)| *k == key) {
                if pipe.peer.is_none() {
                    out.insert((p.task.pid, e.fd), *fd);
                }
            }
        }
    }
    out
}

/// The same open file description as fd `fd` of the already restored process `owner`.
fn inherit(at: &Install, owner: i32, fd: i32) -> Result<(), RestoreError> {
    let got = take_from(at.child, owner, fd)?;
    at.place(got)?;
    if got == at.fd() {
        // pidfd_getfd always sets FD_CLOEXEC.
        at.set_cloexec()?;
    }
    Ok(())
}

/// A new open file description of the file behind fd `fd` of `owner` (this process or
/// an already restored one), opened through `/proc/OWNER/fd/FD` (OWNER as the child's
/// `/proc` names it) with the entry's flags.
fn reopen(at: &Install, owner: i32, fd: i32, pos: u64) -> Result<(), RestoreError> {
    let path = crate::restore::ns::pid::proc_path(at.child.pid(), owner, &format!("fd/{fd}"));
    open_at(at, &path, pos)
}

/// Opens `path` (a `/proc` link to the object) in the child with the entry's flags, as
/// the entry's fd, at `pos`. `O_NOFOLLOW` (python's `mkstemp` opens with it) is left
/// out: the link must be followed, and it was only a condition of the original open.
fn open_at(at: &Install, path: &str, pos: u64) -> Result<(), RestoreError> {
    let flags = at.reopen_flags() & !libc::O_NOFOLLOW;
    let got = crate::restore::mm::open_in(at.child, path, flags)?;
    at.place(got)?;
    seek(at, pos)
}

/// Closes the spare fds of a process, once every process of the tree took what it
/// needed from them (`FilesImage::spares`).
pub fn close_spares(child: &Child, files: &FilesImage) -> Result<(), RestoreError> {
    let remote = child.remote();
    let mut b = remote.batch();
    for &fd in &files.spares {
        b.call("close", libc::SYS_close, &[fd as u64]);
    }
    remote.run(&b)?;
    Ok(())
}

/// A copy, in the child, of fd `fd` of the already restored process `owner`: the same
/// open file description (`pidfd_open` + `pidfd_getfd`, Linux 5.6, run by the child,
/// which is still privileged here). Returns the new fd number.
pub fn take_from(child: &Child, owner: i32, fd: i32) -> Result<u64, RestoreError> {
    let seen = match crate::restore::ns::pid::view(child.pid(), owner) {
        0 => return crate::restore::ns::handover::take_across(child, owner, fd),
        seen => seen as u64,
    };
    let remote = child.remote();
    let pidfd = remote.call("pidfd_open", libc::SYS_pidfd_open, &[seen, 0])?;
    let got = remote.raw(libc::SYS_pidfd_getfd, &[pidfd, fd as u64, 0]);
    remote.call("close", libc::SYS_close, &[pidfd])?;
    let got = got?;
    if got < 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "pidfd_getfd of fd {fd} of pid {owner} into pid {}: {}",
                child.pid(),
                nix::errno::Errno::from_raw(-got as i32)
            ),
        });
    }
    Ok(got as u64)
}

/// Sets the file offset of the entry's fd.
pub fn seek(at: &Install, pos: u64) -> Result<(), RestoreError> {
    if pos != 0 {
        let args = [at.entry.fd as u64, pos, libc::SEEK_SET as u64];
        at.child.remote().call("lseek", libc::SYS_lseek, &args)?;
    }
    Ok(())
}

/// cwd (a removed one: its ghost), root and umask, added to the pending batch.
/// Ordering requirements: after every open by absolute path, and `chdir` before `chroot` (the cwd path is absolute in the
/// restorer's root); no earlier stage changes what the child inherited.
pub fn restore_fs(s: &mut Staged, task: &TaskImage, ghosts: &Ghosts) -> Result<(), RestoreError> {
    let ghost = ghosts.cwd_of(task.pid);
    if ghost.is_none() && fs_as_saved(task) {
        return Ok(());
    }
    if let Some(stand_in) = pidfd::stand_in_for_cwd(&task.cwd)? {
        // The cwd is the /proc directory of a process that has exited: that of a
        // stand-in, which then exits too. The stand-in is stasis's child, which a child
        // in a pid namespace of its own cannot see in its /proc: the directory is
        // opened by stasis and handed over.
        let dir = format!("/proc/{}", stand_in.pid());
        let own = std::fs::File::open(&dir).map_err(|e| RestoreError::Unsupported {
            what: format!("open {dir}, the stand-in for the cwd {}: {e}", task.cwd),
        })?;
        s.flush()?;
        let what = format!("{dir}, the stand-in for the cwd {}", task.cwd);
        let fd = crate::restore::ns::handover::give_own(s.child(), &own, &what)?;
        let b = s.batch();
        b.call("fchdir", libc::SYS_fchdir, &[fd]);
        b.call("close", libc::SYS_close, &[fd]);
        s.flush()?;
    } else {
        let b = s.batch();
        let cwd = match ghost {
            Some(path) => b.put_str(&path.to_string_lossy()),
            None => b.put_str(&task.cwd),
        };
        b.call("chdir", libc::SYS_chdir, &[cwd]);
    }
    let b = s.batch();
    if task.root != "/" {
        let root = b.put_str(&task.root);
        b.call("chroot", libc::SYS_chroot, &[root]);
    }
    b.call("umask", libc::SYS_umask, &[u64::from(task.umask)]);
    Ok(())
}

pub use path::remove_remap_links;
pub use pidfd::end_stand_ins;

/// Whether the child's cwd, root and umask (inherited from stasis, see
/// `restore/inherited.rs`) are the saved ones already: then nothing is injected.
fn fs_as_saved(task: &TaskImage) -> bool {
    let umask = super::inherited::status().ok().and_then(|s| s.umask);
    !super::mnt::cwd_moved()
        && super::inherited::cwd_and_root().is_some_and(|(c, r)| *c == task.cwd && *r == task.root)
        && umask == Some(task.umask)
}

/// Lifts the network lock of pid `pid` (if the dump left one) before it runs again, and
/// has each of its locked connections tell its peer it is back (`inet::probe`): CRIU
/// too lifts the lock before its sockets leave repair mode. A peer that is gone answers
/// with a reset, which the connection takes now, as it would have without the dump (at
/// its next retransmission, which a rebuilt connection schedules afresh). `lift`: the
/// dump's lock is where the tree now is (`restore/netlock.rs::in_place`). `whole`: the
/// lock of the tree's new network namespace was lifted just before, which held every
/// established connection of the namespace, its peer inside or not.
pub fn reopen_network(
    child: &Child,
    files: &FilesImage,
    pid: i32,
    lock: &crate::image::netlock::NetLockImage,
    lift: bool,
    whole: bool,
) -> Result<(), RestoreError> {
    let own = lock.pids.contains(&pid);
    if own && lift {
        crate::netlock::unlock(lock.mode, pid).map_err(|e| RestoreError::Unsupported {
            what: format!("lift the network lock of pid {pid}: {e}"),
        })?;
    }
    for e in &files.fds {
        let FdKind::Inet(s) = &e.kind else { continue };
        let held = match &s.state {
            crate::image::sock::InetState::Established(_) => whole,
            _ => false,
        };
        if held || (own && crate::image::netlock::is_locked(s)) {
            inet::probe(child, e.fd, s).map_err(RestoreError::at_fd(pid, e.fd))?;
        }
    }
    Ok(())
}
