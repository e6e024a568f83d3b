//! A tree in a network namespace of its own holding a veth whose other end is outside
//! (`ip link add OUT type veth peer name IN netns PID`): dumped without
//! `--external veth[IN]:OUT` (as CRIU), its restore without the option is refused naming
//! the link and the option; with it the restore
//! makes the pair anew: the inside end in the new namespace with its index, address and
//! state, the outside end in ours, up, on the bridge named (`veth[IN]:OUT@BRIDGE`), and
//! packets cross it. A tree in a namespace the caller keeps: `network_namespace_of_the_caller`.
//! CRIU's `--external netdev[IN]:OUT`: `netdev_external_moves_a_made_link_in`; a pair
//! between the tree's namespace and one its child made:
//! `veth_pair_between_the_tree_and_a_namespace_it_made`.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ip_in(pid: i32, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ip"])
        .args(args)
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether ip (iproute2) and nsenter are there; else prints why `test` skips.
fn have_tools(test: &str) -> bool {
    let there = ip(&["-V"]) && Command::new("nsenter").arg("-V").output().is_ok();
    if !there {
        common::skip(test, "needs ip (iproute2) and nsenter");
    }
    there
}

fn net_ns(pid: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

#[test]
fn veth_with_its_other_end_outside() {
    let test = "veth_with_its_other_end_outside";
    let _serial = common::serial();
    require_privileged!(test);
    if !have_tools(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let n = std::process::id() % 100_000;
    let (inside, outside) = (format!("sv-in-{n}"), format!("sv-out-{n}"));
    let bridge = format!("sv-br-{n}");
    let mut run = in_own_netns("exec </dev/null >/dev/null 2>&1; exec sleep 1000");
    let pid = run.pid();
    let made =
        veth_into(pid, &outside, &inside, "10.99.0.2/24") && ip(&["link", "set", &outside, "up"]);
    if !made {
        run.kill();
        ip(&["link", "del", &outside]);
        common::skip(test, "could not make a veth pair into a network namespace");
        return;
    }
    let before = ip_in(pid, &["-o", "addr", "show", "dev", &inside]);
    let img = tmp.join("img");
    common::dump(pid, &img, &[]).assert_ok("dump of a veth without --external");
    run.kill();
    common::reap_all(&[pid], true);
    wait_gone(&outside);
    assert!(
        !ip(&["link", "show", &outside]),
        "the pair went with its namespace"
    );
    let external = format!("veth[{inside}]:{outside}");
    let unnamed = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
    ]);
    let msg = &unnamed.stderr;
    let option = format!("--external veth[{inside}]:OUTSIDE");
    assert!(
        !unnamed.status.success() && msg.contains(&option),
        "{unnamed:?}"
    );
    common::reap_all(&[pid], true);
    let bridged = match ip(&["link", "add", &bridge, "type", "bridge"]) {
        true => format!("{external}@{bridge}"),
        false => external.clone(),
    };
    let out = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
        "--external".as_ref(),
        bridged.as_ref(),
    ]);
    let _guard = common::TreeGuard(vec![pid]);
    assert!(out.status.success(), "restore: {out:?}");
    let after = ip_in(pid, &["-o", "addr", "show", "dev", &inside]);
    let link = ip_in(pid, &["-o", "link", "show", "dev", &inside]);
    let host = Command::new("ip")
        .args(["-o", "link", "show", &outside])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let crossed = ip(&["addr", "add", "10.99.0.1/24", "dev", &outside])
        && Command::new("ping")
            .args(["-c", "1", "-W", "2", "10.99.0.2"])
            .output()
            .is_ok_and(|o| o.status.success());
    let have_ping = Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists();
    ip(&["link", "del", &outside]);
    common::reap_all(&[pid], true);
    assert!(
        after.contains("10.99.0.2/24"),
        "inside address: {after} (was {before})"
    );
    assert!(link.contains(",UP"), "inside link up: {link}");
    assert!(
        host.contains("UP"),
        "the outside end is up in our namespace: {host}"
    );
    if bridged != external {
        assert!(
            host.contains(&format!("master {bridge}")),
            "on the bridge: {host}"
        );
    }
    assert!(
        !have_ping || crossed,
        "a ping from outside crosses the pair"
    );
}

/// A tree in a network namespace the caller keeps (`ip netns add`, as podman's): dumped
/// with `--external net[INO]:KEY` (an INO that is not the tree's is refused naming it, the
/// tree running on), its restore without a namespace for KEY is refused naming KEY, and
/// with `--inherit-fd fd[N]:KEY` (fd N that namespace) the tree comes back in it.
#[test]
fn network_namespace_of_the_caller() {
    use std::os::unix::fs::MetadataExt;
    let test = "network_namespace_of_the_caller";
    let _serial = common::serial();
    require_privileged!(test);
    let name = format!("sx-{}", std::process::id() % 100_000);
    if !ip(&["netns", "add", &name]) || Command::new("nsenter").arg("-V").output().is_err() {
        common::skip(test, "needs ip netns add (iproute2) and nsenter");
        return;
    }
    let path = format!("/run/netns/{name}");
    let ino = std::fs::metadata(&path).unwrap().ino();
    let tmp = TempDir::new(test);
    let net = format!("--net={path}");
    let mut run = common::start(Command::new("setsid").args([
        "nsenter",
        &net,
        "sh",
        "-c",
        "exec </dev/null >/dev/null 2>&1; exec sleep 1000",
    ]));
    let pid = run.pid();
    let ino_of = |pid: i32| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
    while ino_of(pid).ok() != Some(ino) {
        common::sleep_ms(10);
    }
    let img = tmp.join("img");
    let wrong = format!("net[{}]:extRootNetNS", ino + 1);
    let refused = common::dump(pid, &img, &["--external", &wrong]);
    let msg = refused.assert_failed("wrong net[INO]");
    assert!(
        msg.contains(&wrong) && msg.contains(&format!("net[{ino}]")),
        "{msg}"
    );
    assert!(
        common::proc_state(pid).is_some_and(|s| s != 'Z'),
        "the tree runs on"
    );
    let external = format!("net[{ino}]:extRootNetNS");
    common::dump(pid, &img, &["--external", &external]).assert_ok("dump with external net");
    run.kill();
    common::reap_all(&[pid], true);
    let img_s = img.to_str().unwrap();
    let alone = common::stasis(&["restore", "-D", img_s, "-d"]);
    let why = alone.stderr.clone();
    assert!(
        !alone.status.success() && why.contains("extRootNetNS"),
        "{why}"
    );
    let given = format!(
        "exec 7<{path}; exec {} restore -D {img_s} -d --inherit-fd 'fd[7]:extRootNetNS'",
        common::STASIS
    );
    let out = Command::new("sh").args(["-c", &given]).output().unwrap();
    let _guard = common::TreeGuard(vec![pid]);
    let back = ino_of(pid);
    common::reap_all(&[pid], true);
    ip(&["netns", "del", &name]);
    assert!(out.status.success(), "restore: {out:?}");
    assert_eq!(back.ok(), Some(ino), "restored into the caller's namespace");
}

/// The first line of `ip -o link show dev NAME` in the namespace of `pid`: its index.
fn index_in(pid: i32, name: &str) -> String {
    index_in_text(&ip_in(pid, &["-o", "link", "show", "dev", name]))
}

/// Runs `script` in the network namespace of `pid`; whether it succeeded.
fn sh_in(pid: i32, script: &str) -> bool {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "sh", "-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until link `name` of our namespace is gone (the kernel tears a namespace down
/// after its last task, asynchronously).
fn wait_gone(name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ip(&["link", "show", name]) && std::time::Instant::now() < deadline {
        common::sleep_ms(50);
    }
}

/// Makes a veth pair OUTSIDE (ours) – INSIDE (in the namespace of `pid`, with `addr`,
/// up, the loopback up too); whether it could.
fn veth_into(pid: i32, outside: &str, inside: &str, addr: &str) -> bool {
    let p = pid.to_string();
    let made = ip(&[
        "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", &p,
    ]);
    let set_up =
        format!("ip link set lo up && ip addr add {addr} dev {inside} && ip link set {inside} up");
    made && sh_in(pid, &set_up)
}

/// A process running `sh -c SCRIPT` in a network namespace of its own, once it is there.
fn in_own_netns(script: &str) -> common::Running {
    let run = common::start(Command::new("setsid").args(["unshare", "--net", "sh", "-c", script]));
    let pid = run.pid();
    let ours = net_ns("self");
    while net_ns(&pid.to_string()) == ours || common::proc_state(pid).is_none() {
        common::sleep_ms(10);
    }
    run
}

/// CRIU's `--external netdev[INSIDE]:OUTSIDE` (zdtm's cr_veth02): a tree in a network
/// namespace of its own holds a veth whose other end is outside; dumped without options,
/// it is restored with one end of a pair made beforehand moved in as the inside end: its
/// index, address and state are the dumped ones, the pair's other end stays ours, and
/// packets cross it.
#[test]
fn netdev_external_moves_a_made_link_in() {
    let test = "netdev_external_moves_a_made_link_in";
    let _serial = common::serial();
    require_privileged!(test);
    if !have_tools(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let n = std::process::id() % 100_000;
    let (inside, outside) = (format!("sd-in-{n}"), format!("sd-out-{n}"));
    let (given, host) = (format!("sd-new-{n}"), format!("sd-host-{n}"));
    let mut run = in_own_netns("exec </dev/null >/dev/null 2>&1; exec sleep 1000");
    let pid = run.pid();
    let made = veth_into(pid, &outside, &inside, "10.98.0.2/24");
    if !made {
        run.kill();
        ip(&["link", "del", &outside]);
        common::skip(test, "could not make a veth pair into a network namespace");
        return;
    }
    let index = index_in(pid, &inside);
    let img = tmp.join("img");
    common::dump(pid, &img, &[]).assert_ok("dump of a veth whose other end is outside");
    run.kill();
    common::reap_all(&[pid], true);
    wait_gone(&outside);
    assert!(
        ip(&["link", "add", &given, "type", "veth", "peer", "name", &host]),
        "make the pair to move in"
    );
    let external = format!("netdev[{inside}]:{given}");
    let out = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
        "--external".as_ref(),
        external.as_ref(),
    ]);
    let _guard = common::TreeGuard(vec![pid]);
    let after = ip_in(pid, &["-o", "addr", "show", "dev", &inside]);
    let link = ip_in(pid, &["-o", "link", "show", "dev", &inside]);
    let moved = !ip(&["link", "show", &given]);
    let crossed = ip(&["addr", "add", "10.98.0.1/24", "dev", &host])
        && ip(&["link", "set", &host, "up"])
        && Command::new("ping")
            .args(["-c", "1", "-W", "2", "10.98.0.2"])
            .output()
            .is_ok_and(|o| o.status.success());
    let have_ping = Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists();
    ip(&["link", "del", &host]);
    ip(&["link", "del", &given]);
    common::reap_all(&[pid], true);
    assert!(out.status.success(), "restore: {out:?}");
    assert_eq!(index_in_text(&link), index, "inside index: {link}");
    assert!(after.contains("10.98.0.2/24"), "inside address: {after}");
    assert!(link.contains(",UP"), "inside link up: {link}");
    assert!(moved, "{given} left our namespace");
    assert!(
        !have_ping || crossed,
        "a ping from outside crosses the pair"
    );
}

fn index_in_text(link: &str) -> String {
    link.split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A veth pair between the tree's network namespace and one a process of it made
/// (zdtm's netns_sub_veth): each end is restored in its namespace with its name, index
/// and address, the root's end on its bridge, and packets cross the pair.
#[test]
fn veth_pair_between_the_tree_and_a_namespace_it_made() {
    let test = "veth_pair_between_the_tree_and_a_namespace_it_made";
    let _serial = common::serial();
    require_privileged!(test);
    if !have_tools(test) {
        return;
    }
    let tmp = TempDir::new(test);
    let n = std::process::id() % 100_000;
    let (root_end, child_end) = (format!("sp-r-{n}"), format!("sp-c-{n}"));
    let mut run = in_own_netns("exec </dev/null >/dev/null 2>&1; unshare --net sleep 1000 & wait");
    let pid = run.pid();
    let ns = net_ns(&pid.to_string());
    let mut child = 0;
    for _ in 0..500 {
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kid = kids.split_whitespace().next().and_then(|k| k.parse().ok());
        if let Some(k) = kid.filter(|k: &i32| {
            net_ns(&k.to_string()).is_some_and(|n| Some(n) != ns)
                && std::fs::read_to_string(format!("/proc/{k}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
        }) {
            child = k;
            break;
        }
        common::sleep_ms(10);
    }
    let (p, c) = (pid.to_string(), child.to_string());
    let made = child > 0
        && ip(&[
            "link", "add", "name", &root_end, "index", "40", "netns", &p, "type", "veth", "peer",
            "name", &child_end, "index", "41", "netns", &c,
        ]);
    let root_up = format!(
        "ip link set lo up && ip link add sp-br type bridge && ip link set sp-br up && \
         ip link set {root_end} master sp-br && ip addr add 10.97.0.1/24 dev sp-br && \
         ip link set {root_end} up"
    );
    let child_up = format!(
        "ip link set lo up && ip addr add 10.97.0.2/24 dev {child_end} && ip link set {child_end} up"
    );
    if !made || !sh_in(pid, &root_up) || !sh_in(child, &child_up) {
        run.kill();
        common::reap_all(&[pid, child], true);
        common::skip(
            test,
            "could not make a veth pair between two network namespaces",
        );
        return;
    }
    let img = tmp.join("img");
    common::dump(pid, &img, &[]).assert_ok("dump of a pair between two of the tree's namespaces");
    run.kill();
    common::reap_all(&[pid, child], true);
    let out = common::stasis(&[
        "restore".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
        "-d".as_ref(),
    ]);
    let _guard = common::TreeGuard(vec![pid, child]);
    let root_link = ip_in(pid, &["-o", "link", "show", "dev", &root_end]);
    let child_link = ip_in(child, &["-o", "link", "show", "dev", &child_end]);
    let child_addr = ip_in(child, &["-o", "addr", "show", "dev", &child_end]);
    let crossed = sh_in(pid, "ping -c 1 -W 2 10.97.0.2 >/dev/null 2>&1");
    let have_ping = Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists();
    common::reap_all(&[pid, child], true);
    assert!(out.status.success(), "restore: {out:?}");
    assert_eq!(index_in_text(&root_link), "40", "root end: {root_link}");
    assert!(
        root_link.contains("master sp-br"),
        "root end on its bridge: {root_link}"
    );
    assert_eq!(index_in_text(&child_link), "41", "child end: {child_link}");
    assert!(
        child_addr.contains("10.97.0.2/24"),
        "child end address: {child_addr}"
    );
    assert!(!have_ping || crossed, "a ping crosses the pair");
}
