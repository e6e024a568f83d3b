//! Character devices, reopened by path (`/dev/null`, `/dev/urandom`, a console, a virtual
//! console...); `/dev/tty`, the process's controlling terminal, reopened once its session
//! has that terminal again; and the invoking terminal, which becomes the restorer's
//! terminal under `--shell-job`. Pty slaves of the tree are `pty.rs`, `/dev/net/tun` files
//! `tun.rs`. The restore side is
//! `restore/files/chardev.rs`.

use std::os::fd::AsFd;

use super::{pty, FdOptions, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{CharDevFd, FdKind, TtyFd};
use crate::sys::socket::{ioctl_get_int, TIOCGDEV};

/// A pty slave whose master is outside the tree is kept for a new master under
/// `orphan_pts_master` (`dump/orphan_pty.rs`); terminals of a shell job become `Tty`
/// under `--shell-job`; such a slave is refused otherwise; other character devices reopen by path, which must name the same device (any node of it: CRIU's
/// `--evasive-devices` behaviour, always stasis's).
pub fn dump(open: &OpenFd, opts: &FdOptions) -> Result<FdKind, DumpError> {
    let rdev = open.meta()?.st_rdev;
    if super::tun::is_tun(rdev) {
        check_path_names(open, rdev, opts)?;
        return super::tun::dump(open, opts);
    }
    if !is_tty(rdev) {
        check_path_names(open, rdev, opts)?;
        return Ok(by_path(open, rdev));
    }
    if rdev == libc::makedev(5, 0) {
        return controlling(open, opts);
    }
    let pts = pty::slave_index(rdev);
    if let Some(index) = pts.filter(|_| opts.orphan_pts_master) {
        return Ok(FdKind::PtySlave { index });
    }
    let pts = pts.is_some();
    if opts.shell_job && (pts || ctty(open.pid)? == Some(rdev)) {
        return Ok(FdKind::Tty(TtyFd { rdev }));
    }
    if pts {
        return Err(open.error(&format!(
            "is a terminal ({}); use --shell-job (-j) to restore it on the current terminal",
            open.target
        )));
    }
    // A console or serial line belongs to the system, as /dev/null does.
    Ok(by_path(open, rdev))
}

fn by_path(open: &OpenFd, rdev: u64) -> FdKind {
    FdKind::CharDev(CharDevFd {
        path: open.target.clone(),
        rdev,
        pos: open.info.pos,
    })
}

/// `/dev/tty`: reopened at restore once the session has its terminal again (that it
/// still reaches the process's controlling terminal is checked once the tree's tables
/// are linked, `dump/tty.rs`: a process that gave its terminal up may hold one inherited).
fn controlling(open: &OpenFd, opts: &FdOptions) -> Result<FdKind, DumpError> {
    let reached = reached(open.pid, open.reach().1)
        .map_err(|e| open.error(&format!("is /dev/tty of a terminal that hung up ({e})")))?;
    let ours = pty::slave_index(reached).is_some_and(|i| opts.tree_ptys().masters.contains_key(&i));
    if opts.shell_job && !ours {
        return Ok(FdKind::Tty(TtyFd { rdev: reached }));
    }
    Ok(FdKind::ControllingTty)
}

/// The terminal fd `fd` of `pid` reaches (`TIOCGDEV` on a duplicate), as a `dev_t`.
pub fn reached(pid: i32, fd: i32) -> nix::Result<u64> {
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
    let dup = crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)?;
    ioctl_get_int(dup.as_fd(), TIOCGDEV).map(|d| decode_dev(d as u32))
}

/// The controlling terminal of `pid` (stat's `tty_nr`) as a `dev_t`.
pub fn ctty(pid: i32) -> Result<Option<u64>, DumpError> {
    let nr = crate::proc::stat(pid)?.tty_nr as u32;
    Ok((nr != 0).then(|| decode_dev(nr)))
}

/// A device number in the kernel's `new_encode_dev` form (stat's `tty_nr`, `TIOCGDEV`).
pub fn decode_dev(nr: u32) -> u64 {
    libc::makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00))
}

/// Refuses a device whose path no longer names it (the node deleted, or replaced by
/// another file): the restore would open something else.
fn check_path_names(open: &OpenFd, rdev: u64, opts: &FdOptions) -> Result<(), DumpError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = crate::dump::mnt::nested::reach_fd(open.pid, open.fd, &open.target);
    let mut nodes = opts.device_nodes.borrow_mut();
    let named = *nodes.entry(path).or_insert_with_key(|path| {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map(|m| m.rdev())
    });
    if named == Some(rdev) {
        return Ok(());
    }
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Err(open.error(&format!(
        "is character device {major}:{minor} opened as {}, a path that names no such device now (deleted or replaced); stasis reopens a device by its path",
        open.target
    )))
}

/// Pseudo-terminal slaves (136-143), virtual consoles and serial lines (4) and /dev/tty,
/// /dev/console (5).
pub fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    (136..=143).contains(&major) || major == 4 || (major == 5 && libc::minor(rdev) < 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_device_numbers_decode() {
        assert_eq!(decode_dev(0x8800), libc::makedev(136, 0));
        assert_eq!(decode_dev(0x892c), libc::makedev(137, 44));
        assert_eq!(decode_dev(0x405), libc::makedev(4, 5));
        // new_encode_dev(4, 300): the minor's high bits above the major.
        assert_eq!(decode_dev(0x10_042c), libc::makedev(4, 300));
        assert!(is_tty(decode_dev(0x8800)) && is_tty(libc::makedev(5, 0)));
        assert!(!is_tty(libc::makedev(1, 3)) && !is_tty(libc::makedev(5, 2)));
    }
}
