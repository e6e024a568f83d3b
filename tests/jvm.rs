//! The JVM (OpenJDK 17): a Java program holding a ~200 MiB heap of objects it checks
//! itself (`tests/jvm/Heap.java`, compiled here with javac) is checkpointed three times
//! in a row — `dump --compress zstd`, `dump --compress lz4`, and a plain checkpoint into
//! a store — and restored with `-d` after each: its count must go on from where it was,
//! every object must still hold what it was given, its worker threads must still run,
//! and the zstd image must be at most half the size of the plain one. The JVM is a hard
//! case: ~20 threads, a perf data file mapped shared (`/tmp/hsperfdata_*`), SIGSEGV-based
//! safepoints and a JIT code cache.

mod common;

use common::{wait_for, which, Proc, Status, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Heap size the program fills, MiB.
const HEAP_MIB: &str = "200";

/// (count, ok, pid, live workers) from the program's state file.
fn read_state(path: &Path) -> Option<(u64, bool, i32, u32)> {
    let text = fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()? == "true",
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Compiles Heap.java into `dir`; Err(javac's output) if it fails.
fn compile(dir: &Path) -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jvm/Heap.java");
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir)
        .arg(&src)
        .output()
        .map_err(|e| format!("javac: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Waits until the program has counted `past` and checks what it says of itself.
fn wait_counting(state: &Path, past: u64, pid: i32, log: &Path) -> u64 {
    let (count, ok, at, workers) = wait_for(
        &format!("the JVM to count past {past}"),
        Duration::from_secs(120),
        || read_state(state).filter(|s| s.0 > past),
    );
    let log = fs::read_to_string(log).unwrap_or_default();
    assert!(
        ok,
        "the heap no longer holds what it was given; log:\n{log}"
    );
    assert_eq!(at, pid, "the JVM reports another pid; log:\n{log}");
    assert_eq!(workers, 3, "worker threads stopped; log:\n{log}");
    count
}

/// Total bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).expect("read image dir").flatten() {
        let meta = e.metadata().expect("stat");
        total += match meta.is_dir() {
            true => du(&e.path()),
            false => meta.len(),
        };
    }
    total
}

/// Dumps `jvm` (killing it) with `how`, restores it with -d, checks that the count goes
/// on; returns the restored JVM and the image's size.
fn round(jvm: &mut Proc, state: &Path, img: &Path, how: &[&str]) -> (Proc, u64) {
    let before = read_state(state).expect("state file").0;
    match how.first() {
        Some(&"checkpoint") => {
            let pid = jvm.pid.to_string();
            let args = [
                "checkpoint".as_ref(),
                "-t".as_ref(),
                pid.as_ref(),
                "-D".as_ref(),
                img.as_os_str(),
                "--kill".as_ref(),
            ];
            common::stasis::<&std::ffi::OsStr>(&args).assert_ok("stasis checkpoint");
        }
        _ => {
            common::dump(jvm.pid, img, how).assert_ok("stasis dump");
        }
    }
    assert_eq!(
        jvm.wait_exit(Duration::from_secs(20)),
        Status::Signaled(libc::SIGKILL)
    );
    let at_dump = read_state(state).expect("state file").0;
    assert!(at_dump >= before);
    let pid = common::restore_detached(img).unwrap_or_else(|out| panic!("restore: {out:?}"));
    assert_eq!(pid, jvm.pid, "restored under another pid");
    let restored = Proc::adopt(pid, &jvm.log);
    let after = wait_counting(state, at_dump, pid, &jvm.log);
    assert!(
        after <= at_dump + 50,
        "count jumped from {at_dump} to {after}: started over?"
    );
    (restored, du(img))
}

#[test]
fn jvm_heap_survives_compressed_and_store_checkpoints() {
    let _serial = common::serial();
    require_privileged!("jvm_heap_survives_compressed_and_store_checkpoints");
    for tool in ["java", "javac"] {
        if !which(tool) {
            let why = format!("{tool} is not installed (openjdk-17-jdk-headless)");
            return common::skip("jvm_heap_survives_compressed_and_store_checkpoints", &why);
        }
    }
    let tmp = TempDir::new("jvm");
    compile(tmp.path()).unwrap_or_else(|e| panic!("javac failed:\n{e}"));
    let state = tmp.join("state");
    let log = tmp.join("java.log");
    let mut jvm = common::spawn_logged(
        Command::new("java")
            .args(["-Xms300m", "-Xmx512m", "-cp"])
            .arg(tmp.path())
            .args(["Heap", HEAP_MIB])
            .arg(&state)
            .current_dir(tmp.path()),
        &log,
    );
    wait_counting(&state, 3, jvm.pid, &log);
    let mut sizes = Vec::new();
    let rounds: [(&str, &[&str]); 3] = [
        ("zstd", &["--compress", "zstd"]),
        ("lz4", &["--compress", "lz4"]),
        ("store", &["checkpoint"]),
    ];
    for (name, how) in rounds {
        let img: PathBuf = tmp.join(name);
        let (restored, size) = round(&mut jvm, &state, &img, how);
        eprintln!("jvm: {name} image {size} bytes");
        sizes.push(size);
        jvm = restored;
    }
    assert!(
        sizes[0] * 2 <= sizes[2],
        "zstd image {} bytes is more than half the plain one ({} bytes)",
        sizes[0],
        sizes[2]
    );
    assert!(jvm.alive(), "the JVM exited; log:\n{}", jvm.log_text());
    jvm.signal(libc::SIGKILL);
    assert_eq!(
        jvm.wait_exit(Duration::from_secs(20)),
        Status::Signaled(libc::SIGKILL)
    );
}
