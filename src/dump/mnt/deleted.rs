//! Binds of a file or directory deleted since it was bound (mountinfo shows the mount's
//! root as `PATH//deleted`; `tree.rs` judges them `How::Deleted` when another mount of
//! the tree shows the filesystem): what the deleted object was, read through its mount
//! point, for the restore to make it again there, bind it and remove it
//! (`restore/mnt/deleted.rs`).

use std::os::unix::fs::MetadataExt;

use super::{reach, DumpError};
use crate::image::mnt::{How, Mount};

/// The largest deleted file whose contents are saved.
const MAX_DATA: u64 = 1 << 20;

/// Reads what each `How::Deleted` mount of `pid`'s namespace shows: its type, mode and
/// owner, and with `data` a file's contents (the tree is frozen then).
pub(super) fn read(pid: i32, mounts: &mut [Mount], data: bool) -> Result<(), DumpError> {
    for m in mounts.iter_mut() {
        let How::Deleted { gone, .. } = &mut m.how else {
            continue;
        };
        let path = reach(pid, &m.mountpoint);
        let stat = |source| DumpError::Stat {
            path: path.to_string_lossy().into_owned(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(stat)?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(DumpError::unsupported(format!(
                "mount {} at {} shows a deleted {:o} node, neither a file nor a directory, \
                 which stasis cannot make again",
                m.id,
                m.mountpoint,
                meta.mode() & libc::S_IFMT
            )));
        }
        if meta.is_file() && meta.nlink() > 0 {
            // Deleted at the bound path only: the file lives on under another name, and
            // a file made anew would not be that one (writes through either would part).
            return Err(DumpError::unsupported(format!(
                "mount {} at {} shows a file removed from the path it was bound from that                  still has {} other name(s); stasis would make a new file, not that one",
                m.id,
                m.mountpoint,
                meta.nlink()
            )));
        }
        if meta.is_file() && meta.len() > MAX_DATA {
            return Err(DumpError::unsupported(format!(
                "mount {} at {} shows a deleted file of {} bytes; stasis saves at most {MAX_DATA}",
                m.id,
                m.mountpoint,
                meta.len()
            )));
        }
        gone.dir = meta.is_dir();
        (gone.mode, gone.uid, gone.gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
        if data && meta.is_file() {
            gone.data = std::fs::read(&path).map_err(stat)?;
        }
    }
    Ok(())
}
