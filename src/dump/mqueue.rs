//! POSIX message queues: every queue of the tree's IPC namespace (the namespace's own
//! mqueue filesystem, mounted detached by a thread of stasis that entered it), with its
//! mode, owner, `mq_maxmsg`/`mq_msgsize` and messages, saved into `mqueue.img`. The
//! restore side is `restore/mqueue.rs`; open queue descriptors are `dump/files/mqueue.rs`.
//!
//! Reading a message takes it off its queue: each queue is drained (the tree is frozen,
//! nothing else of the namespace receives) and refilled at once in the order read, which
//! is the queue's (highest priority first, oldest first within one), before the next
//! queue is looked at; a dump that fails later leaves the queues as they were.
//! A queue with an `mq_notify` registration is refused, naming it: the registration
//! belongs to a process (and a socket or signal of it) that stasis cannot register again.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::DumpError;
use crate::image::mqueue::{MqueueImage, PosixMessage, PosixQueue};
use crate::sys::{mount, mqueue};

/// Every queue of the calling thread's IPC namespace.
///
/// Ordering requirements: while the tree is frozen; in a thread that entered the tree's
/// IPC namespace.
pub fn collect(root: i32) -> Result<MqueueImage, DumpError> {
    let mnt = queues_fs(root)?;
    let dir = format!("/proc/self/fd/{}", mnt.as_raw_fd());
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|source| stat_err(&dir, source))? {
        let e = e.map_err(|source| stat_err(&dir, source))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let queues = names
        .iter()
        .map(|n| queue(&dir, n))
        .collect::<Result<_, _>>()?;
    Ok(MqueueImage { queues })
}

/// The device of the mqueue filesystem of `pid`'s IPC namespace (what `st_dev` its
/// queues' fds show).
pub fn fs_dev_of(pid: i32) -> Result<u64, DumpError> {
    crate::sys::ipc::in_ipc_ns_of(Some(pid), || {
        let mnt = queues_fs(pid)?;
        let st = nix::sys::stat::fstat(&mnt)
            .map_err(|e| DumpError::unsupported(format!("fstat of an mqueue mount: {e}")))?;
        Ok::<_, DumpError>(st.st_dev)
    })?
}

/// The calling thread's IPC namespace (`pid`'s) mqueue filesystem, mounted detached:
/// the only way to list its queues, so a dump without the right to mount says so.
fn queues_fs(pid: i32) -> Result<OwnedFd, DumpError> {
    mount::new_fs("mqueue", &[]).map_err(|e| match e.source {
        nix::errno::Errno::EPERM => DumpError::unsupported(format!(
            "listing the POSIX message queues of the IPC namespace of pid {pid} needs \
             CAP_SYS_ADMIN (stasis mounts the namespace's mqueue filesystem to read them)"
        )),
        _ => e.into(),
    })
}

fn stat_err(path: &str, source: std::io::Error) -> DumpError {
    DumpError::Stat {
        path: path.to_string(),
        source,
    }
}

/// One queue, its messages read and put back.
fn queue(dir: &str, name: &str) -> Result<PosixQueue, DumpError> {
    let path = format!("{dir}/{name}");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|source| stat_err(&path, source))?;
    let meta = file.metadata().map_err(|source| stat_err(&path, source))?;
    let mut status = String::new();
    file.read_to_string(&mut status)
        .map_err(|source| stat_err(&path, source))?;
    if notify_pid(&status) != Some(0) {
        return Err(DumpError::unsupported(format!(
            "POSIX message queue /{name} has an mq_notify registration ({}), which stasis cannot restore",
            status.trim()
        )));
    }
    let fd: OwnedFd = file.into();
    let attr = mqueue::attr(fd.as_fd(), name)?;
    let messages = drain_and_refill(&fd, name, attr.msgsize)?;
    if messages.len() as i64 != attr.curmsgs {
        return Err(DumpError::unsupported(format!(
            "POSIX message queue /{name} held {} messages but {} were read",
            attr.curmsgs,
            messages.len()
        )));
    }
    Ok(PosixQueue {
        name: name.to_string(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        messages,
    })
}

/// The `NOTIFY_PID:` of a queue file's text (`QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..`).
fn notify_pid(status: &str) -> Option<i32> {
    let at = status.find("NOTIFY_PID:")? + "NOTIFY_PID:".len();
    status[at..].split_whitespace().next()?.parse().ok()
}

/// Takes every message off the queue, then queues them again in the same order.
fn drain_and_refill(
    fd: &OwnedFd,
    name: &str,
    msgsize: i64,
) -> Result<Vec<PosixMessage>, DumpError> {
    let mut buf = vec![0u8; msgsize.max(1) as usize];
    let mut out = Vec::new();
    let drained = loop {
        match mqueue::receive(fd.as_fd(), name, &mut buf) {
            Ok((n, prio)) => out.push(PosixMessage {
                prio,
                data: buf[..n].to_vec(),
            }),
            Err(e) if e.source == nix::errno::Errno::EAGAIN => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    for m in &out {
        mqueue::send(fd.as_fd(), name, &m.data, m.prio)?;
    }
    drained?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_notify_pid() {
        let s = "QSIZE:12         NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n";
        assert_eq!(notify_pid(s), Some(0));
        let s = "QSIZE:0          NOTIFY:0     SIGNO:10    NOTIFY_PID:4242  \n";
        assert_eq!(notify_pid(s), Some(4242));
        assert_eq!(notify_pid("garbage"), None);
    }
}
