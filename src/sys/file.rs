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
