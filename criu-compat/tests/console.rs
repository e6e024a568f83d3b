//! A container's console as runc and podman hold it: the tree's session runs on a pty
//! whose master is outside the tree (here the test's, in a runtime runc's or conmon's).
//! Dumped and restored over the swrk RPC with `orphan_pts_master`, the new master comes
//! with the `orphan-pts-master` notification; the restored process reads from it and
//! answers on it, with its terminal's number, window size and foreground group as they
//! were. Without `orphan_pts_master` the restore is refused before any process is made.
//! Needs root; run with `--test-threads=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proto::{CriuOpts, CriuReqType};
use common::{req, Session};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::pty::{openpty, Winsize};

/// Reads a line from the terminal, answers with what it sees of it.
const ECHO: &str = r#"
import fcntl, os, struct, sys, termios
while True:
    line = sys.stdin.readline()
    if not line:
        break
    rows, cols = struct.unpack('hh', fcntl.ioctl(0, termios.TIOCGWINSZ, b'\0' * 4))
    fg = os.tcgetpgrp(0) == os.getpgrp()
    os.close(os.open('/dev/tty', os.O_RDWR))
    print(f"got {line.strip()} {rows}x{cols} {os.ttyname(0)} fg={fg}", flush=True)
"#;

/// Writes `line` to the master and waits (5 s at most) for the answer that starts with
/// `got <line>`; returns it.
fn ask(master: &OwnedFd, line: &str) -> String {
    fcntl(master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK | OFlag::O_RDWR)).unwrap();
    nix::unistd::write(master, format!("{line}\n").as_bytes()).unwrap();
    let (mut seen, want) = (String::new(), format!("got {line} "));
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let mut buf = [0u8; 512];
        match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        if let Some(at) = seen.find(&want) {
            if let Some(len) = seen[at..].find('\n') {
                return seen[at..at + len].trim().to_string();
            }
        }
    }
    panic!("no answer to {line:?} on the console; read {seen:?}");
}

fn opts(images: &File, pid: Option<i32>, orphan: bool) -> CriuOpts {
    CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid,
        log_level: Some(4),
        log_file: Some(
            if pid.is_none() {
                "restore.log"
            } else {
                "dump.log"
            }
            .into(),
        ),
        notify_scripts: Some(true),
        rst_sibling: Some(pid.is_none()),
        orphan_pts_master: Some(orphan),
        ..Default::default()
    }
}

#[test]
fn console_master_outside_the_tree_is_handed_over() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP console_master_outside_the_tree_is_handed_over: needs root");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = File::open(dir.path()).unwrap();
    let size = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).unwrap();
    // The master stays the test's alone (openpty's fds are inherited by default).
    fcntl(&pty.master, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    let stdio = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut victim = Command::new("setsid")
        .args(["--ctty", "/usr/bin/python3", "-u", "-c", ECHO])
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap();
    drop(pty.slave);
    let before = ask(&pty.master, "one");
    let tty = before.split_whitespace().nth(3).unwrap().to_string();
    assert_eq!(before, format!("got one 33x101 {tty} fg=True"));
    // The child is no group leader: setsid execs python in place, the session's leader.
    let pid = victim.id() as i32;

    let mut s = Session::start();
    let (resp, _) = s.call(&req(
        CriuReqType::Dump,
        Some(opts(&images, Some(pid), true)),
    ));
    s.finish();
    assert!(resp.success, "dump: {:?}", resp.cr_errmsg);
    victim.wait().unwrap();
    drop(pty.master);

    let mut s = Session::start();
    let (resp, _) = s.call(&req(CriuReqType::Restore, Some(opts(&images, None, false))));
    s.finish();
    assert!(!resp.success, "restored without anyone to take the console");
    let msg = resp.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("master outside the dumped tree"), "{msg}");

    let mut s = Session::start();
    let (resp, names) = s.call(&req(CriuReqType::Restore, Some(opts(&images, None, true))));
    let fds = std::mem::take(&mut s.fds);
    s.finish();
    assert!(resp.success, "restore: {:?}", resp.cr_errmsg);
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("orphan-pts-master") < at("post-restore"), "{names:?}");
    let (name, master) = fds.into_iter().next().expect("a master came along");
    assert_eq!(name, "orphan-pts-master");
    let after = ask(&master, "two");
    assert_eq!(after, format!("got two 33x101 {tty} fg=True"));
    let root = resp.restore.unwrap().pid;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(root),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(root), None);
}
