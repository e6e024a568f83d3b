//! The tree's own user namespace, the restore side of `dump/ns/user.rs`.
//!
//! Tasks inside a user namespace cannot choose their pids in the namespaces outside it
//! (`set_tid` needs `CAP_CHECKPOINT_RESTORE` over every level), so the tree is built
//! with stasis's credentials and each process enters its user namespace once its
//! children exist:
//! 1. a holder process is cloned into a new user namespace with the network, UTS, IPC
//!    and mount namespaces the image asks for, all owned by it ([`before_root`]), and
//!    its maps are written;
//! 2. stasis's restoring thread enters them (`setns`) and clones the root there
//!    ([`Made::leave`] after); the root joins the holder's mount namespace instead of
//!    unsharing one ([`enter_mnt`]);
//! 3. every process, at the start of its last stages (single-threaded, its children
//!    made), joins the user namespace ([`enter`]): the fd is handed over and `setns`'d.
//!    The ids it is given later (credentials, file owners' uids) are translated into the
//!    namespace ([`uid`], [`gid`]); its sockets get their saved owners back.
//!    Its threads are made after, with host tids steered (`ns/pid.rs`'s `Steer`).
//!
//! The holder is killed when the restore ends ([`Made`]'s drop).
//!
//! A tree whose root is the init of a pid namespace owned by its user namespace (a
//! rootless container's) is built another way, since that namespace must be made by a
//! task of the user namespace: the root is cloned with `CLONE_NEWUSER | CLONE_NEWPID`
//! and the other namespaces (the pid namespace and those made with it are then owned
//! by the new user namespace), `set_tid` `[1, host pid]` (stasis is privileged over
//! both); its maps are written at once ([`Made::root_made`]) and it holds the
//! namespaces itself. Every other task is born inside the user namespace, cloned by its
//! parent (or leader) with its pid in the tree's pid namespace only (`set_tid` of one
//! level, which needs privileges over the user namespace alone) and its host pid
//! steered through stasis's `ns_last_pid` (`ns/pid.rs`'s [`steer`](super::pid::steer)).

use std::fs::File;
use std::sync::Mutex;

use nix::sched::CloneFlags;

use super::super::child::Child;
use super::super::RestoreError;
use crate::image::userns::UserNsImage;
use crate::image::Image;

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("user namespace of the tree: {what}"),
    }
}

/// The maps of the restore in progress (`None`: the tree is in stasis's user namespace).
static MAPS: Mutex<Option<UserNsImage>> = Mutex::new(None);

/// Remembers the image's maps for the translations of this restore (and that its host
/// pids are not steered, until [`before_root`] says).
pub fn set_maps(image: &Image) {
    super::pid::steer_host(super::pid::Steer::Off);
    *MAPS.lock().unwrap_or_else(|e| e.into_inner()) = image.userns.clone();
}

/// An id to give a task of the tree (`host`: as the image has it, stasis's view;
/// `current`: what the task has now, stasis's own): the id inside the tree's user
/// namespace, `u32::MAX` (keep) for an id the map lacks that the task has already,
/// `None` for one it lacks and cannot be given.
fn translate(
    host: u32,
    current: u32,
    pick: fn(&UserNsImage) -> &crate::image::userns::IdMap,
) -> Option<u32> {
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(maps) = maps.as_ref() else {
        return Some(host);
    };
    match pick(maps).inside(host) {
        Some(inside) => Some(inside),
        None if host == current => Some(u32::MAX),
        None => None,
    }
}

/// [`translate`] for a uid.
pub fn uid(host: u32, current: u32) -> Option<u32> {
    translate(host, current, |m| &m.uid_map)
}

/// [`translate`] for a gid.
pub fn gid(host: u32, current: u32) -> Option<u32> {
    translate(host, current, |m| &m.gid_map)
}

/// Whether the restore in progress puts the tree in a user namespace of its own.
pub fn active() -> bool {
    MAPS.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The ids (stasis's view) of the tree's user namespace's root, its uid and gid 0, if
/// the tree has a user namespace that maps them.
pub fn ns_root() -> Option<(u32, u32)> {
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    let outside =
        |m: &crate::image::userns::IdMap| m.0.iter().find(|e| e.inside == 0).map(|e| e.outside);
    let maps = maps.as_ref()?;
    Some((outside(&maps.uid_map)?, outside(&maps.gid_map)?))
}

/// Whether the tasks of the restore in progress are born inside the tree's user
/// namespace (its root is the init of a pid namespace the user namespace owns), with no
/// privilege outside it.
pub fn born_inside() -> bool {
    super::pid::steering() == super::pid::Steer::All
}

/// Whether the tree's user namespace lets its tasks call `setgroups`.
pub fn setgroups_allowed() -> bool {
    let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
    maps.as_ref().map_or(true, |m| m.setgroups)
}

/// The holder of the tree's new namespaces and the restoring thread's own ones, to go
/// back to once the root exists.
pub struct Made {
    holder: i32,
    /// The tree's user namespace (`None` until the root that makes it exists).
    userns: Option<File>,
    own: Vec<(File, CloneFlags)>,
    /// The root made the namespaces itself (a pid namespace's init): it is the holder,
    /// not killed, and its tasks are born inside the user namespace.
    by_root: bool,
}

impl Drop for Made {
    fn drop(&mut self) {
        self.leave();
        if self.by_root {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.holder);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

impl Made {
    /// Puts the restoring thread back into its own namespaces (after the root's clone).
    pub fn leave(&mut self) {
        for (ns, kind) in self.own.drain(..).rev() {
            let _ = nix::sched::setns(&ns, kind);
        }
    }

    /// The holder's pid (its `/proc/PID/ns/*` are the tree's new namespaces).
    pub fn holder(&self) -> i32 {
        self.holder
    }

    /// The flags of the root's `clone3` (`flags`: those it would have had without a
    /// user namespace): none of those the restoring thread entered, or, when the root
    /// makes the namespaces itself, the user namespace and all it owns.
    pub fn root_flags(&self, image: &Image, flags: u64) -> u64 {
        match self.by_root {
            true => flags | plan(image, flags).0,
            false => root_flags(flags),
        }
    }

    /// The root `root` exists: if it made the tree's user namespace, its maps are
    /// written and it becomes the holder.
    ///
    /// Ordering requirements: right after the root's clone, before any task of the
    /// tree runs code of its own.
    pub fn root_made(&mut self, image: &Image, root: i32) -> Result<(), RestoreError> {
        let (true, Some(maps)) = (self.by_root, &image.userns) else {
            return Ok(());
        };
        self.holder = root;
        let userns = File::open(format!("/proc/{root}/ns/user"));
        self.userns = Some(userns.map_err(|e| fail(format!("open the root's: {e}")))?);
        write_maps(root, maps)
    }

    /// Whether the tree's tasks are born inside its user namespace (the root made it).
    pub fn born_inside(&self) -> bool {
        self.by_root
    }
}

/// The namespaces the holder makes (its `clone3` flags) and those the restoring thread
/// then enters, as `/proc/PID/ns` names with their flags.
fn plan(image: &Image, root_flags: u64) -> (u64, Vec<(&'static str, CloneFlags)>) {
    let mut clone = libc::CLONE_NEWUSER as u64;
    let mut enter = Vec::new();
    let kinds = [
        (libc::CLONE_NEWNET, "net", CloneFlags::CLONE_NEWNET),
        (libc::CLONE_NEWUTS, "uts", CloneFlags::CLONE_NEWUTS),
        (libc::CLONE_NEWIPC, "ipc", CloneFlags::CLONE_NEWIPC),
    ];
    for (flag, name, kind) in kinds {
        if root_flags & flag as u64 != 0 {
            clone |= flag as u64;
            enter.push((name, kind));
        }
    }
    if image.mounts.is_some() {
        clone |= libc::CLONE_NEWNS as u64;
    }
    (clone, enter)
}

/// The flags of the root's own `clone3` once the restoring thread is in the holder's
/// namespaces: none of those it entered.
fn root_flags(flags: u64) -> u64 {
    let made = libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    flags & !(made as u64)
}

/// Makes the tree's user namespace and the namespaces it owns (see the module's steps 1
/// and 2), given `root_flags`, the namespace flags the root's `clone3` would have had;
/// `None` for an image without a user namespace.
///
/// Ordering requirements: right before the root's clone, after any other namespace the
/// restoring thread enters for it (time, cgroup, a joined network namespace).
pub fn before_root(image: &Image, root_flags: u64) -> Result<Option<Made>, RestoreError> {
    let Some(maps) = &image.userns else {
        return Ok(None);
    };
    if root_flags & libc::CLONE_NEWPID as u64 != 0 {
        super::pid::steer_host(super::pid::Steer::All);
        return Ok(Some(Made {
            holder: 0,
            userns: None,
            own: Vec::new(),
            by_root: true,
        }));
    }
    // Threads are made once their process is inside: they cannot choose their host ids.
    super::pid::steer_host(super::pid::Steer::Threads);
    let (clone, enter) = plan(image, root_flags);
    let holder = crate::sys::clone::spawn_holder(clone)
        .map_err(|e| fail(format!("clone3 of its holder: {e}")))?;
    let userns = File::open(format!("/proc/{holder}/ns/user"));
    let mut made = Made {
        holder,
        userns: Some(userns.map_err(|e| fail(format!("open the holder's: {e}")))?),
        own: Vec::new(),
        by_root: false,
    };
    write_maps(holder, maps)?;
    for (name, kind) in enter {
        let own = File::open(format!("/proc/thread-self/ns/{name}"))
            .map_err(|e| fail(format!("open our own {name} namespace: {e}")))?;
        let theirs = File::open(format!("/proc/{holder}/ns/{name}"))
            .map_err(|e| fail(format!("open the holder's {name} namespace: {e}")))?;
        nix::sched::setns(&theirs, kind)
            .map_err(|e| fail(format!("enter the holder's {name} namespace: {e}")))?;
        made.own.push((own, kind));
    }
    Ok(Some(made))
}

/// `setgroups` (before the gid map, as the kernel requires for `deny`), then the maps.
fn write_maps(pid: i32, maps: &UserNsImage) -> Result<(), RestoreError> {
    let write = |name: &str, text: &str| {
        std::fs::write(format!("/proc/{pid}/{name}"), text)
            .map_err(|e| fail(format!("write {name} {:?} of pid {pid}: {e}", text.trim())))
    };
    if !maps.setgroups {
        write("setgroups", "deny")?;
    }
    write("uid_map", &maps.uid_map.to_text())?;
    write("gid_map", &maps.gid_map.to_text())
}

/// The root leaves stasis's mount namespace for the holder's (owned by the tree's user
/// namespace), through the holder's `/proc` entry, which the root still sees.
pub fn enter_mnt(child: &Child, made: &Made) -> Result<(), RestoreError> {
    let pid = child.pid();
    if made.by_root {
        // The root made its mount namespace with the user namespace.
        return Ok(());
    }
    let remote = child.remote();
    let path = child.put_str(0, &format!("/proc/{}/ns/mnt", made.holder))?;
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let at = libc::AT_FDCWD as u64;
    let fd = remote.call(
        "openat(holder's mount namespace)",
        libc::SYS_openat,
        &[at, path, flags],
    )?;
    let r = remote.raw(libc::SYS_setns, &[fd, libc::CLONE_NEWNS as u64]);
    remote.call("close", libc::SYS_close, &[fd])?;
    match r? {
        0 => Ok(()),
        e => Err(fail(format!(
            "setns into the holder's mount namespace in pid {pid}: {}",
            nix::errno::Errno::from_raw(-e as i32).desc()
        ))),
    }
}

/// The process of `child` joins the tree's user namespace.
///
/// Ordering requirements: once its children exist (they would need privileges over the
/// outer pid namespaces to get their pids) and before its threads do (`setns` refuses a
/// process with other threads or a shared fs context).
pub fn enter(child: &Child, made: &Made) -> Result<(), RestoreError> {
    let pid = child.pid();
    let Some(userns) = made.userns.as_ref().filter(|_| !made.by_root) else {
        // Born inside it.
        return give_sockets_back(pid);
    };
    let fd = super::handover::give_own(child, userns, "the tree's user namespace")?;
    let remote = child.remote();
    let r = remote.raw(libc::SYS_setns, &[fd, libc::CLONE_NEWUSER as u64]);
    remote.call("close", libc::SYS_close, &[fd])?;
    match r? {
        0 => give_sockets_back(pid),
        e => Err(fail(format!(
            "setns into it in pid {pid}: {} (a process sharing its address space or fs \
             context cannot enter a user namespace)",
            nix::errno::Errno::from_raw(-e as i32).desc()
        ))),
    }
}

/// Gives each socket fd of `pid` its saved owner (the restorer made it with its own
/// ids): `chown` of `/proc/PID/fd/FD`, which reaches the socket's inode (`sockfs`
/// sets the socket's uid with it).
///
/// Ordering requirements: once the process's fd table is complete.
fn give_sockets_back(pid: i32) -> Result<(), RestoreError> {
    let owners: Vec<_> = {
        let maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = maps.as_ref().map_or(&[][..], |m| &m.sockets[..]);
        sockets.iter().filter(|s| s.pid == pid).copied().collect()
    };
    for s in owners {
        let path = format!("/proc/{pid}/fd/{}", s.fd);
        std::os::unix::fs::chown(&path, Some(s.uid), Some(s.gid)).map_err(|e| {
            fail(format!(
                "give the socket at fd {} of pid {pid} its owner {}:{}: {e}",
                s.fd, s.uid, s.gid
            ))
        })?;
    }
    Ok(())
}
