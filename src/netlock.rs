//! The network lock: while a TCP connection of the dumped tree is down (from the moment
//! the dump puts it in repair mode until the restore has rebuilt it), its packets are
//! dropped by netfilter, so the peer's segments meet no socket — which would answer with
//! a reset — and are retransmitted once the connection is back. CRIU does the same.
//!
//! The mode is CRIU's `--network-lock` ([`LockMode`], recorded in `netlock.img`):
//! - `iptables` (the default, as CRIU's): a chain `stasis_<pid>` per dumped process in
//!   the filter table of `iptables` (IPv4, v4-mapped IPv6 included: their packets are
//!   IPv4) and `ip6tables`, jumped to first from INPUT and OUTPUT, holding one drop rule
//!   per connection and direction;
//! - `nftables`: a table `inet stasis_<pid>` with an input and an output chain holding
//!   the same rules;
//! - `skip`: nothing (the user holds the network some other way).
//!
//! Every rule spares packets marked `0xC114` (CRIU's `SOCCR_MARK`), so tools that mark
//! their packets as CRIU's do get through. A tree in a network namespace of its own has
//! the whole namespace locked instead ([`lock_namespace`]: everything but marked packets
//! dropped, as CRIU does); the tools then run inside that namespace (the
//! thread spawning them enters it first). The rules match addresses and ports, not
//! interfaces. Each lock is named after its process, so a lock left by a dump that was
//! never restored is found by name ([`find`]) and lifted by `stasis network-unlock`.
//! Needs the mode's commands: without them a dump is refused when a connection is met,
//! before its socket changes, and a restore before any process is created ([`available`]).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use crate::image::netlock::LockMode;
use crate::image::sock::SockAddr;

/// CRIU's `SOCCR_MARK`: packets with this mark pass the lock.
pub const PASS_MARK: u32 = 0xC114;

#[derive(Debug, thiserror::Error)]
pub enum NetLockError {
    #[error("cannot run {tool} ({source}): the {tool} command (package {package}) holds TCP connections while they are down (--network-lock {mode}); install it, or choose another --network-lock, or use --tcp-close")]
    NoTool {
        tool: &'static str,
        package: &'static str,
        mode: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} {what} failed: {stderr}")]
    Failed {
        tool: &'static str,
        what: String,
        stderr: String,
    },
    #[error("enter the network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The name of the lock of process `pid` (nftables table, iptables chain).
pub fn name(pid: i32) -> String {
    format!("stasis_{pid}")
}

/// The pid a lock name belongs to, if it is one of stasis's.
pub fn pid_of(name: &str) -> Option<i32> {
    name.strip_prefix("stasis_")?.parse().ok()
}

/// Where the tools run: our own network namespace, or another one entered first.
#[derive(Clone, Debug)]
pub enum Netns {
    Ours,
    Other(PathBuf),
}

impl Netns {
    /// The namespace of process `pid`: ours when it shares it, or when the process is
    /// gone (its lock, if in a namespace of its own, went with that namespace).
    pub fn of_pid(pid: i32) -> Netns {
        Self::at(Path::new(&format!("/proc/{pid}/ns/net")))
    }

    /// The namespace bound at `path` (`/proc/PID/ns/net`, `/run/netns/NAME`).
    pub fn at(path: &Path) -> Netns {
        match (inode(path), inode(Path::new("/proc/thread-self/ns/net"))) {
            (Some(theirs), Some(ours)) if theirs != ours => Netns::Other(path.to_path_buf()),
            _ => Netns::Ours,
        }
    }

    /// `net:[inode]`, for messages and listings.
    pub fn describe(&self) -> String {
        let path = match self {
            Netns::Ours => Path::new("/proc/thread-self/ns/net"),
            Netns::Other(p) => p,
        };
        format!("net:[{}]", inode(path).unwrap_or(0))
    }
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Drops every packet between `local` and `remote` (TCP) in both directions, in the
/// network namespace of process `pid`, under its lock.
pub fn lock(
    mode: LockMode,
    pid: i32,
    local: &SockAddr,
    remote: &SockAddr,
) -> Result<(), NetLockError> {
    let ns = Netns::of_pid(pid);
    let name = name(pid);
    let mark = format!("{PASS_MARK:#x}");
    let (l, r, lp, rp) = (ip_text(local), ip_text(remote), local.port, remote.port);
    match mode {
        LockMode::Skip => Ok(()),
        LockMode::Nftables => {
            let ip = if v4_of(local).is_some() { "ip" } else { "ip6" };
            let rules = [
                format!("input {ip} saddr {r} {ip} daddr {l} tcp sport {rp} tcp dport {lp} meta mark != {mark} drop"),
                format!("output {ip} saddr {l} {ip} daddr {r} tcp sport {lp} tcp dport {rp} meta mark != {mark} drop"),
            ];
            nft_table(&ns, &name, &rules)
        }
        LockMode::Iptables => {
            let tool = if v4_of(local).is_some() {
                IPT[0]
            } else {
                IPT[1]
            };
            let rule = |s: &str, sp: u16, d: &str, dp: u16| {
                format!("-p tcp -m mark ! --mark {mark} -s {s} --sport {sp} -d {d} --dport {dp} -j DROP")
            };
            let rules = [rule(&r, rp, &l, lp), rule(&l, lp, &r, rp)];
            ipt_chain(&ns, tool, &name, &rules)
        }
    }
}

/// Drops every packet of the network namespace of process `pid` but marked ones, as
/// CRIU does for a tree with a network namespace of its own.
pub fn lock_namespace(mode: LockMode, ns: &Netns, pid: i32) -> Result<(), NetLockError> {
    let name = name(pid);
    let mark = format!("{PASS_MARK:#x}");
    match mode {
        LockMode::Skip => Ok(()),
        LockMode::Nftables => {
            let rules = [
                format!("input meta mark != {mark} drop"),
                format!("output meta mark != {mark} drop"),
            ];
            nft_table(ns, &name, &rules)
        }
        LockMode::Iptables => {
            let rules = [format!("-m mark ! --mark {mark} -j DROP")];
            // IPv4 and IPv6 side by side: each is one command, a few ms of start-up.
            std::thread::scope(|s| {
                let (name, rules) = (&name, &rules);
                let jobs: Vec<_> = IPT_RESTORE
                    .into_iter()
                    .map(|tool| s.spawn(move || ipt_whole_chain(ns, tool, name, rules)))
                    .collect();
                jobs.into_iter().try_for_each(|job| {
                    job.join()
                        .unwrap_or_else(|_| Err(panicked("iptables-restore")))
                })
            })
        }
    }
}

fn panicked(tool: &'static str) -> NetLockError {
    NetLockError::Failed {
        tool,
        what: String::new(),
        stderr: "the thread running it panicked".into(),
    }
}

/// Removes the lock of process `pid` from its network namespace, if it is there.
pub fn unlock(mode: LockMode, pid: i32) -> Result<(), NetLockError> {
    unlock_in(mode, &Netns::of_pid(pid), &name(pid))
}

/// Removes the lock `name` from `ns`, if it is there.
pub fn unlock_in(mode: LockMode, ns: &Netns, name: &str) -> Result<(), NetLockError> {
    match mode {
        LockMode::Skip => Ok(()),
        LockMode::Nftables => match run(ns, NFT, &["delete", "table", "inet", name], None) {
            Err(NetLockError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(()),
            r => r.map(drop),
        },
        LockMode::Iptables => {
            for tool in IPT {
                ipt_remove(ns, tool, name)?;
            }
            Ok(())
        }
    }
}

/// Whether the commands of `mode` can be run here.
pub fn available(mode: LockMode) -> Result<(), NetLockError> {
    let tools: &[Tool] = match mode {
        LockMode::Skip => &[],
        LockMode::Nftables => &[NFT],
        LockMode::Iptables => &IPT,
    };
    for tool in tools {
        run(&Netns::Ours, *tool, &["--version"], None)?;
    }
    Ok(())
}

/// A lock found in a network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub mode: LockMode,
    /// The tool that shows it (`nft`, `iptables`, `ip6tables`).
    pub tool: &'static str,
    pub name: String,
}

/// Every stasis lock in `ns` (a mode whose commands are missing shows none).
pub fn find(ns: &Netns) -> Vec<Found> {
    let mut out = Vec::new();
    if let Ok(text) = run(ns, NFT, &["list", "tables"], None) {
        let names = text.lines().filter_map(|l| l.strip_prefix("table inet "));
        out.extend(names.filter(|n| pid_of(n).is_some()).map(|n| Found {
            mode: LockMode::Nftables,
            tool: NFT.cmd,
            name: n.trim().to_string(),
        }));
    }
    for tool in IPT {
        out.extend(ipt_chains(ns, tool).into_iter().map(|name| Found {
            mode: LockMode::Iptables,
            tool: tool.cmd,
            name,
        }));
    }
    out
}

/// The network namespaces where a lock may be: ours, those bound under `/run/netns`,
/// and those of every process, each once.
pub fn namespaces() -> Vec<(String, Netns)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let ours = Path::new("/proc/thread-self/ns/net").to_path_buf();
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten();
    let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let candidates = std::iter::once(ours)
        .chain(named.map(|e| e.path()))
        .chain(procs.map(|e| e.path().join("ns/net")));
    for path in candidates {
        if let Some(ino) = inode(&path) {
            if seen.insert(ino) {
                out.push((format!("net:[{ino}]"), Netns::at(&path)));
            }
        }
    }
    out
}

/// A lock in some network namespace.
#[derive(Clone, Debug)]
pub struct Placed {
    /// `net:[inode]`.
    pub ns_name: String,
    pub ns: Netns,
    pub found: Found,
    /// The pid the lock is named after.
    pub pid: i32,
}

impl Placed {
    /// Whether no process of its pid runs: the lock of a dump never restored (a dump
    /// still under way, or a restored tree, has its process).
    pub fn stale(&self) -> bool {
        !Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Removes it.
    pub fn remove(&self) -> Result<(), NetLockError> {
        unlock_in(self.found.mode, &self.ns, &self.found.name)
    }
}

/// Every stasis lock in every network namespace ([`namespaces`]).
pub fn find_all() -> Vec<Placed> {
    let mut out = Vec::new();
    for (ns_name, ns) in namespaces() {
        for found in find(&ns) {
            let pid = pid_of(&found.name).unwrap_or(0);
            out.push(Placed {
                ns_name: ns_name.clone(),
                ns: ns.clone(),
                found,
                pid,
            });
        }
    }
    out
}

/// Whether the lock of process `pid` is in place now.
pub fn held(mode: LockMode, pid: i32) -> bool {
    let name = name(pid);
    find(&Netns::of_pid(pid))
        .iter()
        .any(|f| f.mode == mode && f.name == name)
}

#[derive(Clone, Copy)]
struct Tool {
    cmd: &'static str,
    package: &'static str,
    mode: LockMode,
    /// Leading arguments: wait for the xtables lock.
    wait: bool,
}

const NFT: Tool = Tool {
    cmd: "nft",
    package: "nftables",
    mode: LockMode::Nftables,
    wait: false,
};
const IPT: [Tool; 2] = [
    Tool {
        cmd: "iptables",
        package: "iptables",
        mode: LockMode::Iptables,
        wait: true,
    },
    Tool {
        cmd: "ip6tables",
        package: "iptables",
        mode: LockMode::Iptables,
        wait: true,
    },
];

/// `iptables-restore` and `ip6tables-restore`: a whole chain in one command.
const IPT_RESTORE: [Tool; 2] = [
    Tool {
        cmd: "iptables-restore",
        package: "iptables",
        mode: LockMode::Iptables,
        wait: true,
    },
    Tool {
        cmd: "ip6tables-restore",
        package: "iptables",
        mode: LockMode::Iptables,
        wait: true,
    },
];

/// Table `inet NAME` with input and output chains holding `rules` ("CHAIN RULE...").
fn nft_table(ns: &Netns, name: &str, rules: &[String]) -> Result<(), NetLockError> {
    let mut script = format!(
        "add table inet {name}\n\
         add chain inet {name} input {{ type filter hook input priority -160; policy accept; }}\n\
         add chain inet {name} output {{ type filter hook output priority -160; policy accept; }}\n"
    );
    for rule in rules {
        script.push_str(&format!("add rule inet {name} {rule}\n"));
    }
    run(ns, NFT, &["-f", "-"], Some(&script)).map(drop)
}

/// Chain NAME holding `rules`, jumped to first from INPUT and OUTPUT. Ordering
/// requirements: the rules are in before the jumps make them count.
fn ipt_chain(ns: &Netns, tool: Tool, name: &str, rules: &[String]) -> Result<(), NetLockError> {
    if !ipt_chains(ns, tool).iter().any(|c| c == name) {
        run(ns, tool, &["-N", name], None)?;
    }
    for rule in rules {
        let args: Vec<&str> = ["-A", name].into_iter().chain(rule.split(' ')).collect();
        run(ns, tool, &args, None)?;
    }
    for hook in ["INPUT", "OUTPUT"] {
        if run(ns, tool, &["-C", hook, "-j", name], None).is_err() {
            run(ns, tool, &["-I", hook, "-j", name], None)?;
        }
    }
    Ok(())
}

/// Chain NAME holding `rules`, jumped to first from INPUT and OUTPUT, in one
/// `iptables-restore --noflush` (where [`ipt_chain`] runs six commands): the chain is made,
/// or emptied if a chain of that name is there, its rules go in, then the jumps, all in
/// one commit. Used where one lock is taken once (a whole namespace): [`ipt_chain`] adds
/// to a chain that may hold other connections' rules.
fn ipt_whole_chain(
    ns: &Netns,
    tool: Tool,
    name: &str,
    rules: &[String],
) -> Result<(), NetLockError> {
    let mut script = format!("*filter\n:{name} - [0:0]\n");
    for rule in rules {
        script.push_str(&format!("-A {name} {rule}\n"));
    }
    script.push_str(&format!(
        "-I INPUT 1 -j {name}\n-I OUTPUT 1 -j {name}\nCOMMIT\n"
    ));
    run(ns, tool, &["--noflush"], Some(&script)).map(drop)
}

/// Removes chain NAME and every jump to it, if it is there.
fn ipt_remove(ns: &Netns, tool: Tool, name: &str) -> Result<(), NetLockError> {
    if !ipt_chains(ns, tool).iter().any(|c| c == name) {
        return Ok(());
    }
    for hook in ["INPUT", "OUTPUT"] {
        while run(ns, tool, &["-D", hook, "-j", name], None).is_ok() {}
    }
    run(ns, tool, &["-F", name], None)?;
    run(ns, tool, &["-X", name], None).map(drop)
}

/// The stasis chains of `tool`'s filter table in `ns`.
fn ipt_chains(ns: &Netns, tool: Tool) -> Vec<String> {
    let Ok(text) = run(ns, tool, &["-S"], None) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .filter(|n| pid_of(n).is_some())
        .map(str::to_string)
        .collect()
}

/// Runs `tool ARGS` in `ns` (from a thread that entered it: the child is created in the
/// namespace of the thread that spawns it) and returns its output.
fn run(ns: &Netns, tool: Tool, args: &[&str], stdin: Option<&str>) -> Result<String, NetLockError> {
    match ns {
        Netns::Ours => run_here(tool, args, stdin),
        Netns::Other(path) => {
            let (path, args): (PathBuf, Vec<String>) =
                (path.clone(), args.iter().map(|a| a.to_string()).collect());
            let stdin = stdin.map(str::to_string);
            std::thread::scope(|s| {
                s.spawn(move || {
                    enter(&path)?;
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    run_here(tool, &args, stdin.as_deref())
                })
                .join()
                .unwrap_or_else(|_| Err(panicked(tool.cmd)))
            })
        }
    }
}

fn enter(path: &Path) -> Result<(), NetLockError> {
    let err = |source| NetLockError::Netns {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(e.into()))
}

fn run_here(tool: Tool, args: &[&str], stdin: Option<&str>) -> Result<String, NetLockError> {
    let wait: &[&str] = if tool.wait && args != ["--version"] {
        &["-w"]
    } else {
        &[]
    };
    let no_tool = |source| NetLockError::NoTool {
        tool: tool.cmd,
        package: tool.package,
        mode: tool.mode.name(),
        source,
    };
    let mut child = Command::new(tool.cmd)
        .args(wait)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(no_tool)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(no_tool)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NetLockError::Failed {
        tool: tool.cmd,
        what: args_text(args),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn args_text(args: &[&str]) -> String {
    args.join(" ")
}

fn v4_of(a: &SockAddr) -> Option<std::net::Ipv4Addr> {
    match a.ip.len() {
        4 => Some(std::net::Ipv4Addr::new(a.ip[0], a.ip[1], a.ip[2], a.ip[3])),
        16 => {
            let b: [u8; 16] = a.ip.clone().try_into().ok()?;
            std::net::Ipv6Addr::from(b).to_ipv4_mapped()
        }
        _ => None,
    }
}

/// The address as its packets carry it: v4-mapped IPv6 addresses as IPv4.
fn ip_text(a: &SockAddr) -> String {
    if let Some(v4) = v4_of(a) {
        return v4.to_string();
    }
    let b: [u8; 16] = a.ip.clone().try_into().unwrap_or([0; 16]);
    std::net::Ipv6Addr::from(b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v4_is_written_as_v4() {
        let mut ip = vec![0u8; 10];
        ip.extend_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        let a = SockAddr {
            ip,
            port: 80,
            scope_id: 0,
        };
        assert_eq!(
            (v4_of(&a).is_some(), ip_text(&a).as_str()),
            (true, "127.0.0.1")
        );
        let v6 = SockAddr {
            ip: std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
            port: 1,
            scope_id: 0,
        };
        assert_eq!(
            (v4_of(&v6).is_some(), ip_text(&v6).as_str()),
            (false, "::1")
        );
    }

    #[test]
    fn lock_names_carry_their_pid() {
        assert_eq!(pid_of(&name(4321)), Some(4321));
        assert_eq!(pid_of("stasis_x"), None);
        assert_eq!(pid_of("filter"), None);
    }
}
