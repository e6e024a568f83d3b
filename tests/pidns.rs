//! Restoring into a fresh pid namespace, the way out on a busy host that
//! docs/ARCHITECTURE.md describes: `unshare --pid --fork --mount-proc stasis restore -D DIR`.
//! The dumped tree is left running (`-R`), so every pid of the image stays taken on the
//! host; inside the new namespace the whole tree comes back under its dumped pids and runs
//! to PASS.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Proc, Start, TempDir};

fn pid_ns(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Host pid of every process of the pid namespace whose init is `init` (a host pid), by
/// its pid there.
fn inner_pids(init: i32) -> HashMap<i32, i32> {
    let (Ok(dir), Some(ns)) = (std::fs::read_dir("/proc"), pid_ns(init)) else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&host| pid_ns(host).as_ref() == Some(&ns))
        .filter_map(|host| match common::nspids(host)[..] {
            [h, inner] if h == host => Some((inner, host)),
            _ => None,
        })
        .collect()
}

/// The live pids of the image in `img`.
fn image_pids(img: &Path) -> Vec<i32> {
    let image = stasis::image::Image::load_metadata(img).expect("load the dumped image");
    image.inventory.pids
}

#[test]
fn restore_into_a_new_pid_namespace() {
    let test = "restore_into_a_new_pid_namespace";
    let _serial = common::serial();
    require_privileged!(test);
    if Command::new("unshare").arg("--help").output().is_err() {
        common::skip(test, "no unshare(1) (util-linux)");
        return;
    }
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    let mut orig = common::spawn_victim("tree", &[], &work);
    assert_eq!(orig.wait_ready(), Start::Ready);
    common::sleep_ms(200);
    let family = common::descendants(orig.pid);
    let _orig_family = common::TreeGuard(family.clone());
    let img = tmp.join("img");
    common::dump(orig.pid, &img, &["-R"]).assert_ok("stasis dump -R");
    let pids = image_pids(&img);

    let mut restore = common::start(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", common::STASIS])
            .args(["restore".as_ref(), "-D".as_ref(), img.as_os_str()])
            .current_dir(tmp.path()),
    );
    let inside = wait_for_tree(&pids, &mut restore, &orig);
    let _new_family = common::TreeGuard(inside.values().copied().collect());
    for &pid in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the original pid {pid} should still be taken on the host"
        );
        assert_ne!(inside[&pid], pid, "pid {pid} was restored on the host");
    }

    // The originals go; the copy in the namespace runs to its end.
    orig.signal(libc::SIGKILL);
    let _ = orig.wait_exit(common::EXIT_TIMEOUT);
    common::reap_all(&family, true);
    let root = inside[&pids[0]];
    let deadline = Instant::now() + common::EXIT_TIMEOUT;
    let out = loop {
        let _ = common::kill(root, libc::SIGUSR1);
        if let Some(out) = restore.try_finish() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the restored tree did not finish"
        );
        common::sleep_ms(200);
    };
    let log = orig.log_text();
    assert_eq!(
        out.code(),
        Some(0),
        "stasis restore in the namespace: {out:?}\nlog:\n{log}"
    );
    assert_eq!(log.lines().last(), Some("PASS"), "log:\n{log}");
}

/// Waits until every pid of the image runs inside the namespace under that very pid;
/// returns their host pids by pid.
fn wait_for_tree(pids: &[i32], restore: &mut common::Running, orig: &Proc) -> HashMap<i32, i32> {
    let deadline = Instant::now() + common::STASIS_TIMEOUT;
    loop {
        // stasis is the namespace's init, the child of unshare.
        let init = common::descendants(restore.pid()).first().copied();
        let inside = init.map(inner_pids).unwrap_or_default();
        if let (Some(init), true) = (init, pids.iter().all(|p| inside.contains_key(p))) {
            if common::restored_under(inside[&pids[0]], init) {
                return inside;
            }
        }
        if let Some(out) = restore.try_finish() {
            panic!(
                "stasis restore in a new pid namespace exited early: {out:?}\nlog:\n{}",
                orig.log_text()
            );
        }
        assert!(Instant::now() < deadline, "the tree never came back whole");
        common::sleep_ms(20);
    }
}
