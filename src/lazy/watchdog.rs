//! The post-copy watchdog: a detached process (`sys::daemon`) holding a copy of every
//! userfaultfd the restore's daemon thread (`target.rs`) serves. Should the restoring
//! stasis die (SIGKILL, a crash) before every page arrived, the kernel would close its
//! userfaultfds and the restored processes would read zeros where their memory was; the
//! watchdog's copies keep the faults waiting instead, and on the end of its link without
//! `done` it SIGKILLs the restored tree (and what it forked since), waits until it is
//! gone, and only then lets its copies go.
//!
//! Its link is a `SOCK_SEQPACKET` pair; each message is one line: `keep KEY` with the
//! userfaultfd of space KEY (SCM_RIGHTS), `drop KEY` when the daemon let that space go
//! (every page in, or the process gone), `done` when the post-copy completed.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::LazyError;
use crate::tracker::{receive, send};

/// The restore's end of the link to its watchdog.
#[derive(Debug)]
pub struct Watchdog {
    link: Mutex<OwnedFd>,
}

impl Watchdog {
    /// Starts the watchdog of the tree whose processes are `tree` (they and whatever they
    /// fork are killed if the restore dies before `done`).
    pub fn start(tree: Vec<i32>) -> Result<Watchdog, LazyError> {
        let err = |op| move |source| LazyError::Watchdog { op, source };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(err("socketpair"))?;
        crate::sys::daemon::spawn(theirs, move |fd| watch(fd, &tree)).map_err(err("fork"))?;
        Ok(Watchdog {
            link: Mutex::new(ours),
        })
    }

    /// Hands the watchdog a copy of the userfaultfd of space `key`.
    pub fn keep(&self, key: u64, uffd: BorrowedFd) {
        self.say(&format!("keep {key}"), Some(uffd));
    }

    /// The daemon let space `key` go: the watchdog closes its copy.
    pub fn drop_space(&self, key: u64) {
        self.say(&format!("drop {key}"), None);
    }

    /// Nothing more to guard (every page arrived, or the restore killed the tree
    /// itself): the watchdog lets everything go and exits.
    pub fn release(&self) {
        self.say("done", None);
    }

    /// Best effort: a watchdog that is gone cannot be told anything, and the post-copy
    /// goes on without it (it only matters if stasis dies too).
    fn say(&self, line: &str, fd: Option<BorrowedFd>) {
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        let fds: Vec<i32> = fd.iter().map(|f| f.as_raw_fd()).collect();
        let _ = send(link.as_fd(), line, &fds);
    }
}

/// The watchdog's loop; its exit code is 0 after `done`, 1 after it killed the tree.
fn watch(link: OwnedFd, tree: &[i32]) -> i32 {
    let mut held: HashMap<u64, OwnedFd> = HashMap::new();
    loop {
        let (line, mut fds) = match receive(link.as_fd()) {
            Ok((line, fds)) if !line.is_empty() => (line, fds),
            Err(nix::Error::EINTR) => continue,
            // The end of the link: stasis exited or died.
            _ => break,
        };
        match line.split_once(' ') {
            Some(("keep", key)) => {
                if let (Ok(key), Some(fd)) = (key.parse(), fds.pop()) {
                    held.insert(key, fd);
                }
            }
            Some(("drop", key)) => {
                if let Ok(key) = key.parse::<u64>() {
                    held.remove(&key);
                }
            }
            _ if line == "done" => return 0,
            _ => {}
        }
    }
    if held.is_empty() {
        return 0;
    }
    // Pages are still missing and nobody will serve them: the tree must not run on.
    super::restore::kill_tree(tree);
    drop(held);
    1
}
