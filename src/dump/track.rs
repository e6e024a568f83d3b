//! Dirty-page tracking for pre-dumps and incremental dumps: which pages of a process
//! were written since its parent image, so that only those are stored and the others
//! are taken from the parent (`image::chain`).
//!
//! The kernel (6.7+) tracks writes with a userfaultfd in async write-protect mode
//! (`sys/uffd.rs`): each private mapping is registered and write-protected; a write
//! clears the page's protection bit without stopping the program; `PAGEMAP_SCAN`
//! reports the written pages and protects them again in one atomic step
//! (`Pagemap::take_written`). The userfaultfd is made *in* the target (an injected
//! `userfaultfd(2)`: it acts on its creator's address space), taken with `pidfd_getfd`
//! and closed there; a tracker process (`tracker.rs`) holds it between two stasis runs.
//! Protecting a page not populated (`UFFDIO_WRITEPROTECT`, and every `take_written`,
//! which counts such a page as written and protects it again) leaves a PTE marker,
//! which `PAGEMAP_SCAN` reports as swapped: the page scan leaves markers out
//! (`dump/memory.rs`), or every untouched page
//! of a private file mapping would be stored and written back at restore as a private
//! copy, and the mapping, made writable for that, would merge with its neighbour.
//!
//! What is never taken from the parent, because its writes cannot have been counted:
//! a mapping not registered (made, moved or remapped since, or in a child forked since:
//! `PAGEMAP_SCAN` answers `EPERM` for it), shared memory and huge pages (always stored
//! whole, as without tracking), every page when the tracker did not count writes since
//! exactly the parent image (its generation differs: another image was made since, or
//! the tracker was restarted), and pages the parent does not hold.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use super::DumpError;
use crate::image::mm::{Vma, VmaKind};
use crate::sys::pagemap::{Pagemap, PagemapError};
use crate::sys::ptrace::Seized;
use crate::sys::uffd::{Uffd, UFFD_USER_MODE_ONLY};
use crate::tracker::Tracker;

/// The tracking of one tree during one dump or pre-dump.
pub struct Tracking {
    tracker: Tracker,
    /// The tracker counted writes since the parent image until now.
    valid: bool,
    /// By the pid owning each address space.
    uffds: BTreeMap<i32, Uffd>,
    /// Mappings registered by [`Tracking::join`] in this round, by pid: not registered
    /// before, so none of their pages may be taken from the parent.
    joined: BTreeMap<i32, Vec<(u64, u64)>>,
}

/// What the scan of one process found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Registered ranges with no write since the parent image (empty unless valid).
    pub clean: Vec<(u64, u64)>,
    /// Trackable mappings not registered: register and protect them (`arm`).
    pub unarmed: Vec<(u64, u64)>,
}

impl Tracking {
    /// Reaches (or starts) the tracker of the tree rooted at `root` and moves its
    /// generation from `parent` (the parent image's id, if any) to `id`.
    ///
    /// Ordering requirements: before any `scan` (a scan resets what was counted).
    pub fn begin(root: i32, parent: Option<u64>, id: u64) -> Result<Tracking, DumpError> {
        let tracker = Tracker::start(root)?;
        let valid = tracker.advance(parent.unwrap_or(0), id)?;
        let uffds = (tracker.fds()?.into_iter())
            .map(|(pid, fd)| (pid, Uffd::adopt(fd)))
            .collect();
        Ok(Tracking {
            tracker,
            valid,
            uffds,
            joined: BTreeMap::new(),
        })
    }

    /// The tracker's socket name, for `chain.img`.
    pub fn name(&self) -> String {
        self.tracker.name().to_string()
    }

    /// The tracker's pid.
    pub fn tracker_pid(&self) -> Result<i32, DumpError> {
        Ok(self.tracker.pid()?)
    }

    /// Whether writes were counted since the parent image.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// Disarms the tracking of the whole tree.
    pub fn stop(self) -> Result<(), DumpError> {
        self.tracker.stop()?;
        Ok(())
    }

    /// Reads and resets the written state of every trackable mapping of `pid`.
    pub fn scan(&self, pid: i32, vmas: &[Vma]) -> Result<Scanned, DumpError> {
        let pagemap = Pagemap::open(pid)?;
        let mut out = Scanned::default();
        for v in vmas.iter().filter(|v| trackable(v)) {
            match pagemap.take_written(v.start, v.end) {
                Ok(written) if self.valid => {
                    let mut w: Vec<(u64, u64)> = written.iter().map(|r| (r.start, r.end)).collect();
                    w.extend(self.joined.get(&pid).into_iter().flatten());
                    out.clean
                        .extend(crate::ranges::subtract(&[(v.start, v.end)], &w));
                }
                Ok(_) => {}
                Err(PagemapError::Scan {
                    source: nix::errno::Errno::EPERM,
                    ..
                }) => out.unarmed.push((v.start, v.end)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Registers each private anonymous mapping of `pid` not registered yet that touches
    /// a registered one of the same protection and flags (a heap grown by `brk`, memory
    /// mapped beside a tracked mapping): the kernel does not merge a registered mapping
    /// with an unregistered one, and registering merges them as it would have without the
    /// tracking, where their page offsets continue and the new one has no anonymous
    /// memory of its own yet. One written before this round keeps its own (the tracking
    /// cannot undo that, see `docs/ARCHITECTURE.md`): it stays apart, registered, as
    /// `arm` would leave it. Returns whether any was registered: then the mappings read
    /// before are stale.
    ///
    /// Ordering requirements: with `pid` frozen, before its layout is read for the image
    /// and before [`Tracking::scan`] (which takes nothing of these from the parent).
    pub fn join(&mut self, pid: i32, vmas: &[Vma]) -> Result<bool, DumpError> {
        let Some(uffd) = self.uffds.get(&pid) else {
            return Ok(false);
        };
        let pagemap = Pagemap::open(pid)?;
        let mut registered = Vec::with_capacity(vmas.len());
        for v in vmas {
            registered.push(v.is_plain_anon() && pagemap.registered(v.start)?);
        }
        let mut joined = Vec::new();
        for (i, v) in vmas.iter().enumerate() {
            let prev = i > 0 && registered[i - 1] && vmas[i - 1].merges_with(v);
            let next = registered.get(i + 1) == Some(&true) && v.merges_with(&vmas[i + 1]);
            if registered[i] || !v.is_plain_anon() || !(prev || next) {
                continue;
            }
            // Not registrable (sealed, changed meanwhile): left to `scan` and `arm`.
            if uffd.register_wp(v.start, v.len()).is_ok() {
                joined.push((v.start, v.end));
            }
        }
        let any = !joined.is_empty();
        self.joined.insert(pid, joined);
        Ok(any)
    }

    /// Makes sure the tracking holds a userfaultfd of `pid`'s address space, injecting
    /// `userfaultfd(2)` into the frozen `leader` (at the `syscall` instruction `ip`) if
    /// not. Call before [`Tracking::arm`].
    pub fn ensure_uffd(&mut self, pid: i32, leader: &Seized, ip: u64) -> Result<(), DumpError> {
        if self.uffds.contains_key(&pid) {
            return Ok(());
        }
        let uffd = make_uffd(pid, leader, ip)?;
        self.tracker.add(pid, uffd.fd())?;
        self.uffds.insert(pid, uffd);
        Ok(())
    }

    /// Registers and write-protects `ranges` of `pid`: their writes are counted from
    /// now on. A mapping that cannot be registered (sealed, or changed meanwhile) stays
    /// untracked: its pages are stored whole each time.
    pub fn arm(
        &mut self,
        pid: i32,
        ranges: &[(u64, u64)],
        leader: Option<(&Seized, u64)>,
    ) -> Result<(), DumpError> {
        for &(start, end) in ranges {
            let Some(uffd) = self.uffds.get(&pid) else {
                return Ok(());
            };
            match uffd.register_wp(start, end - start) {
                Ok(()) => {}
                // The userfaultfd held is of an address space gone (exec, or a pid
                // reused): make a new one, once.
                Err(nix::errno::Errno::ESRCH) if leader.is_some() => {
                    self.uffds.remove(&pid);
                    let (task, ip) = leader.expect("checked");
                    self.ensure_uffd(pid, task, ip)?;
                    return self.arm(pid, ranges, None);
                }
                Err(_) => continue,
            }
            uffd.write_protect(start, end - start)
                .map_err(|source| DumpError::Track {
                    pid,
                    what: "UFFDIO_WRITEPROTECT",
                    source,
                })?;
        }
        Ok(())
    }
}

/// Private memory, whose pages a dump reads from the page tables: shared memory and
/// huge pages are saved whole, as without tracking.
pub fn trackable(v: &Vma) -> bool {
    !v.shared
        && !v.flags.droppable
        && matches!(
            v.kind,
            VmaKind::Anon | VmaKind::File { .. } | VmaKind::PrivateUnlinked { .. }
        )
}

/// A userfaultfd of `pid`'s address space: `userfaultfd(2)` injected into its frozen
/// leader, the fd taken with `pidfd_getfd` and closed in the task, then the API
/// handshake from here.
fn make_uffd(pid: i32, leader: &Seized, ip: u64) -> Result<Uffd, DumpError> {
    use crate::sys::inject::Remote;
    // A container's seccomp profile may refuse userfaultfd(2) (Docker's and podman's
    // do, without CAP_SYS_PTRACE): the injected call must not meet the task's filter.
    if crate::proc::thread_status(pid, leader.tid())?.seccomp != 0 {
        leader.suspend_seccomp().map_err(|e| {
            DumpError::unsupported(format!(
                "pid {pid} runs under seccomp and suspending it for the tracking's userfaultfd(2) failed ({e}): stasis needs CAP_SYS_ADMIN"
            ))
        })?;
    }
    let regs = leader.regs()?;
    let mask = leader.sigmask()?;
    leader.set_sigmask(!0)?;
    let remote = Remote::new(leader, ip, regs);
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | UFFD_USER_MODE_ONLY;
    let made = remote.call("userfaultfd", libc::SYS_userfaultfd, &[flags]);
    let taken = made.as_ref().ok().map(|&fd| {
        let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid));
        let got = pidfd.and_then(|p| crate::sys::probe::pidfd_getfd(p.as_fd(), fd as i32));
        let closed = remote.call("close", libc::SYS_close, &[fd]);
        (got, closed)
    });
    leader.set_regs(&regs)?;
    leader.set_sigmask(mask)?;
    leader.park()?;
    made?;
    let (got, closed) = taken.expect("made");
    closed?;
    let err = |what| move |source| DumpError::Track { pid, what, source };
    let fd = got.map_err(err("pidfd_getfd of its userfaultfd"))?;
    Uffd::new(fd).map_err(err("UFFDIO_API (async write-protect, Linux 6.7)"))
}

/// Refuses a process holding a userfaultfd: it tracks or handles its own faults, and
/// its registrations would clash with the tracking's.
pub fn refuse_userfaultfd(pid: i32) -> Result<(), DumpError> {
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let link = std::fs::read_link(e.path()).unwrap_or_default();
        if link.to_string_lossy() == "anon_inode:[userfaultfd]" {
            return Err(DumpError::unsupported(format!(
                "fd {} of pid {pid} is a userfaultfd: a tree using userfaultfd itself cannot \
                 have its memory tracked (pre-dump, --track-mem, --prev-images-dir)",
                e.file_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}
