//! runc 1.1 in front of stasis-criu: `runc --criu stasis-criu checkpoint` of a busybox
//! counter container (its own mount namespace, cgroups managed as runc asks), then
//! `runc --criu stasis-criu restore -d`: the container runs again and its counter goes on
//! from where it was; and the same after `runc checkpoint --pre-dump` with the
//! checkpoint made against it (`--parent-path`). Skips without root, runc or
//! /bin/busybox (Debian's runc and busybox-static).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stasis-criu");

fn runc(args: &[&str]) -> std::process::Output {
    Command::new("runc").args(args).output().unwrap()
}

/// A bundle in `dir` running `sh` counting into /tmp/count, namespaces: mount only.
fn bundle(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let out = runc(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    c["process"]["rlimits"] = serde_json::json!([]);
    c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
    c["mounts"] = serde_json::json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    c["root"]["readonly"] = false.into();
    let obj = c.as_object_mut().unwrap();
    obj.remove("hostname");
    let linux = obj["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
}

#[test]
fn runc_checkpoint_and_restore_of_a_counter() {
    checkpoint_and_restore(false);
}

/// `runc checkpoint --pre-dump --image-path pre`, then `runc checkpoint --parent-path
/// ../pre`, then restore: the same counter, its memory mostly taken from the pre-dump.
#[test]
fn runc_pre_dump_checkpoint_and_restore_of_a_counter() {
    if stasis::check::tracking_method().is_none() {
        println!("SKIP runc pre-dump: the kernel has no dirty-page tracking stasis uses");
        return;
    }
    checkpoint_and_restore(true);
}

/// The tests reap any child (`waitpid(-1)`): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn checkpoint_and_restore(pre_dump: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let have = |p: &str| Path::new(p).exists();
    if !nix::unistd::geteuid().is_root() || !have("/usr/sbin/runc") || !have("/bin/busybox") {
        println!("SKIP runc checkpoint: needs root, /usr/sbin/runc and /bin/busybox");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path());
    let id = format!("stasis-criu-{}-{}", std::process::id(), u8::from(pre_dump));
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
    let img = dir.path().join("img");
    let img_arg = img.to_str().unwrap();
    let mut parent = Vec::new();
    if pre_dump {
        let pre = dir.path().join("pre");
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
            &id,
        ]);
        if !out.status.success() {
            let log = std::fs::read_to_string(pre.join("dump.log")).unwrap_or_default();
            runc(&["delete", "--force", &id]);
            panic!(
                "runc checkpoint --pre-dump failed: {}\ndump.log:\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parent = vec!["--parent-path", "../pre"];
    }
    let mut args = vec![
        "--criu",
        BIN,
        "checkpoint",
        "--image-path",
        img_arg,
        "--work-path",
        img_arg,
    ];
    args.extend(parent);
    args.push(&id);
    let out = runc(&args);
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
    let restored = runc(&[
        "--criu",
        BIN,
        "restore",
        "-d",
        "--image-path",
        img_arg,
        "--work-path",
        img_arg,
        "--bundle",
        b,
        &id,
    ]);
    let rlog = std::fs::read_to_string(img.join("restore.log")).unwrap_or_default();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = count();
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
}
