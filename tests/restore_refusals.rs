//! Restores the host cannot honour are refused before any process exists: an image whose
//! registers need a CPU feature this machine lacks, one whose vDSO differs from this
//! kernel's, and a seccomp task restored without CAP_SYS_ADMIN. The images are real dumps, re-encoded through the library's own codec so that
//! only the one field under test is wrong (checksums stay valid).

mod common;

use std::path::Path;

use common::{Start, TempDir};
use stasis::image::file::{encode, read, Kind};
use stasis::image::inventory::Inventory;
use stasis::image::mm::MmImage;

/// Dumps (and kills) a small `memory` victim; returns its pid and the image directory.
fn dumped(tmp: &TempDir) -> (i32, std::path::PathBuf) {
    let (victim, img) = dumped_with(tmp, &[]);
    (victim.pid, img)
}

/// Dumps (and kills) a small `memory` victim working in `tmp/work`, with dump options
/// `args`; returns the victim and the image directory.
fn dumped_with(tmp: &TempDir, args: &[&str]) -> (common::Proc, std::path::PathBuf) {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("memory", &["-s", "4"], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, args).assert_ok("dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    (victim, img)
}

/// `restore -d --skip-file-check` of `img` succeeds.
fn restore_skipping_file_check(img: &Path) {
    let out = common::stasis(&[
        std::ffi::OsStr::new("restore"),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
        "--skip-file-check".as_ref(),
    ]);
    out.assert_ok("restore --skip-file-check");
}

fn rewrite<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    kind: Kind,
    edit: impl FnOnce(&mut T),
) {
    let mut value: T = read(kind, path).expect("decode record");
    edit(&mut value);
    std::fs::write(path, encode(kind, &value).expect("encode record")).expect("write record");
}

fn restore_fails(pid: i32, img: &Path) -> String {
    let out = common::stasis(&[
        std::ffi::OsStr::new("restore"),
        "-D".as_ref(),
        img.as_os_str(),
    ]);
    let msg = out
        .assert_failed("restore that the host cannot honour")
        .to_string();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} was created anyway"
    );
    msg
}

#[test]
fn restore_refuses_missing_cpu_feature() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_missing_cpu_feature");
    let tmp = TempDir::new("cpu");
    let (pid, img) = dumped(&tmp);
    // Bit 18 is AMX tile data; claim the registers were saved with it (this CPU lacks it,
    // or if it has it, bit 62 is reserved and no CPU has it).
    let missing = if stasis::sys::cpu::xcr0() & (1 << 18) == 0 {
        1u64 << 18
    } else {
        1u64 << 62
    };
    rewrite::<Inventory>(&img.join("inventory.img"), Kind::Inventory, |inv| {
        inv.cpu.xcr0 |= missing
    });
    let msg = restore_fails(pid, &img);
    let name = stasis::sys::cpu::xfeature_names(missing).join(", ");
    assert!(
        msg.contains("CPU features") && msg.contains(&name),
        "message does not name {name}: {msg}"
    );
}

#[test]
fn restore_refuses_foreign_vdso() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_foreign_vdso");
    let tmp = TempDir::new("vdso");
    let (pid, img) = dumped(&tmp);
    let mm = img.join(format!("mm-{pid}.img"));
    rewrite::<MmImage>(&mm, Kind::Mm, |m| {
        let sym = m
            .vdso_symbols
            .first_mut()
            .expect("the victim had a vDSO with symbols");
        sym.1 += 0x40;
    });
    let msg = restore_fails(pid, &img);
    assert!(
        msg.contains("vDSO"),
        "message does not mention the vDSO: {msg}"
    );
}

#[test]
fn restore_refuses_seccomp_without_cap_sys_admin() {
    let test = "restore_refuses_seccomp_without_cap_sys_admin";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new("seccomp-cap");
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("seccomp", &["kill"], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    let out =
        match common::stasis_without_cap("sys_admin", &["restore", "-D", &img.to_string_lossy()]) {
            Ok(out) => out,
            Err(why) => return common::skip(test, &why),
        };
    let msg = out.assert_failed("restore of a seccomp task without CAP_SYS_ADMIN");
    assert!(
        msg.contains("CAP_SYS_ADMIN"),
        "message does not name CAP_SYS_ADMIN: {msg}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", victim.pid)).exists(),
        "pid {} was created anyway",
        victim.pid
    );
}

/// A file the task had open that changed after the dump (here: replaced by a copy, another
/// inode at its path) is refused, naming it and the override; `--skip-file-check`
/// restores anyway. (Only appending to it would be accepted: the victim's log is open
/// `O_WRONLY | O_APPEND`, see `tests/hpc.rs`.)
#[test]
fn restore_refuses_changed_open_file() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_changed_open_file");
    let tmp = TempDir::new("changed");
    let (victim, img) = dumped_with(&tmp, &[]);
    // The victim's stdout is its log, open at fd 1: replace it behind its back.
    let copy = victim.log.with_extension("copy");
    std::fs::copy(&victim.log, &copy).expect("copy the log");
    std::fs::rename(&copy, &victim.log).expect("replace the log");
    let msg = restore_fails(victim.pid, &img);
    let log_name = victim.log.display().to_string();
    assert!(
        msg.contains(&log_name) && msg.contains("fd 1") && msg.contains("--skip-file-check"),
        "message does not name the file, the fd and the override: {msg}"
    );
    restore_skipping_file_check(&img);
    let mut restored = common::Proc::adopt(victim.pid, &victim.log);
    restored.go_and_expect_pass();
}

/// With `dump --file-hash`, an open file whose contents were rewritten in place, keeping
/// its size and mtime, is refused, naming the file, the fd, the pid and the override;
/// `--skip-file-check` restores anyway.
#[test]
fn restore_refuses_rewritten_open_file_with_file_hash() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_rewritten_open_file_with_file_hash");
    let tmp = TempDir::new("file-hash");
    let (victim, img) = dumped_with(&tmp, &["--file-hash"]);
    // The victim's log is open at fd 1: change its first byte, then put the mtime back.
    let before = std::fs::metadata(&victim.log).expect("stat the log");
    let mut text = std::fs::read(&victim.log).expect("read the log");
    text[0] = text[0].to_ascii_lowercase();
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim.log)
        .expect("open the log");
    std::os::unix::fs::FileExt::write_all_at(&log, &text[..1], 0).expect("rewrite a byte");
    let times = std::fs::FileTimes::new()
        .set_accessed(before.accessed().expect("atime"))
        .set_modified(before.modified().expect("mtime"));
    log.set_times(times).expect("put the mtime back");
    let after = std::fs::metadata(&victim.log).expect("stat the log");
    assert_eq!(
        (after.len(), after.modified().ok()),
        (before.len(), before.modified().ok())
    );
    let msg = restore_fails(victim.pid, &img);
    let log_name = victim.log.display().to_string();
    for want in [&log_name, "fd 1", "contents", &victim.pid.to_string()] {
        assert!(msg.contains(want), "message does not name {want:?}: {msg}");
    }
    restore_skipping_file_check(&img);
    // The log's READY line is now "rEADY": check the pass by hand.
    let mut restored = common::Proc::adopt(victim.pid, &victim.log);
    let st = restored.go();
    let log = restored.log_text();
    assert_eq!(
        st,
        common::Status::Exited(0),
        "restored victim failed:\n{log}"
    );
    assert_eq!(log, "rEADY\nPASS\n", "restored victim's log");
}

/// A pty the tree created comes back under its own pts number, or not at all: with that
/// number taken on the host, the restore is refused naming it before any process exists.
#[test]
fn restore_refuses_taken_pts_number() {
    let test = "restore_refuses_taken_pts_number";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("pty", &[], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    let tty: stasis::image::tty::TtyImage =
        read(Kind::Tty, &img.join(stasis::image::tty::TTY)).expect("decode tty.img");
    let want = tty.ptys.first().expect("the victim's pty is saved").index;
    // Hold masters until the saved number is ours.
    let mut held = Vec::new();
    loop {
        let master = nix::pty::posix_openpt(nix::fcntl::OFlag::O_RDWR).expect("posix_openpt");
        let name = nix::pty::ptsname_r(&master).expect("ptsname");
        held.push(master);
        let n: u32 = name
            .trim_start_matches("/dev/pts/")
            .parse()
            .expect("a pts number");
        if n >= want || held.len() > 4096 {
            break;
        }
    }
    let msg = restore_fails(victim.pid, &img);
    assert!(
        msg.contains(&format!("/dev/pts/{want} is in use")),
        "the refusal does not name /dev/pts/{want}: {msg}"
    );
}
