//! Copy-on-write sharing between a process and its parent: the pages of a private
//! anonymous mapping that the two still share since a fork — the same physical page at
//! the same address, from `/proc/PID/pagemap` (page frame numbers are visible to
//! CAP_SYS_ADMIN; without them nothing is found shared and every page is stored) — are
//! stored once, by the parent. The restore side is `restore/cow.rs`, which keeps them
//! from the fork that creates the process; the record is `image::mm::CowRange`.
//!
//! Equal frame numbers mean equal contents at the dump (every process is frozen), and the
//! parent's restored memory at that address is its saved contents, so what the child
//! inherits there at restore is exactly what it had.

use super::memory::subtract;
use super::DumpError;
use crate::abi::PAGE_SIZE;
use crate::image::mm::{CowRange, PageRun, Vma};
use crate::sys::pagemap::{Pagemap, Query, PAGE_IS_FILE, PAGE_IS_PFNZERO, PAGE_IS_PRESENT};

/// Pagemap entries read per comparison step.
const STEP_PAGES: u64 = 16384;
/// Pagemap entry bit: the page is present in memory.
const PM_PRESENT: u64 = 1 << 63;
/// Pagemap entry bits 0-54: the page frame number.
const PM_PFN: u64 = (1 << 55) - 1;

/// A mapping range a process keeps from its parent.
pub struct Found {
    start: u64,
    end: u64,
    /// Sorted page ranges shared with the parent: not stored for this process.
    shared: Vec<(u64, u64)>,
}

/// The ranges of `vmas` (of `pid`) that still share pages with the parent `ppid`, whose
/// mappings are `parent`.
///
/// Ordering requirements: before the memory of either process is read. A read-only pin
/// of a page shared copy-on-write (as `process_vm_readv` takes) makes the kernel unshare
/// it first, so after the dump reads a page, the two no longer share it.
pub fn find(pid: i32, vmas: &[Vma], ppid: i32, parent: &[Vma]) -> Result<Vec<Found>, DumpError> {
    let (mine, theirs) = (Pagemap::open(pid)?, Pagemap::open(ppid)?);
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| v.is_private_memory()) {
        let Some(p) = parent.iter().find(|p| inherited_from(v, p)) else {
            continue;
        };
        let (start, end) = (v.start, v.end.min(p.end));
        let shared = shared_pages(&mine, &theirs, start, end)?;
        if !shared.is_empty() {
            out.push(Found { start, end, shared });
        }
    }
    Ok(out)
}

/// The sorted page ranges a process holds once restored: its stored pages (`runs`) and
/// those it keeps from its own parent.
pub fn pages_at_restore(runs: &[PageRun], found: &[Found]) -> Vec<(u64, u64)> {
    let mut pages: Vec<(u64, u64)> = runs.iter().map(run_range).collect();
    pages.extend(shared(found));
    merge(pages)
}

/// Every shared range of `found`, sorted: the pages the memory dump leaves out.
pub fn shared(found: &[Found]) -> Vec<(u64, u64)> {
    found
        .iter()
        .flat_map(|f| f.shared.iter().copied())
        .collect()
}

/// The records, once the process's own stored pages (`runs`) and the parent's pages at
/// restore ([`pages_at_restore`]) are known: where the parent has a page that is neither
/// shared nor stored here, the restored process must read zeros.
pub fn ranges(found: &[Found], runs: &[PageRun], parent: &[(u64, u64)]) -> Vec<CowRange> {
    let own: Vec<(u64, u64)> = runs.iter().map(run_range).collect();
    found
        .iter()
        .map(|f| {
            let theirs = clip(parent, f.start, f.end);
            let zap = subtract(&subtract(&theirs, &f.shared), &own);
            CowRange {
                start: f.start,
                end: f.end,
                zap,
            }
        })
        .collect()
}

/// Whether child mapping `v` may keep, from its start, what parent mapping `p` holds:
/// `p` covers that start with the same backing, protection and mmap flags, and a fork
/// copies it.
fn inherited_from(v: &Vma, p: &Vma) -> bool {
    p.start <= v.start
        && v.start < p.end
        && v.same_backing(p)
        && p.flags.growsdown == v.flags.growsdown
        && p.flags.noreserve == v.flags.noreserve
        && !p.flags.dontfork
        && !p.flags.wipeonfork
}

/// The anonymous pages of `[start, end)` present in both processes on the same physical
/// page (pages of a file's page cache are never stored, shared or not).
fn shared_pages(
    mine: &Pagemap,
    theirs: &Pagemap,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, u64)>, DumpError> {
    let query = Query {
        all: PAGE_IS_PRESENT,
        report: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        ..Default::default()
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in mine.scan(start, end, query)? {
        if r.categories & (PAGE_IS_PFNZERO | PAGE_IS_FILE) != 0 {
            continue;
        }
        let mut at = r.start;
        while at < r.end {
            let to = r.end.min(at + STEP_PAGES * PAGE_SIZE);
            let (a, b) = (mine.entries(at, to)?, theirs.entries(at, to)?);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if same_frame(*x, *y) {
                    push_page(&mut out, at + i as u64 * PAGE_SIZE);
                }
            }
            at = to;
        }
    }
    Ok(out)
}

/// Both entries present on the same, known frame.
fn same_frame(x: u64, y: u64) -> bool {
    x & PM_PRESENT != 0 && y & PM_PRESENT != 0 && x & PM_PFN != 0 && x & PM_PFN == y & PM_PFN
}

fn push_page(out: &mut Vec<(u64, u64)>, addr: u64) {
    match out.last_mut() {
        Some(last) if last.1 == addr => last.1 += PAGE_SIZE,
        _ => out.push((addr, addr + PAGE_SIZE)),
    }
}

fn run_range(r: &PageRun) -> (u64, u64) {
    (r.addr, r.addr + r.pages * PAGE_SIZE)
}

/// Sorts and merges overlapping or touching ranges.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of the sorted `ranges` inside `[start, end)`.
fn clip(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let from = ranges.partition_point(|r| r.1 <= start);
    ranges[from..]
        .iter()
        .take_while(|r| r.0 < end)
        .map(|&(s, e)| (s.max(start), e.min(end)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_is_what_the_parent_has_and_the_child_neither_shares_nor_stores() {
        let found = Found {
            start: 0x10000,
            end: 0x20000,
            shared: vec![(0x10000, 0x12000)],
        };
        let runs = [PageRun {
            addr: 0x13000,
            pages: 2,
            stripe: 0,
        }];
        let parent = [(0x8000, 0x16000), (0x18000, 0x19000), (0x20000, 0x30000)];
        let r = ranges(&[found], &runs, &parent);
        assert_eq!(
            r[0].zap,
            vec![(0x12000, 0x13000), (0x15000, 0x16000), (0x18000, 0x19000)]
        );
        assert_eq!((r[0].start, r[0].end), (0x10000, 0x20000));
    }

    #[test]
    fn clip_and_merge() {
        let m = merge(vec![(0x5000, 0x6000), (0x1000, 0x3000), (0x3000, 0x4000)]);
        assert_eq!(m, vec![(0x1000, 0x4000), (0x5000, 0x6000)]);
        assert_eq!(
            clip(&m, 0x2000, 0x5800),
            vec![(0x2000, 0x4000), (0x5000, 0x5800)]
        );
    }

    #[test]
    fn frames_match_only_when_present_and_known() {
        let present = |pfn: u64| PM_PRESENT | pfn;
        assert!(same_frame(present(42), present(42)));
        assert!(!same_frame(present(42), present(43)));
        assert!(
            !same_frame(present(0), present(0)),
            "pfns hidden without privilege"
        );
        assert!(!same_frame(42, 42), "swapped or absent");
    }
}
