//! Page contents: which pages to save (`PAGEMAP_SCAN`), reading them in large batches
//! (`process_vm_readv`, or `/proc/PID/mem` for unreadable mappings) and streaming them into
//! the pages file. Pages holding only zeros are not stored where a fresh mapping reads as
//! zeros anyway, nor those of `MAP_DROPPABLE` mappings. Guard regions (`MADV_GUARD_INSTALL`) have no contents: the same scan
//! finds them, and they are recorded to be installed again. The restore side is
//! `restore/memory.rs` (guards: `restore/mm.rs`).
//!
//! Reading and writing the pages (several files at once for a large address space) is
//! `stripes.rs`.

use std::time::{Duration, Instant};

use super::DumpError;
use crate::image::mm::{Guard, PageRun, Vma, VmaKind};
use crate::image::pages::PagesWriter;
use crate::image::ImageError;
use crate::progress::Phase;
use crate::sys::pagemap::{
    PageRegion, Pagemap, Query, PAGE_IS_FILE, PAGE_IS_GUARD, PAGE_IS_PFNZERO, PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
};

/// Bytes read from the task per batch.
pub(super) const CHUNK: usize = 4 << 20;
/// Bytes read per batch when the pages go to a page server (`PagesWriter::remote`): small
/// enough that a batch stays in the CPU's cache from the read through the zero-page
/// check and the checksum to the copy into the socket (a 1 GiB stop-and-copy through a
/// loopback page server took 670 ms instead of 735 with [`CHUNK`], medians of 4).
const REMOTE_CHUNK: usize = 512 << 10;
/// `IOV_MAX`.
const MAX_IOVS: usize = 1024;

/// Counts and time for the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    pub pages_stored: u64,
    pub zero_pages_skipped: u64,
    /// From the page scan to the last page written (the fsync is the caller's).
    pub elapsed: Duration,
}

/// A range of pages to read, and whether all-zero pages in it may be dropped.
#[derive(Clone, Copy, Debug)]
pub(super) struct Range {
    /// Start of the mapping the range lies in: runs never cross mappings.
    pub vma: u64,
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub drop_zeros: bool,
}

/// Address ranges to save in a mapping instead of what `PAGEMAP_SCAN` reports, by mapping
/// start: shared memory is saved once for the tree, from its data (see `dump/shared.rs`).
pub type Overrides = std::collections::HashMap<u64, Vec<(u64, u64)>>;

/// Where the pages of one process come from: its memory, but what it still shares with
/// its parent process and what is unchanged since the parent image.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sources<'a> {
    /// Sorted ranges shared copy-on-write with the parent process (`dump/cow.rs`).
    pub inherited: &'a [(u64, u64)],
    /// Sorted ranges unchanged since the parent image, which holds them
    /// (`dump/track.rs`): recorded as parent runs, not stored.
    pub unchanged: &'a [(u64, u64)],
    /// The process runs while its pages are read (a pre-dump): pages gone meanwhile
    /// read as zeros (`stripes::write`).
    pub running: bool,
    /// Copy the pages into memory, for the caller to write once the tree runs again
    /// (`stripes::Staged`), if there are at most [`STAGE_MAX`] bytes of them.
    pub stage: bool,
    /// Sorted mappings whose pages are served after the restore (`dump --lazy-pages`,
    /// `lazy::plan`): returned as runs of [`LAZY_STRIPE`], not read.
    pub lazy: &'a [(u64, u64)],
}

/// The most page bytes of one process held in memory to be written after the release.
pub const STAGE_MAX: u64 = 512 << 20;

/// What [`dump`] saved of one process.
pub struct Saved {
    pub runs: Vec<PageRun>,
    pub guards: Vec<Guard>,
    pub stats: MemoryStats,
    /// Pages copied but not written yet (`Sources::stage`).
    pub staged: Vec<super::stripes::Staged>,
}

/// The `stripe` of a run returned by [`dump`] whose pages were not read: they are
/// served after the restore (`lazy/`). Never written to an mm record.
pub const LAZY_STRIPE: u8 = 254;

/// Saves every page of `vmas` that a fresh mapping would not reproduce, but those in the
/// sorted `inherited` ranges (shared with the parent, see `dump/cow.rs`), into the pages
/// files `open(stripe)` creates (how many: `stripes::stripes_for`); pages in `unchanged`
/// ranges become parent runs instead. Returns the runs and the guard regions found.
pub fn dump(
    pid: i32,
    vmas: &[Vma],
    overrides: &Overrides,
    from: Sources,
    open: &dyn Fn(u8) -> Result<PagesWriter, ImageError>,
) -> Result<Saved, DumpError> {
    let started = Instant::now();
    let (ranges, guards) = {
        let _span = crate::profile::span("page scan");
        ranges_to_save(pid, vmas, overrides)?
    };
    let plan = crate::profile::span("pages plan");
    let ranges = cut(ranges, from.inherited);
    let parent = if from.unchanged.is_empty() {
        Vec::new()
    } else {
        let wanted: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
        intersect(&wanted, from.unchanged)
    };
    let ranges = cut(ranges, &parent);
    let lazy = if from.lazy.is_empty() {
        Vec::new()
    } else {
        let wanted: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
        intersect(
            &wanted,
            &crate::lazy::plan::without_guards(from.lazy, &guards),
        )
    };
    let ranges = cut(ranges, &lazy);
    let total = ranges.iter().map(|r| r.end - r.start).sum();
    drop(plan);
    let _span = crate::profile::span("pages files");
    let files = (0..super::stripes::stripes_for(total))
        .map(open)
        .collect::<Result<Vec<_>, _>>()?;
    drop(_span);
    let progress = Phase::begin("dumping pages", total);
    let stage = from.stage && total <= STAGE_MAX;
    let chunk = match files.first().is_some_and(PagesWriter::is_remote) {
        true => REMOTE_CHUNK,
        false => CHUNK,
    };
    let batches = batches(&ranges, chunk);
    let (mut runs, mut stats, staged) =
        super::stripes::write(pid, &batches, files, &progress, from.running, stage)?;
    runs.extend(parent.iter().map(|&(start, end)| PageRun {
        addr: start,
        pages: (end - start) / crate::abi::PAGE_SIZE,
        stripe: crate::image::mm::PARENT_STRIPE,
    }));
    runs.extend(lazy.iter().map(|&(start, end)| PageRun {
        addr: start,
        pages: (end - start) / crate::abi::PAGE_SIZE,
        stripe: LAZY_STRIPE,
    }));
    runs.sort_by_key(|r| r.addr);
    stats.elapsed = started.elapsed();
    Ok(Saved {
        runs,
        guards,
        stats,
        staged,
    })
}

/// The ranges whose pages are saved, and the guard regions, of every mapping. Shared file
/// mappings keep their contents in the file: only their guards are looked for. In a
/// mapping with [`Overrides`], pages under this process's guards cannot be read through
/// it and are left out (what the shared object holds there comes back as zeros).
fn ranges_to_save(
    pid: i32,
    vmas: &[Vma],
    overrides: &Overrides,
) -> Result<(Vec<Range>, Vec<Guard>), DumpError> {
    let pagemap = Pagemap::open(pid)?;
    let (mut out, mut guards) = (Vec::new(), Vec::new());
    for vma in vmas {
        let (private_file, drop_zeros) = match vma.kind {
            // The kernel may drop a droppable mapping's pages at any time: none are kept.
            VmaKind::Anon if vma.flags.droppable => {
                guards.extend(guards_in(&pagemap, vma)?);
                continue;
            }
            VmaKind::Anon | VmaKind::Unlinked { .. } | VmaKind::Hugetlb { .. } => (false, true),
            // Pages still those of the object come from it at restore.
            VmaKind::PrivateUnlinked { .. } => (true, false),
            VmaKind::File { .. } if !vma.shared => (true, false),
            VmaKind::File { .. } => {
                guards.extend(guards_in(&pagemap, vma)?);
                continue;
            }
            _ => continue,
        };
        let readable = vma.prot & libc::PROT_READ as u32 != 0;
        if let Some(given) = overrides.get(&vma.start) {
            let own = guards_in(&pagemap, vma)?;
            out.extend(
                subtract(given, &pairs(&own))
                    .into_iter()
                    .map(|(start, end)| Range {
                        vma: vma.start,
                        start,
                        end,
                        readable,
                        drop_zeros,
                    }),
            );
            guards.extend(own);
            continue;
        }
        for r in present_regions(&pagemap, vma, private_file)? {
            if r.categories & PAGE_IS_GUARD != 0 {
                guards.push(guard(&r));
                continue;
            }
            let skip_file = private_file && r.categories & PAGE_IS_FILE != 0;
            if r.categories & PAGE_IS_PFNZERO != 0 || skip_file {
                continue;
            }
            for (start, end) in with_pages(&pagemap, pid, vma, &r)? {
                out.push(Range {
                    vma: vma.start,
                    start,
                    end,
                    readable,
                    drop_zeros,
                });
            }
        }
    }
    Ok((coalesce(out), guards))
}

/// The parts of region `r` of `vma` that hold pages: a swapped region may be PTE markers
/// left by the write protection of `--track-mem` (`Pagemap::markers`), whose contents a
/// fresh mapping gives. Stored, such a page of a private file mapping would come back as
/// a private copy written at restore, which makes the mapping writable once (the kernel
/// then merges it with a neighbour the program had apart); where markers cannot be told
/// from pages swapped out (no CAP_SYS_ADMIN), the dump of such a mapping is refused.
fn with_pages(
    pagemap: &Pagemap,
    pid: i32,
    vma: &Vma,
    r: &PageRegion,
) -> Result<Vec<(u64, u64)>, DumpError> {
    let whole = [(r.start, r.end)];
    if r.categories & PAGE_IS_SWAPPED == 0 {
        return Ok(whole.to_vec());
    }
    let markers = pagemap.markers(r.start, r.end)?;
    match markers.undecided {
        Some(at) if matches!(vma.kind, VmaKind::File { .. } | VmaKind::PrivateUnlinked { .. }) => {
            Err(DumpError::unsupported(format!(
                "page {at:#x} of mapping {:#x}-{:#x} of pid {pid} is write-protected by the memory tracking and not present: telling a page swapped out from one the file holds needs CAP_SYS_ADMIN (swap types in /proc/PID/pagemap)",
                vma.start, vma.end
            )))
        }
        _ => Ok(subtract(&whole, &markers.found)),
    }
}

/// The present, swapped and guard pages of `vma` as regions reporting zero-pfn pages,
/// swapped ones and guards (see [`present_query`]). In an anonymous mapping they are
/// found as the complement of the pages *not* to read ([`absent_query`]): the kernel's
/// cost is in reporting a page, not in looking at it, and those pages are few where
/// memory is dense (2.5 ms instead of 11 ms for 4 GiB of present pages).
fn present_regions(
    pagemap: &Pagemap,
    vma: &Vma,
    private_file: bool,
) -> Result<Vec<PageRegion>, DumpError> {
    if private_file || !matches!(vma.kind, VmaKind::Anon) {
        return Ok(pagemap.scan(vma.start, vma.end, present_query(private_file))?);
    }
    let absent = pagemap.scan(vma.start, vma.end, absent_query())?;
    Ok(complement(vma.start, vma.end, &absent))
}

/// Pages not present or mapping the zero page, reporting which are swapped entries,
/// guards or zero pages (a page neither is a hole: nothing to read there).
fn absent_query() -> Query {
    Query {
        inverted: PAGE_IS_PRESENT,
        any: PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
        report: PAGE_IS_PFNZERO | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
        ..Default::default()
    }
}

/// What [`present_query`] reports of `[start, end)`, from the sorted regions `absent`
/// ([`absent_query`]) found there: each gap between them is present (no category), and
/// of them the swapped entries, guards and zero pages are kept, holes dropped.
fn complement(start: u64, end: u64, absent: &[PageRegion]) -> Vec<PageRegion> {
    let mut out = Vec::with_capacity(absent.len() + 1);
    let mut at = start;
    for r in absent {
        if r.start > at {
            out.push(PageRegion {
                start: at,
                end: r.start,
                categories: 0,
            });
        }
        if r.categories != 0 {
            out.push(*r);
        }
        at = at.max(r.end);
    }
    if at < end {
        out.push(PageRegion {
            start: at,
            end,
            categories: 0,
        });
    }
    out
}

/// Present or swapped pages, reporting zero-pfn pages, swapped ones and guards, and (in
/// a private file mapping) which pages are still the file's. `PAGE_IS_FILE` is asked only there: it
/// makes the kernel look up every page's `struct page`, while the other categories come
/// from the page table entry alone, and a page of an anonymous or shared mapping is
/// never a private file page.
fn present_query(private_file: bool) -> Query {
    let file = if private_file { PAGE_IS_FILE } else { 0 };
    Query {
        any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
        report: file | PAGE_IS_PFNZERO | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
        ..Default::default()
    }
}

fn guard(r: &PageRegion) -> Guard {
    Guard {
        start: r.start,
        end: r.end,
    }
}

/// The guard regions of one mapping.
fn guards_in(pagemap: &Pagemap, vma: &Vma) -> Result<Vec<Guard>, DumpError> {
    let query = Query {
        all: PAGE_IS_GUARD,
        report: PAGE_IS_GUARD,
        ..Default::default()
    };
    let found = pagemap.scan(vma.start, vma.end, query)?;
    Ok(found
        .iter()
        .filter(|r| r.categories & PAGE_IS_GUARD != 0)
        .map(guard)
        .collect())
}

pub use crate::ranges::{intersect, subtract};

/// `ranges` without the sorted `holes`.
fn cut(ranges: Vec<Range>, holes: &[(u64, u64)]) -> Vec<Range> {
    if holes.is_empty() {
        return ranges;
    }
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let from = holes.partition_point(|h| h.1 <= r.start);
        let left = subtract(&[(r.start, r.end)], &holes[from..]);
        out.extend(
            left.into_iter()
                .map(|(start, end)| Range { start, end, ..r }),
        );
    }
    out
}

fn pairs(guards: &[Guard]) -> Vec<(u64, u64)> {
    guards.iter().map(|g| (g.start, g.end)).collect()
}

/// Merges touching ranges of one mapping (PAGEMAP_SCAN splits them by category).
fn coalesce(ranges: Vec<Range>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(l) if l.end == r.start && l.vma == r.vma => l.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// Splits ranges into batches of at most `chunk` bytes and MAX_IOVS pieces, each batch all
/// readable or a single unreadable piece.
fn batches(ranges: &[Range], chunk: usize) -> Vec<Vec<Range>> {
    let mut out = Vec::new();
    let mut cur: Vec<Range> = Vec::new();
    let mut bytes = 0u64;
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            if bytes == chunk as u64
                || cur.len() == MAX_IOVS
                || (!cur.is_empty() && cur[0].readable != r.readable)
            {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            let end = r.end.min(start + (chunk as u64 - bytes));
            cur.push(Range { start, end, ..*r });
            bytes += end - start;
            start = end;
            if !r.readable {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Range {
        Range {
            vma: 0,
            start,
            end,
            readable: true,
            drop_zeros: true,
        }
    }

    fn region(start: u64, end: u64, categories: u64) -> PageRegion {
        PageRegion {
            start,
            end,
            categories,
        }
    }

    #[test]
    fn present_pages_are_the_complement_of_the_absent_ones() {
        let absent = [
            region(0x1000, 0x2000, 0),               // a hole
            region(0x3000, 0x4000, PAGE_IS_PFNZERO), // the zero page
            region(0x4000, 0x6000, PAGE_IS_SWAPPED), // swapped or markers
            region(0x8000, 0x9000, PAGE_IS_SWAPPED | PAGE_IS_GUARD),
        ];
        assert_eq!(
            complement(0x0, 0xa000, &absent),
            vec![
                region(0x0, 0x1000, 0),
                region(0x2000, 0x3000, 0),
                absent[1],
                absent[2],
                region(0x6000, 0x8000, 0),
                absent[3],
                region(0x9000, 0xa000, 0),
            ]
        );
        assert_eq!(complement(0x0, 0x2000, &[]), vec![region(0x0, 0x2000, 0)]);
        assert_eq!(complement(0x0, 0x1000, &[region(0x0, 0x1000, 0)]), vec![]);
    }

    /// The complement of the absent pages is what the present-page query reports, on
    /// memory of this process holding written pages, zero pages and holes.
    #[test]
    fn complement_scan_matches_the_present_scan() {
        let page = crate::abi::PAGE_SIZE as usize;
        // Large enough to be a fresh mapping of its own: untouched pages are holes.
        let mut buf = vec![0u8; 96 * page];
        let base = (buf.as_ptr() as usize).next_multiple_of(page);
        let first = base - buf.as_ptr() as usize;
        for i in [0usize, 1, 2, 10, 40, 41, 80] {
            buf[first + i * page] = 1;
        }
        for i in [20usize, 21, 60] {
            // A read of an untouched page maps the zero page.
            std::hint::black_box(buf[first + i * page]);
        }
        let (start, end) = (base as u64, (base + 90 * page) as u64);
        let pagemap = Pagemap::open(std::process::id() as i32).expect("open");
        let present = pagemap
            .scan(start, end, present_query(false))
            .expect("scan");
        let absent = pagemap.scan(start, end, absent_query()).expect("scan");
        std::hint::black_box(&buf);
        assert_eq!(complement(start, end, &absent), present);
    }

    #[test]
    fn batches_split_at_chunk_size() {
        let big = r(0, 3 * CHUNK as u64);
        let b = batches(&[big], CHUNK);
        assert_eq!(b.len(), 3);
        assert!(b
            .iter()
            .all(|x| x.len() == 1 && x[0].end - x[0].start == CHUNK as u64));
    }

    #[test]
    fn unreadable_ranges_are_alone() {
        let mut u = r(0x10000, 0x12000);
        u.readable = false;
        let b = batches(&[r(0, 0x1000), u, r(0x20000, 0x21000)], CHUNK);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn coalesce_merges_touching() {
        let c = coalesce(vec![r(0, 0x1000), r(0x1000, 0x3000), r(0x5000, 0x6000)]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].end, 0x3000);
    }

    #[test]
    fn holes_are_cut_out_of_ranges() {
        let ranges = [(0x1000, 0x5000), (0x8000, 0x9000)];
        assert_eq!(
            subtract(&ranges, &[(0x2000, 0x3000), (0x4000, 0x8000)]),
            vec![(0x1000, 0x2000), (0x3000, 0x4000), (0x8000, 0x9000)]
        );
        assert_eq!(
            subtract(&ranges, &[(0x1000, 0x5000)]),
            vec![(0x8000, 0x9000)]
        );
        assert_eq!(subtract(&ranges, &[]), ranges.to_vec());
        assert_eq!(
            subtract(&ranges, &[(0, 0x1800), (0x4800, 0x8800)]),
            vec![(0x1800, 0x4800), (0x8800, 0x9000)]
        );
    }

    #[test]
    fn cut_keeps_range_attributes() {
        let c = cut(vec![r(0x1000, 0x4000)], &[(0x2000, 0x3000)]);
        assert_eq!(
            c.iter().map(|x| (x.start, x.end)).collect::<Vec<_>>(),
            vec![(0x1000, 0x2000), (0x3000, 0x4000)]
        );
        assert!(c.iter().all(|x| x.readable && x.drop_zeros));
    }
}
