//! Mount-tree states that outlive what made them (zdtm's mntns_deleted, binfmt_misc,
//! mntns_pivot_root): binds of a directory and of a file deleted since they were bound
//! come back deleted, with their mode and contents; binfmt_misc entries that end with
//! the tree are registered again as they were (one disabled, one whose extension holds
//! the usual delimiter); a process that made a mount namespace, `pivot_root`ed into a
//! tmpfs and detached the old root (victim `pivot_child`) comes back in that root, still
//! running the program (and libraries) of the old one, which its namespace no longer
//! shows.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Proc, TempDir};

/// Runs `argv` (with `d`) as a tree in a new private mount namespace; waits for
/// `d/ready`. `None` (skipped, with `d/skip`'s reason if the victim left one) if it did
/// not get there.
fn start(test: &str, tmp: &TempDir, argv: &[&str], d: &Path) -> Option<Proc> {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private"])
        .args(argv)
        .arg(d);
    let p = common::spawn_logged(&mut cmd, &tmp.join("victim.log"));
    if !common::wait_nonempty(&d.join("ready"), 20) {
        let why = std::fs::read_to_string(d.join("skip"))
            .unwrap_or_else(|_| format!("the victim did not start: {}", p.log_text()));
        common::reap_all(&[p.pid], true);
        common::skip(test, why.trim());
        return None;
    }
    Some(p)
}

/// Dumps `pid`, checks the tree is gone, restores it detached.
fn round_trip(pid: i32, img: &Path) {
    common::dump(pid, img, &[]).assert_ok("stasis dump");
    common::reap_image_tree(img);
    common::reap_all(&[pid], false);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the tree is gone"
    );
    let img = img.to_str().expect("utf-8");
    common::stasis(&["restore", "-D", img, "-d"]).assert_ok("stasis restore");
}

/// Starts the shell `script` with `tmp/d` ([`start`]), which it returns with the tree.
fn start_sh(test: &str, tmp: &TempDir, script: &str) -> Option<(std::path::PathBuf, Proc)> {
    let d = tmp.join("d");
    std::fs::create_dir_all(&d).expect("mkdir");
    let sh = tmp.join("victim.sh");
    std::fs::write(&sh, script).expect("write the victim");
    let victim = start(test, tmp, &["sh", sh.to_str().expect("utf-8")], &d)?;
    Some((d, victim))
}

/// Starts the shell `script`, round-trips it and wants PASS from it.
fn script_passes(test: &str, script: &str) {
    let tmp = TempDir::new(test);
    let Some((d, victim)) = start_sh(test, &tmp, script) else {
        return;
    };
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    round_trip(pid, &tmp.join("img"));
    let answer = common::go_and_answer(&d);
    assert_eq!(answer.trim(), "PASS", "log: {}", victim.log_text());
    common::reap_all(&[pid], true);
}

const DELETED: &str = r#"
D=$1
mkdir $D/t || exit 1
mount -t tmpfs -o size=1m none $D/t || exit 1
mkdir -m 0751 $D/t/src $D/t/dst
mount --bind $D/t/src $D/t/dst || exit 1
rmdir $D/t/src
mkdir $D/t/p; echo data > $D/t/p/fsrc; chmod 640 $D/t/p/fsrc; touch $D/t/fdst
mount --bind $D/t/p/fsrc $D/t/fdst || exit 1
rm $D/t/p/fsrc; rmdir $D/t/p
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS
grep -q " /src//deleted $D/t/dst " /proc/self/mountinfo || r="$r dir-bind-not-deleted"
grep -q " /p/fsrc//deleted $D/t/fdst " /proc/self/mountinfo || r="$r file-bind-not-deleted"
[ "$(cat $D/t/fdst)" = data ] || r="$r file-contents"
[ "$(stat -c %a $D/t/dst)" = 751 ] || r="$r dir-mode"
[ "$(stat -c %a $D/t/fdst)" = 640 ] || r="$r file-mode"
[ -e $D/t/src ] || [ -e $D/t/p ] && r="$r left-behind"
echo $r > $D/result
"#;

/// Binds of a directory and of a file (whose directory went too) deleted since they
/// were bound, on a tmpfs of the tree: restored deleted, with mode and contents, and
/// nothing left on the tmpfs.
#[test]
fn deleted_bind_sources_round_trip() {
    let test = "deleted_bind_sources_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    script_passes(test, DELETED);
}

const DELETED_LINKED: &str = r#"
D=$1
mkdir $D/t || exit 1
mount -t tmpfs -o size=1m none $D/t || exit 1
echo data > $D/t/fsrc; ln $D/t/fsrc $D/t/other; touch $D/t/fdst
mount --bind $D/t/fsrc $D/t/fdst || exit 1
rm $D/t/fsrc
echo ready > $D/ready
exec sleep 1000
"#;

/// A bind of a file removed from its bound path but alive under another name is
/// refused at dump, naming the mount (a file made anew would not be that one), and the
/// tree runs on.
#[test]
fn deleted_bind_source_with_another_name_is_refused() {
    let test = "deleted_bind_source_with_another_name_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((_d, victim)) = start_sh(test, &tmp, DELETED_LINKED) else {
        return;
    };
    let _guard = common::TreeGuard(vec![victim.pid]);
    let err = common::dump(victim.pid, &tmp.join("img"), &[])
        .assert_failed("dump of a bind whose file has another name")
        .to_string();
    assert!(
        err.contains("still has 1 other name") && err.contains("/fdst"),
        "{err}"
    );
    assert!(
        Path::new(&format!("/proc/{}", victim.pid)).exists(),
        "the tree runs on after the refusal"
    );
    common::reap_all(&[victim.pid], true);
}

const BINFMT: &str = r#"
D=$1
mkdir $D/bm || exit 1
mount -t binfmt_misc none $D/bm || { echo "no binfmt_misc" > $D/skip; exit 1; }
for e in stasis_test_m stasis_test_e; do [ -e $D/bm/$e ] && echo -1 > $D/bm/$e; done
printf ':stasis_test_m:M:100:\\xde\\xad\\x3a\\x01:\\xff\\x0f\\xff\\xff:/bin/stasis-none:OC' > $D/bm/register || exit 1
printf '|stasis_test_e|E||st:x||/bin/stasis-none|P' > $D/bm/register || exit 1
echo 0 > $D/bm/stasis_test_m
cat $D/bm/stasis_test_m > $D/m.before; cat $D/bm/stasis_test_e > $D/e.before
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS
[ "$(cat $D/bm/stasis_test_m)" = "$(cat $D/m.before)" ] || r="$r magic-entry-differs:$(ls $D/bm | tr '\n' ' '):$(tr '\n' ' ' < $D/bm/stasis_test_m)"
[ "$(cat $D/bm/stasis_test_e)" = "$(cat $D/e.before)" ] || r="$r extension-entry-differs:$(tr '\n' ' ' < $D/bm/stasis_test_e)"
for e in stasis_test_m stasis_test_e; do echo -1 > $D/bm/$e; done
echo $r > $D/result
"#;

/// binfmt_misc entries (of the host's user namespace) that end with the tree when it
/// is killed (stasis's namespace mounts no binfmt_misc; when it does they are kept, and
/// the test checks the same) are registered again as they were, a disabled one too.
#[test]
fn binfmt_misc_entries_round_trip() {
    let test = "binfmt_misc_entries_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    script_passes(test, BINFMT);
}

/// A child that made a mount namespace, `pivot_root`ed into a tmpfs and detached the
/// old root (zdtm mntns_pivot_root): its program and libraries are on a mount only the
/// parent's namespace shows. After the round trip it runs in the same root (only its
/// tmpfs, listed the same), on the same executable.
#[test]
fn pivot_root_into_nested_namespace_round_trip() {
    let test = "pivot_root_into_nested_namespace_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let d = tmp.join("d");
    std::fs::create_dir_all(&d).expect("mkdir");
    let bin = common::victim_bin("pivot_child");
    let Some(victim) = start(test, &tmp, &[bin.to_str().expect("utf-8")], &d) else {
        return;
    };
    let pid = victim.pid;
    let mut guard = common::TreeGuard(vec![pid]);
    let child: i32 = std::fs::read_to_string(d.join("child"))
        .expect("child pid")
        .parse()
        .expect("a pid");
    // The child pauses until killed: killed first, its parent reaps it and exits.
    guard.0.insert(0, child);
    let exe = |p: i32| std::fs::metadata(format!("/proc/{p}/exe")).map(|m| (m.dev(), m.ino()));
    let before = exe(child).expect("exe");
    round_trip(pid, &tmp.join("img"));
    assert_eq!(
        exe(child).expect("exe after"),
        before,
        "the same executable"
    );
    let root = PathBuf::from(format!("/proc/{child}/root"));
    let mountinfo = std::fs::read_to_string(format!("/proc/{child}/mountinfo")).expect("mountinfo");
    assert_eq!(mountinfo.lines().count(), 1, "{mountinfo}");
    assert!(
        mountinfo.contains(" / / ") && mountinfo.contains(" tmpfs pivot "),
        "{mountinfo}"
    );
    let answer = common::go_and_answer(&root);
    assert_eq!(answer.trim(), "PASS", "log: {}", victim.log_text());
}
