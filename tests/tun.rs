//! Tun and tap devices and `/dev/net/tun` files. The round trip itself — a tree in a
//! network namespace of its own with a tun, a multi-queue tun with a detached queue, a
//! persistent tap no file holds, a tap and a file attached to nothing, each checked from
//! inside after the restore — is the `tun` victim (`tests/victims.rs`, `tun::*`). Here:
//! what is refused. A tree in stasis's own network namespace with a file attached to a
//! tun device of it is refused at dump naming the fd and the device, and keeps running;
//! so is a tree one of whose devices has a queue held by a process outside it.

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

#[test]
fn tun_of_the_dumpers_namespace_is_refused() {
    let test = "tun_of_the_dumpers_namespace_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("tun", &["host"], &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return;
    }
    let device = format!("sth{}", victim.pid % 100_000);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a tun file of the dumper's namespace");
    for needle in ["fd 11", &victim.pid.to_string(), &device, "tun device"] {
        assert!(
            msg.contains(needle),
            "message does not name {needle:?}: {msg}"
        );
    }
    common::assert_untouched(&victim);
    victim.go_and_expect_pass();
}

#[test]
fn tun_queue_held_outside_the_tree_is_refused() {
    let test = "tun_queue_held_outside_the_tree_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("tun", &[], &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return;
    }
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
    let msg = out.assert_failed("dump of a tun device with a queue held outside");
    for needle in ["tun device smq0", "has 3 files attached", "holds 2"] {
        assert!(
            msg.contains(needle),
            "message does not name {needle:?}: {msg}"
        );
    }
    common::assert_untouched(&victim);
    victim.go_and_expect_pass();
}
