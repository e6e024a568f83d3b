//! memfd, recreated with its name, size, contents (written from stasis into a duplicate
//! of the child's fd), access mode, offset and seals. The dump side is
//! `dump/files/memfd.rs`.
//!
//! Ordering requirements: seals come last (a write seal would stop the refill).

use std::os::unix::fs::FileExt;

use super::{seek, Install};
use crate::image::files::MemfdFd;
use crate::restore::mm::open_in;
use crate::restore::RestoreError;

pub fn restore(at: &Install, m: &MemfdFd) -> Result<(), RestoreError> {
    let name = at.child.put_str(0, &m.name)?;
    let flags = libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC;
    let mut got = at.call(
        "memfd_create",
        libc::SYS_memfd_create,
        &[name, flags as u64],
    )?;
    at.call("ftruncate", libc::SYS_ftruncate, &[got, m.size])?;
    if let Some(&(_, mode)) = at.files.modes.iter().find(|(fd, _)| *fd == at.entry.fd) {
        at.call("fchmod", libc::SYS_fchmod, &[got, u64::from(mode)])?;
    }
    if !m.contents.is_empty() {
        let file = std::fs::File::from(at.child.steal(got)?);
        file.write_all_at(&m.contents, 0)
            .map_err(|source| RestoreError::Write {
                path: format!("memfd:{} of pid {}", m.name, at.child.pid()),
                source,
            })?;
    }
    if at.entry.flags & libc::O_ACCMODE != libc::O_RDWR {
        let again = open_in(at.child, &format!("/proc/self/fd/{got}"), at.reopen_flags())?;
        at.call("close", libc::SYS_close, &[got])?;
        got = again;
    }
    at.place(got)?;
    at.set_cloexec()?;
    set_status_flags(at)?;
    seek(at, m.pos)?;
    add_seals(at, m.seals)
}

/// `O_APPEND`, `O_NONBLOCK`... as saved: `memfd_create` gives none of them (a reopen
/// for another access mode passes them already, setting them again is harmless).
fn set_status_flags(at: &Install) -> Result<(), RestoreError> {
    let extra =
        libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
    if at.entry.flags & extra != 0 {
        at.set_status_flags(at.fd())?;
    }
    Ok(())
}

/// Adds the `seals` (`F_GET_SEALS` at dump) the entry's memfd lacks: another fd of the
/// same object may have added them already, and once `F_SEAL_SEAL` is there, adding any
/// seal again fails.
pub fn add_seals(at: &Install, seals: u32) -> Result<(), RestoreError> {
    if seals == 0 {
        return Ok(());
    }
    let has = at.call(
        "fcntl(F_GET_SEALS)",
        libc::SYS_fcntl,
        &[at.fd(), libc::F_GET_SEALS as u64],
    )?;
    let missing = u64::from(seals) & !has;
    if missing != 0 {
        let args = [at.fd(), libc::F_ADD_SEALS as u64, missing];
        at.call("fcntl(F_ADD_SEALS)", libc::SYS_fcntl, &args)?;
    }
    Ok(())
}
