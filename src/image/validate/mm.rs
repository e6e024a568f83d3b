//! Checks of an mm record: its mappings (each kind's own rules, order, overlaps), page
//! runs, guard regions, shared objects, copy-on-write ranges, mm fields and auxv.

use std::path::Path;

use super::{fail, Check, USER_END};
use crate::abi::PAGE_SIZE;
use crate::image::error::ImageError;
use crate::image::mm::{
    AioRing, Guard, MmFields, MmImage, PageRun, Vma, VmaKind, MAX_STRIPES, PARENT_STRIPE,
};

/// Mappings, page runs, mm fields and auxv.
pub fn mm(mm: &MmImage, path: &Path) -> Check {
    mm.vmas.iter().try_for_each(|v| vma(v, path))?;
    for pair in mm.vmas.windows(2) {
        if pair[1].start < pair[0].end {
            return fail(
                path,
                format!(
                    "mapping {} overlaps or precedes {}",
                    span(&pair[1]),
                    span(&pair[0])
                ),
            );
        }
    }
    page_runs(&mm.page_runs, &mm.vmas, path)?;
    unlinked(mm, path)?;
    shmem_objects(mm, path)?;
    guards(mm, path)?;
    cow(mm, path)?;
    fields(&mm.fields, path)?;
    auxv(&mm.auxv, path)
}

fn span(v: &Vma) -> String {
    format!("{:#x}-{:#x}", v.start, v.end)
}

fn vma(v: &Vma, path: &Path) -> Check {
    if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 {
        return fail(path, format!("mapping {} is not page aligned", span(v)));
    }
    if v.start >= v.end {
        return fail(path, format!("mapping {} is empty or reversed", span(v)));
    }
    if v.end > USER_END {
        return fail(
            path,
            format!("mapping {} extends beyond user space", span(v)),
        );
    }
    match &v.kind {
        VmaKind::Aio(r) => aio_ring(v, r, path),
        _ => Ok(()),
    }
}

/// A ring's head and tail are inside it, its events fill it and it fits its mapping.
fn aio_ring(v: &Vma, r: &AioRing, path: &Path) -> Check {
    let bytes = (r.nr as u64).checked_mul(AioRing::EVENT as u64);
    let fits = bytes.is_some_and(|b| {
        b == r.events.len() as u64 && b + AioRing::HEADER as u64 <= v.end - v.start
    });
    if !fits || r.head >= r.nr || r.tail >= r.nr {
        return fail(
            path,
            format!(
                "AIO ring {} of {} events (head {}, tail {}, {} bytes of events) is impossible",
                span(v),
                r.nr,
                r.head,
                r.tail,
                r.events.len()
            ),
        );
    }
    Ok(())
}

/// Runs are aligned, non-empty, each inside one mapping, in address order, each in one
/// of [`MAX_STRIPES`] pages files. `vmas` must already be valid and sorted.
fn page_runs(runs: &[PageRun], vmas: &[Vma], path: &Path) -> Check {
    let mut prev_end = 0;
    for run in runs {
        let label = || format!("page run {:#x}+{}", run.addr, run.pages);
        if run.stripe >= MAX_STRIPES && run.stripe != PARENT_STRIPE {
            let (stripe, last) = (run.stripe, MAX_STRIPES - 1);
            return fail(
                path,
                format!(
                    "{} is in pages file {stripe}, beyond the last one ({last})",
                    label()
                ),
            );
        }
        if run.addr % PAGE_SIZE != 0 {
            return fail(path, format!("{} is not page aligned", label()));
        }
        if run.pages == 0 {
            return fail(path, format!("{} is empty", label()));
        }
        let end = run_end(run, vmas).ok_or_else(|| {
            ImageError::invalid(path, format!("{} lies outside every mapping", label()))
        })?;
        if run.addr < prev_end {
            return fail(
                path,
                format!("{} overlaps or precedes the previous run", label()),
            );
        }
        prev_end = end;
    }
    Ok(())
}

/// Guard regions are aligned, non-empty, each inside one mapping, in address order, and
/// hold no saved page (a guard page has no contents). Mappings and runs must be valid.
fn guards(mm: &MmImage, path: &Path) -> Check {
    let mut prev_end = 0;
    for g in &mm.guards {
        let label = || format!("guard region {:#x}-{:#x}", g.start, g.end);
        if g.start % PAGE_SIZE != 0 || g.end % PAGE_SIZE != 0 || g.start >= g.end {
            return fail(path, format!("{} is empty or not page aligned", label()));
        }
        let as_run = PageRun {
            addr: g.start,
            pages: (g.end - g.start) / PAGE_SIZE,
            stripe: 0,
        };
        if run_end(&as_run, &mm.vmas).is_none() {
            return fail(path, format!("{} lies outside every mapping", label()));
        }
        if g.start < prev_end {
            return fail(
                path,
                format!("{} overlaps or precedes the previous one", label()),
            );
        }
        if holds_pages(g, &mm.page_runs) {
            return fail(path, format!("{} overlaps saved pages", label()));
        }
        prev_end = g.end;
    }
    Ok(())
}

/// Each shared anonymous object is made by a shared anonymous mapping of this process
/// that creates it (a `ShmemRef` without owner), and holds that mapping at a page
/// aligned offset.
fn shmem_objects(mm: &MmImage, path: &Path) -> Check {
    for o in &mm.shmem_objects {
        let v = mm.vmas.iter().find(|v| v.start == o.start);
        let creates = mm
            .shmem
            .iter()
            .any(|r| r.start == o.start && r.owner.is_none());
        let fits = v.is_some_and(|v| {
            o.offset
                .checked_add(v.len())
                .is_some_and(|end| end <= o.size)
        });
        let anon = v.is_some_and(|v| v.shared && v.kind == VmaKind::Anon);
        if !(creates && fits && anon) || o.offset % PAGE_SIZE != 0 || o.size % PAGE_SIZE != 0 {
            return fail(
                path,
                format!(
                    "shared memory object of {} bytes made by the mapping at {:#x} (offset {:#x}) is impossible",
                    o.size, o.start, o.offset
                ),
            );
        }
    }
    Ok(())
}

/// A mapping of an object without a name has its object reference (made by this
/// process or another): a shared one of a memfd, deleted file or hugetlb memory, and a
/// private one, which without an owner rebuilds its deleted file from saved contents.
fn unlinked(mm: &MmImage, path: &Path) -> Check {
    for v in &mm.vmas {
        let r = mm.shmem.iter().find(|r| r.start == v.start);
        let what = match &v.kind {
            VmaKind::Unlinked { .. } if !(v.shared && r.is_some()) => "is not shared memory",
            VmaKind::Hugetlb { memfd, .. }
                if (v.shared || memfd.is_some()) && !(v.shared && r.is_some()) =>
            {
                "is not shared memory"
            }
            VmaKind::PrivateUnlinked { ghost, .. }
                if v.shared || !r.is_some_and(|r| r.owner.is_some() != ghost.is_some()) =>
            {
                "is not private, or has no object or two"
            }
            _ => continue,
        };
        return fail(
            path,
            format!("mapping {} of an unlinked object {what}", span(v)),
        );
    }
    Ok(())
}

/// Copy-on-write ranges start where a private anonymous mapping starts and end inside
/// it, in address order; their zap ranges are aligned, sorted and inside them.
fn cow(mm: &MmImage, path: &Path) -> Check {
    let mut prev_end = 0;
    for c in &mm.cow {
        let label = || format!("copy-on-write range {:#x}-{:#x}", c.start, c.end);
        let v = mm.vmas.iter().find(|v| v.start == c.start);
        if !v.is_some_and(|v| v.is_private_memory() && c.end > c.start && c.end <= v.end) {
            return fail(
                path,
                format!(
                    "{} is not the start of a private anonymous or file mapping",
                    label()
                ),
            );
        }
        if c.end % PAGE_SIZE != 0 || c.start < prev_end {
            return fail(path, format!("{} is unaligned or out of order", label()));
        }
        let mut at = c.start;
        for &(s, e) in &c.zap {
            if s % PAGE_SIZE != 0 || e % PAGE_SIZE != 0 || s < at || e <= s || e > c.end {
                return fail(
                    path,
                    format!("{} has a bad zap range {s:#x}-{e:#x}", label()),
                );
            }
            at = e;
        }
        prev_end = c.end;
    }
    Ok(())
}

/// A process with copy-on-write ranges is not the root, and its parent (`ppid`, whose
/// record is `parent`) has a mapping of the same backing (anonymous, or the same file at
/// the same offsets) with the same protection over each range: restore keeps what the
/// fork from that parent brings.
pub fn cow_parent(mm: &MmImage, parent: Option<&MmImage>, path: &Path) -> Check {
    let Some(first) = mm.cow.first() else {
        return Ok(());
    };
    let Some(parent) = parent else {
        return fail(
            path,
            format!(
                "copy-on-write range {:#x}-{:#x} in a process without a parent in the image",
                first.start, first.end
            ),
        );
    };
    for c in &mm.cow {
        let own = mm.vmas.iter().find(|v| v.start == c.start);
        let theirs = parent
            .vmas
            .iter()
            .find(|p| p.start <= c.start && c.end <= p.end);
        let same = matches!((own, theirs), (Some(v), Some(p)) if v.same_backing(p));
        if !same {
            return fail(
                path,
                format!(
                    "copy-on-write range {:#x}-{:#x} has no matching mapping in the parent",
                    c.start, c.end
                ),
            );
        }
    }
    Ok(())
}

/// Whether a run of the sorted `runs` overlaps `g`.
fn holds_pages(g: &Guard, runs: &[PageRun]) -> bool {
    let i = runs.partition_point(|r| r.addr + r.pages * PAGE_SIZE <= g.start);
    runs.get(i).is_some_and(|r| r.addr < g.end)
}

/// The end address of `run` if it fits inside one of the sorted `vmas`.
fn run_end(run: &PageRun, vmas: &[Vma]) -> Option<u64> {
    let i = vmas.partition_point(|v| v.end <= run.addr);
    let v = vmas.get(i).filter(|v| v.start <= run.addr)?;
    let room = (v.end - run.addr) / PAGE_SIZE;
    (run.pages <= room).then(|| run.addr + run.pages * PAGE_SIZE)
}

fn fields(f: &MmFields, path: &Path) -> Check {
    let pairs = [
        ("start_code", f.start_code, "end_code", f.end_code),
        ("start_data", f.start_data, "end_data", f.end_data),
        ("start_brk", f.start_brk, "brk", f.brk),
        ("arg_start", f.arg_start, "arg_end", f.arg_end),
        ("env_start", f.env_start, "env_end", f.env_end),
    ];
    for (a, x, b, y) in pairs {
        if x > y {
            return fail(path, format!("{a} {x:#x} is above {b} {y:#x}"));
        }
    }
    Ok(())
}

fn auxv(words: &[u64], path: &Path) -> Check {
    if words.len() % 2 != 0 {
        return fail(
            path,
            format!("auxv has an odd number of words ({})", words.len()),
        );
    }
    if !words.ends_with(&[0, 0]) {
        return fail(path, "auxv does not end with AT_NULL (0, 0)".into());
    }
    Ok(())
}
