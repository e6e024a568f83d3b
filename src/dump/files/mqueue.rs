//! POSIX message queue descriptors: the fd's queue by name (its link text, `/name`, is
//! the path in the mqueue filesystem). The queue itself is saved with the namespace
//! (`dump/mqueue.rs`); the access mode and `O_NONBLOCK` are the entry's. The restore
//! side is `restore/files/mqueue.rs`. A queue of another IPC namespace than the process's
//! (passed over a socket, or kept across `setns`) is refused: it is reopened by name in
//! the process's namespace.

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::{FdKind, MqueueFd};

/// `MQUEUE_MAGIC`, the mqueue filesystem's `f_type`.
const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// Whether `open` is a queue: a regular file named by one path component on the mqueue
/// filesystem.
pub fn is_mqueue(open: &OpenFd) -> Result<bool, DumpError> {
    let one_name = open.has_path() && !open.target[1..].contains('/');
    if !one_name || open.file_type()? != libc::S_IFREG {
        return Ok(false);
    }
    let through = open.through();
    let st = nix::sys::statfs::statfs(through.as_str())
        .map_err(|e| DumpError::unsupported(format!("statfs {through}: {e}")))?;
    Ok(st.filesystem_type().0 as i64 == MQUEUE_MAGIC)
}

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let name = &open.target[1..];
    if name.ends_with(super::ghost::DELETED) {
        return Err(open.error(&format!(
            "is POSIX message queue /{name}, unlinked while open, which stasis cannot restore"
        )));
    }
    if open.meta()?.st_dev != crate::dump::mqueue::fs_dev_of(open.pid)? {
        return Err(open.error(&format!(
            "is POSIX message queue /{name} of another IPC namespace than the process's, which stasis cannot restore"
        )));
    }
    Ok(FdKind::Mqueue(MqueueFd {
        name: name.to_string(),
    }))
}
