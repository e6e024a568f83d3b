//! Where an image goes when it is not only written into a local directory: a sink that
//! receives every file (`stasis dump --page-server`, `stasis migrate`). The page data is
//! handed to the sink as it is read out of the tree, never written locally; the small
//! record files are written into the local directory as usual and the sink sends them at
//! the commit. This module owns that interface, not a transport (`crate::migrate`).

use std::path::Path;
use std::sync::Arc;

use super::error::ImageError;

/// A receiver of image files, shared by the threads that write pages files.
pub trait ImageSink: Send + Sync {
    /// Starts the file `name`; returns the handle its writes name.
    fn open(&self, name: &str) -> Result<u32, ImageError>;
    /// Writes the pieces, one after the other, at `offset` of file `file`; `crc` is the
    /// crc32 of the pieces when the caller has it.
    fn write_at(
        &self,
        file: u32,
        offset: u64,
        pieces: &[&[u8]],
        crc: Option<&crc32fast::Hasher>,
    ) -> Result<(), ImageError>;
    /// Sends every file of `dir` not sent through [`ImageSink::open`], ends the image and
    /// returns once the receiver has it complete, verified and durable.
    fn commit(&self, dir: &Path) -> Result<(), ImageError>;
}

/// A shared [`ImageSink`] that options can carry.
#[derive(Clone)]
pub struct RemoteSink(pub Arc<dyn ImageSink>);

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteSink")
    }
}
