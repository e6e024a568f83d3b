//! Unmodified programs (python3 — counting, threads, pipes/eventfd/epoll, an HTTP server,
//! an HTTP/1.1 server with 50 keep-alive clients,
//! multiprocessing —, coreutils sleep, bash, xargs, a `sh` pipeline, redis, nginx,
//! PostgreSQL) dumped
//! and restored with `-d`: each must carry on from where it was, under the same pid(s).

mod common;

use common::{wait_for, which, Proc, Status, TempDir, STASIS};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Counts, mutates one entry of a 200k-entry dict per tick and writes
/// "counter checksum-ok pid" to argv[1] every 100 ms.
const PY_COUNTER: &str = r#"
import os, sys, time
path = sys.argv[1]
d = {i: (i * 7) % 1000003 for i in range(200000)}
base = sum(d.values())
counter = 0
while True:
    counter += 1
    d[counter % 200000] += 1
    ok = sum(d.values()) == base + counter
    with open(path + ".tmp", "w") as f:
        f.write(f"{counter} {ok} {os.getpid()}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.1)
"#;

/// Four threads add to one shared counter under a lock, each also counting its own adds;
/// the main thread writes "total sum-of-own-counts alive-threads pid" to argv[1] every
/// 100 ms. A lost update or a dead thread shows as a mismatch or a count below 5.
const PY_THREADS: &str = r#"
import os, sys, threading, time
path = sys.argv[1]
lock = threading.Lock()
total = 0
own = [0] * 4
def work(i):
    global total
    while True:
        with lock:
            total += 1
            own[i] += 1
        time.sleep(0.001)
for i in range(4):
    threading.Thread(target=work, args=(i,), name=f"worker-{i}", daemon=True).start()
while True:
    with lock:
        t, s = total, sum(own)
    with open(path + ".tmp", "w") as f:
        f.write(f"{t} {s} {threading.active_count()} {os.getpid()}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.1)
"#;

/// Dump `proc` (killing it), reap it, restore with -d and adopt the restored task.
fn dump_restore(proc: &mut Proc, tmp: &TempDir) -> Proc {
    let img = tmp.join("img");
    common::dump(proc.pid, &img, &[]).assert_ok("stasis dump");
    assert_eq!(
        proc.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    let pid =
        common::restore_detached(&img).unwrap_or_else(|out| panic!("restore failed: {out:?}"));
    assert_eq!(pid, proc.pid, "restored under another pid");
    Proc::adopt(pid, &proc.log)
}

/// Kill a restored program and check it was still running (not exited on its own).
fn stop(mut restored: Proc) {
    assert!(
        restored.alive(),
        "pid {} is not running; log:\n{}",
        restored.pid,
        restored.log_text()
    );
    restored.signal(libc::SIGKILL);
    assert_eq!(
        restored.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
}

fn read_state(path: &Path) -> Option<(u64, bool, i32)> {
    let text = fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()? == "True",
        it.next()?.parse().ok()?,
    ))
}

#[test]
fn python_counter_continues() {
    let _serial = common::serial();
    require_privileged!("python_counter_continues");
    if !which("python3") {
        return common::skip("python_counter_continues", "python3 is not installed");
    }
    let tmp = TempDir::new("python");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .arg("-c")
            .arg(PY_COUNTER)
            .arg(&state)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    // 3 s of counting, so that a counter restarted from zero could not catch up.
    let (before, ok, pid) = wait_for("the counter to reach 30", Duration::from_secs(60), || {
        read_state(&state).filter(|s| s.0 >= 30)
    });
    assert!(
        ok && pid == py.pid,
        "bad state before the dump: {before} {ok} {pid}"
    );
    let restored = dump_restore(&mut py, &tmp);
    let (at_dump, _, _) = read_state(&state).expect("state file");

    common::sleep_ms(500);
    let (c1, ok1, pid1) = read_state(&state).expect("state file");
    assert!(
        c1 > at_dump,
        "counter did not advance after restore: {c1} (was {at_dump} at dump); log:\n{}",
        restored.log_text()
    );
    assert!(
        c1 <= at_dump + 20,
        "counter jumped from {at_dump} to {c1} in 0.5 s"
    );
    assert!(
        ok1,
        "dict checksum no longer matches the counter after restore"
    );
    assert_eq!(pid1, py.pid, "os.getpid() changed");
    let c2 = wait_for(
        "the counter to advance again",
        Duration::from_secs(10),
        || read_state(&state).filter(|s| s.0 > c1 && s.1).map(|s| s.0),
    );
    assert!(c2 > c1);
    stop(restored);
}

/// Holds a pipe with unread bytes, an eventfd with a count and an epoll instance watching
/// both; writes "tick pid" to argv[1] every 100 ms. Once argv[1].go exists it reads
/// everything and writes "bytes count ready-fds pid" to argv[1].result.
const PY_PIPES: &str = r#"
import os, select, sys, time
path = sys.argv[1]
r, w = os.pipe()
os.write(w, b"bytes-in-flight")
efd = os.eventfd(5, os.EFD_NONBLOCK)
ep = select.epoll()
ep.register(r, select.EPOLLIN)
ep.register(efd, select.EPOLLIN)
tick = 0
while not os.path.exists(path + ".go"):
    tick += 1
    with open(path + ".tmp", "w") as f:
        f.write(f"{tick} {os.getpid()}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.1)
ready = len(ep.poll(1))
data = os.read(r, 100).decode()
count = os.eventfd_read(efd)
with open(path + ".tmp", "w") as f:
    f.write(f"{data} {count} {ready} {os.getpid()}\n")
os.rename(path + ".tmp", path + ".result")
"#;

#[test]
fn python_pipe_and_eventfd_survive() {
    let _serial = common::serial();
    require_privileged!("python_pipe_and_eventfd_survive");
    if !which("python3") {
        return common::skip(
            "python_pipe_and_eventfd_survive",
            "python3 is not installed",
        );
    }
    let tmp = TempDir::new("python-pipes");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .arg("-c")
            .arg(PY_PIPES)
            .arg(&state)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    let tick = |s: &str| s.split_whitespace().next()?.parse::<u64>().ok();
    wait_for("python to tick 5 times", Duration::from_secs(60), || {
        tick(&fs::read_to_string(&state).ok()?).filter(|t| *t >= 5)
    });
    let restored = dump_restore(&mut py, &tmp);
    let at_dump = tick(&fs::read_to_string(&state).expect("state")).expect("tick");
    wait_for(
        "python to tick after restore",
        Duration::from_secs(10),
        || tick(&fs::read_to_string(&state).ok()?).filter(|t| *t > at_dump),
    );
    fs::write(tmp.join("state.go"), b"").expect("write the go file");
    let result = wait_for("python's result", Duration::from_secs(10), || {
        fs::read_to_string(tmp.join("state.result")).ok()
    });
    assert_eq!(
        result,
        format!("bytes-in-flight 5 2 {}\n", py.pid),
        "pipe bytes, eventfd count, epoll readiness or pid differ; log:\n{}",
        restored.log_text()
    );
    let mut restored = restored;
    assert_eq!(
        restored.wait_exit(Duration::from_secs(10)),
        Status::Exited(0),
        "log:\n{}",
        restored.log_text()
    );
}

#[test]
fn sleep_keeps_sleeping() {
    let _serial = common::serial();
    require_privileged!("sleep_keeps_sleeping");
    let tmp = TempDir::new("sleep");
    let mut sleeper = common::spawn_logged(
        Command::new("sleep").arg("1000").current_dir(tmp.path()),
        &tmp.join("sleep.log"),
    );
    // Dump it once it is sleep, not the forked harness.
    let pid = sleeper.pid;
    wait_for("sleep to exec", Duration::from_secs(10), || {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim_end() == "sleep" && common::proc_state(pid) == Some('S')).then_some(())
    });
    let restored = dump_restore(&mut sleeper, &tmp);
    common::sleep_ms(1000);
    assert_eq!(
        fs::read(format!("/proc/{pid}/cmdline")).ok(),
        Some(b"sleep\x001000\x00".to_vec())
    );
    assert_eq!(
        common::proc_state(pid),
        Some('S'),
        "restored sleep is not sleeping"
    );
    stop(restored);
}

#[test]
fn bash_loop_continues() {
    let _serial = common::serial();
    require_privileged!("bash_loop_continues");
    let tmp = TempDir::new("bash");
    let log = tmp.join("numbers");
    // Builtins only: no child processes.
    let script =
        r#"i=0; while :; do i=$((i+1)); if (( i % 20000 == 0 )); then echo $i >> "$1"; fi; done"#;
    let mut bash = common::spawn_logged(
        Command::new("bash")
            .args(["-c", script, "bash"])
            .arg(&log)
            .current_dir(tmp.path()),
        &tmp.join("bash.log"),
    );
    let numbers = || -> Vec<u64> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    wait_for("three numbers", Duration::from_secs(60), || {
        (numbers().len() >= 3).then_some(())
    });
    let restored = dump_restore(&mut bash, &tmp);
    let at_dump = numbers().len();
    wait_for("new numbers after restore", Duration::from_secs(30), || {
        (numbers().len() >= at_dump + 3).then_some(())
    });
    // One sequence across the restore: a reset loop would write 20000 again.
    for (i, n) in numbers().iter().enumerate() {
        let last = at_dump as u64 * 20000;
        assert_eq!(
            *n,
            (i as u64 + 1) * 20000,
            "line {} is {n}: the loop did not continue from {last}",
            i + 1
        );
    }
    stop(restored);
}

/// `(total, sum of per-thread counts, live threads, pid)` from the threaded counter.
fn read_threads_state(path: &Path) -> Option<(u64, u64, usize, i32)> {
    let text = fs::read_to_string(path).ok()?;
    let v: Vec<&str> = text.split_whitespace().collect();
    Some((
        v.first()?.parse().ok()?,
        v.get(1)?.parse().ok()?,
        v.get(2)?.parse().ok()?,
        v.get(3)?.parse().ok()?,
    ))
}

#[test]
fn python_threads_continue() {
    let _serial = common::serial();
    require_privileged!("python_threads_continue");
    if !which("python3") {
        return common::skip("python_threads_continue", "python3 is not installed");
    }
    let tmp = TempDir::new("python-threads");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .arg("-c")
            .arg(PY_THREADS)
            .arg(&state)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    let before = wait_for("the threads to count", Duration::from_secs(60), || {
        read_threads_state(&state).filter(|s| s.0 >= 200)
    });
    assert_eq!((before.0, before.2, before.3), (before.1, 5, py.pid));
    let tids_before = common::thread_ids(py.pid);
    assert_eq!(tids_before.len(), 5, "python should run 5 threads");
    let restored = dump_restore(&mut py, &tmp);
    assert_eq!(
        common::thread_ids(py.pid),
        tids_before,
        "thread ids changed"
    );
    let (at_dump, ..) = read_threads_state(&state).expect("state file");
    let after = wait_for("the threads to count on", Duration::from_secs(10), || {
        read_threads_state(&state).filter(|s| s.0 > at_dump + 100)
    });
    assert_eq!(
        (after.0, after.2, after.3),
        (after.1, 5, py.pid),
        "total vs own counts, live threads, pid after restore; log:\n{}",
        restored.log_text()
    );
    stop(restored);
}

/// Each worker counts into `<name>.count` every 50 ms, with a `sleep` child per tick.
const XARGS_WORKER: &str = r#"i=0; while :; do i=$((i+1)); echo $i > "$0.count"; sleep 0.05; done"#;

/// `xargs -P 2` with two shell workers, each forking a `sleep` per tick: a tree that
/// changes while it is frozen. After restore the same pids run on and both counters
/// continue from where they were.
#[test]
fn xargs_workers_continue() {
    let _serial = common::serial();
    require_privileged!("xargs_workers_continue");
    xargs_round_trip(&TempDir::new("xargs"), None);
}

/// The same tree in a cgroup v2, dumped with `--freeze-cgroup`.
#[test]
fn xargs_frozen_by_cgroup_v2() {
    let _serial = common::serial();
    require_privileged!("xargs_frozen_by_cgroup_v2");
    cgroup_round_trip(
        "xargs_frozen_by_cgroup_v2",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    );
}

/// The same tree in a cgroup v1 freezer, dumped with `--freeze-cgroup`.
#[test]
fn xargs_frozen_by_cgroup_v1() {
    let _serial = common::serial();
    require_privileged!("xargs_frozen_by_cgroup_v1");
    cgroup_round_trip("xargs_frozen_by_cgroup_v1", "/sys/fs/cgroup/freezer", "");
}

/// Runs the xargs round trip in a fresh cgroup under the first of `roots` that is a
/// cgroup hierarchy with a freezer; skips (saying why) if there is none.
fn cgroup_round_trip(test: &str, root: &str, alt_root: &str) {
    let root = [root, alt_root]
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(Path::new)
        .find(|r| r.join("cgroup.procs").exists());
    let Some(root) = root else {
        common::skip(test, "no such cgroup hierarchy on this machine");
        return;
    };
    let tmp = TempDir::new(test);
    let cg = root.join(format!("stasis-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&cg) {
        common::skip(test, &format!("cannot create cgroup {}: {e}", cg.display()));
        return;
    }
    if !cg.join("cgroup.freeze").exists() && !cg.join("freezer.state").exists() {
        let _ = fs::remove_dir(&cg);
        common::skip(test, &format!("cgroup {} has no freezer", cg.display()));
        return;
    }
    xargs_round_trip(&tmp, Some(&cg));
    let _ = fs::remove_dir(&cg);
}

fn xargs_round_trip(tmp: &TempDir, cgroup: Option<&Path>) {
    let input = tmp.join("input");
    fs::write(&input, "w1\nw2\n").expect("write input");
    // Join the cgroup first, so that every process of the tree is born in it.
    let join = match cgroup {
        Some(cg) => format!("echo $$ > {}/cgroup.procs && ", cg.display()),
        None => String::new(),
    };
    let script = format!(
        "{join}exec xargs -P 2 -n 1 -a {} sh -c '{XARGS_WORKER}'",
        input.display()
    );
    let mut xargs = common::spawn_logged(
        Command::new("sh")
            .args(["-c", &script])
            .current_dir(tmp.path()),
        &tmp.join("xargs.log"),
    );
    let count = |w: &str| -> Option<u64> {
        fs::read_to_string(tmp.join(format!("{w}.count")))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    wait_for("both workers counting", Duration::from_secs(30), || {
        (count("w1")? >= 5 && count("w2")? >= 5).then_some(())
    });
    let family = common::TreeGuard(common::descendants(xargs.pid));
    let workers: Vec<i32> = family
        .0
        .iter()
        .copied()
        // xargs's own children: a worker's child that has not exec'd `sleep` yet is an
        // `sh` too.
        .filter(|&p| comm(p).as_deref() == Some("sh") && common::parent_of(p) == Some(xargs.pid))
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "two sh workers under xargs: {:?}",
        family.0
    );
    let img = tmp.join("img");
    let cg_arg = cgroup.map(|c| c.display().to_string());
    let extra: Vec<&str> = match &cg_arg {
        Some(c) => vec!["--freeze-cgroup", c],
        None => vec![],
    };
    common::dump(xargs.pid, &img, &extra).assert_ok("stasis dump");
    assert_eq!(
        xargs.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img);
    let at_dump = (count("w1").unwrap_or(0), count("w2").unwrap_or(0));
    let pid =
        common::restore_detached(&img).unwrap_or_else(|out| panic!("restore failed: {out:?}"));
    assert_eq!(pid, xargs.pid, "restored under another pid");
    let restored = Proc::adopt(pid, &xargs.log);
    let family = common::TreeGuard(common::descendants(pid));
    for w in &workers {
        assert_eq!(comm(*w).as_deref(), Some("sh"), "worker {w} is not back");
    }
    wait_for("both counters to go on", Duration::from_secs(30), || {
        (count("w1")? > at_dump.0 + 5 && count("w2")? > at_dump.1 + 5).then_some(())
    });
    stop(restored);
    drop(family);
}

fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `GET /name` on 127.0.0.1:`port`; the body, if the answer is 200.
fn http_get(port: u16, name: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /{name} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// `python3 -m http.server` on loopback: a listening TCP socket (with the accept
/// machinery of socketserver around it) answers before the dump and after the restore,
/// on the same port.
#[test]
fn python_http_server_serves_after_restore() {
    let _serial = common::serial();
    require_privileged!("python_http_server_serves_after_restore");
    if !which("python3") {
        return common::skip(
            "python_http_server_serves_after_restore",
            "python3 is not installed",
        );
    }
    let tmp = TempDir::new("http");
    fs::write(tmp.join("hello.txt"), "served by stasis\n").expect("write hello.txt");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(tmp.path()),
        &tmp.join("http.log"),
    );
    let port: u16 = wait_for("the server to listen", Duration::from_secs(30), || {
        let log = py.log_text();
        let line = log.lines().find(|l| l.starts_with("Serving HTTP"))?;
        line.split(" port ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    assert_eq!(
        http_get(port, "hello.txt").as_deref(),
        Some("served by stasis\n")
    );
    let restored = dump_restore(&mut py, &tmp);
    let body = wait_for("an answer after restore", Duration::from_secs(10), || {
        http_get(port, "hello.txt")
    });
    assert_eq!(body, "served by stasis\n");
    assert!(
        restored.log_text().matches("GET /hello.txt").count() >= 2,
        "the restored server did not log the second request:\n{}",
        restored.log_text()
    );
    stop(restored);
}

/// A threaded HTTP/1.1 server in python3 (one thread per keep-alive connection).
const KEEPALIVE_SERVER: &str = "
import http.server
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print('port', s.server_address[1], flush=True)
s.serve_forever()
";

/// `GET /name` on a kept-alive connection: the body of a 200 answer (`Content-Length`).
fn keepalive_get(conn: &mut std::io::BufReader<std::net::TcpStream>, name: &str) -> String {
    use std::io::{BufRead, Read, Write};
    let req = format!("GET /{name} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.get_mut()
        .write_all(req.as_bytes())
        .expect("send a request");
    let (mut status, mut len) = (String::new(), 0usize);
    conn.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "answer: {status:?}");
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("header line");
        if line.trim_end().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("the body");
    String::from_utf8_lossy(&body).into_owned()
}

/// An HTTP server with 50 keep-alive clients outside the dumped tree (this test): dumped
/// with `--tcp-established` while every connection is open and idle, restored, and each
/// client's next request on its same connection is answered.
#[test]
fn http_keepalive_clients_keep_their_connections() {
    let test = "http_keepalive_clients_keep_their_connections";
    let _serial = common::serial();
    require_privileged!("http_keepalive_clients_keep_their_connections");
    for tool in ["python3", "nft"] {
        if !which(tool) {
            return common::skip(test, &format!("{tool} is not installed"));
        }
    }
    let tmp = TempDir::new("http-keepalive");
    fs::write(tmp.join("hello.txt"), "kept alive by stasis\n").expect("write hello.txt");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .args(["-u", "-c", KEEPALIVE_SERVER])
            .current_dir(tmp.path()),
        &tmp.join("http.log"),
    );
    let port: u16 = wait_for("the server to listen", Duration::from_secs(30), || {
        let log = py.log_text();
        log.lines()
            .find_map(|l| l.strip_prefix("port ")?.trim().parse().ok())
    });
    let mut clients: Vec<_> = (0..50)
        .map(|_| {
            let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            std::io::BufReader::new(s)
        })
        .collect();
    for c in &mut clients {
        assert_eq!(keepalive_get(c, "hello.txt"), "kept alive by stasis\n");
    }
    let img = tmp.join("img");
    common::dump(py.pid, &img, &["--tcp-established"]).assert_ok("stasis dump");
    assert_eq!(
        py.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    let restored = Proc::adopt(pid, &py.log);
    for (i, c) in clients.iter_mut().enumerate() {
        let body = keepalive_get(c, "hello.txt");
        assert_eq!(body, "kept alive by stasis\n", "client {i} after restore");
    }
    stop(restored);
}

/// One RESP command on `conn`, the reply's first line.
fn redis(conn: &mut std::io::BufReader<std::net::TcpStream>, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut()
        .write_all(cmd.as_bytes())
        .expect("send to redis");
    let mut line = String::new();
    conn.read_line(&mut line).expect("redis reply");
    if line.starts_with('$') && line.trim_end() != "$-1" {
        line.clear();
        conn.read_line(&mut line).expect("redis bulk reply");
    }
    line.trim_end().to_string()
}

/// `redis-server` with data and a connected client (this test, on loopback) dumped with
/// `--tcp-established`: after the restore the same client connection keeps working and
/// the data is there.
#[test]
fn redis_client_survives_restore() {
    let _serial = common::serial();
    require_privileged!("redis_client_survives_restore");
    for tool in ["redis-server", "iptables", "ip6tables"] {
        if !which(tool) {
            return common::skip(
                "redis_client_survives_restore",
                &format!("{tool} is not installed"),
            );
        }
    }
    let tmp = TempDir::new("redis");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = common::spawn_logged(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(tmp.path()),
        &tmp.join("redis.log"),
    );
    let stream = wait_for("redis to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut conn = std::io::BufReader::new(stream);
    assert_eq!(redis(&mut conn, &["PING"]), "+PONG");
    for i in 0..100 {
        assert_eq!(
            redis(&mut conn, &["SET", &format!("k{i}"), &format!("v{i}")]),
            "+OK"
        );
    }
    let img = tmp.join("img");
    common::dump(server.pid, &img, &["--tcp-established"]).assert_ok("stasis dump");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    let restored = Proc::adopt(pid, &server.log);
    assert_eq!(
        redis(&mut conn, &["GET", "k42"]),
        "v42",
        "the old connection after restore"
    );
    assert_eq!(redis(&mut conn, &["INCR", "counter"]), ":1");
    assert_eq!(redis(&mut conn, &["DBSIZE"]), ":101");
    stop(restored);
}

/// Debian's PostgreSQL 15 server programs.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A `psql` session (`-Atq`: bare rows, no command tags) fed on its stdin.
struct Psql {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Psql {
    fn connect(host: &str, port: u16) -> Psql {
        let mut child = Command::new("psql")
            .args([
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-Atq", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start psql");
        let out = std::io::BufReader::new(child.stdout.take().expect("psql stdout"));
        Psql { child, out }
    }

    /// Runs `sql`, which prints nothing.
    fn exec(&mut self, sql: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("psql stdin");
        writeln!(stdin, "{sql}").expect("send to psql");
        stdin.flush().expect("flush to psql");
    }

    /// Runs a query printing one row; its text (empty if psql quit on an error).
    fn query(&mut self, sql: &str) -> String {
        use std::io::BufRead;
        self.exec(sql);
        let mut line = String::new();
        self.out.read_line(&mut line).expect("psql output");
        line.trim_end().to_string()
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid and gid of user `name`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag| {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A PostgreSQL 15 server (the postmaster, its background processes and the backend of a
/// live `psql` session on loopback TCP, outside the tree) with a table of data: the
/// postmaster maps a System V shared memory segment (its interlock), which every child
/// inherits. The tree is dumped with `--tcp-established` and restored; then the same
/// session still answers and writes, the data is there, and new connections (unix
/// socket and TCP) are served.
#[test]
fn postgres_session_survives_restore() {
    const TEST: &str = "postgres_session_survives_restore";
    let _serial = common::serial();
    require_privileged!(TEST);
    let bin = Path::new(PG_BIN);
    if !bin.join("postgres").exists() {
        return common::skip(TEST, "postgresql-15 is not installed");
    }
    for tool in ["psql", "iptables", "ip6tables"] {
        if !which(tool) {
            return common::skip(TEST, &format!("{tool} is not installed"));
        }
    }
    let Some((uid, gid)) = user_ids("postgres") else {
        return common::skip(TEST, "there is no postgres user");
    };
    let tmp = TempDir::new("postgres");
    let (data, sock) = (tmp.join("data"), tmp.join("sock"));
    for d in [&data, &sock] {
        fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown to postgres");
    }
    let init = Command::new(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run initdb");
    assert!(init.status.success(), "initdb: {init:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = common::spawn_logged(
        Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sock)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "huge_pages=off", "-c", "fsync=off"])
            .uid(uid)
            .gid(gid),
        &tmp.join("postgres.log"),
    );
    wait_for("postgres to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let mut session = Psql::connect("127.0.0.1", port);
    session.exec("CREATE TABLE t(i int); INSERT INTO t SELECT generate_series(1, 1000);");
    assert_eq!(session.query("SELECT count(*) FROM t;"), "1000");
    let maps = fs::read_to_string(format!("/proc/{}/maps", server.pid)).unwrap_or_default();
    let segment = maps.lines().find(|l| l.contains("/SYSV")).map(|l| {
        // The inode column of a SysV mapping is the segment's id.
        l.split_whitespace().nth(4).unwrap_or_default().to_string()
    });
    let segment = segment.unwrap_or_else(|| panic!("the postmaster maps no SysV segment:\n{maps}"));
    let _family = common::TreeGuard(common::descendants(server.pid));

    let img = tmp.join("img");
    common::dump(server.pid, &img, &["--tcp-established"]).assert_ok("stasis dump");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    let restored = Proc::adopt(pid, &server.log);

    assert_eq!(
        session.query("SELECT sum(i) FROM t;"),
        "500500",
        "the old session"
    );
    session.exec("INSERT INTO t VALUES (1001);");
    assert_eq!(session.query("SELECT count(*) FROM t;"), "1001");
    let sock = sock.to_string_lossy().into_owned();
    for host in [sock.as_str(), "127.0.0.1"] {
        let mut fresh = Psql::connect(host, port);
        assert_eq!(
            fresh.query("SELECT max(i) FROM t;"),
            "1001",
            "a new session on {host}"
        );
    }
    drop(session);
    stop(restored);
    // Killed, the server leaves its segment behind in the host's namespace.
    let _ = Command::new("ipcrm").args(["-m", &segment]).status();
}

/// A tmux server on a private socket; on drop it is killed with everything it runs (the
/// server and its orphans are reparented to us, the subreaper, and reaped).
struct Tmux {
    sock: std::path::PathBuf,
}

impl Tmux {
    fn start(tmp: &TempDir) -> Tmux {
        let t = Tmux {
            sock: tmp.join("tmux.sock"),
        };
        t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "sleep 1000000",
        ]);
        t.run(&["resize-window", "-t", "t", "-x", "120", "-y", "50"]);
        // A job's pane stays on screen after the dump kills it.
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Window `w` running `command`.
    fn window(&self, w: &str, command: &str) {
        self.run(&["new-window", "-d", "-t", &format!("t:{w}"), command]);
    }

    fn keys(&self, w: &str, keys: &[&str]) {
        let target = format!("t:{w}");
        let mut args = vec!["send-keys", "-t", &target];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Everything window `w` shows and scrolled past, wrapped lines joined.
    fn screen(&self, w: &str) -> String {
        self.run(&[
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-",
            "-t",
            &format!("t:{w}"),
        ])
    }

    fn pane(&self, w: &str, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &format!("t:{w}"), format]);
        out.trim().to_string()
    }

    fn wait_screen(&self, w: &str, what: &str) -> String {
        wait_for(
            &format!("{what:?} in tmux window {w}"),
            Duration::from_secs(20),
            || {
                let s = self.screen(w);
                s.contains(what).then_some(s)
            },
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let server = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(["display-message", "-p", "#{pid}"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<i32>()
                    .ok()
            });
        if let Some(server) = server {
            let mut all = vec![server];
            all.extend(common::descendants(server));
            common::reap_all(&all, true);
        }
    }
}

/// The numbers of the `tick N` lines of a screen, in order.
fn ticks(screen: &str) -> Vec<u64> {
    screen
        .lines()
        .filter_map(|l| l[l.find("tick ")? + 5..].trim().parse().ok())
        .collect()
}

/// The foreground process group of the terminal of `pid` (stat field 8).
fn tpgid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(5)?.parse().ok()
}

/// `ps` of the session of `pid`, for failure messages.
fn session_ps(pid: i32) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("ps -o pid,ppid,pgid,sid,tpgid,stat,wchan:20,comm -s $(ps -o sid= -p {pid}); grep -E 'Sig|State' /proc/{pid}/task/*/status")])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// An interactive bash in a tmux pane, with a background job counting on the terminal,
/// dumped with `--shell-job` and restored by `stasis restore -j` in another tmux window:
/// the count goes on in the new pane without a tick lost or repeated, bash (its line
/// editor's termios and foreground group put on the new terminal) answers what is typed,
/// runs a foreground job there and takes the terminal back after ^C.
#[test]
fn bash_job_in_tmux_continues() {
    let _serial = common::serial();
    require_privileged!("bash_job_in_tmux_continues");
    if !which("tmux") {
        return common::skip("bash_job_in_tmux_continues", "tmux is not installed");
    }
    let tmp = TempDir::new("tmux");
    let tmux = Tmux::start(&tmp);
    tmux.window(
        "1",
        "env -i PS1='prompt$ ' TERM=screen HOME=/ PATH=/usr/bin:/bin bash --norc --noprofile -i",
    );
    tmux.wait_screen("1", "prompt$");
    tmux.keys(
        "1",
        &[
            "(n=0; while sleep 0.2; do n=$((n+1)); echo \"tick $n\"; done) &",
            "Enter",
        ],
    );
    tmux.wait_screen("1", "tick 3");
    let bash: i32 = tmux.pane("1", "#{pane_pid}").parse().expect("pane pid");
    let img = tmp.join("img");
    common::dump(bash, &img, &["--shell-job"]).assert_ok("stasis dump -j");
    wait_for("the dumped pane to die", Duration::from_secs(10), || {
        (tmux.pane("1", "#{pane_dead}") == "1").then_some(())
    });
    common::reap_image_tree(&img);
    let last = *ticks(&tmux.screen("1"))
        .last()
        .expect("ticks before the dump");

    tmux.window(
        "2",
        &format!(
            "{STASIS} restore -j -D {}; echo restore-exit $?; sleep 1000000",
            img.display()
        ),
    );
    let screen = tmux.wait_screen("2", &format!("tick {}", last + 5));
    let after = ticks(&screen);
    let expected: Vec<u64> = (last + 1..=last + after.len() as u64).collect();
    assert_eq!(
        after, expected,
        "ticks after restore (last before: {last}):\n{screen}"
    );
    assert_eq!(
        tpgid(bash),
        Some(bash),
        "bash is not the foreground group again"
    );

    tmux.keys("2", &["echo answer-$((6*7))", "Enter"]);
    tmux.wait_screen("2", "answer-42");
    tmux.keys("2", &["sleep 1000", "Enter"]);
    // Once the job exec'd sleep: a SIGINT before lands in bash's forked child, which
    // may still hold bash's own handler and go on to exec sleep.
    let job = wait_for("a foreground sleep", Duration::from_secs(10), || {
        let comm = |g: i32| fs::read_to_string(format!("/proc/{g}/comm")).unwrap_or_default();
        tpgid(bash).filter(|&g| g != bash && comm(g).trim() == "sleep")
    });
    tmux.keys("2", &["C-c"]);
    wait_for(
        "bash to take the terminal back",
        Duration::from_secs(10),
        || (tpgid(bash) == Some(bash) && common::proc_state(job).is_none()).then_some(()),
    );
    tmux.keys("2", &["echo after-$((2+3))", "Enter"]);
    tmux.wait_screen("2", "after-5");
    let next = format!("tick {}", after.last().expect("ticks after restore") + 10);
    let screen = tmux.wait_screen("2", &next);
    let more = ticks(&screen);
    assert!(
        more.len() > after.len() && more.windows(2).all(|w| w[1] == w[0] + 1),
        "the count did not go on in order:\n{screen}\n{}",
        session_ps(bash)
    );
    assert!(
        !screen.contains("restore-exit"),
        "stasis restore ended:\n{screen}"
    );
}

/// `seq | cat | awk`: awk checks that every line is the next number (a byte lost or read twice
/// in the pipe breaks the sequence: it writes `gap` and exits) and appends every
/// 100,000th line number to `progress`.
const PIPELINE: &str = r#"seq 1 1000000000000 | cat | awk '$1 != NR { print "line " NR ": " $0 > "gap"; exit 1 } NR % 100000 == 0 { print NR >> "progress"; close("progress") }'"#;

/// The progress lines, each a number.
fn progress(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Dumps the tree of `root` into tmp/img (timed, printed for the report), reaps it and
/// restores it with -d (timed too); the restored root.
fn timed_round_trip(test: &str, root: &mut Proc, tmp: &TempDir, extra: &[&str]) -> Proc {
    let img = tmp.join("img");
    let t = Instant::now();
    let out = common::dump(root.pid, &img, extra);
    let dumped = t.elapsed();
    out.assert_ok("stasis dump");
    assert_eq!(
        root.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img);
    let t = Instant::now();
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    let restored = t.elapsed();
    assert_eq!(pid, root.pid, "restored under another pid");
    eprintln!(
        "{test}: dump {:.3} s, restore {:.3} s (wall, stasis commands)",
        dumped.as_secs_f64(),
        restored.as_secs_f64()
    );
    Proc::adopt(pid, &root.log)
}

/// A shell pipeline (`sh` with `seq`, `cat` and `awk` as children, two pipes from one
/// child to the next, each with up to 64 KiB in flight) dumped and restored as a whole
/// tree: awk carries on reading exactly where it was, with no line lost or read twice.
#[test]
fn shell_pipeline_continues() {
    let _serial = common::serial();
    require_privileged!("shell_pipeline_continues");
    let tmp = TempDir::new("pipeline");
    let mut sh = common::spawn_logged(
        Command::new("sh")
            .args(["-c", PIPELINE])
            .current_dir(tmp.path()),
        &tmp.join("sh.log"),
    );
    let path = tmp.join("progress");
    wait_for("awk to make progress", Duration::from_secs(30), || {
        (progress(&path).len() >= 3).then_some(())
    });
    let family = common::TreeGuard(common::descendants(sh.pid));
    let names: Vec<String> = family.0.iter().filter_map(|&p| comm(p)).collect();
    for name in ["seq", "cat", "awk"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} under sh: {names:?}"
        );
    }
    let restored = timed_round_trip("shell_pipeline_continues", &mut sh, &tmp, &[]);
    let at_dump = progress(&path).len();
    let family = common::TreeGuard(common::descendants(restored.pid));
    assert_eq!(
        family.0.len(),
        3,
        "seq, cat and awk are back: {:?}",
        family.0
    );
    wait_for(
        "awk to go on after the restore",
        Duration::from_secs(30),
        || (progress(&path).len() >= at_dump + 5).then_some(()),
    );
    assert!(
        !tmp.join("gap").exists(),
        "awk saw a gap: {}",
        fs::read_to_string(tmp.join("gap")).unwrap_or_default()
    );
    let lines = progress(&path);
    let expected: Vec<u64> = (1..=lines.len() as u64).map(|i| i * 100_000).collect();
    assert_eq!(lines, expected, "progress lines lost or repeated");
    stop(restored);
    drop(family);
}

/// A python parent that runs a bash counting loop on a pseudo-terminal (`pty.fork()`:
/// the child leads a session whose controlling terminal and stdio are the slave) and
/// copies what comes out of the master to argv[1].
const PY_PTY_PARENT: &str = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done"])
with open(sys.argv[1], "ab", buffering=0) as f:
    while True:
        data = os.read(fd, 4096)
        if not data:
            break
        f.write(data)
"#;

/// The numbers a pty typescript holds, one a line (`\r\n` endings).
fn typescript_numbers(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').parse().ok())
        .collect()
}

/// The controlling terminal (stat field 7) and its foreground group (field 8) of `pid`.
fn ctty_of(pid: i32) -> Option<(i32, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 2..].split(' ').skip(4);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// The layout of terminal multiplexers and launchers: a python parent opens a
/// pseudo-terminal and runs a bash counting loop on it (bash leads a session whose
/// controlling terminal and stdio are the slave; its `sleep`s inherit them), copying
/// what comes out of the master to a file. Dumped and restored without `--shell-job`:
/// the count goes on through the pty, no number lost or repeated, and bash keeps the
/// terminal as its controlling terminal, with the same foreground group.
#[test]
fn python_pty_counter_continues() {
    let test = "python_pty_counter_continues";
    let _serial = common::serial();
    require_privileged!(test);
    if !which("python3") {
        return common::skip(test, "python3 is not installed");
    }
    let tmp = TempDir::new("python-pty");
    let out = tmp.join("typescript");
    let mut parent = common::spawn_logged(
        Command::new("python3")
            .args(["-c", PY_PTY_PARENT])
            .arg(&out)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    wait_for("five numbers", Duration::from_secs(30), || {
        (typescript_numbers(&out).len() >= 5).then_some(())
    });
    let family = common::TreeGuard(common::descendants(parent.pid));
    let bash = *family
        .0
        .iter()
        .find(|&&p| comm(p).as_deref() == Some("bash"))
        .expect("bash under python");
    let before = ctty_of(bash).expect("stat of bash");
    assert_ne!(before.0, 0, "bash has no controlling terminal");
    let restored = timed_round_trip(test, &mut parent, &tmp, &[]);
    let family = common::TreeGuard(common::descendants(restored.pid));
    assert_eq!(
        ctty_of(bash),
        Some(before),
        "bash's terminal or foreground group changed"
    );
    let at_dump = typescript_numbers(&out).len();
    wait_for("the count to go on", Duration::from_secs(30), || {
        (typescript_numbers(&out).len() >= at_dump + 10).then_some(())
    });
    let numbers = typescript_numbers(&out);
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "numbers lost or repeated across the restore"
    );
    stop(restored);
    drop(family);
}

/// nginx.conf for a master with two workers on 127.0.0.1:`port`, everything in `dir`.
fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n  log_format pids '$pid $request';\n  access_log {d}/access.log pids;\n\
           client_body_temp_path {d}/body;\n\
           server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n"
    )
}

/// The pids that served `GET /name` requests, from the access log.
fn served_by(tmp: &TempDir, name: &str) -> Vec<i32> {
    let log = fs::read_to_string(tmp.join("access.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("GET /{name} ")))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// nginx, a master and two workers (the listening socket shared by all three, a
/// socketpair channel from the master to each worker, shared memory, epoll in each
/// worker), serves HTTP on loopback before the dump and after the restore of the whole
/// tree; then a reload (SIGHUP: new workers forked, the old ones told to quit over their
/// channels) still serves.
#[test]
fn nginx_serves_after_restore() {
    let _serial = common::serial();
    require_privileged!("nginx_serves_after_restore");
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        return common::skip("nginx_serves_after_restore", "nginx is not installed");
    };
    let tmp = TempDir::new("nginx");
    fs::create_dir(tmp.join("www")).expect("mkdir www");
    fs::write(tmp.join("www/hello.txt"), "served by stasis\n").expect("write hello.txt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let conf = tmp.join("nginx.conf");
    fs::write(&conf, nginx_conf(tmp.path(), port)).expect("write nginx.conf");
    let mut master = common::spawn_logged(
        Command::new(nginx)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(tmp.path()),
        &tmp.join("nginx.log"),
    );
    let body = wait_for("nginx to serve", Duration::from_secs(30), || {
        http_get(port, "hello.txt")
    });
    assert_eq!(body, "served by stasis\n");
    let workers = wait_for("two workers", Duration::from_secs(10), || {
        let w = common::descendants(master.pid);
        (w.len() == 2).then_some(w)
    });
    let family = common::TreeGuard(workers.clone());
    let restored = timed_round_trip("nginx_serves_after_restore", &mut master, &tmp, &[]);
    for w in &workers {
        assert!(
            comm(*w).is_some_and(|c| c.starts_with("nginx")),
            "worker {w} is not back"
        );
    }
    for _ in 0..20 {
        let body = http_get(port, "hello.txt");
        assert_eq!(body.as_deref(), Some("served by stasis\n"), "after restore");
    }
    let served = served_by(&tmp, "hello.txt");
    assert!(
        served[1..].iter().all(|p| workers.contains(p)),
        "requests served by other processes than the restored workers: {served:?}"
    );
    // Reload: the master forks two new workers and tells the old ones to quit.
    restored.signal(libc::SIGHUP);
    let fresh = wait_for("new workers after SIGHUP", Duration::from_secs(30), || {
        let now = common::descendants(restored.pid);
        (now.len() == 2 && now.iter().all(|p| !workers.contains(p))).then_some(now)
    });
    let family2 = common::TreeGuard(fresh.clone());
    let body = wait_for(
        "an answer after the reload",
        Duration::from_secs(10),
        || http_get(port, "hello.txt"),
    );
    assert_eq!(body, "served by stasis\n");
    stop(restored);
    drop((family, family2));
}

/// A parent and a `multiprocessing` child (fork) talking over a `multiprocessing.Pipe`
/// (a socketpair; the parent closed the child's end) with ten requests in flight: the
/// child answers each number n with n + 1, the parent checks every answer in order and
/// writes "answers ok pid" to argv[1] every 100 ms. The child's liveness sentinel is a
/// pipe split the same way.
const PY_MP: &str = r#"
import multiprocessing as mp, os, sys, time
def child(conn):
    while True:
        conn.send(conn.recv() + 1)
if __name__ == "__main__":
    mp.set_start_method("fork")
    path = sys.argv[1]
    ours, theirs = mp.Pipe()
    p = mp.Process(target=child, args=(theirs,), daemon=True)
    p.start()
    theirs.close()
    sent = answered = 0
    ok = True
    last = time.monotonic()
    while True:
        while sent - answered < 10:
            ours.send(sent)
            sent += 1
        ok = ok and ours.recv() == answered + 1
        answered += 1
        if time.monotonic() - last > 0.1:
            with open(path + ".tmp", "w") as f:
                f.write(f"{answered} {ok} {os.getpid()} {p.is_alive()}\n")
            os.rename(path + ".tmp", path)
            last = time.monotonic()
"#;

/// "answers ok pid child-alive" from the multiprocessing test's state file.
fn read_mp_state(path: &Path) -> Option<(u64, bool, bool)> {
    let text = fs::read_to_string(path).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    Some((
        f.first()?.parse().ok()?,
        *f.get(1)? == "True",
        *f.get(3)? == "True",
    ))
}

/// Python `multiprocessing`: a socketpair split between parent and child, requests and
/// answers queued both ways at the dump; after the restore of both processes every
/// answer still arrives, in order, exactly once.
#[test]
fn python_multiprocessing_pipe_continues() {
    let _serial = common::serial();
    require_privileged!("python_multiprocessing_pipe_continues");
    if !which("python3") {
        return common::skip(
            "python_multiprocessing_pipe_continues",
            "python3 is not installed",
        );
    }
    let tmp = TempDir::new("py-mp");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3").args(["-c", PY_MP]).arg(&state),
        &tmp.join("py.log"),
    );
    wait_for("answers", Duration::from_secs(30), || {
        read_mp_state(&state).filter(|s| s.0 > 1000)
    });
    let family = common::TreeGuard(common::descendants(py.pid));
    assert_eq!(family.0.len(), 1, "one child: {:?}", family.0);
    let restored = timed_round_trip("python_multiprocessing_pipe_continues", &mut py, &tmp, &[]);
    let at_dump = read_mp_state(&state).expect("state at dump").0;
    let family = common::TreeGuard(common::descendants(restored.pid));
    let (answers, ok, alive) = wait_for("answers after restore", Duration::from_secs(30), || {
        read_mp_state(&state).filter(|s| s.0 > at_dump + 1000)
    });
    assert!(
        ok && alive,
        "after {answers} answers: in order {ok}, child alive {alive}; log:\n{}",
        restored.log_text()
    );
    stop(restored);
    drop(family);
}

/// `multiprocessing` with the fork context, the shared-memory parts: two worker processes take numbers from one
/// Queue and answer on another (pipes, SemLocks in deleted /dev/shm files, a feeder
/// thread), counting under a shared Value's lock (a deleted /dev/shm arena). The parent
/// writes "done counter bad workers-seen pid worker-pids..." to argv[1] after each round
/// of 10 (every task answered, so counter must equal done).
const PY_MULTI: &str = r#"
import multiprocessing as mp, os, sys, time
def worker(tasks, results, counter):
    while True:
        n = tasks.get()
        with counter.get_lock():
            counter.value += 1
        results.put((n, n * n, os.getpid()))
ctx = mp.get_context("fork")
path = sys.argv[1]
tasks, results = ctx.Queue(), ctx.Queue()
counter = ctx.Value("i", 0)
workers = [ctx.Process(target=worker, args=(tasks, results, counter), daemon=True)
           for _ in range(2)]
for w in workers:
    w.start()
n = done = bad = 0
seen = set()
while True:
    for _ in range(10):
        n += 1
        tasks.put(n)
    for _ in range(10):
        k, sq, wpid = results.get(timeout=30)
        done += 1
        bad += sq != k * k
        seen.add(wpid)
    with open(path + ".tmp", "w") as f:
        pids = " ".join(str(w.pid) for w in workers)
        f.write(f"{done} {counter.value} {bad} {len(seen)} {os.getpid()} {pids}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.02)
"#;

/// `(done, counter, bad, workers seen, pid, worker pids)` from the multiprocessing program.
fn read_multi_state(path: &Path) -> Option<(u64, u64, u64, usize, i32, Vec<i32>)> {
    let text = fs::read_to_string(path).ok()?;
    let v: Vec<&str> = text.split_whitespace().collect();
    let n = |i: usize| v.get(i)?.parse::<u64>().ok();
    let pids = v
        .get(5..)?
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<i32>>>()?;
    Some((n(0)?, n(1)?, n(2)?, n(3)? as usize, n(4)? as i32, pids))
}

/// The multiprocessing tree (parent, two workers) is dumped and restored as a whole: the
/// same pids carry on, every task is answered right, and the shared counter (lock and
/// value in shared memory) still equals the number of answers.
#[test]
fn python_multiprocessing_queue_and_value_continue() {
    let _serial = common::serial();
    require_privileged!("python_multiprocessing_queue_and_value_continue");
    if !which("python3") {
        return common::skip(
            "python_multiprocessing_queue_and_value_continue",
            "python3 is not installed",
        );
    }
    let tmp = TempDir::new("python-mp");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .arg("-c")
            .arg(PY_MULTI)
            .arg(&state)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    let before = wait_for("the workers to answer", Duration::from_secs(60), || {
        read_multi_state(&state).filter(|s| s.0 >= 200)
    });
    let family = common::TreeGuard(common::descendants(py.pid));
    assert_eq!(
        (before.1, before.2, before.3, before.4),
        (before.0, 0, 2, py.pid)
    );
    assert_eq!(family.0.len(), 2, "two workers: {:?}", family.0);
    let test = "python_multiprocessing_queue_and_value_continue";
    let restored = timed_round_trip(test, &mut py, &tmp, &[]);
    let family = common::TreeGuard(common::descendants(restored.pid));
    let (at_dump, ..) = read_multi_state(&state).expect("state file");
    let after = wait_for("the workers to answer on", Duration::from_secs(20), || {
        read_multi_state(&state).filter(|s| s.0 > at_dump + 200)
    });
    assert_eq!(
        (after.1, after.2, after.4, &after.5),
        (after.0, 0, py.pid, &before.5),
        "counter vs answers, wrong answers, pid, worker pids after restore; log:\n{}",
        restored.log_text()
    );
    stop(restored);
    drop(family);
}
