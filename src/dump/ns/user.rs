//! User namespaces: a tree whose processes live in one user namespace, a child of the
//! dumper's (a rootless container's), is saved with its uid and gid maps and setgroups
//! mode (`userns.img`). The root's namespaces the restore makes for the tree (network,
//! UTS, IPC, mount) must be owned by it, as those made again will be; the time and
//! cgroup namespaces, which stasis makes before the root, by the dumper's. The tree may
//! live in one pid namespace owned by it whose init is the tree's root (a rootless
//! container's, `unshare --user --pid --fork`); deeper user namespaces, a process in
//! another one than the root's, other pid namespaces inside it (see [`refuse_pid_ns`])
//! and other owners are refused naming the pid and namespace; the nested namespaces and
//! pid namespaces before the tree is frozen.
//! The restore side is `restore/ns/user.rs`.

use std::os::fd::OwnedFd;

use super::{inode, DumpError};
use crate::image::userns::{IdMap, SocketOwner, UserNsImage};
use crate::sys::nsfs;

/// The dumper's user namespace inode.
fn own() -> Option<u64> {
    static OWN: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| inode("self", "user"))
}

fn open_ns(pid: &str, kind: &str) -> Result<OwnedFd, DumpError> {
    let path = format!("/proc/{pid}/ns/{kind}");
    let file = std::fs::File::open(&path).map_err(|source| DumpError::Stat { path, source })?;
    Ok(file.into())
}

/// Refuses `pid` if its user namespace is neither the dumper's nor a child of it, or if
/// in a child of it, it is in or makes a pid namespace of its own (checked for every
/// process before it is frozen).
pub fn refuse_foreign(pid: i32) -> Result<(), DumpError> {
    let (Some(mine), Some(theirs)) = (own(), inode(&pid.to_string(), "user")) else {
        return Ok(());
    };
    if theirs == mine {
        return Ok(());
    }
    let parent = nsfs::parent(&open_ns(&pid.to_string(), "user")?).ok();
    if parent == Some(mine) {
        return refuse_pid_ns(pid, theirs);
    }
    Err(DumpError::unsupported(format!(
        "pid {pid} is in user:[{theirs}], nested below a user namespace of its own (stasis \
         is in user:[{mine}]); stasis rebuilds one user namespace, a child of its own: \
         dump from inside the outer one"
    )))
}

/// The tree's user namespace if it is not the dumper's (`live`: every live process, the
/// root first), checked.
///
/// Ordering requirements: the tree is frozen.
pub fn collect(live: &[i32]) -> Result<Option<UserNsImage>, DumpError> {
    let Some(&root) = live.first() else {
        return Ok(None);
    };
    let ns = inode(&root.to_string(), "user");
    for &pid in live {
        let theirs = inode(&pid.to_string(), "user");
        if theirs != ns {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is in user:[{}], not in user:[{}] of the tree's root {root}; \
                 stasis rebuilds one user namespace per tree",
                theirs.unwrap_or(0),
                ns.unwrap_or(0)
            )));
        }
    }
    let (Some(ns), Some(mine)) = (ns, own()) else {
        return Ok(None);
    };
    if ns == mine {
        return Ok(None);
    }
    check_owners(root, ns, mine)?;
    let mut image = read(root)?;
    image.sockets = socket_owners(live)?;
    Ok(Some(image))
}

/// A process of a tree with its own user namespace lives in the dumper's pid namespace
/// or in one pid namespace right below it that the tree's user namespace owns (a
/// rootless container's: the tree's root is its init, which `dump/ns/pid.rs` checks),
/// and makes its children in its own. The restore clones the init with `CLONE_NEWUSER
/// | CLONE_NEWPID` (the new pid namespace owned by the new user namespace) and the rest
/// from inside it, each given its pid in the namespace (`set_tid`, which needs
/// privileges only over that namespace's owner) and its host pid through the
/// `ns_last_pid` of stasis's namespace (`restore/ns/user.rs`). Refused: a pid namespace
/// deeper than that (its inits would have to be cloned inside the tree's pid namespace
/// with pids in two levels), one owned by another user namespace (it would come back
/// owned by the wrong one), and one unshared for a process's children.
fn refuse_pid_ns(pid: i32, userns: u64) -> Result<(), DumpError> {
    let p = pid.to_string();
    let (theirs, ours) = (inode(&p, "pid"), inode("self", "pid"));
    let children = inode(&p, "pid_for_children");
    if children.is_some() && children != theirs {
        return Err(DumpError::unsupported(format!(
            "pid {pid} unshared for its children pid:[{}], a pid namespace inside its user \
             namespace user:[{userns}]; stasis rebuilds a pid namespace there only if the \
             tree's root is its init",
            children.unwrap_or(0)
        )));
    }
    if theirs == ours {
        return Ok(());
    }
    let ns = open_ns(&p, "pid")?;
    let (owner, parent) = (nsfs::owner(&ns).ok(), nsfs::parent(&ns).ok());
    if owner == Some(userns) && parent.is_some() && parent == ours {
        return Ok(());
    }
    let why = match owner == Some(userns) {
        true => format!(
            "nested below pid:[{}] (stasis is in pid:[{}])",
            parent.unwrap_or(0),
            ours.unwrap_or(0)
        ),
        false => format!("owned by user:[{}]", owner.unwrap_or(0)),
    };
    Err(DumpError::unsupported(format!(
        "pid {pid} is in pid:[{}], {why}, in user namespace user:[{userns}]; stasis \
         rebuilds one pid namespace inside the tree's user namespace, a child of its own \
         owned by the tree's user namespace",
        theirs.unwrap_or(0)
    )))
}

/// The root's namespaces other than the dumper's must be owned by the user namespace
/// the restore gives them: `tree` for those made for the tree (network, UTS, IPC,
/// mount), the dumper's (`mine`) for those stasis makes itself (time, cgroup).
fn check_owners(root: i32, tree: u64, mine: u64) -> Result<(), DumpError> {
    let kinds = [
        ("net", tree),
        ("uts", tree),
        ("ipc", tree),
        ("mnt", tree),
        ("pid", tree),
        ("time", mine),
        ("cgroup", mine),
    ];
    let p = root.to_string();
    for (kind, want) in kinds {
        let (Some(theirs), Some(ours)) = (inode(&p, kind), inode("self", kind)) else {
            continue;
        };
        if theirs == ours {
            continue;
        }
        let owner = nsfs::owner(&open_ns(&p, kind)?).ok();
        if owner != Some(want) {
            return Err(DumpError::unsupported(format!(
                "pid {root}'s {kind}:[{theirs}] is owned by user:[{}], but stasis would \
                 rebuild it owned by user:[{want}]; stasis cannot rebuild that ownership",
                owner.unwrap_or(0)
            )));
        }
    }
    Ok(())
}

/// The maps and setgroups mode of `pid`'s user namespace.
fn read(pid: i32) -> Result<UserNsImage, DumpError> {
    let text = |name: &str| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::read_to_string(&path).map_err(|source| DumpError::Stat { path, source })
    };
    let map = |name: &str| -> Result<IdMap, DumpError> {
        let parsed = IdMap::parse(&text(name)?).filter(|m| !m.0.is_empty());
        parsed.ok_or_else(|| {
            DumpError::unsupported(format!(
                "/proc/{pid}/{name} is empty or unreadable: the user namespace of pid {pid} \
                 has no {name} yet, which stasis cannot rebuild"
            ))
        })
    };
    Ok(UserNsImage {
        uid_map: map("uid_map")?,
        gid_map: map("gid_map")?,
        setgroups: text("setgroups")?.trim() == "allow",
        sockets: Vec::new(),
    })
}

/// The owner of every socket fd of `live` (see `UserNsImage::sockets`).
fn socket_owners(live: &[i32]) -> Result<Vec<SocketOwner>, DumpError> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for &pid in live {
        let dir = format!("/proc/{pid}/fd");
        let stat = |path: String| {
            std::fs::read_dir(&path).map_err(|source| DumpError::Stat { path, source })
        };
        for entry in stat(dir.clone())?.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let link = std::fs::read_link(entry.path()).unwrap_or_default();
            if !link.to_string_lossy().starts_with("socket:[") {
                continue;
            }
            let path = format!("{dir}/{fd}");
            let meta =
                std::fs::metadata(&path).map_err(|source| DumpError::Stat { path, source })?;
            out.push(SocketOwner {
                pid,
                fd,
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
    }
    Ok(out)
}
