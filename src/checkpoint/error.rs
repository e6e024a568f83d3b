//! The one error type of the checkpoint store, naming the store path or checkpoint.

use std::path::PathBuf;

use crate::dump::DumpError;
use crate::image::store::StoreError;
use crate::image::ImageError;

/// Why a checkpoint could not be taken, listed, verified, merged or removed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("{path} is not a checkpoint store (no store.json) and not empty")]
    NotAStore { path: PathBuf },
    #[error("{path}: {what}")]
    Meta { path: PathBuf, what: String },
    #[error("store {path} holds no checkpoint")]
    Empty { path: PathBuf },
    #[error("store {path} has no checkpoint {seq}")]
    NoSuchCheckpoint { path: PathBuf, seq: u32 },
    #[error("no checkpoint of store {path} passes verification")]
    NoneValid { path: PathBuf },
    #[error("checkpoint {seq}: {what}")]
    Chain { seq: u32, what: String },
    #[error("checkpoint {seq}")]
    Dump {
        seq: u32,
        #[source]
        source: DumpError,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}")]
    Usage { what: String },
}

impl CheckpointError {
    /// An I/O failure of `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CheckpointError::Io { op, path, source }
    }
}
