//! The user namespace record (`userns.img`, kind 27): the tree's own user namespace (a
//! rootless container's), a child of the dumper's. Absent: the tree lived in the
//! dumper's user namespace and comes back in the restorer's.
//!
//! The maps are as `/proc/PID/uid_map` shows them to the dumper: each extent's outside
//! ids are the dumper's. Every other id of the image (credentials, file owners) is the
//! dumper's view too; the restore translates those it injects into a task
//! ([`IdMap::inside`]). The owners of the tree's sockets are kept too (`sockets`): a
//! socket made again is owned by the restorer, seen from inside as the overflow id.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file.
pub const USERNS: &str = "userns.img";

/// The kernel's limit of extents per map (`UID_GID_MAP_MAX_EXTENTS`).
pub const MAX_EXTENTS: usize = 340;

/// `userns.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNsImage {
    pub uid_map: IdMap,
    pub gid_map: IdMap,
    /// `/proc/PID/setgroups` said `allow` (else `deny`, written before the gid map).
    pub setgroups: bool,
    /// The owner of each socket fd of the tree (its inode's, the dumper's view): the
    /// restore makes sockets with its own ids, then gives each its owner back.
    pub sockets: Vec<SocketOwner>,
}

/// The owner of the socket at fd `fd` of process `pid` (what `stat` of
/// `/proc/PID/fd/FD` reports: the creator's fsuid and fsgid).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOwner {
    pub pid: i32,
    pub fd: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One line of a uid or gid map: `count` ids from `inside` map to `outside` on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A uid or gid map, in the kernel's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap(pub Vec<Extent>);

impl IdMap {
    /// The map's text as `/proc/PID/uid_map` reads and takes it.
    pub fn to_text(&self) -> String {
        (self.0.iter())
            .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
            .collect()
    }

    /// Parses `/proc/PID/uid_map` (or `gid_map`).
    pub fn parse(text: &str) -> Option<IdMap> {
        let line = |l: &str| {
            let mut f = l.split_whitespace().map(str::parse::<u32>);
            let e = Extent {
                inside: f.next()?.ok()?,
                outside: f.next()?.ok()?,
                count: f.next()?.ok()?,
            };
            f.next().is_none().then_some(e)
        };
        let lines = text.lines().filter(|l| !l.trim().is_empty());
        lines.map(line).collect::<Option<Vec<_>>>().map(IdMap)
    }

    /// The id inside the namespace of the dumper's `outside`, if the map has it.
    pub fn inside(&self, outside: u32) -> Option<u32> {
        self.0.iter().find_map(|e| {
            let off = outside.checked_sub(e.outside)?;
            (off < e.count).then(|| e.inside + off)
        })
    }
}

/// Checks extent counts and that no extent overflows the id space.
pub fn validate(ns: &UserNsImage, path: &Path) -> Result<(), ImageError> {
    for (name, map) in [("uid_map", &ns.uid_map), ("gid_map", &ns.gid_map)] {
        if map.0.is_empty() || map.0.len() > MAX_EXTENTS {
            let what = format!("{name} has {} extents (1 to {MAX_EXTENTS})", map.0.len());
            return Err(ImageError::invalid(path, &what));
        }
        let wraps = |e: &Extent| {
            e.count == 0
                || e.inside.checked_add(e.count - 1).is_none()
                || e.outside.checked_add(e.count - 1).is_none()
        };
        if let Some(e) = map.0.iter().find(|e| wraps(e)) {
            let what = format!("{name} extent {e:?} is empty or wraps");
            return Err(ImageError::invalid(path, &what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_parses_prints_and_translates() {
        let text = "         0     100000      65536\n";
        let map = IdMap::parse(text).expect("a map");
        assert_eq!(map.to_text(), "0 100000 65536\n");
        assert_eq!(map.inside(100000), Some(0));
        assert_eq!(map.inside(165535), Some(65535));
        assert_eq!(map.inside(165536), None);
        assert_eq!(map.inside(0), None);
        assert!(IdMap::parse("0 1\n").is_none());
    }

    #[test]
    fn validate_refuses_empty_and_wrapping_maps() {
        let p = Path::new("userns.img");
        let one = IdMap(vec![Extent {
            inside: 0,
            outside: 0,
            count: 1,
        }]);
        let mut ns = UserNsImage {
            uid_map: one.clone(),
            gid_map: one,
            setgroups: false,
            sockets: Vec::new(),
        };
        assert!(validate(&ns, p).is_ok());
        ns.gid_map.0[0].outside = u32::MAX;
        ns.gid_map.0[0].count = 2;
        assert!(validate(&ns, p).is_err());
        ns.gid_map.0.clear();
        assert!(validate(&ns, p).is_err());
    }
}
