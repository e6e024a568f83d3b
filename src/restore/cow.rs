//! Copy-on-write memory kept from the parent, the restore side of `dump/cow.rs`: a process
//! is created by a fork of its restored parent, whose memory is in place, so where the
//! image says it still shared pages with its parent it keeps the mapping the fork brought
//! (AddressSpace leaves it) instead of mapping it afresh. Here that mapping becomes the
//! process's own: its working protection, its own length, and what a fresh mapping holds
//! (zeros, or the file's contents) where the parent has pages the process did not; its own
//! pages are filled later as usual (writing a page breaks the sharing of that page only).

use std::collections::HashSet;

use super::child::Child;
use super::mm::working_prot;
use super::RestoreError;
use crate::image::mm::{CowRange, MmImage, Vma};

/// Ordering requirements: after AddressSpace (nothing but the kept ranges, the helper and
/// the vDSO block is mapped, so a mapping can grow in place), before Memory.
pub fn adopt(
    child: &Child,
    mm: &MmImage,
    filled: &HashSet<u64>,
    parent: &MmImage,
    parent_filled: &HashSet<u64>,
) -> Result<(), RestoreError> {
    for c in &mm.cow {
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
            child.remote().call("mprotect", libc::SYS_mprotect, &args)?;
        }
        grow(child, c, v)?;
        zap(child, c)?;
    }
    Ok(())
}

/// `mremap` in place to the mapping's own end, when it is longer than the parent's.
fn grow(child: &Child, c: &CowRange, v: &Vma) -> Result<(), RestoreError> {
    if c.end == v.end {
        return Ok(());
    }
    let args = [c.start, c.end - c.start, v.len(), 0];
    let at = child
        .remote()
        .call("mremap(grow)", libc::SYS_mremap, &args)?;
    if at != c.start {
        return Err(RestoreError::Unsupported {
            what: format!(
                "mremap of {:#x}-{:#x} in pid {} moved it to {at:#x}",
                c.start,
                c.end,
                child.pid()
            ),
        });
    }
    Ok(())
}

/// `MADV_DONTNEED` where the parent has pages that the process did not have: they read
/// as zeros again (or as the file, in a file mapping).
fn zap(child: &Child, c: &CowRange) -> Result<(), RestoreError> {
    for &(s, e) in &c.zap {
        let args = [s, e - s, libc::MADV_DONTNEED as u64];
        child
            .remote()
            .call("madvise(DONTNEED)", libc::SYS_madvise, &args)?;
    }
    Ok(())
}
