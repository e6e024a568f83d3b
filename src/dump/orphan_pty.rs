//! The pty whose master is outside the tree (a container runtime's console), saved when
//! the front end will take a new master at restore (`orphan_pts_master`, CRIU's name):
//! its number, devpts instance, termios and window size, read through a slave the tree
//! holds. At most one, as CRIU allows. Written to `orphan-pty.img`; the restore side is
//! `restore/orphan_pty.rs`, the record `image::orphan_pty`.

use std::os::fd::AsFd;

use super::DumpError;
use crate::image::orphan_pty::{OrphanPty, OrphanPtyImage};
use crate::sys::socket::{ioctl_buf, TCGETS, TERMIOS_LEN, TIOCGWINSZ};

/// The record of the ptys whose slaves the tree holds without their master, given as
/// `(index, pid, fd)` of one slave fd each.
pub fn collect(slaves: &[(u32, i32, i32)]) -> Result<OrphanPtyImage, DumpError> {
    if let [a, b, ..] = slaves {
        return Err(DumpError::unsupported(format!(
            "pts {} and pts {} both have their master outside the tree; at most one (the \
             runtime's console) can be handed over",
            a.0, b.0
        )));
    }
    let ptys = slaves
        .iter()
        .map(|&(index, pid, fd)| one(index, pid, fd))
        .collect::<Result<_, _>>()?;
    Ok(OrphanPtyImage { ptys })
}

fn one(index: u32, pid: i32, fd: i32) -> Result<OrphanPty, DumpError> {
    let err = |what: String| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} (pts {index}, master outside the tree): {what}"
        ))
    };
    let target = crate::proc::link(pid, &format!("fd/{fd}"))?;
    let target = target.to_string_lossy();
    let devpts = match target.rsplit_once('/') {
        Some((dir, n)) if n == index.to_string() && dir.starts_with('/') => dir.to_string(),
        _ => return Err(err(format!("{target} is not a node of a devpts mount"))),
    };
    let slave = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))
        .and_then(|pidfd| crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd))
        .map_err(|e| err(format!("duplicate: {e}")))?;
    let mut termios = vec![0u8; TERMIOS_LEN];
    ioctl_buf(slave.as_fd(), TCGETS, &mut termios).map_err(|e| err(format!("TCGETS: {e}")))?;
    let mut ws = [0u8; 8];
    ioctl_buf(slave.as_fd(), TIOCGWINSZ, &mut ws).map_err(|e| err(format!("TIOCGWINSZ: {e}")))?;
    let winsize = std::array::from_fn(|i| u16::from_ne_bytes([ws[2 * i], ws[2 * i + 1]]));
    Ok(OrphanPty {
        index,
        devpts,
        termios,
        winsize,
    })
}
