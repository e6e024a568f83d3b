//! The one error type of the image store: every failure to seal, open, stream or trust a
//! stored image, naming the file or stream it concerns.

use std::path::PathBuf;

use crate::image::ImageError;

/// Why a stored image could not be written, opened or trusted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("key file {path}: {what}")]
    KeyFile { path: PathBuf, what: String },
    #[error("{dir}: image is not signed (no store.sig), and --require-signature was given")]
    NotSigned { dir: PathBuf },
    #[error("{path}: signed by another key than the one --require-signature names")]
    OtherSigner { path: PathBuf },
    #[error("{path}: the signature does not verify: the image was altered since it was signed")]
    BadSignature { path: PathBuf },
    #[error("{dir}: image is encrypted; restore it with --decrypt-key FILE")]
    Encrypted { dir: PathBuf },
    #[error("--encrypt-to {text:?}: not an age X25519 recipient (age1...)")]
    Recipient { text: String },
    #[error("wrapping the image key for its --encrypt-to recipients: {what}")]
    Wrap { what: String },
    #[error("{dir}: the key of --decrypt-key is not the key this image was encrypted with")]
    WrongKey { dir: PathBuf },
    #[error("{path}: manifest authentication failed: altered, or made with another key")]
    ManifestMac { path: PathBuf },
    #[error("{path}: chunk {chunk}: {what}")]
    Chunk {
        path: PathBuf,
        chunk: u64,
        what: &'static str,
    },
    #[error("{path}: {what}")]
    Sealed { path: PathBuf, what: String },
    #[error("{path}: contents do not match the manifest ({what}): the image was altered")]
    Mismatch { path: PathBuf, what: &'static str },
    #[error("{path}: file is not listed in the image's manifest (store.img)")]
    Unlisted { path: PathBuf },
    #[error("checkpoint stream: {what}")]
    Stream { what: String },
    #[error("{what}: {source}")]
    Codec {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// An I/O failure of `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }

    /// A malformed sealed file.
    pub(crate) fn sealed(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        StoreError::Sealed {
            path: path.into(),
            what: what.into(),
        }
    }

    /// A malformed or cut checkpoint stream.
    pub(crate) fn stream(what: impl Into<String>) -> Self {
        StoreError::Stream { what: what.into() }
    }
}
