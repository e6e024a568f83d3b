//! CRIU's notifications over the swrk socket: at each [`Point`] of a dump or restore, a
//! `criu_resp` of type NOTIFY naming the point (and the root's pid) goes to the client,
//! which answers with a NOTIFY request whose `notify_success` says whether to go on.
//! Sent only when the client asked for them (`notify_scripts`), as CRIU does.

use stasis::hooks::{Hooks, Point};

use crate::channel::Channel;
use crate::log::Log;
use crate::proto::{CriuNotify, CriuReqType, CriuResp};

pub struct Notifier<'a> {
    channel: &'a Channel,
    enabled: bool,
    log: Log,
    /// A refusal the library does not act on (post-resume), kept to be logged.
    pub late_failure: Option<String>,
}

impl<'a> Notifier<'a> {
    pub fn new(channel: &'a Channel, enabled: bool, log: Log) -> Self {
        Notifier {
            channel,
            enabled,
            log,
            late_failure: None,
        }
    }

    fn exchange(&mut self, name: &'static str, pid: i32) -> Result<(), String> {
        self.exchange_with(name, pid, None)
    }

    /// A notification carrying fd `fd` (`SCM_RIGHTS`), answered as the others.
    fn exchange_with(
        &mut self,
        name: &'static str,
        pid: i32,
        fd: Option<std::os::fd::RawFd>,
    ) -> Result<(), String> {
        let resp = CriuResp {
            r#type: CriuReqType::Notify as i32,
            success: true,
            notify: Some(CriuNotify {
                script: Some(name.into()),
                pid: (pid != 0).then_some(pid),
            }),
            ..Default::default()
        };
        self.channel.send(&resp, fd)?;
        let reply = self.channel.recv()?.ok_or("the client closed the socket")?;
        if reply.r#type() != CriuReqType::Notify {
            return Err(format!(
                "the client answered with a {:?} request",
                reply.r#type()
            ));
        }
        match reply.notify_success() {
            true => Ok(()),
            false => Err("the client reported a failure".into()),
        }
    }
}

impl Hooks for Notifier<'_> {
    fn at(&mut self, point: Point, pid: i32) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        self.log
            .info(&format!("Notify {} (pid {pid})", point.criu_name()));
        let result = self.exchange(point.criu_name(), pid);
        if point == Point::PostResume {
            self.late_failure = result.as_ref().err().cloned();
        }
        result
    }

    /// CRIU's `orphan-pts-master`: the new master rides along the notification (sent
    /// whether or not the client asked for the other notifications, as it asked for this
    /// one with `orphan_pts_master`); runc passes it to the container's console socket.
    fn orphan_pts_master(&mut self, master: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        self.log.info("Notify orphan-pts-master");
        self.exchange_with("orphan-pts-master", 0, Some(master.as_raw_fd()))
    }
}
