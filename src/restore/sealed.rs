//! Page contents of a compressed or encrypted image, decoded straight into place: each
//! 1 MiB chunk of a sealed pages file is read, checked again (authenticated, or compared
//! with the digest taken when the image was opened), decompressed into a buffer of
//! stasis's and written into the child with `process_vm_writev`, one chunk at a time on
//! every CPU. No decoded copy of the pages file is made. The file as a whole was verified
//! before any process was created (`image::store::open_for_restore`); a chunk that fails
//! now fails the restore, whose tree is killed before it runs. Plain pages files are
//! `memory.rs`'s.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::child::Child;
use super::memory::{populate, write_all};
use super::RestoreError;
use crate::abi::{IoVec, PAGE_SIZE};
use crate::image::mm::MmImage;
use crate::image::pages::PAGES_DATA_OFFSET;
use crate::image::store::indexed::Indexed;
use crate::image::store::{SealedPages, StoreError};
use crate::image::ImageError;
use crate::progress::Phase;

/// Where pages of one pages file go: its bytes `[offset, offset + len)` to `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    offset: u64,
    addr: u64,
    len: u64,
}

/// One pages file to decode: the sealed file, opened, and where its pages go.
struct Source<'a> {
    pages: &'a Indexed,
    file: File,
    segments: Vec<Segment>,
}

/// Fills the pages of `mm`'s own pages files (`paths[stripe]`, each one of `sealed`)
/// into `child`, decoding their chunks on up to one thread per CPU while the child
/// populates its pages (`MADV_POPULATE_WRITE`, as for plain pages files: faulting pages
/// in one call per run is cheaper than one fault per page in `process_vm_writev`).
///
/// Ordering requirements: all mappings exist and are writable.
pub fn fill(
    child: &Child,
    mm: &MmImage,
    paths: &[PathBuf],
    sealed: &SealedPages,
    progress: &Phase,
) -> Result<(), RestoreError> {
    let pid = child.pid();
    let mut sources = Vec::new();
    let mut jobs = Vec::new();
    for (stripe, path) in paths.iter().enumerate() {
        let pages = sealed.get(path).ok_or_else(|| RestoreError::Unsupported {
            what: format!(
                "{}: some pages files of pid {pid} are sealed, others not",
                path.display()
            ),
        })?;
        let file = File::open(pages.path()).map_err(|e| ImageError::io("open", pages.path())(e))?;
        jobs.extend((0..pages.chunks().len()).map(|c| (sources.len(), c)));
        sources.push(Source {
            pages,
            file,
            segments: segments(mm, stripe as u8),
        });
    }
    let next = AtomicUsize::new(0);
    let threads = crate::sys::cpu::usable().clamp(1, jobs.len().max(1));
    let run = || -> Result<(), RestoreError> {
        let r = decode_jobs(pid, &sources, &jobs, &next, progress);
        if r.is_err() {
            next.store(jobs.len(), Ordering::Relaxed);
        }
        r
    };
    let runs: Vec<IoVec> = (sources.iter().flat_map(|s| &s.segments))
        .map(|s| IoVec {
            base: s.addr,
            len: s.len,
        })
        .collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(run)).collect();
        // The child's populate runs while the helpers decode; then this thread decodes.
        let mine = populate(child, &runs).and_then(|()| run());
        helpers.into_iter().fold(mine, |r, h| {
            let theirs = h.join().expect("a decoding thread does not panic");
            r.and(theirs)
        })
    })
}

/// Takes the next chunk until none is left: decodes it and writes its pages.
fn decode_jobs(
    pid: i32,
    sources: &[Source],
    jobs: &[(usize, usize)],
    next: &AtomicUsize,
    progress: &Phase,
) -> Result<(), RestoreError> {
    let mut scratch = Vec::with_capacity(sources.len());
    for s in sources {
        scratch.push(s.pages.scratch().map_err(ImageError::from)?);
    }
    let mut plain = Vec::new();
    while let Some(&(src, chunk)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
        let s = &sources[src];
        let decoded = s
            .pages
            .decode(&s.file, chunk, &mut scratch[src], &mut plain);
        decoded.map_err(|e: StoreError| ImageError::from(e))?;
        let start = s.pages.chunks()[chunk].plain_start;
        let (from, iovs) = place(&s.segments, start, plain.len() as u64);
        let bytes: u64 = iovs.iter().map(|i| i.len).sum();
        if bytes > 0 {
            let from = from as usize;
            write_all(pid, &plain[from..from + bytes as usize], &iovs)?;
        }
        progress.advance(bytes);
    }
    Ok(())
}

/// The pages file's bytes in page-run order, from `PAGES_DATA_OFFSET` on.
fn segments(mm: &MmImage, stripe: u8) -> Vec<Segment> {
    let mut offset = PAGES_DATA_OFFSET;
    let runs = mm.page_runs.iter().filter(|r| r.stripe == stripe);
    runs.map(|r| {
        let len = r.pages * PAGE_SIZE;
        let s = Segment {
            offset,
            addr: r.addr,
            len,
        };
        offset += len;
        s
    })
    .collect()
}

/// Where the plain bytes `[start, start + len)` of a pages file go: the offset, from
/// `start`, of the first byte that is page data, and the iovecs its bytes fill in order
/// (the segments follow each other in the file).
fn place(segments: &[Segment], start: u64, len: u64) -> (u64, Vec<IoVec>) {
    let end = start + len;
    let first = segments.partition_point(|s| s.offset + s.len <= start);
    let mut iovs = Vec::new();
    let mut from = None;
    for s in segments[first..].iter().take_while(|s| s.offset < end) {
        let lo = s.offset.max(start);
        let hi = (s.offset + s.len).min(end);
        from.get_or_insert(lo - start);
        iovs.push(IoVec {
            base: s.addr + (lo - s.offset),
            len: hi - lo,
        });
    }
    (from.unwrap_or(0), iovs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, addr: u64, len: u64) -> Segment {
        Segment { offset, addr, len }
    }

    #[test]
    fn place_cuts_segments_at_the_chunk() {
        let segs = [seg(4096, 0x10000, 8192), seg(12288, 0x40000, 4096)];
        // The head chunk and data: data from 4096.
        let (from, iovs) = place(&segs, 0, 6000);
        assert_eq!(from, 4096);
        assert_eq!(
            iovs,
            vec![IoVec {
                base: 0x10000,
                len: 6000 - 4096
            }]
        );
        // Across both segments.
        let (from, iovs) = place(&segs, 6000, 10000);
        assert_eq!(from, 0);
        let want = vec![
            IoVec {
                base: 0x10000 + 1904,
                len: 12288 - 6000,
            },
            IoVec {
                base: 0x40000,
                len: 16000 - 12288,
            },
        ];
        assert_eq!(iovs, want);
        // Past the end.
        assert_eq!(place(&segs, 20000, 10).1, vec![]);
    }

    #[test]
    fn segments_follow_the_stripe() {
        use crate::image::mm::PageRun;
        let mut mm = MmImage::default();
        let run = |addr, pages, stripe| PageRun {
            addr,
            pages,
            stripe,
        };
        mm.page_runs = vec![run(0x1000, 2, 0), run(0x8000, 1, 1), run(0x9000, 3, 0)];
        assert_eq!(
            segments(&mm, 0),
            vec![seg(4096, 0x1000, 8192), seg(4096 + 8192, 0x9000, 12288)]
        );
        assert_eq!(segments(&mm, 1), vec![seg(4096, 0x8000, 4096)]);
    }
}
