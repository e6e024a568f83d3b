//! Nested pid namespaces: every task is created with its ids in each namespace below the
//! restorer's (`clone3`'s `set_tid`, innermost first, the restorer's id last), each
//! namespace by the `clone3` of its init (`CLONE_NEWPID`), and a pid given to a task's
//! own syscalls is translated into the namespace of that task. The dump side is
//! `dump/ns/pid.rs`.
//!
//! The ids are process-wide state of the restore ([`install`]): every `clone3` of the
//! restore, the root's, the processes' and the threads', looks them up.

use std::sync::RwLock;

use super::super::child::Child;
use super::super::RestoreError;
use crate::image::ns::NsImage;

/// The namespaces record of the image being restored.
static IDS: RwLock<Option<NsImage>> = RwLock::new(None);

/// Makes the ids of `ns` those of the restore about to run.
pub fn install(ns: &NsImage) {
    if let Ok(mut g) = IDS.write() {
        *g = Some(ns.clone());
    }
}

fn with<T>(f: impl FnOnce(&NsImage) -> T, none: T) -> T {
    let g = IDS.read().ok();
    match g.as_ref().and_then(|g| g.as_ref()) {
        Some(ns) => f(ns),
        None => none,
    }
}

/// `set_tid` for the task `id`: its id in the innermost namespace first, `id` last.
pub fn set_tid(id: i32) -> Vec<i32> {
    with(|ns| ns.set_tid(id), vec![id])
}

/// `CLONE_NEWPID` if process `id` is the init of a namespace below the restorer's.
pub fn clone_flags(id: i32) -> u64 {
    if with(|ns| ns.is_pid_ns_init(id), false) {
        libc::CLONE_NEWPID as u64
    } else {
        0
    }
}

/// The id of task `id` as task `from` sees it (0: invisible from there).
pub fn view(from: i32, id: i32) -> i32 {
    with(|ns| ns.view(from, id), id)
}

/// The path `/proc/ID/REST` of task `id` for task `from` to open (injected), through the
/// `/proc` that `from` sees: the restorer's own (ids as every record has them), or that
/// of a mount namespace of the tree's, whose proc belongs to `from`'s pid namespace (ids
/// as `from` sees them). The restorer tells them apart by `from`'s `/proc/self`, which
/// names the restorer only in a proc of the restorer's pid namespace.
pub fn proc_path(from: i32, id: i32, rest: &str) -> String {
    let own = std::fs::read_link(format!("/proc/{from}/root/proc/self"))
        .is_ok_and(|me| me.to_str() == Some(&std::process::id().to_string()));
    let seen = if own { id } else { view(from, id) };
    format!("/proc/{seen}/{rest}")
}

/// [`view`] for an id that must be visible from `from`.
pub fn visible(from: i32, id: i32) -> Result<u64, RestoreError> {
    match view(from, id) {
        0 => Err(RestoreError::Unsupported {
            what: format!("pid {id} is outside the pid namespace of pid {from}, which uses it"),
        }),
        v => Ok(v as u64),
    }
}

/// Puts `parent` back into the pid namespace it had unshared for its children (that of
/// its child `child`, just made): `setns` of a pidfd of the child, injected.
pub fn enter_for_children(parent: &Child, child: i32) -> Result<(), RestoreError> {
    let remote = parent.remote();
    let target = visible(parent.pid(), child)?;
    let pidfd = remote.call("pidfd_open", libc::SYS_pidfd_open, &[target, 0])?;
    let r = remote.call(
        "setns(CLONE_NEWPID)",
        libc::SYS_setns,
        &[pidfd, libc::CLONE_NEWPID as u64],
    );
    remote.call("close", libc::SYS_close, &[pidfd])?;
    r?;
    Ok(())
}
