//! A checkpoint's chain laid out as plain images: `VIEW/<N>/image` for the checkpoint and
//! each ancestor, each a decoded, verified copy (compressed or encrypted images) or a
//! link to the store's own directory (plain ones), so that the chain's relative parent
//! paths (`../../<N>/image`) resolve inside the view. Restore and gc read checkpoints
//! through it; it is removed when dropped. It also picks the checkpoint to restore: the
//! latest that passes verification.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{read_meta, seq_name, CheckpointError, Entry, Store, IMAGE};
use crate::image::store::{self, OpenOptions, TempDir};
use crate::image::Image;

/// Longest chain of checkpoints followed (the image chain's own bound is 64).
pub const MAX_CHAIN: usize = 60;

/// A checkpoint's chain of images, ready to load.
#[derive(Debug)]
pub struct View {
    image: PathBuf,
    _temp: TempDir,
}

impl View {
    /// The checkpoint's plain image directory.
    pub fn image(&self) -> &Path {
        &self.image
    }
}

/// Lays out checkpoint `seq` and its ancestors, decoding and verifying the compressed or
/// encrypted ones with `opts` (their key, a required signature).
pub fn build(store: &Store, seq: u32, opts: &OpenOptions) -> Result<View, CheckpointError> {
    let temp = TempDir::new("view")?;
    let (mut at, mut depth) = (Some(seq), 0);
    while let Some(s) = at {
        depth += 1;
        if depth > MAX_CHAIN {
            let what = format!("chain of parents longer than {MAX_CHAIN}");
            return Err(CheckpointError::Chain { seq, what });
        }
        let dir = store.dir_of(s);
        let meta = read_meta(&dir).map_err(|e| CheckpointError::Chain {
            seq,
            what: format!("ancestor {}: {e}", seq_name(s)),
        })?;
        let slot = temp.path().join(seq_name(s));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&slot)
            .map_err(CheckpointError::io("create directory", &slot))?;
        // Absolute: the link is read from inside the view (a store named `../st` would
        // leave it dangling).
        let src = dir.join(IMAGE);
        let src = std::path::absolute(&src).map_err(CheckpointError::io("resolve", &src))?;
        let dest = slot.join(IMAGE);
        if !store::unseal_into(&src, opts, &dest, &|_| true)? {
            std::os::unix::fs::symlink(&src, &dest).map_err(CheckpointError::io("link", &dest))?;
        }
        at = meta.parent;
    }
    Ok(View {
        image: temp.path().join(seq_name(seq)).join(IMAGE),
        _temp: temp,
    })
}

/// [`build`], then every record and pages file of the chain checked (`Image::load`).
pub fn verified(store: &Store, seq: u32, opts: &OpenOptions) -> Result<View, CheckpointError> {
    let view = build(store, seq, opts)?;
    Image::load(view.image())?;
    Ok(view)
}

/// The checkpoint to restore: `wanted`, or else the latest that passes verification
/// (each one that fails is named on stderr with the reason, and the one before tried).
pub fn pick(
    store: &Store,
    wanted: Option<u32>,
    opts: &OpenOptions,
) -> Result<(Entry, View), CheckpointError> {
    let list = store.list()?;
    let root = store.root().to_path_buf();
    if let Some(seq) = wanted {
        let entry = list.into_iter().find(|e| e.seq == seq);
        let entry = entry.ok_or(CheckpointError::NoSuchCheckpoint { path: root, seq })?;
        let view = verified(store, seq, opts)?;
        return Ok((entry, view));
    }
    if list.is_empty() {
        return Err(CheckpointError::Empty { path: root });
    }
    let mut failed = false;
    for entry in list.into_iter().rev() {
        match verified(store, entry.seq, opts) {
            Ok(view) => {
                if failed {
                    eprintln!(
                        "stasis: restoring checkpoint {} instead (the latest that verifies)",
                        seq_name(entry.seq)
                    );
                }
                return Ok((entry, view));
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "stasis: checkpoint {} fails verification: {}",
                    seq_name(entry.seq),
                    crate::error_line(&e)
                );
            }
        }
    }
    Err(CheckpointError::NoneValid { path: root })
}
