//! Sockets in the fd table: which family an fd is, and the state shared by every socket
//! of one dump (the target's pidfd, the kernel's unix socket table, the sockets held in
//! repair mode, new sockets' options: `sockopts.rs`, the packet and netlink tables).
//!
//! A socket is looked at through a duplicate of the target's fd (`pidfd_getfd`): the same
//! socket, so nothing here may consume data or change state it does not put back. Unix
//! sockets are `unix.rs`, IP ones `inet.rs`, packet ones `packet.rs`, netlink ones
//! `netlink.rs`; other families are refused, naming the fd, the pid and the family.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::unistd::Pid;

use super::inet::Held;
use super::sockopts::{self, Defaults};
use super::unix::{peek_queue, Queued};
use super::FdOptions;
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{SockKind, SockOpts, UnixMessage};
use crate::sys::sock_diag::{self, NetlinkDiag, PacketDiag, TcpDiag, UnixDiag};
use crate::sys::socket::getsockopt_int;

/// Per-dump state for sockets and terminals, and the duplicates of the table's fds
/// ([`SockCtx::steal`]: sockets, pty masters, pipe read ends).
pub struct SockCtx<'a> {
    pub pid: i32,
    pub opts: &'a FdOptions,
    /// One pidfd of the process for every duplicate taken.
    pidfd: Option<OwnedFd>,
    /// Read by [`SockCtx::unix_table`].
    pub unix: Option<HashMap<u32, UnixDiag>>,
    /// The packet and netlink tables, by the namespace read in (see [`SockCtx::ns_of`]).
    packet: HashMap<Option<i32>, HashMap<u32, PacketDiag>>,
    netlink: HashMap<Option<i32>, HashMap<u32, NetlinkDiag>>,
    /// Inodes of every socket in the fd table, and the fd first holding each.
    pub inodes: HashMap<u64, i32>,
    /// The kernel's tables of UDP and UDP-Lite sockets, by namespace, family and
    /// protocol, each read once per dump.
    inet_tables: HashMap<(Option<i32>, i32, u8), HashMap<u32, TcpDiag>>,
    /// Sockets already described (a second fd on one is a dup).
    pub seen: HashSet<u64>,
    /// Options of a new socket, per kind: what "unchanged" means, for the sockets of
    /// the process's namespace.
    defaults: Defaults,
    /// The same for the sockets of other namespaces, by the pid they are read through.
    ns_defaults: HashMap<i32, Defaults>,
    /// Options of unix sockets read ahead ([`SockCtx::read_unix_ahead`]), by fd.
    unix_opts: HashMap<i32, Result<SockOpts, sockopts::OptError>>,
    /// Receive queues of unix sockets peeked ahead, by fd.
    peeked: HashMap<i32, nix::Result<Queued>>,
    /// Listening unix sockets by the connections in their queue: the listener and the
    /// connection's position ([`SockCtx::pending_of`]).
    pending: Option<HashMap<u32, (u32, u32)>>,
    pub held: Held,
    /// Pty masters by pts number (first fd), and the first fd of each of their slaves.
    pub masters: HashMap<u32, i32>,
    pub slaves: HashMap<u32, i32>,
    /// Unix receive queues peeked ahead (`inflight.rs`), by socket inode.
    pub queues: HashMap<u64, Vec<UnixMessage>>,
    /// The sender address of each message of those queues, by socket inode.
    pub senders: HashMap<u64, Vec<Vec<u8>>>,
    /// The senders of the datagram sockets described (`FilesImage::dgram_senders`).
    pub dgram_senders: Vec<crate::image::files::DgramSenders>,
    /// Files in flight: their number in the table → stasis's copy.
    pub copies: HashMap<i32, OwnedFd>,
    /// Unix sockets bound to a path that no longer leads to them (`FilesImage::unlinked_sockets`).
    pub unlinked_sockets: Vec<u64>,
    /// Mode and owner of the socket files bound (`FilesImage::socket_files`).
    pub socket_files: Vec<crate::image::files::SocketFile>,
}

impl<'a> SockCtx<'a> {
    /// `links` are the fd table's `(fd, link text)` pairs.
    pub fn new(pid: i32, opts: &'a FdOptions, links: &[(i32, String)]) -> Self {
        let mut inodes = HashMap::new();
        for (fd, link) in links {
            if let Some(ino) = socket_inode(link) {
                inodes.entry(ino).or_insert(*fd);
            }
        }
        SockCtx {
            pid,
            opts,
            pidfd: None,
            unix: None,
            packet: HashMap::new(),
            netlink: HashMap::new(),
            inodes,
            seen: HashSet::new(),
            inet_tables: HashMap::new(),
            defaults: Defaults::new(pid),
            ns_defaults: HashMap::new(),
            unix_opts: HashMap::new(),
            peeked: HashMap::new(),
            pending: None,
            held: Held::new(pid),
            masters: HashMap::new(),
            slaves: HashMap::new(),
            queues: HashMap::new(),
            senders: HashMap::new(),
            dgram_senders: Vec::new(),
            copies: HashMap::new(),
            unlinked_sockets: Vec::new(),
            socket_files: Vec::new(),
        }
    }

    /// A duplicate of the target's fd `fd` (the same open file), or of stasis's copy of
    /// a file in flight numbered `fd`.
    pub fn steal(&mut self, fd: i32) -> Result<OwnedFd, DumpError> {
        let pid = self.pid;
        if let Some(copy) = self.copies.get(&fd) {
            return copy.try_clone().map_err(|e| {
                DumpError::unsupported(format!("duplicate a file in flight to pid {pid}: {e}"))
            });
        }
        let pidfd = self.open_pidfd()?;
        crate::sys::probe::pidfd_getfd(pidfd, fd).map_err(|e| {
            DumpError::unsupported(format!("pidfd_getfd of fd {fd} of pid {pid}: {e}"))
        })
    }

    /// The kernel's table of unix sockets, read once per dump.
    pub fn unix_table(&mut self) -> Result<&HashMap<u32, UnixDiag>, DumpError> {
        if self.unix.is_none() {
            self.unix = Some(read_unix_table()?);
        }
        Ok(self.unix.as_ref().expect("read above"))
    }

    /// The listening unix socket whose queue holds the connection `ino` not yet
    /// accepted, and its position there.
    pub fn pending_of(&mut self, ino: u64) -> Result<Option<(u32, u32)>, DumpError> {
        if self.pending.is_none() {
            let index = (self.unix_table()?.values())
                .filter(|l| l.state == sock_diag::TCP_LISTEN)
                .flat_map(|l| (l.icons.iter().enumerate()).map(|(i, c)| (*c, (l.ino, i as u32))))
                .collect();
            self.pending = Some(index);
        }
        let index = self.pending.as_ref().expect("built above");
        Ok(u32::try_from(ino).ok().and_then(|i| index.get(&i).copied()))
    }

    /// Reads ahead what the walk needs of each unix socket of the table, through one
    /// duplicate per socket, in two threads when there are many (and two CPUs): its
    /// options (some forty `getsockopt`s) and, but for a listener, its receive queue
    /// (`inflight.rs` takes it). An error is kept for that fd's turn, in table order; a
    /// socket not read here (no duplicate, no probe socket for its kind) is read there.
    pub fn read_unix_ahead(&mut self) -> Result<(), DumpError> {
        if self.inodes.is_empty() || self.open_pidfd().is_err() {
            return Ok(());
        }
        let mut firsts: Vec<(i32, u64)> = self.inodes.iter().map(|(i, f)| (*f, *i)).collect();
        firsts.sort_unstable();
        self.unix_table()?;
        let table = self.unix.as_ref().expect("read above");
        let mut work: Vec<(i32, SockKind, &UnixDiag)> = Vec::new();
        for (fd, ino) in firsts {
            let Some(d) = u32::try_from(ino).ok().and_then(|i| table.get(&i)) else {
                continue;
            };
            let kind = unix_sock_kind(d);
            if self.foreign(ino) {
                continue;
            }
            if self.defaults.prepare(kind).is_ok() {
                work.push((fd, kind, d));
            }
        }
        let (pidfd, defaults) = (self.pidfd.as_ref().expect("opened above"), &self.defaults);
        let read = crate::dump::two::map(&work, PARALLEL_SOCKETS, |&(fd, kind, d)| {
            read_unix(pidfd.as_fd(), fd, kind, d, defaults)
        });
        for ((fd, ..), read) in work.iter().zip(read) {
            let Some((opts, queue)) = read else { continue };
            self.unix_opts.insert(*fd, opts);
            if let Some(queue) = queue {
                self.peeked.insert(*fd, queue);
            }
        }
        Ok(())
    }

    /// The process's pidfd, opened once.
    fn open_pidfd(&mut self) -> Result<BorrowedFd<'_>, DumpError> {
        if self.pidfd.is_none() {
            let pid = self.pid;
            let pidfd = crate::sys::probe::pidfd_open(Pid::from_raw(pid))
                .map_err(|e| DumpError::unsupported(format!("pidfd_open of pid {pid}: {e}")))?;
            self.pidfd = Some(pidfd);
        }
        Ok(self.pidfd.as_ref().expect("opened above").as_fd())
    }

    /// The receive queue of unix socket `fd` peeked ahead ([`SockCtx::read_unix_ahead`]),
    /// taken once.
    pub fn peeked(&mut self, fd: i32) -> Option<nix::Result<Queued>> {
        self.peeked.remove(&fd)
    }

    /// The options of fd `fd`, a unix socket of `kind` (inode `ino`): read ahead, or
    /// now.
    pub fn unix_options(
        &mut self,
        fd: i32,
        ino: u64,
        kind: SockKind,
    ) -> Result<SockOpts, DumpError> {
        let read = match self.unix_opts.remove(&fd) {
            Some(read) => read,
            None => {
                let sock = self.steal(fd)?;
                sockopts::read(sock.as_fd(), kind, false, self.defaults_for(ino))
            }
        };
        read.map_err(|e| DumpError::unsupported(format!("fd {fd} of pid {}: {e}", self.pid)))
    }

    /// The maker of the network namespace of socket `ino` when it is not the root's
    /// (`dump/ns/net_join.rs`): its kernel tables are read there. `None`: the root's,
    /// which stasis's dumping thread is in.
    pub fn ns_of(&self, ino: u64) -> Option<i32> {
        self.opts.socket_netns.of.get(&ino).copied()
    }

    /// A process of the network namespace of socket `ino`, through which its
    /// namespace's `/proc/PID/net` and sysctls are read.
    pub fn ns_pid(&self, ino: u64) -> i32 {
        match (self.ns_of(ino), self.opts.socket_netns.root) {
            (Some(maker), _) => maker,
            (None, 0) => self.pid,
            (None, root) => root,
        }
    }

    /// Whether socket `ino` is of another network namespace than the process's.
    fn foreign(&self, ino: u64) -> bool {
        let ns = |pid: i32| crate::dump::ns::inode(&pid.to_string(), "net");
        let of = self.ns_pid(ino);
        of != self.pid && ns(of) != ns(self.pid)
    }

    /// Runs `f` in the network namespace of socket `ino` (in a thread that enters it,
    /// when it is not the root's).
    pub fn in_ns<T: Send>(&self, ino: u64, f: impl FnOnce() -> T + Send) -> Result<T, DumpError> {
        let Some(maker) = self.ns_of(ino) else {
            return Ok(f());
        };
        let path = std::path::PathBuf::from(format!("/proc/{maker}/ns/net"));
        crate::netns::within(&path, f)
            .map_err(|e| DumpError::unsupported(format!("socket:[{ino}] of pid {}: {e}", self.pid)))
    }

    /// The kernel's table of packet sockets of the namespace of socket `ino`, read once
    /// per dump.
    pub fn packet_table(&mut self, ino: u64) -> Result<&HashMap<u32, PacketDiag>, DumpError> {
        let ns = self.ns_of(ino);
        if !self.packet.contains_key(&ns) {
            let table = self
                .in_ns(ino, sock_diag::packet_sockets)?
                .map_err(|e| DumpError::unsupported(format!("list packet sockets: {e}")))?;
            self.packet.insert(ns, table);
        }
        Ok(&self.packet[&ns])
    }

    /// The kernel's table of bound netlink sockets of the namespace of socket `ino`,
    /// read once per dump.
    pub fn netlink_table(&mut self, ino: u64) -> Result<&HashMap<u32, NetlinkDiag>, DumpError> {
        let ns = self.ns_of(ino);
        if !self.netlink.contains_key(&ns) {
            let table = self
                .in_ns(ino, sock_diag::netlink_sockets)?
                .map_err(|e| DumpError::unsupported(format!("list netlink sockets: {e}")))?;
            self.netlink.insert(ns, table);
        }
        Ok(&self.netlink[&ns])
    }

    /// The kernel's table of `protocol` sockets of `family` of the namespace of socket
    /// `ino`, read once per dump.
    pub fn inet_table(
        &mut self,
        ino: u64,
        family: i32,
        protocol: u8,
    ) -> Result<&HashMap<u32, TcpDiag>, String> {
        let key = (self.ns_of(ino), family, protocol);
        if !self.inet_tables.contains_key(&key) {
            let read = || sock_diag::inet_sockets(family, protocol, u32::MAX);
            let table =
                (self.in_ns(ino, read).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            self.inet_tables.insert(key, table);
        }
        Ok(&self.inet_tables[&key])
    }

    /// What new sockets of the namespace of socket `ino` have.
    fn defaults_for(&mut self, ino: u64) -> &mut Defaults {
        if !self.foreign(ino) {
            return &mut self.defaults;
        }
        let pid = self.ns_pid(ino);
        self.ns_defaults
            .entry(pid)
            .or_insert_with(|| Defaults::new(pid))
    }

    /// The options of fd `fd`, a socket of `kind` and inode `ino` (`sock`: stasis's
    /// duplicate); `connected`: a TCP connection (see `sockopts::read`).
    pub fn options(
        &mut self,
        (fd, ino): (i32, u64),
        sock: BorrowedFd<'_>,
        kind: SockKind,
        connected: bool,
    ) -> Result<SockOpts, DumpError> {
        let pid = self.pid;
        sockopts::read(sock, kind, connected, self.defaults_for(ino))
            .map_err(|e| DumpError::unsupported(format!("fd {fd} of pid {pid}: {e}")))
    }
}

/// Fewer unix sockets than this are read in one thread ([`SockCtx::read_unix_ahead`]).
const PARALLEL_SOCKETS: usize = 64;

/// The kernel's table of unix sockets (of stasis's network namespace).
pub fn read_unix_table() -> Result<HashMap<u32, UnixDiag>, DumpError> {
    sock_diag::unix_sockets().map_err(|e| DumpError::unsupported(format!("list unix sockets: {e}")))
}

/// The unix tables of the network namespaces of `pids` merged (socket inodes are
/// unique across namespaces), each read from inside its namespace.
pub fn read_unix_tables(pids: &[i32]) -> Result<HashMap<u32, UnixDiag>, DumpError> {
    let mut all = HashMap::new();
    for &pid in pids {
        let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        let table = crate::netns::within(&path, read_unix_table).map_err(|e| {
            DumpError::unsupported(format!("list unix sockets of pid {pid}'s namespace: {e}"))
        })??;
        all.extend(table);
    }
    Ok(all)
}

/// What a unix socket is, for its options.
pub fn unix_sock_kind(d: &UnixDiag) -> SockKind {
    SockKind {
        family: libc::AF_UNIX,
        ty: i32::from(d.sock_type),
        protocol: 0,
    }
}

/// What [`SockCtx::read_unix_ahead`] reads of one unix socket: its options, and its
/// queue unless it listens; `None` when it could not be duplicated.
type ReadAhead = Option<(
    Result<SockOpts, sockopts::OptError>,
    Option<nix::Result<Queued>>,
)>;

/// The options and queue of unix socket `fd` (of `kind`, described by `d`) of the
/// process of `pidfd`, through a duplicate closed after.
fn read_unix(
    pidfd: BorrowedFd<'_>,
    fd: i32,
    kind: SockKind,
    d: &UnixDiag,
    defaults: &Defaults,
) -> ReadAhead {
    let sock = crate::sys::probe::pidfd_getfd(pidfd, fd).ok()?;
    let opts = sockopts::read_prepared(sock.as_fd(), kind, false, defaults);
    let queue = (d.state != sock_diag::TCP_LISTEN).then(|| peek_queue(sock.as_fd(), d));
    Some((opts, queue))
}

/// Refuses a socket in flight (`open`) of another network namespace than its receiver's,
/// in a tree with namespaces of its own: the receiver makes it at restore, in its own
/// (`netns-sockets.img` lists the sockets of fd tables only).
pub fn flying_in_place(ctx: &mut SockCtx<'_>, open: &super::OpenFd) -> Result<(), DumpError> {
    if ctx.opts.socket_netns.root == 0 {
        return Ok(());
    }
    let copy = ctx.steal(open.fd)?;
    let ns = netns_inode(copy.as_fd())
        .map_err(|e| open.error(&format!("is a socket whose namespace is unknown: {e}")))?;
    let mine = crate::dump::ns::inode(&ctx.pid.to_string(), "net");
    if mine == Some(ns) {
        return Ok(());
    }
    Err(open.error(&format!(
        "is a socket of the network namespace net:[{ns}], not of pid {}'s; stasis makes \
         a socket in flight in its receiver's namespace",
        ctx.pid
    )))
}

/// The inode of the network namespace socket `sock` belongs to (`SIOCGSKNS`).
fn netns_inode(sock: BorrowedFd<'_>) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let ns = crate::sys::socket::socket_netns(sock).map_err(|e| format!("SIOCGSKNS: {e}"))?;
    let meta = std::fs::File::from(ns).metadata();
    meta.map(|m| m.ino()).map_err(|e| format!("fstat: {e}"))
}

/// Refuses socket `sock` (fd `fd` of the process) of another network namespace than the
/// process's, in a tree whose processes made none: a namespace the tree does not
/// rebuild, where the socket cannot be made again. (With namespaces made inside the tree,
/// `dump/ns/net_join.rs` places every socket.) A unix socket of such a namespace is not
/// in the tables read: it comes here too.
fn refuse_foreign(ctx: &SockCtx<'_>, fd: i32, sock: BorrowedFd<'_>) -> Result<(), DumpError> {
    if ctx.opts.socket_netns.root != 0 {
        return Ok(());
    }
    let pid = ctx.pid;
    let ns = netns_inode(sock).map_err(|e| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid}: the socket's network namespace: {e}"
        ))
    })?;
    let mine = crate::dump::ns::inode(&pid.to_string(), "net");
    if mine.is_none() || mine == Some(ns) {
        return Ok(());
    }
    Err(DumpError::unsupported(format!(
        "fd {fd} of pid {pid} is a socket of the network namespace net:[{ns}], not of the \
         tree's (net:[{}]); stasis makes a socket again only in a namespace it rebuilds",
        mine.unwrap_or(0)
    )))
}

/// `socket:[1234]` → 1234.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kind of fd `fd`, a socket with inode `ino`.
pub fn socket_kind(ctx: &mut SockCtx<'_>, fd: i32, ino: u64) -> Result<FdKind, DumpError> {
    if let Some(&first) = ctx.inodes.get(&ino) {
        if first != fd && ctx.seen.contains(&ino) {
            return Ok(FdKind::Dup { of: first });
        }
    }
    ctx.seen.insert(ino);
    if ctx.unix_table()?.contains_key(&(ino as u32)) {
        return super::unix::unix_kind(ctx, fd, ino);
    }
    let sock = ctx.steal(fd)?;
    refuse_foreign(ctx, fd, sock.as_fd())?;
    let family = getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {}: getsockopt(SO_DOMAIN): {e}",
            ctx.pid
        ))
    })?;
    match family {
        libc::AF_INET | libc::AF_INET6 => super::inet::inet_kind(ctx, fd, ino, sock, family),
        libc::AF_PACKET => super::packet::packet_kind(ctx, fd, ino, sock),
        libc::AF_NETLINK => super::netlink::netlink_kind(ctx, fd, ino, sock),
        other => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {} is a socket of family {} ({other}), which stasis cannot checkpoint",
            ctx.pid,
            family_name(other)
        ))),
    }
}

fn family_name(family: i32) -> &'static str {
    match family {
        libc::AF_UNIX => "AF_UNIX",
        libc::AF_NETLINK => "AF_NETLINK",
        libc::AF_PACKET => "AF_PACKET",
        libc::AF_VSOCK => "AF_VSOCK",
        libc::AF_ALG => "AF_ALG",
        libc::AF_BLUETOOTH => "AF_BLUETOOTH",
        libc::AF_CAN => "AF_CAN",
        libc::AF_TIPC => "AF_TIPC",
        libc::AF_XDP => "AF_XDP",
        libc::AF_KEY => "AF_KEY",
        _ => "unknown",
    }
}
