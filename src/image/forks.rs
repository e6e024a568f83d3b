//! Who forks each process of a tree record at restore, so that every process gets its
//! session back: the facts of sessions that both the dump's check (`dump/tree.rs`, which
//! refuses a tree this cannot plan) and the restore (`restore/tree.rs`, which follows
//! the plan) rely on.
//!
//! A process inherits its session from whoever forks it and can only leave it for one of
//! its own (`setsid`). So a process in the session of neither itself nor its parent was:
//! - forked by its parent before the parent left that session for its own: the parent's
//!   `setsid` waits until such children are forked (a deferred `setsid`, up a chain of
//!   ancestors to one in that session);
//! - or forked by a process of that session and left to its parent, a reaper (a pid
//!   namespace's init or a child subreaper): by the session's leader, a zombie that
//!   exits at the end of the restore (its children go to their reaper); by a live leader
//!   that is a sibling of the process, with `CLONE_PARENT`; or, for a session whose
//!   leader is gone, by a session helper ([`ProcState::SessionHelper`], pid = sid, forked
//!   by the reaper) that leads it and exits once the members are forked; for a live
//!   leader elsewhere in the tree, by a session forker ([`ProcState::SessionForker`], a
//!   pid of its own), which the leader forks with `CLONE_PARENT` (a child of the
//!   leader's parent, in the session) and which exits once the members are forked: they
//!   go to the reaper of the leader's parent.

use std::collections::{HashMap, HashSet};

use super::tree::{ProcEntry, ProcState, TreeImage};

/// How one process is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    /// The process that clones it.
    pub by: i32,
    /// Cloned with `CLONE_PARENT`: its parent is the parent of `by`.
    pub clone_parent: bool,
    /// Cloned before `by` leaves, by its deferred `setsid`, the session it was born in.
    pub early: bool,
}

/// The forks of a whole tree.
#[derive(Debug, Default)]
pub struct Plan {
    /// By pid: every process but the root.
    forks: HashMap<i32, Fork>,
    /// The order of creation: each process after the one that forks it, children of a
    /// forker in the record's order.
    pub order: Vec<i32>,
}

impl Plan {
    pub fn fork(&self, pid: i32) -> Option<Fork> {
        self.forks.get(&pid).copied()
    }

    /// Whether `pid` calls `setsid` only after forking its early children.
    pub fn defers_setsid(&self, pid: i32) -> bool {
        self.forks.values().any(|f| f.by == pid && f.early)
    }

    /// The live process whose memory `pid` starts with at restore (the copy-on-write
    /// source of `dump/cow.rs`): its forker, or for a helper or zombie forker (no memory
    /// of its own at restore) that one's forker; `None` for the root.
    pub fn memory_from(&self, tree: &TreeImage, pid: i32) -> Option<i32> {
        let alive = |p: i32| {
            tree.get(p)
                .is_some_and(|e| matches!(e.state, ProcState::Alive { .. }))
        };
        let mut at = self.fork(pid)?.by;
        while !alive(at) {
            at = self.fork(at)?.by;
        }
        Some(at)
    }

    /// The processes `by` forks in one go with `like`: same flags and phase.
    pub fn batch(&self, like: Fork) -> impl Iterator<Item = i32> + '_ {
        self.order
            .iter()
            .copied()
            .filter(move |p| self.fork(*p) == Some(like))
    }
}

/// Whether an orphan of a process below `pid` would be given to `pid` (a pid namespace
/// init, a child subreaper); `None` when not known yet: any parent may be one.
pub type Reapers<'a> = Option<&'a dyn Fn(i32) -> bool>;

/// The plan of `tree` with its `reaper`s. Errors say which process cannot be placed and
/// why.
pub fn plan(tree: &TreeImage, reaper: Reapers) -> Result<Plan, String> {
    let mut born: HashMap<i32, i32> = HashMap::new();
    let mut forks = HashMap::new();
    for e in tree.processes.iter().skip(1) {
        let parent = tree.get(e.ppid).ok_or_else(|| {
            format!(
                "pid {} has its parent {} outside the tree record",
                e.pid, e.ppid
            )
        })?;
        let fork = if e.state == ProcState::SessionForker {
            forker(tree, e)?
        } else if e.sid == e.pid || e.sid == parent.sid {
            by_parent(e)
        } else if let Some(chain) = born_chain(tree, e) {
            for a in chain {
                if born.insert(a, e.sid).is_some_and(|s| s != e.sid) {
                    return Err(format!(
                        "pid {a} forked children in two sessions before its own; stasis \
                         cannot tell which it was born in"
                    ));
                }
            }
            by_parent(e)
        } else {
            elsewhere(tree, e, reaper)?
        };
        forks.insert(e.pid, fork);
    }
    for e in tree.processes.iter().skip(1) {
        let f = forks.get_mut(&e.pid).expect("every process but the root");
        let at_birth = born.get(&e.pid).copied().unwrap_or(e.sid);
        f.early = !f.clone_parent && f.by == e.ppid && born.get(&f.by) == Some(&at_birth);
    }
    let order = fork_order(tree, &forks);
    Ok(Plan { forks, order })
}

/// Whether `e` is a member of a session whose leader lives on elsewhere in the tree, not
/// as its sibling, forked by no ancestor born in the session: only a session forker
/// (a helper the dump adds, `dump/tree.rs`) can fork it in its session.
pub fn needs_forker(tree: &TreeImage, e: &ProcEntry) -> bool {
    let parent = tree.get(e.ppid);
    let leader = tree.get(e.sid);
    e.sid != e.pid
        && parent.is_some_and(|p| p.sid != e.sid)
        && born_chain(tree, e).is_none()
        && leader.is_some_and(|l| matches!(l.state, ProcState::Alive { .. }) && l.ppid != e.ppid)
}

fn by_parent(e: &ProcEntry) -> Fork {
    Fork {
        by: e.ppid,
        clone_parent: false,
        early: false,
    }
}

/// A session forker: cloned by the session's leader with `CLONE_PARENT`, so a sibling
/// of the leader.
fn forker(tree: &TreeImage, e: &ProcEntry) -> Result<Fork, String> {
    match tree.get(e.sid) {
        Some(l) if l.ppid == e.ppid && matches!(l.state, ProcState::Alive { .. }) => Ok(Fork {
            by: e.sid,
            clone_parent: true,
            early: false,
        }),
        _ => Err(format!(
            "session forker {} is not a sibling of the live leader of its session {}",
            e.pid, e.sid
        )),
    }
}

/// The ancestors of `e`, from its parent up, that were born in `e`'s session and left it
/// for their own after forking the next one down; `None` if no ancestor is in `e`'s
/// session or one of them does not lead its own.
fn born_chain(tree: &TreeImage, e: &ProcEntry) -> Option<Vec<i32>> {
    let mut chain = Vec::new();
    let mut at = tree.get(e.ppid)?;
    while at.sid != e.sid {
        if at.sid != at.pid || at.pid == tree.processes[0].pid {
            return None;
        }
        chain.push(at.pid);
        at = tree.get(at.ppid)?;
    }
    Some(chain)
}

/// A process whose parent is a reaper outside its session: forked by a process of its
/// session that leaves it to its parent.
fn elsewhere(tree: &TreeImage, e: &ProcEntry, reaper: Reapers) -> Result<Fork, String> {
    let (pid, sid, ppid) = (e.pid, e.sid, e.ppid);
    let refuse = |why: &str| {
        Err(format!(
            "pid {pid} is in session {sid}, which neither it nor its parent {ppid} is in, \
             and {why}; stasis cannot recreate that"
        ))
    };
    if e.shares_files || e.shares_fs || e.shares_vm || e.shares_sighand {
        return refuse("shares kernel objects with its parent");
    }
    if reaper.is_some_and(|r| !r(ppid)) {
        return refuse("its parent is neither a pid namespace init nor a child subreaper");
    }
    let Some(leader) = tree.get(sid) else {
        return refuse("the session's leader is not in the tree");
    };
    let fork = |clone_parent| Fork {
        by: sid,
        clone_parent,
        early: false,
    };
    match leader.state {
        ProcState::SessionHelper if leader.ppid == ppid => Ok(fork(false)),
        ProcState::Zombie { .. } => match reaper.map(|r| reaper_of(tree, leader, r)) {
            None => Ok(fork(false)),
            Some(r) if r == Some(ppid) => Ok(fork(false)),
            Some(_) => refuse(&format!(
                "its leader {sid}, a zombie, would leave its children to another reaper"
            )),
        },
        ProcState::Alive { .. } if leader.ppid == ppid && leader.exit_signal == e.exit_signal => {
            Ok(fork(true))
        }
        ProcState::Alive { .. } => by_forker(tree, e, reaper),
        _ => refuse(&format!("its leader {sid} is a helper of another parent")),
    }
}

/// A member of a live leader's session left to a reaper (its parent): forked by the
/// session's forker, a sibling of the leader, whose orphans go to that reaper.
fn by_forker(tree: &TreeImage, e: &ProcEntry, reaper: Reapers) -> Result<Fork, String> {
    let (pid, sid, ppid) = (e.pid, e.sid, e.ppid);
    let forker =
        (tree.processes.iter()).find(|h| h.state == ProcState::SessionForker && h.sid == sid);
    let Some(h) = forker else {
        return Err(format!(
            "pid {pid} is in session {sid}, which neither it nor its parent {ppid} is in, \
             and its leader {sid} is alive but not a sibling of it, and no session forker \
             stands in for it (the leader is the root or a pid namespace's init); stasis \
             cannot recreate that"
        ));
    };
    match reaper.map(|r| reaper_of(tree, h, r)) {
        Some(r) if r != Some(ppid) => Err(format!(
            "pid {pid} is in session {sid}, which neither it nor its parent {ppid} is in, \
             and the parent of its live leader {sid} would leave it to another reaper; \
             stasis cannot recreate that"
        )),
        _ => Ok(Fork {
            by: h.pid,
            clone_parent: false,
            early: false,
        }),
    }
}

/// The process that takes the orphans of `e`: its nearest reaper ancestor in the tree.
fn reaper_of(tree: &TreeImage, e: &ProcEntry, reaper: &dyn Fn(i32) -> bool) -> Option<i32> {
    let mut at = tree.get(e.ppid)?;
    while !reaper(at.pid) {
        at = tree.get(at.ppid).filter(|p| p.pid != at.pid)?;
    }
    Some(at.pid)
}

/// Depth-first pre-order over "forks": forkers before what they fork.
fn fork_order(tree: &TreeImage, forks: &HashMap<i32, Fork>) -> Vec<i32> {
    let mut order = Vec::with_capacity(tree.processes.len());
    let mut done = HashSet::new();
    let mut stack = vec![tree.processes[0].pid];
    while let Some(pid) = stack.pop() {
        if !done.insert(pid) {
            continue;
        }
        order.push(pid);
        let forked = tree.processes.iter().rev().map(|e| e.pid);
        stack.extend(forked.filter(|p| forks.get(p).is_some_and(|f| f.by == pid)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32, ppid: i32, sid: i32, state: ProcState) -> ProcEntry {
        let mut e = crate::image::sample::tree(&[pid]).processes.remove(0);
        (e.ppid, e.pgid, e.sid, e.state) = (ppid, pid, sid, state);
        e
    }

    fn alive(pid: i32, ppid: i32, sid: i32) -> ProcEntry {
        entry(pid, ppid, sid, ProcState::Alive { stop_signal: 0 })
    }

    fn tree(processes: Vec<ProcEntry>) -> TreeImage {
        TreeImage {
            processes,
            terminal: None,
        }
    }

    /// 8 forked 9 then left session 2 for its own: 8 defers its setsid.
    #[test]
    fn a_parent_that_changed_session_forks_first() {
        let t = tree(vec![
            alive(2, 1, 2),
            alive(8, 2, 8),
            alive(9, 8, 2),
            alive(10, 8, 8),
        ]);
        let p = plan(&t, Some(&|_| false)).expect("a plan");
        assert!(p.defers_setsid(8));
        assert!(p.fork(9).expect("9").early);
        assert!(!p.fork(10).expect("10").early);
        assert_eq!(p.order, vec![2, 8, 9, 10]);
    }

    /// Member 7 of dead session 6 under init 1 is forked by the helper 6; member 3 of
    /// session 2 (whose leader is 1's child) by 2 with CLONE_PARENT; member 5 of zombie
    /// leader 4 (a child of 2) by 4.
    #[test]
    fn reparented_members_are_forked_in_their_session() {
        let t = tree(vec![
            alive(1, 0, 1),
            alive(2, 1, 2),
            entry(4, 2, 4, ProcState::Zombie { status: 0 }),
            alive(3, 1, 2),
            alive(5, 1, 4),
            alive(7, 1, 6),
            entry(6, 1, 6, ProcState::SessionHelper),
        ]);
        let p = plan(&t, Some(&|pid| pid == 1)).expect("a plan");
        assert_eq!(p.fork(7).map(|f| f.by), Some(6));
        assert_eq!(p.fork(3).map(|f| (f.by, f.clone_parent)), Some((2, true)));
        assert_eq!(p.fork(5).map(|f| f.by), Some(4));
        let at = |pid| p.order.iter().position(|&x| x == pid);
        assert!(at(6) < at(7) && at(2) < at(3) && at(4) < at(5));
        assert!(plan(&t, Some(&|_| false)).is_err());
        assert!(plan(&t, None).is_ok());
    }

    /// Member 4 of session 3, whose leader is a child of 2, left to init 1: forked by the
    /// forker 9, which 3 forks with CLONE_PARENT (a child of 2); without the forker, or
    /// when 2 is a reaper (4 would go to it), refused.
    #[test]
    fn a_member_of_a_live_leader_elsewhere_is_forked_by_a_forker() {
        let mut forker = entry(9, 2, 3, ProcState::SessionForker);
        forker.pgid = 3;
        let mut t = tree(vec![
            alive(1, 0, 1),
            alive(2, 1, 2),
            alive(3, 2, 3),
            alive(4, 1, 3),
        ]);
        assert!(plan(&t, Some(&|pid| pid == 1)).is_err());
        t.processes.push(forker);
        let p = plan(&t, Some(&|pid| pid == 1)).expect("a plan");
        assert_eq!(p.fork(9).map(|f| (f.by, f.clone_parent)), Some((3, true)));
        assert_eq!(p.fork(4).map(|f| (f.by, f.clone_parent)), Some((9, false)));
        assert_eq!(p.memory_from(&t, 4), Some(3));
        let at = |pid| p.order.iter().position(|&x| x == pid);
        assert!(at(3) < at(9) && at(9) < at(4));
        assert!(plan(&t, Some(&|pid| pid <= 2)).is_err());
        assert!(plan(&t, None).is_ok());
    }
}
