//! `orphan-pty.img`: the pseudo-terminal of the tree whose master is outside it — a
//! container runtime's console (runc and podman keep the master of a `-t` container in
//! the runtime or conmon, and the container's processes hold only the slave). CRIU calls
//! it the orphan pts master. The record holds what the slave side tells: its number,
//! the devpts instance it lives in as the tree sees it, termios and window size. The
//! fds on it are `FdKind::PtySlave` records; the session it controls and its node's
//! owner and mode are in `tty.img`, as for a pty of the tree's own.
//!
//! The restore makes a new pair in that devpts instance with the same number and hands
//! the new master to the front end that asked for it (criu-compat's `orphan-pts-master`
//! notification, which runc passes to the container's console socket). Data the master
//! had buffered cannot be read without it and is not saved, as CRIU does not.
//! The dump side is `dump/orphan_pty.rs`, the restore side `restore/orphan_pty.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use crate::sys::socket::TERMIOS_LEN;

/// Name of the record file (absent: every pty of the tree had its master in it).
pub const ORPHAN_PTY: &str = "orphan-pty.img";

/// `orphan-pty.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanPtyImage {
    /// At most one (a runtime has one console per container).
    pub ptys: Vec<OrphanPty>,
}

/// The slave side of a pty whose master was outside the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanPty {
    /// The pts number (`/dev/pts/<index>` of its devpts instance).
    pub index: u32,
    /// The devpts mount as the tree's root sees it (`/dev/pts`): the new pair is made
    /// through its `ptmx`.
    pub devpts: String,
    /// The slave's `struct termios` as `TCGETS` returns it.
    pub termios: Vec<u8>,
    /// `struct winsize`: rows, cols, xpixel, ypixel.
    pub winsize: [u16; 4],
}

impl OrphanPtyImage {
    pub fn get(&self, index: u32) -> Option<&OrphanPty> {
        self.ptys.iter().find(|p| p.index == index)
    }
}

/// Impossible records: more than one pty, a devpts path that is not absolute, a termios
/// of another size.
pub fn validate(img: &OrphanPtyImage, path: &Path) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    if img.ptys.len() > 1 {
        return fail(format!("{} orphan ptys (at most one)", img.ptys.len()));
    }
    for p in &img.ptys {
        if !p.devpts.starts_with('/') || p.devpts.split('/').any(|c| c == "..") {
            return fail(format!("pts {}: devpts path {:?}", p.index, p.devpts));
        }
        if p.termios.len() != TERMIOS_LEN {
            return fail(format!(
                "pts {}: termios of {} bytes",
                p.index,
                p.termios.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pty(index: u32) -> OrphanPty {
        OrphanPty {
            index,
            devpts: "/dev/pts".into(),
            termios: vec![0; TERMIOS_LEN],
            winsize: [24, 80, 0, 0],
        }
    }

    #[test]
    fn one_console_is_valid_and_two_are_not() {
        let path = Path::new("orphan-pty.img");
        let one = OrphanPtyImage { ptys: vec![pty(0)] };
        assert!(validate(&one, path).is_ok());
        assert_eq!(one.get(0), Some(&pty(0)));
        let two = OrphanPtyImage {
            ptys: vec![pty(0), pty(1)],
        };
        assert!(validate(&two, path).is_err());
    }

    #[test]
    fn a_relative_devpts_or_short_termios_is_refused() {
        let path = Path::new("orphan-pty.img");
        let mut p = pty(0);
        p.devpts = "dev/pts".into();
        assert!(validate(&OrphanPtyImage { ptys: vec![p] }, path).is_err());
        let mut p = pty(0);
        p.termios.pop();
        assert!(validate(&OrphanPtyImage { ptys: vec![p] }, path).is_err());
    }
}
