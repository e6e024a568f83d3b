//! `stasis pre-dump`: saves a tree's memory while it keeps running, and arms the
//! tracking of written pages (`track.rs`) so that a later dump (or pre-dump) with
//! `--prev-images-dir` pointing at it stores only the pages written since.
//!
//! The tree is frozen only to read and reset what was written and to make the
//! userfaultfds of processes not tracked yet (an injected call each); the pages are read
//! once it runs again. That is sound because every page is write-protected before it is
//! read: a page written after its protection is reported written by the next image,
//! which stores it again, so what this image holds for a page is used only where the
//! page was not written since. A pre-dump is therefore not restorable by itself (as
//! CRIU's), only as a parent. Mappings that are not private memory (shared memory, huge
//! pages, special mappings) are not saved: the dump stores them.
//!
//! A process whose address space is gone once the tree runs again (it exited, or called
//! exec: a shell's short-lived children do both) is left out of the image, whatever its
//! arming or reading met meanwhile: no later image can take pages of that address space
//! from this one (a new address space, or a new process under a reused pid, is not
//! registered with the tracking, so `track.rs` stores it whole).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::incremental::Incremental;
use super::memory::{self, Sources};
use super::track::{trackable, Scanned};
use super::{freeze, mm, tree, DumpError};
use crate::image::chain::CHAIN;
use crate::image::load::{pages_name, record_name};
use crate::image::mm::{MmImage, Vma, VmaKind};
use crate::image::{ImageWriter, Kind};
use crate::sys::pagemap::Pagemap;

/// What `stasis pre-dump` was asked to do.
#[derive(Clone, Debug)]
pub struct PreDumpOptions {
    pub pid: i32,
    pub dir: PathBuf,
    /// The previous pre-dump of the tree (relative to `dir`).
    pub prev_images_dir: Option<PathBuf>,
    pub timeout: Duration,
    /// `--page-server`: the image is sent there (`image::sink`); `dir` keeps the records.
    pub remote: Option<crate::image::RemoteSink>,
}

/// Figures of a pre-dump.
#[derive(Clone, Debug, Default)]
pub struct PreDumpSummary {
    pub pages_stored: u64,
    pub pages_in_parent: u64,
    /// From the freeze of the root to the release of the tree.
    pub frozen: Duration,
    pub total: Duration,
    /// The tracker holding the tracking armed.
    pub tracker_pid: i32,
    /// Processes left out: their address space was gone after the freeze (exit, exec).
    pub gone: Vec<i32>,
}

impl PreDumpSummary {
    /// `, left out ...` naming the processes gone since the freeze, or nothing.
    pub fn gone_note(&self) -> String {
        if self.gone.is_empty() {
            return String::new();
        }
        let pids: Vec<String> = self.gone.iter().map(i32::to_string).collect();
        format!(
            ", left out (exited or exec'd once the tree ran again): pid {}",
            pids.join(", ")
        )
    }
}

/// One process as seen while frozen.
struct Seen {
    pid: i32,
    vmas: Vec<Vma>,
    scanned: Scanned,
    /// Its pagemap opened while frozen: it holds the address space seen, and tells
    /// whether that is gone since.
    frozen_mm: Pagemap,
}

impl Seen {
    /// `done`, or `None` if the address space seen is gone (whatever `done` says).
    fn unless_gone<T>(&self, done: Result<T, DumpError>) -> Result<Option<T>, DumpError> {
        if self.frozen_mm.address_space_gone() {
            return Ok(None);
        }
        done.map(Some)
    }
}

/// Pre-dumps the tree rooted at `opts.pid` into `opts.dir`.
pub fn pre_dump(opts: &PreDumpOptions) -> Result<PreDumpSummary, DumpError> {
    let started = Instant::now();
    crate::sys::deadline::set_bound(Some(opts.timeout));
    freeze::preflight(opts.pid, true)?;
    let plain = crate::image::store::StoreOptions::default();
    let mut chain = Incremental::open(&opts.dir, opts.prev_images_dir.as_deref(), true, &plain)?;
    let mut writer = ImageWriter::create(&opts.dir)?;
    writer.set_remote(opts.remote.clone());
    let tree = tree::freeze_tree(opts.pid, true, freeze::Adopted::default())?;
    let frozen_at = Instant::now();
    let seen = look(&tree, &mut chain);
    let released = tree.release();
    let frozen = frozen_at.elapsed();
    let seen = seen?;
    released?;
    let mut summary = PreDumpSummary {
        frozen,
        ..Default::default()
    };
    let mut armed = Vec::new();
    for s in seen {
        let done = match chain.tracking_mut() {
            Some(t) => t.arm(s.pid, &s.scanned.unarmed, None),
            None => Ok(()),
        };
        match s.unless_gone(done)? {
            Some(()) => armed.push(s),
            None => summary.gone.push(s.pid),
        }
    }
    let mut pids = Vec::new();
    for s in armed {
        let pid = s.pid;
        match save(s, &chain, &writer)? {
            Some(saved) => {
                summary.pages_stored += saved.0;
                summary.pages_in_parent += saved.1;
                pids.push(pid);
            }
            None => {
                writer.discard(|name| of_pid(name, pid))?;
                summary.gone.push(pid);
            }
        }
    }
    writer.write_record(CHAIN, Kind::Chain, &chain.record(&pids, true))?;
    writer.commit()?;
    if let Some(t) = chain.tracking_mut() {
        summary.tracker_pid = t.tracker_pid()?;
    }
    summary.total = started.elapsed();
    Ok(summary)
}

/// With the tree frozen: refuses userfaultfd users, reaches the tracking, reads and
/// resets each address space's written pages and makes the missing userfaultfds.
fn look(tree: &tree::FrozenTree, chain: &mut Incremental) -> Result<Vec<Seen>, DumpError> {
    let all: Vec<i32> = tree.procs.iter().map(freeze::Frozen::pid).collect();
    chain.begin(all[0], &all)?;
    let mut out = Vec::new();
    for (task, entry) in tree.procs.iter().zip(tree.record.alive()) {
        if entry.shares_vm {
            continue;
        }
        let pid = task.pid();
        chain.join(pid)?;
        // `maps`, not `smaps`: smaps walks every page table (100 ms for 4 GiB), and
        // what this image holds is used only where the dump's own look (with smaps)
        // finds private memory the tracking counted.
        let all = mm::vmas(pid, &crate::proc::maps(pid)?)?;
        let (ip, _) = mm::find_syscall_insn(pid, &all)?;
        let vmas: Vec<Vma> = all
            .into_iter()
            .filter(|v| trackable(v) && matches!(v.kind, VmaKind::Anon | VmaKind::File { .. }))
            .collect();
        let frozen_mm = Pagemap::open(pid)?;
        let scanned = chain.scan(pid, &vmas)?;
        if let Some(t) = chain.tracking_mut() {
            t.ensure_uffd(pid, task.leader(), ip)?;
        }
        out.push(Seen {
            pid,
            vmas,
            scanned,
            frozen_mm,
        });
    }
    Ok(out)
}

/// Reads one process's pages (it runs meanwhile) and writes its records; the pages
/// stored and those left in the parent, or `None` if its address space is gone since
/// the freeze (what it wrote is then the caller's to discard).
fn save(
    mut s: Seen,
    chain: &Incremental,
    writer: &ImageWriter,
) -> Result<Option<(u64, u64)>, DumpError> {
    let saved = save_records(&mut s, chain, writer);
    s.unless_gone(saved)
}

/// The files of `pid` in an image: its mm record and its pages files.
fn of_pid(name: &str, pid: i32) -> bool {
    name == record_name("mm", pid) || name.starts_with(&format!("pages-{pid}."))
}

fn save_records(
    s: &mut Seen,
    chain: &Incremental,
    writer: &ImageWriter,
) -> Result<(u64, u64), DumpError> {
    let pid = s.pid;
    let unchanged = chain.in_parent(pid, std::mem::take(&mut s.scanned.clean))?;
    let open = |stripe| writer.pages(&pages_name(pid, stripe));
    let from = Sources {
        inherited: &[],
        unchanged: &unchanged,
        running: true,
        stage: false,
        lazy: &[],
    };
    let saved = memory::dump(pid, &s.vmas, &memory::Overrides::new(), from, &open)?;
    let (page_runs, guards) = (saved.runs, saved.guards);
    let in_parent = (unchanged.iter())
        .map(|(a, b)| (b - a) / crate::abi::PAGE_SIZE)
        .sum::<u64>();
    let mm = MmImage {
        vmas: std::mem::take(&mut s.vmas),
        page_runs,
        auxv: crate::proc::auxv(pid)?,
        guards,
        ..MmImage::default()
    };
    writer.write_record(&record_name("mm", pid), Kind::Mm, &mm)?;
    Ok((saved.stats.pages_stored, in_parent))
}

/// `stasis pre-dump --stop-tracking -t PID`: ends the tracking of the tree rooted at
/// `root`; it runs on untracked.
pub fn stop_tracking(root: i32) -> Result<(), DumpError> {
    let name = crate::tracker::name(root);
    match crate::tracker::Tracker::find(&name)? {
        Some(t) => Ok(t.stop()?),
        None => Err(crate::tracker::TrackerError::NotRunning { name }.into()),
    }
}
