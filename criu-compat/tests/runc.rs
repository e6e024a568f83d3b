//! runc 1.1 in front of stasis-criu: `runc --criu stasis-criu checkpoint` of a busybox
//! counter container (its own mount namespace, cgroups managed as runc asks), then
//! `runc --criu stasis-criu restore -d`: the container runs again and its counter goes on
//! from where it was. The second test keeps runc's default network namespace (only the
//! loopback, up): a busybox `nc` server in the container receives the counter from an
//! in-container `nc` client over TCP, checkpointed with `--tcp-established`; after the
//! restore the same connection carries the counter on and the loopback is up. The third
//! does the first after `runc checkpoint --pre-dump`, with the checkpoint made against it
//! (`--parent-path`). Skips without root, runc or /bin/busybox (Debian's runc and
//! busybox-static).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stasis-criu");

fn runc(args: &[&str]) -> std::process::Output {
    Command::new("runc").args(args).output().unwrap()
}

/// The counter, written to /tmp/count every 0.1 s.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";
/// The counter sent over TCP on loopback to an `nc` server writing it to /tmp/recv (its
/// stdin a pipe that never ends: `nc` closes the connection at the end of its input).
const COUNTER_OVER_TCP: &str = "sleep 100000 | nc -l -p 9000 > /tmp/recv & sleep 0.5; \
    i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done \
    | nc 127.0.0.1 9000";

/// A bundle in `dir` running `sh -c script`, namespaces: mount only, or mount and
/// network (`net`).
fn bundle(dir: &Path, script: &str, net: bool) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "nc"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let out = runc(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    c["process"]["rlimits"] = serde_json::json!([]);
    c["linux"]["namespaces"] = match net {
        true => serde_json::json!([{"type": "mount"}, {"type": "network"}]),
        false => serde_json::json!([{"type": "mount"}]),
    };
    c["mounts"] = serde_json::json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    c["root"]["readonly"] = false.into();
    let obj = c.as_object_mut().unwrap();
    obj.remove("hostname");
    let linux = obj["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
}

/// How the checkpoint is made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    /// After `runc checkpoint --pre-dump`, against it.
    PreDump,
    /// `runc checkpoint --page-server` to `stasis-criu page-server`; the restore reads the
    /// server's directory (runc's own files copied there, as with CRIU).
    PageServer,
}

#[test]
fn runc_checkpoint_and_restore_of_a_counter() {
    checkpoint_and_restore(COUNTER, false, Mode::Plain);
}

#[test]
fn runc_checkpoint_and_restore_with_its_network_namespace() {
    checkpoint_and_restore(COUNTER_OVER_TCP, true, Mode::Plain);
}

/// `runc checkpoint --page-server ADDR:PORT` (DUMP with `opts.ps`) to a `stasis-criu
/// page-server`, then `runc restore` from the server's directory.
#[test]
fn runc_checkpoint_to_a_page_server() {
    checkpoint_and_restore(COUNTER, false, Mode::PageServer);
}

/// `runc checkpoint --pre-dump --image-path pre`, then `runc checkpoint --parent-path
/// ../pre`, then restore: the same counter, its memory mostly taken from the pre-dump.
#[test]
fn runc_pre_dump_checkpoint_and_restore_of_a_counter() {
    if stasis::check::tracking_method().is_none() {
        println!("SKIP runc pre-dump: the kernel has no dirty-page tracking stasis uses");
        return;
    }
    checkpoint_and_restore(COUNTER, false, Mode::PreDump);
}

/// The tests reap any child (`waitpid(-1)`): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `runc checkpoint --pre-dump` of container `id` into `dir/pre`; the arguments that make
/// the checkpoint after it incremental.
fn pre_dump(dir: &Path, id: &str) -> Vec<String> {
    let pre = dir.join("pre");
    let pre_arg = pre.to_str().unwrap();
    let out = runc(&[
        "--criu",
        BIN,
        "checkpoint",
        "--pre-dump",
        "--image-path",
        pre_arg,
        "--work-path",
        pre_arg,
        id,
    ]);
    if !out.status.success() {
        let log = std::fs::read_to_string(pre.join("dump.log")).unwrap_or_default();
        runc(&["delete", "--force", id]);
        panic!(
            "runc checkpoint --pre-dump failed: {}\ndump.log:\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vec!["--parent-path".into(), "../pre".into()]
}

/// The last number the container's `nc` server received (0: none yet).
fn received(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("rootfs/tmp/recv")).unwrap_or_default();
    (text.lines().last())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the loopback of the network namespace of the container's init is up.
fn loopback_up(id: &str) -> bool {
    let state = runc(&["state", id]);
    let v: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap_or_default();
    let pid = v["pid"].as_i64().unwrap_or(0).to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip", "-o", "link", "show", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("LOOPBACK,UP")
}

/// Starts `stasis-criu page-server -d` on `dir/srv`; the `runc checkpoint` arguments
/// that send to it.
fn page_server(dir: &Path) -> Vec<String> {
    let port = (30500 + std::process::id() % 20000).to_string();
    let srv = dir.join("srv");
    let out = Command::new(BIN)
        .args(["page-server", "-d", "-D", srv.to_str().unwrap()])
        .args(["--address", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vec!["--page-server".into(), format!("127.0.0.1:{port}")]
}

/// After a checkpoint to the page server: runc's files of `img` copied into the server's
/// directory, which the restore then reads.
fn restore_dir(dir: &Path, img: &Path) -> std::path::PathBuf {
    let srv = dir.join("srv");
    for f in std::fs::read_dir(img).unwrap().flatten() {
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), srv.join(f.file_name())).unwrap();
        }
    }
    srv
}

fn checkpoint_and_restore(script: &str, net: bool, mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let have = |p: &str| Path::new(p).exists();
    if !nix::unistd::geteuid().is_root() || !have("/usr/sbin/runc") || !have("/bin/busybox") {
        println!("SKIP runc checkpoint: needs root, /usr/sbin/runc and /bin/busybox");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path(), script, net);
    let id = format!("stasis-criu-{}-{net}-{mode:?}", std::process::id());
    let b = dir.path().to_str().unwrap();
    // The container's stdio is /dev/null, so that no pipe of ours stays open.
    let started = Command::new("runc")
        .args(["run", "-d", "--bundle", b, &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(started.success());
    // The container's sh runs once it has counted (before, runc's init may still be
    // setting it up, not a process to checkpoint).
    let counted = dir.path().join("rootfs/tmp/count");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !counted.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let img = dir.path().join("img");
    let img_arg = img.to_str().unwrap();
    if net {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            received(dir.path()) > 0,
            "the in-container TCP client sends"
        );
    }
    let parent: Vec<String> = match mode {
        Mode::Plain => Vec::new(),
        Mode::PreDump => pre_dump(dir.path(), &id),
        Mode::PageServer => page_server(dir.path()),
    };
    let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
    let tcp: &[&str] = if net { &["--tcp-established"] } else { &[] };
    let out = runc(
        &[
            &["--criu", BIN, "checkpoint"][..],
            tcp,
            &parent,
            &["--image-path", img_arg, "--work-path", img_arg, &id],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let log = std::fs::read_to_string(img.join("dump.log")).unwrap_or_default();
    if !out.status.success() {
        runc(&["delete", "--force", &id]);
        panic!("runc checkpoint failed: {stderr}\ndump.log:\n{log}");
    }
    let count = || {
        std::fs::read_to_string(dir.path().join("rootfs/tmp/count"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let dumped = count();
    // The dumped processes were re-parented to this test (a subreaper): reap them, so
    // that their pids are free for the restore.
    for _ in 0..15 {
        while nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            .is_ok_and(|s| s.pid().is_some())
        {}
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        count(),
        dumped,
        "the checkpointed container stopped counting"
    );
    let sent = received(dir.path());
    let from = match mode {
        Mode::PageServer => restore_dir(dir.path(), &img),
        _ => img.clone(),
    };
    let restored = runc(
        &[
            &["--criu", BIN, "restore", "-d"][..],
            tcp,
            &[
                "--image-path",
                from.to_str().unwrap(),
                "--work-path",
                img_arg,
                "--bundle",
                b,
                &id,
            ],
        ]
        .concat(),
    );
    let rlog = std::fs::read_to_string(img.join("restore.log")).unwrap_or_default();
    // The restored container counts on within 10 s (a fixed wait read the file while
    // the shell had truncated it, under load), and its connection carries it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let went_on = |now: &dyn Fn() -> u64, from: u64| {
        while now() <= from && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        now()
    };
    let after = if restored.status.success() {
        went_on(&count, dumped)
    } else {
        count()
    };
    let lo_up = !net || loopback_up(&id);
    let got = match (net, restored.status.success()) {
        (true, true) => went_on(&|| received(dir.path()), sent),
        _ => received(dir.path()),
    };
    let state = runc(&["state", &id]);
    runc(&["delete", "--force", &id]);
    while nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        .is_ok_and(|s| s.pid().is_some())
    {}
    assert!(
        restored.status.success(),
        "runc restore failed: {}\nrestore.log:\n{rlog}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("\"running\""),
        "the restored container runs"
    );
    assert!(
        after > dumped,
        "the counter went on from {dumped} (now {after})"
    );
    if net {
        assert!(lo_up, "the restored container's loopback is up");
        assert!(
            got > sent,
            "the TCP connection carries the counter on from {sent} (now {got})"
        );
    }
}
