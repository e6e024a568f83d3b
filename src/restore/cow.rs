//! Copy-on-write memory kept from the parent, the restore side of `dump/cow.rs`: a process
//! is created by a fork of its restored parent, whose memory is in place, so where the
//! image says it still shared pages with its parent it keeps the mapping the fork brought
//! (AddressSpace leaves it) instead of mapping it afresh. Here that mapping becomes the
//! process's own: its working protection, its own length, and what a fresh mapping holds
//! (zeros, or the file's contents) where the parent has pages the process did not; its own
//! pages are filled later as usual (writing a page breaks the sharing of that page only).

use std::collections::HashSet;

use super::mm::working_prot;
use super::staged::Staged;
use super::RestoreError;
use crate::image::mm::{CowRange, MmImage, Vma};
use crate::sys::batch::Batch;

/// Ordering requirements: after AddressSpace (nothing but the kept ranges, the helper and
/// the vDSO block is mapped, so a mapping can grow in place), before Memory.
/// Added to the pending batch.
pub fn adopt(
    s: &mut Staged,
    mm: &MmImage,
    filled: &HashSet<u64>,
    parent: &MmImage,
    parent_filled: &HashSet<u64>,
) -> Result<(), RestoreError> {
    let pid = s.child().pid();
    for c in &mm.cow {
        let b = s.batch();
        let v = mm
            .vmas
            .iter()
            .find(|v| v.start == c.start)
            .expect("validated: a range starts a mapping");
        let p = parent
            .vmas
            .iter()
            .find(|p| p.start <= c.start && c.end <= p.end)
            .expect("validated: the parent maps the range");
        let want = working_prot(v, filled);
        if want != working_prot(p, parent_filled) {
            let args = [c.start, c.end - c.start, want];
            b.call("mprotect", libc::SYS_mprotect, &args);
        }
        grow(b, c, v, pid);
        zap(b, c);
        if s.room() < 4096 {
            s.flush()?;
        }
    }
    Ok(())
}

/// `mremap` in place to the mapping's own end, when it is longer than the parent's (it
/// must stay where it is).
fn grow(b: &mut Batch, c: &CowRange, v: &Vma, pid: i32) {
    if c.end == v.end {
        return;
    }
    let args = [c.start, c.end - c.start, v.len(), 0];
    b.expect("mremap(grow)", libc::SYS_mremap, &args, c.start);
    b.about(format!(
        "mremap of {:#x}-{:#x} in pid {pid} in place",
        c.start, c.end
    ));
}

/// `MADV_DONTNEED` where the parent has pages that the process did not have: they read
/// as zeros again (or as the file, in a file mapping).
fn zap(b: &mut Batch, c: &CowRange) {
    for &(s, e) in &c.zap {
        let args = [s, e - s, libc::MADV_DONTNEED as u64];
        b.call("madvise(DONTNEED)", libc::SYS_madvise, &args);
    }
}
