//! Which pages a `dump --lazy-pages` leaves to be served: the present pages of private
//! anonymous mappings of a process without a child in the tree, but mappings the restore
//! must fill before anything runs (those still shared copy-on-write with the parent, see
//! `dump/cow.rs`) and those whose contents another step needs or a userfaultfd cannot
//! take: locked (mlock populates at restore), sealed, droppable, and with guard regions.

use crate::image::mm::{Guard, Vma, VmaKind};

/// The mappings of a process whose pages may be served later: `(start, end)` sorted.
/// `inherited` are the ranges kept copy-on-write from the parent.
pub fn lazy_vmas(vmas: &[Vma], inherited: &[(u64, u64)]) -> Vec<(u64, u64)> {
    vmas.iter()
        .filter(|v| eligible(v))
        .filter(|v| !inherited.iter().any(|&(s, e)| s < v.end && v.start < e))
        .map(|v| (v.start, v.end))
        .collect()
}

fn eligible(v: &Vma) -> bool {
    let f = &v.flags;
    !v.shared
        && matches!(v.kind, VmaKind::Anon)
        && !(f.locked || f.lockonfault || f.sealed || f.droppable)
}

/// `lazy` without the mappings holding a guard region.
pub fn without_guards(lazy: &[(u64, u64)], guards: &[Guard]) -> Vec<(u64, u64)> {
    let guarded = |&&(s, e): &&(u64, u64)| guards.iter().any(|g| g.start < e && s < g.end);
    lazy.iter().filter(|r| !guarded(r)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_mappings_are_filled() {
        let lazy = [(0x1000, 0x3000), (0x5000, 0x9000)];
        let guards = [Guard {
            start: 0x6000,
            end: 0x7000,
        }];
        assert_eq!(without_guards(&lazy, &guards), vec![(0x1000, 0x3000)]);
    }
}
