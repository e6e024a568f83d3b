//! Restore: rebuild a dumped task from an image directory, with its pid, address space,
//! registers, signals and files, and let it carry on.
//!
//! Everything in the image and everything the host must provide is verified before any
//! process is created. Then the task is rebuilt stage by stage ([`RestoreStage`]), each
//! stage run by the new task itself through injected syscalls; a failure kills the
//! half-built task and reports the stage.

mod aio;
mod apart;
mod audit;
mod cgroup;
mod checked;
pub(crate) mod child;
mod cow;
mod creds;
mod error;
mod fdtable;
mod files;
mod inherited;
mod memory;
mod mm;
pub mod mnt;
mod mqueue;
mod netlock;
mod ns;
mod orphan_pty;
mod prctl;
mod pty_devpts;
mod sched;
mod sealed;
mod seccomp;
mod staged;
mod sysv;
mod task;
mod terminal;
mod threads;
mod timers;
mod tree;
mod tty;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cgroup::{CgroupRestoreOptions, Mode as CgroupMode};
pub use error::RestoreError;

use crate::hooks::{Hooks, NoHooks, Point};

use crate::image::netlock::NetLockImage;
use crate::image::tree::{ProcEntry, ProcState};
use crate::image::{store, Image, ProcessImage};
use child::Child;
use staged::Staged;

/// Top of the x86_64 user address space (4-level paging).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// What `stasis restore` was asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub dir: PathBuf,
    pub shell_job: bool,
    /// The front end takes the new master of a pty whose master was outside the tree
    /// (`Hooks::orphan_pts_master`); without it such an image is refused.
    pub orphan_pts_master: bool,
    /// `--tcp-close`: established TCP connections come back closed.
    pub tcp_close: bool,
    /// Do not refuse open files that changed since the dump (`--skip-file-check`).
    pub skip_file_check: bool,
    /// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard`.
    pub cgroups: CgroupRestoreOptions,
    /// `--root`: the root directory of a tree that had its own (`restore/mnt`).
    pub root: Option<PathBuf>,
    /// `--external mnt[KEY]:PATH`.
    pub mnt_externals: Vec<(String, String)>,
    /// `--join-ns net:PATH`: the tree comes back in this network namespace (as it is)
    /// instead of a new one made from the image.
    pub join_net: Option<PathBuf>,
    /// `--inherit-fd fd[N]:KEY`: the restorer's fd N takes the place of every fd of the
    /// tree on the object `KEY` outside it (`pipe:[INO]`, the dump-time link text of a
    /// pipe whose other end no process of the tree held).
    pub inherit_fds: Vec<(String, i32)>,
    /// `--decrypt-key`, `--require-signature`: how a stored image is opened.
    pub store: crate::image::store::OpenOptions,
    /// `--external veth[INSIDE]:OUTSIDE[@BRIDGE]`: the other end of a veth of the tree's
    /// network namespace, by name, and the bridge it joins (the dump's name otherwise).
    pub veth_externals: Vec<crate::netns::VethExternal>,
    /// `--lazy-pages --address A --port P`: the source serving the pages the image
    /// left out (`crate::lazy`).
    pub lazy: Option<crate::lazy::restore::LazyFrom>,
    /// Image directories whose pages files the caller verified already (`stasis
    /// receive` checks every image as it comes): their checksums are not read again,
    /// only their headers and lengths (a 2 GiB chain costs a second pass otherwise,
    /// inside a migration's downtime).
    pub pages_verified: Vec<PathBuf>,
    /// `--lazy-local`: start the tree at once and fill its private anonymous memory from
    /// this image's pages files on fault and in the background (`lazy/local.rs`), each
    /// page verified before it is placed; an image whose pages are compressed or
    /// encrypted, or a kernel without userfaultfd's missing mode, is filled as usual.
    pub lazy_local: bool,
}

/// The restored tree's root, and figures for the summary line and `--stats-json`.
#[derive(Clone, Debug)]
pub struct Restored {
    pub pid: i32,
    /// Pages read into place, in every process.
    pub pages: u64,
    /// Loading and verifying the image (checksums of every file, page data included).
    pub load: Duration,
    /// Reading the saved pages into place, summed over the processes.
    pub memory: Duration,
    pub total: Duration,
    /// (`--lazy-pages`) The post-copy filling the tree's memory as it runs: wait for it.
    pub post_copy: Option<std::sync::Arc<crate::lazy::restore::PostCopy>>,
}

/// The stages of rebuilding one process, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStage {
    /// Create the process with its exact pid (from stasis for the root, else by a clone
    /// injected into its parent), seize it, map the helper page.
    Takeover,
    /// Lead a new session if the process did, and take its controlling terminal (or give
    /// up the session's, as the process had).
    Session,
    /// Drop the inherited mappings and move the vDSO block to its saved place.
    AddressSpace,
    /// Recreate every mapping at its address.
    Mappings,
    /// Read saved pages into place.
    Memory,
    /// Final protections, madvise flags, mlock.
    Protections,
    /// brk, arg/env, auxv and the exe link (`PR_SET_MM_MAP`).
    MmFields,
    /// The fd table (spare fds, held for later processes, are closed once every
    /// process has its table).
    Files,
    /// cwd, root, umask.
    Fs,
    /// Personality.
    Attributes,
    /// Audit loginuid (before Threads: they inherit it).
    Audit,
    /// Resource limits.
    Limits,
    /// Signal handlers.
    SigActions,
    /// Join the tree's own user namespace, once every process exists (its children
    /// were made with stasis's privileges), after the stages that need privileges over
    /// the dumper's namespace (files: `SO_*BUFFORCE`; limits; loginuid) and before its
    /// threads are created.
    UserNs,
    /// Create the other threads with their tids (`clone3` injected into the leader).
    Threads,
    /// Owners and signals of the open file descriptions (`F_SETOWN_EX`: an owner may be
    /// a thread; before Creds: the owner's uids are taken for the call).
    FileOwners,
    /// Per thread, in the thread: sigaltstack, clear_child_tid, robust list, rseq, name.
    ThreadAttrs,
    /// THP disable, child subreaper, membarrier registrations.
    ProcAttrs,
    /// Timer slack, I/O priority, nice, affinity, policy of every thread; oom_score_adj.
    Sched,
    /// Interval timers and POSIX timers (late, but privileged: before Creds; after
    /// Threads, as a timer may signal one thread).
    Timers,
    /// Seccomp filters and strict mode of every thread (after Threads; before Creds, as
    /// installing a filter without no_new_privs is privileged).
    Seccomp,
    /// In every thread, the leader last: securebits, groups, gids, uids, capabilities
    /// (drops privileges), then dumpable, parent-death signal and no_new_privs, which a
    /// credential change resets.
    Creds,
    /// Seal sealed mappings.
    Seals,
    /// Requeue pending signals (last: once a SIGTRAP is queued, no batch may run in the
    /// process, see `task::queue_signals`).
    Signals,
    /// Once every process exists: join process groups; zombies exit with their status.
    Zombies,
    /// Once the groups exist: the foreground group of the sessions' terminals; a shell
    /// job's terminal's termios and foreground group.
    Terminal,
    /// Load every thread's registers, unmap the helper, resume.
    Resume,
}

impl RestoreStage {
    fn name(self) -> &'static str {
        match self {
            Self::Takeover => "takeover",
            Self::Session => "session",
            Self::AddressSpace => "address space",
            Self::Mappings => "mappings",
            Self::Memory => "memory",
            Self::UserNs => "user namespace",
            Self::Protections => "protections",
            Self::MmFields => "mm fields",
            Self::Files => "files",
            Self::Fs => "fs",
            Self::Attributes => "attributes",
            Self::Audit => "audit loginuid",
            Self::Limits => "resource limits",
            Self::SigActions => "sigactions",
            Self::Threads => "threads",
            Self::FileOwners => "file owners",
            Self::ThreadAttrs => "thread attributes",
            Self::ProcAttrs => "process attributes",
            Self::Sched => "scheduling",
            Self::Timers => "timers",
            Self::Seccomp => "seccomp",
            Self::Creds => "credentials",
            Self::Seals => "seals",
            Self::Signals => "signals",
            Self::Zombies => "zombies",
            Self::Terminal => "terminal",
            Self::Resume => "resume",
        }
    }
}

/// The longest a restored task may take to stop or to answer one injected syscall before
/// the restore gives up naming it (a restore never hangs): far above any single step.
const WAIT_BOUND: Duration = Duration::from_secs(60);

/// Loads and verifies the image, then rebuilds its process tree.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    restore_with(opts, &mut NoHooks)
}

/// (`--lazy-local`) What the local post-copy serves, `None` when nothing qualifies or
/// this kernel lacks what post-copy needs (the image is then filled as usual). A
/// process that another one's memory is forked from (or shared with) is filled whole
/// first: its child inherits its memory at the fork.
fn local_fill(
    image: &Image,
    plan: &crate::image::forks::Plan,
) -> Option<crate::lazy::local::LocalPages> {
    if let Err(e) = crate::lazy::restore::check_kernel() {
        eprintln!(
            "stasis: --lazy-local: {}; filling the memory before the tree runs",
            crate::error_line(&e)
        );
        return None;
    }
    let origins: std::collections::HashSet<i32> = (image.tree.processes.iter())
        .filter_map(|e| plan.fork(e.pid))
        .filter_map(|f| tree::memory_origin(image, plan, f.by))
        .map(|p| p.task.pid)
        .collect();
    let pages = crate::lazy::local::served(image, &origins);
    (!pages.processes.is_empty()).then_some(pages)
}

/// Whether `dir` is one of the directories the caller verified (`pages_verified`).
fn verified_by_caller(opts: &RestoreOptions, dir: &std::path::Path) -> bool {
    if opts.pages_verified.is_empty() {
        return false;
    }
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    (opts.pages_verified.iter()).any(|v| v.canonicalize().is_ok_and(|v| v == dir))
}

/// [`restore`], calling `hooks` at each restore [`Point`].
pub fn restore_with(
    opts: &RestoreOptions,
    hooks: &mut dyn Hooks,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    crate::sys::deadline::set_bound(Some(WAIT_BOUND));
    let _disarm = crate::sys::deadline::Disarm;
    notify(hooks, Point::PreRestore, 0)?;
    // Ordering requirements: `opened` (a verified plain copy of a sealed image) lives
    // until the tree is restored; everything is verified before any process exists.
    let (opened, image, checked) = {
        let _s = crate::profile::span("load");
        // Sealed pages files are decoded straight into the restored memory, except for a
        // post-copy restore (which reads them otherwise).
        let opened = match opts.lazy {
            None => store::open_for_restore(&opts.dir, &opts.store),
            Some(_) => store::open(&opts.dir, &opts.store),
        };
        let opened = opened.map_err(crate::image::ImageError::from)?;
        // A decoded copy (of the image or of an ancestor) was checked whole while it was
        // written: no second crc pass.
        let trusted = |d: &std::path::Path| opened.verified(d) || verified_by_caller(opts, d);
        // The crc of a large plain image is summed as its memory is filled (`checked.rs`),
        // not for a post-copy restore (whose pages are read otherwise).
        let fill_checks = opts.lazy.is_none() && !opts.lazy_local;
        let fill_checks = fill_checks && opened.sealed_pages().is_empty();
        let defer = |p: &ProcessImage| fill_checks && checked::while_filling(p);
        let (image, unverified) = Image::load_deferring(opened.dir(), &trusted, &defer)?;
        (opened, image, checked::Checked::new(unverified))
    };
    let lazy = crate::lazy::restore::plan(&image, opts.lazy.as_ref())?;
    let mounts = mnt::verify(&image, opts)?;
    let load = started.elapsed();
    // Ordering requirements: the cgroups first (checked, then made), as a file the
    // tree holds open may be one of them.
    let cgroups = {
        let _s = crate::profile::span("cgroups");
        cgroup::prepare(&image, &opts.cgroups)?
    };
    {
        let _s = crate::profile::span("verify");
        verify::host_accepts(&image, opts.skip_file_check, mounts.as_ref())?;
        sysv::verify(&image.sysv)?;
        orphan_pty::check(&image, opts.orphan_pts_master)?;
    }
    ns::pid::install(&image.ns);
    ns::user::set_maps(&image);
    let join_net = ns::net::to_join(&image, opts.join_net.as_deref(), &opts.inherit_fds)?;
    let lock = netlock::load(&image)?;
    let lift = netlock::in_place(&image, join_net.as_deref());
    if lift {
        netlock::liftable(&image, &lock)?;
    }
    let root = image.inventory.root_pid;
    notify(hooks, Point::SetupNamespaces, root)?;
    notify(hooks, Point::PostSetupNamespaces, root)?;
    let shell_job = opts.shell_job || image.inventory.shell_job;
    let _orphans = Subreaper::become_one();
    let tree_pids = image.tree.processes.iter().map(|e| e.pid).collect();
    let plan = tree::plan(&image)?;
    let local = match opts.lazy_local && lazy.is_none() && opened.sealed_pages().is_empty() {
        true => {
            let _s = crate::profile::span("lazy-local plan");
            local_fill(&image, &plan)
        }
        false => None,
    };
    let served: HashMap<i32, Vec<(u64, u64)>> = (local.iter())
        .flat_map(|l| &l.processes)
        .map(|(pid, pieces)| (*pid, crate::lazy::restore::merged(pieces)))
        .collect();
    let post_copy = match local {
        Some(pages) => Some(std::sync::Arc::new(
            crate::lazy::restore::PostCopy::start_local(pages, tree_pids)?,
        )),
        None => crate::lazy::restore::begin(lazy, tree_pids)?,
    };
    // Ordering requirements: after the post-copy's threads started (they keep their
    // priority), until the tree runs.
    let raised = post_copy.as_ref().and_then(|_| crate::priority::raise());
    let fds = image.processes.iter().flat_map(|p| &p.files.fds);
    let ghosts = files::Ghosts::new(&image.ghosts, fds).with_homes(&image.ghost_homes, root);
    if mounts.is_none() {
        ghosts.make(None)?;
    }
    let ttys = tty::Bank::build(&image)?;
    let given = files::given_fds(&image, &opts.inherit_fds);
    let mut b = Builder {
        plan,
        image: &image,
        given,
        shell_job,
        tcp_close: opts.tcp_close,
        ghosts: &ghosts,
        procs: Vec::new(),
        forked: HashMap::new(),
        ttys,
        orphan_master: None,
        sysv: None,
        cgroups: cgroups.as_ref(),
        mounts: mounts.as_ref(),
        join_net: join_net.as_deref(),
        net: None,
        userns: None,
        veths: &opts.veth_externals,
        peers: ns::netlinks::Peers::new(&image.netpeers),
        lazy: post_copy.as_deref(),
        served: &served,
        sealed: opened.sealed_pages(),
        checked: &checked,
        net_lock: match lock.pids.contains(&root) {
            true => lock.mode,
            false => crate::netlock::LockMode::Skip,
        },
    };
    let built = b.build().and_then(|pages| {
        // Ordering requirements: the pages are checked before anything else may run.
        checked.finish()?;
        remove_links(&image, &ghosts)?;
        if let Some(master) = b.orphan_master.take() {
            hooks
                .orphan_pts_master(std::os::fd::AsFd::as_fd(&master))
                .map_err(|reason| RestoreError::Hook {
                    point: "orphan-pts-master",
                    pid: root,
                    reason,
                })?;
        }
        notify(hooks, Point::PostRestore, root)?;
        notify(hooks, Point::NetworkUnlock, root)?;
        notify(hooks, Point::PreResume, root)?;
        Ok(pages)
    });
    let built = built.and_then(|pages| match &cgroups {
        Some(c) => c.move_threads().map(|()| pages),
        None => Ok(pages),
    });
    let built = built
        .and_then(|pages| ghosts.remove().map(|()| pages))
        .and_then(|pages| b.reopen_network(&lock, lift).map(|()| pages));
    // Kept (stasis's thread in the tree's network namespace) until its lock is lifted.
    let mut net = b.net.take();
    // A post-copy source must first give up resuming its own tree for good.
    let built = built.and_then(|pages| {
        post_copy.as_ref().map_or(Ok(()), |p| p.claim())?;
        Ok(pages)
    });
    let built = match built {
        Ok(pages) => {
            let _s = crate::profile::span("resume");
            let resumed = b.resume();
            drop(raised);
            resumed
                .and_then(|()| cgroups.as_ref().map_or(Ok(()), cgroup::Placed::freeze))
                .map(|()| pages)
        }
        Err(e) => {
            b.kill_all();
            if let Some(made) = b.sysv.take() {
                sysv::undo(made);
            }
            // A post-copy that failed first (a page failing its check) killed the tree:
            // that is the news, not the stage it broke.
            let why = post_copy
                .as_deref()
                .and_then(crate::lazy::restore::PostCopy::failure);
            Err(why.map_or(e, RestoreError::from))
        }
    };
    // Rebuilt or not, the connections held by the dump's network lock are settled now.
    if lift {
        netlock::unlock(&lock)?;
    }
    net.as_mut().map_or(Ok(false), ns::net::Entered::unlock)?;
    let filled = built?;
    if let Some(p) = &post_copy {
        p.started()?;
    }
    // The tree runs: a refusal cannot undo it (the hook reports it itself).
    let _ = hooks.at(Point::PostResume, root);
    drop(opened);
    Ok(Restored {
        pid: root,
        pages: filled.bytes / crate::abi::PAGE_SIZE,
        load,
        memory: filled.elapsed,
        total: started.elapsed(),
        post_copy,
    })
}

/// Lifts the network locks the dump of the image in `dir` left; returns their pids.
pub fn unlock_image(dir: &std::path::Path) -> Result<Vec<i32>, RestoreError> {
    let image = Image::load_metadata(dir)?;
    let lock = netlock::load(&image)?;
    netlock::unlock(&lock)?;
    Ok(lock.pids)
}

/// With `on`, the root of every later restore of this process is created as the
/// restorer's sibling (the child of the restorer's parent, `CLONE_PARENT`), as CRIU's
/// `rst_sibling` asks: the caller, not the restorer, is then its parent and reaps it.
pub fn set_root_sibling(on: bool) {
    child::ROOT_SIBLING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Calls the hook of `point`; its refusal becomes [`RestoreError::Hook`].
fn notify(hooks: &mut dyn Hooks, point: Point, pid: i32) -> Result<(), RestoreError> {
    hooks.at(point, pid).map_err(|reason| RestoreError::Hook {
        point: point.criu_name(),
        pid,
        reason,
    })
}

/// Every process holds its files: the links made for `--link-remap` go before any of
/// them runs (a restore failing earlier leaves them, so the image can be restored again).
fn remove_links(image: &Image, ghosts: &files::Ghosts) -> Result<(), RestoreError> {
    for p in &image.processes {
        files::remove_remap_links(&p.files, ghosts)?;
    }
    Ok(())
}

/// The restorer is the child subreaper while it works, so that if a restore fails, the
/// processes it killed are reparented to it and reaped, not left as zombies holding
/// their pids.
struct Subreaper;

impl Subreaper {
    fn become_one() -> Self {
        let _ = nix::sys::prctl::set_child_subreaper(true);
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}

/// The tree being rebuilt: a shell per process, in tree order.
struct Builder<'a> {
    image: &'a Image,
    /// Who forks each process (`image/forks.rs`), and in which order.
    plan: crate::image::forks::Plan,
    /// The restorer's fds that replace fds of the tree (`inherit_fds`), by `(pid, fd)`.
    given: files::pty::PtyFds,
    shell_job: bool,
    /// `--tcp-close`.
    tcp_close: bool,
    /// The files deleted while in use, recreated until every process holds them.
    ghosts: &'a files::Ghosts<'a>,
    procs: Vec<(i32, Child)>,
    /// Processes forked with their siblings, not taken over yet.
    forked: HashMap<i32, crate::sys::ptrace::Seized>,
    /// The pty pairs of the image, built by stasis; dropped once every process has
    /// its fds (hung-up pairs hang up then).
    ttys: tty::Bank,
    /// The new master of the pty whose master was outside the tree, for the front end.
    orphan_master: Option<std::os::fd::OwnedFd>,
    /// The System V IPC objects made (once the root exists).
    sysv: Option<sysv::Made>,
    /// The tree's cgroups, made before any process.
    cgroups: Option<&'a cgroup::Placed>,
    /// The tree's own mount namespace, built right after the root's takeover.
    mounts: Option<&'a mnt::Sources<'a>>,
    /// `--join-ns net:PATH`.
    join_net: Option<&'a std::path::Path>,
    /// The tree's network namespace, entered by stasis once the root is in it.
    net: Option<ns::net::Entered>,
    /// The tree's own user namespace and its holder, made right before the root.
    userns: Option<ns::user::Made>,
    /// The lock a new network namespace of the tree's holds until the tree is rebuilt
    /// (that of the dumped namespace's, `Skip` for none).
    net_lock: crate::netlock::LockMode,
    /// `--external veth[..]`.
    veths: &'a [crate::netns::VethExternal],
    /// The veth pairs between the tree's network namespaces, as they are made.
    peers: ns::netlinks::Peers<'a>,
    /// `--lazy-pages`: registers each process's served mappings.
    lazy: Option<&'a crate::lazy::restore::PostCopy>,
    /// (`--lazy-local`) Each process's pages left to post-copy: not filled here.
    served: &'a HashMap<i32, Vec<(u64, u64)>>,
    /// The pages files left sealed, decoded into place (`sealed.rs`).
    sealed: &'a store::SealedPages,
    /// The pages files whose crc the fill sums (`checked.rs`).
    checked: &'a checked::Checked,
}

impl Builder<'_> {
    /// Every stage of every process but the resume; returns what the memory fills did.
    fn build(&mut self) -> Result<memory::Filled, RestoreError> {
        let mut filled = memory::Filled::default();
        for &pid in &self.plan.order.clone() {
            let entry = self
                .image
                .tree
                .get(pid)
                .expect("the plan orders the tree's pids");
            filled = filled.and(self.create(entry)?);
        }
        if let Some(made) = &mut self.sysv {
            let root = self.image.inventory.root_pid;
            sysv::finish(made).map_err(at(RestoreStage::Mappings, root))?;
        }
        let span = crate::profile::span("groups+zombies");
        tree::restore_groups(&self.image.tree, &self.procs, self.shell_job)?;
        for (pid, child) in &self.procs {
            tty::set_foreground(child, &self.image.tty)
                .map_err(at(RestoreStage::Terminal, *pid))?;
        }
        if self.shell_job {
            let root = self.image.inventory.root_pid;
            terminal::restore(&self.image.tree, self.shell(root))
                .map_err(at(RestoreStage::Terminal, root))?;
        }
        self.make_zombies()?;
        drop(span);
        mnt::nested::set_elsewhere(self.fds_elsewhere());
        let mut ptys = self.ttys.fds();
        ptys.extend(&self.given);
        // Those entering a network namespace once their files are open, with the pid of
        // the namespace's maker.
        let late = (self.image.netjoins.joins.iter())
            .filter(|j| j.late)
            .map(|j| Ok((j.pid, self.host_pid(j.pid, j.of)?)))
            .collect::<Result<Vec<_>, RestoreError>>()?;
        ns::net_sockets::set(self.socket_places()?);
        for i in 0..self.procs.len() {
            let ((pid, child), rest) = self.procs[i..]
                .split_first_mut()
                .expect("i is below the length");
            let later: Vec<&Child> = rest.iter().map(|(_, c)| c).collect();
            let p = self
                .image
                .process(*pid)
                .expect("live processes have records");
            let entry = self.image.tree.get(*pid).expect("in the tree");
            let userns = self.userns.as_ref();
            let files = (self.ghosts, &ptys, &later[..]);
            finish(child, p, entry, self.tcp_close, files, userns)?;
            if let Some(&(_, of)) = late.iter().find(|(p, _)| p == pid) {
                ns::net_join::join(child, of).map_err(at(RestoreStage::Files, *pid))?;
            }
        }
        ns::net_sockets::clear();
        self.close_spares()?;
        std::mem::take(&mut self.ttys);
        files::end_stand_ins();
        Ok(filled)
    }

    /// Creates the process of `entry` (from stasis for the root, else from its parent)
    /// with its session, and for a live one its address space and memory.
    fn create(&mut self, entry: &ProcEntry) -> Result<memory::Filled, RestoreError> {
        let pid = entry.pid;
        let root = self.image.inventory.root_pid;
        let p = self.image.process(pid);
        let vmas = p.map_or(&[][..], |p| &p.mm.vmas[..]);
        let span = crate::profile::span("takeover");
        let child = if pid == root {
            let _time = ns::before_root(self.image).map_err(at(RestoreStage::Takeover, pid))?;
            // A cgroup namespace of the tree's own is entered around the root's clone.
            let cg_ns = self.cgroups.map(cgroup::Placed::enter_ns).transpose()?;
            let joined = (self.join_net.map(ns::net::Entered::join).transpose())
                .map_err(at(RestoreStage::Takeover, pid))?;
            let flags = ns::root_clone_flags(self.image, joined.is_some());
            // A user namespace of the tree's: the root is cloned into the namespaces
            // its holder made, from the restoring thread that entered them, or makes
            // them itself as the init of a pid namespace they own.
            let made = ns::user::before_root(self.image, flags).and_then(|mut userns| {
                let flags = match &userns {
                    Some(u) => u.root_flags(self.image, flags),
                    None => flags,
                };
                let made = child::create(pid, vmas, flags);
                userns.iter_mut().for_each(ns::user::Made::leave);
                let made = match (&mut userns, made) {
                    (Some(u), Ok(c)) => match u.root_made(self.image, c.pid()) {
                        Ok(()) => Ok(c),
                        Err(e) => {
                            c.kill_and_reap();
                            Err(e)
                        }
                    },
                    (_, made) => made,
                };
                self.userns = userns;
                made
            });
            drop(cg_ns);
            self.net = joined;
            made
        } else {
            let by = self.forker(pid);
            self.forked_task(entry)
                .and_then(|task| child::adopt_fork(self.shell(by), pid, task, vmas))
        }
        .map_err(at(RestoreStage::Takeover, pid))?;
        if let Some(c) = self.cgroups {
            c.move_process(pid)
                .map_err(at(RestoreStage::Takeover, pid))?;
        }
        if pid == root && self.net.is_none() {
            self.net = ns::net::enter_new(self.image, pid, self.net_lock, self.veths, &self.peers)
                .map_err(at(RestoreStage::Takeover, pid))?;
        }
        if let Some(mounts) = self.mounts.filter(|_| pid == root) {
            mnt::restore(&child, mounts, self.userns.as_ref())
                .map_err(at(RestoreStage::Takeover, pid))?;
            // The files deleted while open, made inside the tree's rebuilt mounts.
            (self.ghosts.make(Some(child.pid()))).map_err(at(RestoreStage::Takeover, pid))?;
        }
        self.enter_nested_namespaces(&child, pid, root)
            .and_then(|()| self.ghosts.make_in(pid, child.pid()))
            .map_err(at(RestoreStage::Takeover, pid))?;
        if pid == root {
            let own_mounts = self.mounts.is_some();
            self.orphan_master = orphan_pty::build(&mut self.ttys, self.image, pid, own_mounts)
                .map_err(at(RestoreStage::Terminal, pid))?;
            pty_devpts::build(&mut self.ttys, self.image, pid, own_mounts)
                .map_err(at(RestoreStage::Terminal, pid))?;
            (self.ttys.open_device_cttys(self.image, pid, own_mounts))
                .map_err(at(RestoreStage::Terminal, pid))?;
        }
        drop(span);
        if pid == root {
            ns::after_root(self.image, &child).map_err(at(RestoreStage::Takeover, pid))?;
        }
        if pid == root && !(self.image.sysv.is_empty() && self.image.mqueue.queues.is_empty()) {
            let _s = crate::profile::span("sysv ipc");
            self.sysv =
                Some(sysv::restore(self.image, pid).map_err(at(RestoreStage::Mappings, pid))?);
        }
        tree::early_subreaper(&child, p).map_err(at(RestoreStage::Session, pid))?;
        self.procs.push((pid, child));
        let far = self.maps_elsewhere(pid, root);
        mnt::maps::note(Some(far.map_err(at(RestoreStage::Mappings, pid))?));
        let deferred = self.plan.defers_setsid(pid);
        if !deferred {
            self.restore_session(entry)?;
        }
        // The forker's memory, as a fork from it inherits it: that of the address
        // space it may share with its own parent, or a helper's or zombie's forker's.
        let parent = (pid != root)
            .then(|| tree::memory_origin(self.image, &self.plan, self.forker(pid)))
            .flatten();
        let filled = match p {
            // A process sharing its parent's address space finds its memory in place.
            Some(p) if !entry.shares_vm => {
                let child = self.shell(pid);
                let served = self.served.get(&pid).map_or(&[][..], |v| v);
                let from = (self.ghosts, self.sealed, served, self.checked);
                let filled = build_memory(child, self.image, p, parent, from)?;
                if let Some(lazy) = self.lazy {
                    lazy.register(child, &p.mm)
                        .map_err(at(RestoreStage::Memory, pid))?;
                }
                filled
            }
            _ => memory::Filled::default(),
        };
        if deferred {
            // The children born in the session it had before its own.
            let early = crate::image::forks::Fork {
                by: pid,
                clone_parent: false,
                early: true,
            };
            self.fork_batch(early)?;
            self.restore_session(entry)?;
        }
        Ok(filled)
    }

    /// `entry`'s session (and controlling terminal), once its shell exists.
    fn restore_session(&self, entry: &ProcEntry) -> Result<(), RestoreError> {
        let child = self.shell(entry.pid);
        let root = self.image.inventory.root_pid;
        tree::restore_session(child, entry, root, self.shell_job)
            .and_then(|()| tty::restore_session(child, entry, &self.image.tty, &self.ttys))
            .map_err(at(RestoreStage::Session, entry.pid))
    }

    /// The process that forks `pid` (the plan's; not the root).
    fn forker(&self, pid: i32) -> i32 {
        self.plan.fork(pid).map_or(0, |f| f.by)
    }

    /// The namespaces process `pid` had below the root's, entered right after its
    /// takeover: a mount namespace it made (`mntns.img`), an ancestor's mount namespace it
    /// is in (`mntns-join.img`), a network namespace it made (`netlinks.img`).
    fn enter_nested_namespaces(
        &self,
        child: &Child,
        pid: i32,
        root: i32,
    ) -> Result<(), RestoreError> {
        if let Some(ns) =
            (self.image.nested_mounts.namespaces.iter()).find(|ns| ns.pid == pid && pid != root)
        {
            let built = self.built_mounts();
            mnt::nested::restore(child, &self.image.dir, ns, &built)?;
        }
        if let Some(j) = self.image.mnt_joins.joins.iter().find(|j| j.pid == pid) {
            let of = (self.procs.iter())
                .find(|(p, _)| *p == j.of)
                .map(|(_, c)| c.pid());
            let of = of.ok_or_else(|| RestoreError::Unsupported {
                what: format!(
                    "pid {pid} joins the mount namespace of {}, not restored",
                    j.of
                ),
            });
            of.and_then(|of| mnt::nested::join(child, of))?;
        }
        if let Some(ns) = (self.image.netlinks.nested.iter()).find(|n| n.pid == pid && pid != root)
        {
            ns::net_nested::restore(child, ns, &self.peers)?;
        }
        if let Some(j) = (self.image.netjoins.joins.iter()).find(|j| j.pid == pid && !j.late) {
            ns::net_join::join(child, self.host_pid(pid, j.of)?)?;
        }
        Ok(())
    }

    /// Each socket of `netns-sockets.img` with the pid (as stasis sees it) of the maker
    /// of its network namespace.
    fn socket_places(&self) -> Result<HashMap<u64, i32>, RestoreError> {
        let host = |of: i32| {
            (self.procs.iter())
                .find(|(p, _)| *p == of)
                .map(|(_, c)| c.pid())
        };
        (self.image.socket_nets.sockets.iter())
            .map(|s| {
                let of = host(s.of).ok_or_else(|| RestoreError::Unsupported {
                    what: format!(
                        "socket:[{}] is of the network namespace of pid {}, not restored",
                        s.ino, s.of
                    ),
                })?;
                Ok((s.ino, of))
            })
            .collect()
    }

    /// The pid stasis sees process `of` under, which `pid` joins the network namespace
    /// of (restored before it).
    fn host_pid(&self, pid: i32, of: i32) -> Result<i32, RestoreError> {
        (self.procs.iter())
            .find(|(p, _)| *p == of)
            .map(|(_, c)| c.pid())
            .ok_or_else(|| RestoreError::Unsupported {
                what: format!("pid {pid} joins the network namespace of {of}, not restored"),
            })
    }

    /// The tree's mount namespaces built so far (the root's own first, then those made
    /// inside the tree), each with a process of it.
    fn built_mounts(&self) -> Vec<mnt::nested::Built<'_>> {
        let host_pid = |pid: i32| {
            (self.procs.iter())
                .find(|(p, _)| *p == pid)
                .map(|(_, c)| c.pid())
        };
        let root = self.image.inventory.root_pid;
        let own = (self.image.mounts.as_ref()).and_then(|m| Some((host_pid(root)?, m)));
        let nested = (self.image.nested_mounts.namespaces.iter())
            .filter_map(|ns| Some((host_pid(ns.pid)?, &ns.mounts)));
        (own.into_iter().chain(nested))
            .map(|(pid, mounts)| mnt::nested::Built { pid, mounts })
            .collect()
    }

    /// The files `pid` maps or runs from another mount namespace of the tree
    /// (`mntns-maps.img`), pids as stasis sees them (those of an earlier restore are
    /// forgotten at the root).
    fn maps_elsewhere(&self, pid: i32, root: i32) -> Result<Vec<mnt::maps::Far>, RestoreError> {
        if pid == root {
            mnt::maps::note(None);
        }
        let host_pid = |p: i32| {
            (self.procs.iter())
                .find(|(q, _)| *q == p)
                .map(|(_, c)| c.pid())
        };
        let mine = (self.image.maps_elsewhere.maps.iter()).filter(|m| m.pid == pid);
        mine.map(|m| match (host_pid(m.pid), host_pid(m.ns_pid)) {
            (Some(at), Some(ns)) => Ok(((at, m.start), ns)),
            _ => Err(RestoreError::Unsupported {
                what: format!(
                    "pid {pid} maps a file of the mount namespace of pid {}, not restored before it",
                    m.ns_pid
                ),
            }),
        })
        .collect()
    }

    /// The fds to open in another mount namespace than their process's, by (pid, fd) as
    /// stasis sees it, with a process of that namespace.
    fn fds_elsewhere(&self) -> Vec<((i32, i32), i32)> {
        let host_pid = |pid: i32| {
            (self.procs.iter())
                .find(|(p, _)| *p == pid)
                .map(|(_, c)| c.pid())
        };
        (self.image.nested_mounts.elsewhere.iter())
            .filter_map(|e| Some(((host_pid(e.pid)?, e.fd), host_pid(e.ns_pid)?)))
            .collect()
    }

    /// The task of `entry`, forked by its forker together with every process of the same
    /// batch not created yet (one batch of `clone3`s), unless that happened already.
    fn forked_task(
        &mut self,
        entry: &ProcEntry,
    ) -> Result<crate::sys::ptrace::Seized, RestoreError> {
        if let Some(task) = self.forked.remove(&entry.pid) {
            return Ok(task);
        }
        if let Some(fork) = self.plan.fork(entry.pid) {
            self.fork_batch(fork)?;
        }
        self.forked
            .remove(&entry.pid)
            .ok_or_else(|| RestoreError::Unsupported {
                what: format!(
                    "pid {} was not created by {}",
                    entry.pid,
                    self.forker(entry.pid)
                ),
            })
    }

    /// Forks, from `like.by`, every process of the plan forked like `like` and not
    /// created yet; they wait in `forked` for their takeover.
    fn fork_batch(&mut self, like: crate::image::forks::Fork) -> Result<(), RestoreError> {
        let created = |pid: i32| self.procs.iter().any(|(p, _)| *p == pid);
        let clone_parent = if like.clone_parent {
            libc::CLONE_PARENT as u64
        } else {
            0
        };
        let forks: Vec<child::Fork> = (self.plan.batch(like))
            .filter(|&p| !created(p) && !self.forked.contains_key(&p))
            .map(|p| {
                self.image
                    .tree
                    .get(p)
                    .expect("the plan's pids are the tree's")
            })
            .map(|e| child::Fork {
                pid: e.pid,
                exit_signal: e.exit_signal,
                share: tree::share_flags(e) | clone_parent,
            })
            .collect();
        if forks.is_empty() {
            return Ok(());
        }
        let (tasks, r) = child::fork_many(self.shell(like.by), &forks);
        self.forked.extend(forks.iter().map(|f| f.pid).zip(tasks));
        r?;
        let parent = self.shell(like.by);
        for &(_, child) in (self.image.ns.pid_for_children.iter())
            .filter(|(p, c)| *p == like.by && forks.iter().any(|f| f.pid == *c))
        {
            ns::pid::enter_for_children(parent, child)
                .map_err(at(RestoreStage::Takeover, like.by))?;
        }
        Ok(())
    }

    /// Ordering requirements: after every process's Files stage (later processes take
    /// their fds from the spares).
    fn close_spares(&self) -> Result<(), RestoreError> {
        for (pid, child) in &self.procs {
            let p = self
                .image
                .process(*pid)
                .expect("live processes have records");
            files::close_spares(child, &p.files).map_err(at(RestoreStage::Files, *pid))?;
        }
        Ok(())
    }

    fn shell(&self, pid: i32) -> &Child {
        &self
            .procs
            .iter()
            .find(|(p, _)| *p == pid)
            .expect("parents come first in tree order")
            .1
    }

    /// Session helpers and forkers exit and are reaped by their parents (their children go to
    /// their reapers), then group helpers, then zombies exit; the parents forget the
    /// signals that raised.
    fn make_zombies(&mut self) -> Result<(), RestoreError> {
        let mut parents: Vec<(i32, u64)> = Vec::new();
        let tree = &self.image.tree;
        let of =
            |state: fn(&ProcState) -> bool| tree.processes.iter().filter(move |e| state(&e.state));
        let helpers = of(|s| matches!(s, ProcState::SessionHelper | ProcState::SessionForker))
            .chain(of(|s| *s == ProcState::GroupHelper))
            .chain(of(|s| matches!(s, ProcState::Zombie { .. })));
        for e in helpers {
            let status = match e.state {
                ProcState::Zombie { status } => status,
                _ => 0,
            };
            let i = self.procs.iter().position(|(p, _)| *p == e.pid);
            let (_, child) = self.procs.remove(i.expect("zombies have a shell"));
            tree::make_zombie(child, e, status).map_err(at(RestoreStage::Zombies, e.pid))?;
            if tree.is_helper(e.pid) {
                tree::reap_helper(self.shell(e.ppid), e.pid)
                    .map_err(at(RestoreStage::Zombies, e.ppid))?;
            }
            if e.exit_signal > 0 {
                parents.push((e.ppid, 1u64 << (e.exit_signal - 1)));
            }
        }
        for (ppid, sig) in parents {
            tree::forget_exit_signals(self.shell(ppid), sig)
                .map_err(at(RestoreStage::Zombies, ppid))?;
        }
        Ok(())
    }

    /// The firewall of a new namespace installed ([`ns::net::Entered::finish`]), the
    /// network locks lifted (the dump's with `lift`, see `netlock::in_place`) and each
    /// connection they held back (`files::reopen_network`), before any process runs.
    /// Ordering requirements: every connection is rebuilt (out of repair mode) and every
    /// closing one replayed first; the
    /// lock of a new namespace ([`ns::net::enter_new`]) held all of its connections, whose
    /// window probes it dropped, so it goes before they probe again.
    fn reopen_network(&mut self, lock: &NetLockImage, lift: bool) -> Result<(), RestoreError> {
        if let Some(net) = self.net.as_mut() {
            net.finish()?;
        }
        if self.tcp_close {
            return Ok(());
        }
        let whole = match self.net.as_mut() {
            Some(net) => net.unlock()?,
            None => false,
        };
        for (pid, child) in &self.procs {
            let p = self
                .image
                .process(*pid)
                .expect("live processes have records");
            files::reopen_network(child, &p.files, *pid, lock, lift, whole)?;
        }
        Ok(())
    }

    /// Lets every process go, the leaves first (the root last).
    fn resume(self) -> Result<(), RestoreError> {
        let mut first = Ok(());
        for (pid, child) in self.procs.into_iter().rev() {
            let p = self
                .image
                .process(pid)
                .expect("live processes have records");
            let entry = self.image.tree.get(pid).expect("in the tree");
            let stopped = entry.state.stop_signal();
            // The helper of a shared address space is unmapped by the first process of
            // the sharing chain, which resumes last (parents after their children).
            let unmap_helper = !entry.shares_vm;
            let r = task::resume(child, &p.task, stopped, unmap_helper)
                .map_err(at(RestoreStage::Resume, pid));
            first = first.and(r);
        }
        first
    }

    /// Kills every process created so far, and reaps what is ours to reap.
    fn kill_all(&mut self) {
        files::end_stand_ins();
        ns::net_sockets::clear();
        let pids: Vec<i32> = self.image.tree.processes.iter().map(|e| e.pid).collect();
        // Children first: a dying pid namespace init waits until each of its children is
        // reaped, which it cannot do while we trace them.
        for (_, task) in self.forked.drain() {
            let _ = task.kill();
        }
        for &pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (_, child) in self.procs.drain(..).rev() {
            child.kill_and_reap();
        }
        for &pid in pids.iter().rev() {
            child::kill_and_reap(pid);
        }
        reap_leftovers(&pids);
    }
}

/// Reaps the killed processes that were not ours to reap when they died: a process whose
/// parent was killed after it is reparented to the restorer (the subreaper) only once that
/// parent is gone, after the first reaping pass. Waits for each pid to disappear from
/// /proc, for at most [`LEFTOVER_WAIT`].
fn reap_leftovers(pids: &[i32]) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let deadline = Instant::now() + LEFTOVER_WAIT;
    let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in left {
            let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(flags));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// How long a failed restore waits for the processes it killed to be gone.
const LEFTOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `move |e| Stage { stage, pid, e }`.
fn at(stage: RestoreStage, pid: i32) -> impl Fn(RestoreError) -> RestoreError {
    move |e| RestoreError::Stage {
        stage: stage.name(),
        pid,
        source: Box::new(e),
    }
}

/// Where [`build_memory`] finds pages besides the plain pages files, and the files whose
/// crc it sums.
type Sources<'a> = (
    &'a files::Ghosts<'a>,
    &'a store::SealedPages,
    &'a [(u64, u64)],
    &'a checked::Checked,
);

/// The address space and the memory of a live process: done before its children are
/// forked from it (they keep what they still shared with it copy-on-write, so its memory
/// must be exactly as saved when they are). One batch for most processes (see
/// `staged.rs`), timed as the memory fill.
fn build_memory(
    child: &Child,
    image: &Image,
    p: &ProcessImage,
    parent: Option<&ProcessImage>,
    (ghosts, sealed, served, checked): Sources,
) -> Result<memory::Filled, RestoreError> {
    let filled = memory::filled_vmas(&p.mm);
    let _s = crate::profile::span("address space+mappings+memory");
    let mut s = Staged::new(child);
    s.stage(RestoreStage::AddressSpace, |s| {
        mm::clear_and_move_vdso(s, &p.mm)
    })?;
    let (mapped, links) = ghosts.mapped(child.pid(), &p.mm)?;
    s.stage(RestoreStage::Mappings, |s| {
        let _s = crate::profile::span("mappings");
        if let Some(parent) = parent {
            let parent_filled = memory::filled_vmas(&parent.mm);
            cow::adopt(s, &p.mm, &filled, &parent.mm, &parent_filled)?;
        }
        mm::map_all(s, &p.mm, &filled, &mapped)
    })?;
    drop(links); // mapped: the other names show " (deleted)" as they did
    let started = Instant::now();
    let mut filled_pages = memory::Filled::default();
    let pages = |stripe| image.pages_path(p.task.pid, stripe);
    s.stage(RestoreStage::Memory, |s| {
        let _s = crate::profile::span("memory fill");
        let in_child = |path: PathBuf| mnt::child_path(image.mounts.is_some(), &path);
        let parents = image.parent_pages.get(&p.task.pid).map_or(&[][..], |v| v);
        filled_pages = memory::fill(
            s, &p.mm, &pages, parents, &in_child, sealed, served, checked,
        )?;
        s.flush()?;
        aio::restore_rings(s.child(), &p.mm)
    })?;
    filled_pages.elapsed = started.elapsed();
    Ok(filled_pages)
}

/// Every later stage of one live process, once the whole tree exists: for a process with
/// one thread and the common kinds of fds, one batch (see `staged.rs`).
///
/// Ordering requirements: as the stages' order ([`RestoreStage`]); each thread's calls of
/// consecutive stages share its batches, which run whenever a stage needs them to (the
/// `clone3`s of Threads always do).
fn finish(
    child: &mut Child,
    p: &ProcessImage,
    entry: &ProcEntry,
    tcp_close: bool,
    (ghosts, ptys, later): (&files::Ghosts, &files::pty::PtyFds, &[&Child]),
    userns: Option<&ns::user::Made>,
) -> Result<(), RestoreError> {
    use RestoreStage as S;
    let task = &p.task;
    let mut s = Staged::new(child);
    if !entry.shares_vm {
        let filled = memory::filled_vmas(&p.mm);
        s.stage(S::Protections, |s| mm::finish_vmas(s, &p.mm, &filled))?;
        s.stage(S::MmFields, |s| mm::set_mm_fields(s, &p.mm))?;
    }
    if !entry.shares_files {
        ghosts.restoring(task.pid);
        s.stage(S::Files, |s| {
            files::restore_fds(s, task, &p.files, tcp_close, (ghosts, ptys), later)?;
            files::map_packet_rings(s.child(), &p.mm, &p.files)
        })?;
    }
    if !entry.shares_fs {
        s.stage(S::Fs, |s| files::restore_fs(s, task, ghosts))?;
    }
    s.stage(S::Attributes, |s| task::restore_attrs(s, task))?;
    s.stage(S::Audit, |s| audit::restore_loginuid(s, task))?;
    s.stage(S::Limits, |s| task::restore_rlimits(s, task))?;
    if !entry.shares_sighand {
        s.stage(S::SigActions, |s| task::restore_sigactions(s, task))?;
    }
    if let Some(made) = userns {
        s.stage(S::SigActions, Staged::flush)?;
        drop(s);
        ns::user::enter(child, made).map_err(at(S::UserNs, task.pid))?;
        s = Staged::new(child);
    }
    if task.threads.len() > 1 {
        s.stage(S::SigActions, Staged::flush)?;
        drop(s);
        threads::create(child, task).map_err(at(S::Threads, task.pid))?;
        s = Staged::new(child);
    }
    if !entry.shares_files {
        s.stage(S::FileOwners, |s| files::restore_owners(s, &p.files))?;
    }
    s.stage(S::ThreadAttrs, |s| task::restore_thread_attrs(s, task))?;
    s.stage(S::ProcAttrs, |s| prctl::restore_process(s, &task.attrs))?;
    s.stage(S::Sched, |s| sched::restore_sched(s, task))?;
    s.stage(S::Timers, |s| timers::restore_timers(s, &task.timers))?;
    s.stage(S::Seccomp, |s| seccomp::restore_seccomp(s, task))?;
    s.stage(S::Creds, |s| creds::restore_creds(s, task))?;
    if !entry.shares_vm {
        s.stage(S::Seals, |s| mm::seal(s, &p.mm))?;
    }
    let stopped = entry.state.stop_signal().is_some();
    s.stage(S::Signals, |s| task::queue_signals(s, task, stopped))?;
    s.flush()
}
