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
    /// Shares its parent's address space (`CLONE_VM` without being a thread of it): it
    /// has no `mm`/`pages` records of its own, its parent's (or, up a chain of sharers,
    /// the first one's) hold the memory and the mm fields.
    pub shares_vm: bool,
    /// Shares its parent's signal handler table (`CLONE_SIGHAND`, which implies
    /// `shares_vm`): its task record lists no sigactions, its parent's does.
    pub shares_sighand: bool,
}

/// Whether the process runs or only waits to be reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcState {
    /// A live process with `task`/`mm`/`files`/`pages` records.
    Alive {
        /// 0: running. Else stopped by job control: the signal that stopped it (SIGSTOP,
        /// SIGTSTP, SIGTTIN, SIGTTOU), with which it is stopped again after restore; 1 is
        /// a version 8 image's `stopped: true` (same byte), taken as SIGSTOP.
        stop_signal: u8,
    },
    /// A zombie: only its ids and its wait status (as `waitpid` reports it) are kept.
    Zombie { status: i32 },
    /// No process: the id of a process group whose leader had exited (and been reaped)
    /// while members lived on. The restore creates a helper with this pid, forked by the
    /// entry's parent (that of the group's first member), to lead the group while its
    /// members join; then it exits and its parent reaps it, unaware (as CRIU's helpers).
    GroupHelper,
    /// No process: the id of a session whose leader had exited (and been reaped) while
    /// members lived on, children of a reaper outside it (a pid namespace init or a child
    /// subreaper, the entry's parent). The restore creates a helper with this pid, forked
    /// by that reaper, which calls `setsid` and forks the members (`image/forks.rs`);
    /// then it exits, its parent reaps it unaware, and the members are the reaper's.
    /// Format version 15.
    SessionHelper,
    /// No process: a helper with a pid no task of the tree had, standing for nothing of
    /// the dump. Members of a session whose leader lives elsewhere in the tree (not their
    /// sibling) were left to a reaper outside the session (their parent): the restore
    /// forks this helper from the leader with `CLONE_PARENT` (a child of the leader's
    /// parent, in the leader's session, whose group it shares: `sid`, `pgid`), it forks
    /// the members, then exits and is reaped unaware by its parent; the members go to
    /// the reaper (`image/forks.rs`). Format version 16.
    SessionForker,
}

impl ProcState {
    /// A live process, stopped by `stop_signal` if any.
    pub fn alive(stop_signal: Option<i32>) -> ProcState {
        let stop_signal = stop_signal.map_or(0, |s| u8::try_from(s).unwrap_or(0));
        ProcState::Alive { stop_signal }
    }

    /// The signal that stopped a live process by job control.
    pub fn stop_signal(&self) -> Option<i32> {
        match *self {
            ProcState::Alive { stop_signal: 0 }
            | ProcState::Zombie { .. }
            | ProcState::GroupHelper
            | ProcState::SessionHelper
            | ProcState::SessionForker => None,
            ProcState::Alive { stop_signal: 1 } => Some(libc::SIGSTOP),
            ProcState::Alive { stop_signal } => Some(i32::from(stop_signal)),
        }
    }
}

impl TreeImage {
    /// The process whose `mm`/`pages` records describe the address space of `pid`: `pid`
    /// itself, or up its parents as long as each shares the address space with its parent.
    pub fn mm_owner(&self, pid: i32) -> i32 {
        let mut at = pid;
        while let Some(e) = self.get(at).filter(|e| e.shares_vm) {
            at = e.ppid;
        }
        at
    }

    pub fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// Whether `pid` is a helper of the restore, no process of the dumped tree.
    pub fn is_helper(&self, pid: i32) -> bool {
        self.get(pid).is_some_and(|e| {
            matches!(
                e.state,
                ProcState::GroupHelper | ProcState::SessionHelper | ProcState::SessionForker
            )
        })
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

/// The tree record of format versions 5 and 6: no `terminal`, no `shares_vm` and
/// `shares_sighand` in its entries.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub struct TreeImageV6 {
    processes: Vec<ProcEntryV6>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ProcEntryV6 {
    pid: i32,
    comm: String,
    ppid: i32,
    pgid: i32,
    sid: i32,
    exit_signal: i32,
    state: ProcState,
    shares_files: bool,
    shares_fs: bool,
}

/// `$to { the fields both versions of an entry have, from $e, $($rest)* }`.
macro_rules! entry_fields {
    ($to:ident, $e:expr, $($rest:tt)*) => {
        $to {
            pid: $e.pid,
            comm: $e.comm.clone(),
            ppid: $e.ppid,
            pgid: $e.pgid,
            sid: $e.sid,
            exit_signal: $e.exit_signal,
            state: $e.state,
            shares_files: $e.shares_files,
            shares_fs: $e.shares_fs,
            $($rest)*
        }
    };
}

impl From<TreeImageV6> for TreeImage {
    fn from(old: TreeImageV6) -> Self {
        let processes = old
            .processes
            .iter()
            .map(|e| entry_fields!(ProcEntry, e, shares_vm: false, shares_sighand: false))
            .collect();
        TreeImage {
            processes,
            terminal: None,
        }
    }
}

/// A current tree as version 6 wrote it (sharing flags dropped), for tests of old images.
#[cfg(test)]
impl From<&TreeImage> for TreeImageV6 {
    fn from(tree: &TreeImage) -> Self {
        let processes = tree
            .processes
            .iter()
            .map(|e| entry_fields!(ProcEntryV6, e,))
            .collect();
        TreeImageV6 { processes }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::file::{encode, read_since, Kind, FORMAT_VERSION};
    use crate::image::sample;

    fn read_tree(bytes: &[u8]) -> TreeImage {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        read_since::<_, TreeImageV6>(Kind::Tree, file.path(), 7).unwrap()
    }

    /// A version 6 tree (no `shares_vm`/`shares_sighand`) reads as sharing neither.
    #[test]
    fn version_6_tree_reads_as_sharing_no_address_space() {
        let mut tree = sample::tree(&[10, 11]);
        tree.processes[1].shares_files = true;
        let old = TreeImageV6::from(&tree);
        let mut bytes = encode(Kind::Tree, &old).unwrap();
        crate::image::file::set_version(&mut bytes, 6);
        assert_eq!(read_tree(&bytes), tree);
        tree.processes[1].shares_vm = true;
        let current = encode(Kind::Tree, &tree).unwrap();
        assert_eq!(&current[12..16], &FORMAT_VERSION.to_le_bytes());
        assert_eq!(read_tree(&current), tree);
    }
}
