//! memfd: name, size, seals and contents (read through `/proc/PID/fd/N`, a new open file
//! description, so the target's offset is untouched). The restore side is
//! `restore/files/memfd.rs`. Contents are stored in the files record, so a memfd above
//! [`MEMFD_LIMIT`] is refused, as is a second open file description of one memfd.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{fcntl, FcntlArg};

use super::{OpenFd, Walk};
use crate::dump::DumpError;
use crate::image::files::{FdKind, MemfdFd};

/// Largest memfd saved (its contents live in the files record, capped at 256 MiB).
pub const MEMFD_LIMIT: u64 = 64 << 20;

pub fn dump(open: &OpenFd, walk: &mut Walk) -> Result<FdKind, DumpError> {
    if let Some(first) = walk.inodes.insert(open.meta.ino(), open.fd) {
        return Err(open.error(&format!(
            "is a second open file description of the memfd of fd {first} ({}), which stasis cannot checkpoint yet",
            open.target
        )));
    }
    let size = open.meta.size();
    if size > MEMFD_LIMIT {
        return Err(open.error(&format!(
            "is {} of {size} bytes, above the {MEMFD_LIMIT}-byte limit for memfd contents",
            open.target
        )));
    }
    let name = open.target.trim_start_matches("/memfd:");
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    Ok(FdKind::Memfd(MemfdFd {
        name: name.to_string(),
        size,
        pos: open.info.pos,
        seals: seals(open)?,
        contents: super::path::read_all(open, size)?,
    }))
}

fn seals(open: &OpenFd) -> Result<u32, DumpError> {
    let file = std::fs::File::open(open.through()).map_err(|source| DumpError::Stat {
        path: open.through(),
        source,
    })?;
    fcntl(file.as_fd(), FcntlArg::F_GET_SEALS)
        .map(|s| s as u32)
        .map_err(|e| open.error(&format!("({}): F_GET_SEALS: {}", open.target, e.desc())))
}
