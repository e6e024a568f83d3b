//! Live migration between two simulated hosts on this machine (`stasis receive`,
//! `stasis migrate`, `docs/migration.md`): each host is a network namespace (with its
//! own mount, uts and pid namespaces) holding a veth whose other end is on a bridge in a
//! third network namespace; host A is 10.77.N.1, host B 10.77.N.2. The workload runs in
//! A, `stasis receive` in B.
//!
//! - a python counter migrates and counts on in B, gone from A;
//! - a 2 GiB process rewriting 32 MiB/s of its pages migrates with a short downtime and
//!   every page right (the `migrate_writer` victim checks its own memory);
//! - the receiver killed half-way, or the link cut (`ip link set down`): the migration
//!   fails naming the peer and the byte, the counter keeps counting in A, and B holds no
//!   complete-looking image;
//! - a receiver holding another pre-shared key refuses the stream;
//! - post-copy (`migrate --lazy`): the writer runs on in B at once, with its pid, every
//!   page right; the link cut during post-copy kills B's copy (never running with a
//!   missing page) and leaves A's frozen, resumed once its stasis is stopped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;

fn run(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn ip(args: &[&str]) -> bool {
    run(Command::new("ip").args(args))
}

/// The python counter: writes its count to `count` every 10 ms, holding `mib` MiB of
/// random memory (what the transfer has to move).
const COUNTER: &str = r#"
import os, sys, time
mem = bytearray(os.urandom(int(sys.argv[2]) << 20))
i = 0
while True:
    i += 1
    mem[(i * 4096) % len(mem)] = i & 255
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(i))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.01)
"#;

/// Two hosts and their bridge; everything is removed on drop.
struct Hosts {
    tag: String,
    /// Host pid of host A's init (pid 1 of its pid namespace).
    a: i32,
    a_run: common::Running,
    b_run: common::Running,
    net: u32,
}

impl Hosts {
    fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.tag)
    }

    /// Builds the bridge and both hosts; `a_script` and `b_script` run as the hosts'
    /// inits (`sh -c`).
    fn new(test: &str, a_script: &str, b_script: &str) -> Option<Hosts> {
        let n = std::process::id() % 200 + 20;
        let tag = format!("smig{n}");
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{tag}-br")])
            .output();
        for h in ["a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{tag}-{h}")])
                .output();
        }
        let br = format!("{tag}-br");
        let ok = ip(&["netns", "add", &br])
            && ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &br, "link", "set", "br0", "up"]);
        if !ok {
            common::skip(
                test,
                "cannot make network namespaces and a bridge (ip netns)",
            );
            return None;
        }
        for (h, addr) in [("a", 1), ("b", 2)] {
            let ns = format!("{tag}-{h}");
            let ok = ip(&["netns", "add", &ns])
                && ip(&[
                    "-n",
                    &ns,
                    "link",
                    "add",
                    "eth0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("v{h}"),
                    "netns",
                    &br,
                ])
                && ip(&[
                    "-n",
                    &br,
                    "link",
                    "set",
                    &format!("v{h}"),
                    "master",
                    "br0",
                    "up",
                ])
                && ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("10.77.{n}.{addr}/24"),
                    "dev",
                    "eth0",
                ])
                && ip(&["-n", &ns, "link", "set", "eth0", "up"])
                && ip(&["-n", &ns, "link", "set", "lo", "up"]);
            assert!(ok, "cannot set up host {h}");
        }
        let host = |h: &str, script: &str| {
            common::start(Command::new("ip").args([
                "netns",
                "exec",
                &format!("{tag}-{h}"),
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                "--uts",
                "sh",
                "-c",
                script,
            ]))
        };
        let (a_run, b_run) = (host("a", a_script), host("b", b_script));
        let a = init_of(a_run.pid());
        Some(Hosts {
            tag,
            a,
            a_run,
            b_run,
            net: n,
        })
    }

    fn addr(&self, h: u8) -> String {
        format!("10.77.{}.{h}", self.net)
    }

    /// `stasis ARGS` run on host A (all its namespaces).
    fn stasis_on_a(&self, args: &[&str]) -> common::Running {
        self.stasis_on_a_with(args, &[])
    }

    /// [`Hosts::stasis_on_a`] with `env` set.
    fn stasis_on_a_with(&self, args: &[&str], env: &[(&str, &str)]) -> common::Running {
        common::start(
            Command::new("nsenter")
                .args(["-t", &self.a.to_string(), "-p", "-m", "-n", "-u", "--"])
                .arg(stasis_path())
                .args(args)
                .envs(env.iter().copied()),
        )
    }

    /// Host pids of the processes of host `h` named `name`.
    fn named(&self, h: &str, name: &str) -> Vec<i32> {
        (self.pids(h).into_iter())
            .filter(|p| common::status_field(*p, "Name").is_some_and(|n| n == name))
            .collect()
    }

    /// Host pids of the processes in host `h`'s network namespace.
    fn pids(&self, h: &str) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(h)])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in ["a", "b"] {
            for p in self.pids(h) {
                let _ = common::kill(p, libc::SIGKILL);
            }
        }
        self.a_run.kill();
        self.b_run.kill();
        for h in ["a", "b", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(h)])
                .output();
        }
    }
}

fn stasis_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stasis"))
}

/// The child of `pid` (`unshare --fork`'s init), waited for.
fn init_of(pid: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/proc/{pid}/task/{pid}/children");
        if let Some(c) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|c| c.parse().ok()))
        {
            return c;
        }
        assert!(Instant::now() < deadline, "no init under {pid}");
        common::sleep_ms(10);
    }
}

fn count(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the counter at `path` passes `above`.
fn counts_past(path: &Path, above: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if count(path) > above {
            return true;
        }
        common::sleep_ms(20);
    }
    false
}

/// Host A's init: burns pids (so the workload's pid is free in B), starts `workload`
/// (a shell command line).
fn a_init(dir: &Path, workload: &str) -> String {
    format!(
        "i=0; while [ $i -lt 150 ]; do /bin/true; i=$((i+1)); done; \
         setsid {workload} </dev/null >/dev/null 2>&1 & echo $! > {}; exec sleep 1000",
        dir.join("pid").display()
    )
}

/// Host A's init with the python counter of `mib` MiB.
fn a_script(dir: &Path, mib: u32) -> String {
    let py = dir.join("counter.py");
    std::fs::write(&py, COUNTER).expect("write counter.py");
    let counter = format!(
        "python3 {} {} {mib}",
        py.display(),
        dir.join("count").display()
    );
    a_init(dir, &counter)
}

/// Host B's init: `stasis receive ARGS`, its exit code kept, then it stays.
fn b_script(dir: &Path, listen: &str, extra: &str) -> String {
    format!(
        "{} receive --listen {listen} -D {} {extra} 2>{}; echo $? > {}; exec sleep 1000",
        stasis_path().display(),
        dir.join("images").display(),
        dir.join("receive.err").display(),
        dir.join("receive.rc").display()
    )
}

fn wait_file(path: &Path) -> String {
    wait_file_for(path, Duration::from_secs(30))
}

fn wait_file_for(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        common::sleep_ms(20);
    }
}

/// Sets up both hosts with the counter (`mib` MiB) in A and the receiver in B.
fn setup(test: &str, tmp: &TempDir, mib: u32, receive_extra: &str) -> Option<(Hosts, String)> {
    if Command::new("python3").arg("-V").output().is_err() {
        common::skip(test, "needs python3");
        return None;
    }
    setup_with(test, tmp, &a_script(tmp.path(), mib), receive_extra)
}

/// Sets up both hosts with `a_script` as A's init (a workload that counts in
/// `tmp/count`) and the receiver in B.
fn setup_with(
    test: &str,
    tmp: &TempDir,
    a_script: &str,
    receive_extra: &str,
) -> Option<(Hosts, String)> {
    if Command::new("nsenter").arg("-V").output().is_err() {
        common::skip(test, "needs nsenter");
        return None;
    }
    let n = std::process::id() % 200 + 20;
    let listen = format!("10.77.{n}.2:7000");
    let hosts = Hosts::new(
        test,
        a_script,
        &b_script(tmp.path(), &listen, receive_extra),
    )?;
    let ns_pid = wait_file(&tmp.join("pid"));
    assert!(
        counts_past(&tmp.join("count"), 0, Duration::from_secs(30)),
        "the counter never counted"
    );
    Some((hosts, ns_pid))
}

/// No directory under `dir` looks like a complete image.
fn assert_no_image(dir: &Path) {
    let found = common::find_inventories(dir);
    assert!(
        found.is_empty(),
        "a failed migration left complete-looking images: {found:?}"
    );
}

#[test]
fn migrate_python_counter() {
    let test = "migrate_python_counter";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((hosts, pid)) = setup(test, &tmp, 16, "") else {
        return;
    };
    let to = format!("{}:7000", hosts.addr(2));
    let stats = tmp.join("stats.json");
    let out = hosts
        .stasis_on_a(&[
            "migrate",
            "-t",
            &pid,
            "--to",
            &to,
            "--stats-json",
            stats.to_str().expect("utf-8"),
        ])
        .finish(Duration::from_secs(120));
    out.assert_ok("migrate");
    assert!(
        out.stderr.contains("downtime"),
        "no downtime printed: {}",
        out.stderr
    );
    assert_eq!(
        wait_file(&tmp.join("receive.rc")),
        "0",
        "{}",
        std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default()
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("json");
    assert!(
        json["rounds"].as_array().is_some_and(|r| r.len() >= 2),
        "{json}"
    );
    assert!(
        json["downtime_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{json}"
    );
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now + 20, Duration::from_secs(20)),
        "the counter stopped after the migration"
    );
    let python = |h: &str| {
        hosts
            .pids(h)
            .into_iter()
            .filter(|p| common::status_field(*p, "Name").is_some_and(|n| n.starts_with("python")))
            .count()
    };
    assert_eq!(python("a"), 0, "the source still runs on host A");
    assert_eq!(python("b"), 1, "the counter does not run on host B");
}

/// Starts a migration of 256 MiB, does `cut` once some of it went through, and checks
/// the source survived with the counter going on.
fn failure_half_way(test: &str, cut: &dyn Fn(&Hosts)) {
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((hosts, pid)) = setup(test, &tmp, 256, "") else {
        return;
    };
    let to = format!("{}:7000", hosts.addr(2));
    let mut mig = hosts.stasis_on_a(&["migrate", "-t", &pid, "--to", &to, "--timeout", "5"]);
    // Half-way: the first round's directory appeared on B.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_temp(&tmp.join("images")) && Instant::now() < deadline {
        common::sleep_ms(5);
    }
    cut(&hosts);
    let out = mig.finish(Duration::from_secs(120));
    let msg = out.assert_failed("migration cut half-way");
    assert!(
        msg.contains(&to) && msg.contains("byte"),
        "the error names neither the peer nor the byte: {msg}"
    );
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now + 20, Duration::from_secs(20)),
        "the source stopped counting: {msg}"
    );
    assert_no_image(&tmp.join("images"));
}

/// A temporary image directory (`.NAME.stasis-tmp-PID`) exists under `dir`.
fn has_temp(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("stasis-tmp"))
    })
}

#[test]
fn migrate_receiver_killed_half_way() {
    failure_half_way("migrate_receiver_killed_half_way", &|h: &Hosts| {
        for p in h.pids("b") {
            if common::status_field(p, "Name").is_some_and(|n| n == "stasis") {
                let _ = common::kill(p, libc::SIGKILL);
            }
        }
    });
}

#[test]
fn migrate_link_cut_half_way() {
    failure_half_way("migrate_link_cut_half_way", &|h: &Hosts| {
        assert!(
            ip(&["-n", &h.ns("br"), "link", "set", "va", "down"]),
            "cannot cut the link"
        );
    });
}

#[test]
fn migrate_with_another_key_is_refused() {
    let test = "migrate_with_another_key_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let (ka, kb) = (tmp.join("a.key"), tmp.join("b.key"));
    for k in [&ka, &kb] {
        common::stasis(&["keygen", k.to_str().expect("utf-8")]).assert_ok("keygen");
    }
    let extra = format!("--tls --tls-psk {}", kb.display());
    let Some((hosts, pid)) = setup(test, &tmp, 8, &extra) else {
        return;
    };
    let to = format!("{}:7000", hosts.addr(2));
    let ka = ka.to_str().expect("utf-8");
    let out = hosts
        .stasis_on_a(&["migrate", "-t", &pid, "--to", &to, "--tls", "--tls-psk", ka])
        .finish(Duration::from_secs(60));
    let msg = out.assert_failed("migration with another key");
    assert!(msg.contains("pre-shared key"), "{msg}");
    assert_ne!(wait_file(&tmp.join("receive.rc")), "0");
    let err = std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default();
    assert!(err.contains("pre-shared key"), "{err}");
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now + 20, Duration::from_secs(20)),
        "the source stopped counting"
    );
    assert_no_image(&tmp.join("images"));
}

/// The pre-copy scenario: 2 GiB of random pages, 32 MiB/s of them rewritten all along.
/// The migration must finish (rounds, then the final dump), the writer go on in B with
/// every page matching its generation, and the downtime be reported. The downtime is
/// asserted only loosely (CI machines vary); `scripts/bench.sh --migration` measures it.
/// `stasis receive` fills this much memory lazily by default (`--fill auto`): the
/// writer runs before its memory is in place, and its check touches every page.
#[test]
fn migrate_2g_writing_32mib_per_second() {
    let json = migrate_writer("migrate_2g_writing_32mib_per_second", 2048, "");
    if let Some(json) = json {
        assert!(json["memory_in_place_ms"].as_f64().is_some(), "{json}");
    }
}

/// `stasis receive --fill lazy` of a 512 MiB writer: the restored writer starts before
/// its memory is in place (filled from the received images on fault and in the
/// background), goes on writing, and then finds every page as it wrote it.
#[test]
fn migrate_with_lazy_fill_every_page_checked() {
    let json = migrate_writer(
        "migrate_with_lazy_fill_every_page_checked",
        512,
        "--fill lazy",
    );
    if let Some(json) = json {
        let (down, all) = (
            json["downtime_ms"].as_f64(),
            json["memory_in_place_ms"].as_f64(),
        );
        assert!(
            matches!((down, all), (Some(d), Some(a)) if a >= d),
            "{json}"
        );
    }
}

/// Migrates `migrate_writer MIB 32` from A to B (`stasis receive RECEIVE_EXTRA`),
/// checks that it runs on in B only and that every page of it is right there; returns
/// the migration's `--stats-json` (`None`: skipped).
fn migrate_writer(test: &str, mib: u32, receive_extra: &str) -> Option<serde_json::Value> {
    let _serial = common::serial();
    if let Err(why) = common::privileged() {
        common::skip(test, &why);
        return None;
    }
    let tmp = TempDir::new(test);
    let writer = format!(
        "{} {mib} 32 {}",
        common::victim_bin("migrate_writer").display(),
        tmp.path().display()
    );
    let (hosts, pid) = setup_with(test, &tmp, &a_init(tmp.path(), &writer), receive_extra)?;
    let to = format!("{}:7000", hosts.addr(2));
    let stats = tmp.join("stats.json");
    let out = hosts
        .stasis_on_a(&[
            "migrate",
            "-t",
            &pid,
            "--to",
            &to,
            "--max-downtime",
            "50ms",
            "--stats-json",
            stats.to_str().expect("utf-8"),
        ])
        .finish(Duration::from_secs(300));
    out.assert_ok("migrate");
    assert_eq!(
        wait_file(&tmp.join("receive.rc")),
        "0",
        "{}",
        std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default()
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("json");
    let downtime = json["downtime_ms"].as_f64().unwrap_or(0.0);
    eprintln!(
        "{test}: downtime {downtime:.1} ms, all memory in place after {:?} ms, rounds {}",
        json["memory_in_place_ms"].as_f64(),
        json["rounds"]
    );
    assert!(
        json["rounds"].as_array().is_some_and(|r| r.len() >= 2),
        "{json}"
    );
    // Loose: a migration that copied the whole 2 GiB frozen would take seconds here.
    assert!(downtime > 0.0 && downtime < 20_000.0, "{json}");
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now, Duration::from_secs(30)),
        "the writer stopped after the migration"
    );
    let named = |h: &str| {
        (hosts.pids(h).into_iter()).filter(|p| {
            common::status_field(*p, "Name").is_some_and(|n| n.starts_with("migrate_writer"))
        })
    };
    assert_eq!(named("a").count(), 0, "the source still runs on host A");
    let on_b: Vec<i32> = named("b").collect();
    assert_eq!(on_b.len(), 1, "the writer does not run on host B");
    common::kill(on_b[0], libc::SIGUSR1).expect("signal the writer");
    let verdict = wait_file_for(&tmp.join("ok"), Duration::from_secs(120));
    assert!(verdict.starts_with("OK"), "after the migration: {verdict}");
    Some(json)
}

/// `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    run(Command::new("openssl").current_dir(dir).args(args))
}

/// `openssl req` making a new P-256 key `NAME.key` and `NAME.OUT` for subject `subj`:
/// with `x509` a self-signed certificate, else a request.
fn new_key(dir: &Path, name: &str, out: &str, subj: &str, x509: bool) -> bool {
    let (key, out, subj) = (
        format!("{name}.key"),
        format!("{name}.{out}"),
        format!("/CN={subj}"),
    );
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    args.extend(["-nodes", "-keyout", &key, "-out", &out, "-subj", &subj]);
    if x509 {
        args.extend(["-x509", "-days", "2"]);
    }
    openssl(dir, &args)
}

/// A CA: `NAME-ca.pem` and its key `NAME-ca.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> bool {
    new_key(
        dir,
        &format!("{name}-ca"),
        "pem",
        &format!("{name} test CA"),
        true,
    )
}

/// `NAME.pem` and `NAME.key` in `dir`: a certificate for IP address `ip`, signed by the
/// CA `ca` (of [`make_ca`]), good for TLS servers and clients.
fn make_cert(dir: &Path, ca: &str, name: &str, ip: &str) -> bool {
    let ext = dir.join(format!("{name}.ext"));
    let text = format!(
        "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\n"
    );
    std::fs::write(&ext, text).expect("write the extensions");
    let (pem, csr) = (format!("{name}.pem"), format!("{name}.csr"));
    let (ca_pem, ca_key) = (format!("{ca}-ca.pem"), format!("{ca}-ca.key"));
    let ext = ext.to_str().expect("utf-8");
    new_key(dir, name, "csr", name, false)
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        )
}

/// `--tls` options with the certificate `NAME` of CA `ca`, files in `dir`.
fn tls_args(dir: &Path, ca: &str, name: &str) -> Vec<String> {
    let f = |n: String| dir.join(n).display().to_string();
    vec![
        "--tls".into(),
        "--tls-cacert".into(),
        f(format!("{ca}-ca.pem")),
        "--tls-cert".into(),
        f(format!("{name}.pem")),
        "--tls-key".into(),
        f(format!("{name}.key")),
    ]
}

/// Certificates for a migration: CA `good` with `a` (host A) and `b` (host B), CA
/// `other` with `rogue` (for host A's address too). False when openssl cannot make them.
fn make_certs(dir: &Path, n: u32) -> bool {
    make_ca(dir, "good")
        && make_ca(dir, "other")
        && make_cert(dir, "good", "a", &format!("10.77.{n}.1"))
        && make_cert(dir, "good", "b", &format!("10.77.{n}.2"))
        && make_cert(dir, "other", "rogue", &format!("10.77.{n}.1"))
}

/// Migrates the counter with certificate TLS, both hosts trusting CA `good`, host A
/// presenting the certificate `client`; returns the migration's output and the
/// receiver's exit code and stderr.
fn migrate_with_certs(
    test: &str,
    tmp: &TempDir,
    client: &str,
) -> Option<(common::Output, String, String)> {
    let n = std::process::id() % 200 + 20;
    if Command::new("openssl").arg("version").output().is_err() || !make_certs(tmp.path(), n) {
        common::skip(test, "needs the openssl command to make test certificates");
        return None;
    }
    let extra = tls_args(tmp.path(), "good", "b").join(" ");
    let (hosts, pid) = setup(test, tmp, 8, &extra)?;
    let to = format!("{}:7000", hosts.addr(2));
    let mut args: Vec<String> = vec!["migrate".into(), "-t".into(), pid, "--to".into(), to];
    args.extend(tls_args(tmp.path(), "good", client));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hosts.stasis_on_a(&args).finish(Duration::from_secs(120));
    let rc = wait_file(&tmp.join("receive.rc"));
    let err = std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default();
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now + 20, Duration::from_secs(20)),
        "the counter stopped: {}",
        out.stderr
    );
    drop(hosts);
    Some((out, rc, err))
}

#[test]
fn migrate_with_certificates() {
    let test = "migrate_with_certificates";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((out, rc, err)) = migrate_with_certs(test, &tmp, "a") else {
        return;
    };
    out.assert_ok("migrate with certificates");
    assert_eq!(rc, "0", "{err}");
    assert!(out.stderr.contains("downtime"), "{}", out.stderr);
}

#[test]
fn migrate_with_untrusted_certificate_is_refused() {
    let test = "migrate_with_untrusted_certificate_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((out, rc, err)) = migrate_with_certs(test, &tmp, "rogue") else {
        return;
    };
    let msg = out.assert_failed("migration with an untrusted certificate");
    assert!(msg.contains("certificate"), "{msg}");
    assert_ne!(rc, "0");
    assert!(err.contains("certificate is refused"), "{err}");
    assert_no_image(&tmp.join("images"));
    eprintln!(
        "{test}: the sender said: {msg}\nthe receiver said: {}",
        err.trim()
    );
}

/// The redis client outside both hosts: one connection to `ADDR:6379` for its whole
/// life. It stores 32 values of 1 MiB (what pre-copy moves), then `SET kI vI` every
/// 5 ms (its count in `n`) until `stop` appears, then reads every key back and writes
/// `PASS N` or `FAIL why` to `result`, also checking its local port never changed.
const REDIS_CLIENT: &str = r#"
import os, socket, sys, time, traceback
host, d = sys.argv[1], sys.argv[2]
def out(name, text):
    with open(d + "/" + name + ".tmp", "w") as f:
        f.write(text)
    os.rename(d + "/" + name + ".tmp", d + "/" + name)
try:
    s = socket.create_connection((host, 6379), timeout=60)
    port = s.getsockname()[1]
    r = s.makefile("rb")
    def cmd(*args):
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        line = r.readline()
        if line.startswith(b"$"):
            n = int(line[1:])
            return None if n < 0 else r.read(n + 2)[:-2]
        return line.rstrip(b"\r\n")
    big = os.urandom(1 << 20)
    for j in range(32):
        assert cmd(b"SET", b"big%d" % j, big) == b"+OK"
    i = 0
    while not os.path.exists(d + "/stop"):
        assert cmd(b"SET", b"k%d" % i, b"v%d" % i) == b"+OK", i
        i += 1
        out("n", str(i))
        time.sleep(0.005)
    bad = [j for j in range(i) if cmd(b"GET", b"k%d" % j) != b"v%d" % j]
    bad += ["big%d" % j for j in range(32) if cmd(b"GET", b"big%d" % j) != big]
    now = s.getsockname()[1]
    ok = not bad and now == port
    out("result", "PASS %d" % i if ok else "FAIL keys %s, port %d then %d" % (bad[:5], port, now))
except Exception:
    out("result", "FAIL " + traceback.format_exc())
"#;

/// Host A's init for the redis scenario: the service address on its loopback, pids
/// burnt, redis-server bound to the service address.
fn redis_a_script(dir: &Path, service: &str) -> String {
    format!(
        "ip addr add {service}/32 dev lo; i=0; while [ $i -lt 150 ]; do /bin/true; i=$((i+1)); done; \
         cd {d} && setsid redis-server --bind {service} --port 6379 --protected-mode no \
         --save '' --appendonly no </dev/null >/dev/null 2>&1 & echo $! > {pid}; exec sleep 1000",
        d = dir.display(),
        pid = dir.join("pid").display()
    )
}

/// The network outside the hosts: the bridge's namespace routes (10.77.N.254) between the
/// hosts and a client namespace `TAG-c` (10.78.N.1), and sends the service address to
/// host A. A real network does this with a route (or a floating IP) its operator moves.
fn outside_network(h: &Hosts, service: &str) -> bool {
    let (br, c, n) = (h.ns("br"), h.ns("c"), h.net);
    let _ = Command::new("ip").args(["netns", "del", &c]).output();
    let mut ok = ip(&["netns", "add", &c])
        && ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("10.77.{n}.254/24"),
            "dev",
            "br0",
        ])
        && ip(&[
            "netns",
            "exec",
            &br,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        && ip(&[
            "-n", &c, "link", "add", "eth0", "type", "veth", "peer", "name", "vc", "netns", &br,
        ])
        && ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("10.78.{n}.254/24"),
            "dev",
            "vc",
        ])
        && ip(&["-n", &br, "link", "set", "vc", "up"])
        && ip(&[
            "-n",
            &c,
            "addr",
            "add",
            &format!("10.78.{n}.1/24"),
            "dev",
            "eth0",
        ])
        && ip(&["-n", &c, "link", "set", "eth0", "up"])
        && ip(&[
            "-n",
            &c,
            "route",
            "add",
            "default",
            "via",
            &format!("10.78.{n}.254"),
        ])
        && ip(&[
            "-n",
            &br,
            "route",
            "add",
            &format!("{service}/32"),
            "via",
            &h.addr(1),
        ]);
    for host in ["a", "b"] {
        let gw = format!("10.77.{n}.254");
        ok = ok && ip(&["-n", &h.ns(host), "route", "add", "default", "via", &gw]);
    }
    ok
}

fn redis_pids(h: &Hosts, host: &str) -> usize {
    h.pids(host)
        .into_iter()
        .filter(|p| common::status_field(*p, "Name").is_some_and(|n| n.starts_with("redis")))
        .count()
}

#[test]
fn migrate_redis_keeps_its_client_connection() {
    let test = "migrate_redis_keeps_its_client_connection";
    let _serial = common::serial();
    require_privileged!(test);
    for tool in ["redis-server", "python3", "nsenter", "iptables"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            common::skip(test, &format!("needs {tool}"));
            return;
        }
    }
    let tmp = TempDir::new(test);
    let n = std::process::id() % 200 + 20;
    let service = format!("10.77.{n}.100");
    let listen = format!("10.77.{n}.2:7000");
    let Some(hosts) = Hosts::new(
        test,
        &redis_a_script(tmp.path(), &service),
        &b_script(tmp.path(), &listen, "--tcp-established"),
    ) else {
        return;
    };
    let _c = NsGuard(hosts.ns("c"));
    assert!(
        outside_network(&hosts, &service),
        "cannot set up the outside network"
    );
    // The target is made ready to take the service address: on its loopback, not yet
    // routed to it.
    assert!(ip(&[
        "-n",
        &hosts.ns("b"),
        "addr",
        "add",
        &format!("{service}/32"),
        "dev",
        "lo"
    ]));
    let pid = wait_file(&tmp.join("pid"));
    let py = tmp.join("client.py");
    std::fs::write(&py, REDIS_CLIENT).expect("write client.py");
    let mut client = common::start(
        Command::new("ip")
            .args(["netns", "exec", &hosts.ns("c"), "python3"])
            .arg(&py)
            .args([&service, tmp.path().to_str().expect("utf-8")]),
    );
    let (n_file, result) = (tmp.join("n"), tmp.join("result"));
    let progress = || count(&n_file);
    assert!(
        counts_past(&n_file, 50, Duration::from_secs(60)),
        "the client never wrote: {}",
        std::fs::read_to_string(&result).unwrap_or_default()
    );
    let before = progress();
    let mut mig = hosts.stasis_on_a(&["migrate", "-t", &pid, "--to", &listen, "--tcp-established"]);
    let mut during = before;
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = loop {
        during = during.max(progress());
        if let Some(out) = mig.try_finish() {
            break out;
        }
        assert!(Instant::now() < deadline, "the migration took over 120 s");
        common::sleep_ms(5);
    };
    out.assert_ok("migrate redis");
    assert_eq!(
        wait_file(&tmp.join("receive.rc")),
        "0",
        "{}",
        std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default()
    );
    // The operator moves the service address: routed to B, gone from A, then A's network
    // lock (left by the dump: it kept the client's packets from meeting no socket) lifted.
    let switched = progress();
    assert!(ip(&[
        "-n",
        &hosts.ns("br"),
        "route",
        "replace",
        &format!("{service}/32"),
        "via",
        &hosts.addr(2)
    ]));
    assert!(ip(&[
        "-n",
        &hosts.ns("a"),
        "addr",
        "del",
        &format!("{service}/32"),
        "dev",
        "lo"
    ]));
    hosts
        .stasis_on_a(&["network-unlock", "--all-stale"])
        .finish(Duration::from_secs(30))
        .assert_ok("network-unlock on A");
    assert!(
        counts_past(&n_file, switched + 50, Duration::from_secs(60)),
        "the client made no progress after the migration: {}",
        std::fs::read_to_string(&result).unwrap_or_default()
    );
    std::fs::write(tmp.join("stop"), "").expect("write stop");
    let verdict = wait_file(&result);
    let _ = client.finish(Duration::from_secs(30));
    assert!(verdict.starts_with("PASS"), "{verdict}");
    assert!(
        during > before,
        "the client wrote nothing while the migration ran ({before} keys before)"
    );
    assert_eq!(redis_pids(&hosts, "a"), 0, "redis still runs on host A");
    assert_eq!(redis_pids(&hosts, "b"), 1, "redis does not run on host B");
    eprintln!("{test}: {verdict} keys: {before} before, {} during, {switched} at the end of the migration; {}", during - before, out.stderr.lines().last().unwrap_or(""));
}

/// Deletes the network namespace it names on drop.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Hosts with the `migrate_writer` victim (`mib` MiB, rewriting 8 MiB/s) in A, for
/// post-copy (skipped without it).
fn setup_writer(test: &str, tmp: &TempDir, mib: u32) -> Option<(Hosts, String)> {
    if !lazy_available(test) {
        return None;
    }
    let writer = format!(
        "{} {mib} 8 {}",
        common::victim_bin("migrate_writer").display(),
        tmp.path().display()
    );
    setup_with(test, tmp, &a_init(tmp.path(), &writer), "")
}

/// Skips without post-copy support (`stasis check`).
fn lazy_available(test: &str) -> bool {
    let out = common::stasis(&["check"]);
    let ok = (out.stdout.lines()).any(|l| l.starts_with("OK") && l.contains("lazy_pages"));
    if !ok {
        common::skip(
            test,
            "this kernel's userfaultfd cannot do post-copy (stasis check)",
        );
    }
    ok
}

/// Asks the writer at host pid `pid` to check every page; its verdict.
fn writer_verdict(tmp: &TempDir, pid: i32) -> String {
    let _ = std::fs::remove_file(tmp.join("ok"));
    common::kill(pid, libc::SIGUSR1).expect("signal the writer");
    wait_file_for(&tmp.join("ok"), Duration::from_secs(120))
}

/// Post-copy: the tree runs on B at once (same pid), its memory follows; every page
/// matches its generation and the count goes on; A holds nothing after.
#[test]
fn migrate_lazy_writer_runs_on_with_every_page() {
    let test = "migrate_lazy_writer_runs_on_with_every_page";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((hosts, pid)) = setup_writer(test, &tmp, 192) else {
        return;
    };
    let to = format!("{}:7000", hosts.addr(2));
    let stats = tmp.join("stats.json");
    let stats_arg = stats.to_str().expect("utf-8");
    let args = [
        "migrate",
        "-t",
        &pid,
        "--to",
        &to,
        "--lazy",
        "--stats-json",
        stats_arg,
    ];
    let out = hosts.stasis_on_a(&args).finish(Duration::from_secs(300));
    out.assert_ok("migrate --lazy");
    assert!(out.stderr.contains("downtime"), "{}", out.stderr);
    let receive_err = || std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default();
    assert_eq!(wait_file(&tmp.join("receive.rc")), "0", "{}", receive_err());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("json");
    eprintln!("{test}: {json}");
    let rounds = json["rounds"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = rounds.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["dump", "post-copy"], "{json}");
    assert!(
        rounds[1]["bytes"].as_u64().is_some_and(|b| b >= 192 << 20),
        "the post-copy did not carry the writer's memory: {json}"
    );
    assert!(
        json["downtime_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{json}"
    );
    assert!(
        hosts.named("a", "migrate_writer").is_empty(),
        "the source still runs on A"
    );
    let on_b = hosts.named("b", "migrate_writer");
    assert_eq!(on_b.len(), 1, "the writer does not run on B");
    let ns_pid: i32 = pid.parse().expect("pid");
    assert_eq!(
        common::nspids(on_b[0]).last(),
        Some(&ns_pid),
        "another pid on B"
    );
    let now = count(&tmp.join("count"));
    assert!(
        counts_past(&tmp.join("count"), now, Duration::from_secs(30)),
        "the writer stopped after the migration"
    );
    let verdict = writer_verdict(&tmp, on_b[0]);
    assert!(verdict.starts_with("OK"), "after the migration: {verdict}");
}

/// Post-copy with the link cut once B's tree runs: B kills its copy (it never runs with
/// a missing page), the receiver fails, A's tree stays frozen while its stasis waits for
/// a new target, and resumes intact once that stasis is stopped.
#[test]
fn migrate_lazy_link_cut_kills_the_target_copy() {
    let test = "migrate_lazy_link_cut_kills_the_target_copy";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((hosts, pid)) = setup_writer(test, &tmp, 256) else {
        return;
    };
    let to = format!("{}:7000", hosts.addr(2));
    // 40 ms per MiB served: the post-copy takes about 10 s, the cut lands in it.
    let pace = [("STASIS_LAZY_PACE_US", "40000")];
    let mut mig = hosts.stasis_on_a_with(&["migrate", "-t", &pid, "--to", &to, "--lazy"], &pace);
    let on_b = common::wait_for("the writer on B", Duration::from_secs(60), || {
        if let Some(out) = mig.try_finish() {
            panic!("migrate ended before the writer ran on B: {out:?}");
        }
        hosts.named("b", "migrate_writer").first().copied()
    });
    // Cut once B's copy was resumed (its restorer detached: after the source's go);
    // before, the source never said go and resumes its own instead, as it should.
    common::wait_for("B's copy resumed", Duration::from_secs(30), || {
        let tracer = common::status_field(on_b, "TracerPid");
        tracer.is_some_and(|t| t.trim() == "0").then_some(())
    });
    assert!(
        ip(&["-n", &hosts.ns("br"), "link", "set", "va", "down"]),
        "cannot cut the link"
    );
    let receive_err = || std::fs::read_to_string(tmp.join("receive.err")).unwrap_or_default();
    let rc = wait_file_for(&tmp.join("receive.rc"), Duration::from_secs(90));
    assert_eq!(rc, "1", "the receiver did not fail: {}", receive_err());
    assert!(receive_err().contains("post-copy"), "{}", receive_err());
    assert!(
        !Path::new(&format!("/proc/{on_b}")).exists()
            && hosts.named("b", "migrate_writer").is_empty(),
        "B's copy runs on after the link was cut"
    );
    assert!(!tmp.join("ok").exists(), "a copy checked its pages");
    assert!(mig.try_finish().is_none(), "the source's migrate ended");
    let on_a = hosts.named("a", "migrate_writer");
    assert_eq!(on_a.len(), 1, "the source tree is gone from A");
    let frozen_at = count(&tmp.join("count"));
    common::sleep_ms(2500);
    assert_eq!(
        count(&tmp.join("count")),
        frozen_at,
        "A's tree runs while B's may have"
    );
    for p in hosts.named("a", "stasis") {
        let _ = common::kill(p, libc::SIGKILL);
    }
    let out = mig.finish(Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        counts_past(&tmp.join("count"), frozen_at, Duration::from_secs(30)),
        "A's tree did not resume once its stasis stopped"
    );
    let verdict = writer_verdict(&tmp, on_a[0]);
    assert!(verdict.starts_with("OK"), "the resumed source: {verdict}");
}
