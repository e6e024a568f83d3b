//! `chain.img` (kind 18): where an image stands in a chain of incremental images. Every
//! dump and pre-dump writes one, with a random `id`; an image made with
//! `--prev-images-dir` names its parent by directory and id, and its mm records hold page
//! runs in [`PARENT_STRIPE`]: pages unchanged since the parent, found at the same
//! address of the same pid in the parent (or, through the parent's own such runs, further
//! up). This module owns the record and the resolution of those runs into pieces of the
//! ancestors' pages files, verifying each ancestor (its id, its records, its pages files)
//! before a restore creates anything; which pages are unchanged is `dump/track.rs`'s.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::file::{read, Kind};
use super::load::{load_mm, pages_name, record_name};
use super::mm::{MmImage, PARENT_STRIPE};
use crate::abi::PAGE_SIZE;

/// Name of the chain record.
pub const CHAIN: &str = "chain.img";
/// Longest chain of parents followed.
const MAX_DEPTH: usize = 64;

/// `chain.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainImage {
    /// Random, made by the dump: what a child image names its parent by.
    pub id: u64,
    /// A pre-dump: pages only (the tree ran on while they were read), never restored by
    /// itself, only as the parent of a dump.
    pub predump: bool,
    pub parent: Option<ParentRef>,
    /// The abstract unix socket of the tracker holding the tree's dirty-page tracking
    /// (`tracker.rs`), if the dump left it armed.
    pub tracker: Option<String>,
    /// The processes whose `mm-PID.img` and pages files this image holds.
    pub pids: Vec<i32>,
}

/// The image an incremental image was made against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// As given to `--prev-images-dir`: relative paths are relative to this image's
    /// directory (CRIU's convention).
    pub dir: String,
    pub id: u64,
}

/// Bytes `[addr, addr + len)` of a process come from `path` at `offset`.
///
/// A 2 GiB chain has hundreds of thousands of pieces in a handful of files: the pieces
/// of one file share its path (a clone is a count, not a copy of the name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub path: Arc<Path>,
    pub addr: u64,
    pub len: u64,
    pub offset: u64,
}

/// Pages files of ancestors with the page count their mm record promises, to verify.
pub type AncestorFiles = BTreeMap<PathBuf, u64>;

/// A new random image id (never 0): std's per-process random hash keys (from
/// `getrandom` once per thread) hashing the time and the pid; no file to open.
pub fn new_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    h.write_u128(t);
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// The chain record of `dir`, `None` if it has none (an image older than format 11, or
/// made before chains: it has no parent and cannot be one).
pub fn load(dir: &Path) -> Result<Option<ChainImage>, ImageError> {
    match read(Kind::Chain, &dir.join(CHAIN)) {
        Err(ImageError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        r => r.map(Some),
    }
}

/// The parent directory of an image in `dir`.
pub fn parent_dir(dir: &Path, parent: &ParentRef) -> PathBuf {
    relative_to(dir, Path::new(&parent.dir))
}

/// `path` taken relative to `dir` (unless absolute), `..` resolved lexically: `dir`
/// may not exist yet (a dump being written).
pub fn relative_to(dir: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(path).components() {
        match c {
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The chain record of the parent `parent` of the image in `dir`, checked to be the image
/// it was made against.
pub fn load_parent(dir: &Path, parent: &ParentRef) -> Result<(PathBuf, ChainImage), ImageError> {
    let pdir = parent_dir(dir, parent);
    let chain = load(&pdir)?.ok_or_else(|| {
        ImageError::invalid(pdir.join(CHAIN), "the parent image has no chain record")
    })?;
    if chain.id != parent.id {
        let what = format!(
            "parent image {} has id {:016x}, not {:016x} this image was made against",
            pdir.display(),
            chain.id,
            parent.id
        );
        return Err(ImageError::invalid(dir.join(CHAIN), what));
    }
    Ok((pdir, chain))
}

/// Where the parent runs `refs` (sorted `[start, end)`) of `pid` in the image in `dir`
/// have their data: pieces of the ancestors' pages files, each ancestor's id checked.
/// Adds the ancestors' pages files to `files`.
pub fn resolve(
    dir: &Path,
    chain: &ChainImage,
    pid: i32,
    refs: Vec<(u64, u64)>,
    files: &mut AncestorFiles,
) -> Result<Vec<Piece>, ImageError> {
    let (mut dir, mut chain) = (dir.to_path_buf(), chain.clone());
    let (mut pending, mut out) = (refs, Vec::new());
    for _ in 0..MAX_DEPTH {
        if pending.is_empty() {
            return Ok(out);
        }
        let Some(parent) = chain.parent.clone() else {
            let what = format!(
                "pid {pid}'s pages at {:#x} are taken from a parent image, but it has none",
                pending[0].0
            );
            return Err(ImageError::invalid(dir.join(CHAIN), what));
        };
        let (pdir, pchain) = load_parent(&dir, &parent)?;
        if !pchain.pids.contains(&pid) {
            let what = format!("parent image {} has no pages of pid {pid}", pdir.display());
            return Err(ImageError::invalid(pdir.join(CHAIN), what));
        }
        let mm = load_mm(&pdir, pid)?;
        let paths: Vec<Arc<Path>> = (stored_stripes(&mm))
            .map(|s| Arc::from(pdir.join(pages_name(pid, s))))
            .collect();
        for (s, path) in stored_stripes(&mm).zip(&paths) {
            files.insert(path.to_path_buf(), mm.stripe_pages(s));
        }
        let (pieces, next) = cover(&mm, &pending, &paths);
        if let Some(&(at, _)) = next.missing.first() {
            let what = format!("pid {pid}'s page at {at:#x} is in no parent image");
            return Err(ImageError::invalid(pdir.join(record_name("mm", pid)), what));
        }
        out.extend(pieces);
        (dir, chain, pending) = (pdir, pchain, next.further);
    }
    Err(ImageError::invalid(
        dir.join(CHAIN),
        format!("chain of parent images longer than {MAX_DEPTH}"),
    ))
}

/// The stripes of `mm` that have a pages file.
fn stored_stripes(mm: &MmImage) -> impl Iterator<Item = u8> {
    0..mm.stripes()
}

/// What [`cover`] could not find in the image itself.
#[derive(Debug, Default, PartialEq, Eq)]
struct Left {
    /// In the image's own parent runs: to look for further up.
    further: Vec<(u64, u64)>,
    /// In no run of the image.
    missing: Vec<(u64, u64)>,
}

/// The pieces of `mm`'s pages files (`paths`, by stripe) holding `wanted` (sorted,
/// non-overlapping), and the parts it holds in its own parent runs or not at all.
fn cover(mm: &MmImage, wanted: &[(u64, u64)], paths: &[Arc<Path>]) -> (Vec<Piece>, Left) {
    let mut offsets = [super::pages::PAGES_DATA_OFFSET; 256];
    let mut pieces = Vec::new();
    let mut left = Left::default();
    let mut covered = Vec::new();
    let mut w = 0;
    for run in &mm.page_runs {
        let (start, end) = (run.addr, run.addr + run.pages * PAGE_SIZE);
        let at = offsets[usize::from(run.stripe)];
        offsets[usize::from(run.stripe)] += end - start;
        while w < wanted.len() && wanted[w].1 <= start {
            w += 1;
        }
        let mut i = w;
        while i < wanted.len() && wanted[i].0 < end {
            let (a, b) = (wanted[i].0.max(start), wanted[i].1.min(end));
            covered.push((a, b));
            if run.stripe == PARENT_STRIPE {
                left.further.push((a, b));
            } else {
                pieces.push(Piece {
                    path: paths[usize::from(run.stripe)].clone(),
                    addr: a,
                    len: b - a,
                    offset: at + (a - start),
                });
            }
            i += 1;
        }
    }
    left.missing = crate::ranges::subtract(wanted, &covered);
    (pieces, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::mm::PageRun;

    fn run(addr: u64, pages: u64, stripe: u8) -> PageRun {
        PageRun {
            addr,
            pages,
            stripe,
        }
    }

    #[test]
    fn cover_finds_offsets_and_what_is_left() {
        let mm = MmImage {
            page_runs: vec![
                run(0x1000, 2, 0),
                run(0x4000, 1, PARENT_STRIPE),
                run(0x8000, 2, 0),
                run(0xa000, 1, 1),
            ],
            ..MmImage::default()
        };
        let wanted = [(0x2000, 0x5000), (0x9000, 0xb000), (0xc000, 0xd000)];
        let paths: Vec<Arc<Path>> = vec![Arc::from(Path::new("p0")), Arc::from(Path::new("p1"))];
        let (pieces, left) = cover(&mm, &wanted, &paths);
        let got: Vec<(String, u64, u64, u64)> = pieces
            .iter()
            .map(|p| (p.path.display().to_string(), p.addr, p.len, p.offset))
            .collect();
        let d = super::super::pages::PAGES_DATA_OFFSET;
        assert_eq!(
            got,
            vec![
                ("p0".into(), 0x2000, 0x1000, d + 0x1000),
                ("p0".into(), 0x9000, 0x1000, d + 0x3000),
                ("p1".into(), 0xa000, 0x1000, d),
            ]
        );
        assert_eq!(left.further, vec![(0x4000, 0x5000)]);
        assert_eq!(left.missing, vec![(0x3000, 0x4000), (0xc000, 0xd000)]);
    }
}
