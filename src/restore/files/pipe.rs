//! Pipes and FIFOs, with their capacity, buffered bytes and status flags. The dump side
//! is `dump/files/pipe.rs`.
//!
//! A pipe is created (`pipe2`) by the fd that recorded it; the other end goes straight to
//! its holder's number (`peer`), whose own entry then only sets its flags. A FIFO is
//! reopened by path without blocking: a keeper opened `O_RDWR | O_NONBLOCK` is a reader
//! and a writer, so the real open never waits for a partner; the first fd of a FIFO
//! refills its buffer through the keeper, which is closed once the fd is in place.
//! Buffered bytes are written from stasis into a duplicate of the child's fd
//! (`pidfd_getfd`); they fit, as the capacity is set first. Pipes holding at most
//! `batched::PIPE_DATA_MAX` bytes are rebuilt the same way by `batched.rs`, the bytes
//! written by a `write` in the child's batch.

use std::io::Write;

use super::Install;
use crate::image::files::{FifoFd, PipeEnd, PipeFd};
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

pub fn restore(at: &Install, p: &PipeFd) -> Result<(), RestoreError> {
    let addr = at.child.put(0, &[0u8; 8])?;
    at.call("pipe2", libc::SYS_pipe2, &[addr, 0])?;
    let mut pair = [0u8; 8];
    at.child.mem.read(addr, &mut pair)?;
    let end = |i: usize| i32::from_ne_bytes([pair[i], pair[i + 1], pair[i + 2], pair[i + 3]]);
    let (r, w) = (end(0) as u64, end(4) as u64);
    let (ours, other) = match p.end {
        PipeEnd::Read => (r, w),
        PipeEnd::Write => (w, r),
    };
    fill(at, ours, w, p.size, &p.data)?;
    at.set_status_flags(ours)?;
    let other = at.aside(other)?;
    at.place(ours)?;
    match p.peer {
        Some(peer) if peer as u64 != other => {
            at.call("dup3", libc::SYS_dup3, &[other, peer as u64, 0])?;
            at.call("close", libc::SYS_close, &[other])?;
        }
        Some(_) => {}
        None => {
            at.call("close", libc::SYS_close, &[other])?;
        }
    }
    Ok(())
}

/// The other end of a pipe, already at its number: its own flags and `FD_CLOEXEC`.
pub fn restore_peer(at: &Install) -> Result<(), RestoreError> {
    at.set_status_flags(at.fd())?;
    at.set_cloexec()
}

pub fn restore_fifo(at: &Install, f: &FifoFd) -> Result<(), RestoreError> {
    restore_fifo_at(at, &f.file.path, f.size, &f.data)
}

/// The FIFO at `path` opened without blocking; `size` and `data` (if not 0 and empty)
/// refill it.
pub fn restore_fifo_at(
    at: &Install,
    path: &str,
    size: u32,
    data: &[u8],
) -> Result<(), RestoreError> {
    let keeper_flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let keeper = open_in(at.child, path, keeper_flags)?;
    fill(at, keeper, keeper, size, data)?;
    let got = open_in(at.child, path, at.reopen_flags() | libc::O_NONBLOCK)?;
    at.set_status_flags(got)?;
    let keeper = at.aside(keeper)?;
    at.place(got)?;
    at.call("close", libc::SYS_close, &[keeper])?;
    Ok(())
}

/// Sets the capacity on `fd` and writes `data` through the write-capable fd `writer`.
fn fill(at: &Install, fd: u64, writer: u64, size: u32, data: &[u8]) -> Result<(), RestoreError> {
    if size != 0 {
        let args = [fd, libc::F_SETPIPE_SZ as u64, u64::from(size)];
        at.call("fcntl(F_SETPIPE_SZ)", libc::SYS_fcntl, &args)?;
    }
    if data.is_empty() {
        return Ok(());
    }
    let stolen = at.child.steal(writer)?;
    std::fs::File::from(stolen)
        .write_all(data)
        .map_err(|source| RestoreError::Write {
            path: format!("the pipe of fd {} of pid {}", at.entry.fd, at.child.pid()),
            source,
        })
}
