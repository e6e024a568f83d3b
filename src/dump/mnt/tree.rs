//! Which mounts the tree's namespace has and how each is made again (`How`), checked
//! against the dumper's own namespace: a mount the dumper has at the same place is the
//! host's; a new superblock of a kind stasis can create is made again; a directory of a
//! mount already in the image or of a local filesystem the dumper has mounted is a bind;
//! anything else is refused, naming it and `--external`.

use super::{DumpError, Externals};
use crate::image::mnt::{How, Mount};
use crate::proc::mountinfo::MountInfo;

/// Filesystems stasis creates again from their options (`How::New`). A cgroup v1
/// hierarchy and binfmt_misc (of the initial user namespace, `mod.rs` checks) are one
/// instance for the whole host, found again by their options: a new mount of them is
/// the superblock the tree had, whose contents are host state (as a host disk's files).
const NEW_KINDS: [&str; 9] = [
    "proc",
    "sysfs",
    "devpts",
    "mqueue",
    "cgroup2",
    "bpf",
    "overlay",
    "cgroup",
    "binfmt_misc",
];

/// Filesystems of local devices whose directories may be bound from the dumper's mounts.
const LOCAL_KINDS: [&str; 6] = ["ext4", "ext3", "ext2", "xfs", "btrfs", "tmpfs"];

/// Every mount of `theirs`, parents first, with how it comes back.
///
/// Ordering requirements: mounts are judged with the shallowest roots first (after the
/// root mount), so that of two mounts of one superblock the one showing its whole tree
/// is made anew and the other is a bind of it, whichever was mounted first (runc binds
/// `/dev/console` from a devpts before that devpts is mounted at `/dev/pts`). The
/// restore makes them in the same order (`restore/mnt/tree.rs`).
pub fn classify(
    theirs: &[MountInfo],
    mine: &[MountInfo],
    externals: &Externals,
) -> Result<Vec<Mount>, DumpError> {
    classify_with(theirs, mine, externals, false)
}

/// [`classify`] for a namespace made inside the tree (`nested.rs`), against the
/// namespace it was copied from (`parent`): a superblock that namespace has mounted is
/// bound from there rather than made anew (a new tmpfs or devpts would be another one).
pub fn classify_nested(
    theirs: &[MountInfo],
    parent: &[MountInfo],
) -> Result<Vec<Mount>, DumpError> {
    classify_with(theirs, parent, &Externals::default(), true)
}

fn classify_with(
    theirs: &[MountInfo],
    mine: &[MountInfo],
    externals: &Externals,
    nested: bool,
) -> Result<Vec<Mount>, DumpError> {
    let order = parents_first(theirs)?;
    let mut judged: Vec<Mount> = Vec::new();
    for m in crate::image::mnt::shallow_first(&order, |m| &m.root) {
        let at = Judged {
            done: &judged,
            mine,
            externals,
            is_root: judged.is_empty(),
            nested,
        };
        let how = how(m, &at)?;
        judged.push(Mount {
            id: m.id,
            parent: m.parent,
            dev: m.dev,
            mountpoint: m.mountpoint.clone(),
            root: m.root.clone(),
            fstype: m.fstype.clone(),
            source: m.source.clone(),
            mnt_opts: m.mnt_opts.clone(),
            super_opts: m.super_opts.clone(),
            shared: m.shared,
            master: m.master,
            unbindable: m.unbindable,
            how,
        });
    }
    let mut out = Vec::with_capacity(judged.len());
    for m in &order {
        if let Some(at) = judged.iter().position(|j| j.id == m.id) {
            out.push(judged.swap_remove(at));
        }
    }
    Ok(out)
}

/// The mounts ordered so that each comes after its parent, otherwise in the order listed
/// (the order they were attached); the root is the one whose parent is not listed.
fn parents_first(all: &[MountInfo]) -> Result<Vec<&MountInfo>, DumpError> {
    let listed = |id| all.iter().any(|m| m.id == id);
    let roots: Vec<_> = all.iter().filter(|m| !listed(m.parent)).collect();
    if roots.len() != 1 {
        return Err(DumpError::unsupported(format!(
            "the tree's mountinfo has {} root mounts",
            roots.len()
        )));
    }
    let mut out = roots;
    while out.len() < all.len() {
        let before = out.len();
        for m in all {
            let placed = |id| out.iter().any(|o: &&MountInfo| o.id == id);
            if !placed(m.id) && placed(m.parent) {
                out.push(m);
            }
        }
        if out.len() == before {
            return Err(DumpError::unsupported("the tree's mountinfo has a cycle"));
        }
    }
    Ok(out)
}

/// What a mount is judged against.
struct Judged<'a> {
    /// The mounts judged before it.
    done: &'a [Mount],
    /// The namespace the tree's is copied from at restore.
    mine: &'a [MountInfo],
    externals: &'a Externals,
    is_root: bool,
    /// A namespace made inside the tree (`classify_nested`).
    nested: bool,
}

fn how(m: &MountInfo, at: &Judged) -> Result<How, DumpError> {
    let Judged {
        done,
        mine,
        externals,
        is_root,
        ..
    } = *at;
    if let Some((_, key)) = (externals.named.iter()).find(|(mp, _)| *mp == m.mountpoint) {
        return Ok(How::External { key: key.clone() });
    }
    if let Some(gone) = m.root.strip_suffix("//deleted") {
        return deleted(m, gone, done);
    }
    let same_place = mine.iter().any(|h| {
        h.mountpoint == m.mountpoint && h.dev == m.dev && h.root == m.root && h.fstype == m.fstype
    });
    if same_place {
        return Ok(How::Host);
    }
    if is_root && (m.fstype != "tmpfs" || host_dir(m, mine).is_some()) {
        return Ok(How::Root {
            hint: host_dir(m, mine),
        });
    }
    if let Some(path) = master_dir(m, mine).filter(|_| !is_root && !at.nested) {
        return Ok(How::HostBind { path });
    }
    if let Some((of, rel)) = same_fs_in_image(m, done) {
        return Ok(How::Bind { of, rel });
    }
    if let Some(path) = host_dir(m, mine).filter(|_| at.nested || externals.auto) {
        return Ok(How::HostBind { path });
    }
    if m.fstype == "tmpfs" && m.root == "/" {
        return Ok(How::Tmpfs);
    }
    // An overlay stasis itself has mounted (a container's root it runs in) is bound
    // from there: the same files, where a new overlay would need its layers.
    if m.fstype == "overlay" {
        if let Some(path) = host_dir(m, mine) {
            return Ok(How::HostBind { path });
        }
    }
    if NEW_KINDS.contains(&m.fstype.as_str()) {
        return Ok(How::New);
    }
    if LOCAL_KINDS.contains(&m.fstype.as_str()) {
        if let Some(path) = host_dir(m, mine) {
            return Ok(How::HostBind { path });
        }
    }
    Err(refusal(m, host_dir(m, mine)))
}

/// A bind of `gone`, deleted since: made again from the mount of the image on its
/// filesystem (what it was is read by `deleted.rs`).
fn deleted(m: &MountInfo, gone: &str, done: &[Mount]) -> Result<How, DumpError> {
    let was = MountInfo {
        root: gone.to_string(),
        ..m.clone()
    };
    match same_fs_in_image(&was, done) {
        Some((of, rel)) if !rel.is_empty() => Ok(How::Deleted {
            of,
            rel,
            gone: Default::default(),
        }),
        _ => Err(DumpError::unsupported(format!(
            "mount {} at {} (type {}, source {}) shows {gone}, deleted since it was bound, \
             from a filesystem no other mount of the tree shows, which stasis cannot make \
             again; declare it with --external mnt[{}]:KEY",
            m.id, m.mountpoint, m.fstype, m.source, m.mountpoint
        ))),
    }
}

/// The one-line refusal of a mount stasis cannot make again.
fn refusal(m: &MountInfo, host: Option<String>) -> DumpError {
    if let Some(path) = host {
        return DumpError::unsupported(format!(
            "mount {} at {} (type {}, source {}) shows a {} filesystem stasis does not create \
             again; --external mnt[] binds it from stasis's mount at {path}, or declare it with \
             --external mnt[{}]:KEY",
            m.id, m.mountpoint, m.fstype, m.source, m.fstype, m.mountpoint
        ));
    }
    let why = match m.fstype.as_str() {
        t if t.starts_with("fuse") => "a FUSE filesystem, whose server is outside the tree",
        "nfs" | "nfs4" | "cifs" | "smb3" | "9p" | "ceph" => "a network filesystem",
        "tmpfs" => "a part of a tmpfs whose root is mounted nowhere in the tree",
        _ => "a filesystem stasis cannot create again and that the dumper has not mounted",
    };
    DumpError::unsupported(format!(
        "mount {} at {} (type {}, source {}) is {why}; declare it with --external mnt[{}]:KEY \
         and give it at restore with --external mnt[KEY]:PATH",
        m.id, m.mountpoint, m.fstype, m.source, m.mountpoint
    ))
}

/// A mount of the image on the same superblock whose root holds `m`'s: `m` is a bind
/// of its directory `rel`. Mounts made from their own superblock are preferred.
fn same_fs_in_image(m: &MountInfo, done: &[Mount]) -> Option<(u32, String)> {
    let dev = |d: &Mount| d.fstype == m.fstype && d.source == m.source;
    let candidates = done.iter().filter(|d| dev(d) && same_dev(d, m));
    let mut best: Option<(u32, String, bool)> = None;
    for d in candidates {
        let Some(rel) = under(&m.root, &d.root) else {
            continue;
        };
        let own = matches!(d.how, How::Tmpfs | How::New);
        if best.as_ref().map_or(true, |b| own && !b.2) {
            best = Some((d.id, rel, own));
        }
    }
    best.map(|(of, rel, _)| (of, rel))
}

fn same_dev(d: &Mount, m: &MountInfo) -> bool {
    d.dev == m.dev
}

/// `path` relative to `root` if it is `root` or below it.
fn under(path: &str, root: &str) -> Option<String> {
    if root == "/" {
        return Some(path.trim_start_matches('/').to_string());
    }
    let rest = path.strip_prefix(root)?;
    match rest {
        "" => Some(String::new()),
        r if r.starts_with('/') => Some(r.trim_start_matches('/').to_string()),
        _ => None,
    }
}

/// Where the dumper sees `m`'s directory: a mount of its own on the same device whose
/// root holds `m`'s root, one in the peer group `m` is a slave of if there is one
/// (its external master is taken from there at restore).
fn host_dir(m: &MountInfo, mine: &[MountInfo]) -> Option<String> {
    host_mount(m, mine).map(|(_, path)| path)
}

/// [`host_dir`] when the dumper's mount is in the peer group `m` is a slave of: `m` is
/// bound from it (rather than from a mount of the image on the same superblock), so that
/// its master is taken again from there.
fn master_dir(m: &MountInfo, mine: &[MountInfo]) -> Option<String> {
    let in_group = |h: &MountInfo| h.shared == m.master || h.master == m.master;
    host_mount(m, mine)
        .filter(|(h, _)| m.master.is_some() && in_group(h))
        .map(|(_, path)| path)
}

fn host_mount<'a>(m: &MountInfo, mine: &'a [MountInfo]) -> Option<(&'a MountInfo, String)> {
    let candidates = (mine.iter())
        .filter(|h| h.dev == m.dev && h.fstype == m.fstype)
        .filter_map(|h| under(&m.root, &h.root).map(|rel| (h, rel)));
    let mut first = None;
    for (h, rel) in candidates {
        if m.master.is_some() && (h.shared == m.master || h.master == m.master) {
            first = Some((h, rel));
            break;
        }
        first.get_or_insert((h, rel));
    }
    let h = first?;
    let base = h.0.mountpoint.trim_end_matches('/');
    let path = match h.1.as_str() {
        "" if base.is_empty() => "/".to_string(),
        "" => base.to_string(),
        rel => format!("{base}/{rel}"),
    };
    Some((h.0, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::mountinfo::parse;

    const MINE: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
        22 27 0:21 / /proc rw,relatime - proc proc rw\n";
    const THEIRS: &str = "100 99 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
        101 100 0:21 / /proc rw,relatime - proc proc rw\n\
        102 100 0:50 / /t rw - tmpfs none rw,size=64k\n\
        103 100 0:50 /d /b ro - tmpfs none rw,size=64k\n\
        104 100 254:0 /work /w rw - ext4 /dev/vda rw\n\
        105 101 0:60 / /proc/x rw - proc proc rw\n";

    #[test]
    fn classifies_host_new_tmpfs_and_binds() {
        let (mine, theirs) = (parse(MINE).unwrap(), parse(THEIRS).unwrap());
        let out = classify(&theirs, &mine, &Externals::default()).unwrap();
        let hows: Vec<_> = out.iter().map(|m| m.how.clone()).collect();
        assert_eq!(hows[0], How::Host);
        assert_eq!(hows[1], How::Host);
        assert_eq!(hows[2], How::Tmpfs);
        assert_eq!(
            hows[3],
            How::Bind {
                of: 102,
                rel: "d".into()
            }
        );
        // A directory of the host's root, which the tree also has: a bind of it.
        assert_eq!(
            hows[4],
            How::Bind {
                of: 100,
                rel: "work".into()
            }
        );
        assert_eq!(out[5].id, 105);
        assert_eq!(hows[5], How::New);
    }

    #[test]
    fn a_node_bound_before_its_devpts_is_a_bind_of_it() {
        // runc binds /dev/console (pts 0) before it mounts that devpts at /dev/pts.
        let theirs = parse(
            "100 99 254:0 / / rw - ext4 /dev/vda rw\n\
             101 100 0:73 / /dev rw - tmpfs tmpfs rw\n\
             90 101 0:75 /0 /dev/console rw - devpts devpts rw,ptmxmode=666\n\
             102 101 0:75 / /dev/pts rw - devpts devpts rw,ptmxmode=666\n",
        )
        .unwrap();
        let out = classify(&theirs, &parse(MINE).unwrap(), &Externals::default()).unwrap();
        let ids: Vec<u32> = out.iter().map(|m| m.id).collect();
        assert_eq!(ids, [100, 101, 90, 102], "parents first, as listed");
        assert_eq!(out[3].how, How::New);
        let bind = How::Bind {
            of: 102,
            rel: "0".into(),
        };
        assert_eq!(out[2].how, bind);
        let made: Vec<u32> = (crate::image::mnt::shallow_first(&out, |m| &m.root).iter())
            .map(|m| m.id)
            .collect();
        assert_eq!(
            made,
            [100, 101, 102, 90],
            "the devpts is made before its node's bind"
        );
    }

    #[test]
    fn a_bind_of_a_deleted_directory_is_made_from_its_filesystem() {
        let theirs = parse(
            "100 99 254:0 / / rw - ext4 /dev/vda rw\n\
             101 100 0:50 / /t rw - tmpfs none rw\n\
             102 101 0:50 /a/src//deleted /t/dst rw - tmpfs none rw\n\
             103 100 0:60 /x//deleted /y rw - tmpfs other rw\n",
        )
        .unwrap();
        let mine = parse(MINE).unwrap();
        let e = classify(&theirs, &mine, &Externals::default()).unwrap_err();
        assert!(e.to_string().contains("mount 103 at /y"), "{e}");
        let out = classify(&theirs[..3], &mine, &Externals::default()).unwrap();
        let deleted = How::Deleted {
            of: 101,
            rel: "a/src".into(),
            gone: Default::default(),
        };
        assert_eq!(out[2].how, deleted);
    }

    #[test]
    fn refuses_fuse_naming_external() {
        let theirs = parse(
            "100 99 254:0 / / rw - ext4 /dev/vda rw\n101 100 0:70 / /f rw - fuse.sshfs h:/ rw\n",
        )
        .unwrap();
        let e = classify(&theirs, &parse(MINE).unwrap(), &Externals::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/f") && msg.contains("fuse.sshfs") && msg.contains("--external mnt[/f]"),
            "{msg}"
        );
        let ok = classify(
            &theirs,
            &parse(MINE).unwrap(),
            &Externals {
                named: vec![("/f".into(), "k".into())],
                ..Default::default()
            },
        );
        assert_eq!(ok.unwrap()[1].how, How::External { key: "k".into() });
    }
}
