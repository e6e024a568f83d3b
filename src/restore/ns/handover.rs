//! Handing an open file description to a task that cannot see its owner: a process inside
//! a pid namespace cannot `pidfd_open` a process outside it (the parent of its init, from
//! which it inherited its stdio). stasis takes the description (`pidfd_getfd`, it sees
//! every pid) and sends it over a datagram socket the task binds to an abstract address
//! (`SCM_RIGHTS`); the task receives it with an injected `recvmsg`.
//!
//! Abstract unix addresses belong to the network namespace: stasis's sending socket is
//! made in the task's (a thread enters it when stasis's restoring thread, in the tree's
//! own until the restore ends, `net.rs`, is elsewhere).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;

use nix::sys::socket::{
    sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::super::child::Child;
use super::super::RestoreError;

/// Scratch offsets of the handover's structures in the task.
const ADDR_OFF: u64 = 0;
const MSG_OFF: u64 = 256;
const IOV_OFF: u64 = 320;
const BYTE_OFF: u64 = 352;
const CMSG_OFF: u64 = 384;
const CMSG_LEN: u64 = 24;

/// A copy in `child` of fd `fd` of process `owner`; returns its fd number there.
pub fn take_across(child: &Child, owner: i32, fd: i32) -> Result<u64, RestoreError> {
    let fail = |what: String| RestoreError::Unsupported {
        what: format!("hand fd {fd} of pid {owner} to pid {}: {what}", child.pid()),
    };
    let pid = nix::unistd::Pid::from_raw(owner);
    let pidfd = crate::sys::probe::pidfd_open(pid).map_err(|e| fail(e.to_string()))?;
    let file =
        crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| fail(e.to_string()))?;
    give(child, &file, &fail)
}

/// A copy in `child` of `file`, one of stasis's own (a directory of its root the child
/// cannot reach by path); returns its fd number there.
pub fn give_own(child: &Child, file: &impl AsFd, what: &str) -> Result<u64, RestoreError> {
    let fail = |why: String| RestoreError::Unsupported {
        what: format!("hand {what} to pid {}: {why}", child.pid()),
    };
    give(child, file, &fail)
}

/// Sends `file` to a socket of `child` bound for it; returns its fd number there.
fn give(
    child: &Child,
    file: &impl AsFd,
    fail: &dyn Fn(String) -> RestoreError,
) -> Result<u64, RestoreError> {
    let name = format!("stasis-handover-{}-{}", std::process::id(), child.pid());
    let remote = child.remote();
    let sock = remote.call(
        "socket(AF_UNIX)",
        libc::SYS_socket,
        &[
            libc::AF_UNIX as u64,
            (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64,
            0,
        ],
    )?;
    let got = bind_and_receive(child, sock, &name, file, fail);
    remote.call("close", libc::SYS_close, &[sock])?;
    got
}

/// Binds the task's socket `sock` to the abstract `name`, sends `file` to it, and
/// receives it in the task.
fn bind_and_receive(
    child: &Child,
    sock: u64,
    name: &str,
    file: &impl AsFd,
    fail: &dyn Fn(String) -> RestoreError,
) -> Result<u64, RestoreError> {
    let remote = child.remote();
    let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    addr.push(0);
    addr.extend_from_slice(name.as_bytes());
    let at = child.put(ADDR_OFF, &addr)?;
    remote.call("bind", libc::SYS_bind, &[sock, at, addr.len() as u64])?;
    let ours = sender(child.pid()).map_err(fail)?;
    let to = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let fds = [file.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg(
        ours.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &cmsg,
        MsgFlags::empty(),
        Some(&to),
    )
    .map_err(|e| fail(format!("sendmsg: {e}")))?;
    receive(child, sock, fail)
}

/// A datagram socket of the network namespace of `pid` (abstract addresses are looked
/// up in the sender's: the task may be in one of the tree's other than stasis's thread).
fn sender(pid: i32) -> Result<std::os::fd::OwnedFd, String> {
    let make = || {
        socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| e.to_string())
    };
    let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    let ino = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.ino());
    if ino(&path) == ino(std::path::Path::new("/proc/thread-self/ns/net")) {
        return make();
    }
    crate::netns::within(&path, make).map_err(|e| e.to_string())?
}

/// `recvmsg` injected into the task; the fd number is read from its control message.
fn receive(
    child: &Child,
    sock: u64,
    fail: &dyn Fn(String) -> RestoreError,
) -> Result<u64, RestoreError> {
    let byte = child.scratch() + BYTE_OFF;
    let iov = child.put(IOV_OFF, &[byte.to_ne_bytes(), 1u64.to_ne_bytes()].concat())?;
    let cmsg = child.put(CMSG_OFF, &[0u8; CMSG_LEN as usize])?;
    // struct msghdr: name, namelen (+pad), iov, iovlen, control, controllen, flags (+pad).
    let hdr: Vec<u8> = [0u64, 0, iov, 1, cmsg, CMSG_LEN, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let msg = child.put(MSG_OFF, &hdr)?;
    let flags = libc::MSG_CMSG_CLOEXEC as u64;
    child
        .remote()
        .call("recvmsg", libc::SYS_recvmsg, &[sock, msg, flags])?;
    let mut back = [0u8; CMSG_LEN as usize];
    child.mem.read(cmsg, &mut back)?;
    let level = i32::from_ne_bytes(back[8..12].try_into().expect("4 bytes"));
    let kind = i32::from_ne_bytes(back[12..16].try_into().expect("4 bytes"));
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
        return Err(fail("no SCM_RIGHTS message arrived".to_string()));
    }
    let fd = i32::from_ne_bytes(back[16..20].try_into().expect("4 bytes"));
    Ok(fd as u64)
}
