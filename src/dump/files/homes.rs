//! Where a ghost is made when the root's mount namespace does not show it at its path
//! (`ghost-homes.img`): a file deleted while open on a mount only a namespace made inside
//! the tree has, or held by an fd opened in another of the tree's namespaces than its
//! process's. Each fd's name is placed on its filesystem (its mount's root joined with
//! the path below its mount point, `/proc/PID/fdinfo`'s `mnt_id` found in the mountinfo
//! of the namespace it was opened in); the ghost is then made through one mount showing
//! every such place, of the root's namespace or else of the namespace a name was seen
//! in (made once that namespace is built), each name a hard link of the first. A ghost
//! no such mount shows is refused. The restore side is `restore/files/ghost.rs`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::FileStat;

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::ghost::{GhostHome, GhostHomesImage, GhostsImage, HomeFd};

/// One fd's name of a ghost.
#[derive(Clone, Debug)]
pub struct Name {
    pid: i32,
    fd: i32,
    /// As its `/proc` link showed it, without " (deleted)".
    path: String,
    /// A process of the namespace the fd was opened in.
    ns_pid: i32,
    /// The root's namespace shows the file's filesystem at `path`, and the fd was opened
    /// in its process's namespace: the ghost can be made at `path` there.
    plain: bool,
    /// The filesystem (`major:minor`) and the file's place in it, if its mount was found.
    place: Option<((u32, u32), String)>,
    /// The fd was opened with `O_TMPFILE` (which `F_GETFL` shows).
    tmpfile: bool,
}

impl Name {
    /// The name of the deleted file behind `open`, at `path`; `root`: the tree's root.
    pub fn of(open: &OpenFd, root: Option<i32>, path: &str, meta: &FileStat) -> Name {
        let elsewhere = crate::dump::mnt::nested::opened_elsewhere(open.pid, open.fd);
        let ns_pid = elsewhere.unwrap_or(open.pid);
        let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let seen = match root {
            None => true,
            Some(r) => ns(r) == ns(open.pid) || shows(r, path, meta.st_dev),
        };
        let plain = elsewhere.is_none() && seen;
        Name {
            pid: open.pid,
            fd: open.fd,
            path: path.to_string(),
            ns_pid,
            plain,
            place: place(open, ns_pid, path),
            tmpfile: open.info.flags & (libc::O_TMPFILE & !libc::O_DIRECTORY) != 0,
        }
    }
}

/// Whether the nearest existing directory above `path`, in the mount namespace of `pid`,
/// is on filesystem `dev`.
fn shows(pid: i32, path: &str, dev: u64) -> bool {
    let above = Path::new(path).ancestors().skip(1).find_map(|dir| {
        let at = format!("/proc/{pid}/root{}", dir.to_string_lossy());
        std::fs::metadata(at).ok()
    });
    above.is_some_and(|m| m.dev() == dev)
}

/// The filesystem of `open`'s mount and the file's place in it.
fn place(open: &OpenFd, ns_pid: i32, path: &str) -> Option<((u32, u32), String)> {
    let mnt_id = u32::try_from(open.info.mnt_id).ok()?;
    let mounts = crate::dump::mnt::read_mountinfo(ns_pid).ok()?;
    let m = mounts.iter().find(|m| m.id == mnt_id)?;
    Some((m.dev, join(&m.root, below(path, &m.mountpoint)?)))
}

/// `path` relative to directory `dir`, if it is in it (`""` for `dir` itself).
fn below<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let dir = dir.trim_end_matches('/');
    match path.strip_prefix(dir)? {
        "" => Some(""),
        rest => rest.strip_prefix('/'),
    }
}

fn join(dir: &str, rest: &str) -> String {
    match rest {
        "" => dir.to_string(),
        _ => format!("{}/{rest}", dir.trim_end_matches('/')),
    }
}

/// The homes of the ghosts of `image` some fd held where the root's namespace does not
/// show them (`names`: each ghost's fds' names). `pids`: the tree's live processes in
/// tree order, the root first.
pub fn plan(
    image: &GhostsImage,
    names: &HashMap<u32, Vec<Name>>,
    pids: &[i32],
) -> Result<GhostHomesImage, DumpError> {
    let mut homes = Vec::new();
    let mut ghosts: Vec<_> = names
        .iter()
        .filter(|(_, n)| n.iter().any(|n| !n.plain))
        .collect();
    ghosts.sort_by_key(|(g, _)| **g);
    for (&ghost, names) in ghosts {
        let dev = image.files[ghost as usize].dev;
        homes.push(home(ghost, dev, names, pids)?);
    }
    Ok(GhostHomesImage { homes })
}

/// The home of ghost `ghost` (on device `dev`) held under `names`.
fn home(ghost: u32, dev: u64, names: &[Name], pids: &[i32]) -> Result<GhostHome, DumpError> {
    let refuse = |n: &Name, why: &str| {
        DumpError::unsupported(format!(
            "fd {} of pid {} is {}, deleted while open, on a mount {why}, where stasis would \
             make it again",
            n.fd, n.pid, n.path
        ))
    };
    let mut places: Vec<&String> = Vec::new();
    let mut fds = Vec::new();
    let mut fs = None;
    for n in names {
        if n.tmpfile {
            // Made here under a name, it would lose the flag: only the root's namespace
            // makes a ghost again with `O_TMPFILE` (`restore/files/ghost.rs`).
            return Err(refuse(
                n,
                "of another mount namespace, opened with O_TMPFILE",
            ));
        }
        let Some((sb, place)) = &n.place else {
            return Err(refuse(n, "that no namespace of the tree lists"));
        };
        fs = Some(*sb);
        let i = places.iter().position(|p| *p == place).unwrap_or_else(|| {
            places.push(place);
            places.len() - 1
        });
        fds.push(HomeFd {
            pid: n.pid,
            fd: n.fd,
            name: i as u32,
            path: n.path.clone(),
        });
    }
    let candidates = std::iter::once(pids[0]).chain(names.iter().map(|n| maker(n.ns_pid, pids)));
    for ns_pid in candidates {
        if let Some(names) = fs.and_then(|sb| through_one_mount(ns_pid, sb, dev, &places)) {
            return Ok(GhostHome {
                ghost,
                ns_pid,
                names,
                fds,
            });
        }
    }
    Err(refuse(
        &names[0],
        "that no one mount of the tree's namespaces shows with all its names",
    ))
}

/// The first process of the tree (in tree order: parents first, the maker of a
/// namespace before those that joined it) in the mount namespace of `pid`.
fn maker(pid: i32, pids: &[i32]) -> i32 {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let of = ns(pid);
    pids.iter().copied().find(|&p| ns(p) == of).unwrap_or(pid)
}

/// The paths, in the mount namespace of `ns_pid`, of `places` of filesystem `sb` (device
/// `dev`) through the one mount of it there showing them all whose root is shallowest;
/// `None` if no mount shows them all (or another mount covers one's directory).
fn through_one_mount(
    ns_pid: i32,
    sb: (u32, u32),
    dev: u64,
    places: &[&String],
) -> Option<Vec<String>> {
    let mounts = crate::dump::mnt::read_mountinfo(ns_pid).ok()?;
    let m = (mounts.iter())
        .filter(|m| m.dev == sb && places.iter().all(|p| below(p, &m.root).is_some()))
        .min_by_key(|m| m.root.len())?;
    let paths: Vec<String> = (places.iter())
        .map(|p| below(p, &m.root).map(|rest| join(&m.mountpoint, rest)))
        .collect::<Option<_>>()?;
    paths.iter().all(|p| shows(ns_pid, p, dev)).then_some(paths)
}

#[cfg(test)]
mod tests {
    use super::{below, join};

    #[test]
    fn places_join_a_mount_root_and_the_path_below_its_mount_point() {
        assert_eq!(below("/a/b/F", "/a/b"), Some("F"));
        assert_eq!(below("/a/b/F", "/"), Some("a/b/F"));
        assert_eq!(below("/a/bc/F", "/a/b"), None);
        assert_eq!(below("/a/b", "/a/b/"), Some(""));
        assert_eq!(join("/", "2/F"), "/2/F");
        assert_eq!(join("/1", "F"), "/1/F");
        assert_eq!(join("/1", ""), "/1");
    }
}
