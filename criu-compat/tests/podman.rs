//! podman 4.3 (over runc) in front of stasis-criu, found as `criu` first in PATH (podman
//! has no option for the CRIU path; conmon keeps PATH for the restore). A busybox counter
//! container (image imported from a rootfs tarball, no registry) is checkpointed and
//! restored (`--print-stats`: CRIU's stats files), exported and imported under another
//! name (`--export` / `--import --name`), and checkpointed with `--leave-running
//! --tcp-established`: each time the counter goes on from where it was. With CRIU at
//! `$STASIS_CRIU_BIN` (or /work/criu/criu/criu), the same container is also checkpointed
//! and restored by CRIU and both times are printed.
//!
//! The network mode is [`network`] (`$STASIS_PODMAN_NETWORK`: podman's default `bridge`,
//! netavark's veth on podman's bridge, unless `host` or `none` is given): podman passes the
//! container's network namespace as external (`net[INO]:extRootNetNS` at dump, the
//! namespace it made again as `inherit_fd extRootNetNS` at restore). Skips, saying why, without root, podman,
//! /bin/busybox or a podman that can run a container here.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stasis-criu");
const IMAGE: &str = "localhost/stasis-criu-busybox:test";
const SCRIPT: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $i; sleep 0.1; done";

/// The `--network` of the containers.
fn network() -> String {
    std::env::var("STASIS_PODMAN_NETWORK").unwrap_or_else(|_| "bridge".into())
}

/// podman with `criu` resolved in `shim` first.
struct Podman {
    shim: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.shim.display(), std::env::var("PATH").unwrap());
        Command::new("podman")
            .args(args)
            .env("PATH", path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs podman, panicking with its output if it fails; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // runc names CRIU's log ("log file: PATH"): its last line is stasis's reason.
        // runc quotes its message: the path ends before the closing quote.
        let log = (stderr.split("log file: ").nth(1))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| std::fs::read_to_string(p.trim_end_matches('"')).ok())
            .unwrap_or_default();
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{stderr}\nlog (last lines): {}",
            String::from_utf8_lossy(&out.stdout),
            log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The counter of container `name` (0 if it cannot be read).
    fn count(&self, name: &str) -> u64 {
        let out = self.run(&["exec", name, "cat", "/tmp/count"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Starts the counter container `name`, once it has counted.
    fn start(&self, name: &str) {
        self.start_with(name, &[]);
    }

    /// [`Podman::start`] with more `podman run` options.
    fn start_with(&self, name: &str, more: &[&str]) {
        let net = format!("--network={}", network());
        let run = ["run", "-d", "--name", name, &net];
        let limits = [
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ];
        let cmd = [IMAGE, "sh", "-c", SCRIPT];
        self.ok(&[&run[..], more, &limits[..], &cmd[..]].concat());
        wait_until(|| self.count(name) > 2, &format!("{name} counts"));
    }

    /// The counter goes on: above `from` now and a moment later.
    fn goes_on(&self, name: &str, from: u64) {
        wait_until(
            || self.count(name) > from,
            &format!("{name} counts on from {from}"),
        );
        let now = self.count(name);
        wait_until(|| self.count(name) > now, &format!("{name} keeps counting"));
    }
}

fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the containers (and reaps what was re-parented to the test) when dropped.
struct Cleanup<'a>(&'a Podman, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            self.0.run(&["rm", "-f", "-t", "0", name]);
        }
        while nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            .is_ok_and(|s| s.pid().is_some())
        {}
    }
}

/// A busybox rootfs tarball imported as [`IMAGE`].
fn import_image(podman: &Podman, dir: &Path) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success(), "tar of the rootfs");
    podman.ok(&["import", tar.to_str().unwrap(), IMAGE]);
}

/// Why podman cannot be used here, if it cannot.
fn unusable() -> Option<String> {
    let have = |p: &str| Path::new(p).exists();
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if !have("/bin/busybox") {
        return Some("needs /bin/busybox (busybox-static)".into());
    }
    match Command::new("podman").arg("info").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "podman info fails here: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(_) => Some("needs podman".into()),
    }
}

/// For a test that uses the imported image through stasis-criu: the test made a
/// subreaper (conmon is re-parented to it), a temporary directory and the podman of its
/// shim; `None` (with a SKIP line naming `what`) where podman cannot be used.
fn ready(what: &str) -> Option<(tempfile::TempDir, Podman)> {
    if let Some(why) = unusable() {
        println!("SKIP {what}: {why}");
        return None;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let podman = shim(&dir.path().join("shim"), BIN);
    if !podman.run(&["image", "exists", IMAGE]).status.success() {
        import_image(&podman, dir.path());
    }
    Some((dir, podman))
}

/// A directory holding `criu`, a link to `target`.
fn shim(dir: &Path, target: &str) -> Podman {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(target, dir.join("criu")).unwrap();
    Podman { shim: dir.into() }
}

/// Checkpoint then restore of `name` (stats printed); the two times (podman's whole
/// command) and the counter at the checkpoint.
fn checkpoint_and_restore(podman: &Podman, name: &str) -> (Duration, Duration, u64) {
    let t = Instant::now();
    let stats = podman.ok(&["container", "checkpoint", "--print-stats", name]);
    let dump = t.elapsed();
    let dumped = podman.count(name);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let written = &stats["container_statistics"][0]["criu_statistics"]["pages_written"];
    assert!(written.as_u64().is_some_and(|p| p > 0), "stats: {stats}");
    let t = Instant::now();
    let stats = podman.ok(&["container", "restore", "--print-stats", name]);
    let restore = t.elapsed();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let restored = &stats["container_statistics"][0]["criu_statistics"]["pages_restored"];
    assert!(restored.as_u64().is_some_and(|p| p > 0), "stats: {stats}");
    (dump, restore, dumped)
}

#[test]
fn podman_checkpoint_restore_export_import_and_leave_running() {
    if let Some(why) = unusable() {
        println!("SKIP podman checkpoint: {why}");
        return;
    }
    // conmon daemonizes: it is re-parented to the test, which reaps it.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let podman = shim(&dir.path().join("shim"), BIN);
    import_image(&podman, dir.path());
    let id = std::process::id();
    let (a, b) = (
        format!("stasis-pm-{id}"),
        format!("stasis-pm-{id}-imported"),
    );
    let _clean = Cleanup(&podman, vec![a.clone(), b.clone()]);
    podman.start(&a);

    let (dump, restore, dumped) = checkpoint_and_restore(&podman, &a);
    podman.goes_on(&a, dumped);
    println!(
        "podman with stasis-criu: checkpoint {:.0} ms, restore {:.0} ms",
        dump.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3
    );

    let export = dir.path().join("export.tar.gz");
    let export = export.to_str().unwrap();
    podman.ok(&["container", "checkpoint", "--export", export, &a]);
    let exported = podman.count(&a);
    podman.ok(&["container", "restore", "--import", export, "--name", &b]);
    podman.goes_on(&b, exported);

    podman.ok(&[
        "container",
        "checkpoint",
        "--leave-running",
        "--tcp-established",
        &b,
    ]);
    podman.goes_on(&b, podman.count(&b));

    compare_with_criu(dir.path(), id, (dump, restore));
}

/// The same container checkpointed and restored by CRIU, when it is here.
fn compare_with_criu(dir: &Path, id: u32, stasis: (Duration, Duration)) {
    let criu = std::env::var("STASIS_CRIU_BIN").unwrap_or_else(|_| "/work/criu/criu/criu".into());
    if !Path::new(&criu).exists() {
        println!("no CRIU at {criu} (STASIS_CRIU_BIN): no comparison");
        return;
    }
    let podman = shim(&dir.join("criu-shim"), &criu);
    let name = format!("stasis-pm-{id}-criu");
    let _clean = Cleanup(&podman, vec![name.clone()]);
    podman.start(&name);
    let (dump, restore, dumped) = checkpoint_and_restore(&podman, &name);
    podman.goes_on(&name, dumped);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "podman checkpoint: stasis {:.0} ms, CRIU {:.0} ms; restore: stasis {:.0} ms, CRIU {:.0} ms",
        ms(stasis.0),
        ms(dump),
        ms(stasis.1),
        ms(restore)
    );
}

/// A TCP connection from here to a server in a container on podman's bridge network
/// (`busybox nc -e cat`, an echo) survives `checkpoint --tcp-established` and `restore
/// --tcp-established`: the same socket is echoed to before and after.
#[test]
fn podman_tcp_connection_into_the_container_survives() {
    use std::io::{Read, Write};
    let Some((_dir, podman)) = ready("podman tcp") else {
        return;
    };
    let name = format!("stasis-pm-{}-tcp", std::process::id());
    let _clean = Cleanup(&podman, vec![name.clone()]);
    let server = ["/bin/busybox", "nc", "-l", "-p", "5000", "-e", "/bin/cat"];
    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
    ];
    let run = ["run", "-d", "--name", &name, "--network=bridge"];
    podman.ok(&[&run[..], &limits[..], &[IMAGE], &server[..]].concat());
    let ip = podman.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name]);
    let addr = format!("{}:5000", ip.trim());
    let mut conn = None;
    wait_until(
        || {
            conn = std::net::TcpStream::connect(&addr).ok();
            conn.is_some()
        },
        &format!("connect to {addr}"),
    );
    let mut conn = conn.unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut echo = |text: &[u8]| {
        conn.write_all(text).unwrap();
        let mut got = vec![0; text.len()];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, text);
    };
    echo(b"before\n");
    podman.ok(&["container", "checkpoint", "--tcp-established", &name]);
    podman.ok(&["container", "restore", "--tcp-established", &name]);
    echo(b"after the restore\n");
}

/// `podman container checkpoint --pre-checkpoint`, then `checkpoint --with-previous` and
/// `restore`: the container runs on after the pre-dump, the checkpoint is an incremental
/// image whose parent is the pre-dump (storing less of the processes in both than the
/// pre-dump did), and the counter goes on after the restore. CRIU cannot do this here (no
/// soft-dirty).
#[test]
fn podman_pre_checkpoint_then_checkpoint_with_previous() {
    if let Some(why) = unusable() {
        println!("SKIP podman pre-checkpoint: {why}");
        return;
    }
    if stasis::check::tracking_method().is_none() {
        println!("SKIP podman pre-checkpoint: the kernel has no dirty-page tracking stasis uses");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let podman = shim(&dir.path().join("shim"), BIN);
    import_image(&podman, dir.path());
    let name = format!("stasis-pm-pre-{}", std::process::id());
    let _clean = Cleanup(&podman, vec![name.clone()]);
    podman.start(&name);
    podman.ok(&["container", "checkpoint", "--pre-checkpoint", &name]);
    podman.goes_on(&name, podman.count(&name));
    let before = podman.count(&name);
    podman.ok(&[
        "container",
        "checkpoint",
        "--with-previous",
        "--keep",
        &name,
    ]);
    let userdata = podman.ok(&["inspect", "-f", "{{.StaticDir}}", &name]);
    let userdata = Path::new(userdata.trim());
    let (pre, full) = (
        pages_bytes(&userdata.join("pre-checkpoint/stasis-image")),
        pages_bytes(&userdata.join("checkpoint/stasis-image")),
    );
    // The checkpoint is an incremental image of the pre-dump: its chain names it.
    let (pre_dir, full_dir) = (
        userdata.join("pre-checkpoint/stasis-image"),
        userdata.join("checkpoint/stasis-image"),
    );
    let chain = stasis::image::chain::load(&full_dir).unwrap();
    let parent = chain
        .and_then(|c| c.parent)
        .expect("the checkpoint has a parent image");
    let parent_dir = full_dir.join(&parent.dir);
    assert_eq!(
        std::fs::canonicalize(&parent_dir).unwrap(),
        std::fs::canonicalize(&pre_dir).unwrap(),
        "the checkpoint's parent is {parent_dir:?}"
    );
    // A process forked since the pre-dump (the counter's `sleep`) is stored whole, and
    // one gone since is not needed. The shell rewrites a few pages each time round, so
    // the checkpoint stores less of it than the pre-dump did (which holds its start-up
    // pages too): a checkpoint that found no tracker (it once looked in the container's
    // network namespace) stored it all again, as much as the pre-dump or more.
    let in_both = |files: &[(String, u64)], other: &[(String, u64)]| -> u64 {
        (files.iter())
            .filter(|f| other.iter().any(|o| o.0 == f.0))
            .map(|f| f.1)
            .sum()
    };
    assert!(
        in_both(&full, &pre) < in_both(&pre, &full),
        "the checkpoint stores {full:?} bytes of pages, the pre-dump {pre:?}"
    );
    podman.ok(&["container", "restore", &name]);
    podman.goes_on(&name, before);
}

/// The pages files of the stasis image in `dir` and their bytes.
fn pages_bytes(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = (std::fs::read_dir(dir).unwrap().flatten())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e))
        .filter(|(name, _)| name.starts_with("pages-"))
        .map(|(name, e)| (name, e.metadata().unwrap().len()))
        .collect();
    files.sort();
    files
}

/// A `-t` container: its console's master is conmon's, outside the tree. stasis-criu
/// saves the pty (`orphan_pts_master`); at restore the new master goes through runc to
/// conmon: the counter goes on, and what it prints after the restore reaches `podman
/// logs` through the new console.
#[test]
fn podman_terminal_container_keeps_its_console() {
    let Some((_dir, podman)) = ready("podman -t") else {
        return;
    };
    let name = format!("stasis-pm-{}-tty", std::process::id());
    let _clean = Cleanup(&podman, vec![name.clone()]);
    podman.start_with(&name, &["-t"]);
    let (_, _, dumped) = checkpoint_and_restore(&podman, &name);
    podman.goes_on(&name, dumped);
    let printed = || {
        let logs = podman.ok(&["logs", &name]);
        (logs.lines())
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    wait_until(
        || printed() > dumped + 2,
        &format!("{name} prints on its console after the restore (dumped at {dumped})"),
    );
}
