//! `ghosts.img`: the files of the tree that were deleted while in use ("ghost" files) —
//! a regular file with its data (holes left out), a directory, a FIFO, a device node or a
//! symlink — one record for the whole tree, each file once however many fds, processes
//! and working directories hold it. The restore recreates every ghost before the first
//! process is built, each holder opens it (or `chdir`s into it), and every ghost is
//! removed again before any process runs. An fd refers to its ghost by index
//! ([`crate::image::files::FdKind::Deleted`]); a working directory is listed in
//! [`GhostFile::cwd_of`].
//!
//! The dump side is `dump/files/ghost.rs`, the restore side `restore/files/ghost.rs`.

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record in the image directory; an image without it has no ghost.
pub const GHOSTS: &str = "ghosts.img";

/// `ghost-homes.img` (kind 40, format 16): the ghosts made through a mount other than
/// their path's in the root's namespace; absent, every ghost is made at its path there.
pub const HOMES: &str = "ghost-homes.img";

/// The ghosts not made at their path in the root's mount namespace: one whose fds saw it
/// on a mount of a namespace made inside the tree, under names the root's namespace does
/// not show on its filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostHomesImage {
    pub homes: Vec<GhostHome>,
}

/// Where one ghost is made and how each fd that holds it opens it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostHome {
    /// The ghost (an index in `ghosts.img`).
    pub ghost: u32,
    /// The process of the mount namespace it is made in: the tree's root (made with the
    /// other ghosts), or the process that made a namespace inside the tree (made right
    /// after that namespace is built).
    pub ns_pid: i32,
    /// Its names there, all through one mount of its filesystem: the first made as the
    /// file, the others as hard links of it (a file deleted under several names).
    pub names: Vec<String>,
    /// Every fd that holds it, opening its own name in the namespace it was opened in.
    pub fds: Vec<HomeFd>,
}

/// An fd of a ghost with a home: its name (`path`, as its `/proc` link showed it without
/// " (deleted)"), the same file as the home's name `name` (an index in
/// [`GhostHome::names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeFd {
    pub pid: i32,
    pub fd: i32,
    pub name: u32,
    pub path: String,
}

impl GhostHomesImage {
    /// The home of ghost `ghost`, if it has one.
    pub fn of(&self, ghost: u32) -> Option<&GhostHome> {
        self.homes.iter().find(|h| h.ghost == ghost)
    }

    /// Impossible values: a ghost not in `ghosts`, a home without names, a relative
    /// path, an fd naming a name the home has not.
    pub fn validate(&self, ghosts: &GhostsImage, path: &std::path::Path) -> Result<(), ImageError> {
        for h in &self.homes {
            let bad = |what: &str| {
                Err(ImageError::invalid(
                    path,
                    format!("the home of ghost {}: {what}", h.ghost),
                ))
            };
            if ghosts.get(h.ghost).is_none() {
                return bad("no such ghost");
            }
            if h.names.is_empty() || h.fds.is_empty() {
                return bad("no name or no fd");
            }
            let paths = h.names.iter().chain(h.fds.iter().map(|f| &f.path));
            if paths.clone().any(|p| !p.starts_with('/')) {
                return bad("a path that is not absolute");
            }
            if h.fds.iter().any(|f| f.name as usize >= h.names.len()) {
                return bad("an fd of a name it has not");
            }
        }
        Ok(())
    }
}

/// Every ghost file of the tree, referred to by index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostsImage {
    pub files: Vec<GhostFile>,
}

/// One deleted file: where it lived, its inode's attributes and what it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostFile {
    /// Where it lived (the `/proc/PID/fd` link without " (deleted)"); the restore
    /// recreates it there, or beside it under a hidden name if that is taken.
    pub path: String,
    /// Identity at dump time (for `inspect` and to tell ghosts apart).
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` permission bits (`07777`); the type is [`GhostFile::body`]'s.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Access and modification times, nanoseconds since the epoch.
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub body: GhostBody,
    /// Processes whose working directory it is (a removed directory).
    pub cwd_of: Vec<i32>,
}

/// What kind of file a ghost is, with what it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GhostBody {
    /// A regular file of `size` bytes: its data extents (`SEEK_DATA`/`SEEK_HOLE`), in
    /// offset order, not overlapping; everything else is a hole.
    Regular {
        size: u64,
        extents: Vec<Extent>,
    },
    Directory,
    Fifo,
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
    Symlink {
        target: String,
    },
}

/// One run of data of a regular ghost file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub offset: u64,
    pub data: Vec<u8>,
}

impl GhostBody {
    /// Bytes of file data stored (what `--ghost-limit` counts).
    pub fn stored(&self) -> u64 {
        match self {
            GhostBody::Regular { extents, .. } => extents.iter().map(|e| e.data.len() as u64).sum(),
            _ => 0,
        }
    }

    /// The `S_IFMT` type bits of the file.
    pub fn file_type(&self) -> u32 {
        match self {
            GhostBody::Regular { .. } => libc::S_IFREG,
            GhostBody::Directory => libc::S_IFDIR,
            GhostBody::Fifo => libc::S_IFIFO,
            GhostBody::CharDevice { .. } => libc::S_IFCHR,
            GhostBody::BlockDevice { .. } => libc::S_IFBLK,
            GhostBody::Symlink { .. } => libc::S_IFLNK,
        }
    }

    /// "a deleted regular file", "a removed directory"...
    pub fn describe(&self) -> &'static str {
        match self {
            GhostBody::Regular { .. } => "a deleted regular file",
            GhostBody::Directory => "a removed directory",
            GhostBody::Fifo => "a deleted FIFO",
            GhostBody::CharDevice { .. } => "a deleted character device node",
            GhostBody::BlockDevice { .. } => "a deleted block device node",
            GhostBody::Symlink { .. } => "a deleted symlink",
        }
    }
}

impl GhostsImage {
    /// Ghost `index`, if the record has it.
    pub fn get(&self, index: u32) -> Option<&GhostFile> {
        self.files.get(index as usize)
    }

    /// The ghost that is `pid`'s working directory.
    pub fn cwd_of(&self, pid: i32) -> Option<u32> {
        let i = self.files.iter().position(|g| g.cwd_of.contains(&pid))?;
        Some(i as u32)
    }
}

impl GhostsImage {
    /// Impossible values: extents out of order, overlapping or past the end; a path that
    /// is not absolute; a working directory that is not a directory.
    pub fn validate(&self, path: &std::path::Path) -> Result<(), ImageError> {
        for (i, g) in self.files.iter().enumerate() {
            let bad = |what: String| {
                Err(ImageError::invalid(
                    path,
                    format!("ghost {i} ({}): {what}", g.path),
                ))
            };
            if !g.path.starts_with('/') {
                return bad("the path is not absolute".into());
            }
            if g.mode & !0o7777 != 0 {
                return bad(format!("mode {:o} has bits beyond the permissions", g.mode));
            }
            if !g.cwd_of.is_empty() && g.body != GhostBody::Directory {
                return bad("a working directory that is not a directory".into());
            }
            if let GhostBody::Regular { size, extents } = &g.body {
                let mut end = 0;
                for e in extents {
                    if e.offset < end || e.offset + e.data.len() as u64 > *size {
                        return bad(format!(
                            "extent at {} out of order or past the size {size}",
                            e.offset
                        ));
                    }
                    end = e.offset + e.data.len() as u64;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ghost(body: GhostBody) -> GhostFile {
        GhostFile {
            path: "/tmp/x".into(),
            dev: 1,
            ino: 2,
            mode: 0o644,
            uid: 0,
            gid: 0,
            atime_ns: 0,
            mtime_ns: 123_456_000_000_000,
            body,
            cwd_of: Vec::new(),
        }
    }

    fn extent(offset: u64, len: usize) -> Extent {
        Extent {
            offset,
            data: vec![7; len],
        }
    }

    #[test]
    fn round_trips_and_counts_stored_data_only() {
        let body = GhostBody::Regular {
            size: 1 << 30,
            extents: vec![extent(0, 4096), extent(1 << 29, 4096)],
        };
        assert_eq!(body.stored(), 8192);
        let image = GhostsImage {
            files: vec![
                ghost(body),
                ghost(GhostBody::Symlink { target: "a".into() }),
            ],
        };
        let bytes = crate::image::file::encode(crate::image::Kind::Ghosts, &image).unwrap();
        let back: GhostsImage =
            crate::image::file::decode(crate::image::Kind::Ghosts, &bytes, "g".as_ref()).unwrap();
        assert_eq!(back, image);
        assert!(back.validate("g".as_ref()).is_ok());
    }

    #[test]
    fn refuses_overlapping_or_outlying_extents_and_odd_cwds() {
        let p = std::path::Path::new("ghosts.img");
        for extents in [
            vec![extent(0, 10), extent(5, 10)],
            vec![extent(100, 10)],
            vec![extent(8, 1), extent(0, 1)],
        ] {
            let image = GhostsImage {
                files: vec![ghost(GhostBody::Regular { size: 100, extents })],
            };
            assert!(image.validate(p).is_err());
        }
        let mut fifo = ghost(GhostBody::Fifo);
        fifo.cwd_of.push(3);
        assert!(GhostsImage { files: vec![fifo] }.validate(p).is_err());
        let mut relative = ghost(GhostBody::Directory);
        relative.path = "x".into();
        assert!(GhostsImage {
            files: vec![relative]
        }
        .validate(p)
        .is_err());
    }

    #[test]
    fn homes_round_trip_and_refuse_what_they_cannot_name() {
        let ghosts = GhostsImage {
            files: vec![ghost(GhostBody::Fifo)],
        };
        let fd = |name: u32| HomeFd {
            pid: 7,
            fd: 3,
            name,
            path: "/two/F".into(),
        };
        let home = |names: Vec<&str>, fds: Vec<HomeFd>| GhostHomesImage {
            homes: vec![GhostHome {
                ghost: 0,
                ns_pid: 5,
                names: names.into_iter().map(Into::into).collect(),
                fds,
            }],
        };
        let image = home(vec!["/z/1/F", "/z/2/F"], vec![fd(1)]);
        let kind = crate::image::Kind::GhostHomes;
        let bytes = crate::image::file::encode(kind, &image).unwrap();
        let back: GhostHomesImage = crate::image::file::decode(kind, &bytes, "h".as_ref()).unwrap();
        assert_eq!(back, image);
        let p = std::path::Path::new(HOMES);
        assert!(back.validate(&ghosts, p).is_ok());
        assert_eq!(back.of(0).map(|h| h.ns_pid), Some(5));
        assert!(home(vec!["/z/1/F"], vec![fd(1)])
            .validate(&ghosts, p)
            .is_err());
        assert!(home(vec!["z/1/F"], vec![fd(0)])
            .validate(&ghosts, p)
            .is_err());
        assert!(home(vec![], vec![]).validate(&ghosts, p).is_err());
        let mut other = home(vec!["/z/1/F"], vec![fd(0)]);
        other.homes[0].ghost = 1;
        assert!(other.validate(&ghosts, p).is_err());
    }
}
