//! `tty.img`: the terminals the dumped tree created itself — its pseudo-terminal nodes
//! (owner, mode, exclusive mode, whether their master is still open) and the controlling
//! terminal of every session it leads, with the foreground group and the processes of
//! the session that gave it up. The pairs' termios, window size and buffered data are
//! in the master's fd record (`image::sock::PtyMaster`). The dump side is
//! `dump/tty.rs`, the restore side `restore/tty.rs`; a shell job's terminal (outside the
//! tree) is `tree.img`'s `JobTerminal`.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::files::{FdKind, FilesImage};
use super::tree::TreeImage;

/// Name of the record (absent from images older than format 9, and read as empty).
pub const TTY: &str = "tty.img";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyImage {
    /// Every pts number an fd of the tree or a session's controlling terminal uses.
    pub ptys: Vec<PtyNode>,
    /// Sessions led in the tree that have a controlling terminal, in tree order.
    pub sessions: Vec<SessionTty>,
}

/// One pseudo-terminal of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyNode {
    /// The pts number at dump time.
    pub index: u32,
    /// Owner and permission bits of `/dev/pts/<index>` (`fchown`ed and `fchmod`ed
    /// again: a new node belongs to whoever opened the master).
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// `TIOCGEXCL` of the slave: no further open of it but by CAP_SYS_ADMIN.
    pub exclusive: bool,
    /// The master was closed (no fd of the tree holds it): the slaves the tree holds
    /// are hung up, reading end of file and failing writes.
    pub hung_up: bool,
}

/// The controlling terminal of a session led by a process of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTty {
    /// The session (its leader's pid).
    pub sid: i32,
    pub tty: Ctty,
    /// Its foreground process group (`tcgetpgrp`): a group of the session.
    pub foreground: i32,
    /// Processes of the session without a controlling terminal (they gave it up with
    /// `TIOCNOTTY`, or were forked before the leader acquired it), in tree order.
    pub without: Vec<i32>,
}

/// Which terminal a session controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ctty {
    /// A pseudo-terminal of the tree (`PtyNode::index`).
    Pty { index: u32 },
    /// Another terminal device (a virtual console, a serial line), opened by `path`.
    Device { path: String, rdev: u64 },
}

impl TtyImage {
    pub fn is_empty(&self) -> bool {
        self.ptys.is_empty() && self.sessions.is_empty()
    }

    pub fn pty(&self, index: u32) -> Option<&PtyNode> {
        self.ptys.iter().find(|p| p.index == index)
    }

    /// The session led by `pid`, if it has a controlling terminal.
    pub fn session(&self, pid: i32) -> Option<&SessionTty> {
        self.sessions.iter().find(|s| s.sid == pid)
    }
}

/// "Impossible values" of the record against the tree and the fd tables (`order`, in
/// tree order): unique pts numbers and sessions, sessions led by a process of the tree
/// with a foreground group of theirs, every pty a session controls or a slave refers to
/// recorded, and hung up exactly when no process holds its master. The masters of
/// `orphans` (`orphan-pty.img`) are held outside the tree: none inside.
pub fn check(
    tty: &TtyImage,
    tree: &TreeImage,
    order: &[(i32, &FilesImage)],
    orphans: &[u32],
    path: &Path,
) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    let mut seen = HashSet::new();
    if let Some(p) = tty.ptys.iter().find(|p| !seen.insert(p.index)) {
        return fail(format!("pts {} is recorded twice", p.index));
    }
    let mut masters = match ptys_held(order, |k| matches!(k, FdKind::PtyMaster(_))) {
        Ok(m) => m,
        Err(index) => return fail(format!("pts {index} has more than one master")),
    };
    for &index in orphans {
        if !masters.insert(index) {
            return fail(format!(
                "pts {index} has its master both inside and outside"
            ));
        }
    }
    let slaves = ptys_held(order, |k| matches!(k, FdKind::PtySlave { .. })).unwrap_or_default();
    for index in slaves {
        if !masters.contains(&index) && !tty.pty(index).is_some_and(|p| p.hung_up) {
            return fail(format!(
                "a slave of pts {index} has no master and is not hung up"
            ));
        }
    }
    if let Some(p) = tty
        .ptys
        .iter()
        .find(|p| p.hung_up && masters.contains(&p.index))
    {
        return fail(format!(
            "pts {} is hung up but a process holds its master",
            p.index
        ));
    }
    let mut sids = HashSet::new();
    for s in &tty.sessions {
        session(s, tree, &masters, &mut sids).or_else(fail)?;
    }
    Ok(())
}

fn session(
    s: &SessionTty,
    tree: &TreeImage,
    masters: &HashSet<u32>,
    sids: &mut HashSet<i32>,
) -> Result<(), String> {
    let sid = s.sid;
    if !sids.insert(sid) {
        return Err(format!("session {sid} has two controlling terminals"));
    }
    if !tree.alive().any(|e| e.pid == sid && e.sid == sid) {
        return Err(format!(
            "session {sid} is not led by a live process of the tree"
        ));
    }
    let in_session = |pid: i32| tree.get(pid).is_some_and(|e| e.sid == sid);
    if !tree
        .processes
        .iter()
        .any(|e| e.pgid == s.foreground && e.sid == sid)
    {
        return Err(format!(
            "the foreground group {} of session {sid} is not one of its groups",
            s.foreground
        ));
    }
    if let Some(pid) = s.without.iter().find(|&&p| p == sid || !in_session(p)) {
        return Err(format!(
            "pid {pid} is listed without the terminal of session {sid}"
        ));
    }
    match &s.tty {
        Ctty::Pty { index } if !masters.contains(index) => Err(format!(
            "session {sid} controls pts {index}, whose master no process holds"
        )),
        Ctty::Device { path, .. } if !path.starts_with('/') => Err(format!(
            "session {sid} controls a terminal at a relative path"
        )),
        _ => Ok(()),
    }
}

/// The pts numbers of the fds of kind `is` (`Err(index)`: a master held twice as an
/// original).
fn ptys_held(order: &[(i32, &FilesImage)], is: fn(&FdKind) -> bool) -> Result<HashSet<u32>, u32> {
    let mut out = HashSet::new();
    for (_, files) in order {
        for e in files.fds.iter().filter(|e| is(&e.kind)) {
            let index = match &e.kind {
                FdKind::PtyMaster(m) => m.index,
                FdKind::PtySlave { index } => *index,
                _ => continue,
            };
            if !out.insert(index) && matches!(e.kind, FdKind::PtyMaster(_)) {
                return Err(index);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::image::file::{decode, encode, Kind};
    use crate::image::files::FdEntry;
    use crate::image::sample;
    use crate::image::sock::PtyMaster;

    fn fd(fd: i32, kind: FdKind) -> FdEntry {
        FdEntry {
            fd,
            cloexec: false,
            flags: libc::O_RDWR,
            kind,
        }
    }

    fn master(index: u32) -> FdKind {
        FdKind::PtyMaster(Box::new(PtyMaster {
            index,
            termios: vec![0; 36],
            winsize: [24, 80, 0, 0],
            locked: false,
            packet_mode: false,
            input: Vec::new(),
            output: Vec::new(),
        }))
    }

    /// pids 10 (the master of pts 3) and 11 (a slave of it, leading its own session,
    /// whose terminal pts 3 is), and the record saying so.
    fn image() -> (TreeImage, Vec<(i32, FilesImage)>, TtyImage) {
        let mut tree = sample::tree(&[10, 11]);
        tree.processes[1].sid = 11;
        tree.processes[1].pgid = 11;
        let tables = vec![
            (
                10,
                FilesImage {
                    fds: vec![fd(3, master(3))],
                    ..FilesImage::default()
                },
            ),
            (
                11,
                FilesImage {
                    fds: vec![fd(0, FdKind::PtySlave { index: 3 })],
                    ..FilesImage::default()
                },
            ),
        ];
        let tty = TtyImage {
            ptys: vec![PtyNode {
                index: 3,
                uid: 1,
                gid: 5,
                mode: 0o620,
                exclusive: false,
                hung_up: false,
            }],
            sessions: vec![SessionTty {
                sid: 11,
                tty: Ctty::Pty { index: 3 },
                foreground: 11,
                without: Vec::new(),
            }],
        };
        (tree, tables, tty)
    }

    fn checked(
        tree: &TreeImage,
        tables: &[(i32, FilesImage)],
        tty: &TtyImage,
    ) -> Result<(), String> {
        let order: Vec<_> = tables.iter().map(|(p, f)| (*p, f)).collect();
        check(tty, tree, &order, &[], Path::new("tty.img")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_record_round_trips_and_checks() {
        let (tree, tables, tty) = image();
        let bytes = encode(Kind::Tty, &tty).unwrap();
        assert_eq!(
            decode::<TtyImage>(Kind::Tty, &bytes, Path::new("tty.img")).unwrap(),
            tty
        );
        checked(&tree, &tables, &tty).unwrap();
    }

    #[test]
    fn a_slave_without_master_must_be_hung_up_and_a_hung_up_pty_has_none() {
        let (tree, mut tables, mut tty) = image();
        tty.sessions.clear();
        tty.ptys[0].hung_up = true;
        let err = checked(&tree, &tables, &tty).unwrap_err();
        assert!(
            err.contains("pts 3 is hung up but a process holds its master"),
            "{err}"
        );
        tables[0].1.fds.clear();
        checked(&tree, &tables, &tty).unwrap();
        tty.ptys[0].hung_up = false;
        let err = checked(&tree, &tables, &tty).unwrap_err();
        assert!(
            err.contains("a slave of pts 3 has no master and is not hung up"),
            "{err}"
        );
    }

    #[test]
    fn a_session_terminal_needs_its_leader_its_group_and_a_master() {
        let (tree, tables, tty) = image();
        let mut t = tty.clone();
        t.sessions[0].sid = 12;
        let err = checked(&tree, &tables, &t).unwrap_err();
        assert!(
            err.contains("session 12 is not led by a live process of the tree"),
            "{err}"
        );
        let mut t = tty.clone();
        t.sessions[0].foreground = 10;
        let err = checked(&tree, &tables, &t).unwrap_err();
        assert!(
            err.contains("foreground group 10 of session 11 is not one of its groups"),
            "{err}"
        );
        let mut t = tty.clone();
        t.sessions[0].tty = Ctty::Pty { index: 4 };
        let err = checked(&tree, &tables, &t).unwrap_err();
        assert!(
            err.contains("controls pts 4, whose master no process holds"),
            "{err}"
        );
        let mut t = tty;
        t.sessions[0].without = vec![10];
        let err = checked(&tree, &tables, &t).unwrap_err();
        assert!(
            err.contains("pid 10 is listed without the terminal of session 11"),
            "{err}"
        );
    }
}
