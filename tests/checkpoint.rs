//! The checkpoint store end to end (`stasis checkpoint`, `restore -D STORE`, `gc`,
//! `inspect STORE`) on real programs: a python counter checkpointed on a schedule and
//! restored at its latest and at an older checkpoint (counter values in order), the
//! `memory` victim checkpointed incrementally and gc'd (the first checkpoint, taken with
//! the tracking armed, and every kept checkpoint restore and verify memory and maps), a
//! `stasis checkpoint` killed mid-dump (the store stays usable), a damaged latest checkpoint (restore falls back to the one before), and
//! the Prometheus metrics file.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, Status, TempDir};

/// Counts every 50 ms in a 200 000-entry dict (so a checkpoint has memory to store)
/// and writes "count ok pid" to argv[1]; ok: the dict's sum still matches the count.
const PY_COUNTER: &str = r#"
import os, sys, time
path = sys.argv[1]
d = {i: i * 3 for i in range(200000)}
base = sum(d.values())
n = 0
while True:
    n += 1
    d[n % 200000] += 1
    ok = sum(d.values()) == base + n
    with open(path + ".tmp", "w") as f:
        f.write(f"{n} {ok} {os.getpid()}\n")
    os.rename(path + ".tmp", path)
    time.sleep(0.05)
"#;

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn python() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the kernel tracks written pages (else every checkpoint is a full one; the
/// tests then say so and check the rest).
fn tracking(test: &str) -> bool {
    let out = common::stasis(&["check"]);
    let ok =
        (out.stdout.lines()).any(|l| l.starts_with("OK") && l.contains("UFFD_FEATURE_WP_ASYNC"));
    if !ok {
        eprintln!("NOTE {test}: no userfaultfd async write-protect: full checkpoints only");
    }
    ok
}

/// Polls `f` every 20 ms until it returns Some, or panics after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        common::sleep_ms(20);
    }
}

/// (count, ok, pid) of the python counter.
fn state(path: &Path) -> Option<(u64, bool, i32)> {
    let text = fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()? == "True",
        it.next()?.parse().ok()?,
    ))
}

fn start_counter(tmp: &TempDir) -> Proc {
    start_counter_with(tmp, "")
}

/// [`start_counter`] running `prelude` (python, after `import os`) first.
fn start_counter_with(tmp: &TempDir, prelude: &str) -> Proc {
    let st = tmp.join("state");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(format!("import os\n{prelude}{PY_COUNTER}"))
        .arg(&st)
        .current_dir(tmp.path());
    let py = common::spawn_logged(&mut cmd, &tmp.join("python.log"));
    wait_for("the counter to start", Duration::from_secs(60), || {
        state(&st).filter(|s| s.0 >= 5)
    });
    py
}

/// Kills `p` and reaps it (the original, or a restored one).
fn end(mut p: Proc) {
    p.signal(libc::SIGKILL);
    assert_eq!(
        p.wait_exit(common::EXIT_TIMEOUT),
        Status::Signaled(libc::SIGKILL)
    );
}

/// `stasis restore -D store -d [--checkpoint N]`: the restored process and what the
/// restore printed.
fn restore(store: &Path, checkpoint: Option<u32>, log: &Path) -> (Proc, String) {
    let pidfile = store.with_extension("pid");
    let _ = fs::remove_file(&pidfile);
    let n = checkpoint.map(|n| n.to_string());
    let mut args = vec!["restore", "-D", s(store), "-d", "--pidfile", s(&pidfile)];
    if let Some(n) = &n {
        args.extend(["--checkpoint", n]);
    }
    let out = common::stasis(&args);
    out.assert_ok("restore from the store");
    let pid = fs::read_to_string(&pidfile).expect("pidfile");
    let pid = pid.trim().parse().expect("pid");
    (Proc::adopt(pid, log), out.stderr.clone())
}

/// The numbers of the checkpoints in `store`, oldest first.
fn checkpoints(store: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = fs::read_dir(store)
        .expect("read store")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    out
}

/// `stasis inspect STORE --json`: (seq, parent, verified) of each checkpoint.
fn inspect(store: &Path) -> Vec<(u64, Option<u64>, bool)> {
    inspect_with(&["inspect", s(store), "--json"])
}

fn inspect_keyed(store: &Path, key: &Path) -> Vec<(u64, Option<u64>, bool)> {
    inspect_with(&["inspect", s(store), "--json", "--decrypt-key", s(key)])
}

fn inspect_with(args: &[&str]) -> Vec<(u64, Option<u64>, bool)> {
    let out = common::stasis(args);
    out.assert_ok("inspect STORE");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    let rows = v.as_array().expect("an array").iter();
    rows.map(|c| {
        (
            c["seq"].as_u64().expect("seq"),
            c["parent"].as_u64(),
            c["verified"].as_bool().expect("verified"),
        )
    })
    .collect()
}

/// The samples of a Prometheus text file, each checked to follow its HELP and TYPE.
fn metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(path).expect("metrics file");
    let (mut out, mut typed) = (BTreeMap::new(), None::<String>);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().expect("name").to_string();
            assert!(matches!(it.next(), Some("gauge" | "counter")), "{line}");
            typed = Some(name);
        } else if !line.starts_with("# HELP ") {
            let (name, value) = line.split_once(' ').expect("name value");
            assert_eq!(
                typed.as_deref(),
                Some(name),
                "sample without its TYPE: {line}"
            );
            out.insert(name.to_string(), value.parse().expect("a number"));
        }
    }
    out
}

#[test]
fn scheduled_checkpoints_restore_latest_and_older() {
    let _serial = common::serial();
    require_privileged!("scheduled_checkpoints_restore_latest_and_older");
    if !python() {
        return common::skip("scheduled_checkpoints", "python3 is not installed");
    }
    let tmp = TempDir::new("ckpt-schedule");
    let (store, prom, json) = (tmp.join("store"), tmp.join("m.prom"), tmp.join("s.json"));
    let py = start_counter(&tmp);
    let mut cmd = common::stasis_cmd(&[
        "checkpoint",
        "-t",
        &py.pid.to_string(),
        "-D",
        s(&store),
        "--every",
        "1s",
        "--keep",
        "2",
        "--compress",
        "lz4",
        "--metrics-file",
        s(&prom),
        "--stats-json",
        s(&json),
    ]);
    let mut sched = common::start(&mut cmd);
    wait_for("4 checkpoints", Duration::from_secs(60), || {
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&json).ok()?).ok()?;
        (v["checkpoints"].as_array()?.len() >= 4).then_some(())
    });
    common::kill(sched.pid(), libc::SIGTERM).expect("SIGTERM the schedule");
    let out = sched.finish(common::STASIS_TIMEOUT);
    out.assert_ok("the checkpoint schedule");
    assert!(out.stderr.contains("SIGTERM"), "{}", out.stderr);

    // Figures: every checkpoint in the JSON, the metrics file parsed.
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json).expect("json")).expect("stats json");
    let all = v["checkpoints"].as_array().expect("checkpoints");
    for c in all {
        assert!(c["frozen_s"].as_f64().expect("frozen_s") > 0.0, "{c}");
        assert!(c["bytes_written"].as_u64().expect("bytes") > 0, "{c}");
        assert!(c["compression_ratio"].as_f64().expect("ratio") > 1.0, "{c}");
        assert!(c["duration_s"].as_f64().expect("duration") > 0.0, "{c}");
    }
    let incremental = tracking("scheduled_checkpoints");
    assert_eq!(all[1]["incremental"], incremental, "the second checkpoint");
    let m = metrics(&prom);
    assert!(m["stasis_checkpoints_total"] >= 4.0, "{m:?}");
    assert_eq!(m["stasis_checkpoint_stored"], 2.0, "{m:?}");
    assert_eq!(m["stasis_checkpoint_failures_total"], 0.0, "{m:?}");
    assert!(m["stasis_checkpoint_last_compression_ratio"] > 1.0, "{m:?}");
    assert!(m["stasis_checkpoint_last_frozen_seconds"] > 0.0, "{m:?}");

    // Two kept, the older one made whole by gc, both verified.
    let kept = checkpoints(&store);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let rows = inspect(&store);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.2), "{rows:?}");
    assert_eq!(
        rows[0].1, None,
        "the oldest kept has no parent left: {rows:?}"
    );
    if incremental {
        assert_eq!(rows[1].1, Some(rows[0].0), "{rows:?}");
    }

    // Latest, then the older one: the counter comes back lower.
    let (pid, st, log) = (py.pid, tmp.join("state"), tmp.join("python.log"));
    end(py);
    let (latest, said) = restore(&store, None, &log);
    assert_eq!(latest.pid, pid);
    assert!(
        said.contains(&format!("checkpoint {:06}", kept[1])),
        "{said}"
    );
    let at_latest = wait_for("the restored counter", Duration::from_secs(10), || {
        state(&st).filter(|s| s.2 == pid && s.1)
    });
    common::sleep_ms(300);
    let later = state(&st).expect("state");
    assert!(
        later.0 > at_latest.0 && later.1,
        "the counter goes on: {later:?}"
    );
    end(latest);
    let _ = fs::remove_file(&st);
    let (older, _) = restore(&store, Some(kept[0]), &log);
    let at_older = wait_for("the older counter", Duration::from_secs(10), || state(&st));
    assert!(at_older.1, "dict checksum after the older restore");
    assert!(
        at_older.0 < at_latest.0,
        "checkpoint {} gives {} but the later {} gave {}",
        kept[0],
        at_older.0,
        kept[1],
        at_latest.0
    );
    end(older);
}

/// Takes one checkpoint of `pid` into `store` with `extra` flags.
fn checkpoint(pid: i32, store: &Path, extra: &[&str]) -> String {
    let pid = pid.to_string();
    let mut args = vec!["checkpoint", "-t", &pid, "-D", s(store)];
    args.extend_from_slice(extra);
    let out = common::stasis(&args);
    out.assert_ok("checkpoint");
    out.stderr.clone()
}

/// The `memory` victim (8 MiB of random data), which checks its memory and its
/// `/proc/self/maps` after go, and keeps its files to be restored more than once.
fn memory_victim(tmp: &TempDir) -> Proc {
    let mut v = common::spawn_victim("memory", &["-s", "8", "-k"], tmp.path());
    assert_eq!(v.wait_ready(), common::Start::Ready);
    v
}

#[test]
fn gc_keeps_every_kept_chain_restorable() {
    let _serial = common::serial();
    require_privileged!("gc_keeps_every_kept_chain_restorable");
    let tmp = TempDir::new("ckpt-gc");
    let store = tmp.join("store");
    let key = tmp.join("key");
    common::stasis(&["keygen", s(&key)]).assert_ok("keygen");
    let v = memory_victim(&tmp);
    let incremental = tracking("gc_keeps_every_kept_chain_restorable");
    let sealed = ["--compress", "zstd", "--encrypt-key", s(&key)];
    for i in 0..4 {
        let said = checkpoint(v.pid, &store, &sealed);
        assert_eq!(said.contains("incremental"), incremental && i > 0, "{said}");
    }
    let (log, pid) = (v.log.clone(), v.pid);
    end(v);
    // The first checkpoint, taken with the tracking armed: its maps as they were.
    let files = VictimFiles::of(tmp.path());
    restore_and_verify_keyed(&store, 1, &log, &key, pid);
    files.put_back();
    if incremental {
        let out = common::stasis(&["gc", "-D", s(&store), "--keep", "2"]);
        let why = out.assert_failed("gc of an encrypted store without its key");
        assert!(why.contains("--encrypt-key"), "{why}");
        assert_eq!(checkpoints(&store).len(), 4, "a refused gc removes nothing");
    }
    let out = common::stasis(&[
        "gc",
        "-D",
        s(&store),
        "--keep",
        "2",
        "--encrypt-key",
        s(&key),
    ]);
    out.assert_ok("gc");
    assert_eq!(out.stderr.contains("merged"), incremental, "{}", out.stderr);
    let rows = inspect_keyed(&store, &key);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.2) && rows[0].1.is_none(), "{rows:?}");
    let kept = checkpoints(&store);
    assert_eq!(kept, vec![3, 4]);
    for n in kept {
        restore_and_verify_keyed(&store, n, &log, &key, pid);
        files.put_back();
    }
}

/// The `memory` victim's files (contents and mtime): a restored victim writes its
/// shared file, which must be as dumped for the next restore.
struct VictimFiles(Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)>);

impl VictimFiles {
    fn of(dir: &Path) -> VictimFiles {
        let names = fs::read_dir(dir)
            .expect("read the victim's directory")
            .flatten();
        let files = names.map(|e| e.path()).filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("memory-") && p.is_file()
        });
        VictimFiles(
            files
                .map(|p| {
                    let mtime = fs::metadata(&p).and_then(|m| m.modified()).expect("mtime");
                    let bytes = fs::read(&p).expect("read a victim file");
                    (p, bytes, mtime)
                })
                .collect(),
        )
    }

    /// Writes the contents back in place (the same inode) and sets the mtime again.
    fn put_back(&self) {
        use std::os::unix::fs::FileExt;
        for (path, bytes, mtime) in &self.0 {
            let f = fs::OpenOptions::new().write(true).open(path).expect("open");
            f.write_all_at(bytes, 0).expect("write back");
            f.set_modified(*mtime).expect("set mtime");
        }
    }
}

/// Restores checkpoint `n` of the encrypted `store` and lets the `memory` victim verify
/// its memory and maps. Its log grew since the dump (the victim is restored more than
/// once): open files are not checked.
fn restore_and_verify_keyed(store: &Path, n: u32, log: &Path, key: &Path, pid: i32) {
    let pidfile = store.with_extension("pid");
    let n = n.to_string();
    let args = [
        "restore",
        "-D",
        s(store),
        "-d",
        "--pidfile",
        s(&pidfile),
        "--checkpoint",
        &n,
        "--decrypt-key",
        s(key),
        "--skip-file-check",
    ];
    common::stasis(&args).assert_ok("restore a kept checkpoint");
    Proc::adopt(pid, log).go_and_expect_pass();
}

/// The restored counter counts on with its dict intact; then it is ended.
fn counts_on(p: Proc, st: &Path) {
    let first = wait_for("the restored counter", Duration::from_secs(10), || {
        state(st).filter(|s| s.2 == p.pid)
    });
    let later = wait_for("the counter to go on", Duration::from_secs(10), || {
        state(st).filter(|s| s.0 > first.0)
    });
    assert!(later.1, "the dict checksum after the restore: {later:?}");
    end(p);
}

#[test]
fn killed_checkpoint_leaves_the_store_usable() {
    let _serial = common::serial();
    require_privileged!("killed_checkpoint_leaves_the_store_usable");
    if !python() {
        return common::skip("killed_checkpoint_leaves_the_store_usable", "no python3");
    }
    let tmp = TempDir::new("ckpt-crash");
    let store = tmp.join("store");
    // 256 MiB more to write: a full checkpoint long enough to be caught at it (an
    // incremental one of this counter is over within a poll).
    let v = start_counter_with(&tmp, "ballast = os.urandom(256 << 20)\n");
    let pid = v.pid.to_string();
    let mut cmd = common::stasis_cmd(&["checkpoint", "-t", &pid, "-D", s(&store)]);
    let mut run = common::start(&mut cmd);
    // Killed while it writes: as soon as its temporary checkpoint appears.
    let tmp_ck = store.join(".tmp-000001");
    wait_for(
        "the checkpoint to start writing",
        Duration::from_secs(30),
        || tmp_ck.exists().then_some(()),
    );
    run.kill();
    let _ = run.finish(common::STASIS_TIMEOUT);
    assert_eq!(checkpoints(&store), Vec::<u32>::new(), "none is listed");
    assert_eq!(inspect(&store), vec![]);
    wait_for("the counter to run again", Duration::from_secs(10), || {
        (common::proc_state(v.pid) != Some('t')).then_some(())
    });
    // The next writer clears the leftovers and numbers on.
    let said = checkpoint(v.pid, &store, &[]);
    assert!(!tmp_ck.exists(), "{said}");
    assert_eq!(checkpoints(&store), vec![1], "{said}");
    let log = tmp.join("python.log");
    end(v);
    let (p, _) = restore(&store, Some(1), &log);
    counts_on(p, &tmp.join("state"));
}

#[test]
fn a_damaged_latest_checkpoint_falls_back_to_the_previous() {
    let _serial = common::serial();
    require_privileged!("a_damaged_latest_checkpoint_falls_back_to_the_previous");
    if !python() {
        return common::skip("a_damaged_latest_checkpoint", "no python3");
    }
    let tmp = TempDir::new("ckpt-fallback");
    let store = tmp.join("store");
    let v = start_counter(&tmp);
    for _ in 0..3 {
        checkpoint(v.pid, &store, &[]);
    }
    // Flip the last byte of the latest's mm record (inside its checksummed payload).
    let image = store.join("000003").join("image");
    let mm = image.join(format!("mm-{}.img", v.pid));
    let mut bytes = fs::read(&mm).expect("mm record");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&mm, bytes).expect("write mm record");
    let verified: Vec<bool> = inspect(&store).iter().map(|r| r.2).collect();
    assert_eq!(verified, vec![true, true, false]);
    // The same, named by a relative path (the view's links to plain images once dangled).
    let mut cmd = common::stasis_cmd(&["inspect", "store", "--json"]);
    let out = common::start(cmd.current_dir(tmp.path())).finish(common::STASIS_TIMEOUT);
    out.assert_ok("inspect of a store named by a relative path");
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    let rel: Vec<bool> = (rows.as_array().expect("rows").iter())
        .map(|c| c["verified"].as_bool().expect("verified"))
        .collect();
    assert_eq!(rel, vec![true, true, false], "relative store path");
    let log = tmp.join("python.log");
    end(v);
    let (p, said) = restore(&store, None, &log);
    assert!(
        said.contains("checkpoint 000003 fails verification"),
        "{said}"
    );
    assert!(
        said.contains("restoring checkpoint 000002 instead"),
        "{said}"
    );
    counts_on(p, &tmp.join("state"));
}
