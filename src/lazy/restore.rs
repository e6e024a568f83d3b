//! The restore side's part in post-copy: the link made before any process exists, the
//! daemon thread (`target.rs`) started with it, and for each restored process with
//! served pages a userfaultfd made *inside* it (an injected `userfaultfd(2)`: it acts on
//! its creator's address space), taken with `pidfd_getfd`, closed there, and its
//! mappings registered in missing mode before any of them is touched.
//!
//! Should post-copy fail (the link, a corrupted page, a kernel error), the daemon kills
//! the whole restored tree (its processes and whatever they forked since) before its
//! userfaultfds close: closing them would let a waiting thread run on with zeros. Should
//! stasis itself die, its watchdog (`watchdog.rs`, holding copies of them) does that.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::local::LocalPages;
use super::target::{self, Daemon, Msg, Stats};
use super::watchdog::Watchdog;
use super::LazyError;
use crate::image::chain::Piece;
use crate::image::lazy::{LazyImage, LazyProcess};
use crate::image::mm::{MmImage, VmaKind};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::uffd_missing::{self as uffd, LAZY_FEATURES};

/// How long the restore waits for the source's go-ahead before resuming the tree.
const GO_WAIT: Duration = Duration::from_secs(20);

/// `--lazy-pages --address A --port P` of the restore.
#[derive(Clone, Debug)]
pub struct LazyFrom {
    pub address: String,
    pub port: u16,
}

/// A post-copy under way.
pub struct PostCopy {
    image: LazyImage,
    tx: Mutex<Option<Sender<Msg>>>,
    /// Wakes the daemon once a message is sent on `tx`.
    wake: OwnedFd,
    daemon: Mutex<Option<JoinHandle<Result<Stats, LazyError>>>>,
}

impl std::fmt::Debug for PostCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostCopy({} bytes served)", self.image.bytes())
    }
}

impl PostCopy {
    /// Checks the kernel, connects to the source and starts the daemon; `tree` are the
    /// pids of the restored tree (killed should post-copy fail).
    pub fn start(image: LazyImage, from: &LazyFrom, tree: Vec<i32>) -> Result<Self, LazyError> {
        check_kernel()?;
        let link = target::connect(&from.address, from.port, image.session)?;
        Self::with_link(image, link, tree)
    }

    /// Starts the daemon fed by this restore's own image (`local.rs`): `pages` are where
    /// the served runs are in the pages files.
    pub fn start_local(pages: LocalPages, tree: Vec<i32>) -> Result<Self, LazyError> {
        check_kernel()?;
        let image = LazyImage {
            session: crate::image::chain::new_id(),
            processes: (pages.processes.iter())
                .map(|(pid, pieces)| LazyProcess {
                    pid: *pid,
                    runs: merged(pieces),
                })
                .collect(),
        };
        let stream = super::local::start(pages, image.session)?;
        let link = target::hello(stream, image.session)?;
        Self::with_link(image, link, tree)
    }

    fn with_link(image: LazyImage, link: target::Link, tree: Vec<i32>) -> Result<Self, LazyError> {
        let watchdog = std::sync::Arc::new(Watchdog::start(tree.clone())?);
        let (tx, rx) = channel();
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (woken, wake) =
            nix::unistd::pipe2(flags).map_err(|e| LazyError::Link { source: e.into() })?;
        let daemon = std::thread::Builder::new()
            .name("lazy-pages".into())
            .spawn(move || {
                let r = Daemon::new(link, (rx, woken), watchdog.clone()).and_then(Daemon::run);
                if matches!(&r, Err(e) if !matches!(e, LazyError::Abandoned)) {
                    kill_tree(&tree);
                }
                // Complete, or the tree killed here: nothing left to guard. (Abandoned:
                // the restore kills what it made; the watchdog does too if it must.)
                if !matches!(&r, Err(LazyError::Abandoned)) {
                    watchdog.release();
                }
                r
            })
            .map_err(|source| LazyError::Link { source })?;
        Ok(PostCopy {
            image,
            tx: Mutex::new(Some(tx)),
            wake,
            daemon: Mutex::new(Some(daemon)),
        })
    }

    /// Bytes the source serves.
    pub fn bytes(&self) -> u64 {
        self.image.bytes()
    }

    /// Makes the userfaultfd of `pid` (a child taken over, its mappings made) and
    /// registers the mappings of its served runs.
    ///
    /// Ordering requirements: after the Mappings stage, before anything touches those
    /// mappings (its children are forked later: they inherit no missing page, as a
    /// process with children serves none).
    pub fn register(&self, child: &Child, mm: &MmImage) -> Result<(), RestoreError> {
        let pid = child.pid();
        let Some(p) = self.image.processes.iter().find(|p| p.pid == pid) else {
            return Ok(());
        };
        let areas = mappings_of(pid, mm, &p.runs)?;
        let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
        let fd = child
            .remote()
            .call("userfaultfd", libc::SYS_userfaultfd, &[flags])?;
        let taken = child.steal(fd);
        child.remote().call("close", libc::SYS_close, &[fd])?;
        let fd = taken?;
        let err = |op| move |source| LazyError::Uffd { pid, op, source };
        uffd::api(fd.as_fd(), LAZY_FEATURES).map_err(err("api"))?;
        for (start, end) in areas {
            uffd::register_missing(fd.as_fd(), start, end - start).map_err(err("register"))?;
        }
        let runs = p.runs.clone();
        self.send(Msg::Space {
            pid,
            uffd: fd,
            runs,
        })
    }

    /// Before the tree is resumed: waits until the source took for good the decision
    /// never to resume its own (its `Go`), so both never run. A link that fails first
    /// fails the restore, the tree not run (the source then keeps its own frozen, or
    /// resumes it if it never heard of this restore).
    ///
    /// Ordering requirements: every process made and filled, nothing resumed yet.
    pub fn claim(&self) -> Result<(), RestoreError> {
        let (answer, heard) = channel();
        self.send(Msg::Claim(answer))?;
        match heard.recv_timeout(GO_WAIT) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(LazyError::Protocol {
                what: format!("no go-ahead of the source within {} s", GO_WAIT.as_secs()),
            }
            .into()),
            // The daemon stopped: its error says why.
            Err(RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    /// The tree runs (after [`PostCopy::claim`]).
    pub fn started(&self) -> Result<(), RestoreError> {
        self.send(Msg::Started)
    }

    fn send(&self, msg: Msg) -> Result<(), RestoreError> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sent = tx.as_ref().map(|t| t.send(msg));
        if let Some(Ok(())) = sent {
            let _ = nix::unistd::write(&self.wake, &[1]);
            return Ok(());
        }
        drop(tx);
        Err(self.stopped())
    }

    /// Why the daemon stopped.
    fn stopped(&self) -> RestoreError {
        match self.wait() {
            Err(e) => e.into(),
            Ok(_) => LazyError::Abandoned.into(),
        }
    }

    /// Why post-copy failed, once the restore itself failed (the daemon is told to stop
    /// if it still runs); `None` if it had not.
    pub fn failure(&self) -> Option<LazyError> {
        self.wait()
            .err()
            .filter(|e| !matches!(e, LazyError::Abandoned))
    }

    /// Waits until every page is in place (the source has killed its tree) or
    /// post-copy failed (the restored tree is killed then).
    pub fn wait(&self) -> Result<Stats, LazyError> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handle = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(LazyError::Protocol {
                what: "the post-copy thread panicked".into(),
            }),
            None => Err(LazyError::Abandoned),
        }
    }
}

impl Drop for PostCopy {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

/// The served pages of an image (`lazy.img`) with where to fetch them, `None` for an
/// image without. Either without the other is refused, before anything else is checked:
/// such an image's memory is on its source, and `--lazy-pages` for a whole image would be
/// a mistake in the command.
pub fn plan(
    image: &crate::image::Image,
    from: Option<&LazyFrom>,
) -> Result<Option<(LazyImage, LazyFrom)>, RestoreError> {
    let lazy = match image.has(crate::image::lazy::LAZY) {
        true => crate::image::lazy::load(&image.dir)?,
        false => None,
    };
    match (lazy, from) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(RestoreError::Unsupported {
            what: format!(
                "{} was dumped with --lazy-pages: part of its memory is still on the source; \
                 restore it with --lazy-pages --address A --port P",
                image.dir.display()
            ),
        }),
        (None, Some(_)) => Err(RestoreError::Unsupported {
            what: format!(
                "--lazy-pages: {} holds all its memory (it was not dumped with --lazy-pages)",
                image.dir.display()
            ),
        }),
        (Some(lazy), Some(from)) => Ok(Some((lazy, from.clone()))),
    }
}

/// Starts the post-copy [`plan`] found (`tree`: the pids of the image's tree).
pub fn begin(
    planned: Option<(LazyImage, LazyFrom)>,
    tree: Vec<i32>,
) -> Result<Option<std::sync::Arc<PostCopy>>, RestoreError> {
    let Some((lazy, from)) = planned else {
        return Ok(None);
    };
    Ok(Some(std::sync::Arc::new(PostCopy::start(
        lazy, &from, tree,
    )?)))
}

/// The address ranges of `pieces` (sorted), those that touch joined.
pub fn merged(pieces: &[Piece]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for p in pieces {
        match out.last_mut() {
            Some(last) if last.1 == p.addr => last.1 += p.len,
            _ => out.push((p.addr, p.addr + p.len)),
        }
    }
    out
}

/// The private anonymous mappings holding `runs`, each once; a run outside them is
/// refused (the image is inconsistent).
fn mappings_of(
    pid: i32,
    mm: &MmImage,
    runs: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, RestoreError> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(s, e) in runs {
        let v = mm.vmas.iter().find(|v| v.start <= s && e <= v.end);
        let Some(v) = v.filter(|v| !v.shared && matches!(v.kind, VmaKind::Anon)) else {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "served pages {s:#x}-{e:#x} of pid {pid} are not inside one private \
                     anonymous mapping of its image"
                ),
            });
        };
        if out.last() != Some(&(v.start, v.end)) {
            out.push((v.start, v.end));
        }
    }
    Ok(out)
}

/// This kernel's userfaultfd offers missing mode with every event post-copy needs.
pub fn check_kernel() -> Result<u64, LazyError> {
    uffd::probe().map_err(|e| LazyError::Missing {
        what: format!(
            "missing mode with the fork, remap, remove and unmap events, or UFFDIO_COPY ({e})"
        ),
    })
}

/// SIGKILLs every process of `tree` and everything they forked since, and waits (a
/// bounded time) until they are gone.
pub fn kill_tree(tree: &[i32]) {
    use nix::sys::signal::{kill, Signal};
    let all = with_descendants(tree);
    for &pid in &all {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline && all.iter().any(|p| alive(*p)) {
        for &pid in &all {
            let flags = nix::sys::wait::WaitPidFlag::WNOHANG | nix::sys::wait::WaitPidFlag::__WALL;
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(flags));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    crate::proc::stat(pid).is_ok_and(|s| s.state != 'Z')
}

/// `roots` and every descendant found in /proc (parent links).
fn with_descendants(roots: &[i32]) -> Vec<i32> {
    let mut all: Vec<i32> = roots.to_vec();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
    };
    let parents: Vec<(i32, i32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, crate::proc::stat(pid).ok()?.ppid)))
        .collect();
    let mut grew = true;
    while grew {
        grew = false;
        for &(pid, ppid) in &parents {
            if all.contains(&ppid) && !all.contains(&pid) {
                all.push(pid);
                grew = true;
            }
        }
    }
    all
}
