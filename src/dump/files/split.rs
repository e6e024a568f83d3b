//! Objects whose open file descriptions are split across the processes of a tree: the
//! two ends of a pipe (a shell pipeline), two connected unix sockets (a socketpair made
//! before `fork`), a memfd or deleted file opened again. Runs once every process's table
//! is known and `Shared::link_files` turned the descriptions inherited from an earlier
//! process into [`FdKind::Inherited`].
//!
//! One rule, as inside a process: the first process in tree order that holds the object
//! creates it. Pipes and sockets: the descriptions other processes hold are built by that
//! first process too, at spare fds above its own ([`FilesImage::spares`]), and the other
//! processes take them from there (`Inherited`); the spares are closed once every process
//! has its fds. Memfds and deleted files: a later description is opened again through
//! `/proc/OWNER/fd/N` ([`FdKind::Reopen`]). A FIFO's bytes are refilled by the first
//! process only. Anything else split that cannot be rebuilt is refused, naming the pid,
//! the fd and the kind.

use std::collections::HashMap;

use crate::dump::shared::inode;
use crate::dump::DumpError;
use crate::image::files::{FdEntry, FdKind, FilesImage, PipeEnd};
use crate::image::sock::UnixPeer;

/// The files records of the live processes, in tree order.
pub type Tables = [(i32, FilesImage)];

/// Rewrites the tables so that every object split across processes is created once.
pub fn link(tables: &mut Tables) -> Result<(), DumpError> {
    pipes(tables)?;
    sockets(tables)?;
    reopen_files(tables)?;
    fifo_bytes_once(tables);
    flatten_inherited(tables);
    Ok(())
}

/// An original description: `(table index, fd)`.
type Desc = (usize, i32);

/// Each pipe's original descriptions (at most one per end), in tree then fd order; the
/// second one, held by a later process than the first, moves to the first as a spare.
fn pipes(tables: &mut Tables) -> Result<(), DumpError> {
    let mut by_pipe: HashMap<u64, Vec<Desc>> = HashMap::new();
    let mut order = Vec::new();
    for (i, (_, files)) in tables.iter().enumerate() {
        for (fd, key) in pipe_ends(files) {
            let descs = by_pipe.entry(key).or_default();
            if descs.is_empty() {
                order.push(key);
            }
            descs.push((i, fd));
        }
    }
    for key in order {
        match by_pipe[&key][..] {
            [(a, x), (b, y)] if a != b => move_pipe_end(tables, (a, x), (b, y))?,
            [_, _, (c, fd), ..] => {
                return Err(DumpError::unsupported(format!(
                    "fd {fd} of pid {} is a third open file description of a pipe held by other processes of the tree; stasis restores pipes with one description per end",
                    tables[c].0
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The pipe descriptions a table holds, in fd order, with the inode of their pipe: the
/// entry creating the pipe records it, its peer names that entry. (Every pipe lives on
/// the kernel's one pipefs: the inode alone names it.) A pipe in flight is left out: it
/// is checked to be held by no other process (`inflight.rs`).
fn pipe_ends(files: &FilesImage) -> Vec<(i32, u64)> {
    let created: HashMap<i32, u64> = files
        .fds
        .iter()
        .filter_map(|e| match &e.kind {
            FdKind::Pipe(p) => Some((e.fd, p.ino)),
            _ => None,
        })
        .collect();
    let ino = |e: &FdEntry| match &e.kind {
        FdKind::Pipe(p) => Some(p.ino),
        FdKind::PipePeer { of } => created.get(of).copied(),
        _ => None,
    };
    files
        .fds
        .iter()
        .filter(|e| !files.is_in_flight(e.fd))
        .filter_map(|e| Some((e.fd, ino(e)?)))
        .collect()
}

/// The end `y` of table `b` is built by table `a` (which creates the pipe at `x`) at a
/// spare fd, and taken by `b` from there.
fn move_pipe_end(tables: &mut Tables, (a, x): Desc, (b, y): Desc) -> Result<(), DumpError> {
    let (bpid, apid) = (tables[b].0, tables[a].0);
    let y_end = end_of(entry(&tables[b].1, y).flags);
    let creator = entry(&tables[a].1, x);
    let same_end = match &creator.kind {
        FdKind::Pipe(p) if p.peer.is_none() => Some(p.end) == y_end,
        _ => true,
    };
    if same_end {
        return Err(DumpError::unsupported(format!(
            "fd {y} of pid {bpid} is a pipe whose other open file description of the same end is fd {x} of pid {apid}; stasis restores pipes with one description per end"
        )));
    }
    let spare = move_to_spare(tables, (b, y), a, FdKind::PipePeer { of: x });
    if let FdKind::Pipe(p) = &mut entry_mut(&mut tables[a].1, x).kind {
        p.peer = Some(spare);
    }
    Ok(())
}

fn end_of(flags: i32) -> Option<PipeEnd> {
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => Some(PipeEnd::Read),
        libc::O_WRONLY => Some(PipeEnd::Write),
        _ => None,
    }
}

/// Unix sockets connected to each other across processes: every socket of a connected
/// group (peer links, both ways, and connections pending in a listener) is built by the
/// earliest process holding one of them.
fn sockets(tables: &mut Tables) -> Result<(), DumpError> {
    let mut at: HashMap<u64, Desc> = HashMap::new();
    let mut links: Vec<(u64, u64, Desc)> = Vec::new();
    for (i, (_, files)) in tables.iter().enumerate() {
        for e in &files.fds {
            if let FdKind::Unix(u) = &e.kind {
                at.insert(u.ino, (i, e.fd));
                if let UnixPeer::Socket { ino } | UnixPeer::Pending { listener: ino, .. } = u.peer {
                    links.push((u.ino, ino, (i, e.fd)));
                }
            }
        }
    }
    let mut owner: HashMap<u64, usize> = at.iter().map(|(&ino, &(i, _))| (ino, i)).collect();
    if let Some(&(_, peer, (i, fd))) = links.iter().find(|l| !owner.contains_key(&l.1)) {
        return Err(DumpError::unsupported(format!(
            "fd {fd} of pid {} is a unix socket connected to socket:[{peer}], which no process of the dumped tree holds through its own fd table",
            tables[i].0
        )));
    }
    lowest_in_group(&mut owner, &links);
    let mut moves: Vec<(Desc, usize)> = at
        .iter()
        .filter(|(ino, (i, _))| owner[*ino] != *i)
        .map(|(ino, &d)| (d, owner[ino]))
        .collect();
    moves.sort_unstable();
    for (from, to) in moves {
        let kind = entry(&tables[from.0].1, from.1).kind.clone();
        if let FdKind::Unix(u) = &kind {
            move_senders(tables, from.0, to, u.ino);
        }
        move_to_spare(tables, from, to, kind);
    }
    Ok(())
}

/// The senders of the queue of socket `ino` go with it to the table that builds it.
fn move_senders(tables: &mut Tables, from: usize, to: usize, ino: u64) {
    let senders = &mut tables[from].1.dgram_senders;
    let moved: Vec<_> = senders
        .iter()
        .filter(|s| s.socket == ino)
        .cloned()
        .collect();
    senders.retain(|s| s.socket != ino);
    tables[to].1.dgram_senders.extend(moved);
}

/// Gives every socket of a group (sockets joined by `links`) the smallest table index of
/// the group (groups are small: a few rounds).
fn lowest_in_group(owner: &mut HashMap<u64, usize>, links: &[(u64, u64, Desc)]) {
    let mut changed = true;
    while changed {
        changed = false;
        for &(s, p, _) in links {
            let low = owner[&s].min(owner[&p]);
            for ino in [s, p] {
                if owner[&ino] != low {
                    owner.insert(ino, low);
                    changed = true;
                }
            }
        }
    }
}

/// A second (or later) open file description of a memfd, a deleted file or a copied link
/// remap (`--link-remap`) reopens the
/// file the first one created.
fn reopen_files(tables: &mut Tables) -> Result<(), DumpError> {
    let mut first: HashMap<(u64, u64), (i32, i32)> = HashMap::new();
    for (pid, files) in tables.iter_mut() {
        let in_flight = files.in_flight.clone();
        for e in &mut files.fds {
            let pos = match &e.kind {
                _ if in_flight.iter().any(|m| m.fds.contains(&e.fd)) => continue,
                FdKind::Memfd(m) => m.pos,
                FdKind::Ghost(g) => g.pos,
                FdKind::Remap(r) if r.copied => r.pos,
                _ => continue,
            };
            let key = inode(*pid, e.fd)?;
            match first.get(&key) {
                Some(&(owner, fd)) => {
                    e.kind = FdKind::Reopen {
                        pid: owner,
                        fd,
                        pos,
                    }
                }
                None => {
                    first.insert(key, (*pid, e.fd));
                }
            }
        }
    }
    Ok(())
}

/// A FIFO's buffered bytes and capacity (a deleted one's too) are refilled by the first
/// fd of the tree that opens it (each process records them on its own first fd).
fn fifo_bytes_once(tables: &mut Tables) {
    let mut seen = std::collections::HashSet::new();
    let mut ghosts = std::collections::HashSet::new();
    for (_, files) in tables.iter_mut() {
        for e in &mut files.fds {
            match &mut e.kind {
                FdKind::Fifo(f) if !seen.insert((f.file.dev, f.file.ino)) => {
                    f.size = 0;
                    f.data.clear();
                }
                FdKind::Deleted(d) if d.fifo.is_some() && !ghosts.insert(d.ghost) => {
                    d.fifo = None;
                }
                _ => {}
            }
        }
    }
}

/// An `Inherited` reference to an fd that itself became `Inherited` (moved to a spare)
/// names the original directly.
fn flatten_inherited(tables: &mut Tables) {
    let mut refs: HashMap<(i32, i32), (i32, i32)> = HashMap::new();
    for (pid, files) in tables.iter() {
        for e in &files.fds {
            if let FdKind::Inherited { pid: p, fd } = e.kind {
                refs.insert((*pid, e.fd), (p, fd));
            }
        }
    }
    for (_, files) in tables.iter_mut() {
        for e in &mut files.fds {
            if let FdKind::Inherited { pid, fd } = &mut e.kind {
                while let Some(&(p, f)) = refs.get(&(*pid, *fd)) {
                    (*pid, *fd) = (p, f);
                }
            }
        }
    }
}

/// Moves the open file description of `from` into table `to`, at a new spare fd whose
/// entry is `kind` (with the description's status flags); `from` takes it from there.
fn move_to_spare(tables: &mut Tables, from: Desc, to: usize, kind: FdKind) -> i32 {
    let owner = tables[to].0;
    let spare = tables[to].1.fds.iter().map(|e| e.fd + 1).max().unwrap_or(0);
    let moved = entry_mut(&mut tables[from.0].1, from.1);
    let flags = moved.flags;
    moved.kind = FdKind::Inherited {
        pid: owner,
        fd: spare,
    };
    let files = &mut tables[to].1;
    files.fds.push(FdEntry {
        fd: spare,
        cloexec: true,
        flags,
        kind,
    });
    files.spares.push(spare);
    spare
}

fn entry(files: &FilesImage, fd: i32) -> &FdEntry {
    files
        .fds
        .iter()
        .find(|e| e.fd == fd)
        .expect("descriptions come from this table")
}

fn entry_mut(files: &mut FilesImage, fd: i32) -> &mut FdEntry {
    files
        .fds
        .iter_mut()
        .find(|e| e.fd == fd)
        .expect("descriptions come from this table")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::sample;

    /// Tables of pids 1, 2, 3: the sample pair's creator without its spares, a process
    /// holding the second socket at fd 3 as its own, and one that inherited that fd.
    fn tables() -> Vec<(i32, FilesImage)> {
        let (mut a, _) = sample::split_files(1);
        let second = a.fds.pop().unwrap();
        a.fds.pop();
        a.spares.clear();
        if let FdKind::Pipe(p) = &mut a.fds[0].kind {
            p.peer = None;
        }
        let b = FilesImage {
            fds: vec![FdEntry { fd: 3, ..second }],
            ..FilesImage::default()
        };
        let c = FilesImage {
            fds: vec![FdEntry {
                fd: 0,
                cloexec: false,
                flags: 0,
                kind: FdKind::Inherited { pid: 2, fd: 3 },
            }],
            ..FilesImage::default()
        };
        vec![(1, a), (2, b), (3, c)]
    }

    #[test]
    fn a_socket_pair_across_processes_is_built_by_the_first() {
        let mut t = tables();
        sockets(&mut t).unwrap();
        flatten_inherited(&mut t);
        assert_eq!(t[0].1.spares, vec![6]);
        assert!(matches!(&t[0].1.fds[3].kind, FdKind::Unix(u) if u.ino == 101));
        let taken = FdKind::Inherited { pid: 1, fd: 6 };
        assert_eq!(t[1].1.fds[0].kind, taken);
        assert_eq!(t[2].1.fds[0].kind, taken, "the chain through pid 2 is cut");
        let order: Vec<_> = t.iter().map(|(p, f)| (*p, f)).collect();
        crate::image::validate::inherited_fds(&order, std::path::Path::new("x")).unwrap();
    }

    #[test]
    fn a_socket_whose_peer_no_process_holds_is_refused() {
        let mut t = tables();
        t[0].1.fds.remove(1);
        let err = sockets(&mut t).unwrap_err().to_string();
        assert!(
            err.starts_with("fd 3 of pid 2 is a unix socket connected to socket:[100]"),
            "{err}"
        );
    }
}
