//! # Safety
//! A link's features (`ethtool -k`/`-K`) through the `SIOCETHTOOL` ioctl of a socket of
//! the namespace the calling thread is in (linux/ethtool.h, x86_64 values). Each call
//! passes a `struct ifreq` (40 bytes) whose data pointer points at a buffer this module
//! owns for the call, sized and laid out as the command reads and writes it: the
//! feature-string count (`ETHTOOL_GSSET_INFO`), the names (`ETHTOOL_GSTRINGS`, 32 bytes
//! each), the feature words (`ETHTOOL_GFEATURES`/`ETHTOOL_SFEATURES`, one block per 32
//! features). See [ethtool.h](https://docs.kernel.org/networking/ethtool-netlink.html)
//! (the ioctl interface predates the netlink one and reads the same state).
//!
//! What the features mean for a checkpoint lives in `dump/ns/netlinks.rs` and
//! `restore/ns/features.rs`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

const SIOCETHTOOL: u64 = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
/// The string set of the features (`ETH_SS_FEATURES`).
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// One feature of a link, as `ETHTOOL_GFEATURES` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    pub name: String,
    /// The driver lets it be changed.
    pub available: bool,
    /// Asked for (`ethtool -K`, or the driver's default).
    pub requested: bool,
    /// In effect.
    pub active: bool,
}

/// `struct ifreq` with its data pointer.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut u8,
    _pad: [u8; 16],
}

fn ioctl(sock: BorrowedFd<'_>, link: &str, buf: &mut [u32]) -> nix::Result<i32> {
    let mut req = IfReq {
        name: [0; 16],
        data: buf.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    if link.is_empty() || link.len() > 15 {
        return Err(Errno::EINVAL);
    }
    req.name[..link.len()].copy_from_slice(link.as_bytes());
    // SAFETY: `req` is a `struct ifreq` whose data points at `buf`, which the callers
    // size for their command (see the module doc); both outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    Errno::result(rc)
}

/// The features of link `link` of the socket `sock`'s namespace, by name.
pub fn features(sock: BorrowedFd<'_>, link: &str) -> nix::Result<Vec<Feature>> {
    let (names, blocks) = feature_names(sock, link)?;
    // struct ethtool_gfeatures: cmd, size, then {available, requested, active,
    // never_changed} per block.
    let mut buf = vec![0u32; 2 + 4 * blocks];
    buf[0] = ETHTOOL_GFEATURES;
    buf[1] = blocks as u32;
    ioctl(sock, link, &mut buf)?;
    let bit = |word: usize, i: usize| buf[2 + 4 * (i / 32) + word] & (1 << (i % 32)) != 0;
    Ok(names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, name)| Feature {
            name,
            available: bit(0, i),
            requested: bit(1, i),
            active: bit(2, i),
        })
        .collect())
}

/// Asks for the features of `link` named in `wanted` (name, on) to be as given; the
/// others are left as they are. The kernel may keep one off for lack of another (the
/// caller compares what is active afterwards).
pub fn request(sock: BorrowedFd<'_>, link: &str, wanted: &[(&str, bool)]) -> nix::Result<()> {
    let (names, blocks) = feature_names(sock, link)?;
    // struct ethtool_sfeatures: cmd, size, then {valid, requested} per block.
    let mut buf = vec![0u32; 2 + 2 * blocks];
    buf[0] = ETHTOOL_SFEATURES;
    buf[1] = blocks as u32;
    for (name, on) in wanted {
        let Some(i) = names.iter().position(|n| n == name) else {
            return Err(Errno::ENOENT);
        };
        buf[2 + 2 * (i / 32)] |= 1 << (i % 32);
        if *on {
            buf[2 + 2 * (i / 32) + 1] |= 1 << (i % 32);
        }
    }
    // A positive answer (ETHTOOL_F_WISH...) says some were not met: left to the caller.
    ioctl(sock, link, &mut buf).map(drop)
}

fn feature_count(sock: BorrowedFd<'_>, link: &str) -> nix::Result<usize> {
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 per set.
    let mut buf = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
    ioctl(sock, link, &mut buf)?;
    Ok(buf[4] as usize)
}

/// The names of the features of `link`, by bit, and how many 32-bit blocks hold them.
fn feature_names(sock: BorrowedFd<'_>, link: &str) -> nix::Result<(Vec<String>, usize)> {
    let count = feature_count(sock, link)?;
    // struct ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
    let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    buf[0] = ETHTOOL_GSTRINGS;
    buf[1] = ETH_SS_FEATURES;
    buf[2] = count as u32;
    ioctl(sock, link, &mut buf)?;
    let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let names = (bytes.chunks(ETH_GSTRING_LEN))
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect();
    Ok((names, count.div_ceil(32)))
}
