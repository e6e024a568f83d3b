//! Propagation of the tree's mounts: peer groups (`shared:N`) and masters (`master:N`)
//! are saved as numbers of the dump and rebuilt among the tree's own mounts
//! (`restore/mnt/propagation.rs`). A master no mount of the tree leads (an external
//! master) is taken again at restore from the mount's own source outside the tree: the
//! path given with `--external mnt[KEY]:PATH` or `--root` (as CRIU, the user vouches for
//! its propagation), or the dumper's mount it is bound from, which must be in that group
//! (checked here). A mount sharing events with mounts of the dumper's namespace, or
//! slave of a group it has no such source for, is refused: that link cannot be rebuilt.

use super::DumpError;
use crate::image::mnt::{How, Mount};
use crate::proc::mountinfo::MountInfo;

pub fn check(mounts: &[Mount], mine: &[MountInfo]) -> Result<(), DumpError> {
    let outside = |g: u32| mine.iter().any(|h| h.shared == Some(g));
    let inside = |g: u32| mounts.iter().any(|m| m.shared == Some(g));
    for m in mounts {
        if let Some(g) = m.shared.filter(|g| outside(*g)) {
            return Err(refusal(
                m,
                &format!("shares peer group {g} with mounts of stasis's namespace"),
            ));
        }
        let Some(g) = m.master.filter(|g| !inside(*g)) else {
            continue;
        };
        if let Err(why) = external_master(m, g, mine) {
            return Err(refusal(
                m,
                &format!("is a slave of peer group {g}, outside the tree's namespace, {why}"),
            ));
        }
    }
    Ok(())
}

/// Whether mount `m`, slave of group `g` that no mount of the tree is in, can take its
/// master again from its source outside the tree; else why not.
fn external_master(m: &Mount, g: u32, mine: &[MountInfo]) -> Result<(), String> {
    let path = match &m.how {
        How::External { .. } | How::Root { .. } => return Ok(()),
        How::Host => &m.mountpoint,
        How::HostBind { path } => path,
        How::New | How::Tmpfs | How::Bind { .. } | How::Deleted { .. } => {
            return Err("and it is not bound from outside the tree".into())
        }
    };
    match crate::proc::mountinfo::holding(mine, path) {
        Some(h) if h.shared == Some(g) || h.master == Some(g) => Ok(()),
        Some(h) => Err(format!(
            "but stasis's mount {} at {}, which it is bound from, is not in that group",
            h.id, h.mountpoint
        )),
        None => Err(format!("and stasis has no mount holding {path}")),
    }
}

fn refusal(m: &Mount, what: &str) -> DumpError {
    DumpError::unsupported(format!(
        "mount {} at {} (type {}, source {}) {what}, which stasis cannot rebuild; make it \
         private (mount --make-private {}) or declare it with --external mnt[{}]:KEY",
        m.id, m.mountpoint, m.fstype, m.source, m.mountpoint, m.mountpoint
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::mountinfo::parse;

    fn mount(how: How, master: Option<u32>) -> Mount {
        Mount {
            id: 200,
            parent: 100,
            dev: (0, 50),
            mountpoint: "/d".into(),
            root: "/sub".into(),
            fstype: "tmpfs".into(),
            source: "t".into(),
            mnt_opts: "rw".into(),
            super_opts: "rw".into(),
            shared: None,
            master,
            unbindable: false,
            how,
        }
    }

    #[test]
    fn an_external_master_is_taken_from_the_source_in_its_group() {
        let mine = parse(
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
             30 27 0:50 / /tmp/s rw shared:7 - tmpfs t rw\n",
        )
        .unwrap();
        let bound = |path: &str| How::HostBind { path: path.into() };
        assert!(check(&[mount(bound("/tmp/s/sub"), Some(7))], &mine).is_ok());
        let key = How::External { key: "K".into() };
        assert!(check(&[mount(key, Some(9))], &mine).is_ok());
        let e = check(&[mount(bound("/tmp/s/sub"), Some(9))], &mine).unwrap_err();
        assert!(e.to_string().contains("mount 30 at /tmp/s"), "{e}");
        let e = check(&[mount(How::Tmpfs, Some(7))], &mine).unwrap_err();
        assert!(e.to_string().contains("not bound from outside"), "{e}");
    }
}
