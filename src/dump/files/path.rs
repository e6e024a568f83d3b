//! Regular files and directories, saved by path and identity (device, inode, size,
//! mtime) and reopened by path on restore (`restore/files/path.rs`); `O_PATH` fds of any
//! kind of file; and regular files deleted while open ("ghost" files), whose contents are
//! saved (up to `--ghost-limit`) to recreate them. A path that no longer names the open file
//! is refused.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::OpenFd;
use crate::dump::mm::file_id;
use crate::dump::DumpError;
use crate::image::files::{FdKind, GhostFd, OPathFd, PathFd};

const DELETED: &str = " (deleted)";

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let file = file_id(&open.through(), &open.target)?;
    still_named(open)?;
    Ok(FdKind::Path(PathFd {
        file,
        pos: open.info.pos,
    }))
}

/// An `O_PATH` fd: only the path matters.
pub fn dump_opath(open: &OpenFd) -> Result<FdKind, DumpError> {
    if open.target.ends_with(DELETED) {
        return Err(open.refuse("an O_PATH fd of a deleted file"));
    }
    still_named(open)?;
    Ok(FdKind::OPath(OPathFd {
        path: open.target.clone(),
    }))
}

/// The link text must still lead to the open file.
pub fn still_named(open: &OpenFd) -> Result<(), DumpError> {
    match std::fs::metadata(&open.target) {
        Ok(m) if m.dev() == open.meta.dev() && m.ino() == open.meta.ino() => Ok(()),
        _ => Err(open.error(&format!(
            "is open on {}, a path that no longer names the open file (moved, replaced or in another mount namespace)",
            open.target
        ))),
    }
}

/// A deleted regular file: its contents, read through `/proc/PID/fd/N` (a new open file
/// description: the target's offset is untouched).
pub fn dump_ghost(open: &OpenFd, limit: u64) -> Result<FdKind, DumpError> {
    let path = open.target.strip_suffix(DELETED).unwrap_or(&open.target);
    let size = open.meta.size();
    if open.meta.nlink() != 0 {
        return Err(open.error(&format!(
            "is open on {path}, which was moved or replaced but still has links; stasis cannot find it by path"
        )));
    }
    if size > limit {
        return Err(open.error(&format!(
            "is deleted file {path} of {size} bytes, above the --ghost-limit of {limit} bytes; raise --ghost-limit to save it"
        )));
    }
    Ok(FdKind::Ghost(GhostFd {
        path: path.to_string(),
        mode: open.meta.permissions().mode() & 0o7777,
        uid: open.meta.uid(),
        gid: open.meta.gid(),
        pos: open.info.pos,
        contents: read_all(open, size)?,
    }))
}

/// Reads the whole file behind the fd through `/proc/PID/fd/N`.
pub fn read_all(open: &OpenFd, size: u64) -> Result<Vec<u8>, DumpError> {
    let through = open.through();
    let io = |source| DumpError::Stat {
        path: through.clone(),
        source,
    };
    let mut contents = Vec::with_capacity(size as usize);
    std::fs::File::open(&through)
        .map_err(io)?
        .read_to_end(&mut contents)
        .map_err(io)?;
    Ok(contents)
}
