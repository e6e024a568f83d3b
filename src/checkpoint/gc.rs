//! `stasis gc --keep N`: removes all but the newest N checkpoints without breaking a kept
//! one's chain. A kept checkpoint whose parent goes is first made whole: its image is
//! rebuilt under `.merge-N` with every page it took from its ancestors copied in (one
//! pages file per process), its chain record without a parent (same id, so its own
//! children still resolve), sealed again as it was (compression, encryption, signature),
//! made durable and swapped with `N` by `renameat2(RENAME_EXCHANGE)`. Only then are the
//! others removed. A crash at any point leaves each name holding a whole checkpoint.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::Path;

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use super::view::{self, View};
use super::{
    image_sizes, seq_name, sync_dir, sync_path, write_meta, CheckpointError, Entry, Store, IMAGE,
};
use crate::image::chain::{self, AncestorFiles, CHAIN};
use crate::image::file::{encode, Kind};
use crate::image::load::{load_mm, pages_name, record_name};
use crate::image::mm::PARENT_STRIPE;
use crate::image::pages::{PagesWriter, PAGES_DATA_OFFSET};
use crate::image::store::{self, Cipher, OpenOptions, StoreOptions};

/// What a gc did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Kept checkpoints made whole, with the ancestors merged into each.
    pub merged: Vec<(u32, Vec<u32>)>,
    pub removed: Vec<u32>,
}

/// Keeps the newest `keep` checkpoints of `store`. `keys` gives the key of encrypted
/// checkpoints and the signing key of signed ones (needed only if one must be merged).
pub fn gc(store: &Store, keep: usize, keys: &StoreOptions) -> Result<Report, CheckpointError> {
    if keep == 0 {
        let what = "--keep 0 would remove every checkpoint: keep at least 1".into();
        return Err(CheckpointError::Usage { what });
    }
    let list = store.list()?;
    let cut = list.len().saturating_sub(keep);
    let (old, kept) = list.split_at(cut);
    let removed: BTreeSet<u32> = old.iter().map(|e| e.seq).collect();
    let mut report = Report::default();
    for entry in kept {
        if entry.meta.parent.is_some_and(|p| removed.contains(&p)) {
            let gone = merge(store, entry, keys)?;
            report.merged.push((entry.seq, gone));
        }
    }
    for seq in removed {
        store.remove(seq)?;
        report.removed.push(seq);
    }
    store.write_index();
    Ok(report)
}

/// Makes `entry` whole (no parent), atomically; returns the ancestors it no longer needs.
fn merge(store: &Store, entry: &Entry, keys: &StoreOptions) -> Result<Vec<u32>, CheckpointError> {
    let seal = reseal_options(entry, keys)?;
    let open = OpenOptions {
        decrypt: keys.encrypt.clone(),
        ..OpenOptions::default()
    };
    let view = view::verified(store, entry.seq, &open)?;
    let work = store.root().join(format!(".merge-{}", seq_name(entry.seq)));
    let image = work.join(IMAGE);
    for d in [&work, &image] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(d)
            .map_err(CheckpointError::io("create directory", d))?;
    }
    flatten(&view, &image).map_err(|e| chained(entry.seq, e))?;
    if let Some(opts) = seal {
        store::seal_dir(&image, &opts, None)?;
    }
    for f in fs::read_dir(&image)
        .map_err(CheckpointError::io("read", &image))?
        .flatten()
    {
        sync_path(&f.path())?;
    }
    sync_dir(&image)?;
    let mut meta = entry.meta.clone();
    let gone = ancestors(store, entry);
    meta.parent = None;
    meta.merged.extend(&gone);
    (meta.bytes_written, meta.plain_bytes) = image_sizes(&image)?;
    write_meta(&work, &meta)?;
    sync_dir(&work)?;
    // Ordering requirements: the new image is durable before the swap, the swap durable
    // before the old image is deleted.
    let dir = store.dir_of(entry.seq);
    renameat2(
        AT_FDCWD,
        &work,
        AT_FDCWD,
        &dir,
        RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| CheckpointError::io("exchange", &dir)(e.into()))?;
    sync_dir(store.root())?;
    fs::remove_dir_all(&work).map_err(CheckpointError::io("remove", &work))?;
    Ok(gone)
}

fn chained(seq: u32, e: crate::image::ImageError) -> CheckpointError {
    CheckpointError::Chain {
        seq,
        what: format!("merge: {}", crate::error_line(&e)),
    }
}

/// The checkpoints up `entry`'s chain.
fn ancestors(store: &Store, entry: &Entry) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = entry.meta.parent;
    while let Some(p) = at {
        out.push(p);
        at = super::read_meta(&store.dir_of(p))
            .ok()
            .and_then(|m| m.parent);
        if out.len() > view::MAX_CHAIN {
            break;
        }
    }
    out
}

/// Writes into `out` the plain image of `view` with every page in its own pages files.
fn flatten(view: &View, out: &Path) -> Result<(), crate::image::ImageError> {
    let src = view.image();
    let mut record = chain::load(src)?
        .ok_or_else(|| crate::image::ImageError::invalid(src.join(CHAIN), "no chain record"))?;
    let mut pages_files = BTreeSet::new();
    for &pid in &record.pids {
        let mm = load_mm(src, pid)?;
        (0..mm.stripes()).for_each(|s| {
            pages_files.insert(pages_name(pid, s));
        });
    }
    for f in store::file_names(src).map_err(crate::image::ImageError::from)? {
        let skip = pages_files.contains(&f) || f == store::MANIFEST || f == store::SIGNATURE;
        if !skip {
            let (from, to) = (src.join(&f), out.join(&f));
            fs::copy(&from, &to).map_err(crate::image::ImageError::io("copy", &from))?;
        }
    }
    for &pid in &record.pids.clone() {
        flatten_pid(src, out, &record, pid)?;
    }
    record.parent = None;
    write(out, CHAIN, &encode(Kind::Chain, &record)?)
}

/// Rewrites `pid`'s pages as one pages file holding every page of its runs, its own and
/// its ancestors', in the runs' order.
fn flatten_pid(
    src: &Path,
    out: &Path,
    record: &chain::ChainImage,
    pid: i32,
) -> Result<(), crate::image::ImageError> {
    let mut mm = load_mm(src, pid)?;
    let mut pieces = chain::resolve(
        src,
        record,
        pid,
        mm.parent_ranges(),
        &mut AncestorFiles::new(),
    )?;
    pieces.sort_by_key(|p| p.addr);
    let mut w = PagesWriter::create(&out.join(pages_name(pid, 0)))?;
    let mut offsets = [PAGES_DATA_OFFSET; 256];
    let mut next = pieces.iter().peekable();
    for run in &mut mm.page_runs {
        let (start, end) = (run.addr, run.addr + run.pages * crate::abi::PAGE_SIZE);
        if run.stripe == PARENT_STRIPE {
            while let Some(p) = next.next_if(|p| p.addr < end) {
                copy(&p.path, p.offset, p.len, &mut w)?;
            }
        } else {
            let s = usize::from(run.stripe);
            copy(
                &src.join(pages_name(pid, run.stripe)),
                offsets[s],
                end - start,
                &mut w,
            )?;
            offsets[s] += end - start;
        }
        run.stripe = 0;
    }
    w.finish()?;
    write(out, &record_name("mm", pid), &encode(Kind::Mm, &mm)?)
}

/// Copies `len` bytes of `path` at `offset` into the pages file.
fn copy(
    path: &Path,
    offset: u64,
    len: u64,
    w: &mut PagesWriter,
) -> Result<(), crate::image::ImageError> {
    const STEP: u64 = 4 << 20;
    let file = File::open(path).map_err(crate::image::ImageError::io("open", path))?;
    let mut buf = vec![0u8; STEP.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = STEP.min(len - done) as usize;
        file.read_exact_at(&mut buf[..n], offset + done)
            .map_err(crate::image::ImageError::io("read", path))?;
        w.write(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), crate::image::ImageError> {
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(crate::image::ImageError::io("write", &path))
}

/// How to seal the merged image as `entry`'s was: the same compression, encrypted with
/// the key (which must be given) if it was, signed (the signing key must be given) if it
/// was; `None` for a plain image.
fn reseal_options(
    entry: &Entry,
    keys: &StoreOptions,
) -> Result<Option<StoreOptions>, CheckpointError> {
    let old = entry.image();
    let Some(manifest) = store::manifest(&old)? else {
        return Ok(None);
    };
    let encrypted = matches!(manifest.cipher, Cipher::XChaCha20Poly1305 { .. });
    let signed = old.join(store::SIGNATURE).exists();
    let need = |what: &str, flag: &str| CheckpointError::Usage {
        what: format!(
            "checkpoint {} must be merged (its parent goes) and is {what}: give {flag}",
            seq_name(entry.seq)
        ),
    };
    if encrypted && keys.encrypt.is_none() {
        return Err(need("encrypted", "--encrypt-key FILE"));
    }
    if signed && keys.sign.is_none() {
        return Err(need("signed", "--sign FILE"));
    }
    Ok(Some(StoreOptions {
        compression: manifest.compression,
        encrypt: keys.encrypt.clone().filter(|_| encrypted),
        sign: keys.sign.clone().filter(|_| signed),
        recipients: Vec::new(),
        no_sync: false,
        direct_io: false,
    }))
}
