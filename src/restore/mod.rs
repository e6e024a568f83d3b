//! Restore: rebuild a dumped task from an image directory, with its pid, address space,
//! registers, signals and files, and let it carry on.
//!
//! Everything in the image and everything the host must provide is verified before any
//! process is created. Then the task is rebuilt stage by stage ([`RestoreStage`]), each
//! stage run by the new task itself through injected syscalls; a failure kills the
//! half-built task and reports the stage.

mod audit;
mod child;
mod creds;
mod error;
mod files;
mod memory;
mod mm;
mod prctl;
mod sched;
mod seccomp;
mod task;
mod threads;
mod timers;
pub mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::RestoreError;

use crate::image::{Image, ProcessImage};
use child::Child;

/// Top of the x86_64 user address space (4-level paging).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// What `stasis restore` was asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub dir: PathBuf,
    pub shell_job: bool,
}

/// The restored task.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    pub pid: i32,
    pub pages: u64,
    pub total: Duration,
}

/// The stages of rebuilding one process, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStage {
    /// Create the child with the exact pid, seize it, map the helper page.
    Takeover,
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
    /// The fd table.
    Files,
    /// cwd, root, umask.
    Fs,
    /// Session and process group.
    Ids,
    /// Personality.
    Attributes,
    /// Audit loginuid (before Threads: they inherit it).
    Audit,
    /// Resource limits.
    Limits,
    /// Signal handlers.
    SigActions,
    /// Create the other threads with their tids (`clone3` injected into the leader).
    Threads,
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
    /// Requeue pending signals.
    Signals,
    /// Seal sealed mappings.
    Seals,
    /// Load every thread's registers, unmap the helper, resume.
    Resume,
}

impl RestoreStage {
    fn name(self) -> &'static str {
        match self {
            Self::Takeover => "takeover",
            Self::AddressSpace => "address space",
            Self::Mappings => "mappings",
            Self::Memory => "memory",
            Self::Protections => "protections",
            Self::MmFields => "mm fields",
            Self::Files => "files",
            Self::Fs => "fs",
            Self::Ids => "ids",
            Self::Attributes => "attributes",
            Self::Audit => "audit loginuid",
            Self::Limits => "resource limits",
            Self::SigActions => "sigactions",
            Self::Threads => "threads",
            Self::ThreadAttrs => "thread attributes",
            Self::ProcAttrs => "process attributes",
            Self::Sched => "scheduling",
            Self::Timers => "timers",
            Self::Seccomp => "seccomp",
            Self::Creds => "credentials",
            Self::Signals => "signals",
            Self::Seals => "seals",
            Self::Resume => "resume",
        }
    }
}

/// Loads and verifies the image, then rebuilds its root process.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let image = Image::load(&opts.dir)?;
    if image.processes.len() != 1 {
        return Err(RestoreError::Unsupported {
            what: "images of process trees are not supported yet".into(),
        });
    }
    verify::host_accepts(&image)?;
    let shell_job = opts.shell_job || image.inventory.shell_job;
    let p = &image.processes[0];
    let pages = rebuild(&image, p, shell_job)?;
    Ok(Restored {
        pid: p.task.pid,
        pages,
        total: started.elapsed(),
    })
}

fn rebuild(image: &Image, p: &ProcessImage, shell_job: bool) -> Result<u64, RestoreError> {
    let pid = p.task.pid;
    let at = |stage: RestoreStage| {
        move |e: RestoreError| RestoreError::Stage {
            stage: stage.name(),
            pid,
            source: Box::new(e),
        }
    };
    let mut child = child::create(pid, &p.mm.vmas).map_err(at(RestoreStage::Takeover))?;
    match build(&mut child, image, p, shell_job) {
        Ok(pages) => {
            task::resume(child, &p.task).map_err(at(RestoreStage::Resume))?;
            Ok(pages)
        }
        Err(e) => {
            child.kill_and_reap();
            Err(e)
        }
    }
}

fn build(
    child: &mut Child,
    image: &Image,
    p: &ProcessImage,
    shell_job: bool,
) -> Result<u64, RestoreError> {
    let pid = p.task.pid;
    let stage = |s: RestoreStage, r: Result<(), RestoreError>| {
        r.map_err(|e| RestoreError::Stage {
            stage: s.name(),
            pid,
            source: Box::new(e),
        })
    };
    let filled = memory::filled_vmas(&p.mm);
    stage(
        RestoreStage::AddressSpace,
        mm::clear_and_move_vdso(child, &p.mm),
    )?;
    stage(RestoreStage::Mappings, mm::map_all(child, &p.mm, &filled))?;
    let mut pages = 0;
    stage(
        RestoreStage::Memory,
        memory::fill(child, &p.mm, &image.pages_path(pid)).map(|n| pages = n),
    )?;
    stage(
        RestoreStage::Protections,
        mm::finish_vmas(child, &p.mm, &filled),
    )?;
    stage(RestoreStage::MmFields, mm::set_mm_fields(child, &p.mm))?;
    stage(RestoreStage::Files, files::restore_fds(child, &p.files))?;
    stage(RestoreStage::Fs, files::restore_fs(child, &p.task))?;
    stage(
        RestoreStage::Ids,
        task::restore_ids(child, &p.task, shell_job),
    )?;
    stage(
        RestoreStage::Attributes,
        task::restore_attrs(child, &p.task),
    )?;
    stage(RestoreStage::Audit, audit::restore_loginuid(child, &p.task))?;
    stage(RestoreStage::Limits, task::restore_rlimits(child, &p.task))?;
    stage(
        RestoreStage::SigActions,
        task::restore_sigactions(child, &p.task),
    )?;
    stage(RestoreStage::Threads, threads::create(child, &p.task))?;
    stage(
        RestoreStage::ThreadAttrs,
        task::restore_thread_attrs(child, &p.task),
    )?;
    stage(
        RestoreStage::ProcAttrs,
        prctl::restore_process(child, &p.task.attrs),
    )?;
    stage(RestoreStage::Sched, sched::restore_sched(child, &p.task))?;
    stage(
        RestoreStage::Timers,
        timers::restore_timers(child, &p.task.timers),
    )?;
    stage(
        RestoreStage::Seccomp,
        seccomp::restore_seccomp(child, &p.task),
    )?;
    stage(RestoreStage::Creds, creds::restore_creds(child, &p.task))?;
    stage(RestoreStage::Signals, task::queue_signals(child, &p.task))?;
    stage(RestoreStage::Seals, mm::seal(child, &p.mm))?;
    Ok(pages / crate::abi::PAGE_SIZE)
}
