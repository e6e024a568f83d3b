//! The command line itself: exit codes, `check` output, `inspect --json`.

mod common;

use common::{Start, TempDir};

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["dump"],
        &["dump", "-D", "/nonexistent/img"],
        &["dump", "-t", "not-a-pid", "-D", "/nonexistent/img"],
        &[
            "dump",
            "-t",
            "1",
            "-D",
            "/nonexistent/img",
            "--no-such-flag",
        ],
        &["restore"],
        &["restore", "-D"],
        &["inspect"],
    ];
    for args in cases {
        let out = common::stasis(args);
        assert_eq!(
            out.code(),
            Some(2),
            "stasis {args:?}: expected exit 2, got {:?}\nstderr: {}",
            out.status,
            out.stderr
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "stasis {args:?}: usage error without a message"
        );
    }
}

#[test]
fn help_exits_0() {
    for args in [&["--help"][..], &["dump", "--help"], &["restore", "--help"]] {
        let out = common::stasis(args);
        assert_eq!(
            out.code(),
            Some(0),
            "stasis {args:?}: {:?}\n{}",
            out.status,
            out.stderr
        );
        assert!(
            out.stdout.contains("Usage"),
            "stasis {args:?} printed no usage:\n{}",
            out.stdout
        );
    }
}

#[test]
fn dump_of_missing_pid_fails() {
    let _serial = common::serial();
    require_privileged!("dump_of_missing_pid_fails");
    let tmp = TempDir::new("nopid");
    // A pid that just exited and was reaped: free unless reused in between.
    let mut gone = common::spawn_logged(
        std::process::Command::new("true").current_dir(tmp.path()),
        &tmp.join("log"),
    );
    gone.wait_exit(common::EXIT_TIMEOUT);
    let out = common::dump(gone.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a pid that does not exist");
    assert!(
        msg.contains(&gone.pid.to_string()),
        "message does not name pid {}: {msg}",
        gone.pid
    );
    assert!(
        common::find_inventories(tmp.path()).is_empty(),
        "an image was written"
    );
}

#[test]
fn check_passes_with_ok_lines() {
    if common::euid() != 0 {
        return common::skip("check_passes_with_ok_lines", "needs root");
    }
    let out = common::stasis(&["check"]);
    assert_eq!(
        out.code(),
        Some(0),
        "stasis check failed on this machine:\n{}{}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "stasis check printed nothing");
    for l in &lines {
        let optional_missing = l.starts_with("MISSING ") && l.contains("(optional)");
        assert!(
            l.starts_with("OK ") || optional_missing,
            "a required feature is missing: {l:?}\n{}",
            out.stdout
        );
    }
}

#[test]
fn inspect_json_describes_the_image() {
    let _serial = common::serial();
    require_privileged!("inspect_json_describes_the_image");
    let tmp = TempDir::new("inspect");
    let mut victim = common::spawn_victim("memory", &["-s", "1"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &["-R"]).assert_ok("stasis dump -R");

    let out = common::stasis(&["inspect".as_ref(), img.as_os_str(), "--json".as_ref()]);
    out.assert_ok("stasis inspect --json");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e}):\n{}", out.stdout));
    for key in ["inventory", "processes"] {
        assert!(json.get(key).is_some(), "no \"{key}\" in:\n{json:#}");
    }
    assert!(
        mentions(&json, victim.pid),
        "pid {} appears nowhere in:\n{json:#}",
        victim.pid
    );

    let out = common::stasis(&["inspect".as_ref(), img.as_os_str()]);
    out.assert_ok("stasis inspect");
    assert!(
        out.stdout.contains(&victim.pid.to_string()),
        "inspect does not show pid {}:\n{}",
        victim.pid,
        out.stdout
    );

    victim.go_and_expect_pass();
}

/// Whether `v` holds the number `pid` anywhere.
fn mentions(v: &serde_json::Value, pid: i32) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_i64() == Some(pid.into()),
        serde_json::Value::Array(a) => a.iter().any(|x| mentions(x, pid)),
        serde_json::Value::Object(o) => o.values().any(|x| mentions(x, pid)),
        _ => false,
    }
}
