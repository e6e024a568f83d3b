//! stasis-criu as runc drives it: a client on a SOCK_SEQPACKET socketpair sends CRIU's
//! requests to `stasis-criu swrk N` (VERSION, CHECK, FEATURE_CHECK, DUMP and RESTORE of
//! a real counter with every notification answered, refusals with `cr_errmsg`), then the
//! command-line form. Needs root; run with `--test-threads=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;

use common::proto::{self, CriuFeatures, CriuOpts, CriuReqType};
use common::{assert_counts_on, chain_dirs, tracking};
use common::{count, criu, privileged, reap, req, started_counter, Session};
use prost::Message;

#[test]
fn version_check_features() {
    if !privileged("version_check_features") {
        return;
    }
    let mut s = Session::start();
    let mut version = req(CriuReqType::Version, None);
    version.keep_open = Some(true);
    let (resp, _) = s.call(&version);
    let v = resp.version.unwrap();
    assert!(resp.success);
    assert!(
        v.major_number * 10000 + v.minor_number * 100 >= 31100,
        "podman wants 3.11"
    );
    assert!(v.name().starts_with("stasis "), "{v:?}");
    let mut check = req(CriuReqType::Check, None);
    check.keep_open = Some(true);
    let (resp, _) = s.call(&check);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    let mut features = req(CriuReqType::FeatureCheck, None);
    features.features = Some(CriuFeatures {
        mem_track: Some(true),
        lazy_pages: Some(true),
        pidfd_store: None,
    });
    let (resp, _) = s.call(&features);
    assert!(resp.success);
    let f = resp.features.unwrap();
    let tracking = stasis::check::tracking_method().is_some();
    let lazy = stasis::lazy::restore::check_kernel().is_ok();
    assert_eq!(
        (f.mem_track, f.lazy_pages, f.pidfd_store),
        (Some(tracking), Some(lazy), None)
    );
    s.finish();
}

#[test]
fn dump_and_restore_with_notifications() {
    if !privileged("dump_and_restore_with_notifications") {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let (file, images) = (dir.path().join("count"), dir.path().join("images"));
    std::fs::write(images.join("descriptors.json"), "[]").unwrap();
    let images_fd = File::open(&images).unwrap();
    let opts = |restore: bool| CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        pid: (!restore).then_some(pid),
        log_level: Some(4),
        log_file: Some(if restore { "restore.log" } else { "dump.log" }.into()),
        notify_scripts: Some(true),
        rst_sibling: Some(restore),
        empty_ns: Some(0x4000_0000),
        ..Default::default()
    };
    let mut s = Session::start();
    let (resp, names) = s.call(&req(CriuReqType::Dump, Some(opts(false))));
    s.finish();
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(names, ["pre-dump", "network-lock", "post-dump"]);
    reap(victim);
    let dumped = count(&file);
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap();
    assert!(log.contains("Notify post-dump (pid "), "{log}");
    let stats = std::fs::read(images.join("stats-dump")).unwrap();
    assert_eq!(
        &stats[..8],
        &[0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57]
    );
    let entry = proto::StatsEntry::decode(&stats[12..]).unwrap();
    assert!(entry.dump.unwrap().pages_written > 0);

    let mut s = Session::start();
    let (resp, names) = s.call(&req(CriuReqType::Restore, Some(opts(true))));
    s.finish();
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(
        names,
        [
            "pre-restore",
            "setup-namespaces",
            "post-setup-namespaces",
            "post-restore",
            "network-unlock",
            "pre-resume",
            "post-resume"
        ]
    );
    assert_eq!(resp.restore.unwrap().pid, pid);
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = ppid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        ppid,
        std::process::id() as i32,
        "rst_sibling: the client is the parent"
    );
    assert!(images.join("stats-restore").exists());
    assert_counts_on(pid, &file, dumped);
}

/// A client failing the post-dump notification fails the dump, and the tree runs on.
#[test]
fn failed_post_dump_leaves_the_tree_running() {
    if !privileged("failed_post_dump_leaves_the_tree_running") {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let images = File::open(dir.path().join("images")).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(pid),
        notify_scripts: Some(true),
        ..Default::default()
    };
    let mut s = Session::start();
    let (resp, names) = s.call_failing(&req(CriuReqType::Dump, Some(opts)), "post-dump");
    s.finish();
    assert!(!resp.success);
    assert_eq!(names, ["pre-dump", "network-lock", "post-dump"]);
    let msg = resp.cr_errmsg.unwrap();
    assert!(msg.contains("post-dump notification"), "{msg}");
    let before = count(&dir.path().join("count"));
    // Counting on; then killed and reaped (the victim is our child).
    assert_counts_on(pid, &dir.path().join("count"), before);
    drop(victim);
}

/// The reason of a refusal is in `cr_errmsg` and is the log's last line: an option
/// stasis does not implement, a request it does not serve, and the library's refusal.
#[test]
fn refusals_carry_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let images = File::open(dir.path()).unwrap();
    let base = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        log_file: Some("dump.log".into()),
        pid: Some(i32::MAX - 1),
        ..Default::default()
    };
    let cases = [
        (
            CriuReqType::Dump,
            CriuOpts {
                lazy_pages: Some(true),
                ..base.clone()
            },
            "lazy_pages: ",
        ),
        (
            CriuReqType::Dump,
            CriuOpts {
                cgroup_props: Some("memory: [memory.max]".into()),
                ..base.clone()
            },
            "cgroup_props: ",
        ),
        (CriuReqType::PreDump, base.clone(), "2147483646"),
        (CriuReqType::Dump, base.clone(), "2147483646"),
    ];
    for (kind, opts, reason) in cases {
        let mut s = Session::start();
        let (resp, _) = s.call(&req(kind, Some(opts)));
        s.finish();
        assert!(!resp.success);
        let msg = resp.cr_errmsg.unwrap();
        assert!(msg.contains(reason), "{msg:?} lacks {reason:?}");
        if kind == CriuReqType::Dump {
            let log = std::fs::read_to_string(dir.path().join("dump.log")).unwrap();
            let last = log.lines().last().unwrap();
            assert!(last.ends_with(&format!("Error (stasis): {msg}")), "{last}");
        }
    }
}

#[test]
fn command_line_dump_and_restore() {
    if !privileged("command_line_dump_and_restore") {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let (file, images) = (dir.path().join("count"), dir.path().join("images"));
    let dir_arg = images.to_str().unwrap();
    let pid_arg = pid.to_string();
    criu(&[
        "dump", "-t", &pid_arg, "-D", dir_arg, "-o", "dump.log", "-v4",
    ])
    .unwrap();
    reap(victim);
    let dumped = count(&file);
    criu(&[
        "restore",
        "-d",
        "-D",
        dir_arg,
        "-o",
        "restore.log",
        "--restore-sibling",
    ])
    .unwrap();
    assert_counts_on(pid, &file, dumped);
}

/// `criu pre-dump`, then `criu dump --prev-images-dir ../pre --track-mem`, then restore:
/// the counter counts on from the dump.
#[test]
fn command_line_pre_dump_then_dump() {
    let test = "command_line_pre_dump_then_dump";
    if !privileged(test) || !tracking(test) {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let file = dir.path().join("count");
    let (pre, last) = chain_dirs(dir.path());
    let pid_arg = pid.to_string();
    criu(&["pre-dump", "-t", &pid_arg, "-D", pre.to_str().unwrap()]).unwrap();
    criu(&[
        "dump",
        "-t",
        &pid_arg,
        "-D",
        last.to_str().unwrap(),
        "--prev-images-dir",
        "../pre",
        "--track-mem",
    ])
    .unwrap();
    reap(victim);
    let dumped = count(&file);
    criu(&[
        "restore",
        "-d",
        "-D",
        last.to_str().unwrap(),
        "--restore-sibling",
    ])
    .unwrap();
    assert_counts_on(pid, &file, dumped);
}
