//! The process tree and its terminals, as `stasis inspect` shows them.

use std::io::Write;

use crate::image::tree::{ProcEntry, ProcState, TreeImage};

/// `c_lflag` of kernel termios bytes (the fourth u32).
fn lflag(termios: &[u8]) -> u32 {
    termios
        .get(12..16)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

pub(super) fn tree(t: &TreeImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "tree: {} processes", t.processes.len())?;
    for e in &t.processes {
        let state = match e.state {
            ProcState::Alive { .. } => match e.state.stop_signal() {
                None => "running".to_string(),
                Some(sig) => format!("stopped by signal {sig}"),
            },
            ProcState::Zombie { status } => format!("zombie (wait status {status:#x})"),
            ProcState::GroupHelper => "group leader helper (exited at dump)".to_string(),
            ProcState::SessionHelper => "session leader helper (exited at dump)".to_string(),
            ProcState::SessionForker => {
                "session member forker (a helper of the restore)".to_string()
            }
        };
        let shares = shared_with_parent(e);
        writeln!(
            out,
            "  pid {} ({}) parent {} pgid {} sid {} {state}{shares}",
            e.pid, e.comm, e.ppid, e.pgid, e.sid
        )?;
    }
    if let Some(term) = &t.terminal {
        writeln!(
            out,
            "  shell job terminal: foreground group {}, lflag {:#x}",
            term.foreground,
            lflag(&term.termios)
        )?;
    }
    Ok(())
}

/// The tree's ptys and its sessions' controlling terminals (`tty.img`).
pub(super) fn terminals(
    t: &crate::image::tty::TtyImage,
    out: &mut impl Write,
) -> std::io::Result<()> {
    use crate::image::tty::Ctty;
    for p in &t.ptys {
        let hung = if p.hung_up { ", hung up" } else { "" };
        let excl = if p.exclusive { ", exclusive" } else { "" };
        writeln!(
            out,
            "  pts {}: owner {}:{} mode {:o}{excl}{hung}",
            p.index, p.uid, p.gid, p.mode
        )?;
    }
    for s in &t.sessions {
        let tty = match &s.tty {
            Ctty::Pty { index } => format!("pts {index}"),
            Ctty::Device { path, .. } => path.clone(),
        };
        writeln!(
            out,
            "  session {} controls {tty}, foreground group {}, without it: {:?}",
            s.sid, s.foreground, s.without
        )?;
    }
    Ok(())
}

/// `" shares fd table, fs with parent"`, or nothing.
fn shared_with_parent(e: &ProcEntry) -> String {
    let what: Vec<&str> = [
        (e.shares_files, "fd table"),
        (e.shares_fs, "fs"),
        (e.shares_vm, "address space"),
        (e.shares_sighand, "signal handlers"),
    ]
    .iter()
    .filter(|(shared, _)| *shared)
    .map(|(_, name)| *name)
    .collect();
    if what.is_empty() {
        String::new()
    } else {
        format!(" shares {} with parent", what.join(", "))
    }
}
