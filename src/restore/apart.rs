//! Anonymous mappings kept apart as they were. Two adjacent private anonymous mappings
//! with the same protection and flags are two mappings in the image only because the
//! kernel did not merge them in the dumped process (one had been made, moved or split
//! before the other; their anonymous memory is tracked apart). Mapped again side by side
//! at their addresses, the kernel would merge them into one — a different
//! `/proc/PID/maps`, and an `mremap` across the boundary that now works where it failed.
//!
//! The kernel merges anonymous mappings only where their page offsets continue (an
//! anonymous mapping's offset is its first address in pages, kept when it moves once it
//! has anonymous memory — an untouched one takes its new address's —, never shown in
//! `/proc`). So the later mapping of such a pair is made at a free place, given its
//! anonymous memory (one page written and dropped again) and moved to its address: its
//! offset is the free place's, and no neighbour continues it.
//! The free place is one hole, reused mapping after mapping, away from every mapping of
//! the image, so the moved offset never equals the one its neighbours would continue.

use std::collections::HashMap;

use super::child::{find_hole, Child, HELPER_LEN};
use super::mm::{MREMAP_FIXED, MREMAP_MAYMOVE};
use super::RestoreError;
use crate::image::mm::{MmImage, Vma};
use crate::sys::batch::Batch;

/// Faults pages in for writing (Linux 5.14).
const MADV_POPULATE_WRITE: u64 = 23;

/// The mappings to make apart, by start, each with the free place to make it at.
pub fn plan(child: &Child, mm: &MmImage) -> Result<HashMap<u64, u64>, RestoreError> {
    let apart: Vec<&Vma> = mm
        .vmas
        .windows(2)
        .filter(|w| w[0].merges_with(&w[1]))
        .map(|w| &w[1])
        .collect();
    let Some(len) = apart.iter().map(|v| v.len()).max() else {
        return Ok(HashMap::new());
    };
    let mut taken: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    taken.extend(child.specials.borrow().iter().map(|&(_, s, e)| (s, e)));
    taken.push((child.helper, child.helper + HELPER_LEN));
    // A page of room on either side: the hole touches no mapping of the image.
    let hole = find_hole(&mut taken, len + 2 * 4096).ok_or_else(|| RestoreError::Unsupported {
        what: format!(
            "no room for a {len}-byte mapping made apart in pid {}",
            child.pid()
        ),
    })?;
    Ok(apart.iter().map(|v| (v.start, hole + 4096)).collect())
}

/// Adds to `b`: anonymous `v` made at `hole` with `prot`, its anonymous memory made
/// (a page written by `MADV_POPULATE_WRITE`, then dropped), moved to its address.
pub fn map(b: &mut Batch, v: &Vma, prot: u64, hole: u64) {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let noreserve = if v.flags.noreserve {
        libc::MAP_NORESERVE as u64
    } else {
        0
    };
    let writable = prot | libc::PROT_WRITE as u64;
    let args = [hole, v.len(), writable, flags | noreserve, u64::MAX, 0];
    b.call("mmap(apart)", libc::SYS_mmap, &args);
    let populate = [hole, 4096, MADV_POPULATE_WRITE];
    b.expect(
        "madvise(MADV_POPULATE_WRITE)",
        libc::SYS_madvise,
        &populate,
        0,
    );
    let drop = [hole, 4096, libc::MADV_DONTNEED as u64];
    b.expect("madvise(MADV_DONTNEED)", libc::SYS_madvise, &drop, 0);
    let args = [
        hole,
        v.len(),
        v.len(),
        MREMAP_MAYMOVE | MREMAP_FIXED,
        v.start,
    ];
    b.call("mremap(apart)", libc::SYS_mremap, &args);
    if writable != prot {
        let args = [v.start, v.len(), prot];
        b.expect("mprotect(apart)", libc::SYS_mprotect, &args, 0);
    }
}
