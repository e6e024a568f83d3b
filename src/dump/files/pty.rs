//! Pseudo-terminals created inside the tree: a master (`/dev/ptmx`) with the slave's
//! termios, window size, lock and packet mode, and the slaves (`/dev/pts/N`) whose master
//! a process of the tree holds — the same process or another (a terminal multiplexer
//! keeps the master, its children use the slave) — or whose master was closed (the slave
//! is hung up, its node deleted). A slave whose master is outside the tree is the
//! invoking terminal (`--shell-job`, in `chardev.rs`). The node's owner and mode, and the
//! sessions the pty controls, are `dump/tty.rs`.
//!
//! Buffered data — input written to the master and not yet read from the slave, output
//! written to the slave and not yet read from the master — has no peek: when a process
//! of the tree holds a slave, both are read through duplicates of the master and that
//! slave with the pair switched to raw mode, then written back the same way and the
//! termios put back, so the task keeps them (a partial canonical line written back is
//! readable as one line). Without a slave fd no data is read (opening one would change
//! the pair's hang-up state).
//! The restore side is `restore/files/pty.rs` and `restore/tty.rs`.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::sock::SockCtx;
use super::{FdOptions, OpenFd};
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{raw_termios, refill_termios, visible_input, PtyMaster};
use crate::proc;
use crate::sys::socket::{
    ioctl_buf, ioctl_get_int, pty_refill, readable, TCGETS, TCSETS, TERMIOS_LEN, TIOCGPKT,
    TIOCGPTLCK, TIOCGWINSZ,
};

/// Major numbers of Unix98 pty slaves.
const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

/// Where the tree holds each pty: the first `(pid, fd)` of its master and of a slave,
/// by pts number (read once per dump, when a pty is first met).
#[derive(Clone, Debug, Default)]
pub struct TreePtys {
    pub masters: HashMap<u32, (i32, i32)>,
    pub slaves: HashMap<u32, (i32, i32)>,
}

impl TreePtys {
    /// Every fd of `pids` on a pty.
    pub fn read(pids: &[i32]) -> TreePtys {
        let mut t = TreePtys::default();
        for &pid in pids {
            let Ok(dir) = proc::FdDir::open(pid) else {
                continue;
            };
            for fd in proc::fds(pid).unwrap_or_default() {
                let Ok(link) = dir.link(fd) else { continue };
                if is_master(&link.to_string_lossy()) {
                    if let Some(index) = dir.info(fd).ok().and_then(|i| master_index(&i.extra)) {
                        t.masters.entry(index).or_insert((pid, fd));
                    }
                } else if let Some(index) = dir.stat(fd).ok().and_then(|s| slave_index(s.st_rdev)) {
                    t.slaves.entry(index).or_insert((pid, fd));
                }
            }
        }
        t
    }
}

/// `/dev/ptmx` as a link target (from the host's /dev or a devpts mount).
pub fn is_master(target: &str) -> bool {
    target == "/dev/ptmx" || target.ends_with("/pts/ptmx")
}

/// The pts number of a slave device, if `rdev` is one.
pub fn slave_index(rdev: u64) -> Option<u32> {
    let major = libc::major(rdev);
    PTS_MAJORS
        .contains(&major)
        .then(|| (major - 136) * 256 + libc::minor(rdev))
}

/// `tty-index:` of a master's fdinfo.
pub fn master_index(extra: &[(String, String)]) -> Option<u32> {
    extra
        .iter()
        .find(|(k, _)| k == "tty-index")
        .and_then(|(_, v)| v.parse().ok())
}

pub fn master_kind(ctx: &mut SockCtx<'_>, fd: i32, index: u32) -> Result<FdKind, DumpError> {
    let pid = ctx.pid;
    if let Some(&first) = ctx.masters.get(&index).filter(|&&f| f != fd) {
        return Ok(FdKind::Dup { of: first });
    }
    let err = |what: String| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} (pty master of /dev/pts/{index}): {what}"
        ))
    };
    let master = ctx.steal(fd)?;
    let m = master.as_fd();
    let mut termios = vec![0u8; TERMIOS_LEN];
    ioctl_buf(m, TCGETS, &mut termios).map_err(|e| err(format!("TCGETS: {e}")))?;
    let mut ws = [0u8; 8];
    ioctl_buf(m, TIOCGWINSZ, &mut ws).map_err(|e| err(format!("TIOCGWINSZ: {e}")))?;
    let winsize = std::array::from_fn(|i| u16::from_ne_bytes([ws[2 * i], ws[2 * i + 1]]));
    let locked = ioctl_get_int(m, TIOCGPTLCK).map_err(|e| err(format!("TIOCGPTLCK: {e}")))? != 0;
    let packet_mode = ioctl_get_int(m, TIOCGPKT).map_err(|e| err(format!("TIOCGPKT: {e}")))? != 0;
    let (input, output) = match a_slave(ctx, index)? {
        Some(slave) => buffered(m, slave.as_fd(), &termios)
            .map_err(|e| err(format!("read buffered data: {e}")))?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(FdKind::PtyMaster(Box::new(PtyMaster {
        index,
        termios,
        winsize,
        locked,
        packet_mode,
        input,
        output,
    })))
}

/// A duplicate of a slave of pts `index` that this process or another of the tree holds.
fn a_slave(ctx: &mut SockCtx<'_>, index: u32) -> Result<Option<OwnedFd>, DumpError> {
    if let Some(&fd) = ctx.slaves.get(&index) {
        return ctx.steal(fd).map(Some);
    }
    let Some(&(pid, fd)) = ctx.opts.tree_ptys().slaves.get(&index) else {
        return Ok(None);
    };
    let dup = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))
        .and_then(|pidfd| crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd))
        .map_err(|e| {
            DumpError::unsupported(format!("duplicate fd {fd} of pid {pid} (pts {index}): {e}"))
        })?;
    Ok(Some(dup))
}

/// `stat` of the slave node of the master at fd `fd` of `pid`, reached through the
/// master itself (`TIOCGPTPEER` with `O_PATH`: the tty is not opened, so the pair's
/// hang-up state is untouched): its owner, mode and devpts instance (`st_dev`), whatever
/// is mounted at its path now. `ENODEV`: its devpts is no longer the one beside the
/// `ptmx` it was opened by.
pub fn master_node(pid: i32, fd: i32) -> nix::Result<nix::sys::stat::FileStat> {
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
    let master = crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)?;
    let flags = libc::O_PATH | libc::O_NOCTTY | libc::O_CLOEXEC;
    let node = crate::sys::socket::open_pty_peer(master.as_fd(), flags)?;
    nix::sys::stat::fstat(node.as_fd())
}

/// A slave whose master this process or another of the tree holds, or whose master was
/// closed (its node is deleted: no one can hold it); `None` for the slave of a master
/// outside the tree.
pub fn slave_kind(open: &OpenFd, opts: &FdOptions, index: u32) -> Option<FdKind> {
    let ours = opts.tree_ptys().masters.contains_key(&index);
    (ours || open.target.ends_with(" (deleted)")).then_some(FdKind::PtySlave { index })
}

/// Reads both directions' buffered bytes in raw mode and writes them back.
fn buffered(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    termios: &[u8],
) -> nix::Result<(Vec<u8>, Vec<u8>)> {
    let mut raw = raw_termios(termios);
    ioctl_buf(master, TCSETS, &mut raw)?;
    let input = drain(slave);
    let output = drain(master);
    let mut refill = refill_termios(termios);
    ioctl_buf(master, TCSETS, &mut refill)?;
    let (i, o) = (
        input.as_deref().unwrap_or(&[]),
        output.as_deref().unwrap_or(&[]),
    );
    let back = pty_refill(master, slave, i, o, visible_input(termios, i));
    let mut orig = termios.to_vec();
    ioctl_buf(master, TCSETS, &mut orig)?;
    back?;
    Ok((input?, output?))
}

/// Reads what is readable now, never blocking on the target's fd (whose `O_NONBLOCK`
/// we must not change): only as many bytes as `FIONREAD` reports.
fn drain(fd: BorrowedFd<'_>) -> nix::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while readable(fd)? > 0 {
        let n = nix::unistd::read(fd, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}
