//! The records of a tree's own mount namespace (format 10): `mnt.img` lists every mount
//! of the namespace as the tree saw it (parents before children), with how each is made
//! again; `mnt-tmpfs-<id>.img` holds the contents of one tmpfs. An image without
//! `mnt.img` is a tree that lived in the dumper's mount namespace.
//!
//! Format 14 adds the mount namespaces of processes of the tree made below the root's
//! (`unshare(CLONE_NEWNS)` inside the tree): `mntns.img` lists each with the process that
//! made it and its mounts, judged against the namespace it was copied from (that of the
//! process's parent); `mntns-tmpfs-<id>.img` holds a tmpfs only such a namespace has.
//!
//! Format 15 adds `mntns-join.img`: the processes in the namespace of an ancestor other
//! than their parent's.

use serde::{Deserialize, Serialize};

/// The mount namespace record's file name.
pub const MOUNTS: &str = "mnt.img";

/// The file holding the contents of the tmpfs mounted as `id`.
pub fn tmpfs_name(id: u32) -> String {
    format!("mnt-tmpfs-{id}.img")
}

/// The nested mount namespaces' record's file name (format 14).
pub const NESTED: &str = "mntns.img";

/// The file holding the contents of the tmpfs mounted as `id` in a nested namespace.
pub fn nested_tmpfs_name(id: u32) -> String {
    format!("mntns-tmpfs-{id}.img")
}

/// The record of processes in an ancestor's mount namespace (format 15).
pub const JOINS: &str = "mntns-join.img";

/// The record of the binfmt_misc entries the tree's namespace had (format 16).
pub const BINFMT: &str = "binfmt.img";

/// The entries of the binfmt_misc instance a mount of the tree's namespace showed, which
/// end with the tree (no mount of the dumper's namespace keeps that instance): registered
/// again once the namespace is rebuilt (format 16). An absent record is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinfmtImage {
    /// The mount (image id) whose `register` file they are written to.
    pub mount: u32,
    pub entries: Vec<BinfmtEntry>,
}

/// One binfmt_misc entry, as its file in the instance shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinfmtEntry {
    pub name: Vec<u8>,
    pub enabled: bool,
    pub interpreter: Vec<u8>,
    /// Of `POCF` (preserve argv0, open binary, credentials, fix binary).
    pub flags: String,
    pub matcher: BinfmtMatch,
}

/// What a binfmt_misc entry recognizes a program by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinfmtMatch {
    /// Bytes `magic` at `offset`, compared under `mask` when there is one.
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file name ending in `.` and these bytes.
    Extension(Vec<u8>),
}

/// The record of mappings and exe links on a mount of another namespace of the tree
/// than their process's (format 16).
pub const MAPS_ELSEWHERE: &str = "mntns-maps.img";

/// Files mapped (or run) by a process of the tree that its own mount namespace does not
/// show, each on a mount of another namespace of the tree (a process that left its
/// parent's with `pivot_root` maps what it ran before): their paths are opened there
/// (format 16). An absent record is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapsElsewhereImage {
    pub maps: Vec<MapElsewhere>,
}

/// The file of mapping `start` of `pid` (`None`: its exe link) is opened through
/// `/proc/NS_PID/root` of process `ns_pid`, restored before `pid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapElsewhere {
    pub pid: i32,
    pub start: Option<u64>,
    pub ns_pid: i32,
}

/// The processes of the tree in the mount namespace of an ancestor other than their
/// parent's (format 15). An absent record is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinsImage {
    pub joins: Vec<Join>,
}

/// Process `pid` is in the mount namespace of its ancestor `of` (not its parent's): it
/// enters it (`setns`) right after its takeover, before its mappings and files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub pid: i32,
    pub of: i32,
}

/// A process joins at most once, never itself.
pub fn validate_joins(img: &JoinsImage, path: &std::path::Path) -> Result<(), super::ImageError> {
    for (i, j) in img.joins.iter().enumerate() {
        if j.pid == j.of || img.joins[..i].iter().any(|o| o.pid == j.pid) {
            let what = format!(
                "pid {} joins the mount namespace of {} twice or itself",
                j.pid, j.of
            );
            return Err(super::ImageError::invalid(path, what));
        }
    }
    Ok(())
}

/// The mount namespaces made inside the tree (format 14), in the order their makers are
/// restored (tree order). An absent record is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedImage {
    pub namespaces: Vec<NestedNs>,
    /// Files (by path) a process holds open on a mount of another of the tree's mount
    /// namespaces than its own (one opened before it left its parent's namespace).
    pub elsewhere: Vec<Elsewhere>,
}

/// Fd `fd` of `pid` is open on a mount of the namespace of process `ns_pid`: its path is
/// opened there again (through `/proc/PID/root` of that process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elsewhere {
    pub pid: i32,
    pub fd: i32,
    pub ns_pid: i32,
}

/// One mount namespace made by a process of the tree: every process of it descends
/// from `pid` through processes of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedNs {
    /// The process that makes it at restore (`unshare(CLONE_NEWNS)`), before its mappings
    /// and files; its children inherit it.
    pub pid: i32,
    /// Its mounts, parents first. `How::Host` and `How::HostBind` name mounts and paths of
    /// the namespace of `pid`'s parent (the one it is copied from); peer groups and
    /// masters are numbers of the dump shared with the tree's other namespaces.
    pub mounts: MountsImage,
}

/// A namespace per process at most, each with a root mount.
pub fn validate_nested(img: &NestedImage, path: &std::path::Path) -> Result<(), super::ImageError> {
    for (i, ns) in img.namespaces.iter().enumerate() {
        if ns.mounts.mounts.is_empty() {
            let what = format!("mount namespace of pid {} has no mount", ns.pid);
            return Err(super::ImageError::invalid(path, what));
        }
        if img.namespaces[..i].iter().any(|o| o.pid == ns.pid) {
            let what = format!("pid {} makes two mount namespaces", ns.pid);
            return Err(super::ImageError::invalid(path, what));
        }
    }
    Ok(())
}

/// Every mount of the tree's namespace, parents before children, in the order the
/// namespace lists them (the order they were attached).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountsImage {
    pub mounts: Vec<Mount>,
}

/// One mount, as `/proc/PID/mountinfo` of the tree's root showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub id: u32,
    /// The parent's `id`; the root mount's parent is not in the image.
    pub parent: u32,
    /// `major:minor` of its superblock at dump (mounts showing one filesystem share it).
    pub dev: (u32, u32),
    /// Where it is mounted, as seen from the tree's root.
    pub mountpoint: String,
    /// The directory of its filesystem it shows.
    pub root: String,
    pub fstype: String,
    pub source: String,
    /// Per-mount options (`ro`, `nosuid`, `nodev`, `noexec`, atime modes).
    pub mnt_opts: String,
    /// Per-superblock options, given again to a new superblock.
    pub super_opts: String,
    /// Peer group (`shared:N`) and master group (`master:N`) numbers of the dump.
    pub shared: Option<u32>,
    pub master: Option<u32>,
    pub unbindable: bool,
    pub how: How,
}

/// How a mount is made again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// The restorer's own mount at the same mount point (the tree's namespace was copied
    /// from the dumper's and kept it): cloned from there.
    Host,
    /// A directory of a filesystem the dumper has mounted: cloned from `path` in the
    /// restorer's namespace.
    HostBind { path: String },
    /// Declared external at dump (`--external mnt[MOUNTPOINT]:KEY`), given at restore by
    /// `--external mnt[KEY]:PATH`.
    External { key: String },
    /// The tree's root after `pivot_root`: `--root PATH` at restore, else `hint` (a
    /// directory of the dumper's mounts showing the same filesystem directory).
    Root { hint: Option<String> },
    /// A new superblock of `fstype` with `super_opts` (proc, sysfs, devpts, mqueue,
    /// cgroup2).
    New,
    /// A new tmpfs with `super_opts`, filled from `mnt-tmpfs-<id>.img`.
    Tmpfs,
    /// Another view of the filesystem of mount `of` of the image: its directory `rel`
    /// (relative to that mount's root; empty for the same directory).
    Bind { of: u32, rel: String },
    /// A bind of directory or file `rel` of mount `of` deleted since it was bound
    /// (mountinfo shows its root as `...//deleted`, format 16): made again there as
    /// `gone` says for the bind (its missing parents too), removed once bound.
    Deleted { of: u32, rel: String, gone: Gone },
}

/// What a deleted file or directory a mount shows was (format 16).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gone {
    pub dir: bool,
    /// Permission bits (`st_mode & 0o7777`) and owner.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A file's contents (a deleted directory is empty).
    pub data: Vec<u8>,
}

/// The contents of one tmpfs: every entry, parents before children.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsImage {
    pub entries: Vec<Entry>,
}

/// One file of a tmpfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the filesystem's root; empty for the root itself.
    pub path: String,
    /// `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Dir,
    /// A regular file of `size` bytes: its data extents (offset, bytes); the rest holes.
    File {
        size: u64,
        extents: Vec<(u64, Vec<u8>)>,
    },
    Symlink {
        target: String,
    },
    /// Another name of an earlier entry (`path` of that entry).
    HardLink {
        to: String,
    },
    /// A FIFO or device node (type in `mode`).
    Node {
        rdev: u64,
    },
}

/// The order mounts are judged in at dump and made in at restore: `all` (parents first)
/// with its first element, the root mount, first, then the rest ordered by the depth of
/// their `root` (stable: the order given among equals). Of two mounts of a superblock,
/// the one showing more of it comes first, so the other can be a bind of it.
pub fn shallow_first<T>(all: &[T], root: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut out: Vec<&T> = all.iter().collect();
    if out.len() > 1 {
        out[1..].sort_by_key(|m| root(m).split('/').filter(|c| !c.is_empty()).count());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::{decode, encode};
    use crate::image::Kind;

    #[test]
    fn records_round_trip() {
        let m = MountsImage {
            mounts: vec![Mount {
                id: 5,
                parent: 1,
                dev: (0, 50),
                mountpoint: "/t".into(),
                root: "/".into(),
                fstype: "tmpfs".into(),
                source: "none".into(),
                mnt_opts: "ro,nosuid".into(),
                super_opts: "rw,size=4k".into(),
                shared: Some(3),
                master: None,
                unbindable: false,
                how: How::Bind {
                    of: 4,
                    rel: "d".into(),
                },
            }],
        };
        let bytes = encode(Kind::Mounts, &m).unwrap();
        let back: MountsImage = decode(Kind::Mounts, &bytes, "x".as_ref()).unwrap();
        assert_eq!(back, m);
        let t = TmpfsImage {
            entries: vec![Entry {
                path: "f".into(),
                mode: 0o100644,
                uid: 1,
                gid: 2,
                atime_ns: 3,
                mtime_ns: 4,
                kind: EntryKind::File {
                    size: 1 << 20,
                    extents: vec![(4096, b"abc".to_vec())],
                },
            }],
        };
        let bytes = encode(Kind::MntTmpfs, &t).unwrap();
        let back: TmpfsImage = decode(Kind::MntTmpfs, &bytes, "x".as_ref()).unwrap();
        assert_eq!(back, t);
    }
}
