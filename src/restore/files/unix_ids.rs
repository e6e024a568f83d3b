//! The effective ids unix sockets are connected with. `socketpair`, `listen` and
//! `connect` record the calling task's pid and effective uid and gid as the sockets'
//! peer credentials (`SO_PEERCRED`), and the Files stage runs before the process gets
//! its own credentials (`restore/creds.rs`): those calls are made with the process's
//! saved effective ids for the time of the call (`setresgid`/`setresuid` of the effective
//! id only; the real and saved ids stay the restorer's, so it takes its own back), when
//! they differ from the restorer's. Not in a tree with a user namespace of its own (its
//! ids are joined later; the sockets keep the restorer's ids there) nor when stasis does
//! not run as root (it could not switch).

use crate::image::task::TaskImage;
use crate::restore::child::Child;
use crate::restore::RestoreError;

/// "Leave this id as it is" for `setresuid`/`setresgid`.
const KEEP: u64 = 0xffff_ffff;

/// The effective uid and gid the sockets of `task` are made with, when they must differ
/// from the restorer's.
pub fn of(task: &TaskImage) -> Option<(u32, u32)> {
    let (uid, gid) = (task.creds.uid[1], task.creds.gid[1]);
    let mine = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let switch = mine.0 == 0 && (uid, gid) != mine && !crate::restore::ns::user::active();
    switch.then_some((uid, gid))
}

/// Runs `call` (injected calls into `child`) with `ids` as the child's effective ids.
pub fn around<T>(
    child: &Child,
    ids: Option<(u32, u32)>,
    call: impl FnOnce() -> Result<T, RestoreError>,
) -> Result<T, RestoreError> {
    let Some((uid, gid)) = ids else {
        return call();
    };
    let mine = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    set(child, uid, gid)?;
    let done = call();
    // Back to the restorer's (the uid first: the gid needs the privilege it gives back).
    let remote = child.remote();
    remote.call(
        "setresuid",
        libc::SYS_setresuid,
        &[KEEP, u64::from(mine.0), KEEP],
    )?;
    remote.call(
        "setresgid",
        libc::SYS_setresgid,
        &[KEEP, u64::from(mine.1), KEEP],
    )?;
    done
}

fn set(child: &Child, uid: u32, gid: u32) -> Result<(), RestoreError> {
    let remote = child.remote();
    remote.call(
        "setresgid",
        libc::SYS_setresgid,
        &[KEEP, u64::from(gid), KEEP],
    )?;
    remote.call(
        "setresuid",
        libc::SYS_setresuid,
        &[KEEP, u64::from(uid), KEEP],
    )?;
    Ok(())
}
