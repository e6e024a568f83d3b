//! The shell job's terminal, the restore side of `dump/terminal.rs`: the restorer's
//! terminal gets the termios the job left on its old one, and the job's foreground
//! process group becomes the foreground again, so a shell's line editor finds its mode
//! and reads without `SIGTTIN`/`EIO`, and the keyboard's signals reach the right job.
//!
//! Both are asked by the root itself (it is in the restorer's session, whose controlling
//! terminal this is), while it blocks every signal: the kernel then lets a process outside
//! the foreground group change them, where it would otherwise stop it with `SIGTTOU`.

use super::child::Child;
use super::files::terminal_in_child;
use super::tree::current_pgid;
use super::RestoreError;
use crate::image::tree::TreeImage;
use crate::sys::socket::TCSETS;

/// `TIOCSPGRP`: set the foreground process group of a terminal (`tcsetpgrp`).
const TIOCSPGRP: u64 = 0x5410;

/// Scratch offset of the ioctl arguments (the root runs nothing else meanwhile).
const ARG_OFF: u64 = 0;

/// Ordering requirements: after every process joined its group (the foreground group
/// must exist), before any process runs.
pub fn restore(tree: &TreeImage, root: &Child) -> Result<(), RestoreError> {
    let Some(term) = &tree.terminal else {
        return Ok(());
    };
    let fd = terminal_in_child(root, 0)?;
    let set = set_terminal(root, fd, &term.termios, foreground(tree, term.foreground)?);
    root.remote().call("close", libc::SYS_close, &[fd])?;
    set
}

fn set_terminal(
    root: &Child,
    fd: u64,
    termios: &[u8],
    foreground: Option<i32>,
) -> Result<(), RestoreError> {
    let arg = root.put(ARG_OFF, termios)?;
    root.remote()
        .call("ioctl(TCSETS)", libc::SYS_ioctl, &[fd, TCSETS, arg])?;
    if let Some(pgid) = foreground {
        let arg = root.put(ARG_OFF, &pgid.to_ne_bytes())?;
        root.remote()
            .call("ioctl(TIOCSPGRP)", libc::SYS_ioctl, &[fd, TIOCSPGRP, arg])?;
    }
    Ok(())
}

/// The group to bring to the foreground: the saved one if the tree has it; the root's
/// group now if the root's group from outside (`--shell-job`) was in the foreground;
/// none if the foreground was some other job of the old terminal.
fn foreground(tree: &TreeImage, saved: i32) -> Result<Option<i32>, RestoreError> {
    let root = &tree.processes[0];
    if tree.processes.iter().any(|p| p.pgid == saved) && tree.get(saved).is_some() {
        return Ok(Some(saved));
    }
    if saved == root.pgid {
        return current_pgid(root.pid).map(Some);
    }
    Ok(None)
}
