//! Page contents: the child reads its saved pages straight from the pages file into place
//! with `preadv`, one injected call per up to 1024 runs or [`BATCH_BYTES`], so each byte is
//! copied once, by the kernel, into the page it belongs to. The dump side is
//! `dump/memory.rs`.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::child::{Child, HELPER_LEN};
use super::mm::open_in;
use super::RestoreError;
use crate::abi::{IoVec, PAGE_SIZE};
use crate::image::mm::{MmImage, PageRun};
use crate::image::pages::PAGES_DATA_OFFSET;
use crate::progress::Phase;
use crate::sys::pod::slice_as_bytes;

/// `IOV_MAX`, and what fits in scratch.
const MAX_IOVS: usize = 1024;
/// Bytes per injected `preadv`: the call's round trip (tens of µs) is noise next to
/// faulting in this much, and progress is reported this often.
const BATCH_BYTES: u64 = 64 << 20;

/// What [`fill`] did, for the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filled {
    pub bytes: u64,
    pub elapsed: Duration,
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

/// Fills every saved page. Ordering requirements: all mappings exist and are writable.
pub fn fill(child: &Child, mm: &MmImage, pages: &Path) -> Result<Filled, RestoreError> {
    let started = Instant::now();
    let fd = open_in(
        child,
        &pages.to_string_lossy(),
        libc::O_RDONLY | libc::O_CLOEXEC,
    )?;
    let total = mm.page_runs.iter().map(|r| r.pages * PAGE_SIZE).sum();
    let progress = Phase::begin("restoring pages", total);
    let mut offset = PAGES_DATA_OFFSET;
    for batch in iov_batches(&mm.page_runs) {
        let n = read_batch(child, fd, &batch, offset)?;
        progress.advance(n);
        offset += n;
    }
    child.remote().call("close", libc::SYS_close, &[fd])?;
    Ok(Filled {
        bytes: offset - PAGES_DATA_OFFSET,
        elapsed: started.elapsed(),
    })
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

/// One `preadv`, repeated from where it stopped if the kernel returns short.
fn read_batch(child: &Child, fd: u64, batch: &[IoVec], offset: u64) -> Result<u64, RestoreError> {
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

    #[test]
    fn batches_respect_iov_max() {
        let runs: Vec<PageRun> = (0..2500)
            .map(|i| PageRun {
                addr: i * 0x2000,
                pages: 1,
            })
            .collect();
        let b = iov_batches(&runs);
        assert_eq!(
            b.iter().map(|x| x.len()).collect::<Vec<_>>(),
            vec![1024, 1024, 452]
        );
    }

    #[test]
    fn batches_respect_batch_bytes() {
        let pages = 2 * BATCH_BYTES / PAGE_SIZE + 3;
        let b = iov_batches(&[PageRun { addr: 0, pages }]);
        let sizes: Vec<u64> = b.iter().map(|x| x.iter().map(|i| i.len).sum()).collect();
        assert_eq!(sizes, vec![BATCH_BYTES, BATCH_BYTES, 3 * PAGE_SIZE]);
        assert_eq!(b[1][0].base, BATCH_BYTES);
    }
}
