//! Sorted, non-overlapping `[start, end)` address ranges: set differences and
//! intersections, shared by the dump (pages to save) and the image (pages in parents).

/// The parts of the sorted, non-overlapping `ranges` outside the sorted, non-overlapping
/// `holes`.
pub fn subtract(ranges: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut h = 0;
    for &(mut start, end) in ranges {
        while h < holes.len() && holes[h].1 <= start {
            h += 1;
        }
        let mut i = h;
        while start < end && i < holes.len() && holes[i].0 < end {
            if holes[i].0 > start {
                out.push((start, holes[i].0));
            }
            start = start.max(holes[i].1);
            i += 1;
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

/// The parts of the sorted, non-overlapping `ranges` inside the sorted, non-overlapping
/// `within`.
pub fn intersect(ranges: &[(u64, u64)], within: &[(u64, u64)]) -> Vec<(u64, u64)> {
    subtract(ranges, &subtract(ranges, within))
}
