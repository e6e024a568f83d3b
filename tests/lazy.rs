//! Post-copy (`dump --lazy-pages`, `restore --lazy-pages`), source and target on this
//! machine over 127.0.0.1. The source keeps its frozen tree (and so its pids), so the
//! target restores into a new pid namespace (`unshare --pid --fork --mount-proc`): two
//! "hosts" as far as pids go. The `lazy_mem` victim holds 256 MiB of random data and,
//! before touching any of it after the restore, moves, drops, unmaps and forks (every
//! userfaultfd event); a python counter runs on; a source killed mid-copy makes the
//! restored tree die rather than run with missing pages.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, Running, Start, TempDir};

/// How long the restored tree may take to run after the restore starts (generous: CI
/// machines are shared; the bench measures the real figure).
const RUNS_WITHIN: Duration = Duration::from_secs(10);

/// Skips (printing why) without post-copy support or a way to make a pid namespace.
fn available(test: &str) -> bool {
    let out = common::stasis(&["check"]);
    if !out
        .stdout
        .lines()
        .any(|l| l.starts_with("OK") && l.contains("lazy_pages"))
    {
        common::skip(
            test,
            "this kernel's userfaultfd cannot do post-copy (stasis check)",
        );
        return false;
    }
    let ns = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    if !ns.is_ok_and(|s| s.success()) {
        common::skip(
            test,
            "cannot make a pid namespace (unshare --pid) for the target",
        );
        return false;
    }
    true
}

/// A port of our own for this test run.
fn port(n: u16) -> String {
    (20000 + (std::process::id() % 20000) as u16 + n).to_string()
}

/// Starts `stasis dump --lazy-pages` of `pid` and waits until its image is written.
fn dump_lazily(pid: i32, img: &Path, port: &str, pace_us: Option<u64>) -> Running {
    dump_lazily_with(pid, img, port, pace_us, &[])
}

/// [`dump_lazily`] with more environment for the source.
fn dump_lazily_with(
    pid: i32,
    img: &Path,
    port: &str,
    pace_us: Option<u64>,
    env: &[(&str, &str)],
) -> Running {
    let mut cmd = common::dump_cmd(
        pid,
        img,
        &["--lazy-pages", "--address", "127.0.0.1", "--port", port],
    );
    if let Some(us) = pace_us {
        cmd.env("STASIS_LAZY_PACE_US", us.to_string());
    }
    cmd.envs(env.iter().copied());
    let mut dump = common::start(&mut cmd);
    let deadline = Instant::now() + common::STASIS_TIMEOUT;
    while !img.join("inventory.img").exists() {
        if let Some(out) = dump.try_finish() {
            panic!("dump --lazy-pages ended before its image was written: {out:?}");
        }
        assert!(
            Instant::now() < deadline,
            "dump --lazy-pages wrote no image"
        );
        common::sleep_ms(2);
    }
    dump
}

/// `stasis restore --lazy-pages` of `img` in a new pid namespace, attached.
fn restore_lazily(img: &Path, port: &str) -> Running {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(common::STASIS)
        .arg("restore")
        .arg("-D")
        .arg(img)
        .args(["--lazy-pages", "--address", "127.0.0.1", "--port", port]);
    common::start(&mut cmd)
}

/// The restored process named `comm` under `restore` (host pid), untraced (running),
/// and how long after `since` it was first seen so.
fn restored(restore: &mut Running, comm: &str, since: Instant) -> (i32, Duration) {
    loop {
        let found = common::descendants(restore.pid()).into_iter().find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
                && common::status_field(p, "TracerPid").as_deref() == Some("0")
        });
        if let Some(p) = found {
            return (p, since.elapsed());
        }
        if let Some(out) = restore.try_finish() {
            panic!("restore --lazy-pages ended before {comm} ran: {out:?}");
        }
        assert!(
            since.elapsed() < RUNS_WITHIN,
            "{comm} not running after {RUNS_WITHIN:?}"
        );
        common::sleep_ms(1);
    }
}

fn wait_log(proc: &Proc, line: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if proc.log_text().lines().any(|l| l == line) {
            return true;
        }
        common::sleep_ms(10);
    }
    false
}

#[test]
fn lazy_victim_256m_restores_every_byte() {
    let _serial = common::serial();
    require_privileged!("lazy_victim_256m_restores_every_byte");
    if !available("lazy_victim_256m_restores_every_byte") {
        return;
    }
    // Moves, drops and unmaps pages still missing, and forks once while they are.
    lazy_victim_passes("lazy-victim", &["-m", "256"], None);
}

#[test]
fn lazy_forks_during_post_copy_see_their_parents_memory() {
    let _serial = common::serial();
    require_privileged!("lazy_forks_during_post_copy_see_their_parents_memory");
    if !available("lazy_forks_during_post_copy_see_their_parents_memory") {
        return;
    }
    // Eight forks while BIG arrives (slowed to 2 ms per MiB served), each after the
    // parent rewrote a word of what it read: every child checks BIG whole against its
    // parent's memory at the fork (pages fetched, rewritten and still missing alike).
    lazy_victim_passes("lazy-forks", &["-m", "256", "-f", "8"], Some(2000));
}

/// `lazy_mem ARGS` dumped lazily (the source paced by `pace_us` per MiB), restored
/// lazily, told to go: it passes, every page arrives and the source kills its tree.
fn lazy_victim_passes(name: &str, args: &[&str], pace_us: Option<u64>) {
    let tmp = TempDir::new(name);
    let mut victim = common::spawn_victim("lazy_mem", args, tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let port = port(0);
    let mut dump = dump_lazily(victim.pid, &img, &port, pace_us);
    let started = Instant::now();
    let mut restore = restore_lazily(&img, &port);
    let (pid, after) = restored(&mut restore, "lazy_mem", started);
    eprintln!(
        "lazy_mem runs {:.1} ms after the restore started",
        after.as_secs_f64() * 1e3
    );
    lets_go_and_completes(&mut restore, pid, &victim, "restore --lazy-pages");
    // Every page transferred: the source killed its tree and ended well.
    dump.finish(common::STASIS_TIMEOUT)
        .assert_ok("dump --lazy-pages");
    assert_eq!(
        victim.wait_exit(Duration::from_secs(10)),
        common::Status::Signaled(libc::SIGKILL)
    );
}

#[test]
fn lazy_killed_source_kills_the_restored_tree() {
    let _serial = common::serial();
    require_privileged!("lazy_killed_source_kills_the_restored_tree");
    if !available("lazy_killed_source_kills_the_restored_tree") {
        return;
    }
    let tmp = TempDir::new("lazy-killed");
    let mut victim = common::spawn_victim("lazy_mem", &["-m", "256"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let port = port(1);
    // 20 ms per MiB served: the copy takes seconds, so the kill lands mid-way.
    let mut dump = dump_lazily(victim.pid, &img, &port, Some(20_000));
    let mut restore = restore_lazily(&img, &port);
    let (pid, _) = restored(&mut restore, "lazy_mem", Instant::now());
    common::kill(pid, libc::SIGUSR1).expect("go");
    assert!(
        wait_log(&victim, "ALIVE", Duration::from_secs(10)),
        "never ALIVE"
    );
    dump.kill();
    let out = restore.finish(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "restore: {out:?}");
    assert!(
        out.stderr.contains("post-copy failed") && out.stderr.contains("was killed"),
        "{}",
        out.stderr
    );
    assert!(
        !victim.log_text().contains("PASS") && !victim.log_text().contains("FAIL"),
        "the restored victim ran on without its pages; log:\n{}",
        victim.log_text()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "restored pid {pid} still exists"
    );
    // A killed source's stasis lets go of its frozen tree: it runs on there.
    assert!(victim.alive(), "the source victim did not resume");
}

/// The source gone while the target waits for its go-ahead: the restored tree is never
/// resumed (it is killed, never having run), and the source's runs on from the dump.
#[test]
fn lazy_source_gone_before_its_go_ahead_the_tree_never_runs() {
    let test = "lazy_source_gone_before_its_go_ahead_the_tree_never_runs";
    let _serial = common::serial();
    require_privileged!(test);
    if !available(test) {
        return;
    }
    let tmp = TempDir::new("lazy-no-go");
    let mut victim = common::spawn_victim("lazy_mem", &["-m", "64"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let port = port(4);
    let delay = [("STASIS_LAZY_GO_DELAY_MS", "30000")];
    let mut dump = dump_lazily_with(victim.pid, &img, &port, None, &delay);
    let mut restore = restore_lazily(&img, &port);
    // The restored process made and still held by its restorer, waiting for the go.
    let pid = common::wait_for("the restored process", Duration::from_secs(30), || {
        let found = common::descendants(restore.pid()).into_iter().find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "lazy_mem")
        });
        if let Some(out) = restore.try_finish() {
            panic!("restore ended before its tree was made: {out:?}");
        }
        found
    });
    let held = || common::status_field(pid, "TracerPid").is_some_and(|t| t != "0");
    for _ in 0..100 {
        assert!(
            held(),
            "the restored process runs without the source's go-ahead"
        );
        common::sleep_ms(10);
    }
    dump.kill();
    let out = restore.finish(Duration::from_secs(30));
    assert_ne!(out.status.code(), Some(0), "restore: {out:?}");
    assert!(out.stderr.contains("post-copy"), "{}", out.stderr);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "restored pid {pid} still exists"
    );
    common::kill(victim.pid, libc::SIGUSR1).expect("go");
    assert!(
        wait_log(&victim, "ALIVE", Duration::from_secs(10)),
        "the source's victim did not run on"
    );
    assert_eq!(
        victim.log_text().matches("ALIVE").count(),
        1,
        "the restored copy ran too"
    );
}

#[test]
fn lazy_killed_restorer_kills_the_restored_tree() {
    let _serial = common::serial();
    require_privileged!("lazy_killed_restorer_kills_the_restored_tree");
    if !available("lazy_killed_restorer_kills_the_restored_tree") {
        return;
    }
    let tmp = TempDir::new("lazy-restorer-killed");
    let mut victim = common::spawn_victim("lazy_mem", &["-m", "256", "-n"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let port = port(3);
    // 20 ms per MiB served: the copy takes seconds, so the kill lands mid-way.
    let mut dump = dump_lazily(victim.pid, &img, &port, Some(20_000));
    // The restoring stasis is not the namespace's init (whose death would kill every
    // process of the namespace anyway): a shell is, and it outlives stasis.
    let restore = format!(
        "{} restore -D {} --lazy-pages --address 127.0.0.1 --port {port}; sleep 60",
        common::STASIS,
        img.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "sh", "-c", &restore]);
    let mut ns = common::start(&mut cmd);
    let (pid, _) = restored(&mut ns, "lazy_mem", Instant::now());
    common::kill(pid, libc::SIGUSR1).expect("go");
    assert!(
        wait_log(&victim, "ALIVE", Duration::from_secs(10)),
        "never ALIVE"
    );
    let stasis = common::descendants(ns.pid()).into_iter().find(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.contains("restore") && c.contains("--lazy-pages"))
            && std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() != "sh")
    });
    let stasis = stasis.expect("the restoring stasis");
    let restored_fd = common::PidFd::open(pid).expect("pidfd of the restored victim");
    common::kill(stasis, libc::SIGKILL).expect("kill the restoring stasis");
    // Its watchdog SIGKILLs the tree, which must never run on with zeros for the pages
    // it never received (it would crash or fail its checks: SIGSEGV was seen so).
    let deadline = Instant::now() + Duration::from_secs(20);
    let ended = loop {
        match restored_fd.exit_status() {
            Ok(status) => break Some(status),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // No PIDFD_INFO_EXIT (before Linux 6.15): only the log can tell.
            Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => break None,
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "restored pid {pid} still runs after its restorer died"
        );
        common::sleep_ms(10);
    };
    if let Some(status) = ended {
        assert_eq!(
            status,
            common::Status::Signaled(libc::SIGKILL),
            "the restored victim was not killed by the watchdog"
        );
    }
    assert!(
        !victim.log_text().contains("PASS") && !victim.log_text().contains("FAIL"),
        "the restored victim ran on without its pages; log:\n{}",
        victim.log_text()
    );
    // The shell is the namespace's init: its end ends the namespace.
    for p in common::descendants(ns.pid()) {
        let _ = common::kill(p, libc::SIGKILL);
    }
    ns.kill();
    dump.kill();
}

const PY_COUNTER: &str = r#"
import os, sys, time
path = sys.argv[1]
data = bytearray(os.urandom(32 << 20))
base = sum(data[::4096])
counter = 0
while True:
    counter += 1
    ok = sum(data[::4096]) == base
    with open(path + ".tmp", "w") as f:
        f.write(f"{counter} {ok}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.05)
"#;

fn read_counter(path: &Path) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()? == "True"))
}

#[test]
fn lazy_python_counter_continues() {
    let _serial = common::serial();
    require_privileged!("lazy_python_counter_continues");
    if !available("lazy_python_counter_continues") {
        return;
    }
    let python = Command::new("python3").arg("-c").arg("pass").status();
    if !python.is_ok_and(|s| s.success()) {
        return common::skip("lazy_python_counter_continues", "python3 is not installed");
    }
    let tmp = TempDir::new("lazy-python");
    let state = tmp.join("state");
    let mut py = common::spawn_logged(
        Command::new("python3")
            .arg("-c")
            .arg(PY_COUNTER)
            .arg(&state)
            .current_dir(tmp.path()),
        &tmp.join("python.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_counter(&state).is_none_or(|(c, _)| c < 10) {
        assert!(Instant::now() < deadline, "python never counted to 10");
        common::sleep_ms(20);
    }
    let img = tmp.join("img");
    let port = port(2);
    let mut dump = dump_lazily(py.pid, &img, &port, None);
    let (at_dump, _) = read_counter(&state).expect("state");
    let mut restore = restore_lazily(&img, &port);
    let (pid, _) = restored(&mut restore, "python3", Instant::now());
    // The source is gone once every page is on the target.
    dump.finish(common::STASIS_TIMEOUT)
        .assert_ok("dump --lazy-pages");
    assert_eq!(
        py.wait_exit(Duration::from_secs(10)),
        common::Status::Signaled(libc::SIGKILL)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (now, ok) = loop {
        match read_counter(&state) {
            Some((c, ok)) if c > at_dump + 5 => break (c, ok),
            _ => assert!(Instant::now() < deadline, "the counter did not go on"),
        }
        common::sleep_ms(20);
    };
    assert!(ok, "python's data changed across the lazy restore ({now})");
    common::kill(pid, libc::SIGKILL).expect("kill the restored python");
    let out = restore.finish(Duration::from_secs(30));
    assert!(out.stderr.contains("post-copy complete"), "{}", out.stderr);
}

#[test]
fn lazy_image_needs_its_source() {
    let _serial = common::serial();
    require_privileged!("lazy_image_needs_its_source");
    if !available("lazy_image_needs_its_source") {
        return;
    }
    let tmp = TempDir::new("lazy-refusals");
    let mut victim = common::spawn_victim("lazy_mem", &["-m", "16"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let port = port(3);
    let mut dump = dump_lazily(victim.pid, &img, &port, None);
    // Without --lazy-pages: refused first (before the pid check, which would fail too).
    let plain = common::stasis(&["restore", "-D", &img.display().to_string()]);
    assert!(!plain.status.success());
    assert!(plain.stderr.contains("--lazy-pages"), "{}", plain.stderr);
    // No source at that port (in a pid namespace of its own, its pids free): refused,
    // naming it.
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(common::STASIS)
        .arg("restore")
        .arg("-D")
        .arg(&img)
        .args(["--lazy-pages", "--address", "127.0.0.1", "--port", "1"]);
    let wrong = common::start(&mut cmd).finish(common::STASIS_TIMEOUT);
    assert!(!wrong.status.success());
    assert!(wrong.stderr.contains("127.0.0.1:1"), "{}", wrong.stderr);
    // The source still waits with its tree frozen; a dump killed then lets it run on.
    assert!(dump.try_finish().is_none(), "the source gave up by itself");
    dump.kill();
    dump.finish(Duration::from_secs(10));
    common::sleep_ms(200);
    victim.go_and_expect_pass();
}

/// `stasis restore --lazy-local` of a plain dump of `lazy_mem ARGS` (pages served from
/// the image's own files, paced by `pace_us` per MiB): the victim is restored, told to
/// go and passes; the restore's post-copy completes.
fn local_fill_passes(name: &str, args: &[&str], pace_us: Option<u64>) {
    let tmp = TempDir::new(name);
    let mut victim = common::spawn_victim("lazy_mem", args, tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("dump");
    assert_eq!(
        victim.wait_exit(Duration::from_secs(10)),
        common::Status::Signaled(libc::SIGKILL)
    );
    let mut cmd = common::stasis_cmd(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "--lazy-local".as_ref(),
    ]);
    if let Some(us) = pace_us {
        cmd.env("STASIS_LAZY_PACE_US", us.to_string());
    }
    let started = Instant::now();
    let mut restore = common::start(&mut cmd);
    let (pid, after) = restored(&mut restore, "lazy_mem", started);
    eprintln!(
        "{name}: lazy_mem runs {:.1} ms after the restore started",
        after.as_secs_f64() * 1e3
    );
    lets_go_and_completes(&mut restore, pid, &victim, "restore --lazy-local");
}

#[test]
fn lazy_local_fill_restores_every_byte_with_forks() {
    let _serial = common::serial();
    require_privileged!("lazy_local_fill_restores_every_byte_with_forks");
    if !available("lazy_local_fill_restores_every_byte_with_forks") {
        return;
    }
    // Eight forks while BIG is still being filled (2 ms per MiB), every event of the
    // program (mremap, MADV_DONTNEED, munmap, fork) before its pages are in.
    local_fill_passes("lazy-local-forks", &["-m", "256", "-f", "8"], Some(2000));
}

#[test]
fn lazy_local_fill_corrupted_pages_kill_the_restored_tree() {
    let _serial = common::serial();
    require_privileged!("lazy_local_fill_corrupted_pages_kill_the_restored_tree");
    if !available("lazy_local_fill_corrupted_pages_kill_the_restored_tree") {
        return;
    }
    let tmp = TempDir::new("lazy-local-corrupt");
    let mut victim = common::spawn_victim("lazy_mem", &["-m", "64", "-n"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("dump");
    assert_eq!(
        victim.wait_exit(Duration::from_secs(10)),
        common::Status::Signaled(libc::SIGKILL)
    );
    // One byte in the middle of the pages data flipped after the image was checked (as
    // if the disk changed it after `stasis receive` verified it: `--pages-verified`
    // skips the restore's own pass, so only the fill can find it).
    let pages = img.join(format!("pages-{}.img", victim.pid));
    let mut data = std::fs::read(&pages).expect("read pages");
    let at = data.len() / 2;
    data[at] ^= 0x5a;
    std::fs::write(&pages, &data).expect("write pages");
    let mut restore = common::start(&mut common::stasis_cmd(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "--lazy-local".as_ref(),
        "--pages-verified".as_ref(),
        img.as_os_str(),
    ]));
    // The tree may run before the check of the file ends (or not): either way it must
    // not run on.
    let pid = victim.pid;
    let out = restore.finish(Duration::from_secs(60));
    // Found after the tree ran: the post-copy failure kills it (exit code 3); found
    // before: the restore fails with the same cause.
    let named = out.stderr.contains(&format!("pages-{}.img", victim.pid))
        && out.stderr.contains("cannot serve");
    match out.status.code() {
        Some(3) => assert!(
            out.stderr.contains("post-copy failed") && out.stderr.contains("was killed"),
            "{}",
            out.stderr
        ),
        Some(1) => {}
        _ => panic!("restore: {out:?}"),
    }
    assert!(named, "the error does not name the file: {}", out.stderr);
    assert!(
        !victim.log_text().contains("PASS"),
        "the restored victim ran on with a corrupted page; log:\n{}",
        victim.log_text()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "restored pid {pid} still exists"
    );
}

/// Tells the restored `lazy_mem` (`pid`) to go, then checks that `restore` (`what`)
/// ended well with its post-copy complete and that the victim passed.
fn lets_go_and_completes(
    restore: &mut common::Running,
    pid: i32,
    victim: &common::Proc,
    what: &str,
) {
    common::kill(pid, libc::SIGUSR1).expect("go");
    let out = restore.finish(common::STASIS_TIMEOUT);
    out.assert_ok(what);
    assert!(
        out.stderr.contains("post-copy complete"),
        "no completion line: {}",
        out.stderr
    );
    assert!(
        victim.log_text().contains("ALIVE") && victim.log_text().contains("PASS"),
        "the restored victim did not pass; log:\n{}",
        victim.log_text()
    );
}
