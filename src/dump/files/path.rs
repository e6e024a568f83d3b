//! Regular files and directories, saved by path and identity (device, inode, size,
//! mtime) and reopened by path on restore (`restore/files/path.rs`). A path that no longer
//! names the open file is refused.

use std::os::unix::fs::MetadataExt;

use super::OpenFd;
use crate::dump::mm::file_id;
use crate::dump::DumpError;
use crate::image::files::{FdKind, PathFd};

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let file = file_id(&open.through(), &open.target)?;
    match std::fs::metadata(&open.target) {
        Ok(m) if m.dev() == file.dev && m.ino() == file.ino => Ok(FdKind::Path(PathFd {
            file,
            pos: open.info.pos,
        })),
        _ => Err(open.error(&format!(
            "is open on {}, a path that no longer names the open file (moved, replaced or in another mount namespace)",
            open.target
        ))),
    }
}
