//! Dump: freeze a running task, save everything needed to bring it back into an image
//! directory, then kill it or let it run on.
//!
//! Phases, in order: preflight (refuse without touching the task) → freeze (seize +
//! interrupt) → collect (/proc, ptrace, queries injected into the task) → memory (pages
//! streamed into the image) → commit (fsync + rename) → kill or release.
//! Any failure before the end detaches and leaves the task running exactly as it was.

pub mod audit;
pub mod creds;
mod error;
pub mod files;
pub mod freeze;
pub mod memory;
pub mod mm;
pub mod prctl;
pub mod sched;
pub mod seccomp;
pub mod task;
pub mod timers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::DumpError;

use crate::image::inventory::{CpuInfo, Inventory};
use crate::image::load::record_name;
use crate::image::mm::MmImage;
use crate::image::task::TaskImage;
use crate::image::{ImageWriter, Kind};
use crate::proc;
use crate::sys::mem::Mem;
use freeze::Frozen;

/// What `stasis dump` was asked to do.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
}

/// Figures for the summary line and `--stats-json`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DumpSummary {
    pub pid: i32,
    pub pages_stored: u64,
    pub zero_pages_skipped: u64,
    pub frozen: Duration,
    pub total: Duration,
}

/// Dumps `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpSummary, DumpError> {
    let started = Instant::now();
    freeze::preflight(opts.pid, opts.shell_job)?;
    let writer = ImageWriter::create(&opts.dir)?;
    let task = freeze::freeze(opts.pid)?;
    let frozen = Instant::now();
    let mut summary = save(&task, opts, writer)?;
    if opts.leave_running {
        task.release()?;
    } else {
        task.kill()?;
    }
    summary.frozen = frozen.elapsed();
    summary.total = started.elapsed();
    Ok(summary)
}

/// Collects and writes the whole image of a frozen task.
fn save(task: &Frozen, opts: &DumpOptions, writer: ImageWriter) -> Result<DumpSummary, DumpError> {
    let pid = opts.pid;
    let vmas = mm::vmas(pid, &proc::smaps(pid)?)?;
    let files = files::fd_table(pid, opts.shell_job)?;
    let exe = mm::exe(pid)?;
    let vdso = mm::vdso_range(&vmas);
    let vdso_symbols = vdso_symbols(pid, vdso)?;
    let mut threads = task
        .threads()
        .iter()
        .map(|t| task::thread_state(pid, t))
        .collect::<Result<Vec<_>, _>>()?;
    let seccomp = seccomp::collect(pid, task.threads(), &mut threads)?;
    let ip = task::find_syscall_insn(pid, vdso)?;
    let known = task::Known {
        timers: &proc::timers(pid)?,
        tids: &threads.iter().map(|t| t.tid).collect::<Vec<_>>(),
    };
    let q = task::query(task.threads(), &mut threads, ip, &known)?;
    let stat = proc::stat(pid)?;
    let status = proc::status(pid)?;
    let creds = creds::creds(&status, q.securebits);
    for (t, &bits) in threads[1..].iter().zip(&q.thread_securebits) {
        creds::check_thread(pid, t.tid, bits, &creds)?;
    }

    let mut pages = writer.pages(&record_name("pages", pid))?;
    let (page_runs, guards, mstats) = memory::dump(pid, &vmas, &mut pages)?;
    pages.finish()?;

    let mm = MmImage {
        vmas,
        page_runs,
        fields: mm::fields(&stat, q.brk),
        auxv: proc::auxv(pid)?,
        exe,
        vdso_symbols,
        guards,
    };
    let task_image = TaskImage {
        pid,
        pgid: stat.pgrp,
        sid: stat.session,
        ppid: stat.ppid,
        comm: proc::comm(pid)?,
        personality: proc::personality(pid)?,
        umask: status.umask.unwrap_or(0o022),
        rlimits: proc::limits(pid)?,
        cwd: proc::link(pid, "cwd")?.to_string_lossy().into_owned(),
        root: proc::link(pid, "root")?.to_string_lossy().into_owned(),
        creds,
        oom_score_adj: proc::oom_score_adj(pid)?,
        attrs: q.attrs,
        timers: q.timers,
        sigactions: q.sigactions,
        shared_pending: task.leader().pending(true)?,
        audit: audit::audit(pid, known.tids)?,
        threads,
        seccomp,
    };
    writer.write_record(&record_name("mm", pid), Kind::Mm, &mm)?;
    writer.write_record(&record_name("files", pid), Kind::Files, &files)?;
    writer.write_record(&record_name("task", pid), Kind::Task, &task_image)?;
    writer.write_record(
        "inventory.img",
        Kind::Inventory,
        &inventory(pid, opts.shell_job),
    )?;
    writer.commit()?;
    Ok(DumpSummary {
        pid,
        pages_stored: mstats.pages_stored,
        zero_pages_skipped: mstats.zero_pages_skipped,
        ..Default::default()
    })
}

fn vdso_symbols(pid: i32, vdso: Option<(u64, u64)>) -> Result<Vec<(String, u64)>, DumpError> {
    let Some((start, end)) = vdso else {
        return Ok(Vec::new());
    };
    let mut text = vec![0u8; (end - start) as usize];
    Mem::open(pid, false)?.read(start, &mut text)?;
    crate::vdso::symbols(&text)
        .map_err(|e| DumpError::unsupported(format!("vDSO of pid {pid}: {e}")))
}

fn inventory(pid: i32, shell_job: bool) -> Inventory {
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
        root_pid: pid,
        pids: vec![pid],
        cpu: CpuInfo {
            xcr0: crate::sys::cpu::xcr0(),
            xsave_size: crate::sys::cpu::xsave_size(),
            model_name: crate::sys::cpu::model_name(),
        },
        shell_job,
    }
}
