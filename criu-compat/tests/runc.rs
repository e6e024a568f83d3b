//! runc 1.1 in front of stasis-criu: `runc --criu stasis-criu checkpoint` of a busybox
//! counter container. runc containers always have their own mount namespace and runc
//! asks cgroup management (`manage_cgroups`), neither of which stasis does yet, so
//! today the checkpoint is refused: this test checks that runc gets through the version
//! handshake to the DUMP, that the refusal's reason is the last line of `dump.log` (which
//! runc points its user to), and that the container runs on untouched. Skips without
//! root, runc or /bin/busybox (Debian's runc and busybox-static).

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
fn runc_checkpoint_reaches_dump_and_shows_the_reason() {
    let have = |p: &str| Path::new(p).exists();
    if !nix::unistd::geteuid().is_root() || !have("/usr/sbin/runc") || !have("/bin/busybox") {
        println!("SKIP runc checkpoint: needs root, /usr/sbin/runc and /bin/busybox");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path());
    let id = format!("stasis-criu-{}", std::process::id());
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
    let out = runc(&[
        "--criu",
        BIN,
        "checkpoint",
        "--image-path",
        img_arg,
        "--work-path",
        img_arg,
        &id,
    ]);
    let state = runc(&["state", &id]);
    runc(&["delete", "--force", &id]);
    while nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        .is_ok_and(|s| s.pid().is_some())
    {}
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "stasis cannot dump runc containers yet"
    );
    assert!(
        stderr.contains("dump.log"),
        "runc points at the log: {stderr}"
    );
    let log = std::fs::read_to_string(img.join("dump.log")).unwrap();
    let last = log.lines().last().unwrap();
    println!("runc checkpoint stops at: {last}");
    assert!(last.contains("Error (stasis): "), "{log}");
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("\"running\""),
        "the container runs on"
    );
}
