//! Failure paths: a dump that fails must leave its target running, untraced and intact
//! (the victim still PASSes its own verification afterwards); a restore that fails must
//! name what is wrong and create no process.
//!
//! Most victims here are `memory` (its verification covers every byte it holds).

mod common;

use common::{Proc, Start, Status, TempDir};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Spawn `memory ARGS` in tmp/work and wait for READY.
fn memory_victim(tmp: &TempDir, args: &[&str]) -> Proc {
    let mut victim = victim_in(tmp, "memory", args);
    assert_eq!(victim.wait_ready(), Start::Ready);
    victim
}

/// The failed dump's aftermath: the victim runs freely, then passes on go.
fn assert_survived(mut victim: Proc) {
    common::assert_untouched(&victim);
    victim.go_and_expect_pass();
}

/// The dump failed (exit 1, one message) naming the pid and each of `needles`; returns
/// the message.
fn assert_refused(out: &common::Output, what: &str, pid: i32, needles: &[&str]) -> String {
    let msg = out.assert_failed(what);
    for n in needles.iter().copied().chain([pid.to_string().as_str()]) {
        assert!(
            msg.contains(n),
            "{what}: message does not name {n:?}: {msg}"
        );
    }
    msg.to_string()
}

/// Spawns victim `name ARGS` in tmp/work.
fn victim_in(tmp: &TempDir, name: &str, args: &[&str]) -> Proc {
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    common::spawn_victim(name, args, &work)
}

fn assert_no_image(dir: &Path) {
    let found = common::find_inventories(dir);
    assert!(
        found.is_empty(),
        "a failed dump left complete-looking images: {found:?}"
    );
}

/// A victim holding at fd 10 a kind of file stasis refuses (`unsupported KIND`); the
/// message says `fd 10 of pid PID{what}`.
fn refused_kind(test: &str, kind: &str, what: &str) {
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("unsupported", &[kind], &work);
    if let Start::Skip(why) = victim.wait_ready() {
        common::skip(test, &why);
        return;
    }
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed(&format!("dump of a task holding {what}"));
    let want = format!("fd 10 of pid {}{what}", victim.pid);
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert_no_image(tmp.path());
    assert_survived(victim);
}

#[test]
fn dump_refuses_io_uring() {
    refused_kind(
        "dump_refuses_io_uring",
        "io_uring",
        " is an io_uring instance",
    );
}

#[test]
fn dump_refuses_userfaultfd() {
    refused_kind(
        "dump_refuses_userfaultfd",
        "userfaultfd",
        " is a userfaultfd",
    );
}

#[test]
fn dump_refuses_ebpf_socket_filter() {
    refused_kind(
        "dump_refuses_ebpf_socket_filter",
        "ebpf_filter",
        ": SO_ATTACH_FILTER is an eBPF program",
    );
}

#[test]
fn dump_refuses_corked_udp_data() {
    refused_kind(
        "dump_refuses_corked_udp_data",
        "corked_udp",
        ": a datagram socket holds corked data not yet sent",
    );
}

#[test]
fn dump_refuses_packet_socket_with_packets_queued() {
    refused_kind(
        "dump_refuses_packet_socket_with_packets_queued",
        "packet_queued",
        " is a packet socket with received packets not read yet",
    );
}

/// A process in a network namespace holding a link stasis cannot make again (a vxlan
/// device) is refused, naming the link and its kind: restored without it, the namespace
/// would silently lack an interface.
#[test]
fn dump_refuses_a_network_namespace_with_a_vxlan_link() {
    let test = "dump_refuses_a_network_namespace_with_a_vxlan_link";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    let script = "ip link add stasis-x0 type vxlan id 5 dstport 4789 && exec \"$0\" \"$@\"";
    let wrapper = ["unshare", "--net", "--", "sh", "-c", script];
    let mut victim = common::spawn_victim_under(&wrapper, "memory", &["-s", "1"], &work);
    if victim.wait_ready() != Start::Ready {
        common::skip(
            test,
            "unshare --net and ip link add type vxlan could not start the victim",
        );
        return;
    }
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let what = "dump of a task in a network namespace with a vxlan link";
    let named = ["link stasis-x0", "vxlan link"];
    assert_refused(&out, what, victim.pid, &named);
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A memfd open and mapped only in part is refused (only the mapped part is saved),
/// naming the fd and the mapping.
#[test]
fn dump_refuses_memfd_both_mapped_and_open() {
    let test = "dump_refuses_memfd_both_mapped_and_open";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let mut victim = victim_in(&tmp, "unlinked_maps", &["open"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let _family = common::TreeGuard(common::descendants(victim.pid));
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let what = "dump of a task with a memfd both mapped and open";
    assert_refused(&out, what, victim.pid, &["fd 10", "a memfd", "also mapped"]);
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A child that maps its parent's AIO ring (inherited by fork) without owning the context
/// is refused, naming it.
#[test]
fn dump_refuses_inherited_aio_ring() {
    let test = "dump_refuses_inherited_aio_ring";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let mut victim = victim_in(&tmp, "aio", &["forked"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let family = common::descendants(victim.pid);
    let _family = common::TreeGuard(family.clone());
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let what = "dump of a child mapping its parent's AIO ring";
    let msg = out.assert_failed(what);
    let child = format!("pid {} maps the AIO ring", family[0]);
    assert!(
        msg.contains(&child) && msg.contains("does not own"),
        "{what}: message does not name {child:?}: {msg}"
    );
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A memfd mapped only privately is refused (no shared mapping saves its contents),
/// naming the mapping; so is a privately mapped deleted file above `--ghost-limit`,
/// naming the flag.
#[test]
fn dump_refuses_private_mappings_it_cannot_save() {
    let test = "dump_refuses_private_mappings_it_cannot_save";
    let _serial = common::serial();
    require_privileged!(test);
    for (args, limit, words) in [
        (
            &["alone"][..],
            "1M",
            &["/memfd:alone", "no shared mapping"][..],
        ),
        (&[][..], "4K", &["pm-deleted", "--ghost-limit"][..]),
    ] {
        let tmp = TempDir::new(test);
        let mut victim = victim_in(&tmp, "private_maps", args);
        assert_eq!(victim.wait_ready(), Start::Ready);
        let out = common::dump(victim.pid, &tmp.join("img"), &["--ghost-limit", limit]);
        let what = format!("dump of private_maps {args:?} with --ghost-limit {limit}");
        let mut want = vec!["mapping", "private mapping of"];
        want.extend(words);
        assert_refused(&out, &what, victim.pid, &want);
        assert_no_image(tmp.path());
        assert_survived(victim);
    }
}

/// A deleted-but-open file above `--ghost-limit` is refused, naming the fd and the flag.
#[test]
fn dump_refuses_ghost_above_limit() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_ghost_above_limit");
    let tmp = TempDir::new("ghost-limit");
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("ghost", &[], &work);
    if let Start::Skip(why) = victim.wait_ready() {
        return common::skip("dump_refuses_ghost_above_limit", &why);
    }
    let out = common::dump(victim.pid, &tmp.join("img"), &["--ghost-limit", "4K"]);
    let msg = out.assert_failed("dump of a 5000-byte ghost file with a 4 KiB limit");
    let want = format!("fd 10 of pid {} is deleted file", victim.pid);
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert!(
        msg.contains("--ghost-limit"),
        "message does not name the flag: {msg}"
    );
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// The `ghost remap` victim, ready, or None if it skips.
fn remap_victim(test: &str, tmp: &TempDir) -> Option<Proc> {
    let mut victim = victim_in(tmp, "ghost", &["remap"]);
    match victim.wait_ready() {
        Start::Ready => Some(victim),
        Start::Skip(why) => {
            common::skip(test, &why);
            None
        }
    }
}

/// Files whose name was unlinked that a ghost cannot hold — a deleted one above
/// `--ghost-limit`, one that keeps another link — are refused without `--link-remap`,
/// naming the fd and the option.
#[test]
fn dump_refuses_unlinked_files_without_link_remap() {
    let test = "dump_refuses_unlinked_files_without_link_remap";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new("no-link-remap");
    let Some(victim) = remap_victim(test, &tmp) else {
        return;
    };
    let cases: [(&[&str], &str); 2] = [
        (&["--file-locks"], "fd 10 of pid {} is deleted file"),
        (
            &["--file-locks", "--ghost-limit", "8M"],
            "fd 14 of pid {} is open on",
        ),
    ];
    for (flags, want) in cases {
        let out = common::dump(victim.pid, &tmp.join("img"), flags);
        let want = want.replace("{}", &victim.pid.to_string());
        assert_refused(
            &out,
            "dump without --link-remap",
            victim.pid,
            &[&want, "--link-remap"],
        );
        assert_no_image(tmp.path());
    }
    assert_survived(victim);
}

/// A dump with `--link-remap` that fails after links were made (a lock held without
/// `--file-locks`, on an fd after them) removes them: the victim checks that no
/// `.stasis-link-` file is left beside its files.
#[test]
fn failed_dump_removes_remap_links() {
    let test = "failed_dump_removes_remap_links";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new("link-remap-failed");
    let Some(victim) = remap_victim(test, &tmp) else {
        return;
    };
    let out = common::dump(victim.pid, &tmp.join("img"), &["--link-remap"]);
    assert_refused(&out, "dump with a lock", victim.pid, &["--file-locks"]);
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A pipe with a third open file description (a child opened the read end again
/// through /proc) is refused, naming the fd, the child's pid and the kind.
#[test]
fn dump_refuses_third_pipe_description() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_third_pipe_description");
    let tmp = TempDir::new("third-pipe");
    let mut victim = victim_in(&tmp, "split", &["third"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let kids = common::descendants(victim.pid);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a pipe with three open file descriptions");
    let named = kids.iter().any(|k| {
        msg.contains(&format!(
            "fd 30 of pid {k} is a third open file description of a pipe"
        ))
    });
    assert!(
        named,
        "message does not name fd 30 of a child ({kids:?}): {msg}"
    );
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// An epoll registration whose file only a later process of the tree holds (the root
/// closed it after forking) cannot be rebuilt when the root is restored: refused,
/// naming the root, its epoll fd, the registered number and the holder.
#[test]
fn dump_refuses_epoll_target_held_by_a_later_process() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_epoll_target_held_by_a_later_process");
    let tmp = TempDir::new("epoll-later");
    let mut victim = victim_in(&tmp, "epoll_moved", &["later"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let kids = common::descendants(victim.pid);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of an epoll watching a file only a later process holds");
    let want = format!(
        "fd 10 of pid {} is an epoll instance watching a file registered as fd 25, which only pid {}",
        victim.pid, kids[0]
    );
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// An epoll registration whose file no fd holds any more (only a message in flight
/// keeps it) is refused, naming the pid, the epoll fd and the registered number.
#[test]
fn dump_refuses_epoll_target_in_no_fd_table() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_epoll_target_in_no_fd_table");
    let tmp = TempDir::new("epoll-unreachable");
    let mut victim = victim_in(&tmp, "epoll_moved", &["unreachable"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of an epoll watching a file no fd holds");
    let want = format!(
        "fd 10 of pid {} is an epoll instance watching a file registered as fd 26, which no fd of the tree holds any more",
        victim.pid
    );
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A fanotify permission group with a request queued (a process outside the tree waits
/// for the answer) is refused, naming the fd and the pid.
#[test]
fn dump_refuses_fanotify_permission_requests() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_fanotify_permission_requests");
    let tmp = TempDir::new("fanotify-perm");
    let mut victim = victim_in(&tmp, "fanotify", &["perm"]);
    if let Start::Skip(why) = victim.wait_ready() {
        return common::skip("dump_refuses_fanotify_permission_requests", &why);
    }
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a fanotify group with a permission request queued");
    let want = format!(
        "fd 12 of pid {} is a fanotify group of a permission class",
        victim.pid
    );
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A held lock without `--file-locks` is refused, naming the fd and the pid.
#[test]
fn dump_refuses_locks_without_file_locks() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_locks_without_file_locks");
    let tmp = TempDir::new("locks");
    let work = tmp.join("work");
    fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("locks", &[], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a task holding file locks");
    let want = format!("fd 10 of pid {} holds a FLOCK lock", victim.pid);
    assert!(msg.contains(&want), "message does not say {want:?}: {msg}");
    assert!(
        msg.contains("--file-locks"),
        "message does not name the flag: {msg}"
    );
    assert_no_image(tmp.path());
    assert_survived(victim);
}

#[test]
fn dump_refuses_memfd_secret() {
    let test = "dump_refuses_memfd_secret";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new("secret");
    let mut victim = victim_in(&tmp, "memory", &["-s", "1", "-S"]);
    if let Start::Skip(why) = victim.wait_ready() {
        return common::skip(test, &why);
    }
    let log = victim.log_text();
    let addr = log
        .lines()
        .find_map(|l| l.strip_prefix("SECRET "))
        .unwrap_or_else(|| panic!("no SECRET line in the log:\n{log}"))
        .to_string();
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let what = "dump of a task with a memfd_secret mapping";
    assert_refused(&out, what, victim.pid, &["memfd_secret", &addr]);
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// Dies by SIGSYS after go, as `seccomp kill` does while its filter is in force.
fn assert_still_filtered(mut victim: Proc) {
    let st = victim.go();
    let log = victim.log_text();
    assert_eq!(st, Status::Signaled(libc::SIGSYS), "log:\n{log}");
    assert_eq!(log.lines().last(), Some("CALLING getpid"), "log:\n{log}");
}

/// Seccomp is suspended while the dump runs syscalls in the task; a task dumped with
/// `-R` (left running) gets its filter back with the detach.
#[test]
fn leave_running_dump_keeps_seccomp() {
    let _serial = common::serial();
    require_privileged!("leave_running_dump_keeps_seccomp");
    let tmp = TempDir::new("seccomp-r");
    let mut victim = victim_in(&tmp, "seccomp", &["kill"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    common::dump(victim.pid, &tmp.join("img"), &["-R"]).assert_ok("stasis dump -R");
    common::assert_untouched(&victim);
    assert_still_filtered(victim);
}

/// Children stopped by job control, dumped with `-R`, stay stopped by the same signal,
/// with no stop signal left queued but the SIGSTOPs that were (the `stopped` victim
/// checks all that after go, as after a restore).
#[test]
fn leave_running_dump_keeps_stops() {
    let _serial = common::serial();
    require_privileged!("leave_running_dump_keeps_stops");
    let tmp = TempDir::new("stopped-r");
    let mut victim = victim_in(&tmp, "stopped", &[]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    common::dump(victim.pid, &tmp.join("img"), &["-R"]).assert_ok("stasis dump -R");
    common::assert_untouched(&victim);
    let st = victim.go();
    let log = victim.log_text();
    assert_eq!(st, Status::Exited(0), "log:\n{log}");
    assert_eq!(log.lines().last(), Some("PASS"), "log:\n{log}");
}

/// Seccomp is dumped with `PTRACE_O_SUSPEND_SECCOMP`, which needs CAP_SYS_ADMIN: without
/// it the dump is refused saying so, and the task keeps its filter (it still dies by
/// SIGSYS on getpid after go).
#[test]
fn dump_refuses_seccomp_without_cap_sys_admin() {
    let test = "dump_refuses_seccomp_without_cap_sys_admin";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new("seccomp-cap");
    let mut victim = victim_in(&tmp, "seccomp", &["kill"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let pid = victim.pid.to_string();
    let img = tmp.join("img");
    let args = ["dump", "-t", &pid, "-D", &img.to_string_lossy()];
    let out = match common::stasis_without_cap("sys_admin", &args) {
        Ok(out) => out,
        Err(why) => return common::skip(test, &why),
    };
    let what = "dump of a seccomp task without CAP_SYS_ADMIN";
    assert_refused(&out, what, victim.pid, &["CAP_SYS_ADMIN"]);
    assert_no_image(tmp.path());
    common::assert_untouched(&victim);
    assert_still_filtered(victim);
}

#[test]
fn dump_refuses_foreign_session() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_foreign_session");
    let tmp = TempDir::new("session");
    let work = tmp.join("work");
    fs::create_dir(&work).expect("mkdir work");
    let mut victim = common::spawn_victim_in_our_session("memory", &["-s", "1"], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a task in our session");
    assert!(
        msg.contains("session") || msg.contains("shell-job"),
        "message does not explain the session: {msg}"
    );
    assert_no_image(tmp.path());
    common::assert_untouched(&victim);
    victim.go_and_expect_pass();
}

/// A pty slave whose master is outside the tree (the test holds it) is the invoking
/// terminal: without `--shell-job` the dump is refused, naming the fd and the pts, and
/// the victim runs on untouched.
#[test]
fn dump_refuses_a_terminal_from_outside() {
    use nix::fcntl::OFlag;
    let _serial = common::serial();
    require_privileged!("dump_refuses_a_terminal_from_outside");
    let tmp = TempDir::new("outside-pty");
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let slave = nix::pty::ptsname_r(&master).expect("ptsname");
    let mut victim = common::spawn_logged(
        std::process::Command::new("sh")
            .args(["-c", "exec \"$0\" -s 1 < \"$1\""])
            .arg(common::victim_bin("memory"))
            .arg(&slave)
            .current_dir(tmp.path()),
        &tmp.join("memory.log"),
    );
    assert_eq!(victim.wait_ready(), Start::Ready);
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a task on a terminal from outside");
    assert!(
        msg.contains(&slave) && msg.contains("terminal") && msg.contains("shell-job"),
        "message does not name the terminal: {msg}"
    );
    assert_no_image(tmp.path());
    common::assert_untouched(&victim);
    victim.go_and_expect_pass();
    drop(master);
}

#[test]
fn dump_refuses_nonempty_dir() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_nonempty_dir");
    let tmp = TempDir::new("nonempty");
    let victim = memory_victim(&tmp, &["-s", "1"]);
    let img = tmp.join("img");
    fs::create_dir(&img).expect("mkdir img");
    fs::write(img.join("precious.txt"), "keep me").expect("write");
    let out = common::dump(victim.pid, &img, &[]);
    let msg = out.assert_failed("dump into a non-empty directory");
    assert!(
        msg.contains(&img.display().to_string()) || msg.contains("empty"),
        "message does not name the directory: {msg}"
    );
    assert_eq!(
        fs::read_to_string(img.join("precious.txt")).ok().as_deref(),
        Some("keep me")
    );
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A tmpfs mounted for one test, lazily unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn dump_full_disk() {
    let _serial = common::serial();
    require_privileged!("dump_full_disk");
    let tmp = TempDir::new("fulldisk");
    let mnt = match Mount::tmpfs(&tmp.join("mnt"), "1M") {
        Ok(m) => m,
        Err(why) => return common::skip("dump_full_disk", &why),
    };
    let victim = memory_victim(&tmp, &["-s", "64"]);
    let out = common::dump(victim.pid, &mnt.0.join("img"), &[]);
    let msg = out.assert_failed("dump onto a full filesystem");
    assert!(
        msg.contains("No space left") || msg.contains("ENOSPC"),
        "message does not say the disk is full: {msg}"
    );
    assert_no_image(&mnt.0);
    assert_survived(victim);
}

#[test]
fn dump_killed_midway() {
    let _serial = common::serial();
    require_privileged!("dump_killed_midway");
    let mut interrupted = 0;
    // Kill points: once this many MiB of the victim's 512 MiB are in the pages file, i.e.
    // truly mid-way through the memory dump. (The injected queries before it are a
    // documented, sub-millisecond window that no kill point here aims at.)
    for mib in [16u64, 128, 384] {
        let tmp = TempDir::new(&format!("killed-{mib}"));
        let mut victim = memory_victim(&tmp, &["-s", "512"]);
        let img = tmp.join("img");
        let mut dump = common::start(&mut common::dump_cmd(victim.pid, &img, &[]));
        wait_for_pages(tmp.path(), mib << 20, Duration::from_secs(60));
        dump.kill(); // (a no-op if it already exited)
        let out = dump.finish(Duration::from_secs(10));
        if out.status.code().is_some() {
            // It won the race: a complete dump, which killed the victim.
            out.assert_ok("a dump that finished before the kill");
            eprintln!("note: the dump finished before {mib} MiB were seen; attempt not counted");
            let _ = victim.wait_exit(Duration::from_secs(10));
            continue;
        }
        interrupted += 1;
        assert_no_image(tmp.path());
        // The tracer is gone and reaped, so the kernel has detached it already.
        assert_survived(victim);
    }
    assert!(
        interrupted > 0,
        "every dump of 512 MiB finished before the kill; nothing tested"
    );
}

/// Waits until the pages files under `dir` (in the dump's temporary directory) hold
/// `bytes` in all.
fn wait_for_pages(dir: &Path, bytes: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pages_bytes(dir) >= bytes {
            return;
        }
        common::sleep_ms(1);
    }
    panic!(
        "the dump never wrote {bytes} bytes of pages under {}",
        dir.display()
    );
}

fn pages_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("stasis-tmp"))
        .filter_map(|e| fs::read_dir(e.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("pages-"))
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

// ---------------------------------------------------------------------------------------
// Restore failures. The original keeps running (dumped with -R) and the failed restore
// must not create any process: same pid, same start time, same number of `memory`s.

/// A victim dumped with --leave-running into tmp/img.
fn dumped_running(tmp: &TempDir) -> Proc {
    let victim = memory_victim(tmp, &["-s", "4"]);
    common::dump(victim.pid, &tmp.join("img"), &["-R"]).assert_ok("stasis dump -R");
    common::assert_untouched(&victim);
    victim
}

/// `stasis restore` of `img` must fail with exit 1 and leave the process table as it was.
fn assert_restore_fails(victim: &Proc, img: &Path) -> String {
    let started = common::start_time(victim.pid);
    let memories = common::count_comm("memory");
    let out = common::restore_detached(img).expect_err("restore succeeded");
    let msg = out.assert_failed("restore").to_string();
    if let Ok(text) = fs::read_to_string(img.with_extension("pid")) {
        panic!("a failed restore wrote a pidfile ({text:?}); message: {msg}");
    }
    assert_eq!(
        common::start_time(victim.pid),
        started,
        "pid {} is another process now",
        victim.pid
    );
    assert_eq!(
        common::count_comm("memory"),
        memories,
        "the failed restore left a process behind"
    );
    common::assert_untouched(victim);
    msg
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read image dir") {
        let e = e.expect("dir entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy image file");
    }
}

fn image_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let listing: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(p.exists(), "image has no {name}; it holds {listing:?}");
    p
}

/// Dump a victim, corrupt `file` in a copy of the image with `corrupt`, restore the copy.
fn corrupt_case(test: &str, file: impl Fn(i32) -> String, corrupt: impl Fn(&Path)) {
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let victim = dumped_running(&tmp);
    let name = file(victim.pid);
    let bad = tmp.join("bad");
    copy_dir(&tmp.join("img"), &bad);
    corrupt(&image_file(&bad, &name));
    let msg = assert_restore_fails(&victim, &bad);
    assert!(msg.contains(&name), "message does not name {name}: {msg}");
    assert_survived(victim);
}

fn patch(path: &Path, offset: u64, bytes: impl FnOnce(&mut [u8])) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open image file");
    let len = f.metadata().expect("stat").len();
    assert!(offset + 4 <= len, "{} is only {len} bytes", path.display());
    let mut buf = [0u8; 4];
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.read_exact(&mut buf).expect("read");
    bytes(&mut buf);
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&buf).expect("write");
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

#[test]
fn restore_rejects_flipped_page_byte() {
    corrupt_case(
        "restore_rejects_flipped_page_byte",
        |pid| format!("pages-{pid}.img"),
        |p| patch(p, len(p) / 2, |b| b[0] ^= 0x01),
    );
}

/// A large image's pages are checked as memory is filled from them (`restore/checked.rs`),
/// not in a pass before: a byte flipped in each of its pages files (at `at(data_len)` of
/// each one's data) is still found before the tree runs. The restore fails naming a
/// pages file, and none of the processes it made is left (the victim was killed by the
/// dump, so its pid is the restored process's); the profile shows the check after the
/// fill did the finding.
fn pages_checked_while_filling_case(test: &str, at: impl Fn(u64) -> u64) {
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    // 64 MiB of random memory: above `checked::WHILE_FILLING_MIN`.
    let mut victim = memory_victim(&tmp, &["-s", "64"]);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("stasis dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    let pid = victim.pid;
    let pages: Vec<PathBuf> = (0..8u8)
        .map(|s| img.join(stasis::image::load::pages_name(pid, s)))
        .filter(|p| p.exists())
        .collect();
    assert!(!pages.is_empty(), "no pages file of pid {pid}");
    for p in &pages {
        let data = len(p) - 4096;
        patch(p, 4096 + at(data), |b| b[0] ^= 0x10);
    }
    let memories = common::count_comm("memory");
    let mut cmd = common::stasis_cmd(&["restore".as_ref(), "-D".as_ref(), img.as_os_str()]);
    let out =
        common::start(cmd.args(["-d"]).env("STASIS_PROFILE", "1")).finish(common::STASIS_TIMEOUT);
    let msg = out.assert_failed("restore").to_string();
    assert!(
        msg.contains(&format!("pages-{pid}")) && msg.contains("checksum"),
        "message names no pages file of pid {pid} or no checksum: {msg}"
    );
    assert!(
        out.stderr.contains("pages checked after filling"),
        "the check after the fill did not run:\n{}",
        out.stderr
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the failed restore left pid {pid}"
    );
    assert_eq!(
        common::count_comm("memory"),
        memories,
        "a restored process was left"
    );
    assert!(
        !victim.log_text().contains("PASS"),
        "the restored victim ran; log:\n{}",
        victim.log_text()
    );
}

#[test]
fn restore_rejects_flipped_page_byte_found_while_filling() {
    pages_checked_while_filling_case(
        "restore_rejects_flipped_page_byte_found_while_filling",
        |len| len / 2 + 123,
    );
}

#[test]
fn restore_rejects_flipped_last_page_byte_found_while_filling() {
    pages_checked_while_filling_case(
        "restore_rejects_flipped_last_page_byte_found_while_filling",
        |len| len - 4,
    );
}

#[test]
fn restore_rejects_truncated_mm() {
    corrupt_case(
        "restore_rejects_truncated_mm",
        |pid| format!("mm-{pid}.img"),
        |p| {
            let f = OpenOptions::new().write(true).open(p).expect("open");
            f.set_len(len(p) / 2).expect("truncate");
        },
    );
}

#[test]
fn restore_rejects_bad_task_magic() {
    corrupt_case(
        "restore_rejects_bad_task_magic",
        |pid| format!("task-{pid}.img"),
        |p| patch(p, 0, |b| b.iter_mut().for_each(|x| *x ^= 0xff)),
    );
}

#[test]
fn restore_rejects_newer_inventory_version() {
    corrupt_case(
        "restore_rejects_newer_inventory_version",
        |_| "inventory.img".to_string(),
        |p| patch(p, 12, |b| b.copy_from_slice(&999u32.to_le_bytes())),
    );
}

#[test]
fn restore_refuses_taken_pid() {
    let _serial = common::serial();
    require_privileged!("restore_refuses_taken_pid");
    let tmp = TempDir::new("pidtaken");
    let victim = dumped_running(&tmp);
    let msg = assert_restore_fails(&victim, &tmp.join("img"));
    assert!(
        msg.contains(&victim.pid.to_string()),
        "message does not name pid {}: {msg}",
        victim.pid
    );
    assert_survived(victim);
}

/// The harness reaps what it spawns, by pid (needs no root).
#[test]
fn harness_reaps_by_pid() {
    let _serial = common::serial();
    let tmp = TempDir::new("harness");
    let mut p = common::spawn_logged(
        std::process::Command::new("true").current_dir(tmp.path()),
        &tmp.join("log"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = p.try_reap() {
            break st;
        }
        assert!(Instant::now() < deadline);
        common::sleep_ms(5);
    };
    assert_eq!(st, Status::Exited(0));
    assert!(
        common::proc_state(p.pid).is_none(),
        "pid {} not reaped",
        p.pid
    );
}

/// A tree with a process outside it in its session is refused, naming that process, and
/// left running: restoring the tree without it would recreate the session while the
/// outsider still holds its id. (Before trees were supported, the benchmark's 50-process
/// tree was "dumped" by killing only the root; the tree tests cover the success case.)
#[test]
fn dump_refuses_tree_with_outsider_in_its_session() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_tree_with_outsider_in_its_session");
    let tmp = TempDir::new("outsider");
    let log = tmp.join("parent.log");
    // The subshell exits at once: its sleep is reparented to us (the subreaper) and stays
    // in bash's session and group.
    let script = "(sleep 60 & echo \"ORPHAN $!\"); echo READY; while :; do sleep 1; done";
    let mut parent = common::spawn_logged(
        std::process::Command::new("bash").args(["-c", script]),
        &log,
    );
    assert_eq!(parent.wait_ready(), Start::Ready);
    let orphan: i32 = parent
        .log_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ORPHAN ")
                .and_then(|p| p.trim().parse().ok())
        })
        .expect("orphan pid in the log");
    let _orphan = common::TreeGuard(vec![orphan]);
    let family = common::TreeGuard(common::descendants(parent.pid));
    let out = common::dump(parent.pid, &tmp.join("img"), &[]);
    let msg = out.assert_failed("dump of a tree with an outsider in its session");
    assert!(
        msg.contains(&orphan.to_string()) && msg.contains("outside the dumped tree"),
        "message does not name the outsider {orphan}: {msg}"
    );
    assert_no_image(tmp.path());
    common::assert_untouched(&parent);
    assert!(
        common::proc_state(orphan).is_some(),
        "the outsider {orphan} is gone"
    );
    drop(family);
}

/// A restore that fails after part of the tree exists kills all of it and reaps it: no
/// pid of the image is left, not even a zombie whose parent was killed after it.
#[test]
fn failed_tree_restore_leaves_no_process() {
    let _serial = common::serial();
    require_privileged!("failed_tree_restore_leaves_no_process");
    let tmp = TempDir::new("halftree");
    let mut victim = victim_in(&tmp, "tree", &[]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("stasis dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    common::reap_image_tree(&img);
    let image = stasis::image::Image::load_metadata(&img).expect("load the image");
    let last = image.tree.alive().last().expect("a live process").pid;
    let pids: Vec<i32> = image.tree.processes.iter().map(|p| p.pid).collect();
    // The last process of the tree cannot get its working directory back.
    let gone = "/nonexistent-stasis-cwd";
    let task = img.join(format!("task-{last}.img"));
    let kind = stasis::image::file::Kind::Task;
    let mut t: stasis::image::task::TaskImage =
        stasis::image::file::read(kind, &task).expect("decode task record");
    t.cwd = gone.into();
    let bytes = stasis::image::file::encode(kind, &t).expect("encode task record");
    fs::write(&task, bytes).expect("write task record");
    let out = common::restore_detached(&img).expect_err("restore succeeded");
    let msg = out.assert_failed("restore").to_string();
    // The chdir shares a batch with the calls of the stages before and after it: the
    // failure still names its own stage.
    assert!(
        msg.contains("chdir") && msg.contains(&format!("stage fs of pid {last}")),
        "message names neither the chdir nor stage fs of pid {last}: {msg}"
    );
    let left: Vec<i32> = pids
        .into_iter()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(left.is_empty(), "the failed restore left pids {left:?}");
}

/// A process sharing the address space of a process other than its parent (here its
/// sibling: `clone(CLONE_VM | CLONE_PARENT)`) cannot be created by its parent at restore:
/// the dump is refused naming the three pids, and the tree runs on and passes.
#[test]
fn dump_refuses_vm_shared_with_sibling() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_vm_shared_with_sibling");
    let tmp = TempDir::new("vmsibling");
    let mut victim = victim_in(&tmp, "shared_vm", &["sibling"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let log = victim.log_text();
    let ids: Vec<String> = log
        .lines()
        .find_map(|l| l.strip_prefix("SIBLING "))
        .unwrap_or_else(|| panic!("no SIBLING line in the log:\n{log}"))
        .split(' ')
        .map(str::to_string)
        .collect();
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    let what = "dump of a process sharing its sibling's address space";
    let needles = [ids[0].as_str(), ids[1].as_str(), "address space"];
    assert_refused(&out, what, victim.pid, &needles);
    assert_no_image(tmp.path());
    assert_survived(victim);
}

/// A process waiting in `vfork` cannot be frozen (no ptrace stop interrupts that wait):
/// the dump is refused naming vfork and the pid, without hanging. Its child, which
/// shares its address space, cannot be dumped as a root either (its memory would come
/// back private). Both run on: the child exits on go, the parent reaps it and passes.
#[test]
fn dump_refuses_vfork_in_progress() {
    let _serial = common::serial();
    require_privileged!("dump_refuses_vfork_in_progress");
    let tmp = TempDir::new("vfork");
    let mut victim = victim_in(&tmp, "shared_vm", &["vfork"]);
    assert_eq!(victim.wait_ready(), Start::Ready);
    let deadline = Instant::now() + Duration::from_secs(5);
    let child: i32 = loop {
        let found = victim
            .log_text()
            .lines()
            .find_map(|l| l.strip_prefix("VFORK ").and_then(|p| p.trim().parse().ok()));
        match found {
            Some(pid) => break pid,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => panic!("no VFORK line in the log:\n{}", victim.log_text()),
        }
    };
    let out = common::dump(victim.pid, &tmp.join("img"), &[]);
    assert_refused(&out, "dump of a parent in vfork", victim.pid, &["vfork"]);
    let out = common::dump(child, &tmp.join("img2"), &["--shell-job"]);
    let what = "dump of a vfork child";
    assert_refused(
        &out,
        what,
        child,
        &[&victim.pid.to_string(), "address space"],
    );
    assert_no_image(tmp.path());
    common::assert_untouched(&victim);
    // The child exits on SIGUSR1, which lets its parent out of vfork; the go flag the
    // handler sets is the parent's too (they share memory), so the parent goes on to
    // reap the child and pass without a signal of its own: it is checked for that, not
    // sent SIGUSR1 (it may be gone by then).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGUSR1,
    );
    let st = victim.wait_exit(common::EXIT_TIMEOUT);
    victim.assert_passed(st);
}

/// A pty of the host's devpts and one of the tree's own devpts with the same pts number
/// (`devpts_pty twice`): stasis keys ptys by number, so the dump is refused naming both
/// fds, and the victim goes on (both pairs still pair).
#[test]
fn dump_refuses_one_pts_number_in_two_devpts_instances() {
    let test = "dump_refuses_one_pts_number_in_two_devpts_instances";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let mut victim = victim_in(&tmp, "devpts_pty", &["twice"]);
    if let Start::Skip(why) = victim.wait_ready() {
        return common::skip(test, &why);
    }
    let pid = victim.pid;
    let out = common::dump(pid, &tmp.join("img"), &[]);
    let msg = assert_refused(
        &out,
        "dump of one pts number in two devpts instances",
        pid,
        &[&format!(
            "fd 10 of pid {pid} and fd 12 of pid {pid} are both pts"
        )],
    );
    assert!(msg.contains("two devpts instances"), "{msg}");
    assert_no_image(tmp.path());
    assert_survived(victim);
}
