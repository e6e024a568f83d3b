//! `stasis inspect`: what an image holds, as text for people or JSON for tools (like
//! CRIU's `crit show`). Reads metadata only; page contents are summarized by count.

use std::io::Write;
use std::path::Path;

use crate::image::files::FdKind;
use crate::image::mm::{Vma, VmaKind};
use crate::image::task::Timers;
use crate::image::tree::{ProcState, TreeImage};
use crate::image::{Image, ImageError, ProcessImage};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("write output")]
    Write(#[from] std::io::Error),
    #[error("encode JSON")]
    Json(#[from] serde_json::Error),
}

/// Prints the image at `dir`.
pub fn inspect(dir: &Path, json: bool, out: &mut impl Write) -> Result<(), InspectError> {
    let image = Image::load_metadata(dir)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &to_json(&image))?;
        writeln!(out)?;
    } else {
        text(&image, out)?;
    }
    Ok(())
}

fn to_json(image: &Image) -> serde_json::Value {
    let processes: Vec<serde_json::Value> = image
        .processes
        .iter()
        .map(|p| {
            serde_json::json!({
                "pid": p.task.pid,
                "task": p.task,
                "mm": p.mm,
                "files": p.files,
                "pages_stored": stored_pages(p),
            })
        })
        .collect();
    serde_json::json!({
        "inventory": image.inventory,
        "tree": image.tree,
        "processes": processes,
    })
}

fn stored_pages(p: &ProcessImage) -> u64 {
    p.mm.page_runs.iter().map(|r| r.pages).sum()
}

fn text(image: &Image, out: &mut impl Write) -> std::io::Result<()> {
    let inv = &image.inventory;
    writeln!(
        out,
        "image {} (stasis {}, kernel {}, host {})",
        image.dir.display(),
        inv.stasis_version,
        inv.kernel_release,
        inv.hostname
    )?;
    let features = crate::sys::cpu::xfeature_names(inv.cpu.xcr0).join(" ");
    writeln!(
        out,
        "cpu: {} (xsave {} bytes: {features})",
        inv.cpu.model_name, inv.cpu.xsave_size
    )?;
    tree(&image.tree, out)?;
    for p in &image.processes {
        process(p, out)?;
    }
    Ok(())
}

fn tree(t: &TreeImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "tree: {} processes", t.processes.len())?;
    for e in &t.processes {
        let state = match e.state {
            ProcState::Alive { stopped: false } => "running".to_string(),
            ProcState::Alive { stopped: true } => "stopped".to_string(),
            ProcState::Zombie { status } => format!("zombie (wait status {status:#x})"),
        };
        let shares = match (e.shares_files, e.shares_fs) {
            (true, true) => " shares fd table and fs with parent",
            (true, false) => " shares fd table with parent",
            (false, true) => " shares fs with parent",
            (false, false) => "",
        };
        writeln!(
            out,
            "  pid {} ({}) parent {} pgid {} sid {} {state}{shares}",
            e.pid, e.comm, e.ppid, e.pgid, e.sid
        )?;
    }
    Ok(())
}

fn process(p: &ProcessImage, out: &mut impl Write) -> std::io::Result<()> {
    let t = &p.task;
    writeln!(
        out,
        "\nprocess {} \"{}\" (pgid {}, sid {}, ppid {}), cwd {}, umask {:03o}",
        t.pid, t.comm, t.pgid, t.sid, t.ppid, t.cwd, t.umask
    )?;
    writeln!(
        out,
        "  creds: uid {:?} gid {:?} groups {:?}",
        t.creds.uid, t.creds.gid, t.creds.groups
    )?;
    let c = &t.creds.caps;
    writeln!(
        out,
        "  caps: inh {:#x} prm {:#x} eff {:#x} bnd {:#x} amb {:#x}, securebits {:#x}, no_new_privs {}",
        c.inheritable, c.permitted, c.effective, c.bounding, c.ambient, t.creds.securebits, t.creds.no_new_privs
    )?;
    let a = &t.attrs;
    writeln!(
        out,
        "  attrs: dumpable {}, thp_disable {:#x}, child_subreaper {}, membarrier {:#x}, oom_score_adj {}",
        a.dumpable, a.thp_disable, a.child_subreaper, a.membarrier, t.oom_score_adj
    )?;
    timers(&t.timers, out)?;
    for th in &t.threads {
        let r = &th.regs;
        writeln!(
            out,
            "  thread {} \"{}\": rip {:#x} rsp {:#x} rax {:#x} orig_rax {} fs_base {:#x}",
            th.tid, th.comm, r.rip, r.rsp, r.rax, r.orig_rax as i64, r.fs_base
        )?;
        writeln!(
            out,
            "    xsave {} bytes, sigmask {:#018x}, {} pending, rseq {}",
            th.xsave.len(),
            th.sigmask,
            th.pending.len(),
            th.rseq
                .map(|r| format!("{:#x}", r.rseq_abi_pointer))
                .unwrap_or_else(|| "none".into())
        )?;
        let s = &th.sched;
        writeln!(
            out,
            "    sched: policy {} prio {} flags {:#x} nice {}, affinity {:x?}, timerslack {} ns, ioprio {:#x}, pdeathsig {}",
            s.policy, s.priority, s.flags, s.nice, s.affinity, s.timerslack_ns, s.ioprio, th.pdeathsig
        )?;
    }
    let handled = t.sigactions.iter().filter(|a| a.handler > 1).count();
    writeln!(
        out,
        "  signals: {handled} handlers, {} shared pending",
        t.shared_pending.len()
    )?;
    writeln!(
        out,
        "  memory: {} mappings, {} pages stored",
        p.mm.vmas.len(),
        stored_pages(p)
    )?;
    for v in &p.mm.vmas {
        writeln!(out, "    {}", vma_line(v))?;
    }
    writeln!(out, "  files: {} fds", p.files.fds.len())?;
    for f in &p.files.fds {
        let what = describe(&f.kind);
        writeln!(
            out,
            "    {:>4} flags {:#o}{} {what}",
            f.fd,
            f.flags,
            if f.cloexec { " cloexec" } else { "" }
        )?;
    }
    Ok(())
}

fn timers(t: &Timers, out: &mut impl Write) -> std::io::Result<()> {
    for (name, it) in ["real", "virtual", "prof"].iter().zip(&t.itimers) {
        if it.value_us != 0 {
            writeln!(
                out,
                "  itimer {name}: {} us left, interval {} us",
                it.value_us, it.interval_us
            )?;
        }
    }
    for p in &t.posix {
        writeln!(
            out,
            "  timer {}: clock {} notify {} signal {} value {:#x}, {} ns left, interval {} ns, overrun {}",
            p.id, p.clock, p.notify, p.signal, p.sigev_value, p.remaining_ns, p.interval_ns, p.overrun
        )?;
    }
    Ok(())
}

fn vma_line(v: &Vma) -> String {
    let p = |bit: i32, c: char| if v.prot & bit as u32 != 0 { c } else { '-' };
    let perms = format!(
        "{}{}{}{}",
        p(libc::PROT_READ, 'r'),
        p(libc::PROT_WRITE, 'w'),
        p(libc::PROT_EXEC, 'x'),
        if v.shared { 's' } else { 'p' }
    );
    let what = match &v.kind {
        VmaKind::Anon => "anon".to_string(),
        VmaKind::File { file, offset } => format!("{} @{offset:#x}", file.path),
        VmaKind::Vdso => "[vdso]".into(),
        VmaKind::Vvar => "[vvar]".into(),
        VmaKind::VvarVclock => "[vvar_vclock]".into(),
    };
    format!("{:#014x}-{:#014x} {perms} {what}", v.start, v.end)
}

/// One line about what an fd is.
fn describe(kind: &FdKind) -> String {
    match kind {
        FdKind::Path(p) => format!("{} pos {}", p.file.path, p.pos),
        FdKind::CharDev(c) => format!("{} (char device)", c.path),
        FdKind::Tty(_) => "terminal (shell job)".to_string(),
        FdKind::Dup { of } => format!("same open file as fd {of}"),
        FdKind::Inherited { pid, fd } => format!("same open file as fd {fd} of pid {pid}"),
        FdKind::Pipe(p) => format!(
            "pipe:[{}] {:?} end, other end {}, size {}, {} bytes buffered",
            p.ino,
            p.end,
            p.peer
                .map_or("closed".to_string(), |fd| format!("at fd {fd}")),
            p.size,
            p.data.len()
        ),
        FdKind::PipePeer { of } => format!("other end of the pipe of fd {of}"),
        FdKind::Fifo(f) => format!("FIFO {} ({} bytes buffered)", f.file.path, f.data.len()),
        FdKind::OPath(p) => format!("{} (O_PATH)", p.path),
        FdKind::Ghost(g) => format!("{} (deleted, {} bytes saved)", g.path, g.contents.len()),
        FdKind::EventFd(e) => format!("eventfd count {} semaphore {}", e.count, e.semaphore),
        FdKind::TimerFd(t) => format!(
            "timerfd clock {} left {} ns interval {} ns ticks {}",
            t.clock, t.value_ns, t.interval_ns, t.ticks
        ),
        FdKind::SignalFd(s) => format!("signalfd mask {:#x}", s.mask),
        FdKind::Epoll(e) => format!(
            "epoll watching fds {:?}",
            e.targets.iter().map(|t| t.fd).collect::<Vec<_>>()
        ),
        FdKind::Inotify(i) => format!(
            "inotify watching {:?}",
            i.watches
                .iter()
                .map(|w| w.path.as_str())
                .collect::<Vec<_>>()
        ),
        FdKind::Memfd(m) => format!("memfd:{} size {} seals {:#x}", m.name, m.size, m.seals),
        FdKind::PidFd(p) => format!("pidfd of pid {}", p.pid),
    }
}
