//! Terminals the tree created, once every fd table is known: each pty's node (owner,
//! mode, exclusive mode, hung up or not) and the controlling terminal of every session
//! led in the tree, with its foreground group and the session's processes that have
//! none. Written to `tty.img`; the restore side is `restore/tty.rs`. The pairs themselves
//! are fd records (`files/pty.rs`); a shell job's terminal is `terminal.rs`.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::files::chardev::{ctty, reached};
use super::files::pty::{master_node, slave_index};
use super::DumpError;
use crate::image::files::{FdKind, FilesImage};
use crate::image::tree::{ProcEntry, TreeImage};
use crate::image::tty::{Ctty, PtyNode, SessionTty, TtyImage};
use crate::sys::socket::{ioctl_get_int, TIOCGEXCL};

/// The terminals of the tree whose live processes' fd tables are `tables`, and the
/// ptys whose master is outside it (`(index, pid, fd)` of a slave fd of each, for
/// `orphan_pty.rs`). Under `--shell-job` the root's session is the job's (`terminal.rs`).
pub fn collect(
    tree: &TreeImage,
    tables: &[(i32, FilesImage)],
    shell_job: bool,
) -> Result<(TtyImage, Vec<OrphanSlave>), DumpError> {
    check_dev_tty(tables)?;
    let mut held = held_ptys(tables);
    let mut orphans = Vec::new();
    for (&index, h) in held.iter_mut() {
        if let Some(&(pid, fd)) = h.slaves.first().filter(|_| h.master.is_none()) {
            h.outside = !crate::proc::link(pid, &format!("fd/{fd}"))?
                .to_string_lossy()
                .ends_with(" (deleted)");
            if h.outside {
                orphans.push((index, pid, fd));
            }
        }
    }
    let mut sessions = Vec::new();
    for leader in tree.alive().filter(|e| e.sid == e.pid) {
        if shell_job && leader.pid == tree.processes[0].pid {
            continue;
        }
        if let Some(s) = session(tree, leader, tables, &held)? {
            sessions.push(s);
        }
    }
    let mut ptys = Vec::new();
    for (&index, fds) in &held {
        ptys.push(node(index, fds)?);
    }
    Ok((TtyImage { ptys, sessions }, orphans))
}

/// Every `/dev/tty` the tree opened (an original, not one inherited) reaches its
/// holder's controlling terminal, which the restore reopens it as.
fn check_dev_tty(tables: &[(i32, FilesImage)]) -> Result<(), DumpError> {
    for (pid, files) in tables {
        for e in files
            .fds
            .iter()
            .filter(|e| e.kind == FdKind::ControllingTty)
        {
            let fd = e.fd;
            let reached = reached(*pid, fd).map_err(|e| {
                DumpError::unsupported(format!("fd {fd} of pid {pid} (/dev/tty): TIOCGDEV: {e}"))
            })?;
            if ctty(*pid)? != Some(reached) {
                return Err(DumpError::unsupported(format!(
                    "fd {fd} of pid {pid} is /dev/tty of terminal {}:{}, which is no longer its controlling terminal; stasis cannot reopen it",
                    libc::major(reached),
                    libc::minor(reached)
                )));
            }
        }
    }
    Ok(())
}

/// `(index, pid, fd)`: a slave fd of a pty whose master is outside the tree.
pub type OrphanSlave = (u32, i32, i32);

/// Where the tree holds each pty: its master (if any process does) and its slaves, as
/// `(pid, fd)` originals.
#[derive(Default)]
struct Held {
    master: Option<(i32, i32)>,
    slaves: Vec<(i32, i32)>,
    /// Its master is open outside the tree (the slave's node still exists).
    outside: bool,
}

fn held_ptys(tables: &[(i32, FilesImage)]) -> BTreeMap<u32, Held> {
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    for (pid, files) in tables {
        for e in &files.fds {
            match &e.kind {
                FdKind::PtyMaster(m) => {
                    held.entry(m.index).or_default().master = Some((*pid, e.fd))
                }
                FdKind::PtySlave { index } => {
                    held.entry(*index).or_default().slaves.push((*pid, e.fd))
                }
                _ => {}
            }
        }
    }
    held
}

/// The node of pts `index`, seen through a slave fd of the tree, or else by its path
/// beside the master's `ptmx`.
fn node(index: u32, held: &Held) -> Result<PtyNode, DumpError> {
    let err = |what: String| DumpError::unsupported(format!("pts {index} of the tree: {what}"));
    let hung_up = held.master.is_none() && !held.outside;
    let (meta, exclusive) = match (held.slaves.first(), held.master) {
        (Some(&(pid, fd)), _) => {
            let path = format!("/proc/{pid}/fd/{fd}");
            let meta = std::fs::metadata(&path).map_err(|e| err(format!("stat {path}: {e}")))?;
            (
                (meta.uid(), meta.gid(), meta.mode()),
                !hung_up && exclusive(pid, fd).map_err(|e| err(format!("TIOCGEXCL: {e}")))?,
            )
        }
        (None, Some((pid, fd))) => {
            let st = master_node(pid, fd)
                .map_err(|e| err(format!("stat the slave node of fd {fd} of pid {pid}: {e}")))?;
            ((st.st_uid, st.st_gid, st.st_mode), false)
        }
        (None, None) => return Err(err("no fd holds it".into())),
    };
    let (uid, gid, mode) = meta;
    Ok(PtyNode {
        index,
        uid,
        gid,
        mode: mode & 0o7777,
        exclusive,
        hung_up,
    })
}

/// `TIOCGEXCL` through a duplicate of fd `fd` of `pid` (a slave).
fn exclusive(pid: i32, fd: i32) -> nix::Result<bool> {
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
    let dup = crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)?;
    Ok(ioctl_get_int(dup.as_fd(), TIOCGEXCL)? != 0)
}

/// The controlling terminal of the session `leader` leads, if it has one.
fn session(
    tree: &TreeImage,
    leader: &ProcEntry,
    tables: &[(i32, FilesImage)],
    held: &BTreeMap<u32, Held>,
) -> Result<Option<SessionTty>, DumpError> {
    let sid = leader.pid;
    let members: Vec<&ProcEntry> = tree.alive().filter(|e| e.sid == sid).collect();
    let Some(dev) = ctty(sid)? else {
        // The leader's was read just above.
        let mut others = members.iter().filter(|e| e.pid != sid);
        if let Some(e) = others.find(|e| matches!(ctty(e.pid), Ok(Some(_)))) {
            return Err(DumpError::unsupported(format!(
                "pid {} has a controlling terminal that the leader of its session, pid {sid}, has not; stasis cannot rebuild that",
                e.pid
            )));
        }
        return Ok(None);
    };
    let tty = which(sid, dev, &members, tables, held)?;
    let mut without = Vec::new();
    for e in members.iter().filter(|e| e.pid != sid) {
        match ctty(e.pid)? {
            None => without.push(e.pid),
            Some(d) if d == dev => {}
            Some(_) => {
                return Err(DumpError::unsupported(format!(
                "pid {} has another controlling terminal than the leader of its session, pid {sid}",
                e.pid
            )))
            }
        }
    }
    Ok(Some(SessionTty {
        sid,
        tty,
        foreground: foreground(tree, sid)?,
        without,
    }))
}

/// The terminal `dev` as the restore reaches it: a pty of the tree, or a device node an
/// fd of the session opened.
fn which(
    sid: i32,
    dev: u64,
    members: &[&ProcEntry],
    tables: &[(i32, FilesImage)],
    held: &BTreeMap<u32, Held>,
) -> Result<Ctty, DumpError> {
    let name = format!("{}:{}", libc::major(dev), libc::minor(dev));
    if let Some(index) = slave_index(dev) {
        if held
            .get(&index)
            .is_some_and(|h| h.master.is_some() || h.outside)
        {
            return Ok(Ctty::Pty { index });
        }
        return Err(DumpError::unsupported(format!(
            "the controlling terminal of session {sid} is /dev/pts/{index}, whose master no process of the dumped tree holds; stasis cannot restore it"
        )));
    }
    let path = members.iter().find_map(|e| {
        let (_, files) = tables.iter().find(|(p, _)| *p == e.pid)?;
        files.fds.iter().find_map(|f| match &f.kind {
            FdKind::CharDev(c) if c.rdev == dev => Some(c.path.clone()),
            _ => None,
        })
    });
    match path {
        Some(path) => Ok(Ctty::Device { path, rdev: dev }),
        None => Err(DumpError::unsupported(format!(
            "the controlling terminal of session {sid} is device {name}, which no process of the session holds open by path; stasis cannot reopen it"
        ))),
    }
}

/// The terminal's foreground group (the leader's stat `tpgid`): one of the session's
/// groups in the tree.
fn foreground(tree: &TreeImage, sid: i32) -> Result<i32, DumpError> {
    let tpgid = crate::proc::stat(sid)?.tpgid;
    if tree
        .processes
        .iter()
        .any(|e| e.sid == sid && e.pgid == tpgid)
    {
        return Ok(tpgid);
    }
    Err(DumpError::unsupported(format!(
        "the foreground process group {tpgid} of the controlling terminal of session {sid} has no process in the dumped tree; stasis cannot restore it"
    )))
}
