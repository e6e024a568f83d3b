//! The fd table record: one [`FdEntry`] per descriptor, whose [`FdKind`] says what it
//! refers to. Each kind of object has its own struct (`PathFd`, `CharDevFd`, ...), and the
//! code that dumps and restores it lives in `dump/files/<kind>.rs` and
//! `restore/files/<kind>.rs`.
//!
//! Objects are created once, by the first fd that holds them; every other fd holding the
//! same open file description refers to that one ([`FdKind::Dup`] within a process,
//! [`FdKind::Inherited`] across processes), and another description of the same file
//! reopens it ([`FdKind::Reopen`]). An object whose descriptions are split across
//! processes is created by the first process, which holds the others at spare fds
//! ([`FilesImage::spares`]) until the later processes took them. Files in flight (sent
//! with `SCM_RIGHTS` and not received yet) are entries too, at numbers above every fd the
//! process held, sent again and closed ([`FilesImage::in_flight`]).

use serde::{Deserialize, Serialize};

use super::mm::FileId;
use super::sock::{InetSocket, NetlinkSocket, PacketSocket, PtyMaster, UnixSocket};

/// `files-<pid>.img`: the open file descriptors of one process, in fd order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesImage {
    pub fds: Vec<FdEntry>,
    /// File locks held through these fds (saved and restored under `--file-locks`).
    pub locks: Vec<FileLock>,
    /// Fds of this table that the process did not hold: open file descriptions of
    /// objects it creates (the other end of a pipe, a socket connected to one of its own)
    /// held by a later process of the tree, which takes them from here
    /// ([`FdKind::Inherited`]). Above every fd the process held; closed once every
    /// process of the tree has its fds (format 7; empty in older images).
    pub spares: Vec<i32>,
    /// Files in flight to the unix sockets of this table, message by message (format 7;
    /// empty in older images).
    pub in_flight: Vec<InFlight>,
    /// Epoll registrations whose fd number no longer holds the registered file, and where
    /// the file is (format 7; empty in older images).
    pub epoll_moved: Vec<EpollMoved>,
    /// Content checksums of the regular files held open, taken with `dump --file-hash`
    /// (format 7; empty in older images and without the option).
    pub hashes: Vec<ContentHash>,
    /// Owners and signals of the open file descriptions created by this table's fds
    /// (`F_SETOWN_EX`, `F_SETSIG`), for those with either set (format 9; empty in older
    /// images).
    pub owners: Vec<FdOwner>,
    /// Unix sockets of this table (by inode) bound to a path that no longer leads to
    /// them (the socket file was deleted, or they are accepted connections sharing their
    /// listener's name): bound again, then the new file unlinked (format 9).
    pub unlinked_sockets: Vec<u64>,
    /// Mode and owner of the files of the unix sockets bound by this table (by socket
    /// inode), set again on the file the restore's `bind` makes (format 9).
    pub socket_files: Vec<SocketFile>,
    /// Permission bits of the memfds of the table (`Memfd` entries) whose mode is not
    /// `memfd_create`'s 0777 (`fchmod`), by fd (format 9; empty in older images).
    pub modes: Vec<(i32, u32)>,
    /// The sender address of each message queued on the unix datagram sockets of this
    /// table (format 17; empty in older images, whose queues are sent again as before:
    /// from the peer or an unnamed socket).
    pub dgram_senders: Vec<DgramSenders>,
}

/// Who sent the messages queued on one unix datagram socket: the address `recvmsg`
/// reports with each (`msg_name`, `sun_path` bytes as bound: an abstract or autobound
/// name starts with a 0 byte; empty for an unnamed sender), oldest first. The restore
/// sends each message from a socket bound to that address (`restore/files/unix_senders.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DgramSenders {
    /// The receiving socket's inode.
    pub socket: u64,
    /// One address per queued message, in queue order.
    pub names: Vec<Vec<u8>>,
}

impl DgramSenders {
    /// How a sender's address reads in a message.
    pub fn describe(name: &[u8]) -> String {
        match name.first() {
            None => "an unnamed socket".to_string(),
            Some(0) => format!("the address @{}", String::from_utf8_lossy(&name[1..])),
            Some(_) => format!("the address {}", String::from_utf8_lossy(name)),
        }
    }
}

/// The file a unix socket's `bind` made: permission bits and owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFile {
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Who gets the I/O signals (`O_ASYNC`, leases) of the open file description created by
/// fd `fd`, and which signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdOwner {
    pub fd: i32,
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    pub kind: i32,
    /// The thread, process or group; 0 for none (only a signal set).
    pub pid: i32,
    /// The real and effective uid recorded when the owner was set (they decide whether
    /// the owner may be signalled).
    pub uid: u32,
    pub euid: u32,
    /// `F_SETSIG` (0: `SIGIO`).
    pub signal: i32,
}

/// A registration of the epoll instance at fd `epoll` made under fd number `tfd` (the
/// `toff`-th of the instance's targets with that number, from 0: several files can be
/// registered under one number), whose file is no longer open at `tfd` (closed after a `dup`, moved by `dup2`, or closed by
/// this process and still held by an earlier one of the tree): the file is fd `fd` of
/// process `pid` (this process or an earlier one). The restore puts a copy of it at `tfd`
/// for the `EPOLL_CTL_ADD` (epoll keys a registration by file and fd number) and closes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollMoved {
    pub epoll: i32,
    pub tfd: i32,
    pub toff: u32,
    pub pid: i32,
    pub fd: i32,
}

/// The CRC-32 of the whole contents of the regular file open at fd `fd`, checked before
/// restore along with its size and mtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHash {
    pub fd: i32,
    pub crc32: u32,
}

/// The files riding on one queued message of a unix socket of the table: each is an
/// entry of the table at a number above every fd the process held (a `Dup` of a held fd
/// when it is the same open file description, an `Inherited` one of an earlier process,
/// else the object itself), named by no other message, sent with the message's data
/// (`SCM_RIGHTS`) and closed once sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The receiving socket, by its inode (`UnixSocket::ino`).
    pub socket: u64,
    /// The message's index in the socket's `queue`.
    pub message: u32,
    /// The entries sent, in the message's order.
    pub fds: Vec<i32>,
}

impl FilesImage {
    /// Whether entry `fd` is a file in flight (not an fd the process held).
    pub fn is_in_flight(&self, fd: i32) -> bool {
        self.in_flight.iter().any(|m| m.fds.contains(&fd))
    }

    /// Where the file of the `toff`-th registration under `tfd` in the epoll at fd `epoll`
    /// is, when it is no longer open at `tfd`.
    pub fn epoll_moved(&self, epoll: i32, tfd: i32, toff: u32) -> Option<&EpollMoved> {
        self.epoll_moved
            .iter()
            .find(|m| (m.epoll, m.tfd, m.toff) == (epoll, tfd, toff))
    }
}

impl EpollFd {
    /// Each target with its `toff`: how many earlier targets have the same fd number.
    pub fn numbered(&self) -> impl Iterator<Item = (&EpollTarget, u32)> {
        self.targets.iter().enumerate().map(|(i, t)| {
            let toff = self.targets[..i].iter().filter(|x| x.fd == t.fd).count();
            (t, toff as u32)
        })
    }
}

/// One open file descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub fd: i32,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
    /// Open file status flags (`O_APPEND`, `O_NONBLOCK`, access mode...) from fdinfo.
    pub flags: i32,
    pub kind: FdKind,
}

/// What the descriptor refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// A regular file or directory, reopened by path.
    Path(PathFd),
    /// A character device reopened by path (`/dev/null`, `/dev/urandom`, ...).
    CharDev(CharDevFd),
    /// The invoking terminal (`--shell-job`): restored as the restorer's terminal.
    Tty(TtyFd),
    /// The same open file description as the earlier fd `of` (a `dup`): one offset and
    /// one set of status flags for both.
    Dup { of: i32 },
    /// The same open file description as fd `fd` of process `pid`, which comes earlier in
    /// the tree (inherited across `fork`, or passed over a socket): one offset and one set
    /// of status flags for every holder.
    Inherited { pid: i32, fd: i32 },
    /// One end of a pipe, which this fd creates (with its buffered bytes).
    Pipe(PipeFd),
    /// The other end of the pipe created by the earlier fd `of`, which put it here.
    PipePeer { of: i32 },
    /// A FIFO reopened by path (the first fd of a FIFO carries its buffered bytes).
    Fifo(FifoFd),
    /// An `O_PATH` fd, reopened by path.
    OPath(OPathFd),
    /// A regular file deleted while open: recreated from the saved contents, opened,
    /// unlinked (format 8 and older; newer dumps write [`FdKind::Deleted`]).
    Ghost(GhostFd),
    /// An eventfd.
    EventFd(EventFd),
    /// A timerfd.
    TimerFd(TimerFd),
    /// A signalfd.
    SignalFd(SignalFd),
    /// An epoll instance; restored after every other fd (its targets must exist).
    Epoll(EpollFd),
    /// An inotify instance.
    Inotify(InotifyFd),
    /// A memfd, with contents and seals.
    Memfd(MemfdFd),
    /// A pidfd of a process of the image.
    PidFd(PidFd),
    /// A unix socket (see `image::sock`).
    Unix(Box<UnixSocket>),
    /// A TCP or UDP socket.
    Inet(Box<InetSocket>),
    /// A pseudo-terminal master with its pair's state.
    PtyMaster(Box<PtyMaster>),
    /// A slave of the pty with pts number `index` (its own open file: flags and access
    /// mode are the entry's). The pair's master is the `PtyMaster` of that number in
    /// this or another process of the tree; with none, the master was closed and the
    /// slave is hung up (`tty.img` says so, from format 9).
    PtySlave { index: u32 },
    /// Another open file description of the file behind fd `fd` of process `pid` (this
    /// process, at a lower fd, or an earlier one): a memfd or deleted file opened more
    /// than once, reopened through `/proc/PID/fd/FD` with the entry's flags, at `pos`.
    Reopen { pid: i32, fd: i32, pos: u64 },
    /// A file without a name of its own, reached through a link stasis made beside it
    /// at dump time (`--link-remap`); removed once the restore succeeded.
    Remap(RemapFd),
    /// Another open file description of a memfd or deleted file that a process maps.
    Mapped(MappedFd),
    /// A fanotify group with its marks (pending events are not saved).
    Fanotify(FanotifyFd),
    /// A file deleted while open — regular file, directory, FIFO, device node or (under
    /// `O_PATH`) symlink — recreated from `ghosts.img` (`image::ghost`) before the tree
    /// is built, opened by path, and removed again before any process runs (format 9).
    Deleted(DeletedFd),
    /// `/dev/tty` opened by the process: its controlling terminal, which is a terminal
    /// of the tree or of the session (`tty.img`); reopened once the session has it.
    ControllingTty,
    /// A pidfd of a process that has exited (format 9).
    DeadPidFd(DeadPidFd),
    /// A namespace file of one of the process's own namespaces (format 9).
    Namespace(NsFd),
    /// A packet socket (`AF_PACKET`, see `image::sock`; format 10).
    Packet(Box<PacketSocket>),
    /// A netlink socket (`AF_NETLINK`, see `image::sock`; format 10).
    Netlink(Box<NetlinkSocket>),
    /// A POSIX message queue descriptor of the queue `/name` of the tree's IPC namespace,
    /// reopened by name (`mq_open`) with the entry's access mode and `O_NONBLOCK`
    /// (format 11).
    Mqueue(MqueueFd),
    /// A `/dev/net/tun` file, attached to a tun or tap device of the tree's network
    /// namespaces or not (format 17).
    Tun(TunFd),
}

/// A `/dev/net/tun` file: reopened by path in the process's network namespace and, with
/// a `device`, attached to it (`TUNSETIFF` with `flags`), its queue detached again if it
/// was, the device's settings set through it. The device itself is a link of its
/// namespace (`netns.img`, `netlinks.img`), made persistent by the restore until its
/// first file is attached when it was not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunFd {
    pub path: String,
    /// The device it is attached to (empty: none, the file was never attached).
    pub device: String,
    /// `TUNSETIFF` flags: `IFF_TUN` or `IFF_TAP`, `IFF_NO_PI`, `IFF_VNET_HDR`,
    /// `IFF_MULTI_QUEUE`.
    pub flags: u16,
    /// Its queue was detached (`TUNSETQUEUE` with `IFF_DETACH_QUEUE`).
    pub detached: bool,
    /// The device was persistent (`TUNSETPERSIST`).
    pub persist: bool,
    /// The settings the file read (`sndbuf`, its queue's own; `vnet_hdr_sz`, `vnet_le`,
    /// `vnet_be`, the device's), set again through it.
    pub settings: Vec<(String, i32)>,
    /// For a detached queue whose device has attached ones: the send buffer those share.
    /// Setting the send buffer sets every attached queue's: this file sets its own while
    /// attached, then theirs again once detached.
    pub attached_sndbuf: Option<i32>,
}

/// An open POSIX message queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqueueFd {
    /// The queue's name without its leading `/`.
    pub name: String,
}

/// An open file description of ghost file `ghost` (an index in `ghosts.img`), at `pos`;
/// for a FIFO, the first fd of the tree that opens it refills its buffer (`fifo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFd {
    pub ghost: u32,
    pub pos: u64,
    pub fifo: Option<FifoBytes>,
}

/// The capacity (`F_GETPIPE_SZ`) and buffered bytes of a FIFO.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoBytes {
    pub size: u32,
    pub data: Vec<u8>,
}

/// A namespace file (`/proc/PID/ns/KIND`) of the process's own namespace of that kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsFd {
    /// The name in `/proc/PID/ns` (`net`, `pid_for_children`...).
    pub kind: String,
    /// The namespace's inode at dump time (what `KIND:[INO]` shows).
    pub ino: u64,
}

/// A pidfd of a process that had exited and been reaped at dump time. Pidfds of one such
/// process (same `ino`, the pidfs inode at dump time) refer to one process again after
/// restore, a stand-in created, opened and reaped by the restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadPidFd {
    pub ino: u64,
}

/// An open file description of the memfd or deleted file that process `pid` maps at
/// `start..end`: the mapping rebuilds the object (whole: the dump checked that the mapping
/// covers all of it), and the fd is opened through `/proc/PID/map_files/START-END` with
/// the entry's flags, at `pos`. A memfd's `seals` (`F_GET_SEALS`) are added again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedFd {
    pub pid: i32,
    pub start: u64,
    pub end: u64,
    pub pos: u64,
    pub seals: u32,
}

/// A fanotify group: `fanotify_init` flags and its marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyFd {
    /// `fanotify_init` flags (`FAN_CLASS_*`, `FAN_REPORT_*`, `FAN_UNLIMITED_*`...);
    /// `FAN_CLOEXEC` and `FAN_NONBLOCK` come from the entry.
    pub flags: u32,
    /// `event_f_flags`: the open flags of the fds events carry.
    pub event_flags: u32,
    pub marks: Vec<FanotifyMark>,
}

/// One fanotify mark: what it is on, its flags and masks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyMark {
    pub target: FanotifyTarget,
    /// `FAN_MARK_IGNORED_SURV_MODIFY`, `FAN_MARK_EVICTABLE`, `FAN_MARK_IGNORE`.
    pub flags: u32,
    pub mask: u32,
    pub ignored_mask: u32,
}

/// What a fanotify mark watches, by a path that leads to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanotifyTarget {
    /// An inode (file or directory).
    Inode { path: String },
    /// A mount (`FAN_MARK_MOUNT`), by its mount point.
    Mount { path: String },
    /// A filesystem (`FAN_MARK_FILESYSTEM`), by a mount point of it.
    Filesystem { path: String },
}

/// A regular file or directory, reopened by path at `pos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFd {
    pub file: FileId,
    pub pos: u64,
}

/// A character device other than a terminal, reopened by path at `pos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharDevFd {
    pub path: String,
    pub rdev: u64,
    pub pos: u64,
}

/// A terminal fd of a shell job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyFd {
    pub rdev: u64,
}

/// Which end of a pipe an fd holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeEnd {
    Read,
    Write,
}

/// A pipe, created by the first fd that holds either end.
///
/// The creating fd gets `end`; the other end is put at fd `peer` of this process, whose
/// entry is [`FdKind::PipePeer`], or closed when `peer` is `None` (nobody holds it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeFd {
    /// Inode number in pipefs at dump time (identifies the pipe, for inspect).
    pub ino: u64,
    pub end: PipeEnd,
    pub peer: Option<i32>,
    /// `F_GETPIPE_SZ`.
    pub size: u32,
    /// The bytes in the buffer, oldest first.
    pub data: Vec<u8>,
}

/// A FIFO (named pipe) opened by path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoFd {
    pub file: FileId,
    /// `F_GETPIPE_SZ`; 0 for every fd but the first of one FIFO.
    pub size: u32,
    /// The bytes in the buffer, on the first fd of one FIFO only.
    pub data: Vec<u8>,
}

/// An `O_PATH` descriptor of any kind of file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OPathFd {
    pub path: String,
}

/// A regular file that was unlinked while open ("ghost" file), as images of format 8 and
/// older record it (newer dumps write [`FdKind::Deleted`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostFd {
    /// Where it lived (the `/proc/PID/fd` link without " (deleted)").
    pub path: String,
    /// `st_mode` permission bits, owner and group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub pos: u64,
    /// The whole contents (at most `--ghost-limit` bytes).
    pub contents: Vec<u8>,
}

/// A file whose name was unlinked while open (`--link-remap`): the link stasis made in
/// its directory at dump time — a hard link when the kernel allows one (the file still has
/// other names, or is an `O_TMPFILE`), else a copy on the same filesystem (a deleted file
/// larger than `--ghost-limit`) — instead of its contents in the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemapFd {
    /// The link (`.stasis-link-PID-FD-NAME` beside `path`) and its identity, checked
    /// before restore like any open file.
    pub link: FileId,
    /// The name it was open under (the `/proc/PID/fd` link without " (deleted)").
    pub path: String,
    pub pos: u64,
    /// The link is a copy (the file had no link left): one file per process.
    pub copied: bool,
}

/// An eventfd: its counter and mode (`O_NONBLOCK` is in the entry's flags).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFd {
    pub count: u64,
    pub semaphore: bool,
}

/// A timerfd: its clock and setting, as `timerfd_gettime` would report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFd {
    pub clock: i32,
    /// Expirations not read yet.
    pub ticks: u64,
    /// `TFD_TIMER_ABSTIME` / `TFD_TIMER_CANCEL_ON_SET` of the last `timerfd_settime`.
    pub settime_flags: i32,
    /// Time left until the next expiration (0: disarmed), nanoseconds.
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// A signalfd and the signals it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFd {
    /// Bit `n - 1` for signal `n`.
    pub mask: u64,
}

/// An epoll instance and what it watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollFd {
    pub targets: Vec<EpollTarget>,
}

/// One registration of an epoll instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The watched fd, in this process's table.
    pub fd: i32,
    /// `epoll_event.events`, including `EPOLLET`, `EPOLLONESHOT`...
    pub events: u32,
    pub data: u64,
}

/// An inotify instance and its watches (pending events are not saved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyFd {
    pub watches: Vec<InotifyWatch>,
}

/// The start of the `path` of a watch on a deleted file the process holds open: the
/// watch is added through `/proc/self/fd/N`, fd N of the process.
pub const HELD_FD_PREFIX: &str = "/proc/self/fd/";

/// One inotify watch, by the path of the watched inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    pub wd: i32,
    pub mask: u32,
    pub path: String,
}

/// A memfd (`memfd_create`): name, contents, seals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdFd {
    /// The name given to `memfd_create` (without the `memfd:` prefix).
    pub name: String,
    pub size: u64,
    pub pos: u64,
    /// `F_GET_SEALS`.
    pub seals: u32,
    pub contents: Vec<u8>,
}

/// A pidfd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidFd {
    /// The process it refers to (one of the image).
    pub pid: i32,
}

/// A lock held through fd `fd`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub fd: i32,
    pub kind: LockKind,
    pub write: bool,
    /// Byte range; `len` 0 means "to the end of the file" (always 0 for `flock`).
    pub start: u64,
    pub len: u64,
}

/// Who owns a lock, as the kernel tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// `flock(2)`: owned by the open file description.
    Flock,
    /// `fcntl(F_SETLK)`: owned by the process.
    Posix,
    /// `fcntl(F_OFD_SETLK)`: owned by the open file description.
    Ofd,
    /// `fcntl(F_SETLEASE)`: a lease of the open file description (`write`: a write
    /// lease), not being broken (format 9).
    Lease,
    /// A lease being broken (someone opened the file in a conflicting mode): `write` is
    /// its type before the break, `unlock` whether it is being removed (`F_UNLCK`) rather
    /// than downgraded to a read lease (format 9).
    LeaseBreaking { unlock: bool },
}
