//! The client side of `stasis-criu swrk N` for the tests: a SOCK_SEQPACKET socketpair,
//! one `criu_req`/`criu_resp` per packet, notifications answered (and an fd that rides
//! along one, as `orphan-pts-master`'s master does, kept). Its one `unsafe` takes
//! ownership of that received fd (nix hands it over as a raw number).

#![allow(clippy::unwrap_used, dead_code, unsafe_code)]

pub mod proto {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use prost::Message;
use proto::{CriuOpts, CriuReq, CriuReqType, CriuResp};

pub const BIN: &str = env!("CARGO_BIN_EXE_stasis-criu");

/// The client's end of one `stasis-criu swrk N`.
pub struct Session {
    sock: OwnedFd,
    child: Child,
    /// The fds that came with notifications, by notification name.
    pub fds: Vec<(String, OwnedFd)>,
}

impl Session {
    pub fn start() -> Session {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        let child = Command::new(BIN)
            .args(["swrk", &theirs.as_raw_fd().to_string()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        drop(theirs);
        Session {
            sock: ours,
            child,
            fds: Vec::new(),
        }
    }

    pub fn send(&self, req: &CriuReq) {
        let bytes = req.encode_to_vec();
        sendmsg::<UnixAddr>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    /// The next response, and the fd that came with it.
    pub fn recv(&self) -> (CriuResp, Option<OwnedFd>) {
        let mut buf = vec![0u8; 1 << 16];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the fd just arrived by SCM_RIGHTS and nothing else owns it.
                fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        let n = msg.bytes;
        assert!(n > 0, "stasis-criu closed the socket");
        (CriuResp::decode(&buf[..n]).unwrap(), fd)
    }

    /// Sends `req` and answers every notification with success; returns the final
    /// response and the notification names in order.
    pub fn call(&mut self, req: &CriuReq) -> (CriuResp, Vec<String>) {
        self.call_failing(req, "")
    }

    /// [`Session::call`], answering the notification `fail` with a failure.
    pub fn call_failing(&mut self, req: &CriuReq, fail: &str) -> (CriuResp, Vec<String>) {
        self.send(req);
        let mut names = Vec::new();
        loop {
            let (resp, fd) = self.recv();
            if resp.r#type() != CriuReqType::Notify {
                return (resp, names);
            }
            let n = resp.notify.clone().unwrap();
            names.push(n.script().to_string());
            if n.script() == "post-restore" {
                assert!(n.pid() > 0, "post-restore carries the pid");
            }
            if let Some(fd) = fd {
                self.fds.push((n.script().to_string(), fd));
            }
            self.send(&CriuReq {
                r#type: CriuReqType::Notify as i32,
                notify_success: Some(n.script() != fail),
                ..Default::default()
            });
        }
    }

    pub fn finish(mut self) {
        drop(self.sock);
        self.child.wait().unwrap();
    }
}

pub fn req(kind: CriuReqType, opts: Option<CriuOpts>) -> CriuReq {
    CriuReq {
        r#type: kind as i32,
        opts,
        keep_open: Some(false),
        ..Default::default()
    }
}
