//! One victim per feature (tests/victims/*.c), each run three ways:
//! - `standalone`: no stasis at all; proves the victim itself passes (needs no root);
//! - `restore_detached`: dump (the victim is killed), `restore -d --pidfile`, go, PASS;
//! - `restore_attached`: dump, `restore` in the foreground (stasis stays the parent and
//!   exits with the task's status), go, PASS.
//!
//! Dumps happen 200 ms after READY, so victims that block in a syscall are inside it.

mod common;

use common::{Proc, Start, Status, TempDir};
use std::time::{Duration, Instant};

/// Time between READY and the dump (or the go signal when standalone).
const SETTLE_MS: u64 = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Detached,
    Attached,
}

fn scenario(test: &str, victim: &str, args: &[&str], mode: Mode) {
    let _serial = common::serial();
    if mode != Mode::Standalone {
        require_privileged!(test);
    }
    let tmp = TempDir::new(&test.replace("::", "-"));
    let work = tmp.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    let mut proc = common::spawn_victim(victim, args, &work);
    if let Start::Skip(why) = proc.wait_ready() {
        common::skip(test, &why);
        return;
    }
    common::sleep_ms(SETTLE_MS);
    let _family = common::TreeGuard(common::descendants(proc.pid));
    match mode {
        Mode::Standalone => proc.go_and_expect_pass(),
        Mode::Detached => {
            dump_and_reap(&mut proc, victim, &tmp);
            let pid = common::restore_detached(&tmp.join("img")).unwrap_or_else(|out| {
                panic!(
                    "restore -d failed: {out:?}\nvictim log:\n{}",
                    proc.log_text()
                )
            });
            assert_eq!(pid, proc.pid, "restored under another pid");
            // stasis has exited: as subreaper we are the restored task's parent now.
            let mut restored = Proc::adopt(pid, &proc.log);
            restored.go_and_expect_pass();
        }
        Mode::Attached => {
            dump_and_reap(&mut proc, victim, &tmp);
            restore_attached(&proc, &tmp);
        }
    }
}

/// Extra `stasis dump` options a victim needs.
fn dump_args(victim: &str) -> &'static [&'static str] {
    match victim {
        "locks" => &["--file-locks"],
        _ => &[],
    }
}

/// Dump `proc` into tmp/img and reap it: a dump without -R SIGKILLs the task, and its
/// descendants, which become ours to reap (we are the subreaper).
fn dump_and_reap(proc: &mut Proc, victim: &str, tmp: &TempDir) {
    common::dump(proc.pid, &tmp.join("img"), dump_args(victim)).assert_ok("stasis dump");
    let st = proc.wait_exit(Duration::from_secs(10));
    assert_eq!(
        st,
        Status::Signaled(libc::SIGKILL),
        "dumped task should have been SIGKILLed"
    );
    common::reap_image_tree(&tmp.join("img"));
}

fn restore_attached(orig: &Proc, tmp: &TempDir) {
    let img = tmp.join("img");
    let mut restore = common::start(
        common::stasis_cmd(&["restore".as_ref(), "-D".as_ref(), img.as_os_str()])
            .current_dir(tmp.path()),
    );
    // Until stasis reports it, the restored task is ours to kill (and, once stasis is
    // gone, to reap) should the test fail half-way.
    let task = Proc::adopt(orig.pid, &orig.log);
    let deadline = Instant::now() + common::STASIS_TIMEOUT;
    while !common::restored_under(orig.pid, restore.pid()) {
        if let Some(out) = restore.try_finish() {
            panic!(
                "stasis restore exited before the task ran: {out:?}\nvictim log:\n{}",
                orig.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "pid {} not restored under stasis after {:?}",
            orig.pid,
            common::STASIS_TIMEOUT
        );
        common::sleep_ms(5);
    }
    // Go (repeated, see Proc::go) until stasis reports the task's exit status.
    let deadline = Instant::now() + common::EXIT_TIMEOUT;
    let out = loop {
        // A failure means the task is already gone: stasis reports how.
        let _ = common::kill(orig.pid, libc::SIGUSR1);
        if let Some(out) = restore.try_finish() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "restored task did not finish; log:\n{}",
            orig.log_text()
        );
        common::sleep_ms(200);
    };
    task.forget(); // stasis reaped it
    let log = orig.log_text();
    assert_eq!(
        out.code(),
        Some(0),
        "stasis restore exited with {:?} (task status); stderr: {}\nvictim log:\n{log}",
        out.status,
        out.stderr
    );
    assert_eq!(
        log.lines().last(),
        Some("PASS"),
        "victim log does not end with PASS:\n{log}"
    );
}

macro_rules! victim_tests {
    ($($module:ident: $victim:literal $([$($arg:literal),*])?;)*) => {$(
        mod $module {
            use super::{scenario, Mode};
            const ARGS: &[&str] = &[$($($arg),*)?];
            fn name(t: &str) -> String {
                format!("{}::{t}", stringify!($module))
            }
            #[test]
            fn standalone() {
                scenario(&name("standalone"), $victim, ARGS, Mode::Standalone);
            }
            #[test]
            fn restore_detached() {
                scenario(&name("restore_detached"), $victim, ARGS, Mode::Detached);
            }
            #[test]
            fn restore_attached() {
                scenario(&name("restore_attached"), $victim, ARGS, Mode::Attached);
            }
        }
    )*};
}

victim_tests! {
    memory: "memory";
    regs: "regs";
    signals: "signals";
    syscalls_nanosleep: "syscalls" ["nanosleep"];
    syscalls_pause: "syscalls" ["pause"];
    syscalls_futex: "syscalls" ["futex"];
    syscalls_clock_abs: "syscalls" ["clock_abs"];
    files: "files";
    procattrs: "procattrs";
    threads: "threads";
    threads_64: "threads" ["64"];
    timers: "timers";
    sched_batch: "sched" ["batch"];
    sched_fifo: "sched" ["fifo"];
    prctl: "prctl";
    creds: "creds";
    creds_threads: "creds" ["threads"];
    mmflags: "mmflags";
    tree: "tree";
    tree_50: "tree" ["50"];
    pipes: "pipes";
    anonfds: "anonfds";
    inotify: "inotify";
    memfd: "memfd";
    ghost: "ghost";
    locks: "locks";
}
