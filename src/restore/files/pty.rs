//! Pseudo-terminal pairs rebuilt in the child before the fd table is filled (see
//! `prep.rs`): a new master from `/dev/ptmx`, its slaves opened from it
//! (`TIOCGPTPEER`, no path), then buffered data, termios, window size, packet mode and
//! lock. The dump side is `dump/files/pty.rs`.
//!
//! `/dev/ptmx` hands out the lowest free pts number. To get the saved number back, masters
//! are opened (and kept) until it comes up or a higher one does; the extras are closed.
//! When the saved number is taken the pair gets another one: the process's fds point at
//! the new pair all the same, only `ptsname` differs.

use super::prep::{self, Prepared};
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::image::sock::{refill_termios, visible_input, PtyMaster};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::socket::{TCSETS, TIOCGPTN, TIOCGPTPEER, TIOCPKT, TIOCSPTLCK, TIOCSWINSZ};

/// At most this many extra masters are opened looking for the saved number.
const MAX_TRIES: usize = 64;

pub fn prepare(
    child: &Child,
    files: &FilesImage,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    for e in &files.fds {
        let FdKind::PtyMaster(m) = &e.kind else {
            continue;
        };
        pair(child, files, e, m, prepared).map_err(RestoreError::at_fd(pid, e.fd))?;
    }
    Ok(())
}

fn pair(
    child: &Child,
    files: &FilesImage,
    e: &FdEntry,
    m: &PtyMaster,
    prepared: &mut Prepared,
) -> Result<(), RestoreError> {
    let master = open_master(child, m.index, e.flags, prepared)?;
    ioctl_int(child, master, TIOCSPTLCK, 0)?;
    let mut first_slave = None;
    for s in files
        .fds
        .iter()
        .filter(|s| s.kind == FdKind::PtySlave { index: m.index })
    {
        let flags = (s.flags & (libc::O_ACCMODE | libc::O_NONBLOCK)) | libc::O_NOCTTY;
        let got = child.remote().call(
            "ioctl(TIOCGPTPEER)",
            libc::SYS_ioctl,
            &[master, TIOCGPTPEER, flags as u64],
        )?;
        let slave = prepared.park(child, got)?;
        prepared.assign(s.fd, slave);
        first_slave.get_or_insert(slave);
    }
    ioctl_buf(child, master, TCSETS, &refill_termios(&m.termios))?;
    if let Some(slave) = first_slave {
        write_all(child, slave, &m.output)?;
        write_all(child, master, &m.input)?;
        settle(child, master, slave, m)?;
    }
    ioctl_buf(child, master, TCSETS, &m.termios)?;
    let ws: Vec<u8> = m.winsize.iter().flat_map(|w| w.to_ne_bytes()).collect();
    ioctl_buf(child, master, TIOCSWINSZ, &ws)?;
    if m.packet_mode {
        ioctl_int(child, master, TIOCPKT, 1)?;
    }
    if m.locked {
        ioctl_int(child, master, TIOCSPTLCK, 1)?;
    }
    prep::set_fl(child, master, e.flags)?;
    prepared.assign(e.fd, master);
    Ok(())
}

/// A new master, with pts number `want` if it is free.
fn open_master(
    child: &Child,
    want: u32,
    flags: i32,
    prepared: &mut Prepared,
) -> Result<u64, RestoreError> {
    let oflags = (flags & libc::O_ACCMODE) | libc::O_NOCTTY;
    let mut extras = Vec::new();
    let mut found = None;
    for _ in 0..=MAX_TRIES {
        let got = super::super::mm::open_in(child, "/dev/ptmx", oflags)?;
        let fd = prepared.park(child, got)?;
        let index = ptn(child, fd)?;
        if index >= want || extras.len() == MAX_TRIES {
            found = Some(fd);
            break;
        }
        extras.push(fd);
    }
    for fd in extras {
        prepared.discard(child, fd)?;
    }
    Ok(found.expect("the loop always ends with a master"))
}

/// Waits until the line discipline holds the bytes written (they reach it
/// asynchronously, and must be there before the saved termios applies).
fn settle(child: &Child, master: u64, slave: u64, m: &PtyMaster) -> Result<(), RestoreError> {
    for _ in 0..2000 {
        if readable(child, slave)? >= visible_input(&m.termios, &m.input)
            && readable(child, master)? >= m.output.len()
        {
            // A partial canonical line is not counted (see the dump side).
            std::thread::sleep(std::time::Duration::from_millis(5));
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "buffered data of pty {} did not reach its line discipline",
            m.index
        ),
    })
}

/// `FIONREAD`.
fn readable(child: &Child, fd: u64) -> Result<usize, RestoreError> {
    let out = child.put(prep::ARG_OFF, &[0u8; 4])?;
    child.remote().call(
        "ioctl(FIONREAD)",
        libc::SYS_ioctl,
        &[fd, libc::FIONREAD, out],
    )?;
    let mut b = [0u8; 4];
    child.mem.read(out, &mut b)?;
    Ok(u32::from_ne_bytes(b) as usize)
}

fn ptn(child: &Child, fd: u64) -> Result<u32, RestoreError> {
    let out = child.put(prep::ARG_OFF, &[0u8; 4])?;
    child
        .remote()
        .call("ioctl(TIOCGPTN)", libc::SYS_ioctl, &[fd, TIOCGPTN, out])?;
    let mut b = [0u8; 4];
    child.mem.read(out, &mut b)?;
    Ok(u32::from_ne_bytes(b))
}

fn ioctl_int(child: &Child, fd: u64, req: u64, v: i32) -> Result<(), RestoreError> {
    ioctl_buf(child, fd, req, &v.to_ne_bytes())
}

fn ioctl_buf(child: &Child, fd: u64, req: u64, bytes: &[u8]) -> Result<(), RestoreError> {
    let arg = child.put(prep::ARG_OFF, bytes)?;
    child
        .remote()
        .call("ioctl", libc::SYS_ioctl, &[fd, req, arg])?;
    Ok(())
}

fn write_all(child: &Child, fd: u64, mut data: &[u8]) -> Result<(), RestoreError> {
    while !data.is_empty() {
        let n = data.len().min(prep::CHUNK);
        let addr = child.put(prep::DATA_OFF, &data[..n])?;
        let w = child
            .remote()
            .call("write", libc::SYS_write, &[fd, addr, n as u64])?;
        data = &data[w as usize..];
    }
    Ok(())
}
