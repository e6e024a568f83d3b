//! epoll: every registration (`tfd:` lines of fdinfo: fd number, events, data). The
//! restore side is `restore/files/epoll.rs`, which runs after every other fd exists.
//!
//! A registration names the fd number it was added under. If that fd was closed (the
//! file kept alive elsewhere) or now holds another file, the registration cannot be
//! rebuilt from the table, and the dump is refused: `kcmp(KCMP_EPOLL_TFD)` tells.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{EpollFd, EpollTarget, FdEntry, FdKind};
use crate::proc::fdkinds;
use crate::sys::fd::kcmp_epoll_tfd;

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

/// Every registered fd must still be open at its number and be the registered file.
pub fn check_targets(pid: i32, fds: &[FdEntry], epolls: &[i32]) -> Result<(), DumpError> {
    for e in fds.iter().filter(|e| epolls.contains(&e.fd)) {
        let FdKind::Epoll(ep) = &e.kind else {
            continue;
        };
        for t in &ep.targets {
            let same = kcmp_epoll_tfd(nix::unistd::Pid::from_raw(pid), t.fd, e.fd, t.fd);
            if same != Ok(0) {
                return Err(DumpError::unsupported(format!(
                    "fd {} of pid {pid} is an epoll instance watching a file registered as fd {}, which is no longer open under that number; stasis cannot restore that registration",
                    e.fd, t.fd
                )));
            }
        }
    }
    Ok(())
}
