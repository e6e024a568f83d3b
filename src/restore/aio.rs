//! AIO rings (`io_setup(2)`) made again at their addresses, with the head, tail and events
//! the task saw. The dump side is `dump/aio.rs`.
//!
//! A fresh ring is empty, and only the kernel moves its tail, as requests complete: so
//! requests that complete at once (one-byte writes to `/dev/null`) are submitted until
//! the tail is where it was, the head (which the task may write, as `io_getevents` would
//! move it) being moved along so that the kernel counts the free slots as it did. Then the
//! events are written and the ring is moved to its address (`mremap`; the kernel follows
//! the move, and the context's id, which is its address, is the saved one again).
//!
//! What `io_setup` was asked for is not kept by the kernel: a request giving a ring of
//! the same size is used (as CRIU does), so only `/proc/sys/fs/aio-nr` may count
//! differently.

use super::child::Child;
use super::mm::open_in;
use super::RestoreError;
use crate::image::mm::{AioRing, MmImage, Vma, VmaKind};
use crate::sys::mem::Mem;

const HEADER: usize = AioRing::HEADER;
const EVENT: usize = AioRing::EVENT;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
/// `IOCB_CMD_PWRITE`.
const IOCB_CMD_PWRITE: u16 = 1;
/// Scratch layout: the context id, one iocb, its one-byte buffer, then the iocb pointers.
const CTX_AT: u64 = 0;
const IOCB_AT: u64 = 64;
const BUF_AT: u64 = 128;
const PTRS_AT: u64 = 256;
/// Most requests submitted by one `io_submit` (their pointers fill 32 KiB of scratch).
const MAX_BATCH: u32 = 4096;

/// Makes every AIO ring of `mm` in the child.
///
/// Ordering requirements: after every other mapping is made (a ring must not take
/// another's place, and `mremap` needs its own place free), in a flushed batch.
pub fn restore_rings(child: &Child, mm: &MmImage) -> Result<(), RestoreError> {
    for v in &mm.vmas {
        if let VmaKind::Aio(r) = &v.kind {
            restore_ring(child, v, r)?;
        }
    }
    Ok(())
}

fn restore_ring(child: &Child, v: &Vma, r: &AioRing) -> Result<(), RestoreError> {
    let (pid, remote) = (child.pid(), child.remote());
    let slot = child.put(CTX_AT, &0u64.to_ne_bytes())?;
    remote.call("io_setup", libc::SYS_io_setup, &[u64::from(r.nr_req), slot])?;
    let mem = Mem::open(pid, true)?;
    let mut id = [0u8; 8];
    mem.read(slot, &mut id)?;
    let ctx = u64::from_ne_bytes(id);
    let mut header = [0u8; HEADER];
    mem.read(ctx, &mut header)?;
    let nr = u32::from_ne_bytes(header[4..8].try_into().expect("4 bytes"));
    if nr != r.nr || (HEADER + nr as usize * EVENT) as u64 > v.len() {
        return Err(RestoreError::Unsupported {
            what: format!(
                "io_setup({}) in pid {pid} made a ring of {nr} events, not one of {} as at {:#x}-{:#x} (another number of CPUs?)",
                r.nr_req, r.nr, v.start, v.end
            ),
        });
    }
    advance(child, &mem, ctx, r)?;
    mem.write(ctx + HEADER as u64, &r.events)?;
    let args = [
        ctx,
        v.len(),
        v.len(),
        MREMAP_MAYMOVE | MREMAP_FIXED,
        v.start,
    ];
    remote.call("mremap(aio)", libc::SYS_mremap, &args)?;
    Ok(())
}

/// Completes requests in the fresh ring at `ctx` until its tail and head are `r`'s: as
/// many as the tail moved, a full turn more if it wrapped below the head.
fn advance(child: &Child, mem: &Mem, ctx: u64, r: &AioRing) -> Result<(), RestoreError> {
    let count = if r.tail >= r.head {
        r.tail
    } else {
        r.nr + r.tail
    };
    if count == 0 {
        return Ok(());
    }
    let remote = child.remote();
    let fd = open_in(child, "/dev/null", libc::O_WRONLY | libc::O_CLOEXEC)?;
    let most = count.min(r.nr - 1).min(MAX_BATCH);
    let iocb = child.put(IOCB_AT, &iocb(fd, child.scratch() + BUF_AT))?;
    let ptrs: Vec<u8> = (0..most).flat_map(|_| iocb.to_ne_bytes()).collect();
    let ptrs = child.put(PTRS_AT, &ptrs)?;
    let mut done = 0;
    while done < count {
        let n = (count - done).min(most);
        let args = [ctx, u64::from(n), ptrs];
        let got = remote.call("io_submit", libc::SYS_io_submit, &args)?;
        if got == 0 {
            return Err(RestoreError::Unsupported {
                what: format!("io_submit in pid {} took no request", child.pid()),
            });
        }
        done += got as u32;
        // Reaping as far as the saved head frees the slots the task had free.
        mem.write(ctx + 8, &done.min(r.head).to_ne_bytes())?;
    }
    remote.call("close", libc::SYS_close, &[fd])?;
    Ok(())
}

/// A `struct iocb` writing one byte from `buf` to `fd`.
fn iocb(fd: u64, buf: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[16..18].copy_from_slice(&IOCB_CMD_PWRITE.to_ne_bytes());
    b[20..24].copy_from_slice(&(fd as u32).to_ne_bytes());
    b[24..32].copy_from_slice(&buf.to_ne_bytes());
    b[32..40].copy_from_slice(&1u64.to_ne_bytes());
    b
}
