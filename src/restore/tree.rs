//! The process tree, the restore side of `dump/tree.rs`: every process is created by its
//! parent or, to get its session back, by a process of that session
//! (`image/forks.rs`: a `clone3` with its exact pid injected into the forker's shell),
//! sessions and process groups are rebuilt (a group or session whose leader was gone by
//! a helper process that leads it while the members join, then exits and is reaped),
//! zombies exit again with their status, and the parents are told nothing of it (the
//! SIGCHLD their zombies and helpers raise is taken back).
//!
//! Ordering requirements:
//! - the plan's order (forkers, and so parents, first): a process is forked after its
//!   forker's memory is in place, and before the forker drops its privileges (`set_tid`
//!   needs them);
//! - sessions at creation (a child inherits its forker's session at fork, so `setsid`
//!   must come before the children that share it are forked, and after those forked in
//!   the session it had before: a deferred `setsid`);
//! - a child subreaper is one from its creation, before helpers exit and leave it their
//!   children;
//! - session helpers exit before group helpers (a group helper may be a session
//!   helper's child until then), both before zombies are made;
//! - groups once every process exists (a group's leader must exist before members join);
//! - zombies exit after their group is set, before their parents' signal handlers are
//!   restored (with SIGCHLD ignored, the kernel would reap them at once).

use std::time::{Duration, Instant};

use super::child::Child;
use super::RestoreError;
use crate::abi::KernelSigaction;
use crate::image::forks::{self, Plan};
use crate::image::tree::{ProcEntry, TreeImage};
use crate::image::{Image, ProcessImage};

/// How long a zombie may take to exit before the restore gives up.
const ZOMBIE_WAIT: Duration = Duration::from_secs(5);

/// Who forks each process of `image` (`image/forks.rs`), with the reapers its records
/// name: pid namespace inits and child subreapers.
pub fn plan(image: &Image) -> Result<Plan, RestoreError> {
    let reaper = |pid: i32| {
        image.ns.is_pid_ns_init(pid)
            || image
                .process(pid)
                .is_some_and(|p| p.task.attrs.child_subreaper)
    };
    forks::plan(&image.tree, Some(&reaper)).map_err(|what| RestoreError::Unsupported { what })
}

/// A child subreaper is one at once: helpers and zombie leaders that exit during the
/// restore leave it their children (the attribute is set again with the others).
pub fn early_subreaper(child: &Child, p: Option<&ProcessImage>) -> Result<(), RestoreError> {
    if p.is_some_and(|p| p.task.attrs.child_subreaper) {
        let args = [libc::PR_SET_CHILD_SUBREAPER as u64, 1];
        child
            .remote()
            .call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, &args)?;
    }
    Ok(())
}

/// The records of the memory a process forked by `by` starts with: `by`'s (or those of
/// the address space it shares), or for a helper or zombie, which have no memory records,
/// its own forker's.
pub fn memory_origin<'a>(image: &'a Image, plan: &Plan, by: i32) -> Option<&'a ProcessImage> {
    let mut at = by;
    loop {
        if let Some(p) = image.process(image.tree.mm_owner(at)) {
            return Some(p);
        }
        at = plan.fork(at)?.by;
    }
}

/// `clone3` flags for the kernel objects `entry` shares with its parent.
pub fn share_flags(entry: &ProcEntry) -> u64 {
    let mut flags = 0;
    if entry.shares_files {
        flags |= libc::CLONE_FILES as u64;
    }
    if entry.shares_fs {
        flags |= libc::CLONE_FS as u64;
    }
    if entry.shares_vm {
        flags |= libc::CLONE_VM as u64;
    }
    if entry.shares_sighand {
        flags |= libc::CLONE_SIGHAND as u64;
    }
    flags
}

/// Whether `e` creates a session of its own: it led one, unless it is the root of a
/// `--shell-job`, which joins the restorer's session.
fn leads_session(e: &ProcEntry, root: i32, shell_job: bool) -> bool {
    e.sid == e.pid && !(shell_job && e.pid == root)
}

/// The session: a process that led one creates it again; the others keep the session they
/// inherited from their parent (the root's parent is the restorer).
pub fn restore_session(
    child: &Child,
    entry: &ProcEntry,
    root: i32,
    shell_job: bool,
) -> Result<(), RestoreError> {
    if leads_session(entry, root, shell_job) {
        child.remote().call("setsid", libc::SYS_setsid, &[])?;
    }
    Ok(())
}

/// Every process joins its group: the leaders first, then the members. A group id that
/// is not a pid of the tree is the root's group from outside (`--shell-job`): members join
/// whatever group the root is in now.
pub fn restore_groups(
    tree: &TreeImage,
    procs: &[(i32, Child)],
    shell_job: bool,
) -> Result<(), RestoreError> {
    let root = tree.processes[0].pid;
    let child = |pid: i32| {
        &procs
            .iter()
            .find(|(p, _)| *p == pid)
            .expect("every process of the tree has a shell")
            .1
    };
    let leaders = tree.processes.iter().filter(|e| e.pgid == e.pid);
    // A session leader leads its group already (and may not call setpgid).
    for e in leaders.filter(|e| !leads_session(e, root, shell_job)) {
        child(e.pid)
            .remote()
            .call("setpgid", libc::SYS_setpgid, &[0, 0])?;
    }
    for e in tree.processes.iter().filter(|e| e.pgid != e.pid) {
        let target = if tree.get(e.pgid).is_some() {
            e.pgid
        } else {
            current_pgid(root)?
        };
        if current_pgid(e.pid)? != target {
            let target = super::ns::pid::visible(e.pid, target)?;
            child(e.pid)
                .remote()
                .call("setpgid", libc::SYS_setpgid, &[0, target])?;
        }
    }
    Ok(())
}

pub fn current_pgid(pid: i32) -> Result<i32, RestoreError> {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .map(|p| p.as_raw())
        .map_err(|source| RestoreError::Wait { pid, source })
}

/// Lets the shell of a zombie exit the way the process did: `exit_group(code)`, or death
/// by its signal (default action, no core file), once detached, so that its parent is
/// notified as for any child and can reap it. Returns once it is a zombie.
///
/// A status that says a core was dumped is refused at dump (`dump/tree.rs`).
pub fn make_zombie(child: Child, entry: &ProcEntry, status: i32) -> Result<(), RestoreError> {
    let pid = child.pid();
    let mut name = entry.comm.as_bytes().to_vec();
    name.truncate(15);
    name.push(0);
    let name = child.put(64, &name)?;
    child.remote().call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, name],
    )?;
    let sig = status & 0x7f;
    let (nr, args) = if sig != 0 {
        let remote = child.remote();
        if sig != libc::SIGKILL {
            // SIGKILL's action cannot be changed (EINVAL), and is always to die.
            let dfl = child.put_pod(0, &KernelSigaction::default())?;
            remote.call(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                &[sig as u64, dfl, 0, 8],
            )?;
        }
        remote.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            &[libc::PR_SET_DUMPABLE as u64, 0],
        )?;
        child.task.set_sigmask(!(1u64 << (sig - 1)))?;
        (
            libc::SYS_kill,
            [super::ns::pid::visible(pid, pid)?, sig as u64],
        )
    } else {
        (libc::SYS_exit_group, [((status >> 8) & 0xff) as u64, 0])
    };
    let mut regs = child.base;
    regs.rip = child.helper;
    regs.rax = nr as u64;
    regs.orig_rax = u64::MAX;
    (regs.rdi, regs.rsi) = (args[0], args[1]);
    child.task.set_regs(&regs)?;
    child.task.release()?;
    wait_zombie(pid)
}

fn wait_zombie(pid: i32) -> Result<(), RestoreError> {
    let since = Instant::now();
    while since.elapsed() < ZOMBIE_WAIT {
        match crate::proc::stat(pid) {
            Ok(s) if s.state == 'Z' => return Ok(()),
            Ok(_) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => {
                return Err(RestoreError::Unsupported {
                    what: format!("zombie {pid} vanished while exiting: {e}"),
                })
            }
        }
    }
    Err(RestoreError::Unsupported {
        what: format!("pid {pid} did not exit within {ZOMBIE_WAIT:?} to become a zombie"),
    })
}

/// The group helper `pid`, a zombie now, reaped by its parent (`wait4` injected into
/// it): the parent never had such a child.
pub fn reap_helper(parent: &Child, pid: i32) -> Result<(), RestoreError> {
    let seen = super::ns::pid::visible(parent.pid(), pid)?;
    let r = parent
        .remote()
        .raw(libc::SYS_wait4, &[seen, 0, libc::__WALL as u64, 0])?;
    if r != seen as i64 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "wait4({pid}) in pid {} for the group helper returned {r}",
                parent.pid()
            ),
        });
    }
    Ok(())
}

/// Takes back the signals that the zombie children of `parent` raised by exiting now:
/// the parent had them at dump time already (they are requeued with its other pending
/// signals) or had handled them.
pub fn forget_exit_signals(parent: &Child, signals: u64) -> Result<(), RestoreError> {
    let set = parent.put(0, &signals.to_ne_bytes())?;
    let zero = parent.put(16, &[0u8; 16])?;
    loop {
        let r = parent
            .remote()
            .raw(libc::SYS_rt_sigtimedwait, &[set, 0, zero, 8])?;
        if r == -(libc::EAGAIN as i64) {
            return Ok(());
        }
        if r < 0 {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "rt_sigtimedwait in pid {}: {}",
                    parent.pid(),
                    nix::errno::Errno::from_raw(-r as i32)
                ),
            });
        }
    }
}
