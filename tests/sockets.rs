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
    common::reap_image_tree(&img);
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

/// A datagram queued on a socket that connected elsewhere since cannot be sent again
/// from its sender's address (only the peer can send to it now): refused, naming the
/// socket and the sender.
#[test]
fn dump_refuses_a_datagram_its_sender_cannot_send_again() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_a_datagram_its_sender_cannot_send_again");
    let tmp = TempDir::new("senders");
    let Some(v) = victim(&tmp, "unix_senders", &["connected"]) else {
        return;
    };
    let sender = format!("from the address @snd-C-{}", v.pid);
    let words = [
        "fd 10 ",
        "unix datagram socket (socket:[",
        &sender,
        "only its peer",
    ];
    assert_refused(v, &tmp, &[], &words);
}

/// A unix socket whose SO_PEERCRED names a process that exited (a socketpair made by a
/// child that changed its ids, as zdtm sock_peercred) is refused, naming the credentials.
#[test]
fn dump_refuses_peer_credentials_of_an_exited_process() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_peer_credentials_of_an_exited_process");
    let tmp = TempDir::new("peercred");
    let Some(v) = victim(&tmp, "unix_peercred", &["dead"]) else {
        return;
    };
    let words = [
        "fd 10 ",
        "peer credentials (SO_PEERCRED: pid ",
        "uid 4321, gid 4321",
        "is not a process of the dumped tree",
    ];
    assert_refused(v, &tmp, &[], &words);
}

/// Dumps and restores victim `unix_peercred` in `mode`, which then checks every socket's
/// SO_PEERCRED is what it was (and, for `forked`, names and data both ways).
fn peercred_round_trip(mode: &str) {
    let tmp = TempDir::new(&format!("peercred-{mode}"));
    let Some(mut v) = victim(&tmp, "unix_peercred", &[mode]) else {
        return;
    };
    let _family = common::TreeGuard(common::descendants(v.pid));
    let mut restored = dump_restore(&mut v, &tmp, &[]);
    restored.go_and_expect_pass();
}

/// A socketpair made by a child of the tree and now held only by its parent names the
/// child's pid: the restore makes it in the child and hands both ends to the parent.
#[test]
fn peer_credentials_of_a_pair_made_by_another_process_come_back() {
    let _serial = common::serial();
    require_privileged!("peer_credentials_of_a_pair_made_by_another_process_come_back");
    peercred_round_trip("moved");
}

/// A connection accepted from a client whose effective ids were not the listener's: its
/// two ends have different credentials, made by listen/accept and connect with each
/// one's ids.
#[test]
fn peer_credentials_of_a_connection_from_other_ids_come_back() {
    let _serial = common::serial();
    require_privileged!("peer_credentials_of_a_connection_from_other_ids_come_back");
    peercred_round_trip("mixed");
}

/// A parent listens (a path and an abstract name), its child connects as uid/gid 4321
/// and the parent accepts (zdtm deleted_unix_sock, overmount_sock): each end names the
/// other process after the restore, as before, the accepted ends keep their listener's
/// names, data flows both ways and the listener still accepts.
#[test]
fn peer_credentials_of_a_connection_accepted_from_a_child_come_back() {
    let _serial = common::serial();
    require_privileged!("peer_credentials_of_a_connection_accepted_from_a_child_come_back");
    peercred_round_trip("forked");
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

/// A TCP connection of a network namespace a process of the tree made is refused by name,
/// whatever the sockets of the tree's namespaces held across them (`netns_cross`).
#[test]
fn dump_refuses_tcp_connection_of_a_made_netns() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_tcp_connection_of_a_made_netns");
    let tmp = TempDir::new("tcp-made-netns");
    let Some(mut v) = victim(&tmp, "netns_cross", &["conn"]) else {
        return;
    };
    let holder = common::descendants(v.pid)[0];
    let out = common::dump(v.pid, &tmp.join("img"), &["--tcp-established"]);
    let msg = out.assert_failed("dump");
    let words = [
        format!("fd 24 of pid {holder} is a TCP connection"),
        format!("of the network namespace pid {holder} made"),
        "connections of the tree's own network namespace only".to_string(),
    ];
    for w in &words {
        assert!(msg.contains(w.as_str()), "{w:?} missing from: {msg}");
    }
    common::assert_untouched(&v);
    v.go_and_expect_pass();
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

/// A process of the host's network namespace holding sockets made in another one (its
/// child unshared a namespace, made them and passed them over `SCM_RIGHTS`): neither a
/// UDP nor a unix socket can be made again there, so the dump is refused naming the fd
/// and the namespace (they came back in the host's before), and the process runs on.
#[test]
fn dump_refuses_sockets_of_a_namespace_outside_the_tree() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_sockets_of_a_namespace_outside_the_tree");
    for kind in ["udp", "unix"] {
        let tmp = TempDir::new(&format!("foreign-{kind}"));
        let script = "import array, ctypes, os, socket, sys, time\n\
                      a, b = socket.socketpair()\n\
                      if os.fork() == 0:\n\
                      \x20   assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0\n\
                      \x20   if sys.argv[1] == 'udp':\n\
                      \x20       s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                      \x20       s.bind(('0.0.0.0', 45455))\n\
                      \x20   else:\n\
                      \x20       s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                      \x20       s.bind(b'\\0stasis-foreign-ns')\n\
                      \x20   fds = array.array('i', [s.fileno()])\n\
                      \x20   b.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])\n\
                      \x20   os._exit(0)\n\
                      os.wait()\n\
                      msg, anc, _, _ = a.recvmsg(1, socket.CMSG_LEN(4))\n\
                      fd = array.array('i', anc[0][2])[0]\n\
                      a.close(); b.close()\n\
                      print('READY', fd, flush=True)\n\
                      time.sleep(1000)\n";
        let mut py = common::spawn_logged(
            Command::new("python3").arg("-c").arg(script).arg(kind),
            &tmp.join("py.log"),
        );
        let fd = wait_line(&py, "READY")
            .split_whitespace()
            .nth(1)
            .map(str::to_string)
            .expect("fd printed");
        let out = common::dump(py.pid, &tmp.join("img"), &[]);
        let msg = out.assert_failed(&format!("dump of a {kind} socket of another netns"));
        let words = [
            format!(
                "fd {fd} of pid {} is a socket of the network namespace net:[",
                py.pid
            ),
            "not of the tree's".to_string(),
        ];
        for w in &words {
            assert!(
                msg.contains(w.as_str()),
                "{kind}: {w:?} missing from: {msg}"
            );
        }
        common::assert_untouched(&py);
        py.signal(libc::SIGKILL);
        py.wait_exit(Duration::from_secs(10));
    }
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
/// through dump and restore under each `--network-lock` mode and IP version: the peer
/// writes a numbered line every 20 ms the whole time (the lines sent while the task is
/// down are dropped by the lock — a reset would end the connection — and retransmitted
/// once it is back), the task echoes each line; no line may be lost, doubled or
/// reordered. The lock is there while the task is down and gone after the restore.
#[test]
fn tcp_lock_iptables_v4() {
    lock_test("tcp-ipt4", "iptables", "127.0.0.1");
}

#[test]
fn tcp_lock_iptables_v6() {
    lock_test("tcp-ipt6", "iptables", "::1");
}

/// A v4-mapped IPv6 connection: its packets are IPv4, held by `iptables` rules.
#[test]
fn tcp_lock_iptables_v4_mapped() {
    lock_test("tcp-ipt4m", "iptables", "::ffff:127.0.0.1");
}

#[test]
fn tcp_lock_nftables_v4() {
    lock_test("tcp-nft4", "nftables", "127.0.0.1");
}

#[test]
fn tcp_lock_nftables_v6() {
    lock_test("tcp-nft6", "nftables", "::1");
}

/// The tools a mode runs.
fn tools(mode: &str) -> &'static [&'static str] {
    match mode {
        "nftables" => &["nft"],
        "iptables" => &["iptables", "ip6tables"],
        _ => &[],
    }
}

fn lock_test(tag: &str, mode: &str, addr: &str) {
    let _serial = common::serial();
    require_privileged!("tcp_lock");
    if let Some(t) = tools(mode).iter().find(|t| !have(t)) {
        return common::skip(tag, &format!("{t} is not installed"));
    }
    let bind = if addr.contains(':') && !addr.contains('.') {
        "[::1]:0"
    } else if addr.contains(':') {
        "[::]:0"
    } else {
        "127.0.0.1:0"
    };
    let listener = TcpListener::bind(bind).expect("bind");
    peer_keeps_talking(tag, listener, addr, mode, None);
}

/// A tree in a network namespace of its own (restored into a new one, which stasis locks
/// whole while it rebuilds the tree) holds an established connection whose peer vanished
/// without a packet, "asd" unread (zdtm's socket-tcp-reseted in its ns flavor): once the
/// restore lifts the namespace's lock, the connection tells its peer it is back and takes
/// the reset the peer's port answers with — it is CLOSE when the task runs, reads "asd",
/// then cannot send. (The probe used to go while the namespace was still locked, and the
/// connection stayed established: its first send went through.)
#[test]
fn tcp_peer_gone_is_reset_in_a_new_netns() {
    let _serial = common::serial();
    let test = "tcp_peer_gone_is_reset_in_a_new_netns";
    require_privileged!("tcp_peer_gone_is_reset_in_a_new_netns");
    if !have("ip") || !(have("nft") || have("iptables")) {
        return common::skip(test, "needs ip, and nft or iptables (the network lock)");
    }
    let tmp = TempDir::new("gone");
    let Some(mut v) = victim(&tmp, "tcp_states", &["gone"]) else {
        return;
    };
    let mut restored = dump_restore(&mut v, &tmp, &["--tcp-established"]);
    restored.go_and_expect_pass();
}

/// A tree in a network namespace of its own whose firewall drops what goes to a
/// listener's port (zdtm's socket-tcp-closed-last-ack): its accepted connection is
/// LAST_ACK, its peer's acknowledgement dropped. The restore replays the peer's FIN to
/// take the new socket there, so the namespace's rule set is installed only after the
/// replay (it used to be installed first and dropped the FIN: the restore failed); the
/// rule is back when the task runs (it deletes it).
#[test]
fn tcp_last_ack_behind_the_namespace_firewall() {
    let _serial = common::serial();
    let test = "tcp_last_ack_behind_the_namespace_firewall";
    require_privileged!(test);
    if !have("ip") || !have("iptables") {
        return common::skip(test, "needs ip and iptables");
    }
    let tmp = TempDir::new("lastack");
    let Some(mut v) = victim(&tmp, "tcp_states", &["lastack"]) else {
        return;
    };
    let mut restored = dump_restore(&mut v, &tmp, &["--tcp-established"]);
    restored.go_and_expect_pass();
}

/// The same with the peer in another network namespace, joined to ours by a veth pair:
/// its segments cross a real interface (not loopback), and the network lock must hold
/// them there too.
#[test]
fn tcp_peer_across_netns_keeps_talking() {
    let _serial = common::serial();
    let test = "tcp_peer_across_netns_keeps_talking";
    require_privileged!("tcp_peer_across_netns_keeps_talking");
    for tool in ["iptables", "ip"] {
        if !have(tool) {
            return common::skip(test, &format!("{tool} is not installed"));
        }
    }
    let net = match PeerNet::create() {
        Ok(net) => net,
        Err(why) => return common::skip(test, &why),
    };
    let listener = net.listen();
    peer_keeps_talking("tcp-netns", listener, PeerNet::PEER, "iptables", None);
}

/// A connection-tracking rule set guards the interface the connection crosses ("ct state
/// established,related accept; drop" for what comes in on it): the restored connection's
/// packets are still accepted under each mode, as its conntrack entry stays established
/// through the dump (the lock drops packets after conntrack saw them).
#[test]
fn tcp_lock_keeps_conntrack_state() {
    let _serial = common::serial();
    let test = "tcp_lock_keeps_conntrack_state";
    require_privileged!("tcp_lock_keeps_conntrack_state");
    for tool in ["iptables", "ip6tables", "nft", "ip"] {
        if !have(tool) {
            return common::skip(test, &format!("{tool} is not installed"));
        }
    }
    for mode in ["iptables", "nftables"] {
        let net = match PeerNet::create() {
            Ok(net) => net,
            Err(why) => return common::skip(test, &why),
        };
        let _guard = CtGuard::install(&format!("stp{}h", std::process::id()));
        let listener = net.listen();
        peer_keeps_talking(
            &format!("tcp-ct-{mode}"),
            listener,
            PeerNet::PEER,
            mode,
            None,
        );
    }
}

/// An nftables table accepting only established and related packets on `dev`; removed on
/// drop.
struct CtGuard(String);

impl CtGuard {
    fn install(dev: &str) -> CtGuard {
        let table = format!("ctguard{}", std::process::id());
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} input {{ type filter hook input priority 0; policy accept; }}\n\
             add rule inet {table} input iifname \"{dev}\" ct state established,related accept\n\
             add rule inet {table} input iifname \"{dev}\" drop\n"
        );
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        assert!(nft.wait().expect("nft").success(), "nft -f: {script}");
        CtGuard(table)
    }
}

impl Drop for CtGuard {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

/// Where the mode's command cannot be run, the network lock cannot be taken nor lifted:
/// a dump of a connection to a peer outside is refused before its socket changes (the
/// peer keeps talking to the running task), and the restore of an image holding a locked
/// connection is refused before any process exists; with the command back both go
/// through.
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
    peer_keeps_talking(
        "tcp-no-nft",
        listener,
        "127.0.0.1",
        "nftables",
        Some(["nft", "nftables"]),
    );
}

#[test]
fn tcp_peer_outside_without_iptables_is_refused() {
    let _serial = common::serial();
    require_privileged!("tcp_peer_outside_without_iptables_is_refused");
    if !have("iptables") || !have("ip6tables") {
        return common::skip(
            "tcp_peer_outside_without_iptables_is_refused",
            "iptables is not installed",
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    peer_keeps_talking(
        "tcp-no-ipt",
        listener,
        "127.0.0.1",
        "iptables",
        Some(["iptables", "iptables"]),
    );
}

/// `stasis ARGS` with a PATH holding no tool: the output of the refused command, which
/// must name `tool`, its `package`, `what` and the pid.
fn refused_without(
    tmp: &TempDir,
    args: &[&std::ffi::OsStr],
    missing: [&str; 2],
    what: &str,
    pid: i32,
) {
    let empty = tmp.join("no-tools");
    fs::create_dir_all(&empty).expect("mkdir");
    let out =
        common::start(common::stasis_cmd(args).env("PATH", &empty)).finish(common::STASIS_TIMEOUT);
    let msg = out.assert_failed("stasis without the lock's tools");
    for w in [missing[0], missing[1], what, &pid.to_string()] {
        assert!(msg.contains(w), "{w:?} missing from: {msg}");
    }
}

/// The `stasis network-unlock --list` lines naming the lock of `pid`.
fn listed_locks(pid: i32) -> Vec<String> {
    let out = common::stasis(&["network-unlock", "--list"]);
    let name = format!("stasis_{pid} ");
    out.stdout
        .lines()
        .filter(|l| l.contains(&name))
        .map(str::to_string)
        .collect()
}

/// A peer (this test) accepting the `tcp_echo` victim's connection to `addr` on a
/// listener, and checking the echoes of what it writes.
struct Echoed {
    talker: Talker,
    echoes: BufReader<TcpStream>,
    expect: u64,
}

impl Echoed {
    fn accept(listener: &TcpListener) -> Echoed {
        let (conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let talker = talk(conn.try_clone().expect("clone"));
        Echoed {
            talker,
            echoes: BufReader::new(conn),
            expect: 0,
        }
    }

    /// Reads the echoes up to line `n`, each in order.
    fn read_until(&mut self, n: u64) {
        while self.expect < n {
            let mut line = String::new();
            self.echoes.read_line(&mut line).expect("echo");
            assert_eq!(
                line.trim_end(),
                format!("line {}", self.expect),
                "echo out of order"
            );
            self.expect += 1;
        }
    }

    /// Every line written so far comes back, then 20 more.
    fn all_back(&mut self) {
        let sent = self.talker.count();
        self.read_until(sent + 20);
    }
}

/// The peer (this test) accepts the `tcp_echo` victim's connection to `addr` on
/// `listener`, talks through a dump with `--tcp-established --network-lock MODE` and a
/// restore, and checks every echo; the lock must be held while the task is down and gone
/// afterwards. With `no_tool_first` (tool, package), a dump and a restore without the
/// mode's tools are refused first.
fn peer_keeps_talking(
    tag: &str,
    listener: TcpListener,
    addr: &str,
    mode: &str,
    no_tool_first: Option<[&str; 2]>,
) {
    let tmp = TempDir::new(tag);
    let port = listener.local_addr().expect("addr").port().to_string();
    let Some(mut v) = victim(&tmp, "tcp_echo", &[&port, addr]) else {
        return;
    };
    let mut peer = Echoed::accept(&listener);
    peer.read_until(20);
    let img = tmp.join("img");
    let flags = ["--tcp-established", "--network-lock", mode];
    let dir = img.as_os_str();
    if let Some(missing) = no_tool_first {
        let pid = v.pid.to_string();
        let args = ["dump", "-t", &pid, "-D"].map(std::ffi::OsStr::new);
        let dump = [&args[..], &[dir], &flags.map(std::ffi::OsStr::new)[..]].concat();
        refused_without(&tmp, &dump, missing, "fd 10 of pid", v.pid);
        common::assert_untouched(&v);
        peer.read_until(40);
    }
    common::dump(v.pid, &img, &flags).assert_ok("stasis dump");
    v.wait_exit(Duration::from_secs(10));
    // Down: the lock holds the connection (the peer keeps writing meanwhile).
    let listed = listed_locks(v.pid);
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with(mode) && l.contains("stale")),
        "lock not listed: {listed:?}"
    );
    let shown = common::stasis(&["inspect".as_ref(), dir]);
    assert!(
        shown.stdout.contains("network locked")
            && shown.stdout.contains(&format!("network lock: {mode}"))
            && shown.stdout.contains("held now"),
        "the image does not show a held lock:\n{}",
        shown.stdout
    );
    common::sleep_ms(300);
    if let Some(missing) = no_tool_first {
        let restore = ["restore", "-d", "-D"].map(std::ffi::OsStr::new);
        refused_without(
            &tmp,
            &[&restore[..], &[dir]].concat(),
            missing,
            "fd 10 of pid",
            v.pid,
        );
        assert_eq!(common::proc_state(v.pid), None, "a process was created");
    }
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let mut restored = Proc::adopt(pid, &v.log);
    // Lines written while it was down come back too, then new ones.
    peer.all_back();
    peer.talker.stop();
    assert_eq!(
        listed_locks(v.pid),
        Vec::<String>::new(),
        "the network lock is still there"
    );
    restored.go_and_expect_pass();
}

/// `--network-lock skip` takes no lock: no rule of any mode is there while the task is
/// down, and the image says so.
#[test]
fn tcp_lock_skip_leaves_no_rules() {
    let _serial = common::serial();
    require_privileged!("tcp_lock_skip_leaves_no_rules");
    let tmp = TempDir::new("tcp-skip");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let Some(mut v) = victim(&tmp, "tcp_echo", &[&port]) else {
        return;
    };
    let mut peer = Echoed::accept(&listener);
    peer.read_until(5);
    peer.talker.stop();
    let img = tmp.join("img");
    common::dump(
        v.pid,
        &img,
        &["--tcp-established", "--network-lock", "skip"],
    )
    .assert_ok("dump");
    v.wait_exit(Duration::from_secs(10));
    assert_eq!(
        listed_locks(v.pid),
        Vec::<String>::new(),
        "skip took a lock"
    );
    let shown = common::stasis(&["inspect".as_ref(), img.as_os_str()]);
    assert!(
        shown.stdout.contains("network lock: skip"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("network locked"), "{}", shown.stdout);
}

/// A dump never restored leaves its lock: `inspect` shows it held, `network-unlock --list`
/// lists it as stale, `network-unlock --all-stale` (iptables) and `network-unlock -D DIR`
/// (nftables) lift it.
#[test]
fn stale_lock_is_listed_and_lifted() {
    let _serial = common::serial();
    require_privileged!("stale_lock_is_listed_and_lifted");
    for (mode, how) in [("iptables", "--all-stale"), ("nftables", "-D")] {
        if let Some(t) = tools(mode).iter().find(|t| !have(t)) {
            common::skip(
                "stale_lock_is_listed_and_lifted",
                &format!("{t} is not installed"),
            );
            continue;
        }
        let tmp = TempDir::new(&format!("stale-{mode}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port().to_string();
        let Some(mut v) = victim(&tmp, "tcp_echo", &[&port]) else {
            return;
        };
        let (_conn, _) = listener.accept().expect("accept");
        let img = tmp.join("img");
        common::dump(v.pid, &img, &["--tcp-established", "--network-lock", mode]).assert_ok("dump");
        v.wait_exit(Duration::from_secs(10));
        let listed = listed_locks(v.pid);
        assert!(
            listed.iter().any(|l| l.contains("stale")),
            "{mode}: not listed: {listed:?}"
        );
        let shown = common::stasis(&["inspect".as_ref(), img.as_os_str()]);
        assert!(shown.stdout.contains("held now"), "{}", shown.stdout);
        let out = match how {
            "-D" => common::stasis(&["network-unlock".as_ref(), "-D".as_ref(), img.as_os_str()]),
            _ => common::stasis(&["network-unlock", how]),
        };
        out.assert_ok("network-unlock");
        assert_eq!(
            listed_locks(v.pid),
            Vec::<String>::new(),
            "{mode}: lock left"
        );
        let shown = common::stasis(&["inspect".as_ref(), img.as_os_str()]);
        assert!(!shown.stdout.contains("held now"), "{}", shown.stdout);
    }
}

/// A restore that fails once processes exist (here: the connection's local address is
/// gone from the host meanwhile, so its socket cannot be bound again) still lifts the
/// lock: the connection is lost, and the peer must learn so rather than wait forever.
#[test]
fn failed_restore_still_unlocks() {
    let _serial = common::serial();
    let test = "failed_restore_still_unlocks";
    require_privileged!("failed_restore_still_unlocks");
    for tool in ["iptables", "ip6tables", "ip"] {
        if !have(tool) {
            return common::skip(test, &format!("{tool} is not installed"));
        }
    }
    let net = match PeerNet::create() {
        Ok(net) => net,
        Err(why) => return common::skip(test, &why),
    };
    let listener = net.listen();
    let tmp = TempDir::new("fail-unlock");
    let port = listener.local_addr().expect("addr").port().to_string();
    let Some(mut v) = victim(&tmp, "tcp_echo", &[&port, PeerNet::PEER]) else {
        return;
    };
    let peer = Echoed::accept(&listener);
    peer.talker.stop();
    let img = tmp.join("img");
    common::dump(v.pid, &img, &["--tcp-established"]).assert_ok("dump");
    v.wait_exit(Duration::from_secs(10));
    assert!(!listed_locks(v.pid).is_empty(), "no lock taken");
    net.drop_host_address();
    let out = common::restore_detached(&img).expect_err("the restore should fail");
    assert!(!out.stderr.is_empty(), "{out:?}");
    assert_eq!(common::proc_state(v.pid), None, "a process was left");
    assert_eq!(
        listed_locks(v.pid),
        Vec::<String>::new(),
        "the failed restore left the lock"
    );
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

    /// Removes `HOST` from our end of the pair.
    fn drop_host_address(&self) {
        let host = format!("stp{}h", std::process::id());
        let out = Command::new("ip")
            .args(["addr", "del", &format!("{}/24", Self::HOST), "dev", &host])
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip addr del: {out:?}");
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
