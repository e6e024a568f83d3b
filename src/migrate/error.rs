//! The one error type of `migrate`: every failure of the page stream, of the page server
//! and of a migration, naming the peer and, for a broken stream, the byte offset.

use std::path::PathBuf;

/// Why an image could not be sent, received, or a migration completed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to the page server at {peer}")]
    Connect {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending to {peer} failed at byte {offset} of the stream")]
    Send {
        peer: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("receiving from {peer} failed at byte {offset} of the stream")]
    Receive {
        peer: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("stream from {peer} is corrupt at byte {offset}: {what}")]
    Corrupt {
        peer: String,
        offset: u64,
        what: String,
    },
    #[error("--tls: {path}: {what}")]
    TlsSetup { path: PathBuf, what: String },
    #[error("{peer}: {what}")]
    Handshake { peer: String, what: String },
    #[error("the receiver at {peer} failed: {what}")]
    Refused { peer: String, what: String },
    #[error("{path}: {what}")]
    Target { path: PathBuf, what: String },
    #[error(
        "--lazy cannot be combined with --tls: the post-copy page stream is not encrypted \
         (migrate with pre-copy rounds, or without --tls on a trusted link)"
    )]
    LazyWithTls,
    #[error("--lazy runs no pre-copy rounds: --rounds {0} cannot be combined with it")]
    LazyWithRounds(u32),
    #[error(transparent)]
    Key(#[from] crate::image::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Dump(#[from] crate::dump::DumpError),
    #[error("cannot run {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<MigrateError> for crate::image::ImageError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Image(inner) => inner,
            other => crate::image::ImageError::Sink(Box::new(other)),
        }
    }
}
