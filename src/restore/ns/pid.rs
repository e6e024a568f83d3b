//! Nested pid namespaces: every task is created with its ids in each namespace below the
//! restorer's (`clone3`'s `set_tid`, innermost first, the restorer's id last), each
//! namespace by the `clone3` of its init (`CLONE_NEWPID`), and a pid given to a task's
//! own syscalls is translated into the namespace of that task. The dump side is
//! `dump/ns/pid.rs`.
//!
//! The ids are process-wide state of the restore ([`install`]): every `clone3` of the
//! restore, the root's, the processes' and the threads', looks them up.
//!
//! Tasks of a tree born inside its user namespace (the init of a pid namespace it owns,
//! `ns/user.rs`) may give `set_tid` only their ids in the namespaces that user
//! namespace owns: the kernel takes fewer ids than levels, innermost first, and needs
//! `CAP_CHECKPOINT_RESTORE` only over the owners of the levels given. Their host id is
//! steered instead ([`steer`]): stasis writes its pid namespace's `ns_last_pid` right
//! before each such `clone3` (one task per batch), and checks the task got the id.
//! Another process of the machine forking in between would take it: the restore then
//! fails naming the pid, as for a pid taken before.
//! The threads of any tree in a user namespace of its own are made that way too (after
//! their process joined it), with no `set_tid` at all when they are in the dumper's pid
//! namespace ([`Steer`]).

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

/// `set_tid` for the task `id` made by stasis: its id in the innermost namespace first,
/// `id` last.
pub fn set_tid(id: i32) -> Vec<i32> {
    with(|ns| ns.set_tid(id), vec![id])
}

/// Which tasks made by tasks of the tree get their host ids through `ns_last_pid` (see
/// the module's doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Steer {
    /// None: every `set_tid` has the host id.
    Off = 0,
    /// Threads (made once their process joined the tree's user namespace).
    Threads = 1,
    /// Every task but the root (born inside the tree's user namespace).
    All = 2,
}

static STEERED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets which tasks of the restore about to run get steered host ids.
pub fn steer_host(which: Steer) {
    STEERED.store(which as u8, std::sync::atomic::Ordering::Relaxed);
}

/// Which tasks of the restore in progress get steered host ids.
pub fn steering() -> Steer {
    match STEERED.load(std::sync::atomic::Ordering::Relaxed) {
        2 => Steer::All,
        1 => Steer::Threads,
        _ => Steer::Off,
    }
}

/// Whether the host id of a task (`thread` or process) a task of the tree creates is
/// steered.
pub fn steered(thread: bool) -> bool {
    match steering() {
        Steer::All => true,
        Steer::Threads => thread,
        Steer::Off => false,
    }
}

/// `set_tid` for the task `id` (a `thread` or a process) made by a task of the tree:
/// [`set_tid`], without the host id when it is steered (empty for a task of the
/// dumper's pid namespace).
pub fn set_tid_in_tree(id: i32, thread: bool) -> Vec<i32> {
    let mut ids = set_tid(id);
    if steered(thread) {
        ids.pop();
    }
    ids
}

/// When host ids are steered, makes `id` the next one stasis's pid namespace hands
/// out: `ns_last_pid` = `id - 1`.
///
/// Ordering requirements: right before the `clone3` of task `id` (a `thread` or a
/// process), alone in its batch.
pub fn steer(id: i32, thread: bool) -> Result<(), RestoreError> {
    if !steered(thread) {
        return Ok(());
    }
    let path = "/proc/sys/kernel/ns_last_pid";
    std::fs::write(path, format!("{}", id - 1)).map_err(|e| RestoreError::Unsupported {
        what: format!("write {path} for pid {id} (its host pid, steered): {e}"),
    })
}

/// When host ids are steered, checks that task `id` (thread `tid` of process `pid`
/// for a thread) has its host id and its ids inside: refused naming it otherwise.
pub fn check_steered(pid: i32, tid: i32) -> Result<(), RestoreError> {
    if !steered(pid != tid) {
        return Ok(());
    }
    let want: Vec<i32> = set_tid(tid).into_iter().rev().collect();
    let status = match pid == tid {
        true => crate::proc::status(pid),
        false => crate::proc::thread_status(pid, tid),
    };
    let got = status.map(|s| s.ns_pid).unwrap_or_default();
    if got.ends_with(&want) && got.len() >= want.len() {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "task {tid} (ids {want:?}) did not get its host pid through ns_last_pid: \
             another process of the machine was given it first (host {tid} has ids {got:?}); \
             restore again"
        ),
    })
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
