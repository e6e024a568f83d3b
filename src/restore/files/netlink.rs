//! Netlink sockets made again: `socket`, the early options, `bind` to the saved port id
//! (failing if another socket has it now: the port id is how the kernel and peers
//! address it), every group joined, `connect` to the saved destination, the
//! `SOL_NETLINK` options, the late options and the file status flags. The dump side is
//! `dump/files/netlink.rs`.

use super::{sockopts, Install};
use crate::image::sock::NetlinkSocket;
use crate::restore::RestoreError;
use crate::sys::socket::netlink::{NETLINK_ADD_MEMBERSHIP, SOL_NETLINK};

pub fn restore(at: &Install, n: &NetlinkSocket) -> Result<(), RestoreError> {
    let args = [
        libc::AF_NETLINK as u64,
        n.sock_type as u64,
        n.protocol as u64,
    ];
    let fd = crate::restore::ns::net_sockets::around(at.child, n.ino, || {
        at.call("socket(AF_NETLINK)", libc::SYS_socket, &args)
    })?;
    sockopts::early(at.child, fd, &n.opts)?;
    if n.portid != 0 {
        address_call(at, "bind(AF_NETLINK)", libc::SYS_bind, fd, n.portid, 0)?;
    }
    for &group in &n.groups {
        set(at, fd, NETLINK_ADD_MEMBERSHIP, group as i32)?;
    }
    if let Some((portid, group)) = n.dst {
        let groups = if group == 0 { 0 } else { 1u32 << (group - 1) };
        address_call(
            at,
            "connect(AF_NETLINK)",
            libc::SYS_connect,
            fd,
            portid,
            groups,
        )?;
    }
    for &(name, value) in &n.ints {
        set(at, fd, name, value)?;
    }
    sockopts::late(at.child, fd, &n.opts, false)?;
    at.set_status_flags(fd)?;
    at.place(fd)
}

/// `bind` or `connect` (`nr`) to a `struct sockaddr_nl` (family, port id, groups).
fn address_call(
    at: &Install,
    name: &'static str,
    nr: i64,
    fd: u64,
    portid: u32,
    groups: u32,
) -> Result<(), RestoreError> {
    let mut sa = (libc::AF_NETLINK as u16).to_ne_bytes().to_vec();
    sa.extend_from_slice(&[0, 0]);
    sa.extend_from_slice(&portid.to_ne_bytes());
    sa.extend_from_slice(&groups.to_ne_bytes());
    let addr = at.child.put(super::prep::ADDR_OFF, &sa)?;
    at.call(name, nr, &[fd, addr, sa.len() as u64])?;
    Ok(())
}

fn set(at: &Install, fd: u64, name: i32, value: i32) -> Result<(), RestoreError> {
    let addr = at.child.put(super::prep::ARG_OFF, &value.to_ne_bytes())?;
    let args = [fd, SOL_NETLINK as u64, name as u64, addr, 4];
    at.call("setsockopt(SOL_NETLINK)", libc::SYS_setsockopt, &args)?;
    Ok(())
}
