//! # Safety
//! Raw `getsockopt`/`setsockopt`/`ioctl` on sockets and terminals, for the options nix
//! does not wrap (`TCP_REPAIR*`, `TCP_QUEUE_SEQ`, `SO_PEEK_OFF`, `TCP_INFO`, `SIOCOUTQNSD`,
//! `TIOCGPTN`...). Every call passes a buffer the kernel writes at most `len` bytes into,
//! with that `len` taken from the same Rust slice, on an fd borrowed for the call; fds the
//! kernel returns are wrapped in `OwnedFd` at once.
//!
//! What the values mean lives above, in `dump/files/{unix,inet,pty}.rs`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `TCP_REPAIR_QUEUE` values (linux/tcp.h).
pub const TCP_NO_QUEUE: i32 = 0;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;
/// `SO_PEEK_OFF` (asm-generic/socket.h).
pub const SO_PEEK_OFF: i32 = 42;
/// `SIOCINQ` / `SIOCOUTQ` / `SIOCOUTQNSD`: bytes in the receive queue, in the send queue,
/// and not yet sent (linux/sockios.h).
pub const SIOCINQ: u64 = 0x541b;
pub const SIOCOUTQ: u64 = 0x5411;
pub const SIOCOUTQNSD: u64 = 0x894b;
/// Terminal ioctls (asm-generic/ioctls.h, x86_64 values).
pub const TCGETS: u64 = 0x5401;
pub const TCSETS: u64 = 0x5402;
pub const TIOCGWINSZ: u64 = 0x5413;
pub const TIOCSWINSZ: u64 = 0x5414;
pub const TIOCPKT: u64 = 0x5420;
pub const TIOCSCTTY: u64 = 0x540e;
pub const TIOCGPTN: u64 = 0x8004_5430;
pub const TIOCSPTLCK: u64 = 0x4004_5431;
pub const TIOCGPKT: u64 = 0x8004_5438;
pub const TIOCGPTLCK: u64 = 0x8004_5439;
pub const TIOCGPTPEER: u64 = 0x5441;
pub const TIOCEXCL: u64 = 0x540c;
pub const TIOCNOTTY: u64 = 0x5422;
pub const TIOCSPGRP: u64 = 0x5410;
/// `TIOCGDEV`: the device number (`new_encode_dev`) of the terminal behind an fd, also
/// through `/dev/tty` or `/dev/console`.
pub const TIOCGDEV: u64 = 0x8004_5432;
/// `TIOCGEXCL`: whether the terminal is in exclusive mode (`TIOCEXCL`).
pub const TIOCGEXCL: u64 = 0x8004_5440;
/// `sizeof(struct termios)` as `TCGETS` copies it (kernel `struct termios`, not glibc's).
pub const TERMIOS_LEN: usize = 36;

/// `getsockopt(fd, level, name, buf, &len)` — returns the length the kernel wrote.
/// See [getsockopt(2)](https://man7.org/linux/man-pages/man2/getsockopt.2.html).
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
) -> nix::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and `len` is a valid out-pointer; the
    // kernel writes at most `len` bytes and stores the real length in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(r).map(|_| len as usize)
}

/// `SO_PEERCRED`: the peer credentials of a socket (pid, uid, gid; pid 0 and ids -1 when
/// none were set). See [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html).
pub fn peer_cred(fd: BorrowedFd<'_>) -> nix::Result<(i32, u32, u32)> {
    let mut buf = [0u8; 12];
    getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut buf)?;
    let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
    Ok((
        i32::from_ne_bytes(word(0)),
        u32::from_ne_bytes(word(4)),
        u32::from_ne_bytes(word(8)),
    ))
}

/// An `int` socket option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> nix::Result<i32> {
    let mut buf = [0u8; 4];
    getsockopt_bytes(fd, level, name, &mut buf)?;
    Ok(i32::from_ne_bytes(buf))
}

/// `socket(family, ty, protocol)` — a new socket (`ty` may carry `SOCK_CLOEXEC`).
/// See [socket(2)](https://man7.org/linux/man-pages/man2/socket.2.html).
pub fn socket(family: i32, ty: i32, protocol: i32) -> nix::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; on success it returns a new fd nothing else owns.
    let fd = Errno::result(unsafe { libc::socket(family, ty, protocol) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, bytes, len)`.
/// See [setsockopt(2)](https://man7.org/linux/man-pages/man2/setsockopt.2.html).
pub fn setsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    bytes: &[u8],
) -> nix::Result<()> {
    // SAFETY: the kernel reads at most `bytes.len()` bytes from `bytes`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> nix::Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// `ioctl(fd, req, &int)` for requests that write one `int`.
pub fn ioctl_get_int(fd: BorrowedFd<'_>, req: u64) -> nix::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: every request passed here writes exactly one int through the pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    Errno::result(r).map(|_| v)
}

/// `ioctl(fd, SIOCGSKNS)`: a new fd on the network namespace socket `fd` belongs to
/// (Linux 4.9; needs `CAP_NET_ADMIN` over that namespace's user namespace).
/// See [netdevice(7)](https://man7.org/linux/man-pages/man7/netdevice.7.html).
pub fn socket_netns(fd: BorrowedFd<'_>) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const SIOCGSKNS: u64 = 0x894c;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd (or -1), which nothing
    // else owns: it is wrapped once, here.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS) };
    // SAFETY: `r` is a fresh fd the kernel just opened for the caller (checked >= 0).
    Errno::result(r).map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, TIOCEXCL)`: puts a terminal in exclusive mode (no argument).
/// See [ioctl_tty(2)](https://man7.org/linux/man-pages/man2/ioctl_tty.2.html).
pub fn set_exclusive(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCEXCL reads no argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TIOCEXCL) };
    Errno::result(r).map(drop)
}

/// `ioctl(fd, req, buf)` for requests that read or write a struct of `buf.len()` bytes
/// (`TCGETS`/`TCSETS` with [`TERMIOS_LEN`], `TIOCGWINSZ`/`TIOCSWINSZ` with 8).
pub fn ioctl_buf(fd: BorrowedFd<'_>, req: u64, buf: &mut [u8]) -> nix::Result<()> {
    let need = match req {
        TCGETS | TCSETS => TERMIOS_LEN,
        TIOCGWINSZ | TIOCSWINSZ => 8,
        TIOCSPTLCK | TIOCPKT => 4,
        _ => return Err(Errno::EINVAL),
    };
    if buf.len() < need {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `req` is one of the requests above, each of which reads or writes exactly
    // `need` bytes at the pointer, and `buf` holds at least that many.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, buf.as_mut_ptr()) };
    Errno::result(r).map(drop)
}

/// `ioctl(master, TIOCGPTPEER, flags)` — opens the slave of a pseudo-terminal master
/// without going through `/dev/pts` (Linux 4.13).
/// See [ioctl_tty(2)](https://man7.org/linux/man-pages/man2/ioctl_tty.2.html).
pub fn open_pty_peer(master: BorrowedFd<'_>, flags: i32) -> nix::Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes its flags by value and returns a new fd.
    let fd = Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER, flags) })?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Writes buffered bytes back into a pseudo-terminal pair — `input` into the master,
/// `output` into the slave — and waits until the line discipline has them (writes reach
/// it asynchronously; the termios must not change before): `visible` bytes of input
/// readable from the slave, all the output from the master.
pub fn pty_refill(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    input: &[u8],
    output: &[u8],
    visible: usize,
) -> nix::Result<()> {
    write_all(master, input)?;
    write_all(slave, output)?;
    for _ in 0..2000 {
        if readable(slave)? as usize >= visible && readable(master)? as usize >= output.len() {
            // A partial canonical line is not counted: it came in the same write as
            // the lines before it; give the line discipline a moment for it anyway.
            std::thread::sleep(std::time::Duration::from_millis(5));
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    Err(Errno::ETIMEDOUT)
}

/// Whether `poll` reports `POLLRDHUP` on `fd` now (a socket's receive side shut down).
/// See [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html).
pub fn poll_rdhup(fd: BorrowedFd<'_>) -> nix::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd the kernel may write `revents` of; timeout 0.
    Errno::result(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents & libc::POLLRDHUP != 0)
}

/// `FIONREAD`: bytes readable now.
pub fn readable(fd: BorrowedFd<'_>) -> nix::Result<i32> {
    ioctl_get_int(fd, libc::FIONREAD)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

/// One message (or run of stream bytes) seen with `MSG_PEEK`.
#[derive(Debug, Default)]
pub struct Peeked {
    pub len: usize,
    /// `MSG_TRUNC`: the message was longer than the buffer.
    pub truncated: bool,
    /// `SCM_CREDENTIALS` (pid, uid, gid).
    pub creds: Option<(i32, u32, u32)>,
    /// The `SCM_RIGHTS` fds riding with it, in order: copies the peek installed in this
    /// process (the same open file descriptions as the fds in flight).
    pub fds: Vec<OwnedFd>,
    /// `MSG_CTRUNC`: control data (fds) did not fit.
    pub ctrunc: bool,
    /// The sender's address (`msg_name`, `sun_path` bytes; an abstract or autobound name
    /// starts with a 0 byte): empty when the sender is unnamed (the kernel then reports a
    /// length of 0) and for stream sockets, which report none.
    pub sender: Vec<u8>,
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT)` with room for credentials and fds: reads the
/// next message at the socket's peek offset without consuming it.
/// See [recvmsg(2)](https://man7.org/linux/man-pages/man2/recvmsg.2.html), `SO_PEEK_OFF`
/// in [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html).
pub fn recv_peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Peeked> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut cmsg = nix::cmsg_space!(libc::ucred, [RawFd; 253]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<UnixAddr>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)?;
    let mut out = Peeked {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        ctrunc: msg.flags.contains(MsgFlags::MSG_CTRUNC),
        sender: msg.address.as_ref().map(unix_name).unwrap_or_default(),
        ..Peeked::default()
    };
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmCredentials(u) => {
                out.creds = Some((u.pid(), u.uid(), u.gid()));
            }
            ControlMessageOwned::ScmRights(fds) => {
                // SAFETY: recvmsg just installed these fds for us; nothing else refers
                // to them, so each OwnedFd owns (and closes) its own.
                out.fds
                    .extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The `sun_path` bytes of a unix address as bound (a 0 byte before an abstract name;
/// empty for an unnamed one), from the length the kernel reported (0 for an unnamed
/// sender, which nix's `UnixAddr::path` would assert on: the bytes are read directly).
fn unix_name(a: &nix::sys::socket::UnixAddr) -> Vec<u8> {
    use nix::sys::socket::SockaddrLike;
    let len = (a.len() as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
    let path = &a.as_ref().sun_path;
    let mut name: Vec<u8> = path[..len.min(path.len())]
        .iter()
        .map(|&c| c as u8)
        .collect();
    // A path name's length counts its NUL (and whatever the binder passed after it).
    if name.first().is_some_and(|&c| c != 0) {
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        name.truncate(end);
    }
    name
}

/// A copy of the first `len` bytes a packet socket's rings map (`mmap` of the socket,
/// read-only and shared, then `munmap`): its rings' frame headers as the owner sees them.
/// See [packet(7)](https://man7.org/linux/man-pages/man7/packet.7.html), `PACKET_MMAP`.
pub fn packet_rings(fd: BorrowedFd<'_>, len: usize) -> nix::Result<Vec<u8>> {
    // SAFETY: a new mapping chosen by the kernel (no address given), of `len` bytes of
    // the socket's rings; it aliases no Rust object. The kernel refuses (EINVAL) a length
    // other than the rings' total.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `at` is a readable mapping of `len` bytes made above and unmapped below;
    // the kernel may change its bytes meanwhile (u8 has no invalid values).
    let copy = unsafe { std::slice::from_raw_parts(at.cast::<u8>(), len) }.to_vec();
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    Errno::result(unsafe { libc::munmap(at, len) })?;
    Ok(copy)
}

/// `getsockname(fd)`: the address bytes (at most 128).
/// See [getsockname(2)](https://man7.org/linux/man-pages/man2/getsockname.2.html).
pub fn sockname(fd: BorrowedFd<'_>) -> nix::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`, and updates `len`.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    Errno::result(r)?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// Packet socket options (linux/if_packet.h).
pub mod packet {
    pub const SOL_PACKET: i32 = 263;
    pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
    pub const PACKET_RX_RING: i32 = 5;
    pub const PACKET_COPY_THRESH: i32 = 7;
    pub const PACKET_AUXDATA: i32 = 8;
    pub const PACKET_ORIGDEV: i32 = 9;
    pub const PACKET_VERSION: i32 = 10;
    pub const PACKET_RESERVE: i32 = 12;
    pub const PACKET_TX_RING: i32 = 13;
    pub const PACKET_LOSS: i32 = 14;
    pub const PACKET_TIMESTAMP: i32 = 17;
    pub const PACKET_FANOUT: i32 = 18;
    pub const PACKET_TX_HAS_OFF: i32 = 19;
    pub const PACKET_QDISC_BYPASS: i32 = 20;
    pub const PACKET_IGNORE_OUTGOING: i32 = 23;
    pub const PACKET_VNET_HDR_SZ: i32 = 24;
}

/// Netlink socket options (linux/netlink.h).
pub mod netlink {
    /// `SOL_NETLINK`, `NETLINK_ADD_MEMBERSHIP`, and the options with an `int` value.
    pub const SOL_NETLINK: i32 = 270;
    pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
    pub const INT_OPTIONS: [i32; 7] = [
        3,  // NETLINK_PKTINFO
        4,  // NETLINK_BROADCAST_ERROR
        5,  // NETLINK_NO_ENOBUFS
        8,  // NETLINK_LISTEN_ALL_NSID
        10, // NETLINK_CAP_ACK
        11, // NETLINK_EXT_ACK
        12, // NETLINK_GET_STRICT_CHK
    ];
}

/// `SOCK_PACKET` (linux/net.h): the obsolete packet socket type, which libc marks
/// deprecated but packet sockets of that type still exist.
pub const SOCK_PACKET: i32 = 10;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod sender_tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_peek_reports_the_sender_address_abstract_path_or_none() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("stasis-peek-{}", std::process::id());
        let srv = UnixDatagram::bind_addr(
            &std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let named = UnixDatagram::bind(&path).unwrap();
        named
            .send_to_addr(b"x", &srv.local_addr().unwrap())
            .unwrap();
        let unnamed = UnixDatagram::unbound().unwrap();
        unnamed
            .send_to_addr(b"y", &srv.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 16];
        let p = recv_peek(srv.as_fd(), &mut buf).unwrap();
        assert_eq!(p.sender, path.as_os_str().as_encoded_bytes());
        srv.recv(&mut buf).unwrap();
        let p = recv_peek(srv.as_fd(), &mut buf).unwrap();
        assert_eq!(p.sender, b"");
    }
}
