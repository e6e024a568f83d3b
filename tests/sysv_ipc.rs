//! System V objects that survive the dump (the host's namespace: the dump kills processes,
//! not objects). A segment still there at restore with its id is reused only if it is the
//! dumped one, and then gets the saved contents back; another object holding the id is
//! refused, naming it, before any process exists. In the dumper's own (non-initial)
//! namespace every object is saved: removed between dump and restore, all come back.

mod common;

use std::path::Path;

use common::{Proc, Start, Status, TempDir};
use stasis::image::file::{read, Kind};
use stasis::image::sysv::{SysvImage, SHM_DEST, SYSV};
use stasis::sys::ipc;

/// Dumps (and kills) the `sysv` victim run with `arg`; returns it, the image and its
/// System V record.
fn dumped_with(tmp: &TempDir, arg: &str) -> (Proc, std::path::PathBuf, SysvImage) {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("sysv", &[arg], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    common::sleep_ms(200);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    common::reap_image_tree(&img);
    let sysv: SysvImage = read(Kind::Sysv, &img.join(SYSV)).expect("sysv.img");
    (victim, img, sysv)
}

/// The `sysv host` victim dumped; its segment A (the surviving, keyed one) in the image.
fn dumped(tmp: &TempDir) -> (Proc, std::path::PathBuf, stasis::image::sysv::ShmSegment) {
    let (victim, img, sysv) = dumped_with(tmp, "host");
    let a = sysv.shm.iter().find(|s| s.perm.mode & SHM_DEST == 0);
    (victim, img, a.expect("segment A is saved").clone())
}

/// Attaches segment `id` (of `len` bytes) writable and fills it with `byte`.
fn scribble(id: i32, len: usize, byte: u8) {
    let at = ipc::attach(id, len, false).expect("shmat");
    at.copy_in(0, &vec![byte; len]);
}

/// `restore -d` of `img`, go: the victim must pass.
fn restore_and_pass(img: &Path, victim: &Proc) {
    let pid = common::restore_detached(img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    let mut restored = Proc::adopt(pid, &victim.log);
    let st = restored.go();
    assert_eq!(
        st,
        Status::Exited(0),
        "victim log:\n{}",
        restored.log_text()
    );
}

#[test]
fn restore_writes_back_a_surviving_segment() {
    let _serial = common::serial();
    require_privileged!("restore_writes_back_a_surviving_segment");
    let tmp = TempDir::new("sysv-writeback");
    let (victim, img, a) = dumped(&tmp);
    scribble(a.perm.id, a.size as usize, 0x5a);
    restore_and_pass(&img, &victim);
}

#[test]
fn restore_refuses_another_segment_holding_the_id() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_another_segment_holding_the_id");
    let tmp = TempDir::new("sysv-taken");
    let (victim, img, a) = dumped(&tmp);
    ipc::shmctl(a.perm.id, libc::IPC_RMID, "IPC_RMID").expect("remove A");
    std::fs::write("/proc/sys/kernel/shm_next_id", a.perm.id.to_string()).expect("shm_next_id");
    let other = ipc::shmget(libc::IPC_PRIVATE, 4096, 0o600).expect("shmget");
    assert_eq!(other, a.perm.id, "the other segment did not get A's id");
    let out = common::stasis(&[
        std::ffi::OsStr::new("restore"),
        "-D".as_ref(),
        img.as_os_str(),
    ]);
    let msg = out
        .assert_failed("restore over another segment")
        .to_string();
    let _ = ipc::shmctl(other, libc::IPC_RMID, "IPC_RMID");
    assert!(
        msg.contains(&format!(
            "id {} exists here but is not the dumped one",
            a.perm.id
        )),
        "{msg}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", victim.pid)).exists(),
        "the victim was created"
    );
}

#[test]
fn dumper_namespace_objects_come_back_after_removal() {
    let _serial = common::serial();
    require_privileged!("dumper_namespace_objects_come_back_after_removal");
    // A thread of our own moves into a new IPC namespace (namespaces are per thread);
    // what it spawns (the victim, stasis, ipcrm) starts there.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).expect("unshare IPC");
        let tmp = TempDir::new("sysv-dumper");
        let (victim, img, sysv) = dumped_with(&tmp, "shared");
        assert_eq!(sysv.ns, stasis::image::sysv::IpcNs::Dumper);
        assert_eq!((sysv.shm.len(), sysv.sem.len(), sysv.msg.len()), (3, 1, 1));
        let removed = std::process::Command::new("ipcrm").arg("-a").status();
        assert!(removed.is_ok_and(|s| s.success()), "ipcrm -a");
        let left = std::fs::read_to_string("/proc/sysvipc/shm").expect("/proc/sysvipc/shm");
        assert_eq!(left.lines().count(), 1, "objects left:\n{left}");
        restore_and_pass(&img, &victim);
    })
    .join()
    .expect("the test thread");
}

/// Runs victim `name` with `arg`, whose dump stasis must refuse with a message holding
/// `expect`, leaving the tree running untouched (the victim then verifies its state).
fn refused_dump(name: &str, arg: &str, expect: &str) {
    let tmp = TempDir::new(&format!("{name}-{arg}"));
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim(name, &[arg], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let _family = common::TreeGuard(common::descendants(victim.pid));
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out
        .assert_failed(&format!("dump of {name} {arg}"))
        .to_string();
    assert!(msg.contains(expect), "{msg}");
    assert_eq!(
        victim.go(),
        Status::Exited(0),
        "victim log:\n{}",
        victim.log_text()
    );
}

#[test]
fn dump_refuses_an_unattached_segment_under_shm_rmid_forced() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_an_unattached_segment_under_shm_rmid_forced");
    refused_dump(
        "sysv",
        "rmid_forced",
        "is attached by no process and kernel.shm_rmid_forced is set",
    );
}

/// The refused dump read every queue before the refused one and put their messages
/// back in order (the victim checks them).
#[test]
fn dump_refuses_a_posix_queue_with_a_notification_and_leaves_the_queues() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_a_posix_queue_with_a_notification_and_leaves_the_queues");
    refused_dump(
        "mqueue",
        "notify",
        "POSIX message queue /stasis_empty has an mq_notify registration",
    );
}

#[test]
fn dump_refuses_a_posix_queue_of_another_ipc_namespace() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_a_posix_queue_of_another_ipc_namespace");
    refused_dump("mqueue", "foreign", "fd 14 of pid");
}
