//! Lifting the dump's network lock (`crate::netlock`, the dump side is in
//! `dump/files/inet.rs`): the mode and the locked processes come from `netlock.img`.
//! The restore checks first that the lock can be lifted (its commands are there), and
//! lifts it once the tree is rebuilt — or once a failed rebuild has been undone: the
//! connections are lost then, and the peers should learn so. A restore refused before
//! any process was created leaves the lock, so that the image can be restored again
//! (`stasis network-unlock -D DIR` lifts it otherwise).

use crate::image::netlock::{locked_connection, NetLockImage};
use crate::image::Image;

use super::RestoreError;

/// The lock of the image in `image.dir`.
pub fn load(image: &Image) -> Result<NetLockImage, RestoreError> {
    let tables = image.processes.iter().map(|p| (p.task.pid, &p.files));
    Ok(NetLockImage::load(&image.dir, tables)?)
}

/// Whether the dump's lock is where the restored tree will be: not when the tree comes back
/// in a network namespace the restore makes (no `join_net`). The lock was then in the
/// dumped namespace, gone with the dumped tree, and the new namespace holds only the
/// restore's own lock (`ns::net::enter_new`), lifted on its own; looking for the dump's
/// there would only run the lock's commands for nothing.
pub fn in_place(image: &Image, join_net: Option<&std::path::Path>) -> bool {
    image.netns.is_none() || join_net.is_some()
}

/// A connection held by the lock needs the lock's commands to be let go again: without
/// them the restore would bring back connections whose packets stay dropped.
pub fn liftable(image: &Image, lock: &NetLockImage) -> Result<(), RestoreError> {
    let Some(pid) = lock.pids.first().copied() else {
        return Ok(());
    };
    let files = image.processes.iter().find(|p| p.task.pid == pid);
    let fd = files
        .and_then(|p| locked_connection(&p.files))
        .unwrap_or(-1);
    crate::netlock::available(lock.mode).map_err(|e| RestoreError::Unsupported {
        what: format!(
            "fd {fd} of pid {pid} is a TCP connection held by the dump's network lock: {e}"
        ),
    })
}

/// Lifts the lock of every process that has one.
pub fn unlock(lock: &NetLockImage) -> Result<(), RestoreError> {
    for &pid in &lock.pids {
        crate::netlock::unlock(lock.mode, pid).map_err(|e| RestoreError::Unsupported {
            what: format!("lift the network lock of pid {pid}: {e}"),
        })?;
    }
    Ok(())
}
