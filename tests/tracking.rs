//! Pre-dumps and incremental dumps (`stasis pre-dump`, `dump --prev-images-dir`): the
//! `tracked` victim changes its memory in every way a program can between the pre-dump
//! and the dump (writes, first writes, dropped pages, new, unmapped and moved mappings,
//! protections, a private file mapping, a child forked after the tracking was armed), and
//! the restore through the chain of parents must give every byte back. A missing or
//! corrupt parent is refused before any process exists; a killed tracker leaves the tree
//! running (and the next dump stores everything); a tree using userfaultfd is refused.
//! The `memory` victim, which checks its `/proc/self/maps`, restores from a `-R
//! --track-mem` image and from the incremental one after it with its maps as they were,
//! and runs on with them when its tracking is stopped or its tracker killed.
//! Children that exit or exec while a pre-dump reads them are left out (`churn`).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{Proc, Start, TempDir};

/// Skips (printing why) where the kernel has no async write-protect userfaultfd.
fn tracking_available(test: &str) -> bool {
    let out = common::stasis(&["check"]);
    let ok = out
        .stdout
        .lines()
        .any(|l| l.starts_with("OK") && l.contains("UFFD_FEATURE_WP_ASYNC"));
    if !ok {
        common::skip(
            test,
            "the kernel has no userfaultfd async write-protect (Linux 6.7)",
        );
    }
    ok
}

/// The start of every test here: the shared lock, and the temporary directory; returns
/// from the test (printing why) without privileges or without tracking.
macro_rules! tracking_test {
    ($test:expr) => {{
        let serial = common::serial();
        require_privileged!($test);
        if !tracking_available($test) {
            return;
        }
        (serial, TempDir::new($test))
    }};
}

/// Kills the victim and its children when the test stops early.
fn family_guard(victim: &Proc) -> common::TreeGuard {
    common::TreeGuard(common::descendants(victim.pid))
}

/// A dump with `args` that kills the victim; waits for it and reaps its children.
fn dump_killing(victim: &mut Proc, dir: &Path, args: &[&str], what: &str) {
    let family = common::descendants(victim.pid);
    common::dump(victim.pid, dir, args).assert_ok(what);
    victim.wait_exit(common::EXIT_TIMEOUT);
    common::reap_all(&family, false);
}

/// Restores `dir` detached and lets the restored victim verify itself.
fn restore_and_verify(dir: &Path, victim: &Proc) {
    let pid = common::restore_detached(dir).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let mut restored = Proc::adopt(pid, &victim.log);
    let _family = common::TreeGuard(common::descendants(pid));
    restored.go_and_expect_pass();
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> common::Output {
    common::stasis(args)
}

fn pre_dump(pid: i32, dir: &Path, prev: Option<&str>) -> common::Output {
    let mut args: Vec<String> = vec!["pre-dump".into(), "-t".into(), pid.to_string()];
    args.extend(["-D".into(), dir.display().to_string()]);
    if let Some(p) = prev {
        args.extend(["--prev-images-dir".into(), p.into()]);
    }
    run(&args)
}

/// The tracker pid from a pre-dump's summary line.
fn tracker_pid(out: &common::Output) -> i32 {
    (out.stderr.rsplit("tracker pid ").next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tracker pid in {:?}", out.stderr))
}

/// The pre-dump into `tmp/pre1`; the tracker's pid.
fn first_pre_dump(victim: &Proc, tmp: &TempDir) -> i32 {
    let out = pre_dump(victim.pid, &tmp.join("pre1"), None);
    out.assert_ok("pre-dump");
    tracker_pid(&out)
}

/// The dump against `tmp/pre1`, which kills the victim, restored and verified.
fn dump_against_pre1_and_verify(victim: &mut Proc, tmp: &TempDir) {
    let _orig = family_guard(victim);
    let d = tmp.join("dump");
    dump_killing(victim, &d, &["--prev-images-dir", "../pre1"], "dump");
    restore_and_verify(&d, victim);
}

/// Starts the `tracked` victim in `tmp/work`; `None` if it skipped.
fn start(test: &str, tmp: &TempDir, args: &[&str]) -> Option<Proc> {
    start_victim(test, tmp, "tracked", args)
}

/// Starts victim `name` in `tmp/work`; `None` if it skipped.
fn start_victim(test: &str, tmp: &TempDir, name: &str, args: &[&str]) -> Option<Proc> {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim(name, args, &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return None;
    }
    Some(victim)
}

/// Sends SIGUSR2 ("change", "stop") and waits for the victim's `answer` line.
fn signal_and_wait(victim: &Proc, answer: &str) {
    victim.signal(libc::SIGUSR2);
    for _ in 0..2000 {
        if victim.log_text().lines().any(|l| l == answer) {
            return;
        }
        common::sleep_ms(5);
    }
    panic!("no {answer}; log:\n{}", victim.log_text());
}

/// Sends "change" and waits for CHANGED.
fn change(victim: &Proc) {
    signal_and_wait(victim, "CHANGED");
}

fn bytes_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .expect("read image dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// pre-dump, pre-dump against it, change, dump against the second: returns the victim
/// (killed by the dump, reaped) and the three image dirs.
fn chain(test: &str, tmp: &TempDir) -> Option<(Proc, [PathBuf; 3])> {
    let mut victim = start(test, tmp, &[])?;
    let (p1, p2, d) = (tmp.join("pre1"), tmp.join("pre2"), tmp.join("dump"));
    pre_dump(victim.pid, &p1, None).assert_ok("pre-dump");
    pre_dump(victim.pid, &p2, Some("../pre1")).assert_ok("second pre-dump");
    assert!(
        bytes_of(&p2, "pages-") < bytes_of(&p1, "pages-") / 4,
        "the second pre-dump stored {} bytes, the first {}",
        bytes_of(&p2, "pages-"),
        bytes_of(&p1, "pages-")
    );
    change(&victim);
    let _orig = family_guard(&victim);
    dump_killing(&mut victim, &d, &["--prev-images-dir", "../pre2"], "dump");
    Some((victim, [p1, p2, d]))
}

#[test]
fn predump_chain_restores_exact_memory() {
    let test = "predump_chain_restores_exact_memory";
    let (_serial, tmp) = tracking_test!(test);
    let Some((victim, [p1, _, d])) = chain(test, &tmp) else {
        return;
    };
    assert!(
        bytes_of(&d, "pages-") < bytes_of(&p1, "pages-") / 2,
        "the dump stored {} bytes, the pre-dump {}",
        bytes_of(&d, "pages-"),
        bytes_of(&p1, "pages-")
    );
    restore_and_verify(&d, &victim);
}

#[test]
fn predump_is_not_restorable_alone() {
    let test = "predump_is_not_restorable_alone";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start(test, &tmp, &[]) else {
        return;
    };
    pre_dump(victim.pid, &tmp.join("pre1"), None).assert_ok("pre-dump");
    let out = run(&[
        OsStr::new("restore"),
        "-D".as_ref(),
        tmp.join("pre1").as_os_str(),
    ]);
    assert!(out
        .assert_failed("restore of a pre-dump")
        .contains("pre-dump"));
    run(&["pre-dump", "--stop-tracking", "-t", &victim.pid.to_string()]).assert_ok("stop tracking");
    change(&victim);
    let _orig = family_guard(&victim);
    victim.go_and_expect_pass();
}

/// Restore of `d` fails before any process exists, naming `what`.
fn refused(pid: i32, d: &Path, what: &str) {
    let out = run(&[OsStr::new("restore"), "-D".as_ref(), d.as_os_str()]);
    let msg = out
        .assert_failed("restore with a broken parent")
        .to_string();
    assert!(msg.contains(what), "{msg:?} does not name {what:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} was created anyway"
    );
}

#[test]
fn broken_parent_is_refused_before_any_process() {
    let test = "broken_parent_is_refused_before_any_process";
    let (_serial, tmp) = tracking_test!(test);
    let Some((victim, [p1, p2, d])) = chain(test, &tmp) else {
        return;
    };
    // A flipped byte in the grandparent's pages.
    let pages = p1.join(format!("pages-{}.img", victim.pid));
    let mut bytes = std::fs::read(&pages).expect("read pages");
    bytes[4096 + 100] ^= 0x80;
    std::fs::write(&pages, &bytes).expect("write pages");
    refused(victim.pid, &d, "pages-");
    bytes[4096 + 100] ^= 0x80;
    std::fs::write(&pages, &bytes).expect("write pages");
    // The parent replaced by another image (another id).
    let moved = tmp.join("pre2.orig");
    std::fs::rename(&p2, &moved).expect("move parent");
    std::fs::create_dir(&p2).expect("mkdir");
    std::fs::copy(p1.join("chain.img"), p2.join("chain.img")).expect("copy chain");
    refused(victim.pid, &d, "id");
    // The parent gone.
    std::fs::remove_dir_all(&p2).expect("rm parent");
    refused(victim.pid, &d, "chain.img");
    std::fs::rename(&moved, &p2).expect("move parent back");
    restore_and_verify(&d, &victim);
}

#[test]
fn killed_tracker_leaves_the_tree_running_and_untracked() {
    let test = "killed_tracker_leaves_the_tree_running_and_untracked";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start(test, &tmp, &[]) else {
        return;
    };
    let tracker = first_pre_dump(&victim, &tmp);
    common::kill(tracker, libc::SIGKILL).expect("kill the tracker");
    common::reap_all(&[tracker], false);
    change(&victim);
    // No tracking counted the changes: the dump stores everything again.
    dump_against_pre1_and_verify(&mut victim, &tmp);
}

#[test]
fn tree_using_userfaultfd_is_refused() {
    let test = "tree_using_userfaultfd_is_refused";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start(test, &tmp, &["-u"]) else {
        return;
    };
    let out = pre_dump(victim.pid, &tmp.join("pre1"), None);
    let msg = out
        .assert_failed("pre-dump of a userfaultfd user")
        .to_string();
    assert!(
        msg.contains("fd 50")
            && msg.contains(&victim.pid.to_string())
            && msg.contains("userfaultfd"),
        "{msg:?}"
    );
    change(&victim);
    let _orig = family_guard(&victim);
    victim.go_and_expect_pass();
}

#[test]
fn stop_tracking_disarms() {
    let test = "stop_tracking_disarms";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start(test, &tmp, &[]) else {
        return;
    };
    let out = pre_dump(victim.pid, &tmp.join("pre1"), None);
    out.assert_ok("pre-dump");
    let tracker = tracker_pid(&out);
    let pid = victim.pid.to_string();
    run(&["pre-dump", "--stop-tracking", "-t", &pid]).assert_ok("stop tracking");
    common::reap_all(&[tracker], false);
    let again = run(&["pre-dump", "--stop-tracking", "-t", &pid]);
    assert!(again.assert_failed("second stop").contains("no tracker"));
    // Tracking off, the process writes as before.
    change(&victim);
    let _orig = family_guard(&victim);
    victim.go_and_expect_pass();
}

#[test]
fn incremental_dumps_leave_running_then_restore_the_last() {
    let test = "incremental_dumps_leave_running_then_restore_the_last";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start(test, &tmp, &[]) else {
        return;
    };
    let (d0, d1, d2) = (tmp.join("d0"), tmp.join("d1"), tmp.join("d2"));
    common::dump(victim.pid, &d0, &["-R", "--track-mem"]).assert_ok("dump -R --track-mem");
    change(&victim);
    let _orig = family_guard(&victim);
    common::dump(victim.pid, &d1, &["-R", "--prev-images-dir", "../d0"]).assert_ok("dump -R");
    assert!(
        // Most of the 8 MiB region was not written: taken from d0.
        bytes_of(&d1, "pages-") + (2 << 20) < bytes_of(&d0, "pages-"),
        "the incremental dump stored {} bytes, the first {}",
        bytes_of(&d1, "pages-"),
        bytes_of(&d0, "pages-")
    );
    dump_killing(
        &mut victim,
        &d2,
        &["--prev-images-dir", "../d1"],
        "last dump",
    );
    restore_and_verify(&d2, &victim);
}

/// `tracked_writer` writes pages without pause through three `dump -R` against tracking;
/// stopped right after the third, it is dumped once more (killing it). The restore of
/// that last image must hold every write, those made while the third dump wrote its
/// pages (after the release) and right after it included; the restore of the second
/// image alone must hold the memory as it was frozen (the writer checks each page it
/// visits again holds what it wrote there before).
#[test]
fn pages_written_during_and_after_an_incremental_dump_are_in_the_next() {
    let test = "pages_written_during_and_after_an_incremental_dump_are_in_the_next";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start_victim(test, &tmp, "tracked_writer", &[]) else {
        return;
    };
    let _orig = family_guard(&victim);
    let d = |n: u32| tmp.join(format!("d{n}"));
    common::dump(victim.pid, &d(0), &["-R", "--track-mem"]).assert_ok("dump -R --track-mem");
    for n in 1..=3 {
        let parent = format!("../d{}", n - 1);
        let args = ["-R", "--prev-images-dir", parent.as_str()];
        common::dump(victim.pid, &d(n), &args).assert_ok("incremental dump -R");
    }
    signal_and_wait(&victim, "STOPPED");
    dump_killing(
        &mut victim,
        &d(4),
        &["--prev-images-dir", "../d3"],
        "last dump",
    );
    restore_and_verify(&d(4), &victim);
    // The victim's log grew since: its fd is restored at the offset it had.
    let pid = common::restore_detached_with(&d(2), &["--skip-file-check"])
        .unwrap_or_else(|o| panic!("restore d2: {o:?}"));
    let mut restored = Proc::adopt(pid, &victim.log);
    let _family = common::TreeGuard(common::descendants(pid));
    // Its writer runs on, checking each page it comes back to.
    common::sleep_ms(200);
    restored.signal(libc::SIGUSR2);
    restored.go_and_expect_pass();
}

/// Starts the `memory` victim (8 MiB of random data) in `tmp/sub`, which checks its
/// `/proc/self/maps` after go; `None` if it skipped.
fn start_memory(test: &str, tmp: &TempDir, sub: &str) -> Option<Proc> {
    let dir = tmp.join(sub);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut victim = common::spawn_victim("memory", &["-s", "8"], &dir);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return None;
    }
    Some(victim)
}

/// The write protection of `--track-mem` puts PTE markers on the pages not populated of
/// every private file mapping; a dump that stored them as pages gave them back as
/// private copies written at restore, and the `memory` victim found libc's read-only
/// data merged with its RELRO mapping ("maps differ"). The restore of the `-R
/// --track-mem` image, and that of the incremental image after it, give the maps back.
#[test]
fn tracked_dumps_of_memory_restore_its_maps() {
    let test = "tracked_dumps_of_memory_restore_its_maps";
    let (_serial, tmp) = tracking_test!(test);
    for incremental in [false, true] {
        let sub = if incremental { "incremental" } else { "first" };
        let Some(mut victim) = start_memory(test, &tmp, sub) else {
            return;
        };
        let _orig = family_guard(&victim);
        let (d0, d1) = (tmp.join(sub).join("d0"), tmp.join(sub).join("d1"));
        let args = ["-R", "--track-mem"];
        common::dump(victim.pid, &d0, &args).assert_ok("dump -R --track-mem");
        if incremental {
            let args = ["--prev-images-dir", "../d0"];
            dump_killing(&mut victim, &d1, &args, "incremental dump");
            restore_and_verify(&d1, &victim);
        } else {
            common::kill(victim.pid, libc::SIGKILL).expect("kill the victim");
            victim.wait_exit(common::EXIT_TIMEOUT);
            restore_and_verify(&d0, &victim);
        }
    }
}

/// A `memory` victim whose tracking ends without a restore (stopped, or its tracker
/// killed) runs on with the maps it had: its own check of them passes.
#[test]
fn memory_left_untracked_keeps_its_maps() {
    let test = "memory_left_untracked_keeps_its_maps";
    let (_serial, tmp) = tracking_test!(test);
    for (sub, stop) in [("stopped", true), ("killed", false)] {
        let Some(mut victim) = start_memory(test, &tmp, sub) else {
            return;
        };
        let _orig = family_guard(&victim);
        let out = pre_dump(victim.pid, &tmp.join(sub).join("pre"), None);
        out.assert_ok("pre-dump");
        let tracker = tracker_pid(&out);
        if stop {
            let pid = victim.pid.to_string();
            run(&["pre-dump", "--stop-tracking", "-t", &pid]).assert_ok("stop tracking");
        } else {
            common::kill(tracker, libc::SIGKILL).expect("kill the tracker");
        }
        common::reap_all(&[tracker], false);
        victim.go_and_expect_pass();
    }
}

/// `churn` forks children that write their copy of its memory, then exit or exec within
/// 3 ms, without pause: twenty chained pre-dumps catch children that are gone (or hold a
/// new address space) once the tree runs again, while their pages are armed and read.
/// Each pre-dump succeeds and leaves them out; the dump against the last one, restored,
/// gives every page of the parent back.
#[test]
fn predump_leaves_out_children_gone_after_the_freeze() {
    let test = "predump_leaves_out_children_gone_after_the_freeze";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start_victim(test, &tmp, "churn", &[]) else {
        return;
    };
    let _orig = family_guard(&victim);
    let pre = |n: u32| tmp.join(format!("pre{n}"));
    let mut left_out = 0;
    for n in 0..20 {
        let parent = format!("../pre{}", n.max(1) - 1);
        let out = pre_dump(victim.pid, &pre(n), (n > 0).then_some(parent.as_str()));
        left_out += usize::from(out.assert_ok("pre-dump").stderr.contains("left out"));
    }
    println!("{left_out} of 20 pre-dumps left out a child gone after the freeze");
    signal_and_wait(&victim, "STOPPED");
    let d = tmp.join("dump");
    dump_killing(&mut victim, &d, &["--prev-images-dir", "../pre19"], "dump");
    restore_and_verify(&d, &victim);
}

/// `heap_grow` grows its heap by brk and maps memory right below a mapping after the
/// pre-dump (both left untouched), and moves a written pair of pages next to another
/// mapping. The kernel does not merge a registered mapping with an unregistered one:
/// the dump must let it merge the grown pieces (as it would have without the tracking)
/// and keep the moved pair apart. The restored victim checks its `/proc/self/maps` and
/// mremaps across each boundary; the same check passes untracked (the control).
#[test]
fn grown_heap_restores_with_the_untracked_layout() {
    let test = "grown_heap_restores_with_the_untracked_layout";
    let (_serial, tmp) = tracking_test!(test);
    let untracked = TempDir::new(&format!("{test}-untracked"));
    let Some(mut control) = start_victim(test, &untracked, "heap_grow", &[]) else {
        return;
    };
    change(&control);
    control.go_and_expect_pass();
    let Some(mut victim) = start_victim(test, &tmp, "heap_grow", &[]) else {
        return;
    };
    first_pre_dump(&victim, &tmp);
    change(&victim);
    dump_against_pre1_and_verify(&mut victim, &tmp);
}

/// `--stop-tracking` after the heap grew: the tracked victim runs on with the layout it
/// would have had untracked (unregistering lets the kernel merge the untouched growth).
#[test]
fn grown_heap_runs_on_untracked_after_stop_tracking() {
    let test = "grown_heap_runs_on_untracked_after_stop_tracking";
    let (_serial, tmp) = tracking_test!(test);
    let Some(mut victim) = start_victim(test, &tmp, "heap_grow", &[]) else {
        return;
    };
    let tracker = first_pre_dump(&victim, &tmp);
    change(&victim);
    let pid = victim.pid.to_string();
    run(&["pre-dump", "--stop-tracking", "-t", &pid]).assert_ok("stop tracking");
    common::reap_all(&[tracker], false);
    let _orig = family_guard(&victim);
    victim.go_and_expect_pass();
}

/// A tree in its own network namespace (`unshare -n`, as a container's): the dump
/// enters that namespace to read its sockets, and must still reach the tracker the
/// pre-dump started (an abstract socket name is seen only in the namespace it was bound
/// in), or it stores every page again.
#[test]
fn tracker_is_reached_from_a_tree_in_its_own_network_namespace() {
    let test = "tracker_is_reached_from_a_tree_in_its_own_network_namespace";
    let (_serial, tmp) = tracking_test!(test);
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim_under(&["unshare", "-n"], "tracked", &[], &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return;
    }
    let p1 = tmp.join("pre1");
    first_pre_dump(&victim, &tmp);
    change(&victim);
    dump_against_pre1_and_verify(&mut victim, &tmp);
    let d = tmp.join("dump");
    assert!(
        bytes_of(&d, "pages-") < bytes_of(&p1, "pages-") / 2,
        "the dump stored {} bytes, the pre-dump {}",
        bytes_of(&d, "pages-"),
        bytes_of(&p1, "pages-")
    );
}
