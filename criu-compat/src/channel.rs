//! The swrk socket: a `SOCK_SEQPACKET` unix socket given by the client as fd N, one
//! protobuf message per packet (no length prefix), as CRIU's `swrk` speaks it. A file
//! descriptor rides along a packet as `SCM_RIGHTS` (CRIU's `orphan-pts-master`).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, MsgFlags, UnixAddr};
use prost::Message;

use crate::proto::{CriuReq, CriuResp};

/// The largest request accepted (runc's requests are a few KiB).
const MAX_PACKET: usize = 1 << 20;

/// The client's end of the conversation: fd `fd` of this process.
pub struct Channel {
    fd: RawFd,
}

impl Channel {
    pub fn new(fd: RawFd) -> Self {
        Channel { fd }
    }

    /// The next request; `Ok(None)` once the client closed its end.
    pub fn recv(&self) -> Result<Option<CriuReq>, String> {
        let mut buf = vec![0u8; MAX_PACKET];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<UnixAddr>(self.fd, &mut iov, None, MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("receive a request on fd {}: {e}", self.fd))?;
        if got.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(format!("a request larger than {MAX_PACKET} bytes"));
        }
        let len = got.bytes;
        if len == 0 {
            return Ok(None);
        }
        CriuReq::decode(&buf[..len])
            .map(Some)
            .map_err(|e| format!("decode a criu_req of {len} bytes: {e}"))
    }

    /// Sends one response, with `fd` attached if given.
    pub fn send(&self, resp: &CriuResp, fd: Option<RawFd>) -> Result<(), String> {
        let bytes = resp.encode_to_vec();
        let iov = [IoSlice::new(&bytes)];
        let fds: Vec<RawFd> = fd.into_iter().collect();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<UnixAddr>(self.fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
            .map(drop)
            .map_err(|e| format!("send a criu_resp on fd {}: {e}", self.fd))
    }
}
