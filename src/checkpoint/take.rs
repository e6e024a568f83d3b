//! One checkpoint: the tree dumped (left running, its written pages tracked) into
//! `.tmp-N/image`, against the tree's previous checkpoint when its tracking still runs,
//! then `checkpoint.json` written and the whole renamed to `N` (see the module note of
//! `checkpoint` for the order that makes it atomic).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Instant;

use super::{
    image_sizes, now, seq_name, sync_dir, write_meta, CheckpointError, Entry, Meta, Store, IMAGE,
};
use crate::dump::{DumpOptions, DumpSummary};
use crate::image::store::Compression;

/// A new full checkpoint is taken instead of an incremental one after this many links.
pub const MAX_INCREMENTAL: usize = 30;

/// What a checkpoint produced.
#[derive(Clone, Debug)]
pub struct Taken {
    pub meta: Meta,
    pub summary: DumpSummary,
}

/// Takes checkpoint `next_seq()` of the tree `base.pid` into `store`. The tree runs on
/// with its written pages tracked, unless `kill` (then it is killed after the dump, as
/// `stasis dump` does). A failed dump leaves the tree running and the store as it was.
pub fn take(store: &Store, base: &DumpOptions, kill: bool) -> Result<Taken, CheckpointError> {
    let started = Instant::now();
    let seq = store.next_seq()?;
    let tmp = store.root().join(format!(".tmp-{}", seq_name(seq)));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(CheckpointError::io("create directory", &tmp))?;
    // Without dirty-page tracking in this kernel every checkpoint is a full one.
    let tracking = crate::check::tracking_method().is_some();
    let parent = match tracking {
        true => parent_for(store, base.pid)?,
        false => None,
    };
    let mut opts = base.clone();
    opts.dir = tmp.join(IMAGE);
    opts.leave_running = !kill;
    opts.track_mem = !kill && tracking;
    opts.prev_images_dir = parent.map(|p| PathBuf::from(format!("../../{}/{IMAGE}", seq_name(p))));
    let summary = match crate::dump::dump(&opts) {
        Ok(s) => s,
        Err(source) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(CheckpointError::Dump { seq, source });
        }
    };
    let (bytes_written, plain_bytes) = image_sizes(&opts.dir)?;
    let mut meta = Meta {
        seq,
        parent,
        pid: base.pid,
        time: now(),
        frozen_s: summary.frozen.as_secs_f64(),
        duration_s: 0.0,
        pages_stored: summary.pages_stored,
        bytes_written,
        plain_bytes,
        compression: compression_name(base.store.compression),
        encrypted: base.store.encrypt.is_some(),
        signed: base.store.sign.is_some(),
        merged: Vec::new(),
    };
    meta.duration_s = started.elapsed().as_secs_f64();
    commit(store, &tmp, &meta)?;
    Ok(Taken { meta, summary })
}

/// Publishes the checkpoint written in `tmp` under its number.
///
/// Ordering requirements: the image was made durable by its own commit; the meta is
/// fsynced, then the directory, before the rename; the rename before the store's fsync.
fn commit(store: &Store, tmp: &std::path::Path, meta: &Meta) -> Result<(), CheckpointError> {
    write_meta(tmp, meta)?;
    sync_dir(tmp)?;
    let dir = store.dir_of(meta.seq);
    fs::rename(tmp, &dir).map_err(CheckpointError::io("rename", tmp))?;
    sync_dir(store.root())?;
    store.write_index();
    Ok(())
}

/// The checkpoint a new one of the tree rooted at `pid` can be incremental against: its
/// latest, if the tracking of its written pages still runs and the chain is not too long.
fn parent_for(store: &Store, pid: i32) -> Result<Option<u32>, CheckpointError> {
    let list = store.list()?;
    let Some(last) = list.iter().rev().find(|e| e.meta.pid == pid) else {
        return Ok(None);
    };
    let tracked = crate::tracker::Tracker::find(&crate::tracker::name(pid))
        .ok()
        .flatten()
        .is_some();
    if !tracked || chain_len(&list, last) >= MAX_INCREMENTAL {
        return Ok(None);
    }
    Ok(Some(last.seq))
}

/// How many checkpoints `entry`'s chain holds (itself included).
fn chain_len(list: &[Entry], entry: &Entry) -> usize {
    let (mut n, mut at) = (1, entry.meta.parent);
    while let Some(p) = at {
        n += 1;
        at = list.iter().find(|e| e.seq == p).and_then(|e| e.meta.parent);
        if n > super::view::MAX_CHAIN {
            break;
        }
    }
    n
}

/// `none`, `lz4`, `zstd:3`.
pub fn compression_name(c: Compression) -> String {
    match c {
        Compression::None => "none".into(),
        Compression::Lz4 => "lz4".into(),
        Compression::Zstd { level } => format!("zstd:{level}"),
    }
}
