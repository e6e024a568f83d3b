//! Tun and tap devices and `/dev/net/tun` files. The round trip itself — a tree in a
//! network namespace of its own with a tun, a multi-queue tun with a detached queue, a
//! persistent tap no file holds, a tap and a file attached to nothing, each checked from
//! inside after the restore — is the `tun` victim (`tests/victims.rs`, `tun::*`). Here:
//! what is refused. A tree in stasis's own network namespace with a file attached to a
//! tun device of it is refused at dump naming the fd and the device, and keeps running;
//! so is a tree one of whose devices has a queue held by a process outside it, and one
//! with a persistent tap that is up while no file holds it (reading its settings would
//! turn its carrier on where the tree sees it).

mod common;

use std::process::{Command, Stdio};

use common::{Start, TempDir};

/// Attaches one more queue to the multi-queue tun `smq0` of the network namespace of
/// `pid` (a python3 process outside the tree, which holds it until killed).
const HOLD_QUEUE: &str = "import fcntl, os, struct, sys
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH22x', b'smq0', 0x4101))
print('held', flush=True)
sys.stdin.read()";

/// The `tun` victim started with `args` in a temporary directory of `test`; `None`
/// (said why) where it cannot run here.
fn start(test: &str, args: &[&str]) -> Option<(TempDir, common::Proc)> {
    if let Err(why) = common::privileged() {
        common::skip(test, &why);
        return None;
    }
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("tun", args, &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return None;
    }
    Some((tmp, victim))
}

/// Checks that the dump of `victim` (`out`) was refused with a message naming each of
/// `needles`, and that the victim runs on untouched and passes.
fn expect_refused(victim: &mut common::Proc, out: common::Output, needles: &[&str]) {
    let msg = out.assert_failed("dump of the tun victim");
    for needle in needles {
        assert!(
            msg.contains(needle),
            "message does not name {needle:?}: {msg}"
        );
    }
    common::assert_untouched(victim);
    victim.go_and_expect_pass();
}

#[test]
fn tun_of_the_dumpers_namespace_is_refused() {
    let test = "tun_of_the_dumpers_namespace_is_refused";
    let _serial = common::serial();
    let Some((tmp, mut victim)) = start(test, &["host"]) else {
        return;
    };
    let device = format!("sth{}", victim.pid % 100_000);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let pid = victim.pid.to_string();
    expect_refused(&mut victim, out, &["fd 11", &pid, &device, "tun device"]);
}

#[test]
fn tun_queue_held_outside_the_tree_is_refused() {
    let test = "tun_queue_held_outside_the_tree_is_refused";
    let _serial = common::serial();
    let Some((tmp, mut victim)) = start(test, &[]) else {
        return;
    };
    let holder = Command::new("nsenter")
        .args([
            "-t",
            &victim.pid.to_string(),
            "-n",
            "python3",
            "-c",
            HOLD_QUEUE,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut holder) = holder else {
        common::skip(test, "needs nsenter and python3");
        let _ = common::kill(victim.pid, libc::SIGKILL);
        return;
    };
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("piped stdout");
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    assert_eq!(line.trim(), "held", "the holder could not attach to smq0");
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    let needles = ["tun device smq0", "has 3 files attached", "holds 2"];
    expect_refused(&mut victim, out, &needles);
}

#[test]
fn tun_up_with_no_file_attached_is_refused() {
    let test = "tun_up_with_no_file_attached_is_refused";
    let _serial = common::serial();
    let Some((tmp, mut victim)) = start(test, &["up"]) else {
        return;
    };
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    expect_refused(&mut victim, out, &["stapup", "up with no file attached"]);
}
