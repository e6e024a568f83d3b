//! The tree's cgroups (`cgroup.img`): a tree in cgroups with limits set, dumped, its
//! cgroups removed, comes back in cgroups made again with the same limits; a thread in a
//! threaded cgroup comes back there; `--cgroup-root` moves the tree; a cgroup whose
//! `pids.max` cannot hold the tree is refused before any process exists. Each controller
//! is taken from the host's v1 hierarchy if it has one, else from cgroup2; the cgroups
//! are made below this test's own.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{Proc, Start, Status, TempDir};

/// A controller's hierarchy here: its mount point, whether it is cgroup2, and this
/// process's cgroup in it.
struct Hier {
    mount: PathBuf,
    v2: bool,
    own: String,
}

fn mounts() -> Vec<(PathBuf, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() > 4 && r.len() > 2 && f[3] == "/" {
            out.push((PathBuf::from(f[4]), r[0].to_string(), r[2].to_string()));
        }
    }
    out
}

fn own_cgroup(controllers: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
    (text.lines())
        .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
        .find(|(c, _)| *c == controllers)
        .map(|(_, p)| p.to_string())
        .expect("in every hierarchy")
}

/// Where `controller` lives here (v1 first), if anywhere.
fn hierarchy(controller: &str) -> Option<Hier> {
    let all = mounts();
    for (mount, fstype, opts) in &all {
        if fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
            let controllers = opts
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro")
                .collect::<Vec<_>>();
            let own = own_cgroup(&controllers.join(","));
            return Some(Hier {
                mount: mount.clone(),
                v2: false,
                own,
            });
        }
    }
    let (mount, _, _) = all.iter().find(|(_, t, _)| t == "cgroup2")?;
    let own = own_cgroup("");
    let offered = std::fs::read_to_string(
        mount
            .join(own.trim_start_matches('/'))
            .join("cgroup.subtree_control"),
    )
    .ok()?;
    offered
        .split_whitespace()
        .any(|c| c == controller)
        .then(|| Hier {
            mount: mount.clone(),
            v2: true,
            own,
        })
}

impl Hier {
    /// The directory of cgroup `name` below this test's own.
    fn dir(&self, name: &str) -> PathBuf {
        self.mount.join(self.own.trim_start_matches('/')).join(name)
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
}

/// Removes the cgroups on drop (children first).
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The limits set, per controller: (file in v1, file in v2, value, as read back in v1, in v2).
const LIMITS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "memory",
        "memory.limit_in_bytes",
        "memory.max",
        "268435456",
        "268435456",
        "268435456",
    ),
    ("pids", "pids.max", "pids.max", "50", "50", "50"),
    (
        "cpu",
        "cpu.cfs_quota_us",
        "cpu.max",
        "50000",
        "50000",
        "50000 100000",
    ),
];

/// Makes cgroup `name` with `LIMITS` in every hierarchy that has the controller.
fn limited(name: &str) -> (Cgroups, Vec<(PathBuf, &'static str, &'static str)>) {
    let mut made = Cgroups(Vec::new());
    let mut expect = Vec::new();
    for (ctl, v1, v2, value, back1, back2) in LIMITS {
        let Some(h) = hierarchy(ctl) else { continue };
        let dir = h.dir(name);
        if !made.0.contains(&dir) {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            made.0.push(dir.clone());
        }
        let (file, back) = if h.v2 { (*v2, *back2) } else { (*v1, *back1) };
        write(
            &dir.join(file),
            if h.v2 && *ctl == "cpu" {
                "50000 100000"
            } else {
                value
            },
        );
        expect.push((dir, file, back));
    }
    (made, expect)
}

/// Starts the cgroups victim with `args`; None (skipped) if it cannot run here.
fn victim(test: &str, tmp: &TempDir, args: &[&str]) -> Option<Proc> {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut v = common::spawn_victim("cgroups", args, &work);
    match v.wait_ready() {
        Start::Ready => Some(v),
        Start::Skip(why) => {
            common::skip(test, &why);
            None
        }
    }
}

/// A victim (`join`) in a new cgroup `what` of hierarchy `h`: the temporary directory,
/// the cgroup (removed on drop) and the victim; None if the victim skipped.
fn joined(test: &str, h: &Hier, what: &str) -> Option<(TempDir, PathBuf, Cgroups, Proc)> {
    let tmp = TempDir::new(&format!("cgroup-{what}"));
    let dir = h.dir(&tag(what));
    std::fs::create_dir(&dir).expect("mkdir");
    let made = Cgroups(vec![dir.clone()]);
    let d = dir.display().to_string();
    let v = victim(test, &tmp, &["join", &d])?;
    Some((tmp, dir, made, v))
}

fn dump(v: &mut Proc, img: &Path) {
    common::dump(v.pid, img, &[]).assert_ok("dump");
    v.wait_exit(common::EXIT_TIMEOUT);
    common::reap_image_tree(img);
}

fn restore(img: &Path, extra: &[&str]) -> Result<i32, common::Output> {
    let pidfile = img.with_extension("pid");
    let mut args: Vec<&OsStr> = vec![
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
    ];
    args.extend([OsStr::new("--pidfile"), pidfile.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    let out = common::stasis(&args);
    if !out.status.success() {
        return Err(out);
    }
    Ok(read(&pidfile).parse().expect("pid"))
}

fn go_and_pass(pid: i32, v: &Proc) {
    let mut restored = Proc::adopt(pid, &v.log);
    let st = restored.go();
    assert_eq!(
        st,
        Status::Exited(0),
        "victim log:\n{}",
        restored.log_text()
    );
}

fn tag(what: &str) -> String {
    format!("stasis-{what}-{}", std::process::id())
}

#[test]
fn limits_come_back_in_recreated_cgroups() {
    let _serial = common::serial();
    require_privileged!("limits_come_back_in_recreated_cgroups");
    let tmp = TempDir::new("cgroup-limits");
    let name = tag("limits");
    let (made, expect) = limited(&name);
    if expect.is_empty() {
        return common::skip(
            "limits_come_back_in_recreated_cgroups",
            "no memory, pids nor cpu controller here",
        );
    }
    let dirs: Vec<String> = made.0.iter().map(|d| d.display().to_string()).collect();
    let mut args = vec!["join"];
    args.extend(dirs.iter().map(String::as_str));
    let Some(mut v) = victim("limits_come_back_in_recreated_cgroups", &tmp, &args) else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    for d in made.0.iter().rev() {
        std::fs::remove_dir(d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
    }
    let pid = restore(&img, &[]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    for (dir, file, value) in &expect {
        assert_eq!(
            read(&dir.join(file)),
            *value,
            "{} after the restore",
            dir.join(file).display()
        );
        let procs = read(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "pid {pid} not in {}: {procs}",
            dir.display()
        );
    }
    go_and_pass(pid, &v);
}

#[test]
fn thread_comes_back_in_its_threaded_cgroup() {
    let _serial = common::serial();
    require_privileged!("thread_comes_back_in_its_threaded_cgroup");
    let Some((mount, _, _)) = mounts().into_iter().find(|(_, t, _)| t == "cgroup2") else {
        return common::skip(
            "thread_comes_back_in_its_threaded_cgroup",
            "no cgroup2 here",
        );
    };
    let tmp = TempDir::new("cgroup-threaded");
    let h = Hier {
        mount,
        v2: true,
        own: own_cgroup(""),
    };
    let dir = h.dir(&tag("threaded"));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::create_dir(dir.join("t")).expect("mkdir t");
    let made = Cgroups(vec![dir.clone(), dir.join("t")]);
    write(&dir.join("t/cgroup.type"), "threaded");
    let d = dir.display().to_string();
    let Some(mut v) = victim(
        "thread_comes_back_in_its_threaded_cgroup",
        &tmp,
        &["threaded", &d],
    ) else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    for d in made.0.iter().rev() {
        std::fs::remove_dir(d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
    }
    let pid = restore(&img, &[]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(read(&dir.join("t/cgroup.type")), "threaded");
    assert_eq!(
        read(&dir.join("t/cgroup.threads")).lines().count(),
        1,
        "one thread in t"
    );
    go_and_pass(pid, &v);
}

#[test]
fn cgroup_root_moves_the_tree() {
    let _serial = common::serial();
    require_privileged!("cgroup_root_moves_the_tree");
    let Some(h) = hierarchy("pids") else {
        return common::skip("cgroup_root_moves_the_tree", "no pids controller here");
    };
    let tmp = TempDir::new("cgroup-root");
    let (old, new) = (h.dir(&tag("old")), h.dir(&tag("new")));
    std::fs::create_dir(&old).expect("mkdir");
    let _made = Cgroups(vec![old.clone(), new.clone()]);
    write(&old.join("pids.max"), "40");
    let d = old.display().to_string();
    let Some(mut v) = victim("cgroup_root_moves_the_tree", &tmp, &["moved", &d]) else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    let to = format!(
        "{}:{}/{}",
        if h.v2 { "" } else { "pids" },
        h.own.trim_end_matches('/'),
        tag("new")
    );
    let to = to.trim_start_matches(':').to_string();
    let pid = restore(&img, &["--cgroup-root", &to]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(read(&new.join("pids.max")), "40");
    let procs = read(&new.join("cgroup.procs"));
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "pid {pid} not in {}: {procs}",
        new.display()
    );
    go_and_pass(pid, &v);
}

#[test]
fn pids_max_below_the_tree_is_refused() {
    let _serial = common::serial();
    require_privileged!("pids_max_below_the_tree_is_refused");
    let Some(h) = hierarchy("pids") else {
        return common::skip(
            "pids_max_below_the_tree_is_refused",
            "no pids controller here",
        );
    };
    let Some((tmp, dir, _made, mut v)) = joined("pids_max_below_the_tree_is_refused", &h, "small")
    else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    // The cgroup is still there: the (soft) restore keeps its settings, now too small
    // for the victim and its child.
    write(&dir.join("pids.max"), "1");
    let out = restore(&img, &[]).expect_err("restore must be refused");
    let err = out.stderr.clone();
    assert!(
        err.contains("pids.max 1") && err.contains(&tag("small")),
        "stderr: {err}"
    );
    assert!(
        common::proc_state(v.pid).is_none(),
        "pid {} was created",
        v.pid
    );
    assert_eq!(
        read(&dir.join("pids.current")),
        "0",
        "a task went into {}",
        dir.display()
    );
}

/// The modes that do not create: `props` and `none` refuse a missing cgroup, `strict`
/// an existing one, each naming it, before any process exists; soft then restores.
#[test]
fn modes_refuse_missing_or_existing_cgroups() {
    let test = "modes_refuse_missing_or_existing_cgroups";
    let _serial = common::serial();
    require_privileged!(test);
    let Some(h) = hierarchy("pids") else {
        return common::skip(test, "no pids controller here");
    };
    let Some((tmp, dir, _made, mut v)) = joined(test, &h, "modes") else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    let refused = |mode: &str, what: &str| {
        let out = restore(&img, &[mode]).expect_err("restore must be refused");
        assert!(
            out.stderr.contains(what) && out.stderr.contains(&tag("modes")),
            "{mode}: {}",
            out.stderr
        );
        assert!(
            common::proc_state(v.pid).is_none(),
            "{mode}: pid {} made",
            v.pid
        );
    };
    refused("--manage-cgroups=strict", "exists already");
    std::fs::remove_dir(&dir).expect("rmdir");
    refused("--manage-cgroups=props", "does not exist");
    refused("--manage-cgroups=none", "does not exist");
    let pid = restore(&img, &[]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    go_and_pass(pid, &v);
}

/// A memory limit below the tree's resident memory is refused, naming the cgroup.
#[test]
fn memory_limit_below_the_tree_is_refused() {
    let test = "memory_limit_below_the_tree_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    let Some(h) = hierarchy("memory") else {
        return common::skip(test, "no memory controller here");
    };
    let Some((tmp, _dir, _made, mut v)) = joined(test, &h, "mem") else {
        return;
    };
    let img = tmp.join("img");
    dump(&mut v, &img);
    // Into a fresh cgroup (`--cgroup-root`): a v1 cgroup keeps what its dead tasks left
    // charged, and refuses a limit below it.
    let fresh = h.dir(&tag("mem2"));
    std::fs::create_dir(&fresh).expect("mkdir");
    let _fresh = Cgroups(vec![fresh.clone()]);
    let file = if h.v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    write(&fresh.join(file), "4096");
    let to = format!("{}/{}", h.own.trim_end_matches('/'), tag("mem2"));
    let out = restore(&img, &["--cgroup-root", &to]).expect_err("restore must be refused");
    assert!(
        out.stderr.contains(file) && out.stderr.contains(&tag("mem2")),
        "stderr: {}",
        out.stderr
    );
    assert!(
        common::proc_state(v.pid).is_none(),
        "pid {} was created",
        v.pid
    );
}

/// A tree in a frozen cgroup is refused, naming it, instead of hanging in the freeze (no
/// ptrace stop interrupts a frozen task); thawed, it runs on untouched.
#[test]
fn frozen_cgroup_is_refused_not_waited_for() {
    let test = "frozen_cgroup_is_refused_not_waited_for";
    let _serial = common::serial();
    require_privileged!(test);
    let Some(h) = hierarchy("freezer").or_else(|| {
        let (mount, _, _) = mounts().into_iter().find(|(_, t, _)| t == "cgroup2")?;
        Some(Hier {
            mount,
            v2: true,
            own: own_cgroup(""),
        })
    }) else {
        return common::skip(test, "no freezer here");
    };
    let Some((tmp, dir, _made, mut v)) = joined(test, &h, "frozen") else {
        return;
    };
    let (file, frozen, thawed) = if h.v2 {
        ("cgroup.freeze", "1", "0")
    } else {
        ("freezer.state", "FROZEN", "THAWED")
    };
    write(&dir.join(file), frozen);
    common::sleep_ms(200);
    let out = common::dump(v.pid, &tmp.join("img"), &[]);
    write(&dir.join(file), thawed);
    let err = out.assert_failed("dump of a frozen tree").to_string();
    assert!(
        err.contains("frozen") && err.contains(&tag("frozen")),
        "stderr: {err}"
    );
    let st = v.go();
    v.assert_passed(st);
}
