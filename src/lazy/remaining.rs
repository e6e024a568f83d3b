//! The pages one restored address space still waits for: ranges of its addresses *now*,
//! each with the address its data had at the dump (what the source is asked for). Faults,
//! `MADV_DONTNEED`, `munmap` and `mremap` are told in current addresses; the pages come
//! back by source address. Pure bookkeeping, no system calls.

use std::collections::BTreeMap;

/// `[start, end)` now, whose data was at `src` (for `start`) at the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    pub src: u64,
}

impl Piece {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Missing pages, by current start: end and source address of the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    segs: BTreeMap<u64, (u64, u64)>,
}

impl Remaining {
    /// The runs `(start, end)` of the dump, at their own addresses.
    pub fn new(runs: &[(u64, u64)]) -> Self {
        let segs = runs.iter().map(|&(s, e)| (s, (e, s))).collect();
        Remaining { segs }
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes still missing.
    pub fn bytes(&self) -> u64 {
        self.segs.iter().map(|(s, (e, _))| e - s).sum()
    }

    /// The missing piece holding `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<Piece> {
        let (&start, &(end, src)) = self.segs.range(..=addr).next_back()?;
        (addr < end).then_some(Piece { start, end, src })
    }

    /// The first missing piece ending after `cursor`, cut to start at it.
    pub fn next_from(&self, cursor: u64) -> Option<Piece> {
        let at = self.find(cursor).map(|p| cut_front(p, cursor));
        at.or_else(|| {
            let (&start, &(end, src)) = self.segs.range(cursor..).next()?;
            Some(Piece { start, end, src })
        })
    }

    /// Removes and returns the missing pieces inside `[start, end)`.
    pub fn take(&mut self, start: u64, end: u64) -> Vec<Piece> {
        let mut keys: Vec<u64> = self.segs.range(start..end).map(|(&k, _)| k).collect();
        if let Some(p) = self.find(start) {
            if p.start < start {
                keys.insert(0, p.start);
            }
        }
        let mut out = Vec::new();
        for k in keys {
            let (e, src) = self.segs.remove(&k).expect("key listed");
            let p = Piece {
                start: k,
                end: e,
                src,
            };
            if p.start < start {
                self.segs.insert(p.start, (start, p.src));
            }
            if p.end > end {
                let kept = cut_front(p, end);
                self.segs.insert(kept.start, (kept.end, kept.src));
            }
            let mid = cut_front(p, p.start.max(start));
            out.push(Piece {
                end: mid.end.min(end),
                ..mid
            });
        }
        out
    }

    /// `[from, from + len)` moved to `to`: its missing pages are now there (whatever was
    /// missing at `to` is gone: the move replaced it).
    pub fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved = self.take(from, from + len);
        self.take(to, to + len);
        for p in moved {
            let start = p.start - from + to;
            self.segs.insert(start, (start + p.len(), p.src));
        }
    }

    /// The missing pieces whose data was in `[src, src_end)` at the dump.
    pub fn by_source(&self, src: u64, src_end: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        for (&start, &(end, s)) in &self.segs {
            let s_end = s + (end - start);
            let (lo, hi) = (s.max(src), s_end.min(src_end));
            if lo < hi {
                out.push(Piece {
                    start: start + (lo - s),
                    end: start + (hi - s),
                    src: lo,
                });
            }
        }
        out
    }
}

/// `p` from `at` on.
fn cut_front(p: Piece, at: u64) -> Piece {
    Piece {
        start: at,
        end: p.end,
        src: p.src + (at - p.start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn take_splits_segments() {
        let mut r = Remaining::new(&[(0, 10 * P)]);
        let got = r.take(2 * P, 4 * P);
        assert_eq!(
            got,
            vec![Piece {
                start: 2 * P,
                end: 4 * P,
                src: 2 * P
            }]
        );
        assert_eq!(r.bytes(), 8 * P);
        assert!(r.find(3 * P).is_none());
        assert_eq!(r.find(5 * P).map(|p| p.start), Some(4 * P));
        assert_eq!(r.next_from(P).map(|p| (p.start, p.end)), Some((P, 2 * P)));
        assert_eq!(r.next_from(2 * P).map(|p| p.start), Some(4 * P));
    }

    #[test]
    fn remap_moves_what_is_missing() {
        let mut r = Remaining::new(&[(0, 4 * P), (10 * P, 12 * P)]);
        r.remap(0, 100 * P, 4 * P);
        assert!(r.find(0).is_none());
        let p = r.find(101 * P).expect("moved");
        assert_eq!((p.start, p.end, p.src), (100 * P, 104 * P, 0));
        let pieces = r.by_source(P, 2 * P);
        assert_eq!(
            pieces,
            vec![Piece {
                start: 101 * P,
                end: 102 * P,
                src: P
            }]
        );
        r.remap(100 * P, 10 * P, 4 * P);
        assert_eq!(r.bytes(), 4 * P);
        let back = r.find(11 * P).expect("moved back");
        assert_eq!((back.start, back.src), (10 * P, 0));
    }

    #[test]
    fn by_source_cuts_pieces() {
        let r = Remaining::new(&[(0, 4 * P), (8 * P, 9 * P)]);
        let got = r.by_source(3 * P, 10 * P);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].start, got[0].end), (3 * P, 4 * P));
        assert_eq!((got[1].start, got[1].end), (8 * P, 9 * P));
    }
}
