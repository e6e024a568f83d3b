//! proc mounts made by the tree's root. A proc superblock shows the pid namespace of the
//! task that creates it (`fsopen("proc")` takes the caller's), so a proc of the tree's
//! namespace is made by its root — injected `fsopen`, `fsconfig`, `fsmount` — and the
//! detached mount taken by stasis (`pidfd_getfd`) for `tree.rs` to attach. Made by
//! stasis's thread instead, the tree's `/proc` would list the host's processes.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use super::{unsupported, Sources};
use crate::image::mnt::{How, Mount};
use crate::restore::child::Child;
use crate::restore::RestoreError;
use crate::sys::mount as m;

const FSOPEN_CLOEXEC: u64 = m::FSOPEN_CLOEXEC as u64;
const FSCONFIG_SET_FLAG: u64 = m::FSCONFIG_SET_FLAG as u64;
const FSCONFIG_SET_STRING: u64 = m::FSCONFIG_SET_STRING as u64;
const FSCONFIG_CMD_CREATE: u64 = m::FSCONFIG_CMD_CREATE as u64;
const FSMOUNT_CLOEXEC: u64 = m::FSMOUNT_CLOEXEC as u64;

/// The new proc mounts of the image, made by `child` (the root), by image id.
pub fn make_in_root(s: &Sources, child: &Child) -> Result<HashMap<u32, OwnedFd>, RestoreError> {
    let mut out = HashMap::new();
    for mt in s.image.mounts.iter().filter(|mt| is_new_proc(s, mt)) {
        let (mut opts, ro) = super::tree::super_opts(mt);
        if ro {
            opts.push("ro".into());
        }
        let fd = make_one(child, &opts, mt)?;
        let fd = match mt.root.trim_start_matches('/') {
            "" => fd,
            rel => crate::sys::mount::clone_tree(Some(fd.as_fd()), rel)
                .map_err(|e| unsupported(e.to_string()))?,
        };
        out.insert(mt.id, fd);
    }
    Ok(out)
}

/// A proc mount the image makes anew (not a bind, not one of the host's).
fn is_new_proc(s: &Sources, mt: &Mount) -> bool {
    mt.fstype == "proc"
        && !matches!(mt.how, How::Bind { .. } | How::Deleted { .. } | How::Tmpfs)
        && matches!(s.host_source(mt), Ok(None))
}

/// `fsopen`, `fsconfig` of `opts`, `fsmount` run by `child`; the mount fd taken from it.
fn make_one(child: &Child, opts: &[String], mt: &Mount) -> Result<OwnedFd, RestoreError> {
    let pid = child.pid();
    let failed = |call: &str, r: i64| {
        unsupported(format!(
            "{call} for proc at {} in pid {pid}: {}",
            mt.mountpoint,
            nix::errno::Errno::from_raw(-r as i32).desc()
        ))
    };
    let remote = child.remote();
    let name = child.put_str(0, "proc")?;
    let fs = remote.raw(libc::SYS_fsopen, &[name, FSOPEN_CLOEXEC])?;
    if fs < 0 {
        return Err(failed("fsopen", fs));
    }
    let fs = fs as u64;
    let close = |fd: u64| remote.raw(libc::SYS_close, &[fd]).map(drop);
    for o in opts {
        let (key, value) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        let k = child.put_str(0, key)?;
        let (cmd, v) = match value {
            Some(v) => (FSCONFIG_SET_STRING, child.put_str(1024, v)?),
            None => (FSCONFIG_SET_FLAG, 0),
        };
        let r = remote.raw(libc::SYS_fsconfig, &[fs, cmd, k, v, 0])?;
        if r < 0 {
            close(fs)?;
            return Err(failed(&format!("fsconfig {o}"), r));
        }
    }
    let r = remote.raw(libc::SYS_fsconfig, &[fs, FSCONFIG_CMD_CREATE, 0, 0, 0])?;
    if r < 0 {
        close(fs)?;
        return Err(failed("fsconfig(FSCONFIG_CMD_CREATE)", r));
    }
    let m = remote.raw(libc::SYS_fsmount, &[fs, FSMOUNT_CLOEXEC, 0])?;
    close(fs)?;
    if m < 0 {
        return Err(failed("fsmount", m));
    }
    let taken = take_fd(pid, m as i32);
    close(m as u64)?;
    taken
}

/// A copy of fd `fd` of process `pid`.
fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd, RestoreError> {
    let pidfd = crate::sys::probe::pidfd_open(nix::unistd::Pid::from_raw(pid))
        .map_err(|e| unsupported(format!("pidfd_open of pid {pid}: {}", e.desc())))?;
    crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd)
        .map_err(|e| unsupported(format!("pidfd_getfd of fd {fd} of pid {pid}: {}", e.desc())))
}
