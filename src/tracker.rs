//! The tracker: a small detached process that holds the userfaultfds of a tree's
//! dirty-page tracking between two stasis runs (`stasis pre-dump`, then `stasis dump
//! --prev-images-dir`). The kernel keeps a userfaultfd's write-protection armed as long
//! as some process holds the file; when the tracker ends (stopped, killed, or its tree's
//! root gone) the files close, the kernel unregisters every mapping and the tree runs on
//! exactly as before, untracked.
//!
//! One tracker per tree, named after its root: the abstract unix socket
//! `stasis-track-<root pid>` (recorded in `chain.img`). Requests are one
//! `SOCK_SEQPACKET` message per connection, answered by one message:
//! - `GEN <old> <new>`: the tracking now counts writes since image `new`; answers `VALID`
//!   if it counted them since image `old` until now (so `old`'s unchanged pages may be
//!   referenced), `RESET` otherwise.
//! - `FDS`: answers `FDS <pid>...` with the userfaultfds (`SCM_RIGHTS`), one per pid.
//! - `ADD <pid>` with one fd: the userfaultfd of `pid`'s address space.
//! - `PING`: answers `OK <generation> <tracker pid>`.
//! - `STOP`: answers `OK` and exits.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    accept, bind, connect, listen, recvmsg, sendmsg, socket, AddressFamily, Backlog,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

/// Most userfaultfds sent in one message (`SCM_MAX_FD` is 253).
const MAX_FDS: usize = 250;
const MAX_MSG: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("tracker {name}: {what}")]
    Io {
        name: String,
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("tracker {name} answered {answer:?} to {request:?}")]
    Answer {
        name: String,
        request: String,
        answer: String,
    },
    #[error("no tracker {name} is running (never armed, stopped, or its tree is gone)")]
    NotRunning { name: String },
    #[error("tracker {name} did not start")]
    NoStart { name: String },
}

/// The socket name of the tracker of the tree rooted at `root`.
pub fn name(root: i32) -> String {
    format!("stasis-track-{root}")
}

/// A running tracker, reached by name.
pub struct Tracker {
    name: String,
}

impl Tracker {
    /// The tracker `name`, if one answers.
    pub fn find(name: &str) -> Result<Option<Tracker>, TrackerError> {
        let t = Tracker {
            name: name.to_string(),
        };
        match t.request("PING", &[]) {
            Ok(_) => Ok(Some(t)),
            Err(TrackerError::NotRunning { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts the tracker of the tree rooted at `root` (or finds the one running).
    pub fn start(root: i32) -> Result<Tracker, TrackerError> {
        let name = name(root);
        if let Some(t) = Self::find(&name)? {
            return Ok(t);
        }
        let io = |what| {
            let name = name.clone();
            move |source| TrackerError::Io { name, what, source }
        };
        let listener = seqpacket().map_err(io("socket"))?;
        bind(listener.as_raw_fd(), &addr(&name)?).map_err(io("bind"))?;
        listen(&listener, Backlog::new(16).map_err(io("listen"))?).map_err(io("listen"))?;
        crate::sys::daemon::spawn(listener, |l| serve(l, root)).map_err(io("fork"))?;
        Self::find(&name)?.ok_or(TrackerError::NoStart { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tracker's pid.
    pub fn pid(&self) -> Result<i32, TrackerError> {
        let (answer, _) = self.request("PING", &[])?;
        (answer.split_whitespace().nth(2))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| self.unexpected("PING".into(), answer))
    }

    /// `GEN`: whether the tracking counted writes since image `old`; from now on it
    /// counts them since image `new`.
    pub fn advance(&self, old: u64, new: u64) -> Result<bool, TrackerError> {
        let req = format!("GEN {old} {new}");
        let (answer, _) = self.request(&req, &[])?;
        match answer.as_str() {
            "VALID" => Ok(true),
            "RESET" => Ok(false),
            _ => Err(self.unexpected(req, answer)),
        }
    }

    /// The userfaultfds the tracker holds, by pid.
    pub fn fds(&self) -> Result<Vec<(i32, OwnedFd)>, TrackerError> {
        let (answer, fds) = self.request("FDS", &[])?;
        let pids: Option<Vec<i32>> = answer.strip_prefix("FDS").map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        });
        match pids {
            Some(pids) if pids.len() == fds.len() => Ok(pids.into_iter().zip(fds).collect()),
            _ => Err(self.unexpected("FDS".into(), answer)),
        }
    }

    /// Hands the userfaultfd of `pid` to the tracker.
    pub fn add(&self, pid: i32, fd: &OwnedFd) -> Result<(), TrackerError> {
        let req = format!("ADD {pid}");
        let (answer, _) = self.request(&req, &[fd.as_raw_fd()])?;
        if answer != "OK" {
            return Err(self.unexpected(req, answer));
        }
        Ok(())
    }

    /// Ends the tracker: the tree's tracking is disarmed. Returns once its name is free
    /// (at most a second after the tracker answered).
    pub fn stop(self) -> Result<(), TrackerError> {
        self.request("STOP", &[])?;
        for _ in 0..100 {
            if Self::find(&self.name)?.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    fn unexpected(&self, request: String, answer: String) -> TrackerError {
        TrackerError::Answer {
            name: self.name.clone(),
            request,
            answer,
        }
    }

    fn request(&self, req: &str, fds: &[RawFd]) -> Result<(String, Vec<OwnedFd>), TrackerError> {
        let io = |what| {
            let name = self.name.clone();
            move |source| TrackerError::Io { name, what, source }
        };
        let sock = seqpacket().map_err(io("socket"))?;
        match connect(sock.as_raw_fd(), &addr(&self.name)?) {
            Err(Errno::ECONNREFUSED | Errno::ENOENT) => {
                return Err(TrackerError::NotRunning {
                    name: self.name.clone(),
                })
            }
            r => r.map_err(io("connect"))?,
        }
        let answer = send(sock.as_fd(), req, fds).and_then(|()| receive(sock.as_fd()));
        match answer {
            // A tracker ending: it answers no more.
            Err(Errno::ECONNRESET | Errno::EPIPE) => Err(TrackerError::NotRunning {
                name: self.name.clone(),
            }),
            Ok((text, _)) if text.is_empty() => Err(TrackerError::NotRunning {
                name: self.name.clone(),
            }),
            r => r.map_err(io("receive")),
        }
    }
}

/// The network namespace stasis started in, where trackers bind their names.
static HOME_NET: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();

/// Remembers the calling thread's network namespace as the one trackers are named in.
///
/// Ordering requirements: before the dumping thread enters the tree's network namespace
/// (`dump/ns/net.rs`): an abstract socket name is seen only in the namespace it was bound
/// in, so a dump of a tree in its own network namespace would not find the tracker a
/// pre-dump started, and would store every page again.
pub fn remember_home_net() {
    HOME_NET.get_or_init(|| std::fs::File::open("/proc/thread-self/ns/net").ok());
}

/// A seqpacket socket made in the home network namespace (see [`remember_home_net`]),
/// whichever the calling thread is in.
fn seqpacket() -> nix::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let make = || {
        socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
    };
    let Some(Some(home)) = HOME_NET.get() else {
        return make();
    };
    let here = std::fs::File::open("/proc/thread-self/ns/net").map_err(io_errno)?;
    let ino = |f: &std::fs::File| f.metadata().map(|m| m.ino()).map_err(io_errno);
    if ino(home)? == ino(&here)? {
        return make();
    }
    nix::sched::setns(home, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let made = make();
    nix::sched::setns(&here, nix::sched::CloneFlags::CLONE_NEWNET)?;
    made
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn addr(name: &str) -> Result<UnixAddr, TrackerError> {
    UnixAddr::new_abstract(name.as_bytes()).map_err(|source| TrackerError::Io {
        name: name.to_string(),
        what: "address",
        source,
    })
}

/// Sends one message `text` with `fds` (SCM_RIGHTS) on a seqpacket or stream socket.
pub(crate) fn send(sock: std::os::fd::BorrowedFd, text: &str, fds: &[RawFd]) -> nix::Result<()> {
    let iov = [IoSlice::new(text.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).map(drop)
}

/// Receives one message and the fds it carried (close-on-exec); an empty text at the end.
pub(crate) fn receive(sock: std::os::fd::BorrowedFd) -> nix::Result<(String, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            fds.extend(got.into_iter().map(owned));
        }
    }
    let n = msg.bytes;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
}

/// Takes ownership of an fd the kernel just gave us.
fn owned(fd: RawFd) -> OwnedFd {
    crate::sys::fd::adopt(fd)
}

/// The tracker's loop: answers requests until `STOP` or until the root is gone.
fn serve(listener: OwnedFd, root: i32) -> i32 {
    let mut state = State::default();
    // `accept` returns every second (EAGAIN) to look at the root.
    let tick = nix::sys::time::TimeVal::new(1, 0);
    let _ =
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::ReceiveTimeout, &tick);
    loop {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(root), None) == Err(Errno::ESRCH) {
            return 0;
        }
        let Ok(conn) = accept(listener.as_raw_fd()).map(owned) else {
            continue;
        };
        let Ok((req, fds)) = receive(conn.as_fd()) else {
            continue;
        };
        let (answer, out, stop) = state.answer(&req, fds);
        let raw: Vec<RawFd> = out.iter().map(|f| f.as_raw_fd()).collect();
        let _ = send(conn.as_fd(), &answer, &raw);
        if stop {
            return 0;
        }
    }
}

/// What the tracker holds.
#[derive(Default)]
struct State {
    generation: u64,
    uffds: BTreeMap<i32, OwnedFd>,
}

impl State {
    /// The answer to one request, the fds to send with it, and whether to stop.
    fn answer(&mut self, req: &str, mut fds: Vec<OwnedFd>) -> (String, Vec<OwnedFd>, bool) {
        let words: Vec<&str> = req.split_whitespace().collect();
        match words[..] {
            ["PING"] => {
                let me = std::process::id();
                (format!("OK {} {me}", self.generation), Vec::new(), false)
            }
            ["GEN", old, new] => {
                let (old, new) = (old.parse().unwrap_or(0), new.parse().unwrap_or(0));
                let valid = old != 0 && old == self.generation;
                self.generation = new;
                let answer = if valid { "VALID" } else { "RESET" };
                (answer.into(), Vec::new(), false)
            }
            ["FDS"] => {
                let mut pids = String::from("FDS");
                let mut out = Vec::new();
                for (pid, fd) in self.uffds.iter().take(MAX_FDS) {
                    if let Ok(dup) = fd.try_clone() {
                        pids.push_str(&format!(" {pid}"));
                        out.push(dup);
                    }
                }
                (pids, out, false)
            }
            ["ADD", pid] if fds.len() == 1 => match pid.parse() {
                Ok(pid) => {
                    self.uffds.insert(pid, fds.remove(0));
                    ("OK".into(), Vec::new(), false)
                }
                Err(_) => ("BAD".into(), Vec::new(), false),
            },
            ["STOP"] => ("OK".into(), Vec::new(), true),
            _ => ("BAD".into(), Vec::new(), false),
        }
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracker({})", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_valid_only_against_the_last_image() {
        let mut s = State::default();
        assert_eq!(s.answer("GEN 0 5", Vec::new()).0, "RESET");
        assert_eq!(s.answer("GEN 5 6", Vec::new()).0, "VALID");
        assert_eq!(s.answer("GEN 5 7", Vec::new()).0, "RESET");
        assert_eq!(s.answer("GEN 7 8", Vec::new()).0, "VALID");
        assert!(s.answer("STOP", Vec::new()).2);
    }
}
