//! Dump: freeze a running process tree, save everything needed to bring it back into an
//! image directory, then kill it or let it run on.
//!
//! Phases, in order: preflight (refuse without touching the root) → freeze (every thread
//! of every process of the tree, `tree.rs`) → per process: collect (/proc, ptrace,
//! queries injected into the task) and memory (pages streamed into the image) → commit
//! (fsync + rename) → kill or release. Any failure before the end detaches and leaves
//! every task running exactly as it was.

pub mod aio;
pub mod audit;
pub mod cgroup;
pub mod cow;
pub mod creds;
mod error;
pub mod files;
pub mod freeze;
pub mod incremental;
pub mod layout;
pub mod memory;
pub mod mm;
pub mod mnt;
pub mod mqueue;
pub mod ns;
pub mod orphan_pty;
pub mod prctl;
pub mod predump;
pub mod pty_devpts;
pub mod sched;
pub mod seccomp;
pub mod shared;
mod stripes;
pub mod sysv;
pub mod task;
pub mod terminal;
pub mod timers;
pub mod track;
pub mod tree;
pub mod tty;
mod two;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::DumpError;

use crate::hooks::{Hooks, NoHooks, Point};
use crate::image::files::FilesImage;
use crate::image::inventory::{CpuInfo, Inventory};
use crate::image::load::{pages_name, record_name};
use crate::image::load::{INVENTORY, TREE};
use crate::image::mm::MmImage;
use crate::image::task::TaskImage;
use crate::image::tree::ProcEntry;
use crate::image::{ImageWriter, Kind};
use crate::proc;
use crate::sys::mem::Mem;
use freeze::Frozen;
use shared::Shared;
use tree::FrozenTree;

/// What `stasis dump` was asked to do.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
    /// The front end takes a new master at restore for the one pty whose master is
    /// outside the tree (a runtime's console; CRIU's `orphan_pts_master`).
    pub orphan_pts_master: bool,
    /// Largest deleted-but-open file whose contents are saved (`--ghost-limit`).
    pub ghost_limit: u64,
    /// `--link-remap`: files whose name was unlinked are kept through a link beside
    /// them (`files/path.rs`).
    pub link_remap: bool,
    /// Save and restore file locks (`--file-locks`).
    pub file_locks: bool,
    /// Record the contents' CRC-32 of the regular files held open (`--file-hash`).
    pub file_hash: bool,
    /// `--tcp-established`, `--tcp-close`, `--ext-unix-sk`, `--skip-in-flight` (see
    /// [`files::FdOptions`]).
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub ext_unix_sk: bool,
    pub skip_in_flight: bool,
    /// `--network-lock`: how connections to peers outside are held (`crate::netlock`).
    pub network_lock: crate::netlock::LockMode,
    /// Freeze this cgroup first (`--freeze-cgroup`).
    pub freeze_cgroup: Option<PathBuf>,
    /// The longest any task may take to stop, answer an injected syscall or exit once
    /// killed (`--timeout`): past it the dump fails naming the task, never hangs.
    pub timeout: Duration,
    /// `--cgroup-root`, `--cgroup-yard`, `--cgroup-dump-controller`.
    pub cgroups: cgroup::CgroupDumpOptions,
    /// `--external mnt[MOUNTPOINT]:KEY`: mounts of the tree's namespace given at restore.
    pub mnt_externals: mnt::Externals,
    /// `--compress`, `--encrypt-key`, `--sign`: how the image's files are stored.
    pub store: crate::image::store::StoreOptions,
    /// `--prev-images-dir`: the parent image (a pre-dump or an earlier dump); pages
    /// unchanged since it are taken from it (`dump/track.rs`). Relative to `dir`.
    pub prev_images_dir: Option<PathBuf>,
    /// `--track-mem`: with `leave_running`, leave the tracking of written pages armed
    /// for a later dump with `--prev-images-dir` pointing at this one.
    pub track_mem: bool,
    /// `--external veth[INSIDE]:OUTSIDE`: veth links of the tree's network namespace
    /// whose other end is outside.
    pub veth_externals: Vec<crate::netns::VethExternal>,
    /// `--external net[INO]:KEY`: the tree's network namespace is the caller's; only
    /// the KEY is saved, the sockets in it are dumped as usual.
    pub net_external: Option<crate::netns::NetExternal>,
    /// `--page-server`: the image is sent there as it is written (`image::sink`); `dir`
    /// then keeps the records only.
    pub remote: Option<crate::image::RemoteSink>,
    /// `--lazy-pages --address A --port P`: private anonymous memory is left out of the
    /// image and served from the frozen tree after the restore (`crate::lazy`).
    pub lazy: Option<LazyServe>,
}

/// Where `dump --lazy-pages` listens for its target.
#[derive(Clone, Debug, Default)]
pub struct LazyServe {
    pub address: String,
    pub port: u16,
    /// A socket the caller bound and listens on already (`stasis migrate --lazy`, which
    /// must tell the target its port first); `address`/`port` are not used then.
    pub listener: Option<std::sync::Arc<std::net::TcpListener>>,
    /// Word that no target will come (`lazy::source::GiveUp`).
    pub give_up: crate::lazy::source::GiveUp,
}

/// CRIU's default `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// Figures for the summary line and `--stats-json`.
#[derive(Clone, Debug, Default)]
pub struct DumpSummary {
    pub pid: i32,
    pub pages_stored: u64,
    pub zero_pages_skipped: u64,
    /// Scanning, reading and writing the pages (before the fsync), summed over processes.
    pub memory: Duration,
    pub frozen: Duration,
    pub total: Duration,
    /// (`--lazy-pages`) Bytes served to the target after the image was written.
    pub lazy_bytes: u64,
    /// (`--lazy-pages`) When the target said its tree runs.
    pub lazy_started: Option<Instant>,
}

/// Dumps the tree rooted at `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpSummary, DumpError> {
    dump_with(opts, &mut NoHooks)
}

/// [`dump`], calling `hooks` at each dump [`Point`].
pub fn dump_with(opts: &DumpOptions, hooks: &mut dyn Hooks) -> Result<DumpSummary, DumpError> {
    let started = Instant::now();
    crate::sys::cpu::warm_up();
    mnt::forget_namespaces();
    crate::sys::deadline::set_bound(Some(opts.timeout));
    let _disarm = crate::sys::deadline::Disarm;
    let span = crate::profile::span("preflight");
    freeze::preflight(opts.pid, opts.shell_job)?;
    let mounts = mnt::plan(opts.pid, &opts.mnt_externals)?;
    let keep = opts.leave_running && (opts.track_mem || opts.prev_images_dir.is_some());
    let mut chain = incremental::Incremental::open(
        &opts.dir,
        opts.prev_images_dir.as_deref(),
        keep,
        &opts.store,
    )?;
    let mut writer = ImageWriter::create(&opts.dir)?;
    writer.set_store(&opts.store);
    writer.set_remote(opts.remote.clone());
    // Ordering requirements: entered before anything reads the tree's sockets, left
    // (on drop) once the dump is over.
    let in_net = ns::net::enter_tree(opts.pid)?;
    // Bound before the freeze: a port in use fails the dump with the tree untouched.
    let listener = opts.lazy.as_ref().map(lazy_listener).transpose()?;
    drop(span);
    notify(hooks, Point::PreDump, opts.pid)?;
    let adopted = match &opts.freeze_cgroup {
        Some(path) => seize_cgroup(path)?,
        None => freeze::Adopted::default(),
    };
    // A dump that keeps a tracked tree running writes its image after the release
    // (`layout::Early`, `stripes::Staged`): the tree is frozen only to copy what changed.
    let mut early = match chain.keeps() {
        true => Some(layout::Early::read(opts.pid)?),
        false => None,
    };
    if let Some(e) = &early {
        stripes::reserve_staging(e.written_bytes());
    }
    let span = crate::profile::span("freeze tree");
    let tree = tree::freeze_tree(opts.pid, opts.shell_job, adopted)?;
    drop(span);
    let frozen = Instant::now();
    let still = ns::Frozen::remember();
    notify(hooks, Point::NetworkLock, opts.pid)?;
    let saved = save_tree(
        &tree,
        opts,
        writer,
        (mounts.as_ref(), in_net.as_ref()),
        &mut chain,
        early.as_mut(),
    );
    stripes::drop_reserve();
    drop(still);
    let (mut summary, mut held, image) = saved?;
    let deferred = match early {
        Some(early) => Some((early, image)),
        None => {
            image.commit(&opts.store)?;
            notify(hooks, Point::PostDump, opts.pid)?;
            None
        }
    };
    held.iter_mut().for_each(files::Held::keep_links);
    let served = match &listener {
        Some(l) => Some(serve_lazily(l, opts, &mut summary)?),
        None => None,
    };
    // Ordering requirements: sockets held in repair mode leave it before a released
    // tree runs again; after a kill, our duplicates are closed still in repair mode.
    if let Some(why) = served.flatten() {
        drop(held);
        tree.release()?;
        notify(hooks, Point::NetworkUnlock, opts.pid)?;
        return Err(DumpError::unsupported(format!(
            "the post-copy link failed before the target ran the tree ({why}): the tree \
             was resumed here"
        )));
    }
    if opts.leave_running {
        drop(held);
        tree.release()?;
        notify(hooks, Point::NetworkUnlock, opts.pid)?;
    } else {
        let _span = crate::profile::span("kill");
        tree.kill()?;
        held.into_iter().for_each(files::Held::keep_for_restore);
    }
    summary.frozen = frozen.elapsed();
    if let Some((early, image)) = deferred {
        // Ordering requirements: the flags read before the freeze are checked before
        // the image is committed; a failure leaves no image (the tree runs on).
        early.check()?;
        // The post-dump hook sees the committed image (a stream sends it), after the
        // release here.
        image.commit(&opts.store)?;
        notify(hooks, Point::PostDump, opts.pid)?;
    }
    chain.finish()?;
    summary.total = started.elapsed();
    Ok(summary)
}

/// The socket `--lazy-pages` serves on: the caller's, or bound here.
fn lazy_listener(l: &LazyServe) -> Result<std::net::TcpListener, DumpError> {
    let Some(bound) = &l.listener else {
        return Ok(crate::lazy::source::listen(&l.address, l.port)?);
    };
    bound.try_clone().map_err(|source| {
        DumpError::from(crate::lazy::LazyError::Listen {
            address: l.address.clone(),
            port: l.port,
            source,
        })
    })
}

/// Serves the frozen tree's left-out pages (`lazy::source`) once the image is
/// committed; `Some(why)` when the link failed before the target ran the tree.
fn serve_lazily(
    listener: &std::net::TcpListener,
    opts: &DumpOptions,
    summary: &mut DumpSummary,
) -> Result<Option<String>, DumpError> {
    let image = crate::image::lazy::load(&opts.dir)?.unwrap_or_default();
    let give_up = opts.lazy.as_ref().map(|l| l.give_up.clone());
    let _span = crate::profile::span("serve pages");
    match crate::lazy::source::serve(listener, &image, &give_up.unwrap_or_default())? {
        crate::lazy::source::Ending::Complete { bytes, started } => {
            summary.lazy_bytes = bytes;
            summary.lazy_started = Some(started);
            Ok(None)
        }
        crate::lazy::source::Ending::NeverStarted { why } => Ok(Some(why)),
    }
}

/// Calls the hook of `point`; its refusal becomes [`DumpError::Hook`].
fn notify(hooks: &mut dyn Hooks, point: Point, pid: i32) -> Result<(), DumpError> {
    hooks.at(point, pid).map_err(|reason| DumpError::Hook {
        point: point.criu_name(),
        pid,
        reason,
    })
}

/// Freezes the cgroup, seizes every task in it and asks each to stop, then thaws it: each
/// task traps into our interrupt before it runs another user instruction (so it forks
/// nothing more).
fn seize_cgroup(path: &std::path::Path) -> Result<freeze::Adopted, DumpError> {
    let cg = cgroup::freeze(path)?;
    let mut adopted = freeze::Adopted::default();
    for tid in cg.tids()? {
        // A task that exits meanwhile is not seized; the tree scan decides what it was.
        if let Ok(task) = crate::sys::ptrace::seize(tid) {
            task.request_interrupt()?;
            adopted.interrupted.insert(tid, task);
        }
    }
    cg.thaw()?;
    Ok(adopted)
}

/// An image whose records are written, but maybe not its pages (`stripes::Staged`).
struct Unsealed {
    writer: ImageWriter,
    staged: Vec<stripes::Staged>,
}

impl Unsealed {
    /// Writes the staged pages, seals and commits the image.
    ///
    /// Ordering requirements: for a dump that writes while frozen, before the tree is
    /// released or killed, so that a failure leaves it running untouched.
    fn commit(self, store: &crate::image::store::StoreOptions) -> Result<(), DumpError> {
        {
            let _span = crate::profile::span("staged pages");
            self.staged
                .into_iter()
                .try_for_each(stripes::Staged::write)?;
        }
        {
            let _span = crate::profile::span("seal");
            (self.writer.seal(store)).map_err(crate::image::ImageError::from)?;
        }
        let _span = crate::profile::span("commit");
        self.writer.commit()?;
        Ok(())
    }
}

/// Writes every process, then the tree and the inventory; the image is left to
/// [`Unsealed::commit`]. With `early`, mappings are read as `layout::Early` says and
/// pages are staged in memory.
fn save_tree(
    tree: &FrozenTree,
    opts: &DumpOptions,
    writer: ImageWriter,
    (mounts, in_net): (Option<&mnt::Plan>, Option<&ns::net::InTree>),
    chain: &mut incremental::Incremental,
    early: Option<&mut layout::Early>,
) -> Result<(DumpSummary, Vec<files::Held>, Unsealed), DumpError> {
    let stage = early.is_some();
    let mut shared = Shared::default();
    shared.memory_from = tree::memory_from(&tree.record)?;
    let mut summary = DumpSummary {
        pid: opts.pid,
        ..Default::default()
    };
    let pids: Vec<i32> = tree.procs.iter().map(Frozen::pid).collect();
    let mut fd_opts = fd_options(opts, &pids);
    mnt::maps::set_tree(&pids);
    let nested = mnt::nested::plan(&tree.record, &pids, mounts.map(mnt::Plan::image))?;
    let mut held = Vec::new();
    // The mode of the lock of the tree's own network namespace, when it has one.
    let mut ns_lock_mode = None;
    let mut tables = Vec::new();
    let mut staged = Vec::new();
    chain.begin(opts.pid, &pids)?;
    if opts.lazy.is_some() {
        // A child is forked from its restored parent: the parent's memory is whole first.
        let from = shared.memory_from.clone();
        let forks = |pid: i32| {
            tree.record.children(pid).next().is_some() || from.values().any(|&f| f == pid)
        };
        shared.lazy_pids = (tree.record.alive())
            .filter(|e| !e.shares_vm && !forks(e.pid))
            .map(|e| e.pid)
            .collect();
    }
    for (task, entry) in tree.procs.iter().zip(tree.record.alive()) {
        if !entry.shares_vm {
            chain.join(task.pid())?;
        }
    }
    let layouts = {
        let _span = crate::profile::span("layouts");
        layout::layouts(tree, early)?
    };
    {
        let _span = crate::profile::span("namespaces");
        let outs = (&mut fd_opts.socket_netns, &mut fd_opts.tun_devices);
        if let Some(mode) = ns::dump(tree, &writer, in_net, opts, outs.0, outs.1)? {
            // The whole namespace is held: no connection needs a lock of its own.
            held.push(files::Held::namespace_locked(opts.pid, mode));
            fd_opts.network_lock = crate::netlock::LockMode::Skip;
            ns_lock_mode = Some(mode);
        }
    }
    {
        let _span = crate::profile::span("sysv ipc");
        let vmas: Vec<&[crate::image::mm::Vma]> = layouts.iter().map(|l| &l.vmas[..]).collect();
        let root_ppid = tree.record.alive().next().map_or(0, |e| e.ppid);
        sysv::dump(&pids, root_ppid, &vmas, &writer)?;
    }
    {
        let _span = crate::profile::span("cgroups");
        let threads: Vec<(i32, Vec<i32>)> = (tree.procs.iter())
            .map(|p| (p.pid(), p.threads().iter().map(|t| t.tid()).collect()))
            .collect();
        cgroup::dump(&threads, &opts.cgroups, &writer)?;
    }
    for ((task, entry), layout) in tree.procs.iter().zip(tree.record.alive()).zip(layouts) {
        let on = (&writer, stage);
        let (stats, s, h, files) = save(task, entry, layout, &fd_opts, on, &mut shared, chain)?;
        staged.extend(s);
        held.push(h);
        tables.push((task.pid(), files));
        summary.pages_stored += stats.pages_stored;
        summary.zero_pages_skipped += stats.zero_pages_skipped;
        summary.memory += stats.elapsed;
    }
    if opts.lazy.is_some() {
        let record = crate::image::lazy::LazyImage {
            session: crate::image::chain::new_id(),
            processes: std::mem::take(&mut shared.lazy),
        };
        writer.write_record(crate::image::lazy::LAZY, Kind::Lazy, &record)?;
    }
    let span = crate::profile::span("files records");
    files::tun::finish(&fd_opts, &mut tables)?;
    write_files(&writer, &mut tables)?;
    write_ghosts(&writer, &fd_opts.ghosts.borrow(), &fd_opts.pids)?;
    if let Some(plan) = mounts {
        plan.save(&writer)?;
    }
    nested.save(&writer)?;
    mnt::maps::save(&writer)?;
    write_tty(&writer, &tree.record, &tables, opts.shell_job)?;
    let ns_locked = held.iter().any(files::Held::locks_namespace);
    write_netlock(
        &writer,
        ns_lock_mode.unwrap_or(opts.network_lock),
        &tables,
        ns_locked.then_some(opts.pid),
    )?;
    drop(span);
    tree::check_sessions(&tree.record, &shared.subreapers)?;
    writer.write_record(TREE, Kind::Tree, &tree.record)?;
    let owners: Vec<i32> = (tree.procs.iter().zip(tree.record.alive()))
        .filter(|(_, e)| !e.shares_vm)
        .map(|(t, _)| t.pid())
        .collect();
    let record = chain.record(&owners, false);
    writer.write_record(crate::image::chain::CHAIN, Kind::Chain, &record)?;
    writer.write_record(
        INVENTORY,
        Kind::Inventory,
        &inventory(&pids, opts.shell_job),
    )?;
    Ok((summary, held, Unsealed { writer, staged }))
}

/// Links the objects split across processes, checks the tables as a restore will, and
/// writes them. Ordering requirements: after every process's table is known.
fn write_files(writer: &ImageWriter, tables: &mut [(i32, FilesImage)]) -> Result<(), DumpError> {
    files::split::link(tables)?;
    files::unix_peercred::builders(tables)?;
    for (pid, files) in tables.iter() {
        let name = record_name("files", *pid);
        crate::image::validate::files(files, std::path::Path::new(&name))?;
    }
    let order: Vec<_> = tables.iter().map(|(pid, f)| (*pid, f)).collect();
    crate::image::validate::inherited_fds(&order, std::path::Path::new(TREE))?;
    for (pid, files) in tables.iter() {
        writer.write_record(&record_name("files", *pid), Kind::Files, files)?;
    }
    Ok(())
}

/// `ghosts.img`, if some file of the tree was deleted while in use.
/// `ghost-homes.img` too, if some of them are made elsewhere than at their path in the
/// root's mount namespace.
fn write_ghosts(
    writer: &ImageWriter,
    ghosts: &files::ghost::Table,
    pids: &[i32],
) -> Result<(), DumpError> {
    use crate::image::ghost::{GHOSTS, HOMES};
    let image = ghosts.image();
    if image.files.is_empty() {
        return Ok(());
    }
    image.validate(std::path::Path::new(GHOSTS))?;
    let homes = ghosts.homes(pids)?;
    writer.write_record(GHOSTS, Kind::Ghosts, image)?;
    if !homes.homes.is_empty() {
        homes.validate(image, std::path::Path::new(HOMES))?;
        writer.write_record(HOMES, Kind::GhostHomes, &homes)?;
    }
    Ok(())
}

/// `netlock.img`: the lock mode, and the processes whose connections the lock holds.
fn write_netlock(
    writer: &ImageWriter,
    mode: crate::netlock::LockMode,
    tables: &[(i32, FilesImage)],
    ns_lock: Option<i32>,
) -> Result<(), DumpError> {
    use crate::image::netlock::{NetLockImage, NETLOCK};
    let mut image = NetLockImage::of_tables(mode, tables.iter().map(|(pid, f)| (*pid, f)));
    if let Some(root) = ns_lock.filter(|r| !image.pids.contains(r)) {
        image.pids.insert(0, root);
    }
    writer.write_record(NETLOCK, Kind::NetLock, &image)?;
    Ok(())
}

/// `tty.img`, checked as a restore will. Ordering requirements: after the fd tables are
/// linked.
fn write_tty(
    writer: &ImageWriter,
    tree: &crate::image::tree::TreeImage,
    tables: &[(i32, FilesImage)],
    shell_job: bool,
) -> Result<(), DumpError> {
    use crate::image::orphan_pty::ORPHAN_PTY;
    use crate::image::tty::TTY;
    let (tty, orphans) = tty::collect(tree, tables, shell_job)?;
    let orphans = orphan_pty::collect(&orphans)?;
    let order: Vec<_> = tables.iter().map(|(pid, f)| (*pid, f)).collect();
    let indexes: Vec<u32> = orphans.ptys.iter().map(|p| p.index).collect();
    crate::image::tty::check(&tty, tree, &order, &indexes, std::path::Path::new(TTY))?;
    // No terminal: an absent record reads as an empty one (format 12).
    if tty != crate::image::tty::TtyImage::default() {
        writer.write_record(TTY, Kind::Tty, &tty)?;
    }
    if !orphans.ptys.is_empty() {
        writer.write_record(ORPHAN_PTY, Kind::OrphanPty, &orphans)?;
    }
    let root = tree.processes.first().map_or(0, |e| e.pid);
    let devpts = pty_devpts::collect(root, tables, &indexes)?;
    // Every pty of the host's devpts: no record, as in format 12.
    if !devpts.ptys.is_empty() {
        use crate::image::pty_devpts::PTY_DEVPTS;
        writer.write_record(PTY_DEVPTS, Kind::PtyDevpts, &devpts)?;
    }
    Ok(())
}

fn fd_options(opts: &DumpOptions, pids: &[i32]) -> files::FdOptions {
    files::FdOptions {
        shell_job: opts.shell_job,
        orphan_pts_master: opts.orphan_pts_master,
        ghost_limit: opts.ghost_limit,
        link_remap: opts.link_remap,
        file_locks: opts.file_locks,
        file_hash: opts.file_hash,
        pids: pids.to_vec(),
        tcp_established: opts.tcp_established,
        tcp_close: opts.tcp_close,
        ext_unix_sk: opts.ext_unix_sk,
        skip_in_flight: opts.skip_in_flight,
        network_lock: opts.network_lock,
        socket_netns: Default::default(),
        tree_sockets: Default::default(),
        tree_files: Default::default(),
        ghosts: Default::default(),
        tree_ptys: Default::default(),
        device_nodes: Default::default(),
        tun_devices: Default::default(),
        tun_files: Default::default(),
    }
}

/// Collects and writes the records and pages of one frozen process; returns its page
/// figures, the sockets it holds in repair mode and its fd table (written once the whole
/// tree is known).
fn save(
    task: &Frozen,
    entry: &ProcEntry,
    layout: layout::Layout,
    fd_opts: &files::FdOptions,
    (writer, stage): (&ImageWriter, bool),
    shared: &mut Shared,
    chain: &mut incremental::Incremental,
) -> Result<SavedProcess, DumpError> {
    let pid = task.pid();
    let layout::Layout {
        smaps,
        mut vmas,
        cow,
    } = layout;
    // Ordering requirements: mappings are linked before the fds are checked against them.
    let shmem = if entry.shares_vm {
        shared::LinkedShmem::default() // its parent's address space, linked already
    } else {
        shared.link_shmem(
            pid,
            &smaps,
            &mut vmas,
            &mut fd_opts.ghosts.borrow_mut(),
            fd_opts.ghost_limit,
        )?
    };
    let (mut files, held, owner_fds) = if entry.shares_files {
        (FilesImage::default(), files::Held::new(pid), Vec::new())
    } else {
        let _span = crate::profile::span("fd table");
        let (mut files, mut held, owner_fds) = files::fd_table(pid, fd_opts)?;
        shared.link_unlinked_fds(pid, &mut files)?;
        if fd_opts.pids.len() > 1 {
            // Only processes of one tree share open file descriptions.
            shared.link_files(pid, &mut files)?;
            held.drop_unused_links(&files);
        }
        files::epoll::keep_created(&mut files);
        (files, held, owner_fds)
    };
    files::packet::check_ring_mappings(pid, &vmas, &files, entry.shares_files)?;
    let mut threads = task
        .threads()
        .iter()
        .map(|t| task::thread_state(pid, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shared_pending = task.leader().pending(true)?;
    task::add_withheld(task, &mut shared_pending, &mut threads);
    let seccomp = seccomp::collect(pid, task.threads(), &mut threads)?;
    let (ip, vdso_text) = mm::find_syscall_insn(pid, &vmas)?;
    let known = task::Known {
        timers: &proc::timers(pid)?,
        tids: &threads.iter().map(|t| t.tid).collect::<Vec<_>>(),
        aio_rings: (vmas.iter())
            .filter(|v| matches!(v.kind, crate::image::mm::VmaKind::Aio(_)))
            .map(|v| v.start)
            .collect(),
        owner_fds: &owner_fds,
    };
    let span = crate::profile::span("queries");
    let q = task::query(task.threads(), &mut threads, ip, &known)?;
    drop(span);
    if q.attrs.child_subreaper {
        shared.subreapers.insert(pid);
    }
    for (fd, owner) in &q.owners {
        files
            .owners
            .extend(files::fown::reported(pid, *fd, owner, &fd_opts.pids)?);
    }
    files.owners.sort_by_key(|o| o.fd);
    let stat = proc::stat(pid)?;
    let status = proc::status(pid)?;
    let creds = creds::creds(&status, q.securebits);
    let thread_creds = creds::other_threads(pid, &threads[1..], &q.thread_securebits, &creds)?;

    let (mstats, staged) = if entry.shares_vm {
        // Its pages at restore are those of the address space it shares.
        let restored = shared.restored_pages.get(&entry.ppid).cloned();
        shared
            .restored_pages
            .insert(pid, restored.unwrap_or_default());
        Default::default()
    } else {
        let space = Space {
            smaps: &smaps,
            vmas,
            cow,
            shmem,
            fields: mm::fields(&stat, q.brk),
            vdso_text,
        };
        let unchanged = chain.unchanged(pid, &space.vmas, task.leader(), ip)?;
        let source = shared.memory_from.get(&pid).copied().unwrap_or(entry.ppid);
        save_mm(pid, source, space, (writer, stage), shared, &unchanged)?
    };
    let mut sigactions = q.sigactions;
    if entry.shares_sighand {
        sigactions.clear(); // the parent's record holds the table
    }
    let task_image = TaskImage {
        pid,
        pgid: stat.pgrp,
        sid: stat.session,
        ppid: stat.ppid,
        comm: proc::comm(pid)?,
        personality: proc::personality(pid)?,
        umask: status.umask.unwrap_or(0o022),
        rlimits: proc::limits(pid)?,
        cwd: files::ghost::cwd(pid, &mut fd_opts.ghosts.borrow_mut())?,
        root: proc::link(pid, "root")?.to_string_lossy().into_owned(),
        creds,
        oom_score_adj: proc::oom_score_adj(pid)?,
        attrs: q.attrs,
        timers: q.timers,
        sigactions,
        shared_pending,
        audit: audit::audit(pid, known.tids)?,
        thread_creds,
        threads,
        seccomp,
    };
    writer.write_record(&record_name("task", pid), Kind::Task, &task_image)?;
    Ok((mstats, staged, held, files))
}

/// What [`save`] returns: page figures, staged pages, the sockets held in repair mode
/// and the fd table.
type SavedProcess = (
    memory::MemoryStats,
    Vec<stripes::Staged>,
    files::Held,
    FilesImage,
);

/// The address space of one process as collected: its maps, what it shares
/// copy-on-write with its parent, and the mm fields.
struct Space<'a> {
    smaps: &'a [proc::MapEntry],
    vmas: Vec<crate::image::mm::Vma>,
    cow: Vec<cow::Found>,
    shmem: shared::LinkedShmem,
    fields: crate::image::mm::MmFields,
    /// The vDSO's bytes, when the syscall search read them.
    vdso_text: Option<Vec<u8>>,
}

/// Writes `pages-PID.img` and `mm-PID.img` of a process that does not share its parent's
/// (`ppid`) address space (a sharer's is its parent's, saved already).
///
/// Ordering requirements: after the injected queries (their scratch page is gone).
fn save_mm(
    pid: i32,
    ppid: i32,
    space: Space,
    (writer, stage): (&ImageWriter, bool),
    shared: &mut Shared,
    unchanged: &[(u64, u64)],
) -> Result<(memory::MemoryStats, Vec<stripes::Staged>), DumpError> {
    let overrides = shmem_overrides(pid, space.smaps, &space.shmem)?;
    let vdso_symbols = vdso_symbols(pid, mm::vdso_range(&space.vmas), space.vdso_text)?;
    let inherited = cow::shared(&space.cow);
    let span = crate::profile::span("pages");
    let open = |stripe| writer.pages(&pages_name(pid, stripe));
    let lazy = match shared.lazy_pids.contains(&pid) {
        true => crate::lazy::plan::lazy_vmas(&space.vmas, &inherited),
        false => Vec::new(),
    };
    let from = memory::Sources {
        inherited: &inherited,
        unchanged,
        running: false,
        stage,
        lazy: &lazy,
    };
    let saved = memory::dump(pid, &space.vmas, &overrides, from, &open)?;
    let (page_runs, guards, mstats) = (saved.runs, saved.guards, saved.stats);
    let (served, page_runs): (Vec<_>, Vec<_>) =
        (page_runs.into_iter()).partition(|r| r.stripe == memory::LAZY_STRIPE);
    if !served.is_empty() {
        let runs = (served
            .iter()
            .map(|r| (r.addr, r.addr + r.pages * crate::abi::PAGE_SIZE)))
        .collect();
        shared
            .lazy
            .push(crate::image::lazy::LazyProcess { pid, runs });
    }
    drop(span);
    aio::check_settled(pid, &space.vmas)?;
    let parent_pages = shared.restored_pages.get(&ppid);
    let cow_ranges = cow::ranges(&space.cow, &page_runs, parent_pages.map_or(&[][..], |p| p));
    let restored = cow::pages_at_restore(&page_runs, &space.cow);
    shared.restored_pages.insert(pid, restored);
    let mm = MmImage {
        vmas: space.vmas,
        page_runs,
        fields: space.fields,
        auxv: proc::auxv(pid)?,
        exe: mm::exe(pid)?,
        vdso_symbols,
        shmem: space.shmem.refs,
        guards,
        cow: cow_ranges,
        shmem_objects: space.shmem.objects,
    };
    let _span = crate::profile::span("mm record");
    writer.write_record(&record_name("mm", pid), Kind::Mm, &mm)?;
    Ok((mstats, saved.staged))
}

/// Each part of a shared memory object is saved by its first mapping in the tree, from
/// the object's data; the other mappings of that part save none of it. (A private
/// mapping of such an object saves its own pages.)
fn shmem_overrides(
    pid: i32,
    smaps: &[proc::MapEntry],
    shmem: &shared::LinkedShmem,
) -> Result<memory::Overrides, DumpError> {
    let mut out = memory::Overrides::new();
    for r in &shmem.refs {
        // A private mapping of the object saves its own pages.
        let Some(mine) = shmem.save.get(&r.start) else {
            continue;
        };
        let ranges = if mine.is_empty() {
            Vec::new()
        } else {
            let m = smaps
                .iter()
                .find(|m| m.start == r.start)
                .expect("shmem refs come from these maps");
            let data = shared::shmem_data(pid, m)?;
            memory::subtract(&data, &memory::subtract(&data, mine))
        };
        out.insert(r.start, ranges);
    }
    Ok(out)
}

/// The symbols of the vDSO at `vdso`, from `text` when the syscall search read it.
fn vdso_symbols(
    pid: i32,
    vdso: Option<(u64, u64)>,
    text: Option<Vec<u8>>,
) -> Result<Vec<(String, u64)>, DumpError> {
    let Some((start, end)) = vdso else {
        return Ok(Vec::new());
    };
    let text = match text {
        Some(text) => text,
        None => {
            let mut text = vec![0u8; (end - start) as usize];
            Mem::open(pid, false)?.read(start, &mut text)?;
            text
        }
    };
    crate::vdso::symbols(&text)
        .map_err(|e| DumpError::unsupported(format!("vDSO of pid {pid}: {e}")))
}

fn inventory(pids: &[i32], shell_job: bool) -> Inventory {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Inventory {
        stasis_version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        kernel_release: field(|u| u.release()),
        hostname: field(|u| u.nodename()),
        root_pid: pids[0],
        pids: pids.to_vec(),
        cpu: CpuInfo {
            xcr0: crate::sys::cpu::xcr0(),
            xsave_size: crate::sys::cpu::xsave_size(),
            model_name: crate::sys::cpu::model_name(),
        },
        shell_job,
    }
}
