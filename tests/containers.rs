//! A runc container checkpointed by stasis's own CLI (not through `runc checkpoint`): a
//! busybox root filesystem made on the fly, runc's default spec (its own pid, mount, UTS,
//! IPC and network namespaces, hostname set) plus a tmpfs at `/data` holding a file. Inside,
//! a busybox `nc` server and an `nc` client connected to it over TCP on the container's
//! loopback, the client fed by a shell loop counting in a variable (also written to
//! `/tmp/count` each second). `stasis dump -t INIT --tcp-established` (the init found with
//! `runc state`) ends every process of the container; `stasis restore -d` brings them back:
//! the count goes on from where it was, the tmpfs file is there, numbers sent after the
//! restore arrive on the same connection, and the init's mount table and hostname are as
//! they were. Skips without root, runc or /bin/busybox (Debian's runc and busybox-static).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

/// The container's script: its stdio its own /dev/null (runc's is a file outside its mount
/// namespace), the tmpfs file, the TCP server (its stdin a pipe that never
/// ends: `nc` closes the connection at the end of its input), the counting client.
const SCRIPT: &str = "exec </dev/null >/dev/null 2>&1; echo kept-in-tmpfs > /data/file; \
    sleep 100000 | nc -l -p 9000 > /tmp/recv & sleep 0.5; \
    i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 1; done \
    | nc 127.0.0.1 9000";

const HOSTNAME: &str = "stasis-runc";

fn runc(args: &[&str]) -> std::process::Output {
    Command::new("runc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run runc")
}

/// Why this test cannot run here, if it cannot.
fn unusable() -> Option<String> {
    if let Err(why) = common::privileged() {
        return Some(why);
    }
    let have = |p: &str| Path::new(p).exists();
    if !have("/usr/sbin/runc") || !have("/bin/busybox") {
        return Some("needs /usr/sbin/runc and /bin/busybox (runc, busybox-static)".into());
    }
    None
}

/// A bundle in `dir`: busybox as the root filesystem, runc's default spec with no
/// terminal, `sh -c SCRIPT`, the hostname, and a tmpfs at `/data`.
fn bundle(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "data"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir in the rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "nc", "cat", "hostname"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .expect("busybox applet link");
    }
    let out = runc(&["spec", "--bundle", dir.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = dir.join("config.json");
    let text = std::fs::read(&path).expect("read config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&text).expect("parse config.json");
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(["sh", "-c", SCRIPT]);
    c["hostname"] = HOSTNAME.into();
    c["root"]["readonly"] = false.into();
    let mounts = c["mounts"].as_array_mut().expect("mounts in the spec");
    // Left out: the cgroup filesystem at /sys/fs/cgroup (on a cgroup v1 host, one mount
    // per controller), which stasis refuses to make again unless declared external.
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    mounts.push(serde_json::json!({"destination": "/data", "type": "tmpfs",
        "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755", "size=1m"]}));
    std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("write config.json");
}

/// The pid (ours) of the init of container `id`.
fn init_pid(id: &str) -> Option<i32> {
    let out = runc(&["state", id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["pid"].as_i64().map(|p| p as i32).filter(|&p| p > 0)
}

/// A number the container wrote to `rel` under its root (its last line; 0: none yet).
fn last_number(dir: &Path, rel: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join("rootfs").join(rel)).unwrap_or_default();
    (text.lines().last())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// `pid`'s mount table with what a restore renumbers left out: mount and parent ids, the
/// device numbers of its anonymous filesystems, the peer group numbers; sorted (the order
/// of the lines is that of the mounts' creation: runc's pivot_root puts `/proc` first).
fn mount_table(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut table: Vec<String> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let kept = fields.iter().skip(3).map(|f| match f.split_once(':') {
                Some((tag, _)) if ["shared", "master", "propagate_from"].contains(&tag) => tag,
                _ => f,
            });
            kept.collect::<Vec<_>>().join(" ")
        })
        .collect();
    table.sort();
    table
}

/// Runs `what` inside the namespaces (mount, UTS) of `pid`.
fn inside(pid: i32, what: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-u"])
        .args(what)
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Waits up to `secs` for `ready`.
fn wait_for(secs: u64, mut ready: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if ready() {
            return true;
        }
        common::sleep_ms(50);
    }
    ready()
}

/// Whether the numbers received so far are 1, 2, ... n, one a line (none lost, no restart).
fn consecutive(dir: &Path) -> bool {
    let text = std::fs::read_to_string(dir.join("rootfs/tmp/recv")).unwrap_or_default();
    (text.lines().enumerate()).all(|(i, l)| l.trim().parse::<usize>().ok() == Some(i + 1))
}

/// The container `id`, deleted (and every process of it killed) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        runc(&["delete", "--force", &self.0]);
    }
}

#[test]
fn runc_container_dumped_and_restored_by_stasis() {
    let test = "runc_container_dumped_and_restored_by_stasis";
    let _serial = common::serial();
    if let Some(why) = unusable() {
        common::skip(test, &why);
        return;
    }
    let tmp = TempDir::new(test);
    let dir = tmp.join("bundle");
    bundle(&dir);
    let id = format!("stasis-test-{}", std::process::id());
    // The container's stdio is runc's: files, so that no pipe of ours stays open.
    let errors = tmp.join("runc.err");
    let started = Command::new("runc")
        .args(["run", "-d", "--bundle", dir.to_str().expect("utf-8"), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("create runc.err"))
        .status()
        .expect("spawn runc run");
    let container = Container(id.clone());
    if !started.success() {
        let why = std::fs::read_to_string(&errors).unwrap_or_default();
        let why = format!("runc cannot start a container here: {}", why.trim());
        if std::env::var_os("STASIS_IN_CONTAINER").is_some() {
            common::skip(test, &why);
            return;
        }
        panic!("{why}");
    }
    let init = init_pid(&id).expect("runc state names the init");
    assert!(
        wait_for(20, || last_number(&dir, "tmp/recv") >= 2),
        "the in-container TCP client sends"
    );
    let tree: Vec<i32> = std::iter::once(init)
        .chain(common::descendants(init))
        .collect();
    let mounts = mount_table(init);
    assert_eq!(inside(init, &["hostname"]), HOSTNAME);
    assert_eq!(inside(init, &["cat", "/data/file"]), "kept-in-tmpfs");
    let img = tmp.join("img");
    common::dump(init, &img, &["--tcp-established"]).assert_ok("stasis dump of the container");
    let dumped = last_number(&dir, "tmp/count");
    common::reap_all(&tree, false);
    let alive: Vec<i32> = (tree.iter().copied())
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(
        alive.is_empty(),
        "processes of the container left: {alive:?}"
    );
    common::sleep_ms(1500);
    assert_eq!(last_number(&dir, "tmp/count"), dumped, "the count stopped");
    let sent = last_number(&dir, "tmp/recv");
    let out = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
    ]);
    let _guard = common::TreeGuard(tree.clone());
    out.assert_ok("stasis restore of the container");
    let went_on = wait_for(10, || last_number(&dir, "tmp/recv") >= sent + 2);
    let count = last_number(&dir, "tmp/count");
    assert!(
        went_on,
        "numbers after {sent} arrive on the restored connection (the count is {count})"
    );
    assert!(
        count > dumped,
        "the count went on from {dumped} (now {count})"
    );
    assert!(consecutive(&dir), "the count went on, not restarted");
    assert_eq!(inside(init, &["hostname"]), HOSTNAME);
    assert_eq!(inside(init, &["cat", "/data/file"]), "kept-in-tmpfs");
    assert_eq!(mount_table(init), mounts, "the container's mount table");
    drop(container);
    common::reap_all(&tree, true);
}
