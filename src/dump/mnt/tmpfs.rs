//! The files of a tmpfs of the tree (`mnt-tmpfs-<id>.img`): read through a detached
//! copy of the mount (`open_tree(OPEN_TREE_CLONE)` in the tree's namespace), which shows
//! the filesystem alone, without what is mounted on it. Directories, regular files
//! (their data extents only: holes stay holes), symlinks, FIFOs and device nodes, hard
//! links, with mode, owner and times; opened with `O_NOATIME` so reading changes no
//! time. Unix socket files are skipped: the sockets bound there make them again. A tmpfs
//! hidden under later mounts is read in a private copy of the namespace (made by a
//! thread of stasis) from which the mounts hiding it were taken off.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use nix::unistd::{lseek, Whence};

use super::DumpError;
use crate::image::mnt::{Entry, EntryKind, Mount, TmpfsImage};

/// The most file data one tmpfs may hold for its record.
const MAX_DATA: u64 = 192 << 20;

/// The mounts that hide tmpfs `m` (at or above its mount point, mounted after it, not
/// its ancestors), the newest first.
fn hiding<'a>(m: &Mount, mounts: &'a [Mount]) -> Vec<&'a Mount> {
    let ancestors = || {
        let mut out = Vec::new();
        let mut cur = m.parent;
        while let Some(p) = mounts.iter().find(|p| p.id == cur) {
            out.push(p.id);
            cur = p.parent;
        }
        out
    };
    let above = ancestors();
    let covers = |o: &&Mount| {
        let base = o.mountpoint.trim_end_matches('/');
        o.id != m.id
            && (o.mountpoint == m.mountpoint || m.mountpoint.starts_with(&format!("{base}/")))
            && !above.contains(&o.id)
    };
    let mut out: Vec<&Mount> = mounts.iter().filter(covers).collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.id));
    out
}

/// In a private copy of the tree's namespace (the calling thread's, see
/// `sys::mount::private_copy`), takes the mounts that hide `m` off its mount point, the
/// newest first, until the path leads to `m`'s filesystem again.
///
/// `proc`: stasis's own `/proc`, opened before the namespace was entered (the tree's is
/// of another pid namespace, where this thread is not).
fn reveal(
    m: &Mount,
    hiders: &[&Mount],
    proc: std::os::fd::BorrowedFd,
) -> Result<(), crate::sys::mount::MountError> {
    crate::sys::mount::private_copy()?;
    // The mount the path leads to must be `m` itself, not another view of its
    // filesystem (a bind of one of its directories over it): same place, device, root.
    let shows_m = || {
        let text = read_at(proc, "thread-self/mountinfo").unwrap_or_default();
        let mounts = crate::proc::mountinfo::parse(&text).unwrap_or_default();
        let id = mount_id_at(proc, &m.mountpoint);
        (mounts.iter().find(|h| Some(h.id) == id))
            .is_some_and(|h| h.mountpoint == m.mountpoint && h.dev == m.dev && h.root == m.root)
    };
    for h in hiders {
        if shows_m() {
            break;
        }
        crate::sys::mount::detach(&h.mountpoint)?;
    }
    Ok(())
}

/// The id of the mount `path` leads to (`mnt_id` of an `O_PATH` fd on it).
fn mount_id_at(proc: std::os::fd::BorrowedFd, path: &str) -> Option<u32> {
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path, flags, Mode::empty()).ok()?;
    let info = read_at(proc, &format!("thread-self/fdinfo/{}", fd.as_raw_fd()))?;
    let id = info.lines().find_map(|l| l.strip_prefix("mnt_id:"))?;
    id.trim().parse().ok()
}

/// The text of `path` below the directory `dir`.
fn read_at(dir: std::os::fd::BorrowedFd, path: &str) -> Option<String> {
    use std::io::Read;
    let fd = openat(dir, path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The mount points, relative to `m`'s root, of the mounts on `m`.
fn covered(m: &Mount, all: &[Mount]) -> Vec<String> {
    let base = m.mountpoint.trim_end_matches('/');
    (all.iter().filter(|c| c.parent == m.id))
        .filter_map(|c| c.mountpoint.strip_prefix(base))
        .map(|r| r.trim_start_matches('/').to_string())
        .collect()
}

pub fn read(root_pid: i32, m: &Mount, all: &[Mount]) -> Result<TmpfsImage, DumpError> {
    let fail = |what: String| {
        DumpError::unsupported(format!(
            "tmpfs at {} (mount {}): {what}",
            m.mountpoint, m.id
        ))
    };
    let path = m.mountpoint.clone();
    let hiders = hiding(m, all);
    // An unbindable mount cannot be cloned: it is walked in place, the mount points of
    // the mounts on it skipped. A hidden one is revealed first, in a private copy of
    // the namespace.
    let proc = nix::fcntl::open("/proc", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("open /proc: {}", e.desc())))?;
    let (tree, in_place) = crate::sys::mount::in_mount_ns(root_pid, move || {
        if !hiders.is_empty() {
            reveal(m, &hiders, proc.as_fd())?;
        }
        match crate::sys::mount::clone_tree(None, &path) {
            Err(e) if e.source == nix::errno::Errno::EINVAL => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                nix::fcntl::open(path.as_str(), flags, Mode::empty())
                    .map(|fd| (fd, true))
                    .map_err(|source| crate::sys::mount::MountError {
                        call: "open",
                        what: path.clone(),
                        source,
                    })
            }
            other => other.map(|fd| (fd, false)),
        }
    })
    .and_then(|r| r)
    .map_err(|e| fail(e.to_string()))?;
    let skip = match in_place {
        true => covered(m, all),
        false => Vec::new(),
    };
    let mut walk = Walk {
        out: TmpfsImage::default(),
        seen: HashMap::new(),
        data: 0,
        skip,
    };
    walk.dir(&tree, "")
        .map_err(|(p, e)| fail(format!("{p}: {e}")))?;
    Ok(walk.out)
}

struct Walk {
    out: TmpfsImage,
    /// Inodes with several links: the first path seen.
    seen: HashMap<u64, String>,
    data: u64,
    /// Mount points on the tmpfs (when walked in place): recorded as empty directories.
    skip: Vec<String>,
}

type WalkError = (String, String);

fn werr(path: &str) -> impl Fn(nix::errno::Errno) -> WalkError + '_ {
    move |e| (path.to_string(), e.desc().to_string())
}

fn noatime() -> OFlag {
    OFlag::O_NOATIME | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
}

impl Walk {
    /// Records the directory `rel` (reached through `fd`) and everything below it.
    fn dir(&mut self, fd: &OwnedFd, rel: &str) -> Result<(), WalkError> {
        let st = fstatat(fd, "", nix::fcntl::AtFlags::AT_EMPTY_PATH).map_err(werr(rel))?;
        self.push(rel, &st, EntryKind::Dir);
        let dup = openat(
            fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | noatime(),
            Mode::empty(),
        )
        .map_err(werr(rel))?;
        let mut names: Vec<String> = Vec::new();
        let mut dir = Dir::from_fd(dup).map_err(werr(rel))?;
        for e in dir.iter() {
            let e = e.map_err(werr(rel))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            self.entry(fd, &name, &child)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, name: &str, rel: &str) -> Result<(), WalkError> {
        if self.skip.iter().any(|s| s == rel) {
            // What is under the mount is hidden: an empty directory of the same mode.
            let st =
                fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(werr(rel))?;
            self.push(rel, &st, EntryKind::Dir);
            return Ok(());
        }
        let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(werr(rel))?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = self.seen.get(&st.st_ino) {
                let to = first.clone();
                self.push(rel, &st, EntryKind::HardLink { to });
                return Ok(());
            }
            self.seen.insert(st.st_ino, rel.to_string());
        }
        match kind {
            libc::S_IFDIR => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | noatime();
                let sub = openat(dir, name, flags, Mode::empty()).map_err(werr(rel))?;
                self.dir(&sub, rel)
            }
            libc::S_IFREG => {
                let f = openat(dir, name, OFlag::O_RDONLY | noatime(), Mode::empty())
                    .map_err(werr(rel))?;
                let extents = self.extents(&f, st.st_size as u64, rel)?;
                let size = st.st_size as u64;
                self.push(rel, &st, EntryKind::File { size, extents });
                Ok(())
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(werr(rel))?;
                let target = target.to_string_lossy().into_owned();
                self.push(rel, &st, EntryKind::Symlink { target });
                Ok(())
            }
            libc::S_IFSOCK => Ok(()),
            _ => {
                self.push(rel, &st, EntryKind::Node { rdev: st.st_rdev });
                Ok(())
            }
        }
    }

    /// The data extents of a regular file (`SEEK_DATA`/`SEEK_HOLE`).
    fn extents(
        &mut self,
        f: &OwnedFd,
        size: u64,
        rel: &str,
    ) -> Result<Vec<(u64, Vec<u8>)>, WalkError> {
        let mut out = Vec::new();
        let mut pos = 0i64;
        while (pos as u64) < size {
            let start = match lseek(f, pos, Whence::SeekData) {
                Ok(s) => s,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(werr(rel)(e)),
            };
            let end = lseek(f, start, Whence::SeekHole).map_err(werr(rel))?;
            let len = (end - start) as u64;
            self.data += len;
            if self.data > MAX_DATA {
                return Err((rel.into(), format!("the tmpfs holds more than {MAX_DATA} bytes of data, more than stasis saves")));
            }
            let mut buf = vec![0u8; len as usize];
            let mut done = 0;
            while done < buf.len() {
                let n = nix::sys::uio::pread(f.as_fd(), &mut buf[done..], start + done as i64)
                    .map_err(werr(rel))?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            out.push((start as u64, buf));
            pos = end;
        }
        let _ = f.as_raw_fd();
        Ok(out)
    }

    fn push(&mut self, rel: &str, st: &FileStat, kind: EntryKind) {
        self.out.entries.push(Entry {
            path: rel.to_string(),
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            atime_ns: st.st_atime * 1_000_000_000 + st.st_atime_nsec,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            kind,
        });
    }
}
