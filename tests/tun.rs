//! Tun and tap devices and `/dev/net/tun` files. The round trip itself — a tree in a
//! network namespace of its own with a tun, a multi-queue tun with a detached queue, a
//! persistent tap no file holds, a tap and a file attached to nothing, each checked from
//! inside after the restore — is the `tun` victim (`tests/victims.rs`, `tun::*`). Here:
//! what is refused. A tree in stasis's own network namespace with a file attached to a
//! tun device of it is refused at dump naming the fd and the device, and keeps running.

mod common;

use common::{Start, TempDir};

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
