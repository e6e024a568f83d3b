//! Propagation of the tree's mounts: peer groups (`shared:N`) and masters (`master:N`)
//! are saved as numbers of the dump and rebuilt among the tree's own mounts
//! (`restore/mnt/propagation.rs`). A mount sharing events with, or receiving them from,
//! mounts outside the tree's namespace (a group the dumper's mounts are in, or a master
//! no mount of the tree leads) is refused: that link to the outside cannot be rebuilt.

use super::DumpError;
use crate::image::mnt::Mount;
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
        if let Some(g) = m.master.filter(|g| !inside(*g)) {
            return Err(refusal(
                m,
                &format!("is a slave of peer group {g}, outside the tree's namespace"),
            ));
        }
    }
    Ok(())
}

fn refusal(m: &Mount, what: &str) -> DumpError {
    DumpError::unsupported(format!(
        "mount {} at {} (type {}, source {}) {what}, which stasis cannot rebuild; make it \
         private (mount --make-private {}) or declare it with --external mnt[{}]:KEY",
        m.id, m.mountpoint, m.fstype, m.source, m.mountpoint, m.mountpoint
    ))
}
