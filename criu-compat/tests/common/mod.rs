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
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        Session::start_under(&[])
    }

    /// `stasis-criu swrk N` run by the command `prefix` (e.g. `unshare --pid --fork`).
    pub fn start_under(prefix: &[&str]) -> Session {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        let (program, args) = match prefix.split_first() {
            Some((p, rest)) => (*p, [rest, &[BIN]].concat()),
            None => (BIN, Vec::new()),
        };
        let child = Command::new(program)
            .args(args)
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

/// A python process counting into `file` every 50 ms, in its own session.
pub fn counter(file: &Path) -> Child {
    let script = format!(
        "import time\ni = 0\nwhile True:\n    i += 1\n    open({:?}, 'w').write(str(i))\n    time.sleep(0.05)\n",
        file.display().to_string()
    );
    Command::new("setsid")
        .args(["/usr/bin/python3", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A temporary directory with an empty `images/`, and a counter into its `count` that
/// has run for a while.
pub fn started_counter() -> (tempfile::TempDir, Child, i32) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let victim = counter(&dir.path().join("count"));
    let pid = victim.id() as i32;
    std::thread::sleep(Duration::from_millis(300));
    (dir, victim, pid)
}

/// Reaps the killed victim and whatever of its tree was reparented to us.
pub fn reap(mut victim: Child) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    victim.wait().unwrap();
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(None, Some(WaitPidFlag::WNOHANG))
    {}
}

pub fn count(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The counter restored as `pid` counts on from where it was dumped; then it is killed
/// and reaped.
pub fn assert_counts_on(pid: i32, file: &Path, dumped: u64) {
    // The counter rewrites the file: a read may catch it empty (0); wait for a number
    // above the dumped one, for up to 3 s.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut now = count(file);
    while now <= dumped && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        now = count(file);
    }
    assert!(
        now > dumped,
        "restored counter at {now}, dumped at {dumped}"
    );
    kill_tree(pid);
}

pub fn kill_tree(pid: i32) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-s", &pid.to_string()])
        .status();
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(p, None);
}

/// Makes the test a subreaper; false (with a SKIP line) when not root.
pub fn privileged(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP {test}: needs root");
        return false;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    true
}

/// Runs stasis-criu with `args`: Err(its stderr) if it fails.
pub fn criu(args: &[&str]) -> Result<(), String> {
    let out = Command::new(BIN).args(args).output().unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Whether dirty-page tracking (pre-dump) works here; prints a SKIP line if not.
pub fn tracking(test: &str) -> bool {
    let ok = stasis::check::tracking_method().is_some();
    if !ok {
        println!("SKIP {test}: no dirty-page tracking here");
    }
    ok
}

/// `pre/` and `last/`, made under `dir`: the images dirs of a pre-dump and its dump.
pub fn chain_dirs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (pre, last) = (dir.join("pre"), dir.join("last"));
    std::fs::create_dir(&pre).unwrap();
    std::fs::create_dir(&last).unwrap();
    (pre, last)
}
