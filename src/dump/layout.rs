//! The mappings of each process of a frozen tree ([`Layout`]): `/proc/PID/smaps` read while
//! frozen, or — for a dump that keeps the tree running and tracks its memory (`dump -R`
//! against a parent image, or with `--track-mem`) — [`Early`]: smaps read before the
//! freeze, checked against `maps` while frozen and against smaps again once the tree runs.
//!
//! Why: smaps walks every page table entry to count `Rss` (0.1 s for 4 GiB, the largest
//! per-GiB cost of an incremental dump's frozen window), while `maps` prints only what
//! the VMAs hold. What smaps adds that the dump needs is `VmFlags`, which `maps` does not
//! show. A mapping whose `maps` line is the same while frozen as before keeps the flags
//! read before, and the dump fails (before its image is committed) if any mapping's line
//! or flags read again after the release differ: a flag changed (madvise, mlock) between
//! the first read and the freeze shows then. What this cannot see is a flag changed and
//! changed back (by the same call twice) in the ~0.3 s between the two reads, across the
//! freeze. A layout changed since the early read (a mapping made, split or moved) makes
//! that process's smaps be read while frozen, as without `Early`.
//!
//! This module does not own what the layout is made into (`mm.rs`, `cow.rs`).

use std::collections::HashMap;

use super::freeze::Frozen;
use super::tree::FrozenTree;
use super::{cow, mm, DumpError};
use crate::proc::{self, MapEntry};

/// The mappings of one process, and what of them it still shares copy-on-write with its
/// parent.
pub struct Layout {
    pub smaps: Vec<MapEntry>,
    pub vmas: Vec<crate::image::mm::Vma>,
    pub cow: Vec<cow::Found>,
}

/// smaps of the tree's processes read before the freeze, and which of them the dump used.
#[derive(Default)]
pub struct Early {
    read: HashMap<i32, Vec<MapEntry>>,
    /// The entries taken from `read`, by pid: checked again once the tree runs.
    used: Vec<(i32, Vec<MapEntry>)>,
}

impl Early {
    /// smaps of every process of the tree rooted at `root` now (it runs). A process that
    /// exits or cannot be read meanwhile is left out: its smaps is read while frozen.
    ///
    /// Ordering requirements: before the freeze.
    pub fn read(root: i32) -> Result<Early, DumpError> {
        let _span = crate::profile::span("early smaps");
        let read = (super::tree::running(root)?.into_iter())
            .filter_map(|pid| proc::smaps(pid).ok().map(|e| (pid, e)))
            .collect();
        Ok(Early {
            read,
            used: Vec::new(),
        })
    }

    /// Bytes of private memory written since the tracking last reset (present pages
    /// `PAGEMAP_SCAN` reports written, nothing reset): about what the dump will copy
    /// while frozen, to reserve before the freeze (`stripes::reserve_staging`). Mappings
    /// the tracking does not cover count nothing.
    ///
    /// Ordering requirements: before the freeze (an estimate: writes go on).
    pub fn written_bytes(&self) -> u64 {
        use crate::sys::pagemap::{Pagemap, Query, PAGE_IS_PRESENT, PAGE_IS_WRITTEN};
        let _span = crate::profile::span("written estimate");
        let query = Query {
            all: PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
            ..Default::default()
        };
        let mut total = 0;
        for (&pid, entries) in &self.read {
            let Ok(pagemap) = Pagemap::open(pid) else {
                continue;
            };
            for m in entries.iter().filter(|m| !m.shared) {
                if let Ok(found) = pagemap.scan(m.start, m.end, query) {
                    total += found.iter().map(|r| r.end - r.start).sum::<u64>();
                }
            }
        }
        total
    }

    /// `pid`'s mappings with the flags read early, if its `maps` now lists exactly the
    /// mappings read early.
    fn merge(&mut self, pid: i32) -> Result<Option<Vec<MapEntry>>, DumpError> {
        let Some(early) = self.read.remove(&pid) else {
            return Ok(None);
        };
        let now = proc::maps(pid)?;
        if now.len() != early.len() || !now.iter().zip(&early).all(|(a, b)| same_line(a, b)) {
            return Ok(None);
        }
        self.used.push((pid, early.clone()));
        Ok(Some(early))
    }

    /// Once the tree runs again: every mapping taken from the early read has the same
    /// line and flags in smaps read now.
    ///
    /// Ordering requirements: after the release, before the image is committed.
    pub fn check(&self) -> Result<(), DumpError> {
        let _span = crate::profile::span("late smaps");
        for (pid, early) in &self.used {
            let now = match proc::smaps(*pid) {
                Ok(now) => now,
                // Gone since the release: nothing it does can differ any more.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => continue,
                Err(e) => return Err(e.into()),
            };
            let changed = (early.iter().zip(&now))
                .find(|(a, b)| !same_line(a, b) || !same_flags(a, b))
                .map(|(a, _)| a)
                .or_else(|| (early.len() != now.len()).then(|| &early[0]));
            if let Some(m) = changed {
                return Err(DumpError::unsupported(format!(
                    "the mappings of pid {pid} changed while it was being dumped (at {:#x}-{:#x}), so the flags read before the freeze may not be those it had frozen: dump again",
                    m.start, m.end
                )));
            }
        }
        Ok(())
    }
}

/// Same mapping as `maps` prints it (smaps' fields aside).
fn same_line(a: &MapEntry, b: &MapEntry) -> bool {
    (a.start, a.end, a.read, a.write, a.exec, a.shared, a.offset)
        == (b.start, b.end, b.read, b.write, b.exec, b.shared, b.offset)
        && (a.dev_major, a.dev_minor, a.inode, &a.path)
            == (b.dev_major, b.dev_minor, b.inode, &b.path)
}

/// Same `VmFlags`, but the userfaultfd ones (`um`, `uw`, `ui`): the tracking's own
/// registration sets them during the dump.
fn same_flags(a: &MapEntry, b: &MapEntry) -> bool {
    let ours = |f: &&String| !matches!(f.as_str(), "um" | "uw" | "ui");
    a.vm_flags
        .iter()
        .filter(ours)
        .eq(b.vm_flags.iter().filter(ours))
}

/// The mappings of every process, in tree order: from `early` where it has them.
///
/// Ordering requirements: with the tree frozen, before any page is read (see
/// `cow::find`).
pub fn layouts(tree: &FrozenTree, mut early: Option<&mut Early>) -> Result<Vec<Layout>, DumpError> {
    let mut out: Vec<Layout> = Vec::with_capacity(tree.procs.len());
    let from = super::tree::memory_from(&tree.record)?;
    for (task, entry) in tree.procs.iter().zip(tree.record.alive()) {
        let pid = Frozen::pid(task);
        let merged = match early.as_deref_mut() {
            Some(e) => e.merge(pid)?,
            None => None,
        };
        let smaps = match merged {
            Some(m) => m,
            None => proc::smaps(pid)?,
        };
        let vmas = mm::vmas(pid, &smaps)?;
        // What it is forked from at restore: its parent, or a process of its session.
        let source = from.get(&pid).copied().unwrap_or(entry.ppid);
        let parent = tree.procs.iter().position(|t| t.pid() == source);
        let cow = match parent.and_then(|i| out.get(i)) {
            // A process sharing its parent's address space shares every page.
            Some(p) if !entry.shares_vm => cow::find(pid, &vmas, source, &p.vmas)?,
            _ => Vec::new(),
        };
        out.push(Layout { smaps, vmas, cow });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> MapEntry {
        crate::proc::maps::parse_maps(text)
            .expect("parses")
            .remove(0)
    }

    #[test]
    fn same_line_ignores_smaps_fields_only() {
        let a = line("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n");
        let mut b = a.clone();
        b.vm_flags = vec!["rd".into()];
        b.rss_kb = 4;
        assert!(same_line(&a, &b));
        b.write = false;
        assert!(!same_line(&a, &b));
        let c = line("7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \n");
        assert!(!same_line(&a, &c));
    }

    #[test]
    fn userfaultfd_flags_are_the_tracking_s_own() {
        let mut a = line("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n");
        a.vm_flags = vec!["rd".into(), "wr".into()];
        let mut b = a.clone();
        b.vm_flags.push("uw".into());
        assert!(same_flags(&a, &b));
        b.vm_flags.push("dd".into());
        assert!(!same_flags(&a, &b));
    }
}
