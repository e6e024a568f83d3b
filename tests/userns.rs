//! Trees in a user namespace of their own (issue 17, a rootless container's): a counting
//! shell loop started by `unshare --user --map-root-user --mount --uts --ipc --net`, and
//! one whose namespace maps a range (0 → 100000, written from outside as `newuidmap`
//! does), come back with the same maps, the same `id` inside, their names and mounts,
//! and files they create owned as before; a pid namespace inside such a tree is refused
//! with the tree left running.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::TempDir;

/// The loop: names the UTS namespace, mounts a tmpfs with a file, counts into `count`.
fn script(count: &Path) -> String {
    format!(
        "exec </dev/null >/dev/null 2>&1; hostname stasis-uns; mount -t tmpfs t /mnt; \
         echo kept > /mnt/f; sleep 1000 & i=0; while true; do i=$((i+1)); echo $i > {}; \
         sleep 0.2; done",
        count.display()
    )
}

fn read_count(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

fn proc_text(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// `nsenter` into every namespace of `pid` (its user namespace too) running `args`.
fn inside(pid: i32, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-a"])
        .args(args)
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn usable(test: &str) -> bool {
    let ok = |c: &str| Command::new(c).arg("--help").output().is_ok();
    if !(ok("unshare") && ok("nsenter") && ok("setsid")) {
        common::skip(test, "needs unshare, nsenter and setsid (util-linux)");
        return false;
    }
    true
}

/// Starts `cmd` (the tree's root is the process it starts) and waits for its count.
fn start_counting(cmd: &mut Command, count: &Path) -> Option<common::Running> {
    let run = common::start(cmd);
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while read_count(count) < 2 && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    (read_count(count) >= 2).then_some(run)
}

/// Dumps the counting tree rooted at `root`, restores it and checks what it sees.
fn round_trip(run: common::Running, count: &Path, tmp: &TempDir) {
    let root = run.pid();
    let maps = |p: i32| (proc_text(p, "uid_map"), proc_text(p, "gid_map"));
    let (maps_before, id_before) = (maps(root), inside(root, &["id"]));
    let userns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    assert_ne!(userns(root), userns(std::process::id() as i32));
    let owner = |p: i32, name: &str| {
        let file = tmp.join(name);
        inside(p, &["touch", &file.to_string_lossy()]);
        std::fs::metadata(&file).map(|m| (m.uid(), m.gid())).ok()
    };
    let owned_before = owner(root, "before");
    let img = tmp.join("img");
    let kids = common::descendants(root);
    common::dump(root, &img, &[]).assert_ok("dump of a tree in its own user namespace");
    let dumped = read_count(count);
    drop(run);
    common::reap_all(&kids, true);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let _guard = common::TreeGuard(vec![pid]);
    assert_eq!(pid, root, "the pidfile names the root");
    common::sleep_ms(700);
    let after = read_count(count);
    assert!(
        after > dumped && after < dumped + 10,
        "the count went on from {dumped} (now {after})"
    );
    assert_eq!(maps(pid), maps_before, "uid_map and gid_map");
    assert_ne!(userns(pid), userns(std::process::id() as i32));
    assert_eq!(inside(pid, &["id"]), id_before, "id inside");
    assert_eq!(inside(pid, &["hostname"]), "stasis-uns");
    assert_eq!(inside(pid, &["cat", "/mnt/f"]), "kept", "the tmpfs file");
    assert_eq!(
        owner(pid, "after"),
        owned_before,
        "owner of a file made inside"
    );
    let mut all = common::descendants(pid);
    all.push(pid);
    common::reap_all(&all, true);
}

#[test]
fn user_namespace_mapping_root_round_trip() {
    let test = "user_namespace_mapping_root_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let count = tmp.join("count");
    let mut cmd = Command::new("setsid");
    cmd.args([
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--uts",
        "--ipc",
    ])
    .args(["--net", "sh", "-c", &script(&count)]);
    let Some(run) = start_counting(&mut cmd, &count) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    round_trip(run, &count, &tmp);
}

/// Enters a new user namespace, waits for its maps (written by the test), becomes its
/// root and runs the rest (python3's ctypes: util-linux's `--map-users` needs
/// newuidmap and /etc/subuid).
const ENTER: &str = "import ctypes, os, sys, time\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
if libc.unshare(0x10000000) != 0: sys.exit('unshare: errno %d' % ctypes.get_errno())\n\
end = time.time() + 10\n\
while not open('/proc/self/gid_map').read().strip():\n\
    if time.time() > end: sys.exit('no map')\n\
    time.sleep(0.02)\n\
os.setresgid(0, 0, 0); os.setgroups([0]); os.setresuid(0, 0, 0)\n\
os.execvp(sys.argv[1], sys.argv[1:])\n";

#[test]
fn user_namespace_mapping_a_range_round_trip() {
    let test = "user_namespace_mapping_a_range_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        common::skip(
            test,
            "needs python3 to enter a user namespace and wait for its maps",
        );
        return;
    }
    let tmp = TempDir::new(test);
    // Files made inside are owned by 100000+: the directory lets them in.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod the test directory");
    let count = tmp.join("count");
    let mut cmd = Command::new("setsid");
    cmd.args([
        "python3", "-c", ENTER, "unshare", "--mount", "--uts", "--ipc", "--net",
    ])
    .args(["sh", "-c", &script(&count)]);
    let run = common::start(&mut cmd);
    let pid = run.pid();
    // The maps are written once the process is in its new user namespace.
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while ns(pid) == ns(std::process::id() as i32) && Instant::now() < deadline {
        common::sleep_ms(10);
    }
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{map}"), "0 100000 65536\n").expect("write a map");
    }
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while read_count(&count) < 2 && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    if read_count(&count) < 2 {
        common::skip(test, "the namespaces could not be started");
        return;
    }
    assert!(proc_text(pid, "status").contains("Uid:\t100000"));
    round_trip(run, &count, &tmp);
}

#[test]
fn pid_namespace_inside_a_user_namespace_is_refused_and_left_running() {
    let test = "pid_namespace_inside_a_user_namespace_is_refused_and_left_running";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--user", "--map-root-user", "--pid", "--fork"])
        .args(["setsid", "sleep", "1000"]);
    let run = common::start(&mut cmd);
    let deadline = Instant::now() + common::READY_TIMEOUT;
    let mut init = None;
    while init.is_none() && Instant::now() < deadline {
        init = common::descendants(run.pid()).first().copied();
        common::sleep_ms(20);
    }
    let Some(init) = init else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    let out = common::dump(init, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a pid namespace inside a user namespace");
    assert!(
        msg.contains(&format!("pid {init}")) && msg.contains("user:["),
        "{msg}"
    );
    assert!(
        Path::new(&format!("/proc/{init}")).exists(),
        "the tree runs on"
    );
    drop(run);
    common::reap_all(&[init], true);
}
