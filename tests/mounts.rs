//! A tree in a mount namespace of its own (`unshare --mount --propagation private`),
//! dumped and restored with its mounts: a tmpfs with files (sparse, symlink, a dir with
//! its mode, another owner), a bind of one of its dirs, a read-only bind, a shared +
//! slave pair, an overlay over host directories, /proc mounted again. The restored mountinfo (normalized: ids and peer
//! group numbers differ) and the tmpfs contents are what they were, the file the tree
//! held open on the tmpfs still reads, and its cwd is the saved one (also the restorer's:
//! a regression test, the root had been left in the image directory). A mount stasis cannot rebuild is refused
//! with one line naming it and `--external`. Files the tree deleted while holding them
//! open are made again inside its rebuilt namespace. External masters (a slave of a
//! shared mount of the restorer's namespace), a process in an ancestor's namespace,
//! host-wide filesystems (binfmt_misc, cgroup v1) and a tmpfs under a bind of itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Proc, TempDir};

const VICTIM: &str = r#"
D=$1
C=$(pwd -P)
mount -t tmpfs -o size=8m,mode=755 none $D/t || exit 1
echo hello > $D/t/f
truncate -s 10M $D/t/sparse; echo x | dd of=$D/t/sparse seek=5 bs=1M conv=notrunc 2>/dev/null
ln -s f $D/t/link; mkdir -m 0710 $D/t/dir; echo in > $D/t/dir/g; chown 1000:1000 $D/t/dir/g
mount --bind $D/t/dir $D/b
mount --bind $D/t $D/r; mount -o remount,ro,bind $D/r
mount -t tmpfs none $D/s1; mount --make-shared $D/s1; mount --bind $D/s1 $D/s2; mount --make-slave $D/s2
mount -t overlay overlay -o lowerdir=$D/lo,upperdir=$D/up,workdir=$D/wk $D/ov || exit 1
echo up > $D/ov/u
mount -t proc proc /proc
[ -n "$2" ] && { mount -t ramfs none $D/x || exit 1; }
exec 3<$D/t/f
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
read -r line <&3
[ "$(pwd -P)" = "$C" ] && [ "$line" = hello ] && grep -q in $D/b/g && grep -q low $D/ov/l && grep -q up $D/ov/u && ! touch $D/r/new 2>/dev/null && echo PASS > $D/result || echo FAIL > $D/result
"#;

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
    for sub in ["t", "b", "r", "s1", "s2", "x", "lo", "up", "wk", "ov"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    std::fs::write(d.join("lo/l"), "low\n").expect("write the lower layer");
    std::fs::write(tmp.join("victim.sh"), VICTIM).expect("write the victim");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh"])
        .arg(tmp.join("victim.sh"))
        .arg(&d)
        .args(extra.then_some("ramfs"));
    let p = common::spawn_logged(&mut cmd, &tmp.join("victim.log"));
    if !common::wait_nonempty(&d.join("ready"), 20) {
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
    assert_eq!(
        common::go_and_answer(&d).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
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

/// A shell `script` (given `$D` = `<tmp>/d`, with `<tmp>/d/<sub>` made) started in a mount
/// namespace of its own, once it wrote `$D/ready`: the directory, the tree's root and
/// the guard that ends the tree; `None` where it cannot start (said by `start_script`).
fn start_in_d(
    test: &str,
    tmp: &TempDir,
    script: &str,
    sub: &str,
) -> Option<(PathBuf, Proc, common::TreeGuard)> {
    let d = tmp.join("d");
    std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    let victim = start_script(test, tmp.path(), script, &[&d], &d.join("ready"))?;
    let guard = common::TreeGuard(vec![victim.pid]);
    Some((d, victim, guard))
}

/// Runs `script` (with `args`) as a tree in a new mount namespace; waits for `ready`.
fn start_script(test: &str, at: &Path, script: &str, args: &[&Path], ready: &Path) -> Option<Proc> {
    let tmp = at;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args(args);
    let p = common::spawn_logged(&mut cmd, &tmp.join("victim.log"));
    if !common::wait_nonempty(ready, 20) {
        common::skip(test, &format!("the victim did not start: {}", p.log_text()));
        return None;
    }
    Some(p)
}

/// Starts `script` in `tmp` ([`start_in_d`]), dumps and restores it ([`round_trip`]),
/// and asks the restored tree for its own verdict, which must be PASS (skips as
/// [`start_in_d`] does).
fn answers_pass_after_round_trip(test: &str, tmp: &TempDir, script: &str, sub: &str) {
    let Some((d, victim, _guard)) = start_in_d(test, tmp, script, sub) else {
        return;
    };
    let pid = victim.pid;
    round_trip(pid, &tmp.join("img"), &[], &[]);
    assert_eq!(
        common::go_and_answer(&d).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
    common::reap_all(&[pid], true);
}

/// Dumps `pid` with `dump_args`, checks it is gone, restores with `restore_args`.
fn round_trip(pid: i32, img: &Path, dump_args: &[&str], restore_args: &[&str]) {
    common::dump(pid, img, dump_args).assert_ok("stasis dump");
    common::reap_image_tree(img);
    common::reap_all(&[pid], false);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the tree is gone"
    );
    let mut args = vec!["restore", "-D", img.to_str().expect("utf-8"), "-d"];
    args.extend_from_slice(restore_args);
    common::stasis(&args).assert_ok("stasis restore");
}

const EXTERNAL: &str = r#"
D=$1
mount --bind $2 $D/e || exit 1
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
cat $D/e/name > $D/result
"#;

#[test]
fn external_mount_round_trip() {
    let test = "external_mount_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let (d, src, other) = (tmp.join("d"), tmp.join("src"), tmp.join("other"));
    for p in [d.join("e"), src.clone(), other.clone()] {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(src.join("name"), "src").expect("write");
    std::fs::write(other.join("name"), "other").expect("write");
    let Some(victim) = start_script(test, tmp.path(), EXTERNAL, &[&d, &src], &d.join("ready"))
    else {
        return;
    };
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    let e = d.join("e");
    let dump_ext = format!("mnt[{}]:K", e.display());
    let restore_ext = format!("mnt[K]:{}", other.display());
    let img = tmp.join("img");
    round_trip(
        pid,
        &img,
        &["--external", &dump_ext],
        &["--external", &restore_ext],
    );
    let got = common::go_and_answer(&d);
    assert_eq!(
        got, "other",
        "the external mount comes from --external mnt[K]:PATH"
    );
    common::reap_all(&[pid], true);
}

const PIVOT: &str = r#"
R=$1
mount --bind $R $R || exit 1
mount --bind /usr $R/usr
mount --bind /dev $R/dev
mount -t proc proc $R/proc
mount -t tmpfs -o size=1m none $R/d
cd $R && pivot_root . old && umount -l /old || exit 1
exec </dev/null >/dev/null 2>&1
echo data > /d/file
exec 3</d/file
echo ready > /ready
while [ ! -e /go ]; do sleep 0.05; done
read -r l <&3
[ "$l" = data ] && [ "$(cat /proc/self/mountinfo | wc -l)" = 5 ] && echo PASS > /result || echo FAIL > /result
"#;

#[test]
fn pivot_root_tree_comes_back_in_its_root() {
    let test = "pivot_root_tree_comes_back_in_its_root";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let root = tmp.join("root");
    for sub in ["usr", "proc", "old", "d", "dev"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).expect("symlink");
    }
    let Some(victim) = start_script(test, &root, PIVOT, &[&root], &root.join("ready")) else {
        return;
    };
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    let before = mounts(pid, Path::new("/"));
    let img = tmp.join("img");
    let r = root.to_str().expect("utf-8");
    round_trip(pid, &img, &[], &["--root", r]);
    assert_eq!(
        mounts(pid, Path::new("/")),
        before,
        "mountinfo after restore"
    );
    assert_eq!(
        common::go_and_answer(&root).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
    common::reap_all(&[pid], true);
}

const GHOSTS: &str = r#"
D=$1
mount -t tmpfs -o size=1m none $D/t || exit 1
echo intmp > $D/t/g; exec 3<$D/t/g; rm $D/t/g
echo onhost > $D/h; exec 4<$D/h; rm $D/h
mkdir $D/gone; cd $D/gone; rmdir $D/gone
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
read -r a <&3; read -r b <&4
c=$(readlink /proc/$$/cwd)
[ "$a" = intmp ] && [ "$b" = onhost ] && [ "$c" = "$D/gone (deleted)" ] && [ -z "$(ls -A $D/t)" ] && echo PASS > $D/result || echo "FAIL $a $b $c $(ls -A $D/t)" > $D/result
"#;

/// Files deleted while open by a tree with a mount namespace of its own (one on a tmpfs
/// of that namespace, one on a host directory, a removed working directory) are made
/// again inside the rebuilt namespace, read back, and leave nothing behind.
#[test]
fn deleted_files_inside_own_mount_namespace() {
    let test = "deleted_files_inside_own_mount_namespace";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((d, victim, _guard)) = start_in_d(test, &tmp, GHOSTS, "t") else {
        return;
    };
    let pid = victim.pid;
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&d);
    round_trip(pid, &tmp.join("img"), &[], &[]);
    assert_eq!(
        listing(&d),
        before,
        "no ghost is left in the host directory"
    );
    assert_eq!(
        common::go_and_answer(&d).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
    common::reap_all(&[pid], true);
}

const UNIX_NAMES: &str = r#"
D=$1
mount -t tmpfs -o size=1m none $D/s || exit 1
exec python3 -c '
import os, socket, sys, time
d = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(d + "/s/srv")
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
open(d + "/ready", "w").write("ready")
while not os.path.exists(d + "/go"):
    time.sleep(0.05)
srv.settimeout(5)
try:
    cli.sendto(b"ping", d + "/s/srv")
    ok = srv.recv(16) == b"ping" and oct(os.stat(d + "/s/srv").st_mode) == oct(0o140755)
except OSError as e:
    ok = False
open(d + "/result", "w").write("PASS" if ok else "FAIL")
' $D
"#;

/// A unix socket bound to a path that only the tree's mount namespace has (on its own
/// tmpfs) keeps its name and file: a datagram sent to the path after the restore
/// reaches it (the file had been looked for in stasis's namespace and taken as deleted).
#[test]
fn unix_socket_name_inside_own_mount_namespace() {
    let test = "unix_socket_name_inside_own_mount_namespace";
    let _serial = common::serial();
    require_privileged!(test);
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .map_or(true, |s| !s.success())
    {
        return common::skip(test, "python3 is not installed");
    }
    let tmp = TempDir::new(test);
    answers_pass_after_round_trip(test, &tmp, UNIX_NAMES, "s");
}

const HIDDEN: &str = r#"
D=$1
mount -t tmpfs -o size=1m none $D/h || exit 1
echo under > $D/h/f
mount -t tmpfs -o size=1m none $D/h || exit 1
echo over > $D/h/g
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
read -r top < $D/h/g
umount $D/h
read -r under < $D/h/f
[ "$top" = over ] && [ "$under" = under ] && echo PASS > $D/result || echo "FAIL $top $under" > $D/result
"#;

/// A tmpfs hidden under another mount keeps its files: read at dump through a private
/// copy of the namespace without the mount on it, there again once that one is gone.
#[test]
fn hidden_tmpfs_keeps_its_files() {
    let test = "hidden_tmpfs_keeps_its_files";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    answers_pass_after_round_trip(test, &tmp, HIDDEN, "h");
}

const NESTED: &str = r#"
D=$1
mount -t tmpfs -o size=1m none $D/s || exit 1
mount --make-shared $D/s
echo outer > $D/s/o
cat > $D/child.sh <<'END'
D=$1
norm() { awk '{print $5, $9, ($7 ~ /shared/ ? "shared" : "-")}' /proc/$$/mountinfo | sort; }
mount -t tmpfs -o size=1m none $D/n || exit 1
echo inner > $D/n/f
exec 3<$D/n/f
norm > $D/child.before
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
while [ ! -e $D/mounted ]; do sleep 0.05; done
read -r l <&3; read -r o <&4
m=$(awk '/mnt_id/{print $2}' /proc/$$/fdinfo/4)
norm | grep -v "$D/s/p " > $D/child.after
r=PASS
[ "$l" = inner ] || r="$r fd3:$l"
[ "$o" = outer ] || r="$r fd4:$o"
awk '{print $1}' /proc/$$/mountinfo | grep -qx "$m" && r="$r fd4-in-own-namespace"
grep -q " $D/s/p " /proc/$$/mountinfo || r="$r no-propagation"
cmp -s $D/child.before $D/child.after || r="$r child-mounts-differ"
cmp -s $D/root.before $D/root.after || r="$r root-mounts-differ"
echo $r > $D/result
END
exec 4<$D/s/o
unshare --mount --propagation unchanged sh $D/child.sh $D &
exec 4<&-
norm() { awk '{print $5, $9, ($7 ~ /shared/ ? "shared" : "-")}' /proc/$$/mountinfo | sort; }
norm > $D/root.before
while [ ! -e $D/go ]; do sleep 0.05; done
norm > $D/root.after
mkdir -p $D/s/p; mount -t tmpfs -o size=1m none $D/s/p && touch $D/mounted
wait
"#;

/// A process that made a mount namespace of its own inside the tree's: each namespace's
/// mounts come back (mountinfo compared from inside, before and after), a file open on
/// its own tmpfs reads, a file it held open on its parent's namespace is still on a mount
/// of that namespace, and a mount made in the parent's shared tmpfs after the restore
/// reaches the nested namespace (the peer group spans both).
#[test]
fn nested_mount_namespace_round_trip() {
    let test = "nested_mount_namespace_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    std::fs::create_dir_all(tmp.join("d").join("n")).expect("mkdir");
    answers_pass_after_round_trip(test, &tmp, NESTED, "s");
}

/// Unmounts (lazily) a mount the test made in its own namespace when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const MASTERS: &str = r#"
D=$1; S=$2
mount --bind $S/sub $D/e || exit 1
mount --bind $S $D/a || exit 1
grep -q " $D/e .*master:" /proc/self/mountinfo || exit 1
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
while [ ! -e $D/mounted ]; do sleep 0.05; done
r=PASS
[ -e $D/e/x/seen ] || r="$r e-did-not-receive"
[ -e $D/a/sub/x/seen ] || r="$r a-did-not-receive"
grep -q " $D/e .*master:" /proc/self/mountinfo || r="$r e-not-a-slave"
echo $r > $D/result
"#;

/// Mounts that are slaves of a peer group of the restorer's namespace (an external
/// master): one declared with `--external mnt[..]:KEY`, one found by `--external mnt[]`;
/// after the restore both receive a mount made in the shared source outside the tree.
#[test]
fn external_master_round_trip() {
    let test = "external_master_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let (d, s) = (tmp.join("d"), tmp.join("s"));
    for p in [d.join("e"), d.join("a"), s.clone()] {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    let made = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "stasis-src"])
        .arg(&s)
        .status();
    if !made.is_ok_and(|st| st.success()) {
        return common::skip(test, "cannot mount a tmpfs here");
    }
    let _src = Unmount(s.clone());
    let shared = Command::new("mount").arg("--make-shared").arg(&s).status();
    assert!(shared.is_ok_and(|st| st.success()), "mount --make-shared");
    std::fs::create_dir_all(s.join("sub/x")).expect("mkdir sub/x");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "slave",
        "sh",
        "-c",
        MASTERS,
        "sh",
    ])
    .arg(&d)
    .arg(&s);
    let victim = common::spawn_logged(&mut cmd, &tmp.join("victim.log"));
    if !common::wait_nonempty(&d.join("ready"), 20) {
        return common::skip(
            test,
            &format!("the victim did not start: {}", victim.log_text()),
        );
    }
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    let e = d.join("e");
    let dump_ext = format!("mnt[{}]:K", e.display());
    let restore_ext = format!("mnt[K]:{}", s.join("sub").display());
    let dump_args = ["--external", &dump_ext, "--external", "mnt[]"];
    round_trip(
        pid,
        &tmp.join("img"),
        &dump_args,
        &["--external", &restore_ext],
    );
    std::fs::write(d.join("go"), "").expect("go");
    let x = s.join("sub/x");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "stasis-x"])
        .arg(&x)
        .status();
    assert!(mounted.is_ok_and(|st| st.success()), "mount in the source");
    let _x = Unmount(x.clone());
    std::fs::write(x.join("seen"), "").expect("write in the new mount");
    std::fs::write(d.join("mounted"), "").expect("mounted");
    assert_eq!(
        common::go_and_answer(&d).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
    common::reap_all(&[pid], true);
}

const JOINED: &str = r#"
D=$1
cat > $D/p.sh <<'END'
D=$1
sh -c "echo \$\$ > $D/c2.pid; while [ ! -e $D/go ]; do sleep 0.05; done; [ -e $D/pm/only ] && touch $D/c2.bad; touch $D/c2.done; exec sleep 1000" &
exec unshare --mount --propagation private sh $D/p2.sh $D
END
cat > $D/p2.sh <<'END'
D=$1
mount -t tmpfs -o size=1m none $D/pm || exit 1
touch $D/pm/only
echo $$ > $D/p.pid
while [ ! -e $D/go ]; do sleep 0.05; done
[ -e $D/pm/only ] && touch $D/p.ok
exec sleep 1000
END
sh $D/p.sh $D &
while [ ! -s $D/p.pid ] || [ ! -s $D/c2.pid ]; do sleep 0.05; done
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
while [ ! -e $D/c2.done ]; do sleep 0.05; done
sleep 0.3
r=PASS
c2=$(cat $D/c2.pid); p=$(cat $D/p.pid); me=$(readlink /proc/$$/ns/mnt)
[ "$(readlink /proc/$c2/ns/mnt)" = "$me" ] || r="$r c2-not-in-the-root-namespace"
[ "$(readlink /proc/$p/ns/mnt)" != "$me" ] || r="$r p-in-the-root-namespace"
[ -e $D/p.ok ] || r="$r p-lost-its-tmpfs"
[ -e $D/c2.bad ] && r="$r c2-sees-the-tmpfs-of-p"
echo $r > $D/result
"#;

/// A process left in its grandparent's mount namespace when its parent made one of its
/// own (zdtm tempfs_subns): it comes back in that namespace, its parent in the new one.
#[test]
fn process_in_an_ancestors_namespace_round_trip() {
    let test = "process_in_an_ancestors_namespace_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    answers_pass_after_round_trip(test, &tmp, JOINED, "pm");
}

const HOST_INSTANCES: &str = r#"
D=$1
mount -t binfmt_misc none $D/bm || { echo "no binfmt_misc" > $D/skip; exit 1; }
mount -t cgroup -o none,name=stasis-test cgroup $D/cg || { echo "no cgroup v1" > $D/skip; exit 1; }
mkdir -p $D/cg/sub
mount -t tmpfs -o size=1m none $D/a || exit 1
mkdir $D/a/b; touch $D/a/top $D/a/b/under
mount --bind $D/a/b $D/a
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS
[ -e $D/bm/status ] || r="$r no-binfmt_misc"
grep -q " $D/cg .* cgroup .*name=stasis-test" /proc/self/mountinfo || r="$r no-cgroup-v1"
[ -d $D/cg/sub ] || r="$r cgroup-without-sub"
[ -e $D/a/under ] || r="$r bind-lost"
umount $D/a && [ -e $D/a/top ] && [ -e $D/a/b/under ] || r="$r tmpfs-under-its-bind-lost"
rmdir $D/cg/sub
echo $r > $D/result
"#;

/// Filesystems of which the host has one instance (binfmt_misc, a named cgroup v1
/// hierarchy) are mounted again; a tmpfs hidden under a bind of its own directory
/// (zdtm tempfs_overmounted01) keeps its whole contents.
#[test]
fn host_instances_and_tmpfs_under_its_bind_round_trip() {
    let test = "host_instances_and_tmpfs_under_its_bind_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    for sub in ["bm", "cg", "a"] {
        std::fs::create_dir_all(tmp.join("d").join(sub)).expect("mkdir");
    }
    let d = tmp.join("d");
    let victim = start_script(test, tmp.path(), HOST_INSTANCES, &[&d], &d.join("ready"));
    let Some(victim) = victim else {
        if let Ok(why) = std::fs::read_to_string(d.join("skip")) {
            common::skip(test, why.trim());
        }
        return;
    };
    let pid = victim.pid;
    let _guard = common::TreeGuard(vec![pid]);
    round_trip(pid, &tmp.join("img"), &[], &[]);
    assert_eq!(
        common::go_and_answer(&d).trim(),
        "PASS",
        "log: {}",
        victim.log_text()
    );
    common::reap_all(&[pid], true);
    hierarchy_gone("stasis-test", &tmp.join("cg-cleanup"));
}

/// Frees the named cgroup v1 hierarchy the test made and waits (up to 30 s) until it is
/// gone from `/proc/self/cgroup`. The kernel frees a hierarchy when its last mount goes
/// while it has no child cgroup; a removed child (`sub`) stays a child until the kernel's
/// workqueues release it, which under load took longer than the restored tree took to
/// exit, so the last mount went while `sub` was still counted and the hierarchy stayed,
/// unmounted, in every process's cgroup list (a later `cgroups` victim saw it vanish
/// under it). Mounting and unmounting it again frees it once `sub` is released, so that
/// is retried until it is gone.
fn hierarchy_gone(name: &str, mnt: &Path) {
    std::fs::create_dir_all(mnt).expect("mkdir");
    let opts = format!("none,name={name}");
    let entry = format!(":name={name}:");
    let listed = || {
        std::fs::read_to_string("/proc/self/cgroup")
            .map(|t| t.lines().any(|l| l.contains(&entry)))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while listed() && std::time::Instant::now() < deadline {
        let mounted = Command::new("mount")
            .args(["-t", "cgroup", "-o", &opts, "cgroup"])
            .arg(mnt)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            let _ = Command::new("umount").arg(mnt).status();
        }
        common::sleep_ms(200);
    }
    assert!(
        !listed(),
        "the cgroup hierarchy name={name} outlived the test by 30 s"
    );
}

const NESTED_GHOST: &str = r#"
D=$1
cat > $D/child.sh <<'END'
D=$1
mount -t tmpfs -o size=1m none $D/n || exit 1
mkdir $D/n/sub; echo gone > $D/n/sub/f
exec 3<$D/n/sub/f
rm $D/n/sub/f
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS
read -r l <&3; [ "$l" = gone ] || r="$r data:$l"
[ "$(readlink /proc/$$/fd/3)" = "$D/n/sub/f (deleted)" ] || r="$r name:$(readlink /proc/$$/fd/3)"
[ "$(stat -L -c %h /proc/$$/fd/3)" = 0 ] || r="$r links"
[ "$(ls -A $D/n/sub)" = "" ] || r="$r left:$(ls -A $D/n/sub)"
echo $r > $D/result
END
unshare --mount --propagation private sh $D/child.sh $D &
wait
"#;

const NESTED_TMPFILE: &str = r#"
D=$1
cat > $D/child.sh <<'END'
D=$1
mount -t tmpfs -o size=1m none $D/n || exit 1
exec python3 -c 'import os, sys, time
fd = os.open(sys.argv[1] + "/n", os.O_TMPFILE | os.O_RDWR)
open(sys.argv[1] + "/ready", "w").write("ready")
time.sleep(1000)' $D
END
unshare --mount --propagation private sh $D/child.sh $D &
wait
"#;

/// An `O_TMPFILE` file on a tmpfs only a namespace made inside the tree has is refused
/// at dump, naming it (made there again under a name, `F_GETFL` would lose the flag),
/// and the tree runs on.
#[test]
fn tmpfile_on_a_nested_namespace_mount_is_refused() {
    let test = "tmpfile_on_a_nested_namespace_mount_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    if !common::which("python3") {
        return common::skip(test, "python3 is not installed");
    }
    let tmp = TempDir::new(test);
    let Some((_d, victim, _guard)) = start_in_d(test, &tmp, NESTED_TMPFILE, "n") else {
        return;
    };
    let err = common::dump(victim.pid, &tmp.join("img"), &[])
        .assert_failed("dump of an O_TMPFILE file on a nested namespace's mount")
        .to_string();
    assert!(err.contains("opened with O_TMPFILE"), "{err}");
    assert!(
        Path::new(&format!("/proc/{}", victim.pid)).exists(),
        "the tree runs on after the refusal"
    );
    common::reap_all(&[victim.pid], true);
}

/// A file deleted while open on a tmpfs only a namespace made inside the tree has
/// (zdtm's mountpoints): made again in that namespace once it is built, it reads as
/// before, with its name and no link, and nothing is left beside it.
#[test]
fn deleted_file_on_a_nested_namespace_mount_round_trip() {
    let test = "deleted_file_on_a_nested_namespace_mount_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    answers_pass_after_round_trip(test, &tmp, NESTED_GHOST, "n");
}

/// A file of a tmpfs `z` opened through a bind of `z/1` before a child left the
/// namespace (so open on the root's mount), and through a bind of `z/2` the child made
/// after it unmounted both `z` and the first bind; the root then unlinks both names
/// (zdtm's mntns_link_ghost), or keeps a third (`$2` = `keep`, zdtm's mntns_link_remap
/// under `--link-remap`). The child answers: same file on two mounts, the first not of
/// its namespace, as many links as before; the root: no stasis link left.
const TWO_MOUNT_GHOST: &str = r#"
D=$1; K=$2
mount -t tmpfs -o size=1m none $D/z || exit 1
mkdir $D/z/1 $D/z/2; mount --bind $D/z/1 $D/one || exit 1
echo both > $D/one/F; ln $D/z/1/F $D/z/2/F
[ "$K" = keep ] && ln $D/z/1/F $D/z/F
exec 4<$D/one/F
cat > $D/child.sh <<'END'
D=$1; K=$2
umount $D/one && mount --bind $D/z/2 $D/two && umount $D/z || exit 1
exec 3<$D/two/F
echo > $D/opened
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS; n=0; [ "$K" = keep ] && n=1
read -r a <&3; read -r b <&4; [ "$a$b" = bothboth ] || r="$r data:$a$b"
[ "$(stat -L -c %i /proc/$$/fd/3)" = "$(stat -L -c %i /proc/$$/fd/4)" ] || r="$r inodes"
[ "$(stat -L -c %h /proc/$$/fd/3)" = $n ] || r="$r links:$(stat -L -c %h /proc/$$/fd/3)"
m=$(awk '/mnt_id/{print $2}' /proc/$$/fdinfo/4)
awk '{print $1}' /proc/$$/mountinfo | grep -qx "$m" && r="$r fd4-in-own-namespace"
echo $r > $D/cresult
END
unshare --mount --propagation private sh $D/child.sh $D $K &
while [ ! -e $D/opened ]; do sleep 0.05; done
rm $D/z/1/F $D/z/2/F
exec 4<&-
echo ready > $D/ready
wait
left=$(ls -A $D/z $D/z/1 $D/z/2 | grep '^\.stasis')
echo "$(cat $D/cresult)${left:+ left:$left}" > $D/result
"#;

#[test]
fn deleted_file_on_two_namespaces_mounts_round_trip() {
    let test = "deleted_file_on_two_namespaces_mounts_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    for sub in ["z", "one", "two"] {
        std::fs::create_dir_all(tmp.join("d").join(sub)).expect("mkdir");
    }
    answers_pass_after_round_trip(test, &tmp, TWO_MOUNT_GHOST, "z");
}

#[test]
fn link_remap_on_two_namespaces_mounts_round_trip() {
    let test = "link_remap_on_two_namespaces_mounts_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    let Some((d, victim, _guard)) = start_in_d_with(test, &tmp, TWO_MOUNT_GHOST, "keep") else {
        return;
    };
    let pid = victim.pid;
    round_trip(pid, &tmp.join("img"), &["--link-remap"], &[]);
    let answer = common::go_and_answer(&d);
    assert_eq!(answer.trim(), "PASS", "log: {}", victim.log_text());
    common::reap_all(&[pid], true);
}

/// Starts `script` with `arg` after the directory in `tmp/d` (with `z`, `one`, `two`).
fn start_in_d_with(
    test: &str,
    tmp: &TempDir,
    script: &str,
    arg: &str,
) -> Option<(PathBuf, Proc, common::TreeGuard)> {
    let d = tmp.join("d");
    for sub in ["z", "one", "two"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let victim = start_script(
        test,
        tmp.path(),
        script,
        &[&d, Path::new(arg)],
        &d.join("ready"),
    )?;
    let guard = common::TreeGuard(vec![victim.pid]);
    Some((d, victim, guard))
}

const READ_ONLY_GHOST: &str = r#"
D=$1
mount -t tmpfs -o size=1m none $D/t || exit 1
echo kept > $D/t/g
exec 3<$D/t/g
rm $D/t/g
mount -o remount,bind,ro $D/t || exit 1
echo ready > $D/ready
while [ ! -e $D/go ]; do sleep 0.05; done
r=PASS
read -r l <&3; [ "$l" = kept ] || r="$r data:$l"
[ "$(readlink /proc/$$/fd/3)" = "$D/t/g (deleted)" ] || r="$r name"
touch $D/t/new 2>/dev/null && r="$r writable"
[ "$(ls -A $D/t)" = "" ] || r="$r left:$(ls -A $D/t)"
awk -v m=$D/t '$5 == m {print $6}' /proc/$$/mountinfo | grep -q '^ro' || r="$r not-ro"
echo $r > $D/result
"#;

/// A file deleted while open on a mount remounted read-only (a writable tmpfs under it,
/// zdtm's ghost_on_rofs): made again through a writable clone of the mount, it reads as
/// before, and the mount stays read-only with nothing left on it.
#[test]
fn deleted_file_on_a_read_only_mount_round_trip() {
    let test = "deleted_file_on_a_read_only_mount_round_trip";
    let _serial = common::serial();
    require_privileged!(test);
    let tmp = TempDir::new(test);
    answers_pass_after_round_trip(test, &tmp, READ_ONLY_GHOST, "t");
}
