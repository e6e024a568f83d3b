//! The network lock's functions on a network namespace the test creates (`ip netns add`),
//! for each mode: the whole-namespace lock of a tree living in a namespace of its own
//! (which `dump/ns/net.rs` takes; called directly here), and the lock
//! of one connection of a process in another namespace. In both the tools must run inside
//! that namespace: the rules are found there and not in ours, they drop unmarked packets
//! without a reset reaching anyone, and let CRIU-marked (0xC114) packets through.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use stasis::image::sock::SockAddr;
use stasis::netlock::{self, LockMode, Netns};

/// A network namespace bound at /run/netns/NAME with its loopback up; deleted on drop.
struct TestNs {
    name: String,
}

impl TestNs {
    fn create(tag: &str) -> Result<TestNs, String> {
        let ns = TestNs {
            name: format!("stasis-nl-{tag}-{}", std::process::id()),
        };
        for args in [
            vec!["netns", "add", &ns.name],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => return Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => return Err(format!("ip: {e}")),
            }
        }
        Ok(ns)
    }

    fn path(&self) -> std::path::PathBuf {
        format!("/run/netns/{}", self.name).into()
    }

    /// Runs `f` on a thread that entered the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Connected,
    Refused,
    NoAnswer,
}

/// A connection attempt to 127.0.0.1:`port` from inside `ns`, with SO_MARK `mark`.
fn attempt(ns: &TestNs, port: u16, mark: u32) -> Outcome {
    ns.run(move || {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .expect("socket");
        socket::setsockopt(&fd, sockopt::Mark, &mark).expect("SO_MARK");
        let to = SockaddrIn::new(127, 0, 0, 1, port);
        match socket::connect(fd.as_raw_fd(), &to) {
            Ok(()) => return Outcome::Connected,
            Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => panic!("connect: {e}"),
        }
        // Long enough for loopback to answer; a SYN dropped is retransmitted after 1 s.
        std::thread::sleep(Duration::from_millis(600));
        if socket::getpeername::<SockaddrIn>(fd.as_raw_fd()).is_ok() {
            return Outcome::Connected;
        }
        match socket::getsockopt(&fd, sockopt::SocketError).expect("SO_ERROR") {
            0 => Outcome::NoAnswer,
            libc::ECONNREFUSED => Outcome::Refused,
            e => panic!("connect: errno {e}"),
        }
    })
}

fn tools_of(mode: LockMode) -> &'static [&'static str] {
    match mode {
        LockMode::Iptables => &["iptables", "ip6tables", "ip"],
        LockMode::Nftables => &["nft", "ip"],
        LockMode::Skip => &["ip"],
    }
}

/// Whether the test can run; prints why not.
fn ready(test: &str, mode: LockMode) -> bool {
    if let Err(why) = common::privileged() {
        common::skip(test, &why);
        return false;
    }
    for tool in tools_of(mode) {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            common::skip(test, &format!("{tool} is not installed"));
            return false;
        }
    }
    true
}

fn names_in(ns: &Netns) -> Vec<String> {
    netlock::find(ns).into_iter().map(|f| f.name).collect()
}

#[test]
fn namespace_lock_iptables() {
    namespace_lock("nsipt", LockMode::Iptables);
}

#[test]
fn namespace_lock_nftables() {
    namespace_lock("nsnft", LockMode::Nftables);
}

/// The whole namespace locked: new connections meet silence (no reset), marked ones get
/// through, the rules are in that namespace only, and unlocking lets everything through.
fn namespace_lock(tag: &str, mode: LockMode) {
    let _serial = common::serial();
    if !ready(tag, mode) {
        return;
    }
    let ns = TestNs::create(tag).expect("netns");
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
    let port = listener.local_addr().expect("addr").port();
    // The listener's answers must carry the mark too (its SYN-ACKs are marked by it).
    let marked = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        socket::setsockopt(&l, sockopt::Mark, &netlock::PASS_MARK).expect("SO_MARK");
        l
    });
    let marked_port = marked.local_addr().expect("addr").port();
    let closed = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    });
    assert_eq!(attempt(&ns, port, 0), Outcome::Connected);
    assert_eq!(attempt(&ns, closed, 0), Outcome::Refused);
    let target = Netns::at(&ns.path());
    let name = netlock::name(4242);
    netlock::lock_namespace(mode, &target, 4242).expect("lock the namespace");
    let unlock = || netlock::unlock_in(mode, &target, &name);
    let checks = std::panic::catch_unwind(|| {
        assert!(
            names_in(&target).contains(&name),
            "lock not in the namespace"
        );
        assert!(
            !names_in(&Netns::Ours).contains(&name),
            "lock in our namespace"
        );
        assert_eq!(
            attempt(&ns, port, 0),
            Outcome::NoAnswer,
            "unmarked got through"
        );
        assert_eq!(
            attempt(&ns, closed, 0),
            Outcome::NoAnswer,
            "a reset got out"
        );
        assert_eq!(
            attempt(&ns, marked_port, netlock::PASS_MARK),
            Outcome::Connected
        );
    });
    unlock().expect("unlock");
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
    assert!(names_in(&target).is_empty(), "lock left after unlock");
    assert_eq!(attempt(&ns, port, 0), Outcome::Connected);
}

#[test]
fn connection_lock_in_other_netns_iptables() {
    connection_lock("cipt", LockMode::Iptables);
}

#[test]
fn connection_lock_in_other_netns_nftables() {
    connection_lock("cnft", LockMode::Nftables);
}

fn sock_addr(a: SocketAddr) -> SockAddr {
    let ip = match a {
        SocketAddr::V4(v) => v.ip().octets().to_vec(),
        SocketAddr::V6(v) => v.ip().octets().to_vec(),
    };
    SockAddr {
        ip,
        port: a.port(),
        scope_id: 0,
    }
}

/// The lock of a connection of a process living in another namespace (here `sleep`,
/// started there): taken there, it holds the bytes sent meanwhile without breaking the
/// connection; once lifted they arrive.
fn connection_lock(tag: &str, mode: LockMode) {
    let _serial = common::serial();
    if !ready(tag, mode) {
        return;
    }
    let ns = TestNs::create(tag).expect("netns");
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "60"])
        .spawn()
        .expect("sleep in the namespace");
    let pid = holder.id() as i32;
    let (mut client, mut server) = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (c, s)
    });
    // `ip netns exec` has entered the namespace once `sleep` runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !matches!(Netns::of_pid(pid), Netns::Other(_)) {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never entered it"
        );
        common::sleep_ms(10);
    }
    let local = sock_addr(client.local_addr().expect("local"));
    let remote = sock_addr(client.peer_addr().expect("peer"));
    netlock::lock(mode, pid, &local, &remote).expect("lock");
    let name = netlock::name(pid);
    assert!(names_in(&Netns::of_pid(pid)).contains(&name));
    assert!(
        !names_in(&Netns::Ours).contains(&name),
        "lock in our namespace"
    );
    server
        .set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    client.write_all(b"held").expect("write");
    let mut buf = [0u8; 4];
    let early = server.read(&mut buf);
    netlock::unlock(mode, pid).expect("unlock");
    assert!(early.is_err(), "bytes got through the lock: {early:?}");
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    server
        .read_exact(&mut buf)
        .expect("retransmitted after unlock");
    assert_eq!(&buf, b"held");
    assert!(names_in(&Netns::of_pid(pid)).is_empty(), "lock left");
    let _ = holder.kill();
    let _ = holder.wait();
}
