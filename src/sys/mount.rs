//! # Safety
//! The new mount API (`fsopen(2)`, `fsconfig(2)`, `fsmount(2)`, `open_tree(2)`,
//! `move_mount(2)`, `mount_setattr(2)`), which nix does not wrap, through raw syscalls.
//! Every string handed to the kernel is a `CString` that outlives the call, the
//! `mount_attr` is a local passed with its size, and every fd the kernel returns is
//! wrapped in an `OwnedFd` at once.
//!
//! Also: running a closure in a thread of stasis that entered another process's mount
//! namespace (`unshare(CLONE_FS)` + `setns`; no unsafe).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// A mount call that failed, naming what it worked on.
#[derive(Debug, thiserror::Error)]
#[error("{call} {what}: {}{}", source.desc(), hint(*source))]
pub struct MountError {
    pub call: &'static str,
    pub what: String,
    pub source: Errno,
}

fn hint(e: Errno) -> &'static str {
    if e == Errno::ENOSYS {
        " (the new mount API needs Linux 5.12 or later)"
    } else {
        ""
    }
}

fn err<'a>(call: &'static str, what: &'a str) -> impl Fn(Errno) -> MountError + 'a {
    move |source| MountError {
        call,
        what: what.to_string(),
        source,
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("NULs removed")
}

fn owned(r: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub const FSOPEN_CLOEXEC: u32 = 1;
pub const FSCONFIG_SET_FLAG: u32 = 0;
pub const FSCONFIG_SET_STRING: u32 = 1;
pub const FSCONFIG_CMD_CREATE: u32 = 6;
pub const FSMOUNT_CLOEXEC: u32 = 1;
const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const MOVE_MOUNT_SET_GROUP: u32 = 0x100;

/// `MOUNT_ATTR_*` bits (linux/mount.h).
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;
pub const ATTR_ATIME_MASK: u64 = 0x70;
pub const ATTR_NOATIME: u64 = 0x10;
pub const ATTR_STRICTATIME: u64 = 0x20;
pub const ATTR_NODIRATIME: u64 = 0x80;
pub const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `fsopen` + `fsconfig` of each option + `FSCONFIG_CMD_CREATE` + `fsmount` — a new
/// superblock of `fstype` as a detached mount. `opts` are `key` (a flag) or
/// `key=value`.
pub fn new_fs(fstype: &str, opts: &[String]) -> Result<OwnedFd, MountError> {
    let t = cstr(fstype);
    // SAFETY: `t` is a valid C string for the call.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })
        .map_err(err("fsopen", fstype))?;
    for o in opts {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (cstr(k), Some(cstr(v))),
            None => (cstr(o), None),
        };
        let (cmd, vp) = match &v {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: `k` and `v` are valid C strings (or null for a flag) for the call.
        let r =
            unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k.as_ptr(), vp, 0) };
        Errno::result(r).map_err(err("fsconfig", &format!("{o} of {fstype}")))?;
    }
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: no pointers but a null key.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            null,
            null,
            0,
        )
    };
    Errno::result(r).map_err(err("fsconfig(create)", fstype))?;
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
        .map_err(err("fsmount", fstype))
}

/// `open_tree(dirfd, path, OPEN_TREE_CLONE)` — a detached copy of the mount at `path`
/// (that mount only, not the ones below it). `dirfd` `None` is the cwd.
pub fn clone_tree(dirfd: Option<BorrowedFd>, path: &str) -> Result<OwnedFd, MountError> {
    let p = cstr(if path.is_empty() { "" } else { path });
    let dfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    // SAFETY: `p` is a valid C string for the call.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dfd, p.as_ptr(), flags) })
        .map_err(err("open_tree", path))
}

/// `move_mount(fd, "", dirfd, path)` — attaches the detached mount `fd` at `path`
/// (relative to `dirfd`).
pub fn attach(fd: BorrowedFd, dirfd: Option<BorrowedFd>, path: &str) -> Result<(), MountError> {
    let (empty, p) = (cstr(""), cstr(path));
    let dfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut flags = MOVE_MOUNT_F_EMPTY_PATH;
    if path.is_empty() {
        flags |= MOVE_MOUNT_T_EMPTY_PATH;
    }
    // SAFETY: both strings are valid C strings for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            dfd,
            p.as_ptr(),
            flags,
        )
    };
    Errno::result(r).map(drop).map_err(err("move_mount", path))
}

/// `move_mount(from, to, MOVE_MOUNT_SET_GROUP)` — `to` joins the peer group (and master)
/// of `from` (Linux 5.15).
pub fn set_group(from: BorrowedFd, to: BorrowedFd, what: &str) -> Result<(), MountError> {
    let empty = cstr("");
    let flags = MOVE_MOUNT_SET_GROUP | MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: the empty string is valid for both path arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            flags,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(err("move_mount(MOVE_MOUNT_SET_GROUP)", what))
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {set, clr, propagation})` on the mount `fd`.
pub fn set_attr(
    fd: BorrowedFd,
    set: u64,
    clr: u64,
    propagation: u64,
    what: &str,
) -> Result<(), MountError> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation,
        userns_fd: 0,
    };
    let empty = cstr("");
    // SAFETY: `attr` is a local passed with its size, the path an empty C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(err("mount_setattr", what))
}

/// Runs `f` in a new thread of stasis that entered the mount namespace of `pid` (its own
/// fs context first, `unshare(CLONE_FS)`: `setns` refuses a shared one). The thread's
/// root and cwd are that namespace's root.
pub fn in_mount_ns<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> Result<T, MountError> {
    let path = format!("/proc/{pid}/ns/mnt");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                .map_err(err("unshare(CLONE_FS)", "for setns"))?;
            let ns = std::fs::File::open(&path)
                .map_err(|e| err("open", &path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(err("setns", &path))?;
            Ok(f())
        })
        .join()
        .expect("the mount namespace thread does not panic")
    })
}

/// `unshare(CLONE_NEWNS)` + `mount(MS_REC | MS_PRIVATE)` of `/` — gives the calling
/// thread (whose fs context is its own, see [`in_mount_ns`]) a private copy of its mount
/// namespace, where unmounting reaches no other namespace.
pub fn private_copy() -> Result<(), MountError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(err("unshare(CLONE_NEWNS)", "for a private copy"))?;
    let flags = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(err("mount(MS_PRIVATE)", "/"))
}

/// `umount2(path, MNT_DETACH)` — takes the topmost mount at `path` off.
pub fn detach(path: &str) -> Result<(), MountError> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(err("umount2", path))
}

const FSPICK_CLOEXEC: u32 = 1;
const FSPICK_EMPTY_PATH: u32 = 8;
const FSCONFIG_CMD_RECONFIGURE: u32 = 7;

/// `fspick(fd)` + `fsconfig(ro)` + `FSCONFIG_CMD_RECONFIGURE` — makes the superblock
/// of the mount `fd` read-only (after it was filled).
pub fn superblock_readonly(fd: BorrowedFd, what: &str) -> Result<(), MountError> {
    let empty = cstr("");
    let flags = FSPICK_CLOEXEC | FSPICK_EMPTY_PATH;
    // SAFETY: the empty path is a valid C string.
    let fs =
        owned(unsafe { libc::syscall(libc::SYS_fspick, fd.as_raw_fd(), empty.as_ptr(), flags) })
            .map_err(err("fspick", what))?;
    let ro = cstr("ro");
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: `ro` is a valid C string, the value null for a flag.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            ro.as_ptr(),
            null,
            0,
        )
    };
    Errno::result(r).map_err(err("fsconfig(ro)", what))?;
    // SAFETY: no pointers but nulls.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_RECONFIGURE,
            null,
            null,
            0,
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(err("fsconfig(reconfigure)", what))
}
