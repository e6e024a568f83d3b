//! The network lock: while an established TCP connection to a peer outside the image is
//! down (from the moment the dump puts it in repair mode until the restore has rebuilt
//! it), packets of that connection are dropped by nftables, so the peer's segments meet
//! no socket — which would answer with a reset — and are retransmitted once the
//! connection is back. CRIU does the same with iptables or nftables.
//!
//! One table per dumped process, `inet stasis_<pid>`, with an input and an output chain
//! holding one drop rule per connection and direction. The dump adds it, the restore
//! deletes it (also when the restore fails: the connection is lost then, and the peer
//! should learn so). Needs the `nft` command: without it such a dump is refused when the
//! connection is met, before its socket changes; the restore of an image holding a locked
//! connection is refused before any process is created ([`available`]). The rules match
//! addresses and ports, not interfaces: loopback and real interfaces alike (a peer in
//! another network namespace behind a veth pair is tested).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::image::sock::SockAddr;

#[derive(Debug, thiserror::Error)]
pub enum NetLockError {
    #[error("cannot run nft ({0}): the nft command (package nftables) holds a TCP connection to a peer outside the image while it is down; install it, or use --tcp-close")]
    NoNft(#[source] std::io::Error),
    #[error("nft {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
}

/// Packets carrying this mark (`SO_MARK`) pass the lock: the restore's replayed FINs
/// and ACKs of closing connections (CRIU's `SOCCR_MARK`, the same number).
pub const PASS_MARK: u32 = 0xC114;

/// The table holding the lock for pid `pid`.
pub fn table(pid: i32) -> String {
    format!("stasis_{pid}")
}

/// Drops every packet between `local` and `remote` (TCP) in both directions, but those
/// marked [`PASS_MARK`].
pub fn lock(pid: i32, local: &SockAddr, remote: &SockAddr) -> Result<(), NetLockError> {
    let t = table(pid);
    let (proto, l, r) = (ip_keyword(local), ip_text(local), ip_text(remote));
    let script = format!(
        "add table inet {t}\n\
         add chain inet {t} input {{ type filter hook input priority -160; policy accept; }}\n\
         add chain inet {t} output {{ type filter hook output priority -160; policy accept; }}\n\
         add rule inet {t} input meta mark {PASS_MARK:#x} accept\n\
         add rule inet {t} output meta mark {PASS_MARK:#x} accept\n\
         add rule inet {t} input {proto} saddr {r} {proto} daddr {l} tcp sport {rp} tcp dport {lp} drop\n\
         add rule inet {t} output {proto} saddr {l} {proto} daddr {r} tcp sport {lp} tcp dport {rp} drop\n",
        lp = local.port,
        rp = remote.port,
    );
    nft(&["-f", "-"], Some(&script), "add rules")
}

/// Whether `nft` can be run here (`nft --version`).
pub fn available() -> Result<(), NetLockError> {
    nft(&["--version"], None, "--version")
}

/// Removes the lock of pid `pid`, if there is one.
pub fn unlock(pid: i32) -> Result<(), NetLockError> {
    let t = table(pid);
    match nft(&["delete", "table", "inet", &t], None, "delete table") {
        Err(NetLockError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(()),
        r => r,
    }
}

fn nft(args: &[&str], stdin: Option<&str>, what: &str) -> Result<(), NetLockError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetLockError::NoNft)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(NetLockError::NoNft)?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetLockError::Failed {
        what: what.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// `ip` for IPv4 (including v4-mapped v6 addresses: their packets are IPv4), else `ip6`.
fn ip_keyword(a: &SockAddr) -> &'static str {
    if v4_of(a).is_some() {
        "ip"
    } else {
        "ip6"
    }
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
        assert_eq!((ip_keyword(&a), ip_text(&a).as_str()), ("ip", "127.0.0.1"));
        let v6 = SockAddr {
            ip: std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
            port: 1,
            scope_id: 0,
        };
        assert_eq!((ip_keyword(&v6), ip_text(&v6).as_str()), ("ip6", "::1"));
    }
}
