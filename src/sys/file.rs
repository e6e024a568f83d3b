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

/// A second descriptor of the file at `path`, write-only with `O_DIRECT` (writes go from
/// the caller's memory to the device, past the page cache); none where the filesystem has
/// no writeback to skip (tmpfs) or refuses `O_DIRECT`.
pub fn reopen_direct(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let fs = nix::sys::statfs::statfs(path).ok()?;
    if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    file.ok()
}

/// `pwritev` until every byte of `pieces` is written at `at` onwards.
pub fn pwrite_all(file: &File, pieces: &[&[u8]], mut at: u64) -> std::io::Result<()> {
    use std::io::IoSlice;
    let (mut first, mut skip) = (0, 0);
    while first < pieces.len() {
        let mut iovs = Vec::with_capacity(pieces.len() - first);
        iovs.push(IoSlice::new(&pieces[first][skip..]));
        iovs.extend(pieces[first + 1..].iter().map(|p| IoSlice::new(p)));
        let mut n = match nix::sys::uio::pwritev(file, &iovs, at as libc::off_t) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        at += n as u64;
        while first < pieces.len() && n >= pieces[first].len() - skip {
            n -= pieces[first].len() - skip;
            (first, skip) = (first + 1, 0);
        }
        skip += n;
    }
    Ok(())
}

/// The CRC-32 of the first `len` bytes of the file at `path` (`u64::MAX`: all of it),
/// read from its start (through a new open file description: no fd's offset moves).
pub fn content_crc32(path: &std::path::Path, len: u64) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = File::open(path)?.take(len);
    let mut hasher = crate::sys::cpu::crc32();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher.finalize()),
            n => hasher.update(&buf[..n]),
        }
    }
}
