//! Terminals the tree created, the restore side of `dump/tty.rs` and of the pty fd
//! records (`dump/files/pty.rs`): every pseudo-terminal pair is rebuilt by stasis itself
//! before any process exists (a [`Bank`] of open file descriptions), and each process
//! takes its masters and slaves from there in its Files stage (`pidfd_getfd`, the same
//! open file descriptions). A session leader gets its controlling terminal back right
//! after its `setsid`, before its children are forked (they inherit it, as they did);
//! processes of the session that had given it up give it up again; once the groups
//! exist, the terminal's foreground group is set.
//!
//! `/dev/ptmx` hands out the lowest free pts number. To get the saved number back, masters
//! are opened (and kept) until it comes up or a higher one does; the extras are closed.
//! When the saved number is taken the pair gets another one: the processes' fds point at
//! the new pair all the same, only `ptsname` differs.
//!
//! A pty of another devpts instance than the host's (a container's own `/dev/pts`) is
//! made later, through that instance's `ptmx` (`pty_devpts.rs`, [`Bank::build_pair`]).
//!
//! A pty whose master was closed is rebuilt with a master that stasis closes once every
//! process holds its fds ([`Bank`] dropped last): the slaves hang up then, as they were.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::child::Child;
use super::files::pty::PtyFds;
use super::RestoreError;
use crate::image::files::FdKind;
use crate::image::sock::{refill_termios, visible_input, PtyMaster};
use crate::image::tree::ProcEntry;
use crate::image::tty::{Ctty, PtyNode, TtyImage};
use crate::image::Image;
use crate::sys::socket::{
    ioctl_buf, ioctl_get_int, open_pty_peer, pty_refill, set_exclusive, TCSETS, TIOCGPTN,
    TIOCNOTTY, TIOCPKT, TIOCSCTTY, TIOCSPGRP, TIOCSPTLCK, TIOCSWINSZ,
};

/// At most this many extra masters are opened looking for the saved number.
const MAX_TRIES: usize = 4096;

/// Stasis's own fds on the rebuilt pairs, held until every process has its fds.
#[derive(Default)]
pub struct Bank {
    /// Each original pty fd of the image (`PtyMaster`, `PtySlave`), by `(pid, fd)`.
    fds: HashMap<(i32, i32), OwnedFd>,
    /// An fd on the terminal of each session, by session: for its leader's `TIOCSCTTY`,
    /// and held until the processes have their own fds on it (the last close of a
    /// terminal takes it from its session).
    cttys: HashMap<i32, OwnedFd>,
    /// Masters no process holds: closing them hangs their slaves up.
    closed_last: Vec<OwnedFd>,
}

/// One pair of the image: where its master and slaves are, and what its node was.
struct Pair<'a> {
    index: u32,
    master: Option<(i32, i32, i32, &'a PtyMaster)>,
    /// `(pid, fd, flags)` of each slave.
    slaves: Vec<(i32, i32, i32)>,
    node: Option<&'a PtyNode>,
    /// The session it controls.
    controls: Option<i32>,
}

impl Bank {
    /// Every pair of the image, built in stasis. Ordering requirements: before any
    /// process is created (a session leader takes its terminal right after `setsid`).
    pub fn build(image: &Image) -> Result<Bank, RestoreError> {
        let mut bank = Bank::default();
        // A pty whose master was outside is made once its devpts exists (`orphan_pty.rs`),
        // one of another devpts instance than the host's once the tree's mounts do
        // (`pty_devpts.rs`).
        let elsewhere = |p: &Pair| {
            image.orphan_pty.get(p.index).is_some() || image.pty_devpts.get(p.index).is_some()
        };
        for pair in pairs(image).into_iter().filter(|p| !elsewhere(p)) {
            let index = pair.index;
            (open_master(index, pair.access()).and_then(|m| bank.pair(&pair, m))).map_err(|e| {
                RestoreError::Unsupported {
                    what: format!("rebuild pts {index}: {e}"),
                }
            })?;
        }
        Ok(bank)
    }

    /// Opens the terminal device (not a pty: a virtual console, a serial line) of each
    /// session that had one, as the tree of root `root` names it: through the root's
    /// `/proc/PID/root` when the tree has its own mount namespace (`own_mounts`: the path
    /// is one of the tree's), else the path itself.
    ///
    /// Ordering requirements: after the root's mount namespace is built, before any
    /// session leader takes its terminal.
    pub fn open_device_cttys(
        &mut self,
        image: &Image,
        root: i32,
        own_mounts: bool,
    ) -> Result<(), RestoreError> {
        for s in &image.tty.sessions {
            if let Ctty::Device { path, .. } = &s.tty {
                let at = match own_mounts {
                    true => format!("/proc/{root}/root{path}"),
                    false => path.clone(),
                };
                let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
                let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
                let fd = nix::fcntl::open(at.as_str(), flags, nix::sys::stat::Mode::empty());
                let fd = errno(
                    fd,
                    &format!("open {path}, the terminal of session {}", s.sid),
                )?;
                self.cttys.insert(s.sid, fd);
            }
        }
        Ok(())
    }

    /// Takes slave descriptions opened elsewhere (`orphan_pty.rs`): each original slave
    /// fd of pts `index`, and one for the session it controls.
    pub(super) fn open_slaves_of(
        &mut self,
        image: &Image,
        index: u32,
        master: BorrowedFd<'_>,
    ) -> Result<(), RestoreError> {
        let pair = pairs(image).into_iter().find(|p| p.index == index);
        match pair {
            Some(p) => self.open_slaves(master, &p),
            None => Ok(()),
        }
    }

    /// Makes pair `index` of the image with the master `open` gives for an access mode
    /// (`pty_devpts.rs`: through the `ptmx` of its own devpts instance).
    pub(super) fn build_pair(
        &mut self,
        image: &Image,
        index: u32,
        open: impl FnOnce(i32) -> Result<OwnedFd, RestoreError>,
    ) -> Result<(), RestoreError> {
        match pairs(image).into_iter().find(|p| p.index == index) {
            Some(p) => self.pair(&p, open(p.access())?),
            None => Ok(()),
        }
    }

    pub fn fds(&self) -> PtyFds {
        self.fds.iter().map(|(k, v)| (*k, v.as_raw_fd())).collect()
    }

    /// Ordering requirements: slaves are opened before the lock and exclusive mode are
    /// set; data is written back before the saved termios applies.
    fn pair(&mut self, p: &Pair, master: OwnedFd) -> Result<(), RestoreError> {
        let m = master.as_fd();
        ioctl_int(m, TIOCSPTLCK, 0, "TIOCSPTLCK")?;
        self.open_slaves(m, p)?;
        let first_slave = p.slaves.first().map(|&(pid, fd, _)| (pid, fd));
        let slave = first_slave
            .and_then(|k| self.fds.get(&k))
            .map(|s| s.as_fd());
        if let Some(node) = p.node {
            set_node(m, slave, node)?;
        }
        let Some((pid, fd, flags, state)) = p.master else {
            self.closed_last.push(master);
            return Ok(());
        };
        set_state(m, slave, state)?;
        if let Some(s) = slave.filter(|_| p.node.is_some_and(|n| n.exclusive)) {
            errno(set_exclusive(s), "TIOCEXCL")?;
        }
        if state.locked {
            ioctl_int(m, TIOCSPTLCK, 1, "TIOCSPTLCK")?;
        }
        errno(set_fl(m, flags), "F_SETFL")?;
        self.fds.insert((pid, fd), master);
        Ok(())
    }

    /// Every slave description of the tree, with its flags, and one more for the
    /// session the pty controls.
    fn open_slaves(&mut self, m: BorrowedFd<'_>, p: &Pair) -> Result<(), RestoreError> {
        for &(pid, fd, flags) in &p.slaves {
            let peer = (flags & (libc::O_ACCMODE | libc::O_NONBLOCK)) | libc::O_NOCTTY;
            let slave = errno(open_pty_peer(m, peer | libc::O_CLOEXEC), "TIOCGPTPEER")?;
            errno(set_fl(slave.as_fd(), flags), "F_SETFL")?;
            self.fds.insert((pid, fd), slave);
        }
        if let Some(sid) = p.controls {
            let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
            let slave = errno(open_pty_peer(m, flags), "TIOCGPTPEER")?;
            self.cttys.insert(sid, slave);
        }
        Ok(())
    }
}

/// The access mode of the master of pts `index` of the image (read-write when no
/// process holds it).
pub(super) fn master_access(image: &Image, index: u32) -> i32 {
    (pairs(image).into_iter())
        .find(|p| p.index == index)
        .map_or(libc::O_RDWR, |p| p.access())
}

impl Pair<'_> {
    /// The access mode of the master's open file (read-write when none holds it).
    fn access(&self) -> i32 {
        self.master.map_or(libc::O_RDWR, |m| m.2 & libc::O_ACCMODE)
    }
}

/// The pairs of the image, by pts number.
fn pairs(image: &Image) -> Vec<Pair<'_>> {
    let mut by: BTreeMap<u32, Pair> = BTreeMap::new();
    for p in &image.processes {
        let pid = p.task.pid;
        for e in &p.files.fds {
            match &e.kind {
                FdKind::PtyMaster(m) => {
                    entry(&mut by, image, m.index).master = Some((pid, e.fd, e.flags, m))
                }
                FdKind::PtySlave { index } => entry(&mut by, image, *index)
                    .slaves
                    .push((pid, e.fd, e.flags)),
                _ => {}
            }
        }
    }
    for s in &image.tty.sessions {
        if let Ctty::Pty { index } = s.tty {
            entry(&mut by, image, index).controls = Some(s.sid);
        }
    }
    by.into_values().collect()
}

fn entry<'a, 'b>(
    by: &'b mut BTreeMap<u32, Pair<'a>>,
    image: &'a Image,
    index: u32,
) -> &'b mut Pair<'a> {
    by.entry(index).or_insert_with(|| Pair {
        index,
        master: None,
        slaves: Vec::new(),
        node: image.tty.pty(index),
        controls: None,
    })
}

/// A new master with pts number `want`: the kernel hands out the lowest free number, so
/// masters are opened (and the lower ones dropped) until it comes. A pts number taken
/// on this host is refused: the tree would find its terminal under another name.
fn open_master(want: u32, access: i32) -> Result<OwnedFd, RestoreError> {
    open_master_at(nix::fcntl::AT_FDCWD, "/dev/ptmx", want, access)
}

/// [`open_master`] through the `ptmx` at `ptmx` from `dir` (that of another devpts
/// instance).
pub(super) fn open_master_at(
    dir: BorrowedFd<'_>,
    ptmx: &str,
    want: u32,
    access: i32,
) -> Result<OwnedFd, RestoreError> {
    let flags = nix::fcntl::OFlag::from_bits_truncate(access | libc::O_NOCTTY | libc::O_CLOEXEC);
    let mut extras = Vec::new();
    loop {
        let fd = errno(
            nix::fcntl::openat(dir, ptmx, flags, nix::sys::stat::Mode::empty()),
            &format!("open {ptmx}"),
        )?;
        let index = errno(ioctl_get_int(fd.as_fd(), TIOCGPTN), "TIOCGPTN")?;
        if index as u32 == want {
            return Ok(fd);
        }
        if index as u32 > want || extras.len() == MAX_TRIES {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "{}/{want} is in use on this host (the next free one is {}/{index}); \
                     stasis restores a pty under its own number",
                    pts_dir(ptmx),
                    pts_dir(ptmx)
                ),
            });
        }
        extras.push(fd);
    }
}

/// The directory of the slave nodes beside `ptmx` (`/dev/ptmx` uses `/dev/pts`).
fn pts_dir(ptmx: &str) -> &str {
    match ptmx {
        "/dev/ptmx" => "/dev/pts",
        p => p.strip_suffix("/ptmx").unwrap_or(p),
    }
}

/// The node's owner and mode, through a slave (one opened for it if the tree holds none).
pub(super) fn set_node(
    master: BorrowedFd<'_>,
    slave: Option<BorrowedFd<'_>>,
    node: &PtyNode,
) -> Result<(), RestoreError> {
    let opened;
    let slave = match slave {
        Some(s) => s,
        None => {
            let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC;
            opened = errno(open_pty_peer(master, flags), "TIOCGPTPEER")?;
            opened.as_fd()
        }
    };
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(node.uid),
        nix::unistd::Gid::from_raw(node.gid),
    );
    errno(nix::unistd::fchown(slave, Some(uid), Some(gid)), "fchown")?;
    let mode = nix::sys::stat::Mode::from_bits_truncate(node.mode);
    errno(nix::sys::stat::fchmod(slave, mode), "fchmod")
}

/// Buffered data (through the first slave the tree holds), termios, window size and
/// packet mode.
fn set_state(
    master: BorrowedFd<'_>,
    slave: Option<BorrowedFd<'_>>,
    m: &PtyMaster,
) -> Result<(), RestoreError> {
    errno(
        ioctl_buf(master, TCSETS, &mut refill_termios(&m.termios)),
        "TCSETS",
    )?;
    if let Some(slave) = slave {
        let visible = visible_input(&m.termios, &m.input);
        errno(
            pty_refill(master, slave, &m.input, &m.output, visible),
            "write back buffered data",
        )?;
    }
    errno(ioctl_buf(master, TCSETS, &mut m.termios.clone()), "TCSETS")?;
    let mut ws: Vec<u8> = m.winsize.iter().flat_map(|w| w.to_ne_bytes()).collect();
    errno(ioctl_buf(master, TIOCSWINSZ, &mut ws), "TIOCSWINSZ")?;
    if m.packet_mode {
        ioctl_int(master, TIOCPKT, 1, "TIOCPKT")?;
    }
    Ok(())
}

pub(super) fn ioctl_int(
    fd: BorrowedFd<'_>,
    req: u64,
    v: i32,
    name: &str,
) -> Result<(), RestoreError> {
    errno(ioctl_buf(fd, req, &mut v.to_ne_bytes()), name)
}

fn set_fl(fd: BorrowedFd<'_>, flags: i32) -> nix::Result<()> {
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags & !libc::O_CLOEXEC);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map(drop)
}

pub(super) fn errno<T>(r: nix::Result<T>, what: &str) -> Result<T, RestoreError> {
    r.map_err(|e| RestoreError::Unsupported {
        what: format!("{what}: {e}"),
    })
}

/// The Session stage's terminal part, in the new process right after its `setsid`: a
/// session leader takes its controlling terminal; a process of a session whose terminal
/// it had given up gives it up again (it inherited it from its parent).
///
/// Ordering requirements: after `setsid`, before the process's children are forked.
pub fn restore_session(
    child: &Child,
    entry: &ProcEntry,
    tty: &TtyImage,
    bank: &Bank,
) -> Result<(), RestoreError> {
    if let Some(ours) = bank.cttys.get(&entry.pid) {
        let fd = super::files::take_from(child, std::process::id() as i32, ours.as_raw_fd())?;
        return ioctl_then_close(child, fd, "ioctl(TIOCSCTTY)", TIOCSCTTY, 0);
    }
    if tty.sessions.iter().any(|s| s.without.contains(&entry.pid)) {
        let fd = open_own(child)?;
        return ioctl_then_close(child, fd, "ioctl(TIOCNOTTY)", TIOCNOTTY, 0);
    }
    Ok(())
}

/// `open("/dev/tty")` in the child: its controlling terminal.
fn open_own(child: &Child) -> Result<u64, RestoreError> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    super::mm::open_in(child, "/dev/tty", flags)
}

fn ioctl_then_close(
    child: &Child,
    fd: u64,
    name: &'static str,
    req: u64,
    arg: u64,
) -> Result<(), RestoreError> {
    let r = child.remote().call(name, libc::SYS_ioctl, &[fd, req, arg]);
    child.remote().call("close", libc::SYS_close, &[fd])?;
    r.map(drop).map_err(Into::into)
}

/// Sets the foreground group of the session `leader` leads, if it is not the leader's
/// own group (which `TIOCSCTTY` made the foreground).
pub fn set_foreground(leader: &Child, tty: &TtyImage) -> Result<(), RestoreError> {
    let Some(s) = tty.session(leader.pid()) else {
        return Ok(());
    };
    if s.foreground == s.sid {
        return Ok(());
    }
    let fd = open_own(leader)?;
    let arg = leader.put(0, &s.foreground.to_ne_bytes())?;
    ioctl_then_close(leader, fd, "ioctl(TIOCSPGRP)", TIOCSPGRP, arg)
}
