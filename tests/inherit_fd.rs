//! `--inherit-fd fd[N]:pipe:[INO]`: a process writing into a pipe whose reader is outside
//! the tree (the test, as conmon is for a container's stdio) is dumped; the restore gives
//! it the restorer's fd N, another pipe, in place of that one: its output goes on there,
//! the count continuing from where it was.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use common::TempDir;

const LOOP: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

/// The next number a counting reader gets.
fn next(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> u64 {
    let line = lines.next().expect("a line").expect("read a line");
    line.trim().parse().expect("a number")
}

/// Dumps `pid`'s tree, again while the shell is caught in `vfork` for its `sleep` (a
/// refusal, by design: dump again once it is over).
fn dump_between_forks(pid: i32, img: &std::path::Path) -> common::Output {
    for _ in 0..50 {
        let out = common::dump(pid, img, &[]);
        if out.status.success() || !out.stderr.contains("vfork") {
            return out;
        }
        common::sleep_ms(7);
    }
    common::dump(pid, img, &[])
}

#[test]
fn a_pipe_to_outside_is_replaced_by_the_restorers_fd() {
    let _serial = common::serial();
    require_privileged!("a_pipe_to_outside_is_replaced_by_the_restorers_fd");
    let tmp = TempDir::new("inherit-fd");
    let mut child = Command::new("setsid")
        .args(["sh", "-c", LOOP])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the counter");
    let pid = child.id() as i32;
    let mut old = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut last = next(&mut old);
    let key = std::fs::read_link(format!("/proc/{pid}/fd/1")).expect("fd 1 of the counter");
    let key = key.to_string_lossy().into_owned();
    let img = tmp.join("img");
    let out = dump_between_forks(pid, &img);
    assert!(out.status.success(), "dump: {out:?}");
    let _ = child.wait();
    // The image names the tree as dumped (a `sleep` started after any earlier look).
    common::reap_image_tree(&img);
    for line in old {
        last = line.expect("read").trim().parse().expect("a number");
    }

    let (r, w) = nix::unistd::pipe().expect("pipe");
    let spec = format!("fd[{}]:{key}", w.as_raw_fd());
    let out = common::stasis(&[
        "restore",
        "-D",
        img.to_str().unwrap(),
        "-d",
        "--inherit-fd",
        &spec,
    ]);
    drop(w);
    let _guard = common::TreeGuard(vec![pid]);
    assert!(out.status.success(), "restore: {out:?}");
    let mut new = BufReader::new(std::fs::File::from(r)).lines();
    let first = next(&mut new);
    assert_eq!(first, last + 1, "the count goes on in the restorer's pipe");
    assert_eq!(next(&mut new), first + 1);
    let family = common::descendants(pid);
    common::reap_all(&family, true);
}
