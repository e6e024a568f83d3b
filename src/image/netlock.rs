//! The network-lock record (`netlock.img`): how the dump held the tree's TCP connections
//! (`--network-lock`) and which processes' locks it left for the restore to lift. The
//! rules themselves are not saved: they live in the kernel until lifted, and
//! `crate::netlock` finds them by name (`stasis_<pid>`).
//!
//! An image older than format 10 has no such record: its locks were nftables tables, one
//! per process holding a connection marked `locked` ([`NetLockImage::of_tables`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::files::{FdKind, FilesImage};
use super::sock::{InetSocket, InetState};

/// Name of the record file.
pub const NETLOCK: &str = "netlock.img";

/// How connections are held while the tree is down, as CRIU's `--network-lock` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// `iptables`/`ip6tables` rules (CRIU's default).
    #[default]
    Iptables,
    /// One nftables table.
    Nftables,
    /// No lock: the user holds the network some other way.
    Skip,
}

impl LockMode {
    /// CRIU's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Iptables => "iptables",
            LockMode::Nftables => "nftables",
            LockMode::Skip => "skip",
        }
    }

    /// The mode CRIU calls `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [LockMode::Iptables, LockMode::Nftables, LockMode::Skip]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// `netlock.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLockImage {
    pub mode: LockMode,
    /// The processes whose lock (`stasis_<pid>`) the dump left in place, in tree order.
    pub pids: Vec<i32>,
}

impl NetLockImage {
    /// A lock of `mode` for each process of `tables` (pid, fd table) with a connection
    /// marked `locked`. An image older than format 10 held nftables locks so.
    pub fn of_tables<'a>(
        mode: LockMode,
        tables: impl IntoIterator<Item = (i32, &'a FilesImage)>,
    ) -> Self {
        let pids = tables
            .into_iter()
            .filter(|(_, files)| locked_connection(files).is_some())
            .map(|(pid, _)| pid)
            .collect();
        NetLockImage { mode, pids }
    }

    /// The record of `dir`, or what an older image held (`tables`: its fd tables).
    pub fn load<'a>(
        dir: &Path,
        tables: impl IntoIterator<Item = (i32, &'a FilesImage)>,
    ) -> Result<Self, ImageError> {
        match super::file::read(super::Kind::NetLock, &dir.join(NETLOCK)) {
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::of_tables(LockMode::Nftables, tables))
            }
            r => r,
        }
    }
}

/// The first fd of `files` holding a TCP connection under the dump's network lock.
pub fn locked_connection(files: &FilesImage) -> Option<i32> {
    files.fds.iter().find_map(|e| match &e.kind {
        FdKind::Inet(s) if is_locked(s) => Some(e.fd),
        _ => None,
    })
}

/// Whether the dump's network lock holds the connection of `s` (established or closing).
pub fn is_locked(s: &InetSocket) -> bool {
    match &s.state {
        InetState::Established(r) | InetState::Connection { repair: r, .. } => r.locked,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_have_criu_names() {
        for m in [LockMode::Iptables, LockMode::Nftables, LockMode::Skip] {
            assert_eq!(LockMode::parse(m.name()), Some(m));
        }
        assert_eq!(LockMode::parse("ebtables"), None);
        assert_eq!(LockMode::default(), LockMode::Iptables);
    }

    #[test]
    fn record_round_trips() {
        let img = NetLockImage {
            mode: LockMode::Nftables,
            pids: vec![7, 9],
        };
        let bytes = super::super::file::encode(super::super::Kind::NetLock, &img).unwrap();
        let back: NetLockImage =
            super::super::file::decode(super::super::Kind::NetLock, &bytes, Path::new("x"))
                .unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn older_images_hold_nftables_locks_of_locked_connections() {
        let files = FilesImage::default();
        let img = NetLockImage::of_tables(LockMode::Nftables, [(5, &files)]);
        assert_eq!((img.mode, img.pids.len()), (LockMode::Nftables, 0));
    }
}
