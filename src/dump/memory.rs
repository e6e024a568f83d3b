//! Page contents: which pages to save (`PAGEMAP_SCAN`), reading them in large batches
//! (`process_vm_readv`, or `/proc/PID/mem` for unreadable mappings) and streaming them into
//! the pages file. Pages holding only zeros are not stored where a fresh mapping reads as
//! zeros anyway. Guard regions (`MADV_GUARD_INSTALL`) have no contents: the same scan
//! finds them, and they are recorded to be installed again. The restore side is
//! `restore/memory.rs` (guards: `restore/mm.rs`).
//!
//! Reading and writing overlap: this thread reads a batch from the task, finds its zero
//! pages and checksums the rest while a writer thread writes the previous batch (writing
//! into fresh page-cache pages is the slow part, so the writer does nothing else). [`BUFFERS`] buffers of [`CHUNK`] bytes go round
//! between the two, which bounds stasis's own memory whatever the target's size. A third
//! thread starts writeback of what was written, so that on a disk the final fsync has
//! little left to do (submitting writeback blocks, so the writer does not do it itself).

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use super::DumpError;
use crate::abi::PAGE_SIZE;
use crate::image::mm::{Guard, PageRun, Vma, VmaKind};
use crate::image::pages::{PagesWriter, PAGES_DATA_OFFSET};
use crate::progress::Phase;
use crate::sys::file::start_writeback;
use crate::sys::mem::{vm_read, Mem};
use crate::sys::pagemap::{
    PageRegion, Pagemap, Query, PAGE_IS_FILE, PAGE_IS_GUARD, PAGE_IS_PFNZERO, PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
};

/// Bytes read from the task per batch.
const CHUNK: usize = 4 << 20;
/// Buffers in flight between the reader and the writer.
const BUFFERS: usize = 3;
/// `IOV_MAX`.
const MAX_IOVS: usize = 1024;
/// Writeback of the pages file is started every this many bytes, so that on a disk the
/// final fsync overlaps the copying instead of following it.
const WRITEBACK_EVERY: u64 = 64 << 20;

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
struct Range {
    /// Start of the mapping the range lies in: runs never cross mappings.
    vma: u64,
    start: u64,
    end: u64,
    readable: bool,
    drop_zeros: bool,
}

/// A filled buffer and the byte ranges of it to append to the pages file, in order.
struct Chunk {
    buf: Vec<u8>,
    pieces: Vec<(usize, usize)>,
    /// crc32 of the pieces, one after the other.
    crc: crc32fast::Hasher,
}

/// Address ranges to save in a mapping instead of what `PAGEMAP_SCAN` reports, by mapping
/// start: shared memory is saved once for the tree, from its data (see `dump/shared.rs`).
pub type Overrides = std::collections::HashMap<u64, Vec<(u64, u64)>>;

/// Saves every page of `vmas` that a fresh mapping would not reproduce, but those in the
/// sorted `inherited` ranges (shared with the parent, see `dump/cow.rs`); returns the
/// runs saved and the guard regions found.
pub fn dump(
    pid: i32,
    vmas: &[Vma],
    overrides: &Overrides,
    inherited: &[(u64, u64)],
    out: &mut PagesWriter,
) -> Result<(Vec<PageRun>, Vec<Guard>, MemoryStats), DumpError> {
    let started = Instant::now();
    let (ranges, guards) = {
        let _span = crate::profile::span("page scan");
        ranges_to_save(pid, vmas, overrides)?
    };
    let ranges = cut(ranges, inherited);
    let mut reader = Reader {
        pid,
        mem: Mem::open(pid, false)?,
        runs: Vec::new(),
        run_vma: 0,
        stats: MemoryStats::default(),
    };
    let total = ranges.iter().map(|r| r.end - r.start).sum();
    let progress = Phase::begin("dumping pages", total);
    if total <= CHUNK as u64 {
        // One buffer's worth (most processes of a tree): read and write it here, without
        // starting the writer and flusher threads.
        reader.read_inline(&ranges, out, &progress)?;
        reader.stats.elapsed = started.elapsed();
        return Ok((reader.runs, guards, reader.stats));
    }
    // A second descriptor of the file for the flusher; without one there is no flusher.
    let flush_file = out.file().try_clone().ok();
    std::thread::scope(|s| {
        let (to_writer, chunks) = sync_channel::<Chunk>(BUFFERS);
        let (to_reader, free) = channel::<Vec<u8>>();
        let (to_flusher, written) = channel::<(u64, u64)>();
        if let Some(file) = flush_file {
            s.spawn(move || {
                for (offset, len) in written {
                    // Only a hint: the `syncfs` of the image commit makes the data durable.
                    let _ = start_writeback(&file, offset, len);
                }
            });
        }
        let writer = s.spawn(move || write_chunks(out, chunks, to_reader, to_flusher));
        let read = reader.read_all(&ranges, &to_writer, &free, &progress);
        drop(to_writer);
        let written = writer.join().expect("the page writer does not panic");
        read.and(written)
    })?;
    reader.stats.elapsed = started.elapsed();
    Ok((reader.runs, guards, reader.stats))
}

/// The writer thread: appends each chunk's pieces, hands the buffer back, and every
/// [`WRITEBACK_EVERY`] bytes passes the file range written to the flusher.
fn write_chunks(
    out: &mut PagesWriter,
    chunks: Receiver<Chunk>,
    free: Sender<Vec<u8>>,
    flusher: Sender<(u64, u64)>,
) -> Result<(), DumpError> {
    let mut synced = 0;
    for chunk in chunks {
        let pieces: Vec<&[u8]> = chunk
            .pieces
            .iter()
            .map(|&(off, len)| &chunk.buf[off..off + len])
            .collect();
        out.write_summed(&pieces, &chunk.crc)?;
        let _ = free.send(chunk.buf);
        if out.data_len() - synced >= WRITEBACK_EVERY {
            let _ = flusher.send((PAGES_DATA_OFFSET + synced, out.data_len() - synced));
            synced = out.data_len();
        }
    }
    Ok(())
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
    let query = Query {
        any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
        report: PAGE_IS_FILE | PAGE_IS_PFNZERO | PAGE_IS_GUARD,
        ..Default::default()
    };
    let (mut out, mut guards) = (Vec::new(), Vec::new());
    for vma in vmas {
        let (private_file, drop_zeros) = match vma.kind {
            VmaKind::Anon | VmaKind::Unlinked { .. } => (false, true),
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
        for r in pagemap.scan(vma.start, vma.end, query)? {
            if r.categories & PAGE_IS_GUARD != 0 {
                guards.push(guard(&r));
                continue;
            }
            let skip_file = private_file && r.categories & PAGE_IS_FILE != 0;
            if r.categories & PAGE_IS_PFNZERO == 0 && !skip_file {
                out.push(Range {
                    vma: vma.start,
                    start: r.start,
                    end: r.end,
                    readable,
                    drop_zeros,
                });
            }
        }
    }
    Ok((coalesce(out), guards))
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

/// The parts of the sorted, non-overlapping `ranges` outside the sorted, non-overlapping
/// `holes`.
pub fn subtract(ranges: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut h = 0;
    for &(mut start, end) in ranges {
        while h < holes.len() && holes[h].1 <= start {
            h += 1;
        }
        let mut i = h;
        while start < end && i < holes.len() && holes[i].0 < end {
            if holes[i].0 > start {
                out.push((start, holes[i].0));
            }
            start = start.max(holes[i].1);
            i += 1;
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

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

/// Splits ranges into batches of at most CHUNK bytes and MAX_IOVS pieces, each batch all
/// readable or a single unreadable piece.
fn batches(ranges: &[Range]) -> Vec<Vec<Range>> {
    let mut out = Vec::new();
    let mut cur: Vec<Range> = Vec::new();
    let mut bytes = 0u64;
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            if bytes == CHUNK as u64
                || cur.len() == MAX_IOVS
                || (!cur.is_empty() && cur[0].readable != r.readable)
            {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            let end = r.end.min(start + (CHUNK as u64 - bytes));
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

/// The reading side: fills buffers from the task and decides which pages are stored.
struct Reader {
    pid: i32,
    mem: Mem,
    runs: Vec<PageRun>,
    /// Mapping of the last run, so runs are cut at mapping boundaries.
    run_vma: u64,
    stats: MemoryStats,
}

impl Reader {
    /// Reads every batch and passes it on; stops early (Ok) if the writer has stopped,
    /// whose own error then tells why.
    fn read_all(
        &mut self,
        ranges: &[Range],
        to_writer: &SyncSender<Chunk>,
        free: &Receiver<Vec<u8>>,
        progress: &Phase,
    ) -> Result<(), DumpError> {
        let mut spare = BUFFERS;
        for batch in batches(ranges) {
            let mut buf = if spare > 0 {
                spare -= 1;
                vec![0u8; CHUNK]
            } else {
                match free.recv() {
                    Ok(b) => b,
                    Err(_) => return Ok(()),
                }
            };
            let total = self.read(&batch, &mut buf)?;
            let pieces = self.plan(&batch, &buf);
            let mut crc = crc32fast::Hasher::new();
            pieces
                .iter()
                .for_each(|&(off, len)| crc.update(&buf[off..off + len]));
            progress.advance(total as u64);
            if to_writer.send(Chunk { buf, pieces, crc }).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads the batch into the start of `buf`; returns its length.
    /// Reads `ranges` (at most one [`CHUNK`]) and appends them to `out` in this thread.
    fn read_inline(
        &mut self,
        ranges: &[Range],
        out: &mut PagesWriter,
        progress: &Phase,
    ) -> Result<(), DumpError> {
        let mut buf = Vec::new();
        for batch in batches(ranges) {
            let len: usize = batch.iter().map(|r| (r.end - r.start) as usize).sum();
            buf.resize(len, 0);
            let total = self.read(&batch, &mut buf)?;
            let pieces = self.plan(&batch, &buf);
            let mut crc = crc32fast::Hasher::new();
            let slices: Vec<&[u8]> = pieces.iter().map(|&(o, l)| &buf[o..o + l]).collect();
            slices.iter().for_each(|p| crc.update(p));
            out.write_summed(&slices, &crc)?;
            progress.advance(total as u64);
        }
        Ok(())
    }

    fn read(&self, batch: &[Range], buf: &mut [u8]) -> Result<usize, DumpError> {
        let total: usize = batch.iter().map(|r| (r.end - r.start) as usize).sum();
        let buf = &mut buf[..total];
        if batch[0].readable {
            let iovs: Vec<(u64, usize)> = batch
                .iter()
                .map(|r| (r.start, (r.end - r.start) as usize))
                .collect();
            if vm_read(self.pid, buf, &iovs)? == total {
                return Ok(total);
            }
        }
        let mut off = 0;
        for r in batch {
            let len = (r.end - r.start) as usize;
            self.mem.read(r.start, &mut buf[off..off + len])?;
            off += len;
        }
        Ok(total)
    }

    /// The pieces of `buf` to store: every page but droppable zero pages. Records the runs.
    fn plan(&mut self, batch: &[Range], buf: &[u8]) -> Vec<(usize, usize)> {
        let page = PAGE_SIZE as usize;
        let mut pieces: Vec<(usize, usize)> = Vec::new();
        let mut off = 0usize;
        for r in batch {
            let pages = ((r.end - r.start) / PAGE_SIZE) as usize;
            for i in 0..pages {
                let at = off + i * page;
                if r.drop_zeros && is_zero(&buf[at..at + page]) {
                    self.stats.zero_pages_skipped += 1;
                    continue;
                }
                match pieces.last_mut() {
                    Some((o, l)) if *o + *l == at => *l += page,
                    _ => pieces.push((at, page)),
                }
                self.record(r.vma, r.start + (i * page) as u64);
            }
            off += pages * page;
        }
        pieces
    }

    /// Notes that the page at `addr` (of the mapping at `vma`) is the next one stored.
    fn record(&mut self, vma: u64, addr: u64) {
        self.stats.pages_stored += 1;
        match self.runs.last_mut() {
            Some(last) if last.addr + last.pages * PAGE_SIZE == addr && self.run_vma == vma => {
                last.pages += 1
            }
            _ => self.runs.push(PageRun { addr, pages: 1 }),
        }
        self.run_vma = vma;
    }
}

/// True if the page holds only zero bytes (compared 8 bytes at a time; pages are 4 KiB).
fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8-byte chunk")) == 0)
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

    #[test]
    fn batches_split_at_chunk_size() {
        let big = r(0, 3 * CHUNK as u64);
        let b = batches(&[big]);
        assert_eq!(b.len(), 3);
        assert!(b
            .iter()
            .all(|x| x.len() == 1 && x[0].end - x[0].start == CHUNK as u64));
    }

    #[test]
    fn unreadable_ranges_are_alone() {
        let mut u = r(0x10000, 0x12000);
        u.readable = false;
        let b = batches(&[r(0, 0x1000), u, r(0x20000, 0x21000)]);
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

    #[test]
    fn zero_detection() {
        let mut p = vec![0u8; 4096];
        assert!(is_zero(&p));
        p[4095] = 1;
        assert!(!is_zero(&p));
    }
}
