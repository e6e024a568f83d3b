//! Trees in namespaces of their own (issue 17): the scenario of `setsid unshare --fork
//! --pid --uts --ipc`, dumped through the namespace's init and through the `unshare`
//! process above it, comes back with the same pids inside its pid namespace and its
//! hostname (with `--mount-proc --net` too, a counting shell loop); a dump that cannot finish fails within its `--timeout` and leaves the tree
//! running.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;

/// The init's script: names the UTS namespace, starts two children, waits.
const INIT: &str =
    "exec </dev/null >/dev/null 2>&1; hostname stasis-ns; sleep 1000 & sleep 1000 & wait";

/// Every process of the tree under `pid` (itself included) with its `NSpid` line.
fn tree_ids(pid: i32) -> BTreeMap<i32, Vec<i32>> {
    std::iter::once(pid)
        .chain(common::descendants(pid))
        .map(|p| (p, common::nspids(p)))
        .collect()
}

/// `unshare` started in a session of its own with `init` as the namespace's pid 1 (run
/// through `setsid` inside when `own_session`); returns (unshare, init) once the init has
/// its two children.
fn start_tree(own_session: bool) -> Option<(common::Running, i32)> {
    start_tree_with(own_session, &[], INIT, 2)
}

/// [`start_tree`] with more `unshare` options, the init's `script`, and the number of
/// descendants the init has once ready.
fn start_tree_with(
    own_session: bool,
    more: &[&str],
    script: &str,
    ready: usize,
) -> Option<(common::Running, i32)> {
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--fork", "--pid", "--uts", "--ipc"])
        .args(more);
    if own_session {
        cmd.arg("setsid");
    }
    cmd.args(["sh", "-c", script]);
    let run = common::start(&mut cmd);
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while Instant::now() < deadline {
        let kids = common::descendants(run.pid());
        if let Some(&init) = kids.first() {
            if common::descendants(init).len() == ready && hostname_of(init) == "stasis-ns" {
                return Some((run, init));
            }
        }
        common::sleep_ms(20);
    }
    None
}

fn hostname_of(pid: i32) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
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

/// Dumps `target` (the init or `unshare`), restores, and checks the pids inside the
/// namespace and the hostname.
fn round_trip(test: &str, through_init: bool, script: &str, ready: usize) {
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let Some((unshare, init)) = start_tree_with(true, &[], script, ready) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    let root = if through_init { init } else { unshare.pid() };
    let before = tree_ids(root);
    assert_eq!(common::nspids(init)[1..], [1], "the init is pid 1 inside");
    let img = tmp.join("img");
    common::dump(root, &img, &[]).assert_ok("dump of a tree in its own namespaces");
    assert!(
        !Path::new(&format!("/proc/{init}/ns")).exists() || common::proc_state(init) == Some('Z')
    );
    drop(unshare);
    common::reap_all(&before.keys().copied().collect::<Vec<_>>(), true);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let _guard = common::TreeGuard(before.keys().copied().collect());
    assert_eq!(pid, root, "the pidfile names the root");
    let after = tree_ids(pid);
    let inner = |m: &BTreeMap<i32, Vec<i32>>| -> Vec<Vec<i32>> {
        m.values().map(|v| v[1..].to_vec()).collect()
    };
    assert_eq!(inner(&after), inner(&before), "pids inside the namespace");
    assert_eq!(hostname_of(init), "stasis-ns");
    common::reap_all(&after.keys().copied().collect::<Vec<_>>(), true);
}

#[test]
fn pid_namespace_tree_through_its_init() {
    round_trip("pid_namespace_tree_through_its_init", true, INIT, 2);
}

#[test]
fn pid_namespace_tree_through_unshare() {
    round_trip("pid_namespace_tree_through_unshare", false, INIT, 2);
}

/// A pid namespace inside the tree's: an `unshare --fork --pid` run by the init, whose
/// own init has two children (pids 1, 2 and 3 two levels down).
#[test]
fn nested_pid_namespaces() {
    let nested = "exec </dev/null >/dev/null 2>&1; hostname stasis-ns; sleep 1000 & \
                  unshare --fork --pid sh -c 'sleep 1000 & sleep 1000 & wait' & wait";
    round_trip("nested_pid_namespaces", true, nested, 5);
}

/// `/proc/uptime` (the boottime clock) as the time namespace of `pid` sees it.
fn uptime_in(pid: i32) -> f64 {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-T", "cat", "/proc/uptime"])
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let first = text
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok());
    first.unwrap_or(0.0)
}

/// A time namespace with its clocks 100000 s ahead comes back with clocks that go on from
/// where they were at the dump: the second spent between dump and restore does not pass
/// inside, and the offset is kept.
#[test]
fn time_namespace_clocks_do_not_jump() {
    let test = "time_namespace_clocks_do_not_jump";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) || !Path::new("/proc/self/ns/time").exists() {
        common::skip(test, "needs util-linux and time namespaces");
        return;
    }
    let tmp = TempDir::new(test);
    let more = ["--time", "--boottime", "100000", "--monotonic", "50000"];
    let Some((unshare, init)) = start_tree_with(true, &more, INIT, 2) else {
        common::skip(test, "unshare --time could not start the namespaces");
        return;
    };
    let before = uptime_in(init);
    assert!(before > 100000.0, "uptime inside {before}");
    let img = tmp.join("img");
    common::dump(init, &img, &[]).assert_ok("dump of a tree in its own time namespace");
    drop(unshare);
    common::sleep_ms(1500);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let _guard = common::TreeGuard(
        std::iter::once(pid)
            .chain(common::descendants(pid))
            .collect(),
    );
    let after = uptime_in(pid);
    assert!(
        after >= before && after < before + 1.0,
        "uptime inside went from {before} to {after} across a 1.5 s pause"
    );
}

/// The init of `unshare --fork --pid sh` belongs to the session of `unshare`, outside
/// its namespace: refused as CRIU does, naming the pid, and left running.
#[test]
fn init_led_from_outside_is_refused_and_left_running() {
    let test = "init_led_from_outside_is_refused_and_left_running";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let Some((unshare, init)) = start_tree(false) else {
        common::skip(test, "unshare could not start the namespaces");
        return;
    };
    let out = common::dump(init, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of an init whose session leader is outside");
    assert!(
        msg.contains(&init.to_string()) && msg.contains("session leader"),
        "{msg}"
    );
    assert_running(init);
    let family: Vec<i32> = tree_ids(init).keys().copied().collect();
    drop(unshare);
    // unshare's death does not end the namespace: its init and children are ours to end.
    common::reap_all(&family, true);
}

/// A task of a frozen cgroup stops for ptrace but never runs an injected syscall: the
/// dump fails within `--timeout`, naming it, and the task runs on untouched once thawed.
#[test]
fn dump_that_cannot_finish_is_bounded_and_leaves_the_task() {
    let test = "dump_that_cannot_finish_is_bounded_and_leaves_the_task";
    let _serial = common::serial();
    require_privileged!(test);
    let cg = Path::new("/sys/fs/cgroup/unified").join(format!("stasis-{}", std::process::id()));
    if std::fs::create_dir(&cg).is_err() {
        common::skip(test, "no cgroup2 hierarchy at /sys/fs/cgroup/unified");
        return;
    }
    let tmp = TempDir::new(test);
    let mut sleeper = common::start(Command::new("setsid").args(["sleep", "1000"]));
    let pid = sleeper.pid();
    std::fs::write(cg.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    std::fs::write(cg.join("cgroup.freeze"), "1").expect("freeze");
    let started = Instant::now();
    let out = common::dump(pid, &tmp.join("img"), &["--timeout", "1"]);
    let took = started.elapsed();
    std::fs::write(cg.join("cgroup.freeze"), "0").expect("thaw");
    let msg = out.assert_failed("dump of a frozen task").to_string();
    assert!(
        // Refused upfront (`dump/cgroup`'s frozen-cgroup check) or bounded by --timeout.
        msg.contains(&pid.to_string()) && (msg.contains("--timeout") || msg.contains("frozen")),
        "{msg}"
    );
    assert!(took < Duration::from_secs(10), "the dump took {took:?}");
    assert_running(pid);
    sleeper.kill();
    let _ = sleeper.finish(common::EXIT_TIMEOUT);
    let _ = std::fs::remove_dir(&cg);
}

fn assert_running(pid: i32) {
    common::sleep_ms(100);
    assert!(
        matches!(common::proc_state(pid), Some('S' | 'R')),
        "pid {pid} is not running"
    );
    assert_eq!(common::status_field(pid, "TracerPid").as_deref(), Some("0"));
}

/// The pids a `ls /proc` inside `pid`'s pid and mount namespaces lists.
fn proc_pids_in(pid: i32) -> Vec<i32> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-p", "-m", "ls", "/proc"])
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let mut pids: Vec<i32> = (text.unwrap_or_default().split_whitespace())
        .filter_map(|w| w.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// `unshare --mount-proc`: the init's proc shows the namespace's pids. Dumped through the
/// init, the restored proc shows them again (made by the init, in its pid namespace), not
/// the host's; dumped through `unshare` (host pid namespace) it is refused, since the
/// proc would come back showing the host's, and the tree runs on.
#[test]
fn mount_proc_of_the_pid_namespace() {
    let test = "mount_proc_of_the_pid_namespace";
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let Some((unshare, init)) = start_tree_with(true, &["--mount-proc"], INIT, 2) else {
        common::skip(test, "unshare --mount-proc could not start the namespaces");
        return;
    };
    let inside = proc_pids_in(init);
    assert!(inside.contains(&1) && inside.len() < 10, "{inside:?}");
    let out = common::dump(unshare.pid(), &tmp.join("refused"), &[]);
    let msg = out.assert_failed("dump through unshare of a tree with a proc of its pid namespace");
    assert!(msg.contains("/proc") && msg.contains("init"), "{msg}");
    assert_running(init);
    let before = tree_ids(init);
    let img = tmp.join("img");
    common::dump(init, &img, &["-j"]).assert_ok("dump through the init");
    common::reap_all(&before.keys().copied().collect::<Vec<_>>(), true);
    let out = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
        "-j".as_ref(),
    ]);
    assert!(out.status.success(), "restore: {out:?}");
    let _guard = common::TreeGuard(before.keys().copied().collect());
    // The tree's pids inside, and the `ls` that lists them: nothing of the host's.
    let mut want: Vec<i32> = before.values().filter_map(|v| v.last().copied()).collect();
    want.sort_unstable();
    let listed = proc_pids_in(init);
    assert!(
        want.iter().all(|p| listed.contains(p)) && listed.len() == want.len() + 1,
        "the restored /proc lists {listed:?}, the namespace's pids are {want:?}"
    );
    drop(unshare);
}

/// The tree is the init of pid and mount namespaces of its own with /proc mounted again
/// (zdtm's ns flavor, a container): shared anonymous memory and the rest of the `tree`
/// victim come back, the shared memory through `/proc/PID/map_files` of the namespace's
/// own /proc, whose pids are the inner ones (a regression test: the restore opened the
/// outer pid there and failed with ENOENT).
#[test]
fn init_of_pid_and_mount_namespaces_round_trip() {
    ns_init_round_trip("init_of_pid_and_mount_namespaces_round_trip", "tree");
}

/// As above, the victims whose restore names pids or paths the child must see from its
/// namespaces (regression tests: each failed there): fd owners (`F_SETOWN_EX`), POSIX
/// timers aimed at a thread (`SIGEV_THREAD_ID`), unix sockets whose file was
/// unlinked (bound in a scratch root the child cannot reach by path), pidfds of exited
/// processes (their stand-in is stasis's child, outside the namespace).
#[test]
fn ns_init_fd_owners() {
    ns_init_round_trip("ns_init_fd_owners", "fown");
}

#[test]
fn ns_init_timers() {
    ns_init_round_trip("ns_init_timers", "timers");
}

#[test]
fn ns_init_unlinked_unix_sockets() {
    ns_init_round_trip("ns_init_unlinked_unix_sockets", "unix_unlinked");
}

#[test]
fn ns_init_pidfds_of_exited_processes() {
    ns_init_round_trip("ns_init_pidfds_of_exited_processes", "pidfd_dead");
}

/// A child chrooted below the init's cwd (zdtm's chroot in its ns flavor): the paths its
/// `/proc/PID` links give are relative to its namespace's root, not its own, and are
/// reached through the init's root (a regression test: the dump looked for them below the
/// child's root and failed with ENOENT).
#[test]
fn ns_init_chrooted_child() {
    ns_init_round_trip("ns_init_chrooted_child", "chrooted");
}

/// The cwd in the `/proc` directory of a reaped child, with the other `/proc` files of
/// `proc_files` (zdtm's unhashed_proc in its ns flavor): the restore's stand-in for the
/// exited process is stasis's child, which the init cannot see in its /proc (a
/// regression test: its `chdir` there failed with ENOENT).
#[test]
fn ns_init_cwd_in_proc_of_a_reaped_child() {
    ns_init_round_trip("ns_init_cwd_in_proc_of_a_reaped_child", "proc_files");
}

/// Runs `victim` as the init of new pid and mount namespaces (/proc mounted again), dumps
/// the init, restores it detached and expects the victim's PASS.
fn ns_init_round_trip(test: &str, victim: &str) {
    let _serial = common::serial();
    require_privileged!(test);
    if !usable(test) {
        return;
    }
    let tmp = TempDir::new(test);
    // The victim's log is its own: unshare writes to its log when the init is killed.
    let log = tmp.join(format!("{victim}.log"));
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--fork",
        "--pid",
        "--mount-proc",
        "--propagation",
        "private",
    ])
    .args(["setsid", "sh", "-c", r#"exec "$0" >>"$1" 2>&1"#])
    .arg(common::victim_bin(victim))
    .arg(&log)
    .current_dir(tmp.path());
    let mut unshare = common::spawn_logged(&mut cmd, &tmp.join("unshare.log"));
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.lines().any(|l| l == "READY")) {
        assert!(
            Instant::now() < deadline,
            "the {victim} victim never got ready"
        );
        common::sleep_ms(20);
    }
    let init = common::descendants(unshare.pid)[0];
    assert_eq!(common::nspids(init)[1..], [1], "the victim is pid 1 inside");
    let family = common::descendants(init);
    let img = tmp.join("img");
    common::dump(init, &img, &[]).assert_ok("dump of a pid and mount namespace init");
    let _ = unshare.wait_exit(common::EXIT_TIMEOUT);
    common::reap_all(&family, true);
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(pid, init, "the pidfile names the init");
    let _guard = common::TreeGuard(common::descendants(pid));
    let mut restored = common::Proc::adopt(pid, &log);
    restored.go_and_expect_pass();
}

/// `setsid unshare --fork --pid --mount-proc --net --uts --ipc` running a shell loop that
/// counts in a variable: dumped through its init, it comes back in a network namespace of
/// its own (its loopback as it was), with its pids and hostname, and counts on from where
/// it was.
/// The count a [`start_counter`] counter last wrote to `file`.
/// The count in `file`: read again while empty, as the shell's `>` truncates the file
/// before it writes the number (0 if it stays empty).
fn counted(file: &Path) -> u64 {
    for _ in 0..100 {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Ok(n) = text.trim().parse() {
            return n;
        }
        common::sleep_ms(5);
    }
    0
}

/// Whether the counter in `file` goes past `from` within a few seconds.
fn counts_past(file: &Path, from: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if counted(file) > from {
            return true;
        }
        common::sleep_ms(50);
    }
    false
}

/// A shell counting into `file` every 0.2 s as the init of its own pid, mount, network,
/// UTS and IPC namespaces (loopback up); returns (unshare, init) once it has counted.
fn start_counter(file: &Path) -> Option<(common::Running, i32)> {
    let script = format!(
        "exec </dev/null >/dev/null 2>&1; hostname stasis-ns; ip link set lo up; \
         i=0; while true; do i=$((i+1)); echo $i > {}; sleep 0.2; done",
        file.display()
    );
    let mut cmd = Command::new("setsid");
    cmd.args(["unshare", "--fork", "--pid", "--uts", "--ipc"])
        .args(["--mount-proc", "--net"])
        .args(["setsid", "sh", "-c", &script]);
    let unshare = common::start(&mut cmd);
    let deadline = Instant::now() + common::READY_TIMEOUT;
    while counted(file) < 2 && Instant::now() < deadline {
        common::sleep_ms(20);
    }
    let init = *common::descendants(unshare.pid()).first()?;
    Some((unshare, init))
}

/// A running [`start_counter`] counter and where it counts.
struct Counter {
    tmp: TempDir,
    file: std::path::PathBuf,
    unshare: common::Running,
    init: i32,
}

/// Starts a counter for `test` (under the caller's `common::serial()`), or says why the
/// test skips and gives none.
fn counter_test(test: &str) -> Option<Counter> {
    if let Err(why) = common::privileged() {
        common::skip(test, &why);
        return None;
    }
    if !usable(test) {
        return None;
    }
    let tmp = TempDir::new(test);
    let file = tmp.join("count");
    let Some((unshare, init)) = start_counter(&file) else {
        common::skip(test, "unshare could not start the namespaces");
        return None;
    };
    Some(Counter {
        tmp,
        file,
        unshare,
        init,
    })
}

/// What `cmd` prints run inside the network namespace of `pid`.
fn in_netns(pid: i32, cmd: &[&str]) -> Option<String> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .args(cmd)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A dump that lets the tree run on takes the network lock off again and leaves the
/// namespace's firewall as it found it: no table of the lock's (iptables-nft makes `filter`
/// tables for its chains and leaves them), every rule set as before.
#[test]
fn leave_running_dump_leaves_the_namespace_firewall_alone() {
    let test = "leave_running_dump_leaves_the_namespace_firewall_alone";
    let _serial = common::serial();
    let Some(c) = counter_test(test) else {
        return;
    };
    let (tmp, file, unshare, init) = (c.tmp, c.file, c.unshare, c.init);
    let _guard = common::TreeGuard(vec![init]);
    let rules = || {
        let nft = in_netns(init, &["nft", "list", "ruleset"]);
        let v4 = in_netns(init, &["iptables-save"]).map(|t| without_comments(&t));
        let v6 = in_netns(init, &["ip6tables-save"]).map(|t| without_comments(&t));
        (nft, v4, v6)
    };
    let before = rules();
    if before.0.is_none() {
        common::skip(
            test,
            "needs nft (nftables) to list the namespace's rule set",
        );
        return;
    }
    let img = tmp.join("img");
    common::dump(init, &img, &["--leave-running"]).assert_ok("dump --leave-running");
    assert_eq!(rules(), before, "the namespace's rule sets after the dump");
    let dumped = counted(&file);
    assert!(
        counts_past(&file, dumped),
        "the counter runs on past {dumped}"
    );
    drop(unshare);
}

/// `iptables-save` output without its `#` lines (they carry the time).
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn counter_in_its_own_pid_mount_net_uts_ipc_namespaces() {
    let test = "counter_in_its_own_pid_mount_net_uts_ipc_namespaces";
    let _serial = common::serial();
    let Some(c) = counter_test(test) else {
        return;
    };
    let (tmp, file, unshare, init) = (c.tmp, c.file, c.unshare, c.init);
    let count = || counted(&file);
    let lo = |pid: i32| {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "-o",
                "link",
                "show",
                "lo",
            ])
            .output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        // The flags (`<LOOPBACK,UP,LOWER_UP>`).
        let flags = text
            .unwrap_or_default()
            .split_whitespace()
            .nth(2)
            .map(String::from);
        flags.unwrap_or_default()
    };
    let net_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let lo_before = lo(init);
    assert!(
        lo_before.contains(",UP"),
        "the loopback is up inside: {lo_before}"
    );
    assert_ne!(net_ns(init), net_ns(std::process::id() as i32));
    let img = tmp.join("img");
    common::dump(init, &img, &[]).assert_ok("dump of a counter in its own namespaces");
    let dumped = count();
    drop(unshare);
    common::reap_all(&[init], true);
    common::sleep_ms(500);
    assert_eq!(count(), dumped, "the dumped counter stopped");
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let _guard = common::TreeGuard(vec![pid]);
    assert_eq!(pid, init, "the pidfile names the init");
    common::sleep_ms(700);
    let after = count();
    assert!(
        after > dumped && after < dumped + 10,
        "the count went on from {dumped} (now {after})"
    );
    assert_eq!(common::nspids(init)[1..], [1], "the init is pid 1 inside");
    assert_eq!(hostname_of(init), "stasis-ns");
    assert_ne!(net_ns(init), net_ns(std::process::id() as i32));
    assert_eq!(lo(init), lo_before, "the loopback's state");
}
