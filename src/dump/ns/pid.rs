//! Pid namespaces: the ids of every task of the tree in the pid namespaces below the
//! dumper's (`NSpid` of `/proc/PID/status`), and the checks that the restore can build
//! them again: each namespace is entered by the tree at its init, as a child of a process
//! of the tree (or as the root), never with `setns` into a namespace the tree does not own.
//! The restore side is `restore/ns/pid.rs`.

use std::collections::HashMap;

use super::{inode, DumpError};
use crate::image::ns::NsPid;
use crate::image::tree::{ProcEntry, ProcState, TreeImage};
use crate::proc;

/// What the pid namespaces of a tree contribute to `namespaces.img`.
#[derive(Default)]
pub struct PidNs {
    pub pids: Vec<NsPid>,
    pub pid_for_children: Vec<(i32, i32)>,
}

/// How many pid namespaces deep stasis sees itself through `/proc` (1: in the namespace
/// of the proc mount); read once (a process never changes its own pid namespace).
fn own_level() -> Result<usize, DumpError> {
    static LEVEL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&level) = LEVEL.get() {
        return Ok(level);
    }
    let level = proc::status(std::process::id() as i32)?.ns_pid.len().max(1);
    Ok(*LEVEL.get_or_init(|| level))
}

/// Whether `pid` is in stasis's own pid namespace (then it has no ids below stasis's:
/// its `NSpid` need not be read). Stasis's inode is stat'ed once.
fn in_own(pid: i32) -> bool {
    static OWN: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let own = *OWN.get_or_init(|| inode("self", "pid"));
    own.is_some() && inode(&pid.to_string(), "pid") == own
}

/// Whether `pid` is the init of a pid namespace below the dumper's.
pub fn is_ns_init(pid: i32) -> Result<bool, DumpError> {
    if in_own(pid) {
        return Ok(false);
    }
    let own = own_level()?;
    let ids = proc::status(pid)?.ns_pid;
    Ok(ids.len() > own && ids.last() == Some(&1))
}

/// The ids below the dumper's namespace of every task of `tree`; `threads` lists the
/// threads (leader first) of each live process.
///
/// Ordering requirements: the tree is frozen (no task exits or is created).
pub fn collect(tree: &TreeImage, threads: &HashMap<i32, Vec<i32>>) -> Result<PidNs, DumpError> {
    let own = own_level()?;
    let ns = PidNsOf::default();
    let mut out = PidNs::default();
    let mut inner: HashMap<i32, Vec<i32>> = HashMap::new();
    let root = tree.processes[0].pid;
    for e in &tree.processes {
        let parent = inner.get(&e.ppid).map_or(&[][..], |v| &v[..]);
        if e.state == ProcState::SessionForker {
            continue;
        }
        if tree.is_helper(e.pid) {
            if !parent.is_empty() {
                let ids = helper_ids(tree, e, own)?;
                push(&mut out, e.pid, ids.clone());
                inner.insert(e.pid, ids);
            }
            continue;
        }
        let ids = match in_own(e.pid) {
            true => Vec::new(),
            false => below(&proc::status(e.pid)?.ns_pid, own),
        };
        check_place(e, &ids, parent, e.pid == root, &ns)?;
        // Threads share their process's pid namespace (`CLONE_THREAD` refuses
        // `CLONE_NEWPID`): in the dumper's, they have no inner ids to read either.
        let others = if ids.is_empty() {
            &[][..]
        } else {
            threads_of(threads, e.pid)
        };
        for &tid in others {
            let t = below(&proc::thread_status(e.pid, tid)?.ns_pid, own);
            push(&mut out, tid, t);
        }
        push(&mut out, e.pid, ids.clone());
        inner.insert(e.pid, ids);
    }
    for e in tree.alive() {
        if let Some(child) = unshared_into(e, tree, &ns)? {
            out.pid_for_children.push((e.pid, child));
        }
    }
    forker_ids(tree, &inner, &mut out)?;
    Ok(out)
}

/// The ids of each session forker below the dumper's namespace: in its leader's pid
/// namespace, at each level the next id after every id the tree's tasks have there.
fn forker_ids(
    tree: &TreeImage,
    inner: &HashMap<i32, Vec<i32>>,
    out: &mut PidNs,
) -> Result<(), DumpError> {
    let forkers = (tree.processes.iter()).filter(|e| e.state == ProcState::SessionForker);
    for e in forkers.collect::<Vec<_>>() {
        let leader = inner.get(&e.sid).map_or(0, Vec::len);
        if leader == 0 {
            continue;
        }
        if out.pid_for_children.iter().any(|(p, _)| *p == e.sid) {
            return Err(DumpError::unsupported(format!(
                "session {} has members its leader must fork in its own pid namespace, \
                 but the leader made another one for its children",
                e.sid
            )));
        }
        let ids: Vec<i32> = (0..leader)
            .map(|k| {
                let at = |v: &Vec<i32>| v.get(k).copied().unwrap_or(0);
                (out.pids.iter()).map(|p| at(&p.inner)).max().unwrap_or(0) + 1
            })
            .collect();
        push(out, e.pid, ids);
    }
    Ok(())
}

/// The ids below the dumper's namespace of helper `e` (no process: a group or session
/// whose leader is gone), as a member of it sees them (`NSpgid`, `NSsid`).
fn helper_ids(tree: &TreeImage, e: &ProcEntry, own: usize) -> Result<Vec<i32>, DumpError> {
    let session = e.state == ProcState::SessionHelper;
    let member = (tree.processes.iter())
        .filter(|m| !tree.is_helper(m.pid))
        .find(|m| {
            if session {
                m.sid == e.pid
            } else {
                m.pgid == e.pid
            }
        });
    let Some(member) = member else {
        return Err(DumpError::unsupported(format!(
            "no process of the tree is in the group or session {} its helper stands for",
            e.pid
        )));
    };
    let status = proc::status(member.pid)?;
    let ids = if session {
        status.ns_sid
    } else {
        status.ns_pgid
    };
    let ids = below(&ids, own);
    if ids.is_empty() || ids.contains(&0) {
        return Err(DumpError::unsupported(format!(
            "pid {} is in group or session {}, which has no id in its pid namespace",
            member.pid, e.pid
        )));
    }
    Ok(ids)
}

/// The threads of `pid` but its leader.
fn threads_of(threads: &HashMap<i32, Vec<i32>>, pid: i32) -> &[i32] {
    threads.get(&pid).map_or(&[][..], |t| &t[1..])
}

/// The ids of an `NSpid` list below the dumper's level.
fn below(ids: &[i32], own: usize) -> Vec<i32> {
    ids.get(own..).map_or_else(Vec::new, <[i32]>::to_vec)
}

fn push(out: &mut PidNs, id: i32, inner: Vec<i32>) {
    if !inner.is_empty() {
        out.pids.push(NsPid { id, inner });
    }
}

/// The pid namespace inode of each process, stat'ed once per dump (a process's is
/// compared with its parent's, its children's and its `pid_for_children`).
#[derive(Default)]
struct PidNsOf(std::cell::RefCell<HashMap<i32, Option<u64>>>);

impl PidNsOf {
    fn get(&self, pid: i32) -> Option<u64> {
        *(self.0.borrow_mut().entry(pid)).or_insert_with(|| inode(&pid.to_string(), "pid"))
    }
}

/// A process lives in its parent's pid namespace, or is the init of one made for it.
fn check_place(
    e: &ProcEntry,
    ids: &[i32],
    parent: &[i32],
    root: bool,
    ns: &PidNsOf,
) -> Result<(), DumpError> {
    let pid = e.pid;
    if root {
        return match ids {
            [] | [1] => Ok(()),
            [n] => Err(DumpError::unsupported(format!(
                "pid {pid} is pid {n} of a pid namespace whose init is not part of the tree; \
                 dump that namespace's init (its pid 1)"
            ))),
            _ => Err(DumpError::unsupported(format!(
                "pid {pid} lives {} pid namespaces below stasis's; dump it from inside the \
                 outer ones, or dump their init",
                ids.len()
            ))),
        };
    }
    let alive = matches!(e.state, ProcState::Alive { .. });
    if ids.len() == parent.len() && (!alive || ns.get(pid) == ns.get(e.ppid)) {
        return Ok(());
    }
    if ids.len() == parent.len() + 1 && ids.last() == Some(&1) {
        return Ok(());
    }
    Err(DumpError::unsupported(format!(
        "pid {pid} is in a pid namespace that its parent {} entered with setns or that it \
         does not lead (NSpid below stasis {ids:?}); stasis rebuilds only namespaces whose \
         init is in the tree",
        e.ppid
    )))
}

/// The child of `e` that is the init of the namespace `e` unshared for its children, if
/// its `pid_for_children` is not its own; refused if no child is in it.
fn unshared_into(e: &ProcEntry, tree: &TreeImage, ns: &PidNsOf) -> Result<Option<i32>, DumpError> {
    let (own, for_children) = (ns.get(e.pid), inode(&e.pid.to_string(), "pid_for_children"));
    if own == for_children || for_children.is_none() {
        return Ok(None);
    }
    let child = (tree.processes.iter())
        .filter(|c| c.ppid == e.pid && matches!(c.state, ProcState::Alive { .. }))
        .find(|c| ns.get(c.pid) == for_children);
    match child {
        Some(c) => Ok(Some(c.pid)),
        None => Err(DumpError::unsupported(format!(
            "pid {} unshared a pid namespace (pid_for_children) that none of its children \
             is in; stasis cannot rebuild an empty pid namespace",
            e.pid
        ))),
    }
}
