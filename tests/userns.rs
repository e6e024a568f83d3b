//! Trees in a user namespace of their own (issue 17, a rootless container's): a counting
//! shell loop started by `unshare --user --map-root-user --mount --uts --ipc --net`, one
//! whose namespace maps a range (0 → 100000, written from outside as `newuidmap` does)
//! with a process of uid 1000 inside, come back with the same maps, and the loop itself,
//! asked before the dump and after the restore, reports the same from inside: `id`, its
//! maps and setgroups, its host name, the owners of a file, of a socket and of a SysV
//! segment made inside, the ids of its non-root process, and the pids (`NSpid`) of
//! every task, each seen from the host and from inside. A tree that is pid 1 of a pid
//! namespace inside its user namespace (`unshare --user --map-root-user --pid --fork
//! --mount-proc`, rootless podman's shape) comes back the same way, its init pid 1
//! again, its children and a thread with their pids inside; a pid namespace unshared
//! for the children of a process of the tree (also inside such a container's) and a
//! user namespace nested inside are
//! refused before the freeze, naming the pid and namespace, with the tree left running.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::TempDir;

/// The python3 that holds a socket (the host's own, not a pyenv shim).
fn python() -> &'static str {
    match Path::new("/usr/bin/python3").exists() {
        true => "/usr/bin/python3",
        false => "python3",
    }
}

/// A process holding an unbound unix socket at fd 9, with a second thread.
const SOCKET: &str = "import os, socket, threading, time\n\
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
os.dup2(s.fileno(), 9)\n\
threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n\
while True: time.sleep(1000)\n";

/// The loop: names the UTS namespace, mounts a tmpfs with a file, makes a SysV segment,
/// starts the socket holder (as `as_user`, a `setpriv` prefix, or itself), counts into
/// `dir/count` and, whenever `dir/go` appears, writes what it sees into `dir/report`.
fn script(dir: &Path, as_user: &str) -> String {
    let d = dir.display();
    format!(
        "exec </dev/null >/dev/null 2>&1; hostname stasis-uns; mount -t tmpfs t /mnt; \
         echo kept > /mnt/f; ipcmk -M 4096; {as_user} {py} -c '{SOCKET}' & S=$!; \
         sleep 1000 & K=$!; \
         report() {{ echo pid $$ kids $S $K; grep NSpid /proc/$$/status /proc/$K/status; \
           for t in /proc/$S/task/*; do grep NSpid $t/status; done; id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
           hostname; cat /mnt/f; stat -c 'file %u:%g' /mnt/f; \
           stat -L -c 'socket %u:%g' /proc/$S/fd/9; \
           grep -E '^(Uid|Gid|Groups):' /proc/$S/status; ipcs -m -c | tail -n +4; }}; \
         i=0; while true; do i=$((i+1)); echo $i > {d}/count; \
           if [ -e {d}/go ]; then rm -f {d}/go; report > {d}/report.tmp; \
             mv {d}/report.tmp {d}/report; fi; \
           sleep 0.2; done",
        py = python(),
    )
}

/// Asks the loop for its report (see [`script`]) and returns it.
fn report(dir: &Path) -> String {
    let file = dir.join("report");
    let _ = std::fs::remove_file(&file);
    std::fs::write(dir.join("go"), "").expect("write the go file");
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while !file.exists() && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("no report from the loop: {e}"))
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

/// Whether the loop counts (2 or more) within the ready timeout.
fn counting(dir: &Path) -> bool {
    let count = dir.join("count");
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while read_count(&count) < 2 && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    read_count(&count) >= 2
}

/// Starts `cmd` and waits for its count; the tree's root is the process it starts, or
/// with `init`, that process's first child (the init of its pid namespace).
fn start_counting(cmd: &mut Command, dir: &Path, init: bool) -> Option<(common::Running, i32)> {
    let run = common::start(cmd);
    if !counting(dir) {
        return None;
    }
    let root = match init {
        true => *common::descendants(run.pid()).first()?,
        false => run.pid(),
    };
    Some((run, root))
}

/// Dumps the counting tree rooted at `root`, restores it and checks what it sees;
/// returns the loop's report (the same before and after).
fn round_trip(run: common::Running, root: i32, tmp: &TempDir) -> String {
    round_trip_kept(run, root, tmp, |_| {})
}

/// [`round_trip`], running `more` on the restored root's pid before it is killed.
fn round_trip_kept(
    run: common::Running,
    root: i32,
    tmp: &TempDir,
    more: impl FnOnce(i32),
) -> String {
    let count = tmp.join("count");
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
    let seen_before = report(tmp.path());
    let tasks_before = tasks(root);
    let img = tmp.join("img");
    let kids = common::descendants(root);
    common::dump(root, &img, &[]).assert_ok("dump of a tree in its own user namespace");
    let dumped = read_count(&count);
    drop(run);
    common::reap_all(&kids, true);
    common::reap_all(&[root], true);
    // A child forked between the look at the family and the freeze is in the image
    // (and killed by the dump) but not in `kids`: its pid stays taken until reaped.
    common::reap_image_tree(&img);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let _guard = common::TreeGuard(vec![pid]);
    assert_eq!(pid, root, "the pidfile names the root");
    common::sleep_ms(700);
    let after = read_count(&count);
    assert!(
        after > dumped && after < dumped + 10,
        "the count went on from {dumped} (now {after})"
    );
    assert_eq!(maps(pid), maps_before, "uid_map and gid_map");
    assert_ne!(userns(pid), userns(std::process::id() as i32));
    assert_eq!(inside(pid, &["id"]), id_before, "id inside");
    assert_eq!(
        owner(pid, "after"),
        owned_before,
        "owner of a file made inside"
    );
    let seen_after = report(tmp.path());
    assert_eq!(seen_after, seen_before, "what the tree sees from inside");
    assert_eq!(
        tasks(pid),
        tasks_before,
        "every task's pids, seen from the host"
    );
    more(pid);
    let mut all = common::descendants(pid);
    all.push(pid);
    common::reap_all(&all, true);
    seen_after
}

/// Every task of the tree at `root` but the loop's passing ones (`sleep 0.2`, a copy of
/// the shell before it execs), seen from the host: `PID/TID NSpid...`, sorted.
fn tasks(root: i32) -> Vec<String> {
    let mut all = common::descendants(root);
    let shell = proc_text(root, "cmdline");
    // The loop's passing children: forked (not yet exec'd), sleeping, or exited (a
    // zombie, or gone: no command line).
    let passing = |p: &i32| {
        let cmdline = proc_text(*p, "cmdline");
        [shell.as_str(), "sleep\x000.2\x00", ""].contains(&cmdline.as_str())
    };
    all.push(root);
    let passing = |p: &i32| *p != root && passing(p);
    let mut out: Vec<String> = (all.iter().filter(|p| !passing(p)))
        .flat_map(|&p| {
            let tids = common::thread_ids(p);
            tids.into_iter().map(move |t| {
                let text = proc_text(p, &format!("task/{t}/status"));
                let ns = text.lines().find(|l| l.starts_with("NSpid:"));
                format!("{p}/{t} {}", ns.unwrap_or("none"))
            })
        })
        .collect();
    out.sort();
    out
}

/// The lines of a report that must be there (the tree saw what it made).
fn expect_lines(report: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            report
                .lines()
                .any(|l| l.split_whitespace().eq(line.split_whitespace())),
            "{line:?} not in the report:\n{report}"
        );
    }
}

fn unshare(tmp: &TempDir, pid_ns: bool) -> Command {
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--user", "--map-root-user"]);
    if pid_ns {
        cmd.args(["--pid", "--fork", "--mount-proc"]);
    }
    cmd.args(["--mount", "--uts", "--ipc", "--net"]);
    if pid_ns {
        // The init leads its own session (a leader outside its namespace is refused).
        cmd.arg("setsid");
    }
    cmd.args(["sh", "-c"]).arg(script(tmp.path(), ""));
    cmd
}

/// What a tree mapping root to root sees of itself.
const ROOT_SEES: &[&str] = &[
    "0 0 1",
    "deny",
    "stasis-uns",
    "kept",
    "file 0:0",
    "socket 0:0",
    "Uid: 0 0 0 0",
];

#[test]
fn userns_mapping_root_round_trip() {
    let test = "userns_mapping_root_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let Some((run, root)) = start_counting(&mut unshare(&tmp, false), tmp.path(), false) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    let seen = round_trip(run, root, &tmp);
    expect_lines(&seen, ROOT_SEES);
}

/// A tree that is pid 1 of a pid namespace inside its user namespace (`unshare --pid
/// --fork --mount-proc`, rootless podman's shape): dumped at its init, it comes back pid
/// 1 of a pid namespace owned by its user namespace, its children (the socket holder
/// with its thread, a sleep) with the same pids inside and on the host.
#[test]
fn userns_with_a_pid_namespace_round_trip() {
    let test = "userns_with_a_pid_namespace_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let Some((run, root)) = start_counting(&mut unshare(&tmp, true), tmp.path(), true) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    assert_eq!(common::nspids(root).last(), Some(&1), "the root is an init");
    // The owner of the pid namespace (lsns's ONS) and the user namespace of `p`.
    let owner_of = |p: i32| {
        let out = Command::new("lsns")
            .args(["-n", "-o", "ONS", "-t", "pid", "-p", &p.to_string()])
            .output();
        let ons = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let user = std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
        (ons.ok().map(|o| format!("user:[{o}]")), user)
    };
    let (owner, user) = owner_of(root);
    assert_eq!(owner.as_deref(), user.as_ref().and_then(|u| u.to_str()));
    let seen = round_trip_kept(run, root, &tmp, |pid| {
        assert_eq!(
            common::nspids(pid),
            vec![pid, 1],
            "NSpid of the restored root"
        );
        let (owner, user_after) = owner_of(pid);
        let user_after = user_after
            .as_ref()
            .and_then(|u| u.to_str().map(String::from));
        assert_eq!(owner, user_after, "the pid namespace's owner");
        assert_ne!(user_after, user.and_then(|u| u.to_str().map(String::from)));
    });
    expect_lines(&seen, ROOT_SEES);
    // (the same before and after, from inside: `round_trip_kept`)
    expect_lines(&seen, &["/proc/1/status:NSpid: 1"]);
    assert!(seen.lines().any(|l| l.starts_with("pid 1 kids ")), "{seen}");
    let threads = seen.lines().filter(|l| l.starts_with("NSpid:")).count();
    assert_eq!(threads, 2, "the socket holder's two threads:\n{seen}");
}

/// Enters a new user namespace, waits for its maps (written by the test), becomes its
/// root and runs the rest (python3's ctypes: util-linux's `--map-users` needs
/// newuidmap and /etc/subuid).
const ENTER: &str = "import ctypes, os, sys, time\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
if libc.unshare(0x10000000) != 0: sys.exit('unshare: errno %d' % ctypes.get_errno())\n\
end = time.time() + 10\n\
mapped = lambda: open('/proc/self/gid_map').read().strip()\n\
while not mapped() and time.time() < end: time.sleep(0.02)\n\
if not mapped(): sys.exit('no map')\n\
os.setresgid(0, 0, 0); os.setgroups([0]); os.setresuid(0, 0, 0)\n\
os.execvp(sys.argv[1], sys.argv[1:])\n";

/// A tree whose user namespace maps 0-65535 to 100000-165535, its socket holder running
/// as uid and gid 1000 inside: it keeps them, and the socket it made is still its own.
#[test]
fn userns_mapping_a_range_round_trip() {
    let test = "userns_mapping_a_range_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    // Files made inside are owned by 100000+: the directory lets them in.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod the test directory");
    let mut cmd = Command::new("setsid");
    cmd.args([python(), "-c", ENTER, "unshare", "--mount", "--uts"])
        .args(["--ipc", "--net", "sh", "-c"])
        .arg(script(
            tmp.path(),
            "setpriv --reuid=1000 --regid=1000 --clear-groups",
        ));
    let run = common::start(&mut cmd);
    let pid = run.pid();
    // The maps are written once the process is in its new user namespace.
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    let deadline = Instant::now() + common::READY_TIMEOUT;
    // (None while the process execs: not yet in its namespace either.)
    let own = ns(std::process::id() as i32);
    let entered = |p: i32| matches!(ns(p), Some(n) if Some(&n) != own.as_ref());
    while !entered(pid) && Instant::now() < deadline {
        common::sleep_ms(10);
    }
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{map}"), "0 100000 65536\n").expect("write a map");
    }
    if !counting(tmp.path()) {
        common::skip(test, "the namespaces could not be started");
        return;
    }
    let root = run.pid();
    assert!(proc_text(root, "status").contains("Uid:\t100000"));
    let seen = round_trip(run, root, &tmp);
    expect_lines(
        &seen,
        &[
            "0 100000 65536",
            "stasis-uns",
            "file 0:0",
            "socket 1000:1000",
            "Uid: 1000 1000 1000 1000",
            "Gid: 1000 1000 1000 1000",
        ],
    );
}

/// Starts `inner` in a user namespace mapping root (the tree's root is the process it
/// starts), which makes a pid namespace for its children (`unshare -p -f`) or a user
/// namespace below its own; the dump of the root is refused naming a pid and `what`,
/// and every process of the tree runs on, none left stopped.
fn refused_and_left_running(test: &str, inner: &[&str], what: &str) {
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--user", "--map-root-user"])
        .args(inner);
    let run = common::start(&mut cmd);
    let root = run.pid();
    let deadline = Instant::now() + common::READY_TIMEOUT;
    let mut tree = Vec::new();
    while tree.is_empty() && Instant::now() < deadline {
        tree = common::descendants(root);
        common::sleep_ms(20);
    }
    if tree.is_empty() {
        common::skip(test, "unshare could not start the namespaces");
        return;
    }
    common::sleep_ms(300); // the inner unshare has made its namespace and exec'd
    let out = common::dump(root, &tmp.join("img"), &[]);
    let msg = out.assert_failed(what);
    assert!(msg.contains("pid ") && msg.contains(what), "{msg}");
    let mut now = common::descendants(root);
    now.retain(|p| !tree.contains(p));
    tree.splice(0..0, now);
    left_running(run, root, tree);
}

/// Checks every process of the tree at `root` (and `tree`, those seen before) runs on,
/// none left stopped, then kills and reaps them all.
fn left_running(run: common::Running, root: i32, mut tree: Vec<i32>) {
    for &pid in common::descendants(root).iter().chain([&root]) {
        let state = common::proc_state(pid);
        assert!(
            matches!(state, Some('S' | 'R')),
            "pid {pid} runs on: {state:?}"
        );
    }
    drop(run);
    tree.push(root);
    let mut seen = std::collections::HashSet::new();
    tree.retain(|p| seen.insert(*p));
    common::reap_all(&tree, true);
}

#[test]
fn userns_with_a_pid_namespace_unshared_for_children_is_refused_and_left_running() {
    refused_and_left_running(
        "userns_with_a_pid_namespace_unshared_for_children_is_refused_and_left_running",
        &["unshare", "--pid", "--fork", "sleep", "1000"],
        "unshared for its children",
    );
}

#[test]
fn userns_nested_is_refused_and_left_running() {
    refused_and_left_running(
        "userns_nested_is_refused_and_left_running",
        &["sh", "-c", "unshare --user sleep 1000 & wait"],
        "nested below",
    );
}

/// A rootless container's init (pid 1 of a pid namespace owned by its user namespace)
/// one of whose processes made a pid namespace below it (`unshare --pid --fork` inside):
/// refused before the freeze naming that process, the tree left running.
#[test]
fn userns_pid_namespace_nested_inside_the_containers_is_refused_and_left_running() {
    let test = "userns_pid_namespace_nested_inside_the_containers_is_refused_and_left_running";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--user", "--map-root-user", "--pid", "--fork"])
        .args(["--mount-proc", "setsid", "sh", "-c"])
        .arg("unshare --pid --fork sleep 1000 & exec sleep 1000");
    let run = common::start(&mut cmd);
    let deadline = Instant::now() + common::READY_TIMEOUT;
    let init = || common::descendants(run.pid()).first().copied();
    let nested = |root: i32| common::descendants(root).len() >= 2;
    while !init().is_some_and(nested) && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    let Some(root) = init().filter(|&r| nested(r)) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    common::sleep_ms(300); // the inner unshare has made its namespace and exec'd
    assert_eq!(common::nspids(root).last(), Some(&1), "the root is an init");
    let out = common::dump(root, &tmp.join("img"), &[]);
    let msg = out.assert_failed("a pid namespace nested inside the container's");
    assert!(msg.contains("unshared for its children pid:["), "{msg}");
    left_running(run, root, common::descendants(root));
}
