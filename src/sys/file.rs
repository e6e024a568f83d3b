//! # Safety
//! `sync_file_range(2)` on a borrowed, open file descriptor: no memory is passed.
//!
//! File-level calls std does not offer.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::errno::Errno;

/// `sync_file_range(fd, offset, len, SYNC_FILE_RANGE_WRITE)` — start writing back the
/// range's dirty pages without waiting for them, so a later `fsync` has little left to do;
/// see [sync_file_range(2)](https://man7.org/linux/man-pages/man2/sync_file_range.2.html).
/// A no-op on filesystems without writeback (tmpfs).
pub fn start_writeback(file: &File, offset: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: plain integers; the fd stays open for the call because `file` is borrowed.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    Errno::result(r).map(drop)
}

/// The CRC-32 of the first `len` bytes of the file at `path` (`u64::MAX`: all of it),
/// read from its start (through a new open file description: no fd's offset moves).
pub fn content_crc32(path: &std::path::Path, len: u64) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = File::open(path)?.take(len);
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher.finalize()),
            n => hasher.update(&buf[..n]),
        }
    }
}
