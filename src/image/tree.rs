//! The process tree record: who is whose parent, sessions, process groups, zombies, and
//! which kernel objects a process shares with its parent. Per-process state is in the
//! `task`/`mm`/`files` records; this one holds what ties the processes together.

use serde::{Deserialize, Serialize};

/// `tree.img`: every process of the dumped tree, zombies included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeImage {
    /// Depth-first pre-order from the root (every parent before its children): the order
    /// of dump, and of restore.
    pub processes: Vec<ProcEntry>,
    /// The terminal of a shell job (`--shell-job`) as its root saw it; `None` without
    /// `--shell-job` or when the root has no controlling terminal among its fds.
    pub terminal: Option<JobTerminal>,
}

/// A tree record of format 6 and older (no `terminal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeImageV6 {
    pub processes: Vec<ProcEntry>,
}

impl From<TreeImageV6> for TreeImage {
    fn from(old: TreeImageV6) -> Self {
        TreeImage {
            processes: old.processes,
            terminal: None,
        }
    }
}

/// The controlling terminal of a shell job: what the job set on it, put on the
/// restorer's terminal so the job carries on there (`dump/terminal.rs`,
/// `restore/terminal.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTerminal {
    /// Its foreground process group (`tcgetpgrp`, stat field `tpgid`) at dump time.
    pub foreground: i32,
    /// Its kernel `struct termios` (`TCGETS`): a shell's line editor runs it without
    /// echo or canonical mode, and expects to find it so.
    pub termios: Vec<u8>,
}

/// One process of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcEntry {
    pub pid: i32,
    /// `/proc/PID/comm` (what a zombie is still listed as).
    pub comm: String,
    /// The parent at dump time; the root's is outside the tree.
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The signal the parent gets when this process exits (stat field 38, normally SIGCHLD).
    pub exit_signal: i32,
    pub state: ProcState,
    /// Shares its parent's fd table (`CLONE_FILES`): no fd table of its own.
    pub shares_files: bool,
    /// Shares its parent's cwd, root and umask (`CLONE_FS`).
    pub shares_fs: bool,
}

/// Whether the process runs or only waits to be reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcState {
    /// A live process with `task`/`mm`/`files`/`pages` records.
    Alive {
        /// It was stopped by job control (SIGSTOP and friends): it is stopped again after
        /// restore.
        stopped: bool,
    },
    /// A zombie: only its ids and its wait status (as `waitpid` reports it) are kept.
    Zombie { status: i32 },
}

impl TreeImage {
    pub fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// The live processes, in tree order.
    pub fn alive(&self) -> impl Iterator<Item = &ProcEntry> {
        self.processes
            .iter()
            .filter(|p| matches!(p.state, ProcState::Alive { .. }))
    }

    pub fn children(&self, pid: i32) -> impl Iterator<Item = &ProcEntry> {
        self.processes.iter().skip(1).filter(move |p| p.ppid == pid)
    }
}
