//! Sockets beyond the victim round trips (tests/victims.rs runs `unix_sockets`,
//! `inet_sockets` and `pty` each three ways): refusals that must leave the task running,
//! the options that lift them, and TCP connections to a peer outside the dumped process.

mod common;

use common::{Proc, Start, Status, TempDir};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn victim(tmp: &TempDir, name: &str, args: &[&str]) -> Option<Proc> {
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    let mut v = common::spawn_victim(name, args, &work);
    match v.wait_ready() {
        Start::Ready => Some(v),
        Start::Skip(why) => {
            common::skip(name, &why);
            None
        }
    }
}

/// The dump fails with a message naming the pid and containing every `words`; the task
/// runs on and passes its own verification.
fn assert_refused(mut v: Proc, tmp: &TempDir, flags: &[&str], words: &[&str]) {
    let out = common::dump(v.pid, &tmp.join("img"), flags);
    let msg = out.assert_failed("dump");
    assert!(msg.contains(&v.pid.to_string()), "pid not named: {msg}");
    for w in words {
        assert!(msg.contains(w), "{w:?} missing from: {msg}");
    }
    common::assert_untouched(&v);
    v.go_and_expect_pass();
}

fn dump_restore(v: &mut Proc, tmp: &TempDir, flags: &[&str]) -> Proc {
    let img = tmp.join("img");
    common::dump(v.pid, &img, flags).assert_ok("stasis dump");
    assert_eq!(
        v.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    assert_eq!(pid, v.pid);
    Proc::adopt(pid, &v.log)
}

#[test]
fn dump_refuses_fds_in_flight() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_fds_in_flight");
    let tmp = TempDir::new("inflight");
    let Some(v) = victim(&tmp, "unix_sockets", &["inflight"]) else {
        return;
    };
    assert_refused(
        v,
        &tmp,
        &[],
        &[
            "fd 10 ",
            "file descriptors in flight",
            "AF_NETLINK",
            "--skip-in-flight",
        ],
    );
}

#[test]
fn skip_in_flight_drops_the_fd() {
    let _serial = common::serial();
    require_privileged!("skip_in_flight_drops_the_fd");
    let tmp = TempDir::new("inflight-dropped");
    let Some(mut v) = victim(&tmp, "unix_sockets", &["inflight-dropped"]) else {
        return;
    };
    dump_restore(&mut v, &tmp, &["--skip-in-flight"]).go_and_expect_pass();
}

#[test]
fn dump_refuses_established_tcp_without_option() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_established_tcp_without_option");
    let tmp = TempDir::new("tcp-refused");
    let Some(v) = victim(&tmp, "inet_sockets", &["established"]) else {
        return;
    };
    assert_refused(
        v,
        &tmp,
        &[],
        &["fd 14 ", "established TCP connection", "--tcp-established"],
    );
}

#[test]
fn dump_refuses_netlink_socket() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_netlink_socket");
    let tmp = TempDir::new("netlink");
    let script = "import socket, sys, time\n\
                  s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n\
                  print('READY', s.fileno(), flush=True)\n\
                  time.sleep(1000)\n";
    let mut py = common::spawn_logged(
        Command::new("python3").arg("-c").arg(script),
        &tmp.join("py.log"),
    );
    let fd = wait_line(&py, "READY")
        .split_whitespace()
        .nth(1)
        .map(str::to_string);
    let out = common::dump(py.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a netlink socket");
    let fd = fd.expect("fd printed");
    for w in [format!("fd {fd} "), py.pid.to_string(), "AF_NETLINK".into()] {
        assert!(msg.contains(&w), "{w:?} missing from: {msg}");
    }
    common::assert_untouched(&py);
    py.signal(libc::SIGKILL);
    py.wait_exit(Duration::from_secs(10));
}

fn wait_line(p: &Proc, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = p.log_text().lines().find(|l| l.starts_with(prefix)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix} line; log:\n{}",
            p.log_text()
        );
        common::sleep_ms(20);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A TCP connection to a peer outside the dumped process (this test, on loopback) lives
/// through dump and restore: the peer writes a numbered line every 20 ms the whole time
/// (the lines sent while the task is down are held by the network lock and retransmitted
/// once it is back), the task echoes each line; no line may be lost, doubled or reordered.
#[test]
fn tcp_peer_outside_keeps_talking() {
    let _serial = common::serial();
    require_privileged!("tcp_peer_outside_keeps_talking");
    if !have("nft") {
        return common::skip(
            "tcp_peer_outside_keeps_talking",
            "nft (nftables) is not installed",
        );
    }
    let tmp = TempDir::new("tcp-peer");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let Some(mut v) = victim(&tmp, "tcp_echo", &[&port]) else {
        return;
    };
    let (conn, _) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let talker = talk(conn.try_clone().expect("clone"));
    let mut echoes = BufReader::new(conn);
    let mut expect = 0u64;
    let mut read_until = |n: u64| {
        while expect < n {
            let mut line = String::new();
            echoes.read_line(&mut line).expect("echo");
            assert_eq!(
                line.trim_end(),
                format!("line {expect}"),
                "echo out of order"
            );
            expect += 1;
        }
    };
    read_until(20);
    let restored = dump_restore(&mut v, &tmp, &["--tcp-established"]);
    let img = tmp.join("img");
    let shown = common::stasis(&["inspect".as_ref(), img.as_os_str()]);
    assert!(
        shown.stdout.contains("established") && shown.stdout.contains("network locked"),
        "the image does not hold a locked connection:\n{}",
        shown.stdout
    );
    // Lines written while it was down come back too, then new ones.
    let sent_meanwhile = talker.count();
    read_until(sent_meanwhile + 20);
    talker.stop();
    assert!(
        !common::find_inventories(tmp.path()).is_empty(),
        "no image was written"
    );
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&nft.stdout).contains(&format!("stasis_{}", v.pid)),
        "the network lock is still there"
    );
    let mut restored = restored;
    restored.go_and_expect_pass();
}

/// Writes "line N\n" every 20 ms on its own thread.
struct Talker {
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn talk(mut conn: TcpStream) -> Talker {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (count.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let n = c.load(Ordering::SeqCst);
            if conn.write_all(format!("line {n}\n").as_bytes()).is_err() {
                return;
            }
            c.store(n + 1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Talker { count, stop }
}

impl Talker {
    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
