//! A tree in a mount namespace of its own (`unshare --mount --propagation private`),
//! dumped and restored with its mounts: a tmpfs with files (sparse, symlink, a dir with
//! its mode, another owner), a bind of one of its dirs, a read-only bind, a shared +
//! slave pair, /proc mounted again. The restored mountinfo (normalized: ids and peer
//! group numbers differ) and the tmpfs contents are what they were, and the file the
//! tree held open on the tmpfs still reads. A mount stasis cannot rebuild is refused
//! with one line naming it and `--external`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, TempDir};

const VICTIM: &str = r#"
D=$1
mount -t tmpfs -o size=8m,mode=755 none $D/t || exit 1
echo hello > $D/t/f
truncate -s 10M $D/t/sparse; echo x | dd of=$D/t/sparse seek=5 bs=1M conv=notrunc 2>/dev/null
ln -s f $D/t/link; mkdir -m 0710 $D/t/dir; echo in > $D/t/dir/g; chown 1000:1000 $D/t/dir/g
mount --bind $D/t/dir $D/b
mount --bind $D/t $D/r; mount -o remount,ro,bind $D/r
mount -t tmpfs none $D/s1; mount --make-shared $D/s1; mount --bind $D/s1 $D/s2; mount --make-slave $D/s2
mount -t proc proc /proc
[ -n "$2" ] && { mount -t ramfs none $D/x || exit 1; }
exec 3<$D/t/f
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
read -r line <&3
[ "$line" = hello ] && grep -q in $D/b/g && ! touch $D/r/new 2>/dev/null && echo PASS > $D/result || echo FAIL > $D/result
"#;

fn wait_file(path: &Path, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        common::sleep_ms(20);
    }
    false
}

/// mountinfo of `pid` for the mounts under `dir` and /proc: mount point, root, options,
/// propagation kinds (group numbers dropped), type, source, superblock options.
fn mounts(pid: i32, dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let dir = dir.to_string_lossy();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let f: Vec<&str> = head.split(' ').collect();
            let keep = f[4].starts_with(&*dir) || f[4] == "/proc";
            let tags: Vec<&str> = f[6..]
                .iter()
                .map(|t| t.split(':').next().unwrap_or(t))
                .collect();
            keep.then(|| format!("{} {} {} {:?} {tail}", f[4], f[3], f[5], tags))
        })
        .collect();
    out.sort();
    out
}

/// `ls -lan` with full times of the tmpfs, seen through the process's root.
fn contents(pid: i32, dir: &Path) -> String {
    let t = format!("/proc/{pid}/root{}/t", dir.display());
    let out = Command::new("ls")
        .args(["-lanR", "--time-style=full-iso", &t])
        .output()
        .expect("ls");
    let du = Command::new("du")
        .args(["-k", &format!("{t}/sparse")])
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout).replace(&t, "T")
        + &String::from_utf8_lossy(&du.stdout).replace(&t, "T")
}

fn start(test: &str, tmp: &TempDir, extra: bool) -> Option<Proc> {
    let d = tmp.join("d");
    for sub in ["t", "b", "r", "s1", "s2", "x"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    std::fs::write(tmp.join("victim.sh"), VICTIM).expect("write the victim");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh"])
        .arg(tmp.join("victim.sh"))
        .arg(&d)
        .args(extra.then_some("ramfs"));
    let p = common::spawn_logged(&mut cmd, &tmp.join("victim.log"));
    if !wait_file(&d.join("ready"), 20) {
        common::skip(test, &format!("the victim did not start: {}", p.log_text()));
        return None;
    }
    Some(p)
}

#[test]
fn own_mount_namespace_round_trip() {
    let test = "own_mount_namespace_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some(victim) = start(test, &tmp, false) else {
        return;
    };
    let d = tmp.join("d");
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    let (before, files) = (mounts(pid, &d), contents(pid, &d));
    assert!(before.len() >= 7, "{before:?}");
    let img = tmp.join("img");
    common::dump(pid, &img, &[]).assert_ok("stasis dump");
    common::reap_image_tree(&img);
    common::reap_all(&[pid], false);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the tree is gone"
    );
    let restored = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(restored, pid);
    assert_eq!(mounts(pid, &d), before, "mountinfo after restore");
    assert_eq!(contents(pid, &d), files, "tmpfs contents after restore");
    std::fs::write(d.join("go"), "").expect("go");
    assert!(
        wait_file(&d.join("result"), 20),
        "the restored tree never answered"
    );
    let result = std::fs::read_to_string(d.join("result")).expect("result");
    assert_eq!(result.trim(), "PASS", "log: {}", victim.log_text());
    common::reap_all(&[pid], true);
}

#[test]
fn unrebuildable_mount_is_refused() {
    let test = "unrebuildable_mount_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some(victim) = start(test, &tmp, true) else {
        return;
    };
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    let img = tmp.join("img");
    let out = common::dump(pid, &img, &[]);
    let line = out.assert_failed("dump of a tree with a ramfs");
    let x = tmp.join("d/x");
    let x = x.to_string_lossy();
    assert!(
        line.contains(&*x)
            && line.contains("ramfs")
            && line.contains(&format!("--external mnt[{x}]")),
        "{line}"
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "a refused dump leaves the tree running"
    );
    common::reap_all(&[pid], true);
}
