//! The checkpoint store (`stasis checkpoint`, `restore -D STORE`, `gc`, `inspect STORE`):
//! a directory of numbered checkpoints of long-running trees. It owns the store's layout,
//! its lock, the `checkpoint.json` of each checkpoint and the derived `index.json`; not
//! the images themselves (`dump`, `image`, `image::store` write and read those).
//!
//! ```text
//! STORE/
//!   store.json            {"format": 1}: marks the directory as a store
//!   lock                  flock(2): exclusive for checkpoint and gc, shared for readers
//!   index.json            every checkpoint's checkpoint.json, rewritten after each change
//!   000001/image/         a full image (any stasis image: compressed, encrypted, signed)
//!   000001/checkpoint.json
//!   000002/image/         incremental: chain.img names ../../000001/image as its parent
//!   000002/checkpoint.json
//!   .tmp-000003/          a checkpoint being written (never read; removed by the next
//!                         writer)
//! ```
//!
//! A checkpoint is written under `.tmp-N`, made durable (the image's `syncfs`, then
//! `checkpoint.json` fsynced) and renamed to `N`, then the store directory is fsynced:
//! `N` exists exactly when it is complete. Removal renames `N` to `.del-N` before deleting
//! it, and a merge (`gc.rs`) builds the new `N` under `.merge-N` and swaps the two with
//! `renameat2(RENAME_EXCHANGE)`: at every instant each name holds a whole checkpoint.

pub mod error;
pub mod gc;
pub mod metrics;
pub mod schedule;
pub mod take;
pub mod view;

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use error::CheckpointError;

/// The image directory inside a checkpoint.
pub const IMAGE: &str = "image";
/// The description of a checkpoint, beside its image.
pub const META: &str = "checkpoint.json";
const INDEX: &str = "index.json";
const MARK: &str = "store.json";
const LOCK: &str = "lock";
/// Prefixes of directories that are not (yet, or any more) checkpoints.
const TEMP_PREFIXES: [&str; 3] = [".tmp-", ".del-", ".merge-"];

/// `checkpoint.json`: what a checkpoint is and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub seq: u32,
    /// The checkpoint whose image this one's image was made against.
    pub parent: Option<u32>,
    /// Root pid of the tree.
    pub pid: i32,
    /// When it was taken (seconds since the epoch).
    pub time: u64,
    /// How long the tree was frozen.
    pub frozen_s: f64,
    /// From the start of the checkpoint to its commit.
    pub duration_s: f64,
    pub pages_stored: u64,
    /// Bytes of the image's files as stored.
    pub bytes_written: u64,
    /// Bytes of the image's files before compression and encryption.
    pub plain_bytes: u64,
    /// `none`, `lz4`, `zstd:LEVEL`.
    pub compression: String,
    pub encrypted: bool,
    pub signed: bool,
    /// Checkpoints merged into this one by `gc` (their pages now stored here).
    #[serde(default)]
    pub merged: Vec<u32>,
}

impl Meta {
    /// Plain bytes per stored byte (1 for a plain image).
    pub fn ratio(&self) -> f64 {
        match self.bytes_written {
            0 => 1.0,
            n => self.plain_bytes as f64 / n as f64,
        }
    }
}

/// One checkpoint of the store.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u32,
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Entry {
    /// Its image directory.
    pub fn image(&self) -> PathBuf {
        self.dir.join(IMAGE)
    }
}

/// An open store, locked for as long as this lives.
pub struct Store {
    root: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Opens (creating it if needed) the store at `root` for writing: exclusively locked
    /// (waits for another writer), and cleared of what a crashed writer left.
    pub fn open_writer(root: &Path) -> Result<Store, CheckpointError> {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(CheckpointError::io("create directory", root))?;
        }
        if !root.join(MARK).exists() {
            refuse_foreign(root)?;
            write_atomic(&root.join(MARK), b"{\"format\": 1}\n")?;
        }
        let store = Store::lock(root, FlockArg::LockExclusive)?;
        store.clear_temps()?;
        Ok(store)
    }

    /// Opens the existing store at `root` for reading (shared lock: no gc meanwhile).
    pub fn open_reader(root: &Path) -> Result<Store, CheckpointError> {
        if !is_store(root) {
            return Err(CheckpointError::NotAStore { path: root.into() });
        }
        Store::lock(root, FlockArg::LockShared)
    }

    fn lock(root: &Path, how: FlockArg) -> Result<Store, CheckpointError> {
        let path = root.join(LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(CheckpointError::io("open", &path))?;
        let lock = Flock::lock(file, how).map_err(|(_, e)| CheckpointError::Lock {
            path: path.clone(),
            source: e,
        })?;
        Ok(Store {
            root: root.into(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The checkpoints, oldest first; a directory without a readable `checkpoint.json`
    /// is skipped (with a warning: it is not one stasis committed).
    pub fn list(&self) -> Result<Vec<Entry>, CheckpointError> {
        let mut out = Vec::new();
        for (seq, dir) in self.numbered()? {
            match read_meta(&dir) {
                Ok(meta) => out.push(Entry { seq, dir, meta }),
                Err(e) => eprintln!("stasis: warning: skipping {}: {e}", dir.display()),
            }
        }
        Ok(out)
    }

    /// The numbered directories, in order.
    fn numbered(&self) -> Result<Vec<(u32, PathBuf)>, CheckpointError> {
        let mut out = Vec::new();
        let read = fs::read_dir(&self.root).map_err(CheckpointError::io("read", &self.root))?;
        for entry in read {
            let entry = entry.map_err(CheckpointError::io("read", &self.root))?;
            let name = entry.file_name();
            let Some(seq) = name.to_str().and_then(parse_seq) else {
                continue;
            };
            out.push((seq, entry.path()));
        }
        out.sort();
        Ok(out)
    }

    /// The number the next checkpoint takes.
    pub fn next_seq(&self) -> Result<u32, CheckpointError> {
        Ok(self.numbered()?.last().map_or(1, |(s, _)| s + 1))
    }

    /// The directory of checkpoint `seq`.
    pub fn dir_of(&self, seq: u32) -> PathBuf {
        self.root.join(seq_name(seq))
    }

    /// Removes what a crashed writer left (`.tmp-N`, `.del-N`, `.merge-N`).
    fn clear_temps(&self) -> Result<(), CheckpointError> {
        let read = fs::read_dir(&self.root).map_err(CheckpointError::io("read", &self.root))?;
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(CheckpointError::io("remove", &path))?;
            }
        }
        Ok(())
    }

    /// Rewrites `index.json` from the checkpoints' own files (best effort: the index is
    /// a convenience, the directories are the truth).
    pub fn write_index(&self) {
        let metas: Vec<Meta> = match self.list() {
            Ok(l) => l.into_iter().map(|e| e.meta).collect(),
            Err(_) => return,
        };
        let text = serde_json::to_string_pretty(&metas).unwrap_or_default() + "\n";
        if let Err(e) = write_atomic(&self.root.join(INDEX), text.as_bytes()) {
            eprintln!("stasis: warning: {e}");
        }
    }

    /// Removes checkpoint `seq`: renamed away first (so it is gone at once), then deleted.
    pub fn remove(&self, seq: u32) -> Result<(), CheckpointError> {
        let (dir, gone) = (
            self.dir_of(seq),
            self.root.join(format!(".del-{}", seq_name(seq))),
        );
        fs::rename(&dir, &gone).map_err(CheckpointError::io("rename", &dir))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&gone).map_err(CheckpointError::io("remove", &gone))
    }
}

/// Whether `path` is a checkpoint store.
pub fn is_store(path: &Path) -> bool {
    path.join(MARK).is_file()
}

/// A store is made only in an empty directory (never over an image or anything else).
fn refuse_foreign(root: &Path) -> Result<(), CheckpointError> {
    let mut read = fs::read_dir(root).map_err(CheckpointError::io("read", root))?;
    match read.next() {
        None => Ok(()),
        Some(_) => Err(CheckpointError::NotAStore { path: root.into() }),
    }
}

/// `000042`.
pub fn seq_name(seq: u32) -> String {
    format!("{seq:06}")
}

/// The number of a checkpoint directory's name (six digits or more).
fn parse_seq(name: &str) -> Option<u32> {
    let digits = name.len() >= 6 && name.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| name.parse().ok()).flatten()
}

/// Reads `checkpoint.json` of the checkpoint in `dir`.
pub fn read_meta(dir: &Path) -> Result<Meta, CheckpointError> {
    let path = dir.join(META);
    let text = fs::read_to_string(&path).map_err(CheckpointError::io("read", &path))?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Meta {
        path,
        what: e.to_string(),
    })
}

/// Writes `checkpoint.json` into `dir` and fsyncs it.
pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(meta).unwrap_or_default() + "\n";
    let path = dir.join(META);
    fs::write(&path, text).map_err(CheckpointError::io("write", &path))?;
    sync_path(&path)
}

/// Writes `path` through a temporary sibling, fsynced, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(CheckpointError::io("write", &tmp))?;
    sync_path(&tmp)?;
    fs::rename(&tmp, path).map_err(CheckpointError::io("rename", &tmp))?;
    path.parent().map_or(Ok(()), sync_dir)
}

/// fsync a file by path.
pub fn sync_path(path: &Path) -> Result<(), CheckpointError> {
    let file = File::open(path).map_err(CheckpointError::io("open", path))?;
    file.sync_all().map_err(CheckpointError::io("fsync", path))
}

/// fsync a directory.
pub fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    sync_path(dir)
}

/// Sizes of the image in `image`: (bytes as stored, bytes plain).
pub fn image_sizes(image: &Path) -> Result<(u64, u64), CheckpointError> {
    let mut stored = 0;
    for entry in fs::read_dir(image).map_err(CheckpointError::io("read", image))? {
        let entry = entry.map_err(CheckpointError::io("read", image))?;
        let meta = entry
            .metadata()
            .map_err(CheckpointError::io("stat", entry.path()))?;
        stored += meta.len();
    }
    let plain = match crate::image::store::manifest(image)? {
        Some(m) => m.files.iter().map(|f| f.plain_len).sum(),
        None => stored,
    };
    Ok((stored, plain))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-12-06 22:10:00 UTC` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, min, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02} UTC")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_594_400), "2026-12-06 22:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(seq_name(7), "000007");
        assert_eq!(parse_seq("000007"), Some(7));
        assert_eq!(parse_seq("1234567"), Some(1_234_567));
        assert_eq!(parse_seq(".tmp-000007"), None);
        assert_eq!(parse_seq("00007"), None);
    }

    #[test]
    fn a_store_lists_committed_checkpoints_and_clears_temps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let store = Store::open_writer(&root).unwrap();
        assert_eq!(store.next_seq().unwrap(), 1);
        for seq in [1, 2] {
            let d = store.dir_of(seq);
            fs::create_dir(&d).unwrap();
            write_meta(
                &d,
                &Meta {
                    seq,
                    ..Meta::default()
                },
            )
            .unwrap();
        }
        fs::create_dir(root.join(".tmp-000003")).unwrap();
        drop(store);
        let store = Store::open_writer(&root).unwrap();
        assert!(!root.join(".tmp-000003").exists());
        let seqs: Vec<u32> = store.list().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(store.next_seq().unwrap(), 3);
        store.remove(1).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn a_non_empty_directory_is_not_made_a_store() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"").unwrap();
        assert!(Store::open_writer(dir.path()).is_err());
        assert!(Store::open_reader(dir.path()).is_err());
    }
}
