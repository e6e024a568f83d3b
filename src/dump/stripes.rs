//! Writing the pages of one address space: batches of ranges (from `memory.rs`) are read
//! from the task, their all-zero pages dropped where a fresh mapping reads as zeros, the
//! rest checksummed and appended to a pages file.
//!
//! A large address space is written by several workers at once, one per CPU up to
//! [`MAX_STRIPES`], each appending to a pages file of its own (a *stripe*,
//! `PageRun::stripe`). Writing into fresh page-cache pages is the cost of a dump, the
//! kernel allocates them in parallel for separate files (one file's writes serialize on
//! its inode lock), and a worker that reads, checks and writes its own batches keeps
//! every CPU busy without handing buffers around. Workers take batches in address order
//! from a shared counter, so each file holds its runs in address order. Each worker holds
//! one batch buffer (`memory::CHUNK`), which bounds stasis's own memory whatever the target's size.
//!
//! Each worker reads into a page-aligned window of its buffer, so that a pages file
//! written with `O_DIRECT` (`dump --direct-io`, `PagesWriter::use_direct`) takes the
//! pages from there to the device, with no copy into fresh page-cache pages (on a VM
//! whose freed memory goes back to the host, each such page faults on the host: a cold
//! py-heap-300m dump spent 70 % of its CPU in that copy) and nothing for the final
//! `syncfs` to write back; each write then waits for the device, and with two or more
//! workers one reads while the other writes. A flusher thread starts
//! writeback of what was written after the first batch, then every [`WRITEBACK_EVERY`]
//! bytes, and each file's tail once it is finished, so that on a disk the final `syncfs`
//! waits only for the last writes to land (submitting writeback blocks, so no worker does
//! it). The flusher is not waited for: once the workers are done the dump goes on to the
//! commit, whose `syncfs` writes what the flusher has not submitted yet ([`flush`]).
//!
//! *Staged* (a dump that keeps the tree running, with few pages to store): the workers
//! read the pages straight into memory reserved before the freeze instead of the files
//! (no second copy; zero pages dropped in place), and [`Staged::write`] writes them once
//! the tree runs again, so that the tree is frozen only for the read.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use super::memory::{MemoryStats, Range};
use super::DumpError;
use crate::abi::PAGE_SIZE;
use crate::image::mm::{PageRun, MAX_STRIPES};
use crate::image::pages::PagesWriter;
use crate::image::ImageError;
use crate::progress::Phase;
use crate::sys::file::start_writeback;
use crate::sys::mem::{vm_read, Mem};

/// Below this many bytes to save, one worker (in the calling thread) writes everything:
/// a few batches gain nothing from threads and a second file.
const STRIPE_MIN: u64 = 32 << 20;
/// Writeback of a pages file is started every this many bytes written to it, so that on
/// a disk the final `syncfs` overlaps the copying instead of following it. Small enough
/// that a few hundred MiB are split into several rounds, large enough that the flusher
/// submits big requests.
const WRITEBACK_EVERY: u64 = 16 << 20;
/// The first writeback of a pages file is started once this much is written (one batch):
/// the disk then works from the first milliseconds of the copy instead of waiting for
/// [`WRITEBACK_EVERY`] bytes per file (with two workers, 32 MiB, about 15 ms of copying).
const WRITEBACK_FIRST: u64 = 4 << 20;

/// How many pages files to spread `total` bytes over.
pub fn stripes_for(total: u64) -> u8 {
    if total < STRIPE_MIN {
        return 1;
    }
    let cpus = crate::sys::cpu::usable();
    cpus.min(usize::from(MAX_STRIPES)) as u8
}

/// Writes every batch into `files` (one worker each; `files[i]` is stripe `i`), finishes
/// the files and returns the runs stored, in address order, and the page counts.
///
/// `running`: the process runs meanwhile (a pre-dump), so a page may vanish before it is
/// read: it is taken as zeros (an anonymous one is then not stored). Its mapping is gone
/// or replaced, and a mapping made since is never taken from this image (`dump/track.rs`).
///
/// `stage`: the pages are copied into memory and the files are left to [`Staged::write`].
pub fn write(
    pid: i32,
    batches: &[Vec<Range>],
    files: Vec<PagesWriter>,
    progress: &Phase,
    running: bool,
    stage: bool,
) -> Result<(Vec<PageRun>, MemoryStats, Vec<Staged>), DumpError> {
    let work = Work {
        batches,
        next: AtomicUsize::new(0),
        progress,
    };
    let mut workers = (files.into_iter().enumerate())
        .map(|(i, out)| Worker::new(pid, i as u8, Sink::new(out, stage), running))
        .collect::<Result<Vec<_>, _>>()?;
    let flushed = match &mut workers[..] {
        [one] => one.run(&work, None).map(|()| false)?,
        many => run_parallel(many, &work)?,
    };
    let mut runs = Vec::new();
    let mut stats = MemoryStats::default();
    let mut staged = Vec::new();
    for w in workers {
        runs.extend(w.runs);
        stats.pages_stored += w.stats.pages_stored;
        stats.zero_pages_skipped += w.stats.zero_pages_skipped;
        staged.extend(w.out.finish(!flushed)?);
    }
    runs.sort_unstable_by_key(|r| r.addr);
    Ok((runs, stats, staged))
}

/// Buffers for staged pages, allocated and touched before the freeze
/// ([`reserve_staging`]): the copy while frozen then writes into memory already mapped
/// instead of faulting fresh pages in. A worker that fills its buffer grows it as usual.
static RESERVED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Reserves, before the freeze, room for about `bytes` of staged pages: one buffer per
/// worker that may stage them (each the whole when one worker will do, else its share
/// with a quarter more). At most `memory::STAGE_MAX`.
pub fn reserve_staging(bytes: u64) {
    let _span = crate::profile::span("reserve staging");
    let bytes = (bytes + bytes / 4 + (1 << 20)).min(super::memory::STAGE_MAX);
    let workers = stripes_for(bytes) as u64;
    let each = match workers {
        1 => bytes,
        n => bytes / n + bytes / n / 4,
    } as usize;
    let buffers = (0..workers.max(2))
        .map(|_| {
            let mut b = vec![0u8; each];
            // A byte of every page written (and the writes kept: a zeroed allocation
            // maps nothing yet), so that every page is mapped now, not while frozen.
            // The length stays: pages are read into it in place (`Staged::used`).
            b.iter_mut()
                .step_by(PAGE_SIZE as usize)
                .for_each(|x| *x = 1);
            std::hint::black_box(&mut b);
            b
        })
        .collect();
    *RESERVED.lock().unwrap_or_else(|e| e.into_inner()) = buffers;
}

/// Drops the buffers no worker took (once the pages are copied).
pub fn drop_reserve() {
    RESERVED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// A reserved buffer, or a new one.
fn reserved() -> Vec<u8> {
    let mut pool = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    pool.pop().unwrap_or_default()
}

/// Pages copied into memory for one pages file, to be written once the tree runs.
/// Their checksum is taken here too, once the tree runs: the frozen window holds only
/// the copy.
pub struct Staged {
    file: PagesWriter,
    /// Room for the pages; the first `used` bytes hold them.
    data: Vec<u8>,
    used: usize,
}

impl Staged {
    /// Checksums and writes the pages and finishes the file (its fsync is the image
    /// commit's).
    pub fn write(mut self) -> Result<(), DumpError> {
        let data = &self.data[..self.used];
        let mut crc = crate::sys::cpu::crc32();
        crc.update(data);
        self.file.write_summed(&[data], &crc)?;
        self.file.finish()?;
        Ok(())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Makes room for `len` more bytes after those held (the reserve grown if short).
    fn room(&mut self, len: usize) {
        if self.data.len() < self.used + len {
            self.data.resize(self.used + len, 0);
        }
    }

    /// Keeps `pieces` (offsets and lengths into the room last given, in order) of what
    /// was read there: moved down over what is not kept.
    fn keep(&mut self, pieces: &[(usize, usize)]) {
        self.used = compact(&mut self.data, self.used, pieces);
    }
}

/// Where a worker's pages go: its pages file, or memory first ([`Staged`]).
enum Sink {
    File(PagesWriter),
    Memory(Staged),
}

impl Sink {
    fn new(file: PagesWriter, stage: bool) -> Sink {
        match stage {
            false => Sink::File(file),
            true => Sink::Memory(Staged {
                file,
                data: reserved(),
                used: 0,
            }),
        }
    }

    /// Appends `pieces` to the file, checksummed (a staged sink keeps its pages in
    /// place instead, [`Staged::keep`]).
    fn append(&mut self, pieces: &[&[u8]]) -> Result<(), ImageError> {
        if let Sink::File(f) = self {
            let mut crc = crate::sys::cpu::crc32();
            pieces.iter().for_each(|p| crc.update(p));
            f.write_summed(pieces, &crc)?;
        }
        Ok(())
    }

    /// Bytes written to the file (none while staged).
    fn data_len(&self) -> u64 {
        match self {
            Sink::File(f) => f.data_len(),
            Sink::Memory(_) => 0,
        }
    }

    /// The file, for the flusher (none while staged).
    fn file(&self) -> Option<&File> {
        match self {
            Sink::File(f) => f.file(),
            Sink::Memory(_) => None,
        }
    }

    /// Finishes the file and, if `kick` (no flusher had it), starts its writeback (a
    /// hint: the image commit's `syncfs` makes it durable), or hands the staged pages
    /// over.
    fn finish(self, kick: bool) -> Result<Option<Staged>, ImageError> {
        match self {
            Sink::File(f) => {
                let file = f.file().filter(|_| kick).and_then(|f| f.try_clone().ok());
                f.finish()?;
                if let Some(file) = file {
                    let _ = start_writeback(&file, 0, 0);
                }
                Ok(None)
            }
            Sink::Memory(m) => Ok(Some(m)),
        }
    }
}

/// Every worker in a thread of its own, and the flusher; the first error wins. Returns
/// whether there was a flusher (it then started the writeback of every file's tail).
fn run_parallel(workers: &mut [Worker], work: &Work) -> Result<bool, DumpError> {
    // Second descriptors of the files for the flusher; without them there is no flusher.
    let flush_files: Option<Vec<File>> = workers
        .iter()
        .map(|w| w.out.file().and_then(|f| f.try_clone().ok()))
        .collect();
    let (to_flusher, written) = channel::<usize>();
    // Not joined: see `flush`.
    let flusher = flush_files.is_some_and(|files| {
        (std::thread::Builder::new().name("page flusher".into()))
            .spawn(move || flush(&files, written))
            .is_ok()
    });
    std::thread::scope(|s| {
        let threads: Vec<_> = (workers.iter_mut())
            .map(|w| {
                let flusher = to_flusher.clone();
                s.spawn(move || w.run(work, Some(flusher)))
            })
            .collect();
        drop(to_flusher);
        let mut first = Ok(());
        for t in threads {
            first = first.and(t.join().expect("a page worker does not panic"));
        }
        first
    })?;
    Ok(flusher)
}

/// The flusher: starts the writeback of each file a worker names, until every worker is
/// done. Requests that queued up meanwhile are merged (one call per file covers them
/// all). It runs detached: a submission blocks while the device's queue is full (the
/// block layer's writeback throttling lets such background writes fill only part of it),
/// and the dump does not wait for it to work off what it was given. The commit's
/// `syncfs` writes whatever is not under writeback yet, as writes the throttling lets
/// use the whole queue, and waits for all of it; a flusher still submitting then finds
/// nothing left. (Joining it cost a py-heap-300m dump on disk 150–190 ms: the workers
/// were done, the flusher still blocked submitting writes the disk had not taken yet.)
fn flush(files: &[File], written: std::sync::mpsc::Receiver<usize>) {
    let mut wanted = vec![false; files.len()];
    while let Ok(first) = written.recv() {
        wanted[first] = true;
        written.try_iter().for_each(|i| wanted[i] = true);
        for (file, w) in files.iter().zip(wanted.iter_mut()) {
            // Only a hint: the `syncfs` of the image commit makes the data durable.
            // The whole file: a sealed (compressed) file's offsets are not the plain
            // ones, and ranges already under writeback are skipped.
            if std::mem::take(w) {
                let _ = start_writeback(file, 0, 0);
            }
        }
    }
}

/// Batches shared by the workers: each takes the next one until none is left.
struct Work<'a> {
    batches: &'a [Vec<Range>],
    next: AtomicUsize,
    progress: &'a Phase,
}

impl Work<'_> {
    fn take(&self) -> Option<&[Range]> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.batches.get(i).map(Vec::as_slice)
    }

    /// Passes `r` on; an error also stops the other workers after their current batch.
    fn stop_on_error(&self, r: Result<(), DumpError>) -> Result<(), DumpError> {
        if r.is_err() {
            self.next.store(self.batches.len(), Ordering::Relaxed);
        }
        r
    }
}

/// One worker: reads batches from the task, decides which pages are stored and appends
/// them to its pages file.
struct Worker {
    pid: i32,
    mem: Mem,
    stripe: u8,
    out: Sink,
    buf: Vec<u8>,
    runs: Vec<PageRun>,
    /// Mapping of the last run, so runs are cut at mapping boundaries.
    run_vma: u64,
    stats: MemoryStats,
    /// The process runs on: unreadable pages are zeros (see [`write`]).
    running: bool,
}

impl Worker {
    fn new(pid: i32, stripe: u8, out: Sink, running: bool) -> Result<Self, DumpError> {
        Ok(Worker {
            running,
            pid,
            mem: Mem::open(pid, false)?,
            stripe,
            out,
            buf: Vec::new(),
            runs: Vec::new(),
            run_vma: 0,
            stats: MemoryStats::default(),
        })
    }

    /// Takes batches until none is left; after [`WRITEBACK_FIRST`] bytes, then every
    /// [`WRITEBACK_EVERY`], asks the flusher, if any, to start the writeback of its file.
    fn run(&mut self, work: &Work, flusher: Option<Sender<usize>>) -> Result<(), DumpError> {
        let mut synced = 0;
        while let Some(batch) = work.take() {
            let r = self.write_batch(batch, work.progress);
            work.stop_on_error(r)?;
            let written = self.out.data_len();
            if let Some(f) = flusher
                .as_ref()
                .filter(|_| written - synced >= writeback_step(synced))
            {
                let _ = f.send(usize::from(self.stripe));
                synced = written;
            }
        }
        // The file's tail: started by the flusher, not by `Sink::finish` in the thread
        // that goes on to the commit.
        if let Some(f) = flusher.filter(|_| self.out.data_len() > synced) {
            let _ = f.send(usize::from(self.stripe));
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &[Range], progress: &Phase) -> Result<(), DumpError> {
        let len: usize = batch.iter().map(|r| (r.end - r.start) as usize).sum();
        if matches!(self.out, Sink::Memory(_)) {
            let r = self.stage_batch(batch, len);
            progress.advance(len as u64);
            return r;
        }
        let page = PAGE_SIZE as usize;
        if self.buf.len() < len + page {
            self.buf.resize(len + page, 0);
        }
        let mut whole = std::mem::take(&mut self.buf);
        // A page-aligned window, so that the pages can be written past the page cache.
        let base = whole.as_ptr().align_offset(page);
        let buf = &mut whole[base..base + len];
        let read = {
            let _span = crate::profile::span("read pages");
            self.read(batch, buf)
        };
        let buf = &*buf;
        let r = read.and_then(|()| {
            let _span = crate::profile::span("plan+store pages");
            let pieces = self.plan(batch, buf);
            let slices: Vec<&[u8]> = pieces.iter().map(|&(o, l)| &buf[o..o + l]).collect();
            self.out.append(&slices).map_err(|e: ImageError| e.into())
        });
        self.buf = whole;
        progress.advance(len as u64);
        r
    }

    /// Reads the batch straight into the staged memory and keeps the pages stored.
    fn stage_batch(&mut self, batch: &[Range], len: usize) -> Result<(), DumpError> {
        let Sink::Memory(staged) = &mut self.out else {
            unreachable!("called for a staged sink only");
        };
        staged.room(len);
        let (mut data, used) = (std::mem::take(&mut staged.data), staged.used);
        let read = {
            let _span = crate::profile::span("read pages");
            self.read(batch, &mut data[used..used + len])
        };
        let pieces = match read {
            Ok(()) => {
                let _span = crate::profile::span("plan+store pages");
                self.plan(batch, &data[used..used + len])
            }
            Err(_) => Vec::new(),
        };
        let Sink::Memory(staged) = &mut self.out else {
            unreachable!("called for a staged sink only");
        };
        staged.data = data;
        staged.keep(&pieces);
        read
    }

    /// Reads the batch into `buf` (exactly its length).
    fn read(&self, batch: &[Range], buf: &mut [u8]) -> Result<(), DumpError> {
        if batch[0].readable {
            let iovs: Vec<(u64, usize)> = batch
                .iter()
                .map(|r| (r.start, (r.end - r.start) as usize))
                .collect();
            match vm_read(self.pid, buf, &iovs) {
                Ok(n) if n == buf.len() => return Ok(()),
                Ok(_) => {}
                // Gone meanwhile: the pieces are read one by one below.
                Err(_) if self.running => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut off = 0;
        for r in batch {
            let len = (r.end - r.start) as usize;
            let piece = &mut buf[off..off + len];
            match self.mem.read(r.start, piece) {
                Err(_) if self.running => self.read_pages(r.start, piece),
                r => r?,
            }
            off += len;
        }
        Ok(())
    }

    /// Page by page, zeros for each page that cannot be read (gone meanwhile).
    fn read_pages(&self, start: u64, buf: &mut [u8]) {
        let page = PAGE_SIZE as usize;
        for (i, chunk) in buf.chunks_mut(page).enumerate() {
            if self.mem.read(start + (i * page) as u64, chunk).is_err() {
                chunk.fill(0);
            }
        }
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
            _ => self.runs.push(PageRun {
                addr,
                pages: 1,
                stripe: self.stripe,
            }),
        }
        self.run_vma = vma;
    }
}

/// Bytes to write after `synced` before the next writeback is started.
fn writeback_step(synced: u64) -> u64 {
    match synced {
        0 => WRITEBACK_FIRST,
        _ => WRITEBACK_EVERY,
    }
}

/// Moves `pieces` (offsets and lengths from `base`, in order) of `data` down to `base`,
/// one after the other; returns where the last ends.
fn compact(data: &mut [u8], base: usize, pieces: &[(usize, usize)]) -> usize {
    let mut to = base;
    for &(o, l) in pieces {
        if base + o != to {
            data.copy_within(base + o..base + o + l, to);
        }
        to += l;
    }
    to
}

/// True if the page holds only zero bytes (compared 8 bytes at a time; pages are 4 KiB).
fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8-byte chunk")) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut p = vec![0u8; 4096];
        assert!(is_zero(&p));
        p[4095] = 1;
        assert!(!is_zero(&p));
    }

    #[test]
    fn compaction_keeps_the_pieces_in_order() {
        let mut data: Vec<u8> = (0..10).collect();
        // Bytes 0-1 held before; read 2..10; keep 3..5 and 7..8 of that.
        let end = compact(&mut data, 2, &[(1, 2), (5, 1)]);
        assert_eq!(end, 5);
        assert_eq!(&data[..5], &[0, 1, 3, 4, 7]);
        let mut whole: Vec<u8> = (0..4).collect();
        assert_eq!(compact(&mut whole, 0, &[(0, 4)]), 4);
        assert_eq!(whole, vec![0, 1, 2, 3]);
    }

    #[test]
    fn small_address_spaces_use_one_file() {
        assert_eq!(stripes_for(0), 1);
        assert_eq!(stripes_for(STRIPE_MIN - 1), 1);
        let big = stripes_for(STRIPE_MIN);
        assert!((1..=MAX_STRIPES).contains(&big));
    }
}
