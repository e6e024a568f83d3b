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
            "a netlink socket with messages queued",
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
fn dump_refuses_netlink_socket_with_a_message_queued() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_netlink_socket_with_a_message_queued");
    let tmp = TempDir::new("netlink");
    let script = "import socket, struct, sys, time\n\
                  s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)\n\
                  s.bind((0, 0))\n\
                  s.sendto(struct.pack('=IHHII', 16, 0x1234, 0, 0, 0), s.getsockname())\n\
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
    let msg = out.assert_failed("dump of a netlink socket with a message queued");
    let fd = fd.expect("fd printed");
    let what = "is a netlink socket with messages queued".to_string();
    for w in [format!("fd {fd} "), py.pid.to_string(), what] {
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
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    peer_keeps_talking("tcp-peer", listener, "127.0.0.1", false);
}

/// The same with the peer in another network namespace, joined to ours by a veth pair:
/// its segments cross a real interface (not loopback), and the network lock must hold
/// them there too.
#[test]
fn tcp_peer_across_netns_keeps_talking() {
    let _serial = common::serial();
    let test = "tcp_peer_across_netns_keeps_talking";
    require_privileged!("tcp_peer_across_netns_keeps_talking");
    for tool in ["nft", "ip"] {
        if !have(tool) {
            return common::skip(test, &format!("{tool} is not installed"));
        }
    }
    let net = match PeerNet::create() {
        Ok(net) => net,
        Err(why) => return common::skip(test, &why),
    };
    let listener = net.listen();
    peer_keeps_talking("tcp-netns", listener, PeerNet::PEER, false);
}

/// Where `nft` cannot be run, the network lock cannot be taken nor lifted: a dump of a
/// connection to a peer outside is refused before its socket changes (the peer keeps
/// talking to the running task), and the restore of an image holding a locked connection
/// is refused before any process exists; with nft back both go through.
#[test]
fn tcp_peer_outside_without_nft_is_refused() {
    let _serial = common::serial();
    require_privileged!("tcp_peer_outside_without_nft_is_refused");
    if !have("nft") {
        return common::skip(
            "tcp_peer_outside_without_nft_is_refused",
            "nft (nftables) is not installed",
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    peer_keeps_talking("tcp-no-nft", listener, "127.0.0.1", true);
}

/// `stasis ARGS` with a PATH holding no `nft`: the output of the refused command, which
/// must name `nft`, its package, `what` and the pid.
fn refused_without_nft(tmp: &TempDir, args: &[&std::ffi::OsStr], what: &str, pid: i32) {
    let empty = tmp.join("no-nft");
    fs::create_dir_all(&empty).expect("mkdir");
    let out =
        common::start(common::stasis_cmd(args).env("PATH", &empty)).finish(common::STASIS_TIMEOUT);
    let msg = out.assert_failed("stasis without nft");
    for w in ["nft", "nftables", what, &pid.to_string()] {
        assert!(msg.contains(w), "{w:?} missing from: {msg}");
    }
}

/// The peer (this test) accepts the `tcp_echo` victim's connection to `addr` on
/// `listener`, talks through a dump with `--tcp-established` and a restore, and checks
/// every echo; the lock must be gone afterwards. With `no_nft_first`, a dump and a
/// restore without `nft` are refused first.
fn peer_keeps_talking(tag: &str, listener: TcpListener, addr: &str, no_nft_first: bool) {
    let tmp = TempDir::new(tag);
    let port = listener.local_addr().expect("addr").port().to_string();
    let Some(mut v) = victim(&tmp, "tcp_echo", &[&port, addr]) else {
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
    let img = tmp.join("img");
    let restored = if no_nft_first {
        let (pid, dir) = (v.pid.to_string(), img.as_os_str());
        let args = ["dump", "-t", &pid, "-D"].map(std::ffi::OsStr::new);
        let dump = [&args[..], &[dir, "--tcp-established".as_ref()]].concat();
        refused_without_nft(&tmp, &dump, "fd 10 of pid", v.pid);
        common::assert_untouched(&v);
        read_until(40);
        common::dump(v.pid, &img, &["--tcp-established"]).assert_ok("stasis dump");
        v.wait_exit(Duration::from_secs(10));
        let restore = ["restore", "-d", "-D"].map(std::ffi::OsStr::new);
        refused_without_nft(
            &tmp,
            &[&restore[..], &[dir]].concat(),
            "fd 10 of pid",
            v.pid,
        );
        assert_eq!(common::proc_state(v.pid), None, "a process was created");
        let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
        Proc::adopt(pid, &v.log)
    } else {
        dump_restore(&mut v, &tmp, &["--tcp-established"])
    };
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

/// A network namespace holding one end of a veth pair (`PEER`), the other end in ours
/// (`HOST`); deleted with the pair on drop.
struct PeerNet {
    name: String,
}

impl PeerNet {
    const HOST: &'static str = "10.213.77.1";
    const PEER: &'static str = "10.213.77.2";

    /// Sets it up, or says why it cannot be.
    fn create() -> Result<PeerNet, String> {
        let pid = std::process::id();
        let net = PeerNet {
            name: format!("stasis-peer-{pid}"),
        };
        let (host, peer) = (format!("stp{pid}h"), format!("stp{pid}n"));
        let ns = net.name.as_str();
        let steps: [&[&str]; 7] = [
            &["netns", "add", ns],
            &[
                "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", ns,
            ],
            &["addr", "add", &format!("{}/24", Self::HOST), "dev", &host],
            &["link", "set", &host, "up"],
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", Self::PEER),
                "dev",
                &peer,
            ],
            &["-n", ns, "link", "set", &peer, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for args in steps {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(net)
    }

    /// A listener on `PEER` inside the namespace: bound by a thread that entered it (a
    /// socket stays in the namespace it was made in, whoever uses it later).
    fn listen(&self) -> TcpListener {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            TcpListener::bind((Self::PEER, 0)).expect("bind in the namespace")
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
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
