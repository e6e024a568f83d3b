//! Tests of `stasis inspect`'s text and JSON.

use super::*;
use crate::abi::{AltStack, KernelSigaction};
use crate::image::ProcessImage;

#[test]
fn text_shows_the_network_lock_and_whether_it_is_held() {
    use crate::image::netlock::{LockMode, NetLockImage};
    let dir = Path::new("/img");
    let lock = NetLockImage {
        mode: LockMode::Iptables,
        pids: vec![7, 9],
    };
    let mut out = Vec::new();
    network_lock(dir, &lock, &[9], &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("network lock: iptables (stasis_7 stasis_9)\n"),
        "{text}"
    );
    assert!(text.contains("stasis_9 held now"), "{text}");
    assert!(!text.contains("stasis_7 held"), "{text}");
    assert!(text.contains("stasis network-unlock -D /img"), "{text}");
    let mut out = Vec::new();
    let skip = NetLockImage {
        mode: LockMode::Skip,
        pids: vec![],
    };
    network_lock(dir, &skip, &[], &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "network lock: skip, no connection locked\n"
    );
}
use crate::image::sample;

fn sample_image() -> Image {
    let mut task = sample::task(10);
    task.sigactions[9] = KernelSigaction {
        handler: 0x40_1100,
        flags: 0x1c00_0004,
        restorer: 0x40_1200,
        mask: 0,
    };
    task.threads[0].altstack = AltStack {
        sp: 0x7f00_0000_0000,
        flags: 0,
        _pad: 0,
        size: 65536,
    };
    task.timers.itimers[0].value_us = 500;
    let mut mm = sample::mm();
    mm.vmas[1].flags.locked = true;
    mm.vmas[1].flags.sealed = true;
    let mut tree = sample::tree(&[10]);
    let mut termios = vec![0u8; 36];
    termios[12..16].copy_from_slice(&0x8a3bu32.to_ne_bytes());
    tree.terminal = Some(crate::image::tree::JobTerminal {
        foreground: 10,
        termios,
    });
    Image {
        dir: "/img".into(),
        inventory: sample::inventory(&[10]),
        tree,
        tty: Default::default(),
        processes: vec![ProcessImage {
            task,
            mm,
            files: sample::files(),
        }],
        ghosts: Default::default(),
        ghost_homes: Default::default(),
        sysv: Default::default(),
        mqueue: Default::default(),
        orphan_pty: Default::default(),
        pty_devpts: Default::default(),
        ns: Default::default(),
        cgroup: Default::default(),
        mounts: None,
        nested_mounts: Default::default(),
        mnt_joins: Default::default(),
        binfmt: Default::default(),
        maps_elsewhere: Default::default(),
        netns: None,
        netlinks: Default::default(),
        netpeers: Default::default(),
        netjoins: Default::default(),
        socket_nets: Default::default(),
        userns: None,
        chain: None,
        parent_pages: Default::default(),
        listed: Default::default(),
    }
}

#[test]
fn text_lists_sysv_objects() {
    use crate::image::sysv::{IpcNs, IpcPerm, SemSet, ShmSegment, SysvImage};
    let mut image = sample_image();
    let perm = IpcPerm {
        key: 0x2a,
        id: 32768,
        mode: 0o1600,
        ..Default::default()
    };
    image.sysv = SysvImage {
        ns: IpcNs::Own,
        shm: vec![ShmSegment {
            perm,
            size: 100,
            hugetlb: None,
            runs: vec![(0, 1)],
        }],
        sem: vec![SemSet {
            perm,
            values: vec![3],
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    text(&image, &mut out).expect("write to a vector");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("System V IPC (Own namespace):"), "{text}");
    assert!(
        text.contains(
            "  shm id 32768 key 0x2a mode 1600 owner 0:0 creator 0:0: 100 bytes, 1 pages stored"
        ),
        "{text}"
    );
    assert!(
        text.contains("  sem id 32768 key 0x2a mode 1600 owner 0:0 creator 0:0: values [3]"),
        "{text}"
    );
}

#[test]
fn text_lists_posix_queues() {
    use crate::image::mqueue::{MqueueImage, PosixMessage, PosixQueue};
    let mut image = sample_image();
    image.mqueue = MqueueImage {
        queues: vec![PosixQueue {
            name: "q".into(),
            mode: 0o640,
            uid: 1,
            gid: 2,
            maxmsg: 10,
            msgsize: 64,
            messages: vec![PosixMessage::default()],
        }],
    };
    let mut out = Vec::new();
    text(&image, &mut out).expect("write to a vector");
    let text = String::from_utf8(out).expect("utf-8");
    let want = "POSIX queue /q: mode 640 owner 1:2, maxmsg 10 msgsize 64, 1 messages";
    assert!(text.contains(want), "{text}");
}

#[test]
fn text_shows_every_task_attribute() {
    let mut out = Vec::new();
    text(&sample_image(), &mut out).expect("write to a vector");
    let text = String::from_utf8(out).expect("utf-8");
    let wanted = [
        "creds: uid [1000, 1000, 1000, 1000] gid [1000, 1000, 1000, 1000] groups [1000]",
        "caps: inh 0x0 prm 0x0 eff 0x0 bnd 0x1ffffffffff amb 0x0, securebits 0x0, no_new_privs false",
        "attrs: personality 0x0, dumpable 1, thp_disable 0x0, child_subreaper false, membarrier 0x0, oom_score_adj 0",
        "audit: loginuid 1000, sessionid 3",
        "rlimits: cpu unlimited/unlimited, fsize unlimited/unlimited",
        "itimer real: 500 us left",
        "timer 0: clock 1 notify 0 signal 34",
        "thread 10 \"thread-10\"",
        "pending: 1 (signals 0)",
        "sigaltstack: 0x7f0000000000 size 65536 flags 0x0",
        "sigaltstack: none",
        "sched: policy 0 prio 0 flags 0x0 nice 0, affinity [f], timerslack 50000 ns, ioprio 0x0, pdeathsig 0",
        "seccomp: disabled",
        "seccomp: filter, 2 filters (oldest first: #0 1 insns, #1 2 insns log)",
        "signals: 1 handlers, 0 ignored, shared pending: none",
        "handler 10: 0x401100 flags 0x1c000004 (SA_SIGINFO|SA_RESTORER|SA_ONSTACK|SA_RESTART) mask 0x0",
        "memory: 3 mappings, 3 pages stored, 1 guard regions",
        "0x000000600000-0x000000604000 rw-p anon [locked sealed]",
        "guard 0x000000603000-0x000000604000 (1 pages)",
        "shell job terminal: foreground group 10, lflag 0x8a3b",
    ];
    for w in wanted {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
}

/// Pid 11 shares its parent's address space and signal handlers.
fn sharing_image() -> Image {
    let mut image = sample_image();
    image.inventory = sample::inventory(&[10, 11]);
    image.tree = sample::tree(&[10, 11]);
    let child = &mut image.tree.processes[1];
    (child.shares_vm, child.shares_sighand) = (true, true);
    let mut task = sample::task(11);
    task.sigactions.clear();
    image.processes.push(ProcessImage {
        task,
        mm: crate::image::mm::MmImage::default(),
        files: sample::files(),
    });
    image
}

#[test]
fn text_and_json_show_a_shared_address_space() {
    let mut out = Vec::new();
    text(&sharing_image(), &mut out).expect("write to a vector");
    let text = String::from_utf8(out).expect("utf-8");
    for w in [
        "pid 11 (proc-11) parent 10 pgid 10 sid 10 running shares address space, signal handlers with parent",
        "memory: the address space of pid 10",
        "signals: the handlers of parent 10, shared pending: none",
    ] {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
    let json = to_json(&sharing_image());
    assert_eq!(json["processes"][1]["mm_of"], 10);
    assert!(json["processes"][1]["mm"].is_null());
    assert_eq!(json["processes"][0]["mm_of"], 10);
    assert!(json["processes"][0]["mm"]["vmas"].is_array());
}

#[test]
fn json_holds_the_new_records() {
    let json = to_json(&sample_image()).to_string();
    for key in [
        "\"seccomp\"",
        "\"audit\"",
        "\"loginuid\"",
        "\"guards\"",
        "\"insns\"",
    ] {
        assert!(json.contains(key), "{key} missing from {json}");
    }
}

/// The image of a container-like tree: own UTS namespace, mounts, network namespace, a
/// cgroup, a console held outside, and a parent image.
fn container_image() -> Image {
    use crate::image::mnt::{How, Mount, MountsImage};
    let mut image = sample_image();
    image.ns.uts = Some(crate::image::ns::Uts {
        hostname: "box".into(),
        domainname: "(none)".into(),
    });
    let mount = |id, parent, at: &str, fstype: &str, how| Mount {
        id,
        parent,
        dev: (0, 50),
        mountpoint: at.into(),
        root: "/".into(),
        fstype: fstype.into(),
        source: "none".into(),
        mnt_opts: "rw,nosuid".into(),
        super_opts: "rw".into(),
        shared: None,
        master: Some(3),
        unbindable: false,
        how,
    };
    image.mounts = Some(MountsImage {
        mounts: vec![
            mount(20, 1, "/", "ext4", How::Root { hint: None }),
            mount(21, 20, "/data", "tmpfs", How::Tmpfs),
            mount(
                22,
                20,
                "/dev/console",
                "devpts",
                How::Bind {
                    of: 23,
                    rel: "1".into(),
                },
            ),
        ],
    });
    image.netns = Some(crate::image::netns::NetNsImage {
        links: vec![crate::image::netns::Link {
            ifindex: 1,
            name: "lo".into(),
            kind: "loopback".into(),
            mtu: 65536,
            flags: vec!["UP".into(), "LOOPBACK".into()],
            ..Default::default()
        }],
        addrs: vec![0; 40],
        nft: "table inet t {\n}\n".into(),
        ..Default::default()
    });
    image.netlinks.links.push(crate::image::netns::LinkMore {
        name: "br0".into(),
        info: vec![("stp_state".into(), "1".into())],
        ..Default::default()
    });
    image.netlinks.links.push(crate::image::netns::LinkMore {
        name: "v0".into(),
        master: "br0".into(),
        peer: "v1".into(),
        ..Default::default()
    });
    image.netlinks.nested.push(crate::image::netns::NestedNet {
        pid: 11,
        ns: crate::image::netns::NetNsImage::default(),
        links: vec![],
    });
    image
        .mnt_joins
        .joins
        .push(crate::image::mnt::Join { pid: 12, of: 10 });
    image
        .cgroup
        .hierarchies
        .push(crate::image::cgroup::Hierarchy {
            controllers: String::new(),
            tops: vec!["/box".into()],
            dirs: vec![],
        });
    image.cgroup.tasks.push(crate::image::cgroup::TaskCgroups {
        pid: 10,
        tid: 10,
        paths: vec!["/box".into()],
    });
    image
        .orphan_pty
        .ptys
        .push(crate::image::orphan_pty::OrphanPty {
            index: 0,
            devpts: "/dev/pts".into(),
            termios: vec![],
            winsize: [24, 80, 0, 0],
        });
    image.chain = Some(crate::image::chain::ChainImage {
        id: 0xabc,
        parent: Some(crate::image::chain::ParentRef {
            dir: "../pre".into(),
            id: 0x123,
        }),
        ..Default::default()
    });
    image
}

#[test]
fn text_and_json_show_the_container_sections() {
    let mut out = Vec::new();
    text(&container_image(), &mut out).expect("write to a vector");
    let text = String::from_utf8(out).expect("utf-8");
    for w in [
        "uts: hostname \"box\", domainname \"(none)\"",
        "hierarchy unified (v2): tops /box",
        "task 10/10: /box",
        "mounts: 3 (the tree's own mount namespace)",
        "21 (parent 20) /data tmpfs root / source none opts rw,nosuid master:3: new tmpfs, contents saved",
        "22 (parent 20) /dev/console devpts root / source none opts rw,nosuid master:3: bind of 1 in mount 23",
        "network namespace: 1 links",
        "1 lo (loopback) mtu 65536 <UP,LOOPBACK>",
        "addresses 40 bytes",
        "nft ruleset 2 lines",
        "br0: 1 attributes of its kind",
        "v0: port of br0 (0 port attributes), veth peer v1 inside, 0 attributes of its kind",
        "network namespace made by pid 11:",
        "pid 12 is in the mount namespace of pid 10",
        "console pty 0 of devpts /dev/pts: master outside the tree, 24x80",
        "chain: dump 0000000000000abc, parent 0000000000000123 in ../pre",
    ] {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
    let json = to_json(&container_image());
    assert_eq!(json["namespaces"]["uts"]["hostname"], "box");
    assert_eq!(json["mounts"]["mounts"][1]["fstype"], "tmpfs");
    assert_eq!(json["netns"]["links"][0]["name"], "lo");
    assert_eq!(json["netns"]["addrs_bytes"], 40);
    assert_eq!(json["netlinks"]["links"][1]["master"], "br0");
    assert_eq!(json["netlinks"]["nested"][0]["pid"], 11);
    assert_eq!(json["mnt_joins"]["joins"][0]["of"], 10);
    assert_eq!(json["cgroup"]["tasks"][0]["paths"][0], "/box");
    assert_eq!(json["orphan_pty"]["ptys"][0]["index"], 0);
    assert_eq!(json["chain"]["parent"]["dir"], "../pre");
}

#[test]
fn peer_credentials_read_as_pid_uid_gid() {
    use crate::image::sockopts::{SockOpt, SockOpts};
    let cred: Vec<u8> = [70i32, 1000, -1]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let opts = SockOpts {
        opts: vec![
            SockOpt {
                level: libc::SOL_SOCKET,
                name: libc::SO_PEERCRED,
                value: cred,
            },
            SockOpt {
                level: libc::SOL_SOCKET,
                name: libc::SO_PRIORITY,
                value: 5i32.to_ne_bytes().to_vec(),
            },
        ],
    };
    assert_eq!(
        files::opts_text(&opts),
        "; SO_PEERCRED=pid:70,uid:1000,gid:-1 SO_PRIORITY=5"
    );
}
