//! Page contents: the child reads its saved pages straight from the pages file into place
//! with `preadv`, one injected call per up to 1024 runs or [`BATCH_BYTES`], so each byte is
//! copied once, by the kernel, into the page it belongs to. The dump side is
//! `dump/memory.rs`.
//!
//! Faulting in fresh pages is the cost, and faults of one process scale across CPUs: for
//! large images a helper thread of stasis fills batches too, taking the next batch as the
//! child does (`pread` into a small buffer, `process_vm_writev` into the child).
//!
//! A pages file whose crc32 is left to the fill (`checked.rs`) is copied by stasis's
//! threads only, one per CPU, each summing the buffer it reads before writing it into
//! the child: the bytes checked are the bytes written, and the file is read once.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::checked::{Checked, Sums};
use super::child::{Child, HELPER_LEN};
use super::mm::open_in;
use super::staged::Staged;
use super::RestoreError;
use crate::abi::{IoVec, PAGE_SIZE};
use crate::image::chain::Piece;
use crate::image::mm::{MmImage, PageRun};
use crate::image::pages::{Sum, PAGES_DATA_OFFSET};
use crate::image::store::SealedPages;
use crate::image::ImageError;
use crate::progress::Phase;
use crate::sys::mem::vm_write;
use crate::sys::pod::slice_as_bytes;

/// `IOV_MAX`, and what fits in scratch.
const MAX_IOVS: usize = 1024;
/// Bytes per injected `preadv`: the call's round trip (tens of µs) is noise next to
/// faulting in this much, and progress is reported this often.
const BATCH_BYTES: u64 = 64 << 20;
/// Images at least this large get the helper thread.
const PARALLEL_MIN: u64 = 2 * BATCH_BYTES;
/// The helper's buffer: what it reads from the file per step. Small enough to stay in
/// the CPU's cache between the `pread` into it, its crc and the `process_vm_writev` out
/// of it: 1 GiB filled by two threads in 280–305 ms with 256 KiB (128 KiB the same),
/// 315–335 ms with 1 MiB, 365–375 ms with 4 MiB (`checked.rs`'s summing fill).
const HELPER_CHUNK: usize = 256 << 10;

/// What [`fill`] did, for the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filled {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Filled {
    /// The sum of two fills (of two processes).
    pub fn and(self, other: Filled) -> Filled {
        Filled {
            bytes: self.bytes + other.bytes,
            elapsed: self.elapsed + other.elapsed,
        }
    }
}

/// Starts of the mappings that receive saved pages.
pub fn filled_vmas(mm: &MmImage) -> HashSet<u64> {
    let mut out = HashSet::new();
    let mut i = 0;
    for run in &mm.page_runs {
        while i < mm.vmas.len() && mm.vmas[i].end <= run.addr {
            i += 1;
        }
        let mut j = i;
        while j < mm.vmas.len() && mm.vmas[j].start < run.addr + run.pages * PAGE_SIZE {
            out.insert(mm.vmas[j].start);
            j += 1;
        }
    }
    out
}

/// Fills every saved page from the pages files, `pages(stripe)` being the path of each:
/// a small fill (one file) is added to the pending batch, a larger one runs it first and
/// reads on its own. The time returned for a small fill is only that of adding it: the
/// caller times the batch that reads (see `build_memory`).
///
/// Ordering requirements: all mappings exist and are writable when the reads run.
/// Pages kept in parent images (`parents`, see `image::chain`) are read from the
/// ancestors' pages files the same way. The files `checked` lists are summed as they
/// are copied (see the module doc).
#[allow(clippy::too_many_arguments)]
pub fn fill(
    s: &mut Staged,
    mm: &MmImage,
    pages: &dyn Fn(u8) -> PathBuf,
    parents: &[Piece],
    in_child: &dyn Fn(PathBuf) -> PathBuf,
    sealed: &SealedPages,
    served: &[(u64, u64)],
    checked: &Checked,
) -> Result<Filled, RestoreError> {
    let started = Instant::now();
    let skipped: u64 = served.iter().map(|(s, e)| e - s).sum();
    let total = (mm.pages() * PAGE_SIZE).saturating_sub(skipped);
    let mut paths: Vec<PathBuf> = (0..mm.stripes()).map(pages).collect();
    // Ordering requirements: the own pages files of a compressed or encrypted image are
    // decoded into place first (`sealed.rs`); the batches left are the parents'.
    let own_sealed = paths.iter().any(|p| sealed.contains_key(p));
    let mut work = Work::new(mm, parents, &mut paths, total, !own_sealed);
    if !served.is_empty() {
        work.batches = without(std::mem::take(&mut work.batches), served);
    }
    if own_sealed {
        s.flush()?;
        let own = &paths[..usize::from(mm.stripes())];
        super::sealed::fill(s.child(), mm, own, sealed, &work.progress)?;
        if work.batches.is_empty() {
            return Ok(Filled {
                bytes: total,
                elapsed: started.elapsed(),
            });
        }
    }
    let own = usize::from(mm.stripes());
    let sums: Vec<Option<Sums>> = paths[..own].iter().map(|p| checked.sums(p)).collect();
    if sums.iter().any(Option::is_some) {
        s.flush()?;
        fill_summing(s.child().pid(), &paths, &work, &sums)?;
        return Ok(Filled {
            bytes: total,
            elapsed: started.elapsed(),
        });
    }
    let helped = total >= PARALLEL_MIN && crate::sys::cpu::usable() > 1;
    let iovs: usize = work.batches.iter().map(|b| b.iovs.len()).sum();
    let small = work.batches.len() <= BATCHED_READS && iovs <= BATCHED_IOVS;
    if !helped && small && paths.len() == 1 {
        fill_batched(s, &in_child(pages(0)), &work)?;
        return Ok(Filled {
            bytes: total,
            elapsed: started.elapsed(),
        });
    }
    s.flush()?;
    let child = s.child();
    // Ancestors' pages files are read from here: the child may not reach their paths
    // (a tree with its own mount namespace opens its pages files by name).
    let fds = (paths[..own].iter())
        .map(|p| {
            open_in(
                child,
                &in_child(p.clone()).to_string_lossy(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        })
        .collect::<Result<Vec<u64>, _>>()?;
    let pid = child.pid();
    std::thread::scope(|s| {
        let helper = helped.then(|| s.spawn(|| work.stop_on_error(help(pid, &paths, &work, &[]))));
        let mine = work.stop_on_error(fill_injected(child, &fds, &paths, &work));
        let theirs = helper.map_or(Ok(()), |h| {
            h.join().expect("the fill helper does not panic")
        });
        mine.and(theirs)
    })?;
    for fd in fds {
        child.remote().call("close", libc::SYS_close, &[fd])?;
    }
    Ok(Filled {
        bytes: total,
        elapsed: started.elapsed(),
    })
}

/// Up to this many `preadv`s, with up to this many iovecs in all (128 KiB of the helper's
/// scratch), run as one batch of syscalls.
const BATCHED_READS: usize = 16;
const BATCHED_IOVS: usize = 8192;

/// A small fill added to the pending batch (`restore/staged.rs`): the child opens the
/// pages file, `preadv`s every batch of iovecs, each expected to read all its bytes, and
/// closes it. The file's fd is predicted (the lowest free number) and checked by the
/// batch. Nothing is opened when there is nothing to read.
fn fill_batched(s: &mut Staged, pages: &Path, work: &Work) -> Result<(), RestoreError> {
    if work.batches.is_empty() {
        return Ok(());
    }
    let pid = s.child().pid();
    let fd = s.child().lowest_free_fd()?;
    let b = s.batch();
    let path = b.put_str(&pages.to_string_lossy());
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let args = [libc::AT_FDCWD as u64, path, flags, 0];
    b.expect("openat", libc::SYS_openat, &args, fd);
    b.about(format!("open {} in pid {pid}", pages.display()));
    let mut bytes = 0;
    while let Some(Batch {
        iovs: batch,
        offset,
        ..
    }) = work.take()
    {
        let len: u64 = batch.iter().map(|i| i.len).sum();
        let iov = b.put(slice_as_bytes(batch));
        let args = [fd, iov, batch.len() as u64, *offset, 0];
        b.expect("preadv", libc::SYS_preadv, &args, len);
        b.about(format!(
            "pages at offset {offset} of {} into pid {pid}",
            pages.display()
        ));
        bytes += len;
    }
    b.expect("close", libc::SYS_close, &[fd], 0);
    work.progress.advance(bytes);
    Ok(())
}

/// One `preadv`'s worth of runs: where they go, and where their data is.
struct Batch {
    iovs: Vec<IoVec>,
    /// The pages file: `PageRun::stripe` for this image's, then the ancestors' files.
    stripe: usize,
    /// Offset of the data in that file.
    offset: u64,
}

/// Batches shared by the fillers: each takes the next one until none is left.
struct Work {
    batches: Vec<Batch>,
    next: AtomicUsize,
    progress: Phase,
}

impl Work {
    /// The batches of every pages file of `mm` and of the pieces of its parents (whose
    /// files are added to `paths`), in address order.
    /// `own`: false when this image's pages files are filled otherwise (`sealed.rs`).
    fn new(
        mm: &MmImage,
        parents: &[Piece],
        paths: &mut Vec<PathBuf>,
        total: u64,
        own: bool,
    ) -> Self {
        let mut batches = parent_batches(parents, paths);
        for stripe in (0..mm.stripes()).filter(|_| own) {
            let runs: Vec<PageRun> = (mm.page_runs.iter())
                .filter(|r| r.stripe == stripe)
                .copied()
                .collect();
            let iovs = iov_batches(&runs);
            let at = offsets(&iovs);
            batches.extend(iovs.into_iter().zip(at).map(|(iovs, offset)| Batch {
                iovs,
                stripe: usize::from(stripe),
                offset,
            }));
        }
        batches.sort_by_key(|b| b.iovs[0].base);
        Work {
            batches,
            next: AtomicUsize::new(0),
            progress: Phase::begin("restoring pages", total),
        }
    }

    /// The next batch to fill.
    fn take(&self) -> Option<&Batch> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.batches.get(i)
    }

    /// Passes `r` on; an error also stops the other filler after its current batch.
    fn stop_on_error(&self, r: Result<(), RestoreError>) -> Result<(), RestoreError> {
        if r.is_err() {
            self.next.store(self.batches.len(), Ordering::Relaxed);
        }
        r
    }
}

/// One batch per run of pieces that follow each other in one ancestor's pages file (at
/// most `MAX_IOVS` pieces and `BATCH_BYTES`), each file added to `paths` once.
///
/// A 2 GiB chain has hundreds of thousands of pieces: the file of a piece whose path is
/// shared with the previous piece's is the previous one's, other paths are compared as
/// bytes (the pieces' paths are made alike; `Path`'s component-wise `==` took tens of
/// ms), and each batch's bytes are counted as it grows, not summed again for each piece.
fn parent_batches(parents: &[Piece], paths: &mut Vec<PathBuf>) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let (mut next_offset, mut bytes) = (0, 0);
    let mut last: Option<(&Piece, usize)> = None;
    for p in parents {
        let file = match last.filter(|(q, _)| std::sync::Arc::ptr_eq(&q.path, &p.path)) {
            Some((_, i)) => i,
            None => file_index(paths, &p.path),
        };
        last = Some((p, file));
        let iov = IoVec {
            base: p.addr,
            len: p.len,
        };
        match out.last_mut() {
            Some(b)
                if b.stripe == file
                    && next_offset == p.offset
                    && b.iovs.len() < MAX_IOVS
                    && bytes + p.len <= BATCH_BYTES =>
            {
                b.iovs.push(iov);
                bytes += p.len;
            }
            _ => {
                out.push(Batch {
                    iovs: vec![iov],
                    stripe: file,
                    offset: p.offset,
                });
                bytes = p.len;
            }
        }
        next_offset = p.offset + p.len;
    }
    out
}

/// The index of `path` in `paths`, added if missing.
fn file_index(paths: &mut Vec<PathBuf>, path: &Path) -> usize {
    let same = |q: &PathBuf| q.as_os_str() == path.as_os_str();
    match paths.iter().position(same) {
        Some(i) => i,
        None => {
            paths.push(path.to_path_buf());
            paths.len() - 1
        }
    }
}

/// `batches` without the pages at `served` (sorted, not overlapping; filled later by
/// post-copy, see `lazy/local.rs`): a batch with a hole is cut in two, each part with
/// its own offset. Each iovec is cut by the served ranges from the first one ending
/// after it (a binary search): a 2 GiB chain has hundreds of thousands of both, and a
/// scan from the start for each iovec took 45 s of a migration's downtime.
fn without(batches: Vec<Batch>, served: &[(u64, u64)]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for b in batches {
        let mut at = b.offset;
        let mut next_offset = None;
        for iov in &b.iovs {
            let whole = [(iov.base, iov.base + iov.len)];
            let from = served.partition_point(|&(_, e)| e <= iov.base);
            for (s, e) in crate::ranges::subtract(&whole, &served[from..]) {
                let offset = at + (s - iov.base);
                let piece = IoVec {
                    base: s,
                    len: e - s,
                };
                match out.last_mut() {
                    Some(last) if next_offset == Some(offset) => last.iovs.push(piece),
                    _ => out.push(Batch {
                        iovs: vec![piece],
                        stripe: b.stripe,
                        offset,
                    }),
                }
                next_offset = Some(offset + (e - s));
            }
            at += iov.len;
        }
    }
    out
}

/// Where each batch's data starts in its pages file.
fn offsets(batches: &[Vec<IoVec>]) -> Vec<u64> {
    let mut at = PAGES_DATA_OFFSET;
    batches
        .iter()
        .map(|b| {
            let start = at;
            at += b.iter().map(|i| i.len).sum::<u64>();
            start
        })
        .collect()
}

/// The child's share: one injected `preadv` per batch, from the child's fd of each pages
/// file (`fds[stripe]`); a batch of an ancestor's file (no fd in the child) is copied
/// from here, as the helper does.
fn fill_injected(
    child: &Child,
    fds: &[u64],
    paths: &[PathBuf],
    work: &Work,
) -> Result<(), RestoreError> {
    let mut here: Option<Here> = None;
    while let Some(b) = work.take() {
        let done = match fds.get(b.stripe) {
            Some(&fd) => read_batch(child, fd, &b.iovs, b.offset)?,
            None => {
                let h = match here.as_mut() {
                    Some(h) => h,
                    None => here.insert(Here::open(paths)?),
                };
                h.copy(child.pid(), paths, b, None)?
            }
        };
        work.progress.advance(done);
    }
    Ok(())
}

/// Pages files opened by stasis, and a buffer: batches copied with `pread` and
/// `process_vm_writev`.
struct Here {
    files: Vec<File>,
    buf: Vec<u8>,
}

impl Here {
    fn open(paths: &[PathBuf]) -> Result<Here, RestoreError> {
        let open = |p: &PathBuf| File::open(p).map_err(|e| ImageError::io("open", p)(e).into());
        let files = paths
            .iter()
            .map(open)
            .collect::<Result<Vec<_>, RestoreError>>()?;
        Ok(Here {
            files,
            buf: vec![0u8; HELPER_CHUNK],
        })
    }

    /// Copies batch `b` into `pid`, handing the crc32 of its bytes to `sums` if given;
    /// returns its bytes.
    fn copy(
        &mut self,
        pid: i32,
        paths: &[PathBuf],
        b: &Batch,
        sums: Option<Sums>,
    ) -> Result<u64, RestoreError> {
        let (file, path) = (&self.files[b.stripe], &paths[b.stripe]);
        let mut crc = sums.map(|_| crate::sys::cpu::crc32());
        let mut offset = b.offset;
        for piece in pieces(&b.iovs, HELPER_CHUNK as u64) {
            let len: u64 = piece.iter().map(|i| i.len).sum();
            let data = &mut self.buf[..len as usize];
            let read = file.read_exact_at(data, offset);
            read.map_err(|e| RestoreError::from(ImageError::io("read", path)(e)))?;
            if let Some(crc) = crc.as_mut() {
                crc.update(data);
            }
            write_all(pid, data, &piece)?;
            offset += len;
        }
        let len = offset - b.offset;
        if let (Some(sums), Some(crc)) = (sums, crc) {
            let at = b.offset - PAGES_DATA_OFFSET;
            sums.add(Sum { at, len, crc });
        }
        Ok(len)
    }
}

/// The helper's share: each batch read into a buffer and written into the child, summed
/// if its file has `sums` (indexed by `Batch::stripe`).
fn help(
    pid: i32,
    paths: &[PathBuf],
    work: &Work,
    sums: &[Option<Sums>],
) -> Result<(), RestoreError> {
    let mut here = Here::open(paths)?;
    while let Some(b) = work.take() {
        let sums = sums.get(b.stripe).copied().flatten();
        work.progress.advance(here.copy(pid, paths, b, sums)?);
    }
    Ok(())
}

/// Every batch copied from here by one thread per CPU ([`help`]), the files with `sums`
/// summed on the way.
fn fill_summing(
    pid: i32,
    paths: &[PathBuf],
    work: &Work,
    sums: &[Option<Sums>],
) -> Result<(), RestoreError> {
    let threads = crate::sys::cpu::usable().max(1);
    std::thread::scope(|s| {
        let fill = || work.stop_on_error(help(pid, paths, work, sums));
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(fill)).collect();
        let mine = fill();
        helpers.into_iter().fold(mine, |r, h| {
            r.and(h.join().expect("a fill helper does not panic"))
        })
    })
}

/// `process_vm_writev` until all of `data` is in place.
pub(super) fn write_all(pid: i32, data: &[u8], iovs: &[IoVec]) -> Result<(), RestoreError> {
    let mut done = 0;
    while done < data.len() {
        let rest: Vec<(u64, usize)> = skip(iovs, done as u64)
            .iter()
            .map(|i| (i.base, i.len as usize))
            .collect();
        let n = vm_write(pid, &data[done..], &rest)?;
        if n == 0 {
            return Err(RestoreError::Unsupported {
                what: format!("pid {pid} took no bytes at {:#x}", rest[0].0),
            });
        }
        done += n;
    }
    Ok(())
}

/// `batch` cut into consecutive pieces of at most `max` bytes.
fn pieces(batch: &[IoVec], max: u64) -> Vec<Vec<IoVec>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for iov in batch {
        let (mut base, end) = (iov.base, iov.base + iov.len);
        while base < end {
            if bytes == max {
                out.push(Vec::new());
                bytes = 0;
            }
            let len = (end - base).min(max - bytes);
            out.last_mut()
                .expect("never empty")
                .push(IoVec { base, len });
            (base, bytes) = (base + len, bytes + len);
        }
    }
    out
}

/// Runs cut into batches of at most `MAX_IOVS` iovecs and `BATCH_BYTES` bytes.
fn iov_batches(runs: &[PageRun]) -> Vec<Vec<IoVec>> {
    let mut out = Vec::new();
    let mut batch: Vec<IoVec> = Vec::new();
    let mut bytes = 0;
    for r in runs {
        let (mut base, end) = (r.addr, r.addr + r.pages * PAGE_SIZE);
        while base < end {
            if batch.len() == MAX_IOVS || bytes == BATCH_BYTES {
                out.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            let len = (end - base).min(BATCH_BYTES - bytes);
            batch.push(IoVec { base, len });
            bytes += len;
            base += len;
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// One `preadv`, repeated from where it stopped if the kernel returns short, into pages
/// populated first.
fn read_batch(child: &Child, fd: u64, batch: &[IoVec], offset: u64) -> Result<u64, RestoreError> {
    populate(child, batch)?;
    let total: u64 = batch.iter().map(|i| i.len).sum();
    let mut done = 0u64;
    while done < total {
        let rest = skip(batch, done);
        let bytes = slice_as_bytes(&rest);
        debug_assert!(bytes.len() as u64 <= HELPER_LEN - 4096);
        let addr = child.put(0, bytes)?;
        let n = child.remote().call(
            "preadv",
            libc::SYS_preadv,
            &[fd, addr, rest.len() as u64, offset + done, 0],
        )?;
        if n == 0 {
            return Err(RestoreError::Unsupported {
                what: format!("pages file ended early at offset {}", offset + done),
            });
        }
        done += n;
    }
    Ok(total)
}

/// `madvise` advice (Linux 5.14): fault pages in for writing, as a write would.
const MADV_POPULATE_WRITE: u64 = 23;

/// Faults in the batch's pages for writing, one `madvise(MADV_POPULATE_WRITE)` per iovec
/// in one batch of calls, before the `preadv` copies into them: a copy into pages not
/// there yet takes a page-fault exception for each 4 KiB page, populating them takes one
/// call for the whole range. Only a speed-up: where it fails (an older kernel), the copy
/// faults the pages in itself. (The helper thread's `process_vm_writev` faults its pages
/// in without exceptions already.)
pub(super) fn populate(child: &Child, batch: &[IoVec]) -> Result<(), RestoreError> {
    let remote = child.remote();
    let mut b = remote.batch();
    for iov in batch {
        if b.room() < 1024 {
            remote.run(&b)?;
            b = remote.batch();
        }
        let args = [iov.base, iov.len, MADV_POPULATE_WRITE];
        b.try_call("madvise(MADV_POPULATE_WRITE)", libc::SYS_madvise, &args);
    }
    remote.run(&b)?;
    Ok(())
}

/// The iovecs left after the first `done` bytes.
fn skip(batch: &[IoVec], mut done: u64) -> Vec<IoVec> {
    let mut out = Vec::with_capacity(batch.len());
    for iov in batch {
        if done >= iov.len {
            done -= iov.len;
            continue;
        }
        out.push(IoVec {
            base: iov.base + done,
            len: iov.len - done,
        });
        done = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_pages_are_cut_out_with_their_offsets() {
        let b = Batch {
            iovs: vec![
                IoVec {
                    base: 0x1000,
                    len: 0x3000,
                },
                IoVec {
                    base: 0x8000,
                    len: 0x1000,
                },
            ],
            stripe: 0,
            offset: 4096,
        };
        let got = without(vec![b], &[(0x2000, 0x3000), (0x8000, 0x9000)]);
        let at: Vec<(u64, Vec<(u64, u64)>)> = (got.iter())
            .map(|b| (b.offset, b.iovs.iter().map(|i| (i.base, i.len)).collect()))
            .collect();
        assert_eq!(
            at,
            vec![
                (4096, vec![(0x1000, 0x1000)]),
                (4096 + 0x2000, vec![(0x3000, 0x1000)])
            ]
        );
    }

    /// Regression (a 2 GiB migration's fill waited 45 s in `without`): 200,000 iovecs
    /// against 200,000 served ranges, every other page served, cut in well under the
    /// seconds a scan from the start for each iovec took, and cut right.
    #[test]
    fn without_is_not_quadratic_in_the_served_ranges() {
        const N: u64 = 200_000;
        let iovs: Vec<IoVec> = (0..N)
            .map(|i| IoVec {
                base: i * 0x4000,
                len: 0x2000,
            })
            .collect();
        let served: Vec<(u64, u64)> = (0..N).map(|i| (i * 0x4000, i * 0x4000 + 0x1000)).collect();
        let b = Batch {
            iovs,
            stripe: 0,
            offset: 4096,
        };
        let started = std::time::Instant::now();
        let got = without(vec![b], &served);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(got.len(), N as usize);
        for (i, b) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(b.offset, 4096 + i * 0x2000 + 0x1000);
            assert_eq!(
                (b.iovs[0].base, b.iovs[0].len),
                (i * 0x4000 + 0x1000, 0x1000)
            );
        }
    }

    #[test]
    fn skip_cuts_inside_an_iovec() {
        let b = [
            IoVec {
                base: 0x1000,
                len: 0x2000,
            },
            IoVec {
                base: 0x9000,
                len: 0x1000,
            },
        ];
        assert_eq!(
            skip(&b, 0x1000),
            vec![
                IoVec {
                    base: 0x2000,
                    len: 0x1000
                },
                IoVec {
                    base: 0x9000,
                    len: 0x1000
                }
            ]
        );
        assert_eq!(
            skip(&b, 0x2000),
            vec![IoVec {
                base: 0x9000,
                len: 0x1000
            }]
        );
    }

    fn run(addr: u64, pages: u64, stripe: u8) -> PageRun {
        PageRun {
            addr,
            pages,
            stripe,
        }
    }

    /// Each pages file's runs are read from the start of its own data, and the fillers
    /// take the batches of all files in address order.
    #[test]
    fn stripes_have_their_own_offsets() {
        let mm = MmImage {
            page_runs: vec![run(0x1000, 2, 0), run(0x3000, 1, 1), run(0x9000, 4, 0)],
            ..MmImage::default()
        };
        let work = Work::new(&mm, &[], &mut Vec::new(), 7 * PAGE_SIZE, true);
        let got: Vec<(u64, usize, u64)> = (work.batches.iter())
            .map(|b| (b.iovs[0].base, b.stripe, b.offset))
            .collect();
        let data = PAGES_DATA_OFFSET;
        assert_eq!(got, vec![(0x1000, 0, data), (0x3000, 1, data)]);
        assert_eq!(
            work.batches[0].iovs.len(),
            2,
            "both runs of file 0 in one preadv"
        );
    }

    #[test]
    fn batches_respect_iov_max() {
        let runs: Vec<PageRun> = (0..2500).map(|i| run(i * 0x2000, 1, 0)).collect();
        let b = iov_batches(&runs);
        assert_eq!(
            b.iter().map(|x| x.len()).collect::<Vec<_>>(),
            vec![1024, 1024, 452]
        );
    }

    #[test]
    fn pieces_cut_and_keep_order() {
        let b = [
            IoVec {
                base: 0x10000,
                len: 0x3000,
            },
            IoVec {
                base: 0x40000,
                len: 0x1000,
            },
        ];
        let p = pieces(&b, 0x2000);
        let flat: Vec<(u64, u64)> = p.iter().flatten().map(|i| (i.base, i.len)).collect();
        assert_eq!(
            flat,
            vec![(0x10000, 0x2000), (0x12000, 0x1000), (0x40000, 0x1000)]
        );
        assert_eq!(p.len(), 2);
        assert!(p
            .iter()
            .all(|x| x.iter().map(|i| i.len).sum::<u64>() <= 0x2000));
    }

    #[test]
    fn offsets_follow_the_file() {
        let runs = [run(0, 1, 0), run(0x100000, 2 * BATCH_BYTES / PAGE_SIZE, 0)];
        let b = iov_batches(&runs);
        let o = offsets(&b);
        assert_eq!(o[0], PAGES_DATA_OFFSET);
        assert_eq!(o[1], PAGES_DATA_OFFSET + BATCH_BYTES);
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn batches_respect_batch_bytes() {
        let pages = 2 * BATCH_BYTES / PAGE_SIZE + 3;
        let b = iov_batches(&[run(0, pages, 0)]);
        let sizes: Vec<u64> = b.iter().map(|x| x.iter().map(|i| i.len).sum()).collect();
        assert_eq!(sizes, vec![BATCH_BYTES, BATCH_BYTES, 3 * PAGE_SIZE]);
        assert_eq!(b[1][0].base, BATCH_BYTES);
    }
}
