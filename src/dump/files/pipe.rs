//! Pipes and FIFOs. The restore side is `restore/files/pipe.rs`.
//!
//! A pipe has two ends, each its own open file description. The first fd of the table
//! holding either end records the pipe ([`FdKind::Pipe`]: its end, capacity and buffered
//! bytes) and the first fd holding the other end becomes its [`FdKind::PipePeer`]; further
//! fds of either description are `Dup`s, and other descriptions (opens of
//! `/proc/PID/fd/N`) are [`FdKind::Reopen`]s of the creating fd. A FIFO is reopened by path; its first fd carries
//! the FIFO's capacity and bytes.
//!
//! The buffered bytes are copied, never consumed: the pipe's read side is duplicated into
//! stasis (`pidfd_getfd` of a read end, or a fresh read-only open of `/proc/PID/fd/N` when
//! the process holds only the write end) and `tee(2)`d into a pipe of stasis's own.
//! `O_DIRECT` (packet) pipes keep their mode, not their packet boundaries.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::sock::SockCtx;
use super::{OpenFd, Walk};
use crate::dump::mm::file_id;
use crate::dump::DumpError;
use crate::image::files::{FdEntry, FdKind, FifoBytes, FifoFd, PipeEnd, PipeFd};
use crate::sys::fd::{fionread, tee};

/// Mends the pipe pairs of a table some of whose fds `Shared::link_files` turned into
/// `Inherited` ones (`creators`: the pipe entries so turned, by fd): the other end of such
/// a creator, held in a description of this process's own, records the pipe itself (its
/// own end; `split.rs` then has the earlier process build it and hand it over), and a
/// creator whose peer is now inherited has no peer in this table. A process that
/// inherited one end of a pipe and made the other's description (a parent's read end, a
/// write end its parent closed) had kept a peer of an fd no longer creating anything.
pub fn unpair_inherited(fds: &mut [FdEntry], creators: &std::collections::HashMap<i32, PipeFd>) {
    let inherited: Vec<i32> = (fds.iter())
        .filter(|e| matches!(e.kind, FdKind::Inherited { .. }))
        .map(|e| e.fd)
        .collect();
    for e in fds.iter_mut() {
        match &mut e.kind {
            FdKind::PipePeer { of } => {
                if let Some(p) = creators.get(of) {
                    let end = match p.end {
                        PipeEnd::Read => PipeEnd::Write,
                        PipeEnd::Write => PipeEnd::Read,
                    };
                    e.kind = FdKind::Pipe(PipeFd {
                        end,
                        peer: None,
                        ..p.clone()
                    });
                }
            }
            FdKind::Pipe(p) if p.peer.is_some_and(|x| inherited.contains(&x)) => p.peer = None,
            _ => {}
        }
    }
}

/// The inode of a pipe from its link text (`pipe:[123]`).
pub fn pipe_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("pipe:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Pipe `ino`, held through `open`.
pub fn dump(
    open: &OpenFd,
    ino: u64,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<FdKind, DumpError> {
    let end = end_of(open)?;
    match walk.pipes.get_mut(&ino) {
        Some((of, first_end, peer @ None)) if *first_end != end => {
            *peer = Some(open.fd);
            Ok(FdKind::PipePeer { of: *of })
        }
        // Another open of the pipe (through `/proc/PID/fd/N`): opened the same way at
        // restore, which never waits for a partner on a pipe (only on a FIFO).
        Some((of, _, _)) => Ok(FdKind::Reopen {
            pid: open.pid,
            fd: *of,
            pos: 0,
        }),
        None => {
            walk.pipes.insert(ino, (open.fd, end, None));
            let (size, data) = contents(open, end, ctx)?;
            Ok(FdKind::Pipe(PipeFd {
                ino,
                end,
                peer: None,
                size,
                data,
            }))
        }
    }
}

/// A FIFO by path; the first fd of one FIFO carries its capacity and bytes.
pub fn dump_fifo(
    open: &OpenFd,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<FdKind, DumpError> {
    super::path::still_named(open)?;
    let file = file_id(&open.through(), &open.target)?;
    let FifoBytes { size, data } = fifo_bytes(open, walk, ctx)?.unwrap_or_default();
    Ok(FdKind::Fifo(FifoFd { file, size, data }))
}

/// The capacity and buffered bytes of the FIFO behind `open` if it is the table's first
/// fd on that FIFO, else `None` (that first fd carries them).
pub fn fifo_bytes(
    open: &OpenFd,
    walk: &mut Walk,
    ctx: &mut SockCtx<'_>,
) -> Result<Option<FifoBytes>, DumpError> {
    if walk.inodes.insert(open.meta()?.st_ino, open.fd).is_some() {
        return Ok(None);
    }
    let end = match open.info.flags & libc::O_ACCMODE {
        libc::O_WRONLY => PipeEnd::Write,
        _ => PipeEnd::Read,
    };
    let (size, data) = contents(open, end, ctx)?;
    Ok(Some(FifoBytes { size, data }))
}

/// Fills in each creating fd's `peer` once the whole table is known.
pub fn link_peers(fds: &mut [FdEntry], walk: &Walk) {
    for (creator, _, peer) in walk.pipes.values() {
        if let Some(FdKind::Pipe(p)) = fds
            .iter_mut()
            .find(|e| e.fd == *creator)
            .map(|e| &mut e.kind)
        {
            p.peer = *peer;
        }
    }
}

fn end_of(open: &OpenFd) -> Result<PipeEnd, DumpError> {
    match open.info.flags & libc::O_ACCMODE {
        libc::O_RDONLY => Ok(PipeEnd::Read),
        libc::O_WRONLY => Ok(PipeEnd::Write),
        _ => Err(open.error(&format!(
            "is a pipe opened for reading and writing ({}), which stasis cannot checkpoint",
            open.target
        ))),
    }
}

/// Capacity and buffered bytes of the pipe behind `open`.
fn contents(
    open: &OpenFd,
    end: PipeEnd,
    ctx: &mut SockCtx<'_>,
) -> Result<(u32, Vec<u8>), DumpError> {
    let fail = |what: &str, e: nix::errno::Errno| {
        open.error(&format!("({}): {what}: {}", open.target, e.desc()))
    };
    let reader = read_side(open, end, ctx)?;
    let size =
        fcntl(reader.as_fd(), FcntlArg::F_GETPIPE_SZ).map_err(|e| fail("F_GETPIPE_SZ", e))?;
    let queued = fionread(reader.as_fd()).map_err(|e| fail("FIONREAD", e))?;
    if queued == 0 {
        return Ok((size as u32, Vec::new()));
    }
    let (ours_r, ours_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| fail("pipe2", e))?;
    fcntl(ours_w.as_fd(), FcntlArg::F_SETPIPE_SZ(size)).map_err(|e| fail("F_SETPIPE_SZ", e))?;
    let copied = tee(reader.as_fd(), ours_w.as_fd(), queued).map_err(|e| fail("tee", e))?;
    if copied != queued {
        return Err(open.error(&format!(
            "({}): tee copied {copied} of {queued} buffered bytes",
            open.target
        )));
    }
    drop(ours_w);
    let mut data = Vec::with_capacity(queued);
    std::fs::File::from(ours_r)
        .read_to_end(&mut data)
        .map_err(|e| open.error(&format!("({}): read the copy: {e}", open.target)))?;
    Ok((size as u32, data))
}

/// A read-side fd of the pipe: the target's own read end (same description, so `tee`
/// sees exactly its bytes), or a new reader opened through `/proc/PID/fd/N`.
fn read_side(open: &OpenFd, end: PipeEnd, ctx: &mut SockCtx<'_>) -> Result<OwnedFd, DumpError> {
    if end == PipeEnd::Read {
        return ctx.steal(open.fd);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(open.through())
        .map(OwnedFd::from)
        .map_err(|e| open.error(&format!("({}): open its read side: {e}", open.target)))
}
