//! `lazy.img` (format 12): what a `dump --lazy-pages` left out of the pages files. Each
//! listed process's runs are pages the source still holds in its frozen tree and serves
//! on demand after the restore (`lazy/`); the session id ties the image to that source.

use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::file::{read, Kind};

/// File name of the record.
pub const LAZY: &str = "lazy.img";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyImage {
    /// Random, never 0: the target names it in its hello, so a source serves only the
    /// image it wrote.
    pub session: u64,
    /// Processes with pages served later, in tree order.
    pub processes: Vec<LazyProcess>,
}

/// The served pages of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyProcess {
    pub pid: i32,
    /// `[start, end)` page-aligned, in address order, not overlapping, each inside one
    /// private anonymous mapping of the process (`mm` record), none holding a page the
    /// pages files hold.
    pub runs: Vec<(u64, u64)>,
}

impl LazyImage {
    /// Bytes served after the restore.
    pub fn bytes(&self) -> u64 {
        let runs = self.processes.iter().flat_map(|p| &p.runs);
        runs.map(|(s, e)| e - s).sum()
    }
}

/// The record of `dir`, `None` if the image has none (every page is in its files).
pub fn load(dir: &Path) -> Result<Option<LazyImage>, ImageError> {
    match read(Kind::Lazy, &dir.join(LAZY)) {
        Err(ImageError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        r => r.map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::{decode, encode};

    #[test]
    fn round_trips() {
        let l = LazyImage {
            session: 42,
            processes: vec![LazyProcess {
                pid: 7,
                runs: vec![(0x1000, 0x3000)],
            }],
        };
        let b = encode(Kind::Lazy, &l).unwrap();
        let back: LazyImage = decode(Kind::Lazy, &b, Path::new("lazy.img")).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.bytes(), 0x2000);
    }
}
