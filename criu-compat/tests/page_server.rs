//! stasis-criu's page server and lazy restore, as CRIU's users drive them: `criu
//! page-server` receiving `criu dump --page-server` (and a pre-dump chain), the swrk
//! `PAGE_SERVER` request starting a server a `DUMP` with `opts.ps` then sends to, and
//! `criu dump --lazy-pages` + `criu lazy-pages --page-server` + `criu restore
//! --lazy-pages`. A python counter dumped each way counts on when restored. Needs root;
//! run with `--test-threads=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::proto::{CriuOpts, CriuPageServerInfo, CriuReqType};
use common::{assert_counts_on, count, criu, privileged, reap, req, started_counter, Session};
use common::{chain_dirs, kill_tree, tracking, BIN};

/// A port of this test run's own.
fn port(n: u16) -> u16 {
    30000 + (std::process::id() % 20000) as u16 + n
}

/// `stasis-criu ARGS --status-fd N`, started once it reported ready.
fn start_ready(args: &[&str]) -> Child {
    let (mut read, write): (File, OwnedFd) = {
        let (r, w) = nix::unistd::pipe().unwrap();
        (File::from(r), w)
    };
    let child = Command::new(BIN)
        .args(args)
        .args(["--status-fd", &write.as_raw_fd().to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop(write);
    let mut byte = [1u8];
    read.read_exact(&mut byte).expect("the ready byte");
    assert_eq!(byte, [0], "CRIU's ready byte is a zero");
    child
}

/// Waits up to 60 s for `child` to end.
fn wait_for(child: &mut Child, what: &str) -> ExitStatus {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "{what} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counter's file, the local images dir and the page server's dir under `dir`.
fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let at = |name| dir.join(name);
    (at("count"), at("images"), at("srv"))
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `criu page-server` receives `criu dump --page-server`, ends after it, and `criu
/// restore -D` of its directory brings the counter back.
#[test]
fn command_line_dump_to_page_server() {
    let Some((dir, victim, pid)) =
        privileged("command_line_dump_to_page_server").then(started_counter)
    else {
        return;
    };
    let (file, local, srv) = paths(dir.path());
    let port = port(1).to_string();
    let pid_arg = pid.to_string();
    let mut server = start_ready(&[
        "page-server",
        "-D",
        arg(&srv),
        "--address",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    criu(&[
        "dump",
        "-t",
        &pid_arg,
        "-D",
        arg(&local),
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "-o",
        "dump.log",
        "-v4",
    ])
    .unwrap();
    assert!(wait_for(&mut server, "the page server").success());
    reap(victim);
    let dumped = count(&file);
    let kept = std::fs::read_dir(local.join("stasis-image")).unwrap();
    let kept: Vec<String> = (kept.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter().all(|f| !f.starts_with("pages-")),
        "the local images dir keeps the records only: {kept:?}"
    );
    criu(&["restore", "-d", "-D", arg(&srv), "--restore-sibling"]).unwrap();
    assert_counts_on(pid, &file, dumped);
}

/// `criu pre-dump --page-server`, then `criu dump --page-server --prev-images-dir ../pre
/// --track-mem` to the same server; `criu restore -D SERVER/last` brings the counter back.
#[test]
fn command_line_pre_dump_chain_to_page_server() {
    let test = "command_line_pre_dump_chain_to_page_server";
    if !privileged(test) || !tracking(test) {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let file = dir.path().join("count");
    let (pre, last) = chain_dirs(dir.path());
    let srv = dir.path().join("srv");
    let port = port(2).to_string();
    let pid_arg = pid.to_string();
    let mut server = start_ready(&["page-server", "-D", arg(&srv), "--port", &port]);
    let ps = ["--page-server", "--port", &port];
    criu(&[&["pre-dump", "-t", &pid_arg, "-D", arg(&pre)][..], &ps].concat()).unwrap();
    let chain = ["--prev-images-dir", "../pre", "--track-mem"];
    criu(&[&["dump", "-t", &pid_arg, "-D", arg(&last)][..], &ps, &chain].concat()).unwrap();
    assert!(wait_for(&mut server, "the page server").success());
    reap(victim);
    let dumped = count(&file);
    criu(&[
        "restore",
        "-d",
        "-D",
        arg(&srv.join("last")),
        "--restore-sibling",
    ])
    .unwrap();
    assert_counts_on(pid, &file, dumped);
}

/// The swrk `PAGE_SERVER` request answers with the server's pid and the port the kernel
/// picked; a `DUMP` with `opts.ps` sends there; `WAIT_PID` of the server says it ended
/// well; a `RESTORE` of its directory brings the counter back.
#[test]
fn rpc_page_server_then_dump() {
    let Some((dir, victim, pid)) = privileged("rpc_page_server_then_dump").then(started_counter)
    else {
        return;
    };
    let (file, local, srv) = paths(dir.path());
    std::fs::create_dir(&srv).unwrap();
    let (local_fd, srv_fd) = (File::open(&local).unwrap(), File::open(&srv).unwrap());
    let mut s = Session::start();
    let mut start = req(
        CriuReqType::PageServer,
        Some(CriuOpts {
            images_dir_fd: srv_fd.as_raw_fd(),
            ps: Some(CriuPageServerInfo {
                address: Some("127.0.0.1".into()),
                port: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    start.keep_open = Some(true);
    let (resp, _) = s.call(&start);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.r#type(), CriuReqType::PageServer);
    let ps = resp.ps.unwrap();
    let (server, port) = (ps.pid.unwrap(), ps.port.unwrap());
    assert!(server > 0 && port > 0, "{ps:?}");
    let mut dump = req(
        CriuReqType::Dump,
        Some(CriuOpts {
            images_dir_fd: local_fd.as_raw_fd(),
            pid: Some(pid),
            log_file: Some("dump.log".into()),
            ps: Some(CriuPageServerInfo {
                address: Some("127.0.0.1".into()),
                port: Some(port),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    dump.keep_open = Some(true);
    let (resp, _) = s.call(&dump);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    reap(victim);
    let dumped = count(&file);
    let mut wait = req(CriuReqType::WaitPid, None);
    wait.pid = Some(server as u32);
    wait.keep_open = Some(true);
    let (resp, _) = s.call(&wait);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(
        resp.status,
        Some(0),
        "the page server exits 0 after the dump"
    );
    let restore = CriuOpts {
        images_dir_fd: srv_fd.as_raw_fd(),
        rst_sibling: Some(true),
        ..Default::default()
    };
    let (resp, _) = s.call(&req(CriuReqType::Restore, Some(restore)));
    s.finish();
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.restore.unwrap().pid, pid);
    assert_counts_on(pid, &file, dumped);
}

/// What cannot map onto stasis is refused by name.
#[test]
fn lazy_and_page_server_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    let why = criu(&[
        "lazy-pages",
        "-D",
        d,
        "--address",
        "127.0.0.1",
        "--port",
        "1",
    ])
    .unwrap_err();
    assert!(why.contains("without --page-server"), "{why}");
    let why = criu(&["restore", "-D", d, "--lazy-pages"]).unwrap_err();
    assert!(why.contains("no lazy-pages daemon"), "{why}");
    let why = criu(&[
        "dump",
        "-t",
        "1",
        "-D",
        d,
        "--page-server",
        "--lazy-pages",
        "--port",
        "1",
    ])
    .unwrap_err();
    assert!(why.contains("--page-server and --lazy-pages"), "{why}");
    let images = File::open(dir.path()).unwrap();
    let ps_fd = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        ps: Some(CriuPageServerInfo {
            fd: Some(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut s = Session::start();
    let (resp, _) = s.call(&req(CriuReqType::PageServer, Some(ps_fd)));
    s.finish();
    assert!(!resp.success);
    assert!(resp.cr_errmsg.unwrap().starts_with("ps.fd: "));
}

/// The processes under `pid` (through /proc's children lists).
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                found.push(k);
                todo.push(k);
            }
        }
    }
    found
}

/// Waits until the lazy dump wrote its image into `images` (it then serves).
fn wait_image(images: &Path, mut ended: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !images.join("stasis-image/inventory.img").exists() {
        assert!(!ended(), "the lazy dump ended early");
        assert!(Instant::now() < until, "the lazy dump wrote no image");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `criu lazy-pages --page-server` for the source on 127.0.0.1:`port`, ready.
fn lazy_daemon(images: &Path, port: &str) -> Child {
    start_ready(&[
        "lazy-pages",
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        port,
        "-D",
        arg(images),
    ])
}

/// Whether post-copy and a pid namespace for the target are available here.
fn lazy_available(test: &str) -> bool {
    if let Err(e) = stasis::lazy::restore::check_kernel() {
        println!("SKIP {test}: this kernel cannot do post-copy: {e}");
        return false;
    }
    let ns = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    if !ns.is_ok_and(|s| s.success()) {
        println!("SKIP {test}: cannot make a pid namespace (unshare --pid) for the target");
        return false;
    }
    true
}

/// CRIU's three processes: `criu dump --lazy-pages` on the source (the tree stays
/// frozen, serving), `criu lazy-pages --page-server` and `criu restore --lazy-pages` on
/// the target (a new pid namespace: the source's frozen tree keeps its pids). The counter
/// counts on; the source and the daemon end 0 once every page is in.
#[test]
fn lazy_restore_through_the_command_line() {
    let test = "lazy_restore_through_the_command_line";
    if !privileged(test) || !lazy_available(test) {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let (file, images) = (dir.path().join("count"), dir.path().join("images"));
    let port = port(3).to_string();
    let mut dump = Command::new(BIN)
        .args([
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            arg(&images),
            "--lazy-pages",
        ])
        .args([
            "--address",
            "127.0.0.1",
            "--port",
            &port,
            "-o",
            "dump.log",
            "-v4",
        ])
        .spawn()
        .unwrap();
    wait_image(&images, || dump.try_wait().unwrap().is_some());
    let dumped = count(&file);
    let mut daemon = lazy_daemon(&images, &port);
    let mut restore = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            BIN,
            "restore",
            "--lazy-pages",
        ])
        .args(["-D", arg(&images), "-o", "restore.log", "-v4"])
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while count(&file) <= dumped + 5 {
        assert!(
            restore.try_wait().unwrap().is_none(),
            "restore --lazy-pages ended early"
        );
        assert!(
            Instant::now() < until,
            "the counter did not go on after the lazy restore"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wait_for(&mut dump, "dump --lazy-pages").success());
    assert!(
        wait_for(&mut daemon, "lazy-pages").success(),
        "the daemon saw the copy end well"
    );
    assert!(!images.join("lazy-pages.socket").exists());
    reap(victim);
    for p in descendants(restore.id() as i32).into_iter().rev() {
        kill_tree(p);
    }
    wait_for(&mut restore, "restore --lazy-pages");
}

/// The same through the RPC: DUMP with `lazy_pages` and `ps.port` (answered once every
/// page is served), RESTORE with `lazy_pages` from a service in a new pid namespace
/// (`images_dir` given by path: the service's parent is outside its namespace), which asks
/// the lazy-pages daemon for the source.
#[test]
fn lazy_restore_through_the_rpc() {
    let test = "lazy_restore_through_the_rpc";
    if !privileged(test) || !lazy_available(test) {
        return;
    }
    let (dir, victim, pid) = started_counter();
    let (file, images) = (dir.path().join("count"), dir.path().join("images"));
    let port = port(4);
    let images_fd = File::open(&images).unwrap();
    let dump = req(
        CriuReqType::Dump,
        Some(CriuOpts {
            images_dir_fd: images_fd.as_raw_fd(),
            pid: Some(pid),
            lazy_pages: Some(true),
            ps: Some(CriuPageServerInfo {
                address: Some("127.0.0.1".into()),
                port: Some(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let source = std::thread::spawn(move || {
        let mut s = Session::start();
        let (resp, _) = s.call(&dump);
        s.finish();
        resp
    });
    wait_image(&images, || source.is_finished());
    let dumped = count(&file);
    let mut daemon = lazy_daemon(&images, &port.to_string());
    let mut s = Session::start_under(&["unshare", "--pid", "--fork", "--mount-proc"]);
    let restore = CriuOpts {
        images_dir_fd: -1,
        images_dir: Some(arg(&images).into()),
        lazy_pages: Some(true),
        ..Default::default()
    };
    // The service is the namespace's init: kept (keep_open) while the counter is read.
    let mut restore = req(CriuReqType::Restore, Some(restore));
    restore.keep_open = Some(true);
    let (resp, _) = s.call(&restore);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    let dumped_resp = source.join().unwrap();
    assert!(dumped_resp.success, "{:?}", dumped_resp.cr_errmsg);
    assert!(wait_for(&mut daemon, "lazy-pages").success());
    let until = Instant::now() + Duration::from_secs(20);
    while count(&file) <= dumped + 5 {
        assert!(
            Instant::now() < until,
            "the counter did not go on after the lazy restore"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reap(victim);
    s.finish();
}
