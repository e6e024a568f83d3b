//! The fd table, cwd/root and umask. Each fd is looked at from `/proc/PID/fd` and
//! `/proc/PID/fdinfo` ([`OpenFd`]), fds sharing one open file description are recorded once
//! (the others become [`FdKind::Dup`]), and the rest is dispatched by kind to one module per
//! kind family, each the twin of `restore/files/<kind>.rs`. Kinds stasis cannot restore are
//! refused here, naming the fd, the pid and the kind.
//!
//! - [`path`]: regular files, directories, `O_PATH` fds and files unlinked while other
//!   links remain (`--link-remap`);
//! - [`ghost`]: files deleted while open, saved once for the tree (`ghosts.img`);
//! - [`chardev`]: character devices and terminals;
//! - [`pipe`]: pipes and FIFOs, with their buffered bytes;
//! - [`eventfd`], [`timerfd`], [`signalfd`], [`epoll`], [`inotify`], [`fanotify`],
//!   [`memfd`], [`pidfd`]; `ns`: files of the process's own namespaces; [`mqueue`]:
//!   POSIX message queue descriptors;
//! - [`locks`]: flock, POSIX and OFD locks and leases held through the fds;
//! - [`fown`]: the owner and signal of each open file description (`F_SETOWN_EX`);
//! - `sock`, `unix`, `inet`, `packet`, `netlink`: sockets (unix, TCP and UDP, ping and
//!   raw, packet, netlink); `pty`: pseudo-terminal pairs;
//! - [`inflight`]: files riding on queued unix messages (`SCM_RIGHTS`), walked as more
//!   fds of the table, reached through stasis's own copies.
//!
//! An object is created by the first fd that holds it; later fds of the same open file
//! description are [`FdKind::Dup`]s of it, and the other end of a pipe is a
//! [`FdKind::PipePeer`] of the end seen first. Across the processes of a tree, [`split`]
//! links what several tables hold once every table is known.

pub mod chardev;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fown;
pub mod ghost;
mod homes;
mod inet;
mod inflight;
pub mod inotify;
pub mod locks;
pub mod memfd;
pub mod mqueue;
mod netlink;
mod ns;
pub mod packet;
pub mod path;
pub mod pidfd;
pub mod pipe;
pub mod pty;
pub mod signalfd;
mod sock;
mod sockopts;
pub mod split;
pub mod timerfd;
pub mod tun;
mod unix;
pub mod unix_peercred;
mod unix_senders;

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;

use nix::sys::stat::FileStat;

use super::DumpError;
use crate::image::files::{FdEntry, FdKind, FileLock, FilesImage};
use crate::proc::{self, FdInfo};

pub use chardev::is_tty;
pub use inet::{addr_text, Held};
use sock::SockCtx;

/// What the fd code needs of the dump options.
#[derive(Clone, Debug, Default)]
pub struct FdOptions {
    pub shell_job: bool,
    /// A pty slave whose master is outside the tree is saved for a new master
    /// (`orphan_pty.rs`) instead of refused.
    pub orphan_pts_master: bool,
    /// Largest deleted-but-open file whose contents are saved (`--ghost-limit`).
    pub ghost_limit: u64,
    /// `--link-remap`: files whose name was unlinked are reached through a link made
    /// beside them instead of their contents (see `path.rs`).
    pub link_remap: bool,
    /// Save file locks (`--file-locks`); without it a held lock is refused.
    pub file_locks: bool,
    /// `--file-hash`: record the CRC-32 of every regular file held open.
    pub file_hash: bool,
    /// Every process of the image (a pidfd must refer to one of them).
    pub pids: Vec<i32>,
    /// `--tcp-established`: save established TCP connections with TCP_REPAIR.
    pub tcp_established: bool,
    /// `--tcp-close`: save established TCP connections as closed.
    pub tcp_close: bool,
    /// `--ext-unix-sk`: unix sockets connected outside are connected again at restore.
    pub ext_unix_sk: bool,
    /// `--skip-in-flight`: drop fds in flight and connections not yet accepted.
    pub skip_in_flight: bool,
    /// `--network-lock`: how connections to peers outside are held (`crate::netlock`).
    pub network_lock: crate::netlock::LockMode,
    /// The processes holding sockets of a network namespace made inside the tree, each
    /// with the makers of the namespaces its sockets are of, and each socket's namespace
    /// not the root's (`dump/ns/net_join.rs`).
    pub socket_netns: crate::dump::ns::net_join::SocketSpaces,
    /// Socket inodes in the fd tables of `pids`, read when first needed.
    pub tree_sockets: std::cell::OnceCell<std::collections::HashSet<u64>>,
    /// Every fd of the tree by file, read when a file in flight is first identified.
    pub tree_files: inflight::TreeFiles,
    /// The files of the tree deleted while open, each once (`ghosts.img`).
    pub ghosts: std::cell::RefCell<ghost::Table>,
    /// Where the tree holds each pty, read when a pty is first met.
    pub tree_ptys: OnceCell<pty::TreePtys>,
    /// The device each device path names (`chardev.rs`), each path looked at once per
    /// dump (a thousand fds on /dev/null were a thousand `stat`s).
    pub device_nodes:
        std::cell::RefCell<std::collections::HashMap<std::path::PathBuf, Option<u64>>>,
    /// The tun devices of the tree's network namespaces (`dump/ns/tun.rs`).
    pub tun_devices: crate::dump::ns::tun::Devices,
    /// The files of the tree attached to them, as dumped so far (`tun.rs`).
    pub tun_files: std::cell::RefCell<Vec<tun::Seen>>,
}

impl FdOptions {
    /// Where the processes of the tree hold pty masters and slaves (read once).
    pub fn tree_ptys(&self) -> &pty::TreePtys {
        self.tree_ptys
            .get_or_init(|| pty::TreePtys::read(&self.pids))
    }

    /// Whether a process of the tree holds socket `ino` in its fd table (read once, when
    /// a socket is first found connected outside its own process).
    pub fn tree_holds_socket(&self, ino: u64) -> bool {
        let read = || {
            let fds = |pid: i32| {
                proc::fds(pid)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |fd| (pid, fd))
            };
            self.pids
                .iter()
                .flat_map(|&pid| fds(pid))
                .filter_map(|(pid, fd)| proc::link(pid, &format!("fd/{fd}")).ok())
                .filter_map(|link| sock::socket_inode(&link.to_string_lossy()))
                .collect()
        };
        self.tree_sockets.get_or_init(read).contains(&ino)
    }
}

/// What earlier fds of the table created, for later fds that refer to it.
#[derive(Default)]
pub struct Walk {
    /// Per [`Description`] class, the fds that created an open file description of it
    /// (with where each is reached, see [`OpenFd::reach`]), in `kcmp` order (for dedup
    /// by binary search).
    created: HashMap<Description, Vec<Created>>,
    /// Pipe inode → the fd that creates the pipe, its end, and the fd holding the other
    /// end.
    pub pipes: HashMap<u64, (i32, crate::image::files::PipeEnd, Option<i32>)>,
    /// FIFO and memfd inodes already seen (their data is saved once).
    pub inodes: HashMap<u64, i32>,
    /// Files linked for `--link-remap`, by `(st_dev, st_ino)` and the fd's mount: their
    /// link and whether it is a copy (one link per file and mount, whichever fds open it:
    /// a link is reached only through the mount it was made on).
    pub remaps: HashMap<((u64, u64), i32), (crate::image::mm::FileId, bool)>,
}

/// An fd that created an open file description: its number in the table, and the
/// `(pid, fd)` through which it is reached.
type Created = (i32, (i32, i32));

/// What every fd of one open file description has in common, known without a `kcmp`:
/// the object (its inode, or for a file without a path its link text, which names its
/// inode: `pipe:[123]`, `socket:[45]`, `anon_inode:[eventfd]`), and the flags the
/// description keeps from its open (`O_ACCMODE`, `O_PATH`), which no `fcntl` changes.
/// Fds of different classes never share a description: the two ends of a pipe need no
/// `kcmp` to tell apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Description {
    Inode(u64, u64, i32),
    Named(String, i32),
}

/// One open fd of the target, as seen from outside.
pub struct OpenFd {
    pub pid: i32,
    pub fd: i32,
    /// The `/proc/PID/fd/N` link text (`/path`, `pipe:[123]`, `anon_inode:[eventfd]`...).
    pub target: String,
    pub info: FdInfo,
    /// The fd table through which `reach()` is looked at.
    dir: Rc<proc::FdDir>,
    /// `stat` of the open file itself (through the magic link), taken when first asked:
    /// pipes, sockets and anonymous inodes are told apart by their link text alone.
    meta: OnceCell<FileStat>,
    /// Set for a file in flight: `fd` is then its number in the table, above every fd
    /// the process holds, and the file is reached through stasis's copy.
    pub flying: Option<inflight::Flying>,
}

impl OpenFd {
    /// Fd `fd` of the process whose fd table `dir` is.
    pub fn inspect(dir: &Rc<proc::FdDir>, fd: i32) -> Result<OpenFd, DumpError> {
        let (info, target) = read_fd(dir, fd)?;
        Ok(OpenFd::new(dir, fd, info, target))
    }

    /// Fds `fds` of the process whose fd table `dir` is, read in two threads when there
    /// are many (each is an open, a read and a readlink in `/proc`); an error is the
    /// first fd's that failed.
    pub fn inspect_all(dir: &Rc<proc::FdDir>, fds: &[i32]) -> Result<Vec<OpenFd>, DumpError> {
        let table: &proc::FdDir = dir;
        let read = super::two::map(fds, MANY_FDS, |&fd| read_fd(table, fd));
        (fds.iter().zip(read))
            .map(|(&fd, r)| {
                let (info, target) = r?;
                Ok(OpenFd::new(dir, fd, info, target))
            })
            .collect()
    }

    fn new(dir: &Rc<proc::FdDir>, fd: i32, info: FdInfo, target: String) -> OpenFd {
        OpenFd {
            pid: dir.pid(),
            fd,
            target,
            info,
            dir: dir.clone(),
            meta: OnceCell::new(),
            flying: None,
        }
    }

    /// `stat` of the open file (through `/proc/PID/fd/N`), taken once.
    pub fn meta(&self) -> Result<&FileStat, DumpError> {
        if let Some(meta) = self.meta.get() {
            return Ok(meta);
        }
        let meta = self.dir.stat(self.reach().1)?;
        Ok(self.meta.get_or_init(|| meta))
    }

    /// The type of the open file (`S_IFREG`, `S_IFCHR`...).
    pub fn file_type(&self) -> Result<libc::mode_t, DumpError> {
        Ok(self.meta()?.st_mode & libc::S_IFMT)
    }

    /// Whether the link text is a path (a file of a filesystem, a device, a FIFO, a
    /// memfd), not the name of a pipe, socket or anonymous inode.
    pub fn has_path(&self) -> bool {
        self.target.starts_with('/')
    }

    /// The pts number of a pseudo-terminal slave (never a file without a path).
    pub fn pty_slave(&self) -> Result<Option<u32>, DumpError> {
        if !self.has_path() {
            return Ok(None);
        }
        Ok(pty::slave_index(self.meta()?.st_rdev))
    }

    /// A file in flight to fd `socket` of `pid`, numbered `fd` in its table, looked at
    /// through `copy`, stasis's own fd on it.
    pub fn in_flight(pid: i32, fd: i32, copy: &OwnedFd, socket: i32) -> Result<OpenFd, DumpError> {
        let copy = copy.as_raw_fd();
        let own = Rc::new(proc::FdDir::open(std::process::id() as i32)?);
        let mut open = OpenFd::inspect(&own, copy)?;
        open.flying = Some(inflight::Flying { copy, socket });
        (open.pid, open.fd) = (pid, fd);
        Ok(open)
    }

    /// The process and fd through which the open file can be reached: the target's own
    /// fd, or stasis's copy of a file in flight.
    pub fn reach(&self) -> (i32, i32) {
        match self.flying {
            Some(f) => (std::process::id() as i32, f.copy),
            None => (self.pid, self.fd),
        }
    }

    /// `/proc/PID/fd/N`, through which the open file can be reached.
    pub fn through(&self) -> String {
        let (pid, fd) = self.reach();
        format!("/proc/{pid}/fd/{fd}")
    }

    /// A duplicate of the fd in stasis: the same open file description
    /// (`pidfd_getfd`).
    pub fn duplicate(&self) -> nix::Result<OwnedFd> {
        let (pid, fd) = self.reach();
        let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
        crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)
    }

    /// "fd 3 of pid 42 is <kind> (<target>), which stasis cannot checkpoint yet".
    pub fn refuse(&self, kind: &str) -> DumpError {
        self.error(&format!(
            "is {kind} ({}), which stasis cannot checkpoint yet",
            self.target
        ))
    }

    /// "fd 3 of pid 42 <what>" ("a file in flight to fd 3 of pid 42 <what>").
    pub fn error(&self, what: &str) -> DumpError {
        let (fd, pid) = (self.fd, self.pid);
        DumpError::unsupported(match self.flying {
            Some(f) => format!("a file in flight to fd {} of pid {pid} {what}", f.socket),
            None => format!("fd {fd} of pid {pid} {what}"),
        })
    }

    /// The open file's identity: `(st_dev, st_ino)`.
    fn object(&self) -> Result<(u64, u64), DumpError> {
        let meta = self.meta()?;
        Ok((meta.st_dev, meta.st_ino))
    }

    /// The class of open file descriptions this fd's is in (see [`Description`]).
    fn description(&self) -> Result<Description, DumpError> {
        let fixed = self.info.flags & (libc::O_ACCMODE | libc::O_PATH);
        if !self.has_path() {
            return Ok(Description::Named(self.target.clone(), fixed));
        }
        let (dev, ino) = self.object()?;
        Ok(Description::Inode(dev, ino, fixed))
    }
}

/// Fewer fds than this are read in one thread ([`OpenFd::inspect_all`]).
const MANY_FDS: usize = 64;

/// The fdinfo and the link text of fd `fd` of the table `dir`. A unix socket's link
/// text is known from its fdinfo: only unix sockets show `scm_fds`, and a socket's link
/// is `socket:[` its inode `]` (sockfs names its files so), no readlink needed.
fn read_fd(dir: &proc::FdDir, fd: i32) -> Result<(FdInfo, String), proc::ProcError> {
    let info = dir.info(fd)?;
    if info.ino != 0 && info.extra.iter().any(|(k, _)| k == "scm_fds") {
        let link = format!("socket:[{}]", info.ino);
        return Ok((info, link));
    }
    Ok((info, dir.link(fd)?.to_string_lossy().into_owned()))
}

/// All open fds of `pid`, the locks held through them, the sockets held in repair mode
/// meanwhile (see [`Held`]), and the fds whose owners are left to the process's own
/// queries ([`fown::query`]; their records are added to `owners` then).
pub fn fd_table(pid: i32, opts: &FdOptions) -> Result<(FilesImage, Held, Vec<i32>), DumpError> {
    let mut fds: Vec<FdEntry> = Vec::new();
    let mut lock_list = Vec::new();
    let mut walk = Walk::default();
    let mut epolls = Vec::new();
    let dir = Rc::new(proc::FdDir::open(pid)?);
    let (opened, unix) = std::thread::scope(|s| {
        // The kernel's unix sockets, listed meanwhile on the side for a big table.
        let unix = (dir.count() >= MANY_FDS).then(|| s.spawn(sock::read_unix_table));
        let opened = proc::fds(pid)
            .map_err(DumpError::from)
            .and_then(|numbers| OpenFd::inspect_all(&dir, &numbers));
        (opened, unix.and_then(|t| t.join().ok()))
    });
    let mut opened = opened?;
    let links: Vec<(i32, String)> = opened.iter().map(|o| (o.fd, o.target.clone())).collect();
    let mut ctx = SockCtx::new(pid, opts, &links);
    if let Some(Ok(table)) = unix {
        ctx.unix = Some(table);
    }
    if let Some(spaces) = opts.socket_netns.tables.get(&pid) {
        ctx.unix = Some(sock::read_unix_tables(spaces)?);
    }
    find_ptys(&mut ctx, &opened)?;
    ctx.read_unix_ahead()?;
    let flying = inflight::collect(&mut ctx, &opened)?;
    let mut in_flight = flying.messages;
    opened.extend(flying.opened);
    let mut dropped = Vec::new();
    let mut owners = Vec::new();
    let mut ask_owners = Vec::new();
    let asked_in_target = fown::in_target(pid);
    let mut modes = Vec::new();
    for open in opened {
        let fd = open.fd;
        let kind = match entry_kind(&open, opts, &mut walk, &mut ctx, &mut lock_list) {
            Ok(kind) => kind,
            Err(why) => {
                inflight::refused(&open, opts, why)?;
                walk.forget(fd);
                dropped.push(fd);
                continue;
            }
        };
        if let Some(mode) = memfd::mode(&open, &kind)? {
            modes.push((fd, mode));
        }
        if epoll::is_epoll(&open) && !matches!(kind, FdKind::Dup { .. }) {
            epolls.push((fd, open.reach()));
        }
        let described = !matches!(kind, FdKind::Dup { .. } | FdKind::Inherited { .. });
        // An O_PATH description has no owner (fcntl refuses to ask).
        if described && open.info.flags & libc::O_PATH == 0 {
            if asked_in_target && open.flying.is_none() {
                ask_owners.push(fd);
            } else {
                let copy = ctx.steal(fd)?;
                owners.extend(fown::read(&open, copy.as_fd(), &opts.pids)?);
            }
        }
        fds.push(FdEntry {
            fd,
            cloexec: open.info.flags & libc::O_CLOEXEC != 0,
            flags: open.info.flags & !libc::O_CLOEXEC,
            kind,
        });
    }
    inflight::drop_files(&mut in_flight, &dropped);
    pipe::link_peers(&mut fds, &walk);
    let epoll_moved = epoll::check_targets(pid, &fds, &epolls, &opts.pids)?;
    let hashes = path::hashes(pid, &fds, opts.file_hash)?;
    let image = FilesImage {
        fds,
        locks: lock_list,
        spares: Vec::new(),
        in_flight,
        epoll_moved,
        hashes,
        owners,
        unlinked_sockets: std::mem::take(&mut ctx.unlinked_sockets),
        socket_files: std::mem::take(&mut ctx.socket_files),
        modes,
        dgram_senders: std::mem::take(&mut ctx.dgram_senders),
    };
    Ok((image, ctx.held, ask_owners))
}

/// What one fd (held or in flight) is: a reference to an open file description seen
/// before, or the object, with the locks held through it.
fn entry_kind(
    open: &OpenFd,
    opts: &FdOptions,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
    lock_list: &mut Vec<FileLock>,
) -> Result<FdKind, DumpError> {
    if let Some(kind) = inflight::identify(open, opts)? {
        return Ok(kind);
    }
    if let Some(of) = same_description(open, &mut walk.created)? {
        return Ok(FdKind::Dup { of });
    }
    let locks = locks::dump(open, opts.file_locks)?;
    inflight::refuse_kind(open, !locks.is_empty())?;
    lock_list.extend(locks);
    classify(open, opts, walk, ctx)
}

impl Walk {
    /// Forgets fd `fd` (a file in flight dropped from its message).
    fn forget(&mut self, fd: i32) {
        self.created
            .values_mut()
            .for_each(|v| v.retain(|c| c.0 != fd));
    }
}

/// Pty masters of the process by pts number, and the first fd of each of their slaves.
fn find_ptys(ctx: &mut SockCtx<'_>, opened: &[OpenFd]) -> Result<(), DumpError> {
    for open in opened {
        if pty::is_master(&open.target) {
            if let Some(index) = pty::master_index(&open.info.extra) {
                ctx.masters.entry(index).or_insert(open.fd);
            }
        } else if let Some(index) = open.pty_slave()? {
            ctx.slaves.entry(index).or_insert(open.fd);
        }
    }
    Ok(())
}

/// The earlier fd holding the same open file description (`kcmp(KCMP_FILE)`), asked only
/// for fds of the same [`Description`] class, so the common case costs no syscall.
/// `kcmp` orders open file descriptions, so a thousand opens of one file cost a binary
/// search each, not a scan. A new description is recorded in `created`.
fn same_description(
    open: &OpenFd,
    created: &mut HashMap<Description, Vec<Created>>,
) -> Result<Option<i32>, DumpError> {
    use crate::sys::kcmp::{compare, Object};
    let (p, fd) = open.reach();
    let fds = created.entry(open.description()?).or_default();
    let found = search(fds, |&(_, (q, earlier))| {
        match compare(q, p, Object::File, earlier as u64, fd as u64) {
            Ok(0) => Ordering::Equal,
            Ok(1) => Ordering::Less,
            _ => Ordering::Greater,
        }
    });
    Ok(match found {
        Ok(i) => Some(fds[i].0),
        Err(i) => {
            fds.insert(i, (open.fd, (p, fd)));
            None
        }
    })
}

/// Binary search of `sorted` by `probe` (how an element compares with the one sought):
/// `Ok(index)` of an equal element, or `Err(index)` where the sought one belongs. Unlike
/// `slice::binary_search_by`, it stops at the first equal element and never probes one
/// element twice: each probe here is a syscall.
fn search<T>(sorted: &[T], mut probe: impl FnMut(&T) -> Ordering) -> Result<usize, usize> {
    let (mut low, mut high) = (0, sorted.len());
    while low < high {
        let mid = low + (high - low) / 2;
        match probe(&sorted[mid]) {
            Ordering::Equal => return Ok(mid),
            Ordering::Less => low = mid + 1,
            Ordering::Greater => high = mid,
        }
    }
    Err(low)
}

/// Dispatches by kind.
fn classify(
    open: &OpenFd,
    opts: &FdOptions,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<FdKind, DumpError> {
    if let Some(ino) = sock::socket_inode(&open.target) {
        if open.flying.is_some() {
            sock::flying_in_place(ctx, open)?;
        }
        return sock::socket_kind(ctx, open.fd, ino);
    }
    if let Some(index) = pty::is_master(&open.target)
        .then(|| pty::master_index(&open.info.extra))
        .flatten()
    {
        return pty::master_kind(ctx, open.fd, index);
    }
    if let Some(kind) = open
        .pty_slave()?
        .and_then(|i| pty::slave_kind(open, opts, i))
    {
        return Ok(kind);
    }
    if mqueue::is_mqueue(open)? {
        return mqueue::dump(open);
    }
    if is_deleted(open)? {
        return deleted(open, opts, walk, ctx);
    }
    if open.info.flags & libc::O_PATH != 0 {
        return path::dump_opath(open);
    }
    if let Some(name) = open.target.strip_prefix("anon_inode:") {
        return anon_inode(open, name.trim_matches(|c| c == '[' || c == ']'), opts);
    }
    if let Some(ino) = pipe::pipe_inode(&open.target) {
        return pipe::dump(open, ino, walk, ctx);
    }
    if open.target.starts_with("/memfd:") {
        return memfd::dump(open);
    }
    if let Some(kind) = ns::dump(open)? {
        return Ok(kind);
    }
    match open.file_type()? {
        libc::S_IFREG if open.target.ends_with(ghost::DELETED) => {
            path::dump_deleted(open, opts, walk, &mut ctx.held, None)
        }
        libc::S_IFREG | libc::S_IFDIR => path::dump(open),
        libc::S_IFCHR => chardev::dump(open, opts),
        libc::S_IFIFO => pipe::dump_fifo(open, walk, ctx),
        libc::S_IFSOCK => Err(open.refuse("a socket")),
        libc::S_IFBLK => Err(open.refuse("a block device")),
        _ => Err(open.refuse("a file of unknown type")),
    }
}

/// Whether `open` is a file of a filesystem whose last link is gone (a memfd, which
/// never had one, is not).
fn is_deleted(open: &OpenFd) -> Result<bool, DumpError> {
    let named = open.has_path() && !open.target.starts_with("/memfd:");
    if !named || !open.target.ends_with(ghost::DELETED) || open.meta()?.st_nlink != 0 {
        return Ok(false);
    }
    // A terminal is a terminal, deleted node or not (`chardev.rs`).
    let meta = open.meta()?;
    Ok(meta.st_mode & libc::S_IFMT != libc::S_IFCHR || !is_tty(meta.st_rdev))
}

/// A file deleted while open (no link left, not a memfd): a ghost, unless it is a
/// regular file with more data than `--ghost-limit`.
fn deleted(
    open: &OpenFd,
    opts: &FdOptions,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<FdKind, DumpError> {
    if open.file_type()? == libc::S_IFREG {
        if let Some(stored) = ghost::over_limit(open, opts.ghost_limit)? {
            return path::dump_deleted(open, opts, walk, &mut ctx.held, Some(stored));
        }
    }
    ghost::dump(open, opts, walk, ctx)
}

/// Objects without a path (`anon_inode:[eventfd]`...).
fn anon_inode(open: &OpenFd, name: &str, opts: &FdOptions) -> Result<FdKind, DumpError> {
    match name {
        "eventfd" => eventfd::dump(open),
        "timerfd" => timerfd::dump(open),
        "signalfd" => signalfd::dump(open),
        "eventpoll" => epoll::dump(open),
        "inotify" => inotify::dump(open, &opts.pids),
        "fanotify" => fanotify::dump(open),
        "pidfd" => pidfd::dump(open, &opts.pids),
        other => Err(open.refuse(unsupported_kind(other))),
    }
}

/// What to call an anonymous-inode file stasis does not save.
fn unsupported_kind(name: &str) -> &'static str {
    match name {
        "io_uring" => "an io_uring instance",
        "userfaultfd" => "a userfaultfd",
        "bpf-map" | "bpf-prog" | "bpf_link" | "bpf-link" => "a bpf object",
        "perf_event" => "a perf_event",
        _ => "an anonymous-inode file",
    }
}

/// A value from the fd's fdinfo, or an error naming the fd.
pub fn parsed<T>(open: &OpenFd, r: Result<T, String>) -> Result<T, DumpError> {
    r.map_err(|e| open.error(&format!("has unexpected fdinfo: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// `search` over `sorted` for `sought`, with every probed index.
    fn probed(sorted: &[i32], sought: i32) -> (Result<usize, usize>, Vec<usize>) {
        let mut seen = Vec::new();
        let found = search(sorted, |x| {
            seen.push(sorted.iter().position(|y| y == x).unwrap());
            x.cmp(&sought)
        });
        (found, seen)
    }

    #[test]
    fn search_finds_or_places_and_never_probes_twice() {
        let sorted: Vec<i32> = (0..333).map(|i| i * 2).collect();
        for sought in -1..667 {
            let (found, seen) = probed(&sorted, sought);
            assert_eq!(found, sorted.binary_search(&sought), "{sought}");
            let mut unique = seen.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "{sought}: {seen:?}");
            assert!(seen.len() <= 9, "{sought}: {} probes", seen.len());
        }
        assert_eq!(probed(&[], 5), (Err(0), vec![]));
    }

    #[test]
    fn pipe_ends_are_classes_of_their_own() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let dir = Rc::new(proc::FdDir::open(std::process::id() as i32).unwrap());
        let r = OpenFd::inspect(&dir, read.as_raw_fd()).unwrap();
        let w = OpenFd::inspect(&dir, write.as_raw_fd()).unwrap();
        assert!(!r.has_path() && r.meta.get().is_none());
        assert_eq!(r.target, w.target);
        assert_ne!(r.description().unwrap(), w.description().unwrap());
        let ino = pipe::pipe_inode(&r.target).unwrap();
        assert_eq!(r.meta().unwrap().st_ino, ino);
    }

    #[test]
    fn a_unix_socket_link_from_fdinfo_is_what_readlink_gives() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let dir = proc::FdDir::open(std::process::id() as i32).unwrap();
        for fd in [a.as_raw_fd(), r.as_raw_fd()] {
            let (_, link) = read_fd(&dir, fd).unwrap();
            assert_eq!(link, dir.link(fd).unwrap().to_string_lossy(), "fd {fd}");
        }
        let many: Vec<i32> = (0..100).map(|_| a.as_raw_fd()).collect();
        let one = Rc::new(dir);
        let opened = OpenFd::inspect_all(&one, &many).unwrap();
        assert!(opened.iter().all(|o| o.target.starts_with("socket:[")));
    }
}
