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

/// How a victim ends after go.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exit 0 with `PASS` as the last log line.
    Pass,
    /// Killed by the signal, the log ending with the line (printed just before the call
    /// that must kill it).
    Killed(i32, &'static str),
}

impl Expect {
    fn status(self) -> Status {
        match self {
            Expect::Pass => Status::Exited(0),
            Expect::Killed(sig, _) => Status::Signaled(sig),
        }
    }

    /// What the attached `stasis restore` exits with: the task's status.
    fn restore_exit_code(self) -> i32 {
        match self {
            Expect::Pass => 0,
            Expect::Killed(sig, _) => 128 + sig,
        }
    }

    fn last_line(self) -> &'static str {
        match self {
            Expect::Pass => "PASS",
            Expect::Killed(_, line) => line,
        }
    }

    /// The victim ended as expected, having printed READY once (not started over).
    fn check(self, proc: &Proc, st: Status) {
        let log = proc.log_text();
        assert_eq!(
            st,
            self.status(),
            "victim pid {} ended unexpectedly; log:\n{log}",
            proc.pid
        );
        self.check_log(&log);
    }

    fn check_log(self, log: &str) {
        assert_eq!(
            log.lines().last(),
            Some(self.last_line()),
            "victim log does not end with {:?}:\n{log}",
            self.last_line()
        );
        let readies = log.lines().filter(|l| *l == "READY").count();
        assert_eq!(
            readies, 1,
            "victim printed READY {readies} times (started over?):\n{log}"
        );
    }
}

fn scenario(test: &str, victim: &str, args: &[&str], mode: Mode, expect: Expect) {
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
        Mode::Standalone => {
            let st = proc.go();
            expect.check(&proc, st);
        }
        Mode::Detached => {
            dump_and_reap(&mut proc, victim, args, &tmp);
            let pid = common::restore_detached(&tmp.join("img")).unwrap_or_else(|out| {
                panic!(
                    "restore -d failed: {out:?}\nvictim log:\n{}",
                    proc.log_text()
                )
            });
            assert_eq!(pid, proc.pid, "restored under another pid");
            // stasis has exited: as subreaper we are the restored task's parent now.
            let mut restored = Proc::adopt(pid, &proc.log);
            let st = restored.go();
            expect.check(&restored, st);
        }
        Mode::Attached => {
            dump_and_reap(&mut proc, victim, args, &tmp);
            restore_attached(&proc, &tmp, expect);
        }
    }
}

/// Extra `stasis dump` options a victim needs.
fn dump_args(victim: &str, args: &[&str]) -> &'static [&'static str] {
    match (victim, args.first().copied()) {
        ("locks" | "leases", _) => &["--file-locks"],
        ("ghost", Some("remap")) => &["--link-remap", "--file-locks"],
        ("unix_sockets", Some("inflight")) => &["--skip-in-flight"],
        ("inet_sockets", Some("established")) => &["--tcp-established"],
        ("inet_sockets", Some("close")) => &["--tcp-close"],
        ("tcp_states", Some("closing" | "reset" | "full")) => &["--tcp-established"],
        ("netns", _) => &["--tcp-established"],
        _ => &[],
    }
}

/// Dump `proc` into tmp/img and reap it: a dump without -R SIGKILLs the task, and its
/// descendants, which become ours to reap (we are the subreaper).
fn dump_and_reap(proc: &mut Proc, victim: &str, args: &[&str], tmp: &TempDir) {
    common::dump(proc.pid, &tmp.join("img"), dump_args(victim, args)).assert_ok("stasis dump");
    let st = proc.wait_exit(Duration::from_secs(10));
    assert_eq!(
        st,
        Status::Signaled(libc::SIGKILL),
        "dumped task should have been SIGKILLed"
    );
    common::reap_image_tree(&tmp.join("img"));
}

fn restore_attached(orig: &Proc, tmp: &TempDir, expect: Expect) {
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
        Some(expect.restore_exit_code()),
        "stasis restore exited with {:?} (task status); stderr: {}\nvictim log:\n{log}",
        out.status,
        out.stderr
    );
    expect.check_log(&log);
}

/// `module: "victim" ["arg", ...] => Expect::...;` — the expectation defaults to PASS.
macro_rules! victim_tests {
    ($($module:ident: $victim:literal $([$($arg:literal),*])? $(=> $expect:expr)?;)*) => {$(
        mod $module {
            #[allow(unused_imports)]
            use super::{scenario, Expect, Mode};
            const ARGS: &[&str] = &[$($($arg),*)?];
            fn name(t: &str) -> String {
                format!("{}::{t}", stringify!($module))
            }
            #[allow(unused_variables)]
            fn expect() -> Expect {
                let e = Expect::Pass;
                $(let e = $expect;)?
                e
            }
            #[test]
            fn standalone() {
                scenario(&name("standalone"), $victim, ARGS, Mode::Standalone, expect());
            }
            #[test]
            fn restore_detached() {
                scenario(&name("restore_detached"), $victim, ARGS, Mode::Detached, expect());
            }
            #[test]
            fn restore_attached() {
                scenario(&name("restore_attached"), $victim, ARGS, Mode::Attached, expect());
            }
        }
    )*};
}

victim_tests! {
    memory: "memory";
    // Large enough (4+ batches) that stasis fills pages alongside the child.
    memory_large: "memory" ["-s", "256"];
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
    creds_per_thread: "creds" ["per_thread"];
    mmflags: "mmflags";
    file_prot: "file_prot";
    many_maps: "many_maps";
    no_vdso: "no_vdso";
    aio: "aio";
    shmem_pieces: "shmem_pieces";
    seccomp_stacked: "seccomp" ["stacked"];
    seccomp_tsync: "seccomp" ["tsync"];
    seccomp_kill: "seccomp" ["kill"] => Expect::Killed(libc::SIGSYS, "CALLING getpid");
    seccomp_strict: "seccomp" ["strict"];
    loginuid: "loginuid";
    guards: "guards";
    tree: "tree";
    tree_50: "tree" ["50"];
    stopped: "stopped";
    group_helper: "group_helper";
    sessions: "sessions";
    shared_vm: "shared_vm";
    shared_vm_nested: "shared_vm" ["nested"];
    cow: "cow";
    unlinked_maps: "unlinked_maps";
    unlinked_maps_fds: "unlinked_maps" ["fds"];
    private_maps: "private_maps";
    hugetlb: "hugetlb";
    pipes: "pipes";
    zero_pages: "zero_pages";
    anonfds: "anonfds";
    epoll_moved: "epoll_moved";
    inotify: "inotify";
    fanotify: "fanotify";
    memfd: "memfd";
    ghost: "ghost";
    ghost_remap: "ghost" ["remap"];
    ghost_holes: "ghost_holes";
    ghost_attrs: "ghost_kinds" ["attrs"];
    ghost_tmpfile: "ghost_kinds" ["tmpfile"];
    ghost_fifo: "ghost_kinds" ["fifo"];
    ghost_dev: "ghost_kinds" ["dev"];
    ghost_dir: "ghost_kinds" ["dir"];
    ghost_symlink: "ghost_kinds" ["symlink"];
    locks: "locks";
    fown: "fown";
    unix_unlinked: "unix_unlinked";
    leases: "leases";
    pidfd_dead: "pidfd_dead";
    chrooted: "chrooted";
    proc_files: "proc_files";
    unix_sockets: "unix_sockets";
    unix_inflight: "unix_sockets" ["inflight"];
    inflight: "inflight";
    inflight_epoll: "inflight_epoll";
    unix_layouts: "unix_layouts";
    unix_many: "unix_many";
    unix_senders: "unix_senders";
    unix_peercred: "unix_peercred";
    unix_peercred_user: "unix_peercred" ["user"];
    unix_peercred_changed: "unix_peercred" ["changed"];
    packet_sockets: "packet_sockets";
    netlink_sockets: "netlink_sockets";
    inet_sockets: "inet_sockets";
    sockopts: "sockopts";
    tcp_established: "inet_sockets" ["established"];
    tcp_close: "inet_sockets" ["close"];
    tcp_closing: "tcp_states" ["closing"];
    tcp_reset: "tcp_states" ["reset"];
    tcp_ended_without_tcp_established: "tcp_states" ["ended"];
    tcp_full_queues: "tcp_states" ["full"];
    udp_shutdown: "tcp_states" ["udp"];
    netns: "netns";
    netlinks: "netlinks";
    netns_sockets: "netns_sockets";
    netns_cross: "netns_cross";
    tun: "tun";
    pty: "pty";
    ctty: "ctty";
    pty_hangup: "pty_hangup";
    pty_hangup_ns: "pty_hangup" ["ns"];
    devpts_pty: "devpts_pty";
    devpts_console: "devpts_pty" ["console"];
    split: "split";
    sysv: "sysv";
    sysv_host: "sysv" ["host"];
    sysv_hugetlb: "sysv" ["hugetlb"];
    mqueue: "mqueue";
    mqueue_host: "mqueue" ["host"];
}

/// The total PSS (KiB) of `pid` and its descendants, from `smaps_rollup`.
fn tree_pss_kib(pid: i32) -> u64 {
    let mut pids = common::descendants(pid);
    pids.push(pid);
    pids.iter()
        .map(|p| {
            let text = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
                .unwrap_or_else(|e| panic!("smaps_rollup of pid {p}: {e}"));
            text.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .expect("a Pss line")
        })
        .sum()
}

/// Pages a child still shares copy-on-write with its parent are stored once and come back
/// shared: the `cow` tree (64 MiB in the root, six processes that mostly only read it) has
/// about the same total PSS after a restore as before the dump, and its pages files hold
/// the 64 MiB about once.
#[test]
fn cow_tree_memory_stays_shared() {
    let test = "cow_tree_memory_stays_shared";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let mut proc = common::spawn_victim("cow", &[], tmp.path());
    assert!(
        matches!(proc.wait_ready(), Start::Ready),
        "cow victim did not start"
    );
    common::sleep_ms(SETTLE_MS);
    let _family = common::TreeGuard(common::descendants(proc.pid));
    let before = tree_pss_kib(proc.pid);
    dump_and_reap(&mut proc, "cow", &[], &tmp);
    let img = tmp.join("img");
    let stored: u64 = std::fs::read_dir(&img)
        .expect("image directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().expect("stat a pages file").len())
        .sum();
    let pid = common::restore_detached(&img).unwrap_or_else(|out| panic!("restore: {out:?}"));
    let mut restored = Proc::adopt(pid, &proc.log);
    let _family = common::TreeGuard(common::descendants(pid));
    let after = tree_pss_kib(pid);
    let st = restored.go();
    Expect::Pass.check(&restored, st);
    eprintln!("{test}: PSS {before} KiB before the dump, {after} KiB after the restore; pages files {} KiB", stored >> 10);
    assert!(
        after <= before + before / 20,
        "the tree's PSS grew from {before} KiB to {after} KiB across dump and restore"
    );
    assert!(
        stored < 72 << 20,
        "the pages files hold {stored} bytes: the shared 64 MiB is stored more than once"
    );
}
