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

/// A dump and a restore each print one summary line, off a terminal no progress bar, and
/// `--stats-json` writes the same figures; the page count matches the pages file.
#[test]
fn summary_line_and_stats_json() {
    let _serial = common::serial();
    require_privileged!("summary_line_and_stats_json");
    let tmp = TempDir::new("stats");
    let mut victim = common::spawn_victim("memory", &["-s", "8"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let (img, dump_json, restore_json) = (tmp.join("img"), tmp.join("d.json"), tmp.join("r.json"));
    let out = common::dump(victim.pid, &img, &["--stats-json", path_str(&dump_json)]);
    out.assert_ok("stasis dump --stats-json");
    victim.wait_exit(common::EXIT_TIMEOUT);
    let d = read_json(&dump_json);
    let pages = d["pages_stored"].as_u64().expect("pages_stored");
    assert!(
        pages >= 2048,
        "8 MiB of random data but {pages} pages:\n{d:#}"
    );
    assert_eq!(d["bytes_stored"].as_u64(), Some(pages * 4096), "{d:#}");
    assert!(secs(&d, "memory_s") <= secs(&d, "frozen_s"), "{d:#}");
    assert!(secs(&d, "frozen_s") <= secs(&d, "total_s"), "{d:#}");
    assert!(d["mb_per_s"].as_f64() > Some(0.0), "{d:#}");
    let size = std::fs::metadata(img.join(format!("pages-{}.img", victim.pid)))
        .expect("stat the pages file")
        .len();
    assert_eq!(
        size,
        4096 + pages * 4096,
        "pages file size vs {pages} pages"
    );
    let expected = format!("stasis: dumped pid {}: {pages} pages (", victim.pid);
    assert_one_line(
        &out.stderr,
        &expected,
        &["MB/s", "zero pages skipped", "frozen "],
    );

    let out = common::stasis(&[
        "restore",
        "-D",
        path_str(&img),
        "-d",
        "--stats-json",
        path_str(&restore_json),
    ]);
    out.assert_ok("stasis restore -d --stats-json");
    let mut restored = common::Proc::adopt(victim.pid, &victim.log);
    let r = read_json(&restore_json);
    assert_eq!(r["pages"].as_u64(), Some(pages), "{r:#}");
    assert_eq!(r["bytes"].as_u64(), Some(pages * 4096), "{r:#}");
    assert!(
        secs(&r, "load_s") + secs(&r, "memory_s") <= secs(&r, "total_s"),
        "{r:#}"
    );
    let expected = format!("stasis: restored pid {}: {pages} pages (", victim.pid);
    assert_one_line(&out.stderr, &expected, &["MB/s", "running after"]);
    restored.go_and_expect_pass();
}

/// `--quiet` prints nothing on success.
#[test]
fn quiet_dump_prints_nothing() {
    let _serial = common::serial();
    require_privileged!("quiet_dump_prints_nothing");
    let tmp = TempDir::new("quiet");
    let mut victim = common::spawn_victim("memory", &["-s", "1"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let out = common::dump(victim.pid, &tmp.join("img"), &["-R", "-q"]);
    out.assert_ok("stasis dump -R -q");
    assert_eq!(out.stderr, "", "--quiet printed something");
    victim.go_and_expect_pass();
}

/// On a terminal (a pty from script(1)), `--progress always` draws the bar, then the
/// summary line follows.
#[test]
fn progress_bar_on_a_terminal() {
    let _serial = common::serial();
    require_privileged!("progress_bar_on_a_terminal");
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return common::skip("progress_bar_on_a_terminal", "script(1) is not installed");
    }
    let tmp = TempDir::new("progress");
    let mut victim = common::spawn_victim("memory", &["-s", "16"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let cmd = format!(
        "{} dump -R -t {} -D {} --progress always",
        common::STASIS,
        victim.pid,
        tmp.join("img").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dump on a pty failed:\n{text}");
    assert!(text.contains("stasis: dumping pages ["), "no bar:\n{text}");
    let summary = text.find("stasis: dumped pid").expect("no summary line");
    assert!(
        text.rfind("dumping pages [")
            .is_some_and(|bar| bar < summary),
        "the bar comes after the summary:\n{text}"
    );
    victim.go_and_expect_pass();
}

/// A large address space is written into several pages files at once, one per CPU (up to
/// four): their sizes add up to the pages stored, and the restore reads each run from its
/// own file (the victim verifies every byte).
#[test]
fn large_address_space_is_striped() {
    let _serial = common::serial();
    require_privileged!("large_address_space_is_striped");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return common::skip(
            "large_address_space_is_striped",
            "one CPU: one pages file is written",
        );
    }
    let tmp = TempDir::new("striped");
    let mut victim = common::spawn_victim("memory", &["-s", "96"], tmp.path());
    assert_eq!(victim.wait_ready(), Start::Ready);
    let (img, json) = (tmp.join("img"), tmp.join("d.json"));
    let out = common::dump(victim.pid, &img, &["--stats-json", path_str(&json)]);
    out.assert_ok("stasis dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    let pages = read_json(&json)["pages_stored"]
        .as_u64()
        .expect("pages_stored");
    let files: Vec<u64> = (0..4)
        .map(|i| match i {
            0 => format!("pages-{}.img", victim.pid),
            i => format!("pages-{}.{i}.img", victim.pid),
        })
        .map_while(|name| std::fs::metadata(img.join(name)).ok())
        .map(|m| m.len())
        .collect();
    assert_eq!(files.len(), cpus.min(4), "pages files {files:?}");
    assert!(
        files.iter().all(|&len| len > 4096),
        "an empty stripe: {files:?}"
    );
    let data: u64 = files.iter().map(|len| len - 4096).sum();
    assert_eq!(data, pages * 4096, "pages files {files:?} vs {pages} pages");
    let pid = common::restore_detached(&img).unwrap_or_else(|out| panic!("restore: {out:?}"));
    assert_eq!(pid, victim.pid);
    common::Proc::adopt(pid, &victim.log).go_and_expect_pass();
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("--stats-json wrote no {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn secs(v: &serde_json::Value, key: &str) -> f64 {
    let s = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v:#}"));
    assert!(s >= 0.0, "{key} is negative in {v:#}");
    s
}

/// `stderr` is exactly one line, starting with `start` and holding every one of `words`.
fn assert_one_line(stderr: &str, start: &str, words: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one summary line:\n{stderr}");
    assert!(
        lines[0].starts_with(start),
        "{:?} does not start with {start:?}",
        lines[0]
    );
    for w in words {
        assert!(lines[0].contains(w), "{:?} lacks {w:?}", lines[0]);
    }
}

/// CRIU's option names are accepted on both sides (so scripts written for CRIU run
/// unchanged): an accepted flag gets past the command line (the missing image or pid fails
/// with exit 1), a flag stasis does not implement is a usage error (exit 2) naming it.
#[test]
fn criu_flags_are_accepted_or_refused_by_name() {
    let both: &[&[&str]] = &[
        &["--manage-cgroups=ignore"],
        &["--manage-cgroups"],
        &[
            "--manage-cgroups=full",
            "--cgroup-root",
            "/x",
            "--cgroup-root",
            "cpu:/y",
        ],
        &["--cgroup-yard", "/y", "--cgroup-dump-controller", "cpu"],
        &["--network-lock", "nftables"],
        &["--network-lock", "iptables"],
        &["--network-lock", "skip"],
        &["--ext-mount-map", "auto"],
        &["-M", "auto"],
        &["--force-irmap", "--irmap-scan-path", "/zdtm/static"],
        &["--tcp-established", "--file-locks", "--ext-unix-sk"],
        &["-x"],
        &["--link-remap", "--ghost-limit", "8M", "--skip-in-flight"],
        &["--shell-job", "--tcp-close"],
        &["--evasive-devices"],
        &["--external", "mnt[]"],
        &["--external", "netdev[a]:b"],
    ];
    let refused: &[(&[&str], &str)] = &[
        (&["--manage-cgroups=loose"], "--manage-cgroups=loose"),
        (&["--cgroup-props", "x"], "--cgroup-props"),
        (&["--network-lock", "ebtables"], "--network-lock ebtables"),
        (&["--ext-mount-map", "/a:b"], "--ext-mount-map /a:b"),
        (&["--external", "dev[a]:b"], "--external dev[a]:b"),
        (&["--external", "mnt[]:q"], "--external mnt[]:q"),
    ];
    let dump = ["dump", "-t", "999999", "-D", "/nonexistent/stasis-img"];
    let restore = ["restore", "-D", "/nonexistent/stasis-img"];
    fn with(base: &[&str], extra: &[&str]) -> (common::Output, String) {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        (common::stasis(&args), args.join(" "))
    }
    for flags in both {
        for base in [&dump[..], &restore[..]] {
            let (out, args) = with(base, flags);
            assert_eq!(out.code(), Some(1), "stasis {args}: {}", out.stderr);
        }
    }
    for (flags, name) in refused {
        for base in [&dump[..], &restore[..]] {
            let (out, args) = with(base, flags);
            assert_eq!(out.code(), Some(2), "stasis {args}: {}", out.stderr);
            assert!(
                out.stderr.contains(name),
                "stasis {args} does not name {name}: {}",
                out.stderr
            );
        }
    }
}

/// `stasis network-unlock` needs to be told which locks: without -D, --all-stale or
/// --list it is a usage error; --list runs anywhere (it lists what it finds).
#[test]
fn network_unlock_needs_a_choice() {
    let out = common::stasis(&["network-unlock"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--all-stale"), "{}", out.stderr);
    let out = common::stasis(&["network-unlock", "--list", "--all-stale"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
}
