//! The process tree: every process descended from the dumped root, found through the
//! parent links in `/proc`, frozen process by process until a scan finds nothing new; the
//! checks that a restore can rebuild it (sessions, groups, shared kernel objects, no
//! outsider depending on it); and its record, `tree.img`. The restore side is
//! `restore/tree.rs`.

use std::collections::{HashMap, HashSet};

use super::freeze::{self, Adopted, Frozen};
use super::DumpError;
use crate::image::tree::{ProcEntry, ProcState, TreeImage};
use crate::proc::{self, Stat};
use crate::sys::kcmp::{self, Object};

/// The frozen tree: live processes stopped, in tree order, and the record describing all.
pub struct FrozenTree {
    /// Live processes in tree order (the root first). Dropping them detaches everything.
    pub procs: Vec<Frozen>,
    pub record: TreeImage,
}

impl FrozenTree {
    /// Lets every process run on (stopped ones stay stopped).
    pub fn release(self) -> Result<(), DumpError> {
        let mut first = Ok(());
        for f in self.procs {
            if let Err(e) = f.release() {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// SIGKILLs every process of the tree and waits until each is gone.
    ///
    /// Ordering requirements: every process is killed before any memory is released or
    /// any process reaped, so that they all die at once, and `process_mrelease` needs
    /// every user of an address space killed (`CLONE_VM` sharers). Children are reaped
    /// before their parents: a dying pid namespace init waits in the kernel until each
    /// of its children is reaped, which it cannot do while we still trace them.
    pub fn kill(self) -> Result<(), DumpError> {
        let pidfds = (self.procs.iter())
            .map(Frozen::sigkill)
            .collect::<Result<Vec<_>, _>>()?;
        pidfds.into_iter().for_each(Frozen::release_memory);
        for f in self.procs.into_iter().rev() {
            f.reap()?;
        }
        Ok(())
    }
}

/// Freezes the tree rooted at `root` and checks it can be restored. `adopted` holds tasks
/// attached beforehand (`--freeze-cgroup`).
///
/// Ordering requirements: the root (checked by `preflight`) is frozen first; then each
/// round scans `/proc` and freezes every process of the tree not frozen yet. A frozen
/// process forks no more, and a fork that raced its freeze is attached to us by the
/// kernel (`PTRACE_O_TRACEFORK`), so the rounds end once a scan shows nothing new: one
/// scan for a process without children. Zombies are only recorded: no one can reap them
/// once their parents are frozen, which the final scan guarantees.
pub fn freeze_tree(
    root: i32,
    shell_job: bool,
    mut adopted: Adopted,
) -> Result<FrozenTree, DumpError> {
    let mut frozen: HashMap<i32, Frozen> = HashMap::new();
    let leader = adopted.stopped.remove(&root);
    if let Some(f) = freeze::freeze(root, leader, &mut adopted)? {
        frozen.insert(root, f);
    }
    let table = loop {
        let table = scan()?;
        if !table.contains_key(&root) {
            return Err(DumpError::NoSuchTask { pid: root });
        }
        let order = descendants(root, &table);
        let fresh: Vec<i32> = order
            .iter()
            .copied()
            .filter(|p| !frozen.contains_key(p) && !is_zombie(&table[p]))
            .collect();
        if fresh.is_empty() {
            break table;
        }
        for pid in fresh {
            if pid != root {
                // Gone since the scan: the next scan tells whether it left a zombie.
                let Ok(status) = proc::status(pid) else {
                    continue;
                };
                freeze::check_process(pid, &status)?;
            }
            let leader = adopted.stopped.remove(&pid);
            if let Some(f) = freeze::freeze(pid, leader, &mut adopted)? {
                frozen.insert(pid, f);
            }
        }
    };
    // Tasks of a frozen cgroup outside the tree: let them go.
    for (_, task) in adopted.interrupted.drain().chain(adopted.stopped.drain()) {
        let _ = task.release();
    }
    let mut record = describe(root, &table, &frozen)?;
    add_session_helpers(&mut record, &table);
    add_group_helpers(&mut record, &table);
    add_session_forkers(&mut record, &table)?;
    check(&record, &table, shell_job)?;
    if shell_job {
        record.terminal = super::terminal::job_terminal(&table[&root])?;
    }
    let procs = record
        .alive()
        .map(|e| {
            frozen
                .remove(&e.pid)
                .expect("every live process of the record is frozen")
        })
        .collect();
    Ok(FrozenTree { procs, record })
}

/// `/proc/PID/stat` of every process, by pid. Processes that exit while we read are left
/// out.
/// Read in two threads when there are many (a few hundred on a busy machine).
fn scan() -> Result<HashMap<i32, Stat>, DumpError> {
    let pids = proc::pids()?;
    let stats = super::two::map(&pids, MANY_PROCESSES, |&pid| proc::stat(pid).ok());
    Ok((pids.into_iter().zip(stats))
        .filter_map(|(pid, s)| Some((pid, s?)))
        .collect())
}

/// Fewer processes than this are scanned in one thread.
const MANY_PROCESSES: usize = 64;

fn is_zombie(s: &Stat) -> bool {
    matches!(s.state, 'Z' | 'X')
}

/// The processes of the tree rooted at `root` as it is now (running: it may change).
pub fn running(root: i32) -> Result<Vec<i32>, DumpError> {
    Ok(descendants(root, &scan()?))
}

/// `root` and its descendants in depth-first pre-order, children by increasing pid.
fn descendants(root: i32, table: &HashMap<i32, Stat>) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, s) in table {
        if pid != root {
            children.entry(s.ppid).or_default().push(pid);
        }
    }
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        order.push(pid);
        if let Some(kids) = children.get_mut(&pid) {
            kids.sort_unstable_by(|a, b| b.cmp(a));
            stack.extend(kids.iter());
        }
    }
    order
}

/// The tree record from the final scan.
fn describe(
    root: i32,
    table: &HashMap<i32, Stat>,
    frozen: &HashMap<i32, Frozen>,
) -> Result<TreeImage, DumpError> {
    let mut processes: Vec<ProcEntry> = Vec::new();
    let mut seen = Seen::default();
    for pid in descendants(root, table) {
        let s = &table[&pid];
        let state = match frozen.get(&pid) {
            Some(f) => ProcState::alive(f.stop_signal),
            None => zombie_state(pid, s)?,
        };
        let parent = processes.iter().find(|p| p.pid == s.ppid).map(|p| p.pid);
        let alive = matches!(state, ProcState::Alive { .. });
        let with = match parent {
            Some(ppid) if alive => Sharing::find(pid, ppid, &processes, &mut seen)?,
            _ => Sharing::default(),
        };
        if alive && parent.is_none() {
            seen.add_root(pid);
        }
        processes.push(ProcEntry {
            pid,
            comm: s.comm.clone(),
            ppid: s.ppid,
            pgid: s.pgrp,
            sid: s.session,
            exit_signal: s.exit_signal,
            state,
            shares_files: with.files,
            shares_fs: with.fs,
            shares_vm: with.vm,
            shares_sighand: with.sighand,
        });
    }
    Ok(TreeImage {
        processes,
        terminal: None,
    })
}

fn zombie_state(pid: i32, s: &Stat) -> Result<ProcState, DumpError> {
    if !is_zombie(s) {
        return Err(DumpError::unsupported(format!(
            "pid {pid} could not be frozen but is not a zombie (state {})",
            s.state
        )));
    }
    if s.num_threads > 1 {
        return Err(DumpError::unsupported(format!(
            "pid {pid} is a thread group whose leader exited while {} threads live on; stasis cannot restore that",
            s.num_threads - 1
        )));
    }
    refuse_core_dumped(pid, s.exit_code)?;
    Ok(ProcState::Zombie {
        status: s.exit_code,
    })
}

/// A zombie whose status says a core was dumped (`WCOREDUMP`, 0x80): the restore makes a
/// zombie die by its signal without writing a core file, so its parent would read the
/// status without that flag. Refused rather than changed.
fn refuse_core_dumped(pid: i32, status: i32) -> Result<(), DumpError> {
    if status & 0x7f != 0 && status & 0x80 != 0 {
        return Err(DumpError::unsupported(format!(
            "pid {pid} is a zombie killed by signal {} with a core dumped (status {status:#x}); \
             stasis cannot make a zombie whose status keeps the core-dump flag",
            status & 0x7f
        )));
    }
    Ok(())
}

/// The kernel objects a process shares with its parent (`kcmp`).
#[derive(Default)]
struct Sharing {
    files: bool,
    fs: bool,
    /// `CLONE_VM` without being a thread (a process of its own, e.g. from
    /// `clone(CLONE_VM | SIGCHLD)`).
    vm: bool,
    sighand: bool,
}

impl Sharing {
    fn find(
        pid: i32,
        ppid: i32,
        earlier: &[ProcEntry],
        seen: &mut Seen,
    ) -> Result<Self, DumpError> {
        let mut shares = |what, name| {
            let sorted = seen.of(what);
            shares(
                pid,
                ppid,
                Earlier {
                    all: earlier,
                    sorted,
                },
                what,
                name,
            )
        };
        let with = Sharing {
            files: shares(Object::Files, "fd table")?,
            fs: shares(Object::Fs, "cwd/root/umask")?,
            vm: shares(Object::Vm, "address space")?,
            sighand: shares(Object::Sighand, "signal handlers")?,
        };
        if with.sighand && !with.vm {
            return Err(DumpError::unsupported(format!(
                "pid {pid} shares its signal handlers with its parent {ppid} but not its address space; stasis cannot rebuild that"
            )));
        }
        Ok(with)
    }
}

/// The kinds of object [`Sharing`] looks at, in [`Seen`]'s order.
const SHARED: [Object; 4] = [Object::Files, Object::Fs, Object::Vm, Object::Sighand];

/// Per kind of [`SHARED`] object, the distinct objects of the live processes described
/// so far, each by one pid using it, in the kernel's `kcmp` order: a process is compared
/// with log2(n) of them (binary search) instead of every earlier process. `None` once
/// `kcmp` could not order two of them: every earlier process is compared then.
struct Seen([Option<Vec<i32>>; 4]);

impl Default for Seen {
    fn default() -> Self {
        Seen([
            Some(Vec::new()),
            Some(Vec::new()),
            Some(Vec::new()),
            Some(Vec::new()),
        ])
    }
}

impl Seen {
    fn of(&mut self, what: Object) -> &mut Option<Vec<i32>> {
        let i = SHARED
            .iter()
            .position(|&o| o == what)
            .expect("a shared kind");
        &mut self.0[i]
    }

    /// The root, which shares nothing with a parent in the tree.
    fn add_root(&mut self, pid: i32) {
        for what in SHARED {
            if let Some(sorted) = self.of(what) {
                sorted.push(pid);
            }
        }
    }
}

/// The processes described before one: all of them, and the distinct objects of the
/// kind looked at ([`Seen`]).
struct Earlier<'a> {
    all: &'a [ProcEntry],
    sorted: &'a mut Option<Vec<i32>>,
}

/// Where `pid`'s object of kind `what` is among `sorted` (`Ok`: the index of a pid
/// using the same one), or `None` if `kcmp` cannot order them.
fn position(pid: i32, sorted: &[i32], what: Object) -> Option<Result<usize, usize>> {
    let mut unordered = false;
    let found = sorted.binary_search_by(|&other| match kcmp::compare(other, pid, what, 0, 0) {
        Ok(0) => std::cmp::Ordering::Equal,
        Ok(1) => std::cmp::Ordering::Less,
        Ok(2) => std::cmp::Ordering::Greater,
        _ => {
            unordered = true;
            std::cmp::Ordering::Less
        }
    });
    (!unordered).then_some(found)
}

/// Whether `pid` shares `what` with its parent. Sharing it with another earlier process
/// but not the parent cannot be rebuilt by cloning from the parent, and is refused.
fn shares(
    pid: i32,
    ppid: i32,
    earlier: Earlier,
    what: Object,
    name: &str,
) -> Result<bool, DumpError> {
    let same = |other: i32| kcmp::same(pid, other, what, 0, 0).unwrap_or(false);
    if same(ppid) {
        return Ok(true);
    }
    let found = (earlier.sorted.as_deref()).map(|sorted| (position(pid, sorted, what), sorted));
    let other = match found {
        Some((Some(Ok(i)), sorted)) => Some(sorted[i]).filter(|&o| o != ppid),
        Some((Some(Err(i)), _)) => {
            earlier.sorted.as_mut().expect("found above").insert(i, pid);
            None
        }
        _ => {
            *earlier.sorted = None;
            let alive = (earlier.all.iter()).filter(|p| matches!(p.state, ProcState::Alive { .. }));
            alive.map(|p| p.pid).find(|&o| o != ppid && same(o))
        }
    };
    if let Some(other) = other {
        return Err(DumpError::unsupported(format!(
            "pid {pid} shares its {name} with pid {other} but not with its parent {ppid}; stasis cannot rebuild that sharing"
        )));
    }
    Ok(false)
}

/// Sessions and groups a restore can rebuild, and no process outside the tree in them.
///
/// A process gets its session from the process that forks it at restore, or leads one of
/// its own (`setsid`): `image/forks.rs` plans who forks whom and refuses what it cannot
/// place. The dump cannot tell which processes are child subreapers yet, so each parent
/// is taken for one here; [`check_sessions`] checks again once it can. A process can join any
/// group of its session whose leader is in the tree, or lead its own. With `--shell-job`
/// the root's session and group may be the invoking shell's: they become the restorer's.
fn check(tree: &TreeImage, table: &HashMap<i32, Stat>, shell_job: bool) -> Result<(), DumpError> {
    let root = &tree.processes[0];
    let pids: HashSet<i32> = tree.processes.iter().map(|p| p.pid).collect();
    crate::image::forks::plan(tree, None).map_err(DumpError::unsupported)?;
    for p in &tree.processes[1..] {
        let foreign_ok = shell_job && p.pgid == root.pgid && root.pgid != root.pid;
        let leader_ok = tree.get(p.pgid).is_some_and(|l| l.sid == p.sid);
        if p.pgid != p.pid && !leader_ok && !foreign_ok {
            return Err(DumpError::unsupported(format!(
                "pid {} is in process group {}, whose leader is not in the dumped tree",
                p.pid, p.pgid
            )));
        }
    }
    root_shares_no_vm(root)?;
    outsiders(&pids, table)
}

/// By pid, the live process whose memory each process forked by another than its parent
/// at restore starts with (`image/forks.rs`).
pub fn memory_from(tree: &TreeImage) -> Result<HashMap<i32, i32>, DumpError> {
    let plan = crate::image::forks::plan(tree, None).map_err(DumpError::unsupported)?;
    Ok((tree.processes.iter())
        .filter_map(|e| Some((e.pid, plan.memory_from(tree, e.pid)?)))
        .filter(|(pid, from)| tree.get(*pid).is_some_and(|e| e.ppid != *from))
        .collect())
}

/// The sessions' plan again once the child subreapers are known (every process queried):
/// a member left to a reaper must be left to it again at restore.
pub fn check_sessions(tree: &TreeImage, subreapers: &HashSet<i32>) -> Result<(), DumpError> {
    let mut inits = HashSet::new();
    for e in tree.alive() {
        if super::ns::pid::is_ns_init(e.pid)? {
            inits.insert(e.pid);
        }
    }
    let reaper = |pid: i32| inits.contains(&pid) || subreapers.contains(&pid);
    crate::image::forks::plan(tree, Some(&reaper)).map_err(DumpError::unsupported)?;
    Ok(())
}

/// A session whose leader exited and was reaped while members live on has no process of
/// its id. For each such session with a member whose parent is outside it (a reaper the
/// member was left to), a `SessionHelper` entry with that id is added, a child of that
/// parent: at restore it leads the session and forks the members (`image/forks.rs`).
fn add_session_helpers(tree: &mut TreeImage, table: &HashMap<i32, Stat>) {
    let mut helpers: Vec<ProcEntry> = Vec::new();
    let root = &tree.processes[0];
    for p in &tree.processes[1..] {
        let sid = p.sid;
        let known = table.contains_key(&sid) || helpers.iter().any(|h| h.pid == sid);
        let parent = tree.get(p.ppid).filter(|q| q.sid != sid);
        if known || sid == p.pid || sid == root.sid || parent.is_none() {
            continue;
        }
        helpers.push(helper(sid, p.ppid, sid, ProcState::SessionHelper));
    }
    tree.processes.extend(helpers);
}

/// The entry of a helper process `pid`, a child of `ppid` in session `sid`.
fn helper(pid: i32, ppid: i32, sid: i32, state: ProcState) -> ProcEntry {
    ProcEntry {
        pid,
        comm: String::new(),
        ppid,
        pgid: pid,
        sid,
        exit_signal: libc::SIGCHLD,
        state,
        shares_files: false,
        shares_fs: false,
        shares_vm: false,
        shares_sighand: false,
    }
}

/// A group whose leader exited and was reaped while members live on has no process of
/// its id: the restore needs one to create the group. For each such group in the tree
/// (no process at all has its id, nor a session helper), a `GroupHelper` entry with that
/// pid is added, in the member's session, a child of the parent of the group's first
/// member when that parent is alive: forked by it or, if it is a reaper outside the
/// session, by a process of the session (`image/forks.rs`).
fn add_group_helpers(tree: &mut TreeImage, table: &HashMap<i32, Stat>) {
    let mut helpers: Vec<ProcEntry> = Vec::new();
    let root_group = tree.processes[0].pgid; // with --shell-job, the restorer's
    for p in &tree.processes[1..] {
        let (pgid, sid) = (p.pgid, p.sid);
        let known = |id: i32| {
            table.contains_key(&id) || tree.get(id).is_some() || helpers.iter().any(|h| h.pid == id)
        };
        if known(pgid) || pgid == root_group {
            continue;
        }
        let parent = tree.get(p.ppid);
        if !parent.is_some_and(|q| matches!(q.state, ProcState::Alive { .. })) {
            continue;
        }
        helpers.push(helper(pgid, p.ppid, sid, ProcState::GroupHelper));
    }
    tree.processes.extend(helpers);
}

/// For each session with a member that only a session forker can fork
/// (`forks::needs_forker`: its live leader is elsewhere in the tree), a `SessionForker`
/// entry, a child of the leader's parent in the leader's session and group, with a pid no
/// task has now (none of the tree, none of this host's): at restore the leader forks it
/// with `CLONE_PARENT` and it forks the members. None for a leader that is the root or a
/// pid namespace's init (`CLONE_PARENT` is refused there): the plan refuses the member.
fn add_session_forkers(tree: &mut TreeImage, table: &HashMap<i32, Stat>) -> Result<(), DumpError> {
    let root = tree.processes[0].pid;
    let mut forkers: Vec<ProcEntry> = Vec::new();
    let mut next = (table.keys().chain(tree.processes.iter().map(|e| &e.pid)))
        .max()
        .map_or(1, |m| m + 1);
    for p in tree.processes.iter().skip(1) {
        let sid = p.sid;
        if !crate::image::forks::needs_forker(tree, p) || forkers.iter().any(|h| h.sid == sid) {
            continue;
        }
        let leader = tree
            .get(sid)
            .expect("needs_forker: the leader is in the tree");
        if sid == root || super::ns::pid::is_ns_init(sid)? {
            continue;
        }
        while std::path::Path::new(&format!("/proc/{next}")).exists() {
            next += 1;
        }
        let mut h = helper(next, leader.ppid, sid, ProcState::SessionForker);
        h.pgid = leader.pgid;
        forkers.push(h);
        next += 1;
    }
    tree.processes.extend(forkers);
    Ok(())
}

/// The root must have an address space of its own: one shared with its parent outside
/// the tree (a `vfork` child before exec, a `clone(CLONE_VM)` child) would come back
/// private, and the parent would no longer see its writes.
fn root_shares_no_vm(root: &ProcEntry) -> Result<(), DumpError> {
    if kcmp::same(root.pid, root.ppid, Object::Vm, 0, 0).unwrap_or(false) {
        return Err(DumpError::unsupported(format!(
            "pid {} shares its address space with its parent {}, outside the dumped tree (CLONE_VM, e.g. a vfork child before exec); dump the tree from pid {}",
            root.pid, root.ppid, root.ppid
        )));
    }
    Ok(())
}

/// Refuses when a process outside the tree is in a session or group the tree leads, or
/// is... a child of it would have been in the tree. Restoring without it would leave
/// it in a session or group whose id is taken by the restored leader.
fn outsiders(pids: &HashSet<i32>, table: &HashMap<i32, Stat>) -> Result<(), DumpError> {
    for (&other, s) in table {
        if pids.contains(&other) {
            continue;
        }
        let why = if pids.contains(&s.session) {
            format!("in the session of pid {}", s.session)
        } else if pids.contains(&s.pgrp) {
            format!("in the process group of pid {}", s.pgrp)
        } else {
            continue;
        };
        return Err(DumpError::unsupported(format!(
            "pid {other}, outside the dumped tree, is {why}; dump a tree that includes it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_with_a_core_dumped_is_refused() {
        // SIGSEGV with WCOREDUMP; SIGSEGV without; an exit code of 0x80 << 8 is no core.
        assert!(refuse_core_dumped(7, 0x8b).is_err());
        assert!(refuse_core_dumped(7, 0x0b).is_ok());
        assert!(refuse_core_dumped(7, 0x8000).is_ok());
    }

    fn stat(pid: i32, ppid: i32) -> (i32, Stat) {
        let s = Stat {
            pid,
            ppid,
            pgrp: pid,
            session: pid,
            state: 'S',
            ..Stat::default()
        };
        (pid, s)
    }

    /// Member 12 of group 11, whose leader is gone, gets a helper 11 forked by its parent
    /// 10; a group whose id is a live process (13's group 10) does not.
    #[test]
    fn leaderless_groups_get_a_helper() {
        let mut tree = crate::image::sample::tree(&[10, 12, 13]);
        tree.processes[1].pgid = 11;
        let table: HashMap<i32, Stat> = [stat(10, 1), stat(12, 10), stat(13, 10)]
            .into_iter()
            .collect();
        add_group_helpers(&mut tree, &table);
        let helper = tree.get(11).expect("a helper for group 11");
        assert_eq!(helper.state, ProcState::GroupHelper);
        assert_eq!((helper.ppid, helper.pgid, helper.sid), (10, 11, 10));
        assert_eq!(tree.processes.len(), 4);
        assert!(check(&tree, &table, false).is_ok());
    }

    #[test]
    fn pre_order_children_by_pid() {
        let table: HashMap<i32, Stat> = [
            stat(10, 1),
            stat(30, 10),
            stat(20, 10),
            stat(25, 20),
            stat(99, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(descendants(10, &table), vec![10, 20, 25, 30]);
    }
}
