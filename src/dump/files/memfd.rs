//! memfd: name, size, seals and contents (read through `/proc/PID/fd/N`, a new open file
//! description, so the target's offset is untouched). The restore side is
//! `restore/files/memfd.rs`. Contents are stored in the files record, so a memfd above
//! [`MEMFD_LIMIT`] is refused. A second open file description of one memfd (in this
//! process or another) becomes a `Reopen` of the first (`split.rs`).

use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg};

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::{FdKind, MemfdFd};

/// Largest memfd saved (its contents live in the files record, capped at 256 MiB).
pub const MEMFD_LIMIT: u64 = 64 << 20;

pub fn dump(open: &OpenFd) -> Result<FdKind, DumpError> {
    let size = open.meta()?.st_size as u64;
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

/// The permission bits of the memfd `open` (an fd of `kind`) when they are not
/// `memfd_create`'s 0777 (`fchmod` since).
pub fn mode(open: &OpenFd, kind: &FdKind) -> Result<Option<u32>, DumpError> {
    if !matches!(kind, FdKind::Memfd(_)) {
        return Ok(None);
    }
    let mode = open.meta()?.st_mode & 0o7777;
    Ok((mode != 0o777).then_some(mode))
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
