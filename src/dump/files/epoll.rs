//! epoll: every registration (`tfd:` lines of fdinfo: fd number, events, data). The
//! restore side is `restore/files/epoll.rs`, which runs after every other fd exists.
//!
//! A registration names the fd number it was added under, and epoll keys it by file and
//! number. When that number no longer holds the registered file (closed after a `dup`,
//! moved by `dup2`, or closed by this process while an earlier process of the tree still
//! holds it), `kcmp(KCMP_EPOLL_TFD)` finds the file among the fds of this process, then
//! of the earlier processes of the tree, and the registration is recorded with its number
//! and where the file is ([`EpollMoved`]). A file that no fd of this or an earlier
//! process holds cannot be reached at restore, and the dump is refused.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{EpollFd, EpollMoved, EpollTarget, FdEntry, FdKind, FilesImage};
use crate::proc::fdkinds;
use crate::sys::fd::kcmp_epoll_tfd;
use nix::unistd::Pid;

pub fn is_epoll(open: &OpenFd) -> bool {
    open.target == "anon_inode:[eventpoll]"
}

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let targets = parsed(open, fdkinds::epoll_targets(&open.info))?
        .into_iter()
        .map(|t| EpollTarget {
            fd: t.fd,
            events: t.events,
            data: t.data,
        })
        .collect();
    Ok(FdKind::Epoll(EpollFd { targets }))
}

/// The registrations of the epolls of `pid` whose number no longer holds the registered
/// file, with where the file is. `epolls`: the epoll fds of the table with the
/// `(pid, fd)` each is reached through (stasis's copy for one in flight); `pids`: the
/// processes of the tree, in tree order.
pub fn check_targets(
    pid: i32,
    fds: &[FdEntry],
    epolls: &[(i32, (i32, i32))],
    pids: &[i32],
) -> Result<Vec<EpollMoved>, DumpError> {
    let mut moved = Vec::new();
    for (e, &(_, reach)) in fds
        .iter()
        .filter_map(|e| Some((e, epolls.iter().find(|(fd, _)| *fd == e.fd)?)))
    {
        let FdKind::Epoll(ep) = &e.kind else {
            continue;
        };
        for (t, toff) in ep.numbered() {
            let slot = Slot {
                pid,
                epfd: e.fd,
                reach,
                tfd: t.fd,
                toff,
            };
            if slot.holds(pid, t.fd) {
                continue;
            }
            let (holder, fd) = slot.find_holder(pids)?;
            moved.push(EpollMoved {
                epoll: e.fd,
                tfd: t.fd,
                toff,
                pid: holder,
                fd,
            });
        }
    }
    Ok(moved)
}

/// Drops the moved registrations of epolls that became references to an earlier
/// process's instance (`Shared::link_files`): that process records them.
pub fn keep_created(files: &mut FilesImage) {
    let fds = &files.fds;
    let created = |fd: i32| {
        fds.iter()
            .any(|e| e.fd == fd && matches!(e.kind, FdKind::Epoll(_)))
    };
    files.epoll_moved.retain(|m| created(m.epoll));
}

/// One registration: the `toff`-th under number `tfd` in epoll `epfd` of `pid`, which
/// is reached through fd `reach.1` of `reach.0` (the process itself, or stasis for an
/// epoll in flight).
struct Slot {
    pid: i32,
    epfd: i32,
    reach: (i32, i32),
    tfd: i32,
    toff: u32,
}

impl Slot {
    /// Fd `fd` of `holder` is the registered file.
    fn holds(&self, holder: i32, fd: i32) -> bool {
        let (owner, epfd) = self.reach;
        let (holder, owner) = (Pid::from_raw(holder), Pid::from_raw(owner));
        kcmp_epoll_tfd(holder, fd, owner, epfd, self.tfd, self.toff) == Ok(0)
    }

    /// The first fd of the owner, then of the earlier processes of the tree (nearest
    /// first), holding the registered file; refused when only a later process holds it
    /// (restored after the owner) or none does.
    fn find_holder(&self, pids: &[i32]) -> Result<(i32, i32), DumpError> {
        let pid = self.pid;
        let at = pids.iter().position(|&p| p == pid).unwrap_or(pids.len());
        let earlier = pids[..at].iter().rev();
        let later = pids.iter().skip(at + 1);
        for (i, &q) in std::iter::once(&pid)
            .chain(earlier)
            .chain(later)
            .enumerate()
        {
            let Ok(fds) = crate::proc::fds(q) else {
                continue;
            };
            let Some(fd) = fds.into_iter().find(|&f| self.holds(q, f)) else {
                continue;
            };
            if i <= at {
                return Ok((q, fd));
            }
            return Err(self.refuse(&format!(
                "only pid {q} (a later process of the tree, fd {fd}) still holds"
            )));
        }
        Err(self
            .refuse("no fd of the tree holds any more (a mapping or a message in flight keeps it)"))
    }

    fn refuse(&self, why: &str) -> DumpError {
        let Slot { pid, epfd, tfd, .. } = self;
        DumpError::unsupported(format!(
            "fd {epfd} of pid {pid} is an epoll instance watching a file registered as fd {tfd}, which {why}; stasis cannot restore that registration"
        ))
    }
}
