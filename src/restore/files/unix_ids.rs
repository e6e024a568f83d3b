//! The effective ids unix sockets are connected with. `socketpair`, `listen` and
//! `connect` record the calling task's pid and effective uid and gid as the sockets'
//! peer credentials (`SO_PEERCRED`), and the Files stage runs before the process gets
//! its own credentials (`restore/creds.rs`): those calls are made with the process's
//! saved effective ids for the time of the call (`setresgid`/`setresuid` of the effective
//! id only; the real and saved ids stay the restorer's, so it takes its own back), when
//! they differ from the restorer's.
//!
//! A socket whose image saved its `SO_PEERCRED` ([`of_socket`]: a listener, a pair made
//! by `socketpair`) is made with the ids saved there, stasis's view of them, which are
//! what the kernel records whatever namespace the tree's user namespace is: they need not
//! be the process's current ones (a socket made before its process changed its euid, or
//! by a thread with other ids than its leader's), and a tree with a user namespace of its
//! own is no exception (the child is still in stasis's during the Files stage). Without
//! a saved value (an older image) the process's ids are used, and not in a tree with a
//! user namespace of its own. Never when stasis does not run as root (it could not
//! switch) nor for a task born inside the tree's user namespace (its ids are that
//! namespace's): then the sockets keep the restorer's ids, and `unix_peercred.rs` refuses
//! the restore if they differ from the saved ones.

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

/// The effective uid and gid socket `u` is made with (`socketpair`, `listen`): its
/// saved credentials' when saved and set (`task`, the process's, otherwise), when they
/// must differ from the restorer's.
pub fn of_socket(
    task: Option<(u32, u32)>,
    u: &crate::image::sock::UnixSocket,
) -> Option<(u32, u32)> {
    let Some((pid, uid, gid)) = u.opts.peer_cred() else {
        return task;
    };
    let mine = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let can = mine.0 == 0 && !crate::restore::ns::user::born_inside();
    (can && pid != 0 && (uid, gid) != mine).then_some((uid, gid))
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
