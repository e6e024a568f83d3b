//! Pseudo-terminals created inside the process: a master (`/dev/ptmx`) with the slave's
//! termios, window size, lock and packet mode, and the slaves (`/dev/pts/N`) whose master
//! the process holds. A slave whose master is elsewhere is the invoking terminal
//! (`--shell-job`, in `files.rs`).
//!
//! Buffered data — input written to the master and not yet read from the slave, output
//! written to the slave and not yet read from the master — has no peek: when the process
//! holds a slave, both are read through duplicates of its fds with the pair switched to
//! raw mode, then written back the same way and the termios put back, so the task keeps
//! them (a partial canonical line written back is readable as one line). Without a slave
//! fd no data is read (opening one would change the pair's hang-up state).
//! The restore side is `restore/files/pty.rs`.

use std::os::fd::{AsFd, BorrowedFd};

use super::sock::SockCtx;
use crate::dump::DumpError;
use crate::image::files::FdKind;
use crate::image::sock::{raw_termios, refill_termios, visible_input, PtyMaster};
use crate::sys::socket::{
    ioctl_buf, ioctl_get_int, TCGETS, TCSETS, TERMIOS_LEN, TIOCGPKT, TIOCGPTLCK, TIOCGWINSZ,
};

/// Major numbers of Unix98 pty slaves.
const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

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
    let (input, output) = match ctx.slaves.get(&index).copied() {
        Some(slave_fd) => {
            let slave = ctx.steal(slave_fd)?;
            buffered(m, slave.as_fd(), &termios)
                .map_err(|e| err(format!("read buffered data: {e}")))?
        }
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

pub fn slave_kind(ctx: &SockCtx<'_>, index: u32) -> Option<FdKind> {
    ctx.masters
        .contains_key(&index)
        .then_some(FdKind::PtySlave { index })
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
    let back = put_back(
        master,
        slave,
        input.as_deref().unwrap_or(&[]),
        output.as_deref().unwrap_or(&[]),
        termios,
    );
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
    while pending(fd)? > 0 {
        let n = nix::unistd::read(fd, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// Writes the bytes back where they were and waits until the line discipline has them
/// (writes reach it asynchronously; the termios must not change before).
fn put_back(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    input: &[u8],
    output: &[u8],
    termios: &[u8],
) -> nix::Result<()> {
    write_all(master, input)?;
    write_all(slave, output)?;
    for _ in 0..2000 {
        if pending(slave)? as usize >= visible_input(termios, input)
            && pending(master)? as usize >= output.len()
        {
            // A partial canonical line is not counted: it came in the same write as
            // the lines before it; give the line discipline a moment for it anyway.
            std::thread::sleep(std::time::Duration::from_millis(5));
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    Err(nix::errno::Errno::ETIMEDOUT)
}

/// `FIONREAD`: bytes readable now.
fn pending(fd: BorrowedFd<'_>) -> nix::Result<i32> {
    ioctl_get_int(fd, libc::FIONREAD)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}
