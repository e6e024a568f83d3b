//! Objects created before the fd table is filled: sockets and pseudo-terminals come in
//! pairs, connect to each other and carry queued data, so they are all built first, at
//! temporary fd numbers above every saved one ([`Prepared`]), and the table loop then
//! `dup3`s each into place. Also the injected calls they share (socket options, sending
//! data through scratch memory in chunks, `sockaddr_un` bytes).

use std::collections::HashMap;

use crate::restore::child::{Child, HELPER_LEN};
use crate::restore::RestoreError;

/// Scratch layout: small arguments below `DATA_OFF`, data from it.
pub const ARG_OFF: u64 = 0;
pub const ADDR_OFF: u64 = 1024;
pub const CMSG_OFF: u64 = 2048;
pub const DATA_OFF: u64 = 4096;
/// Bytes sent per injected call (the scratch area is `HELPER_LEN` minus the code page,
/// the threads' stack page and the argument page).
pub const CHUNK: usize = 240 * 1024;
const _: () = assert!(DATA_OFF + CHUNK as u64 <= HELPER_LEN - 3 * 4096);

/// Temporary fds of the objects built ahead of the table, by the saved fd they become.
pub struct Prepared {
    /// Lowest temporary number: above every saved fd.
    top: u64,
    by_fd: HashMap<i32, u64>,
    temps: Vec<u64>,
}

impl Prepared {
    pub fn new(top: u64) -> Self {
        Prepared {
            top,
            by_fd: HashMap::new(),
            temps: Vec::new(),
        }
    }

    /// Moves a freshly created fd `got` of the child above every saved fd and returns
    /// its new number (fds created now get the lowest free numbers, which saved fds
    /// installed later may need).
    pub fn park(&mut self, child: &Child, got: u64) -> Result<u64, RestoreError> {
        let remote = child.remote();
        let t = remote.call(
            "fcntl(F_DUPFD_CLOEXEC)",
            libc::SYS_fcntl,
            &[got, libc::F_DUPFD_CLOEXEC as u64, self.top],
        )?;
        remote.call("close", libc::SYS_close, &[got])?;
        self.temps.push(t);
        Ok(t)
    }

    /// Saved fd `fd` is temporary fd `temp`.
    pub fn assign(&mut self, fd: i32, temp: u64) {
        self.by_fd.insert(fd, temp);
    }

    pub fn get(&self, fd: i32) -> Option<u64> {
        self.by_fd.get(&fd).copied()
    }

    /// Closes a temporary fd now (a helper end no saved fd needs).
    pub fn discard(&mut self, child: &Child, temp: u64) -> Result<(), RestoreError> {
        self.temps.retain(|t| *t != temp);
        child.remote().call("close", libc::SYS_close, &[temp])?;
        Ok(())
    }

    /// Closes every temporary fd (after they were `dup3`ed into place).
    pub fn close_all(self, child: &Child) -> Result<(), RestoreError> {
        for t in self.temps {
            child.remote().call("close", libc::SYS_close, &[t])?;
        }
        Ok(())
    }
}

/// `setsockopt(fd, level, name, &value, 4)` in the child.
pub fn set_int(
    child: &Child,
    fd: u64,
    level: i32,
    name: i32,
    value: i32,
) -> Result<(), RestoreError> {
    set_bytes(child, fd, level, name, &value.to_ne_bytes())
}

/// `setsockopt(fd, level, name, bytes, len)` in the child.
pub fn set_bytes(
    child: &Child,
    fd: u64,
    level: i32,
    name: i32,
    bytes: &[u8],
) -> Result<(), RestoreError> {
    let addr = child.put(ARG_OFF, bytes)?;
    child.remote().call(
        "setsockopt",
        libc::SYS_setsockopt,
        &[fd, level as u64, name as u64, addr, bytes.len() as u64],
    )?;
    Ok(())
}

/// `fcntl(fd, F_SETFL, flags)`: the saved file status flags (`O_NONBLOCK`...).
pub fn set_fl(child: &Child, fd: u64, flags: i32) -> Result<(), RestoreError> {
    child.remote().call(
        "fcntl(F_SETFL)",
        libc::SYS_fcntl,
        &[fd, libc::F_SETFL as u64, flags as u64],
    )?;
    Ok(())
}

/// Sends all of `data` from `fd` (`MSG_DONTWAIT`: a queue that does not fit fails rather
/// than blocking the child), in chunks of at most `chunk` bytes.
pub fn send_all(child: &Child, fd: u64, mut data: &[u8], chunk: usize) -> Result<(), RestoreError> {
    while !data.is_empty() {
        let n = data.len().min(chunk).min(CHUNK);
        let addr = child.put(DATA_OFF, &data[..n])?;
        let sent = child.remote().call(
            "sendto",
            libc::SYS_sendto,
            &[fd, addr, n as u64, libc::MSG_DONTWAIT as u64, 0, 0],
        )?;
        data = &data[sent as usize..];
    }
    Ok(())
}

/// The control messages of one `sendmsg`: `SCM_CREDENTIALS` (pid, uid, gid), then
/// `SCM_RIGHTS` (the fds), each a `struct cmsghdr` (len u64, level i32, type i32) and
/// its data, padded to 8 bytes (`CMSG_SPACE`).
pub fn control(creds: Option<(i32, u32, u32)>, fds: &[i32]) -> Vec<u8> {
    let mut c = Vec::new();
    let mut push = |kind: i32, data: Vec<u8>| {
        c.extend_from_slice(&(16 + data.len() as u64).to_ne_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c.extend_from_slice(&kind.to_ne_bytes());
        c.extend_from_slice(&data);
        c.resize(c.len().div_ceil(8) * 8, 0);
    };
    if let Some((pid, uid, gid)) = creds {
        let ucred = [pid.to_ne_bytes(), uid.to_ne_bytes(), gid.to_ne_bytes()].concat();
        push(libc::SCM_CREDENTIALS, ucred);
    }
    if !fds.is_empty() {
        push(
            libc::SCM_RIGHTS,
            fds.iter().flat_map(|f| f.to_ne_bytes()).collect(),
        );
    }
    c
}

/// `struct sockaddr_un` for `name` (a path, or an abstract name starting with 0) and its
/// length as `bind`/`connect` expect it.
pub fn sockaddr_un(name: &[u8]) -> (Vec<u8>, u64) {
    let mut sa = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    sa.extend_from_slice(name);
    let len = sa.len() as u64;
    sa.resize(110, 0);
    (sa, len)
}

/// Runs `bind` or `connect` (`nr`) of `fd` to `sa` (`len` bytes) in the child.
pub fn address_call(
    child: &Child,
    name: &'static str,
    nr: i64,
    fd: u64,
    sa: &[u8],
    len: u64,
) -> Result<(), RestoreError> {
    let addr = child.put(ADDR_OFF, sa)?;
    child.remote().call(name, nr, &[fd, addr, len])?;
    Ok(())
}

/// `sendmsg(fd)` of one message in the child, to `to` (a sockaddr, for an unconnected
/// sender), with explicit `SCM_CREDENTIALS` when `creds` is set and the child's fds
/// `fds` (`SCM_RIGHTS`, at most 253, as the kernel allows).
pub fn send_msg(
    child: &Child,
    fd: u64,
    data: &[u8],
    to: Option<&[u8]>,
    creds: Option<(i32, u32, u32)>,
    fds: &[i32],
) -> Result<(), RestoreError> {
    if data.len() > CHUNK {
        return Err(RestoreError::Unsupported {
            what: format!(
                "a queued message of {} bytes (at most {CHUNK} can be restored)",
                data.len()
            ),
        });
    }
    let base = child.put(DATA_OFF, data)?;
    let iov = child.put(
        ARG_OFF + 64,
        &[base.to_ne_bytes(), (data.len() as u64).to_ne_bytes()].concat(),
    )?;
    let (name, namelen) = match to {
        Some(sa) => (child.put(ADDR_OFF, sa)?, sa.len() as u64),
        None => (0, 0),
    };
    let c = control(creds, fds);
    let (control, controllen) = match c.len() {
        0 => (0, 0),
        n => (child.put(CMSG_OFF, &c)?, n as u64),
    };
    let hdr: Vec<u8> = [name, namelen, iov, 1, control, controllen, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let msg = child.put(ARG_OFF, &hdr)?;
    let sent = child.remote().call(
        "sendmsg",
        libc::SYS_sendmsg,
        &[fd, msg, libc::MSG_DONTWAIT as u64],
    )?;
    if sent as usize != data.len() {
        return Err(RestoreError::Unsupported {
            what: format!("sendmsg sent {sent} of {} bytes", data.len()),
        });
    }
    Ok(())
}
