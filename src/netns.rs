//! Working inside another network namespace: a scoped thread of stasis enters it
//! (`setns(CLONE_NEWNET)` changes the calling thread only) and runs a closure there —
//! reading `/proc/sys/net` (which shows the namespace of the reader), creating sockets
//! (which belong to the namespace of their creator) or spawning a tool (`ip`,
//! `iptables-save`, `nft`: a child starts in its spawner's namespace). Used by the
//! network namespace's dump and restore (`dump/ns/net.rs`, `restore/ns/net.rs`), the
//! network lock (`netlock.rs`) and sockets stasis itself opens for a restored tree.

use std::io::{Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("enter the network namespace {path}: {source}")]
    Enter {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the thread working in the network namespace {path} panicked")]
    Panicked { path: PathBuf },
    #[error("cannot run {cmd} ({source}); install package {package}")]
    NoTool {
        cmd: String,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

/// CRIU's `--external veth[INSIDE]:OUTSIDE[@BRIDGE]`: a veth pair whose end INSIDE is in
/// the tree's network namespace and OUTSIDE in the restorer's (attached to BRIDGE); or
/// `--external macvlan[INSIDE]:LOWER`: the macvlan INSIDE's lower link is the restorer's
/// LOWER; or (at restore) `--external netdev[INSIDE]:OUTSIDE`: the veth INSIDE had its
/// other end outside, and the restorer made a pair already: its end OUTSIDE is moved
/// into the tree's namespace as INSIDE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethExternal {
    /// `veth`, `macvlan` or `netdev`.
    pub kind: String,
    pub inside: String,
    pub outside: String,
    pub bridge: Option<String>,
}

impl VethExternal {
    /// `veth[INSIDE]:OUTSIDE[@BRIDGE]`, `macvlan[INSIDE]:LOWER` or
    /// `netdev[INSIDE]:OUTSIDE`, or `None` for another spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once('[')?;
        let (inside, rest) = rest.split_once("]:")?;
        let (outside, bridge) = match rest.split_once('@') {
            Some((o, b)) if kind == "veth" => (o, Some(b.to_string())),
            _ => (rest, None),
        };
        let ok = |n: &str| !n.is_empty() && n.len() <= 15 && !n.contains(['/', ' ', '@']);
        let known = ["veth", "macvlan", "netdev"].contains(&kind);
        let names = ok(inside) && ok(outside) && bridge.as_deref().map_or(true, ok);
        (known && names).then(|| VethExternal {
            kind: kind.to_string(),
            inside: inside.to_string(),
            outside: outside.to_string(),
            bridge,
        })
    }
}

/// CRIU's `--external net[INO]:KEY`: the tree's network namespace (inode INO) belongs to
/// the caller. Its contents are not saved; the restore is given a namespace to join under
/// KEY (`--inherit-fd fd[N]:KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetExternal {
    pub ino: u64,
    pub key: String,
}

impl NetExternal {
    /// `net[INO]:KEY`, or `None` for another spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let (ino, key) = text.strip_prefix("net[")?.split_once("]:")?;
        let ino = ino.parse::<u64>().ok()?;
        (!key.is_empty() && !key.contains('/')).then(|| NetExternal {
            ino,
            key: key.to_string(),
        })
    }
}

/// Runs `f` in a thread that entered the network namespace bound at `path`
/// (`/proc/PID/ns/net`, `/run/netns/NAME`).
pub fn within<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let enter = |source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    };
    let ns = std::fs::File::open(path).map_err(enter)?;
    within_fd(ns.as_fd(), f).map_err(|e| match e {
        NetnsError::Enter { source, .. } => enter(source),
        NetnsError::Panicked { .. } => NetnsError::Panicked {
            path: path.to_path_buf(),
        },
        other => other,
    })
}

/// [`within`] for a namespace held open as `ns`.
pub fn within_fd<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    let path = PathBuf::from(format!("fd {:?}", ns));
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetnsError::Enter {
                    path: path.clone(),
                    source: e.into(),
                }
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(NetnsError::Panicked { path: path.clone() }))
    })
}

/// `cmd ARGS` (of `package`) run in the namespace at `path` with `stdin`; its output.
pub fn tool(
    path: &Path,
    package: &'static str,
    cmd: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, NetnsError> {
    within(path, || run_here(package, cmd, args, stdin))?
}

/// `bytes` in a memory file read from its start (`ip ... restore` seeks its input).
fn seekable(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create("stasis-netns", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file)
}

/// `cmd ARGS` run in stasis's own namespace (that of the calling thread).
pub fn run_here(
    package: &'static str,
    cmd: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, NetnsError> {
    let text = format!("{cmd} {}", args.join(" "));
    let no_tool = |source| NetnsError::NoTool {
        cmd: cmd.to_string(),
        package,
        source,
    };
    let input = match stdin {
        Some(bytes) => Stdio::from(seekable(bytes).map_err(no_tool)?),
        None => Stdio::null(),
    };
    let out = Command::new(cmd)
        .args(args)
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(no_tool)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(NetnsError::Failed {
        cmd: text,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::{NetExternal, VethExternal};

    #[test]
    fn net_externals_are_read_as_criu_spells_them() {
        let n = NetExternal::parse("net[4026532174]:extRootNetNS").expect("valid");
        assert_eq!((n.ino, n.key.as_str()), (4026532174, "extRootNetNS"));
        for bad in ["net[x]:k", "net[1]:", "veth[a]:b", "net[1]k"] {
            assert_eq!(NetExternal::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn veth_externals_are_read_as_criu_spells_them() {
        let v = VethExternal::parse("veth[eth0]:veth1234@br0").expect("valid");
        assert_eq!(
            (v.inside.as_str(), v.outside.as_str()),
            ("eth0", "veth1234")
        );
        assert_eq!(v.bridge.as_deref(), Some("br0"));
        assert_eq!(
            VethExternal::parse("veth[eth0]:out").and_then(|v| v.bridge),
            None
        );
        let m = VethExternal::parse("macvlan[mv0]:br0").expect("valid");
        assert_eq!((m.kind.as_str(), m.outside.as_str()), ("macvlan", "br0"));
        let d = VethExternal::parse("netdev[zdtmvthc0]:zdtmvthc1").expect("valid");
        assert_eq!(
            (d.kind.as_str(), d.inside.as_str()),
            ("netdev", "zdtmvthc0")
        );
        for bad in [
            "mnt[a]:b",
            "veth[]:x",
            "veth[a]:",
            "veth[a]:b@",
            "veth[a/b]:c",
            "macvlan[a]:b@c",
            "netdev[a]:b@c",
            "bond[a]:b",
        ] {
            assert!(VethExternal::parse(bad).is_none(), "{bad}");
        }
    }
}
