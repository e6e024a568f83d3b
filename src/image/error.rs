//! The one error type of the `image` module: every failure to write, read or trust an image
//! file, naming the file it concerns. It does not own any I/O or checking itself.

use std::path::PathBuf;

use super::file::{kind_name, MAX_RECORD_LEN};

/// Why an image could not be written, read, or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: bad magic, not a stasis image file")]
    BadMagic { path: PathBuf },
    #[error("{path}: holds a {} record, expected a {} record", kind_name(*.found), kind_name(*.expected))]
    WrongKind {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("{path}: format version {found} is newer than the supported version {supported}; restore with a newer stasis")]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: format version {found} is older than the oldest supported version {oldest}")]
    OlderVersion {
        path: PathBuf,
        found: u32,
        oldest: u32,
    },
    #[error("{path}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {extra} unexpected bytes after the data")]
    TrailingBytes { path: PathBuf, extra: u64 },
    #[error("{path}: record length {len} exceeds the cap of {MAX_RECORD_LEN} bytes")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("a {} record of {len} bytes exceeds the cap of {MAX_RECORD_LEN} bytes", kind_name(*.kind))]
    TooLargeToWrite { kind: u32, len: u64 },
    #[error("{path}: checksum mismatch: header says {expected:#010x}, data gives {found:#010x}")]
    Checksum {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("{path}: cannot decode the record")]
    Decode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    #[error("cannot encode a record")]
    Encode {
        #[source]
        source: postcard::Error,
    },
    #[error("{path}: holds {found} pages, the mm record expects {expected}")]
    PageCount {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: write of {len} bytes is not a whole number of pages")]
    UnalignedWrite { path: PathBuf, len: u64 },
    #[error("{path}: image directory exists and is not empty; choose an empty or new directory")]
    DirNotEmpty { path: PathBuf },
    #[error("{path}: not a stasis image directory (no inventory.img)")]
    NotAnImage { path: PathBuf },
    #[error("{name:?} is not a plain file name inside an image directory")]
    BadName { name: String },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error(transparent)]
    Store(Box<super::store::StoreError>),
    /// The image's receiver failed (`image::sink`); the error names the peer.
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

impl From<super::store::StoreError> for ImageError {
    fn from(e: super::store::StoreError) -> Self {
        match e {
            super::store::StoreError::Image(inner) => inner,
            other => ImageError::Store(Box::new(other)),
        }
    }
}

impl ImageError {
    /// An I/O failure of `op` on `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }

    /// An impossible value in `path`.
    pub(crate) fn invalid(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        ImageError::Invalid {
            path: path.into(),
            what: what.into(),
        }
    }
}
