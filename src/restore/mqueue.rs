//! POSIX message queues: each queue of `mqueue.img` made again in the tree's IPC
//! namespace (the new one of the root, or the restorer's) with its attributes, mode and
//! owner, and its messages queued again in their order. The dump side is
//! `dump/mqueue.rs`; descriptors are reopened by name with the fds
//! (`restore/files/mqueue.rs`).
//!
//! A queue of that name already there (the original survived the dump: the restorer's
//! namespace) is reused if it has the saved attributes, mode and owner: its messages are
//! replaced by the saved ones; another queue there is refused, named.
//!
//! The queues are made by root: `mq_maxmsg` and `mq_msgsize` must be within the
//! namespace's `fs.mqueue.msg_max`/`msgsize_max` (stasis has no `CAP_SYS_RESOURCE`), and
//! their bytes count against stasis's `RLIMIT_MSGQUEUE`.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::RestoreError;
use crate::image::mqueue::{MqueueImage, PosixQueue};
use crate::sys::mqueue::{self, MqError};

/// Makes every queue of `img` in the calling thread's namespace; `made` collects the
/// names of those this restore created (to remove them should it fail).
///
/// Ordering requirements: after the namespace's sysctls are set (`fs.mqueue.*` bound the
/// attributes), before any process's fds (they open the queues by name).
pub fn make_all(img: &MqueueImage, made: &mut Vec<String>) -> Result<(), RestoreError> {
    for q in &img.queues {
        let fd = match mqueue::create(&q.name, q.mode, q.maxmsg, q.msgsize) {
            Ok(fd) => {
                made.push(q.name.clone());
                own(&fd, q)?;
                fd
            }
            Err(e) if e.source == Errno::EEXIST => reuse(q)?,
            Err(e) => return Err(hint(e, q)),
        };
        for m in &q.messages {
            mqueue::send(fd.as_fd(), &q.name, &m.data, m.prio)?;
        }
    }
    Ok(())
}

/// Removes the queues this restore made (a failed restore in the restorer's namespace).
pub fn undo(made: &[String]) {
    for name in made {
        let _ = mqueue::unlink(name);
    }
}

/// The saved mode (`mq_open` applies the umask) and owner.
fn own(fd: &OwnedFd, q: &PosixQueue) -> Result<(), RestoreError> {
    let what = |source| RestoreError::Unsupported {
        what: format!(
            "setting the mode and owner of POSIX message queue /{}: {source}",
            q.name
        ),
    };
    let mode = nix::sys::stat::Mode::from_bits_truncate(q.mode as libc::mode_t);
    nix::sys::stat::fchmod(fd, mode).map_err(what)?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(q.uid),
        nix::unistd::Gid::from_raw(q.gid),
    );
    nix::unistd::fchown(fd, Some(uid), Some(gid)).map_err(what)
}

/// The existing queue of that name, emptied, if it is the saved one.
fn reuse(q: &PosixQueue) -> Result<OwnedFd, RestoreError> {
    let fd = mqueue::open(&q.name)?;
    let attr = mqueue::attr(fd.as_fd(), &q.name)?;
    let meta = nix::sys::stat::fstat(&fd).map_err(|source| RestoreError::Unsupported {
        what: format!("fstat of POSIX message queue /{}: {source}", q.name),
    })?;
    let same = attr.maxmsg == q.maxmsg
        && attr.msgsize == q.msgsize
        && meta.st_mode & 0o7777 == q.mode
        && (meta.st_uid, meta.st_gid) == (q.uid, q.gid);
    if !same {
        return Err(RestoreError::Unsupported {
            what: format!(
                "POSIX message queue /{} exists in the restorer's IPC namespace and is not the saved one (other attributes, mode or owner); remove it first",
                q.name
            ),
        });
    }
    let mut buf = vec![0u8; q.msgsize.max(1) as usize];
    loop {
        match mqueue::receive(fd.as_fd(), &q.name, &mut buf) {
            Ok(_) => {}
            Err(e) if e.source == Errno::EAGAIN => return Ok(fd),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A refused creation, with what to check.
fn hint(e: MqError, q: &PosixQueue) -> RestoreError {
    let why = match e.source {
        Errno::EINVAL => {
            " (mq_maxmsg or mq_msgsize above the namespace's fs.mqueue.msg_max or msgsize_max)"
        }
        Errno::EMFILE => " (RLIMIT_MSGQUEUE of stasis reached)",
        Errno::ENOSPC => " (fs.mqueue.queues_max reached)",
        _ => "",
    };
    RestoreError::Unsupported {
        what: format!(
            "creating POSIX message queue /{} (mq_maxmsg {}, mq_msgsize {}): {}{why}",
            q.name,
            q.maxmsg,
            q.msgsize,
            e.source.desc()
        ),
    }
}
