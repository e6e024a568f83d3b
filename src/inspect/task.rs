//! One process as `stasis inspect` shows it: ids and credentials, attributes, audit ids,
//! limits, timers, per thread registers, signals, altstack, scheduling and seccomp, and
//! the handlers; its memory and fds come from [`super::memory`] and [`super::files`].

use std::io::Write;

use crate::abi::SigInfo;
use crate::image::seccomp::{
    chain, SeccompFilter, ThreadSeccomp, FILTER_FLAG_LOG, MODE_DISABLED, MODE_STRICT,
};
use crate::image::task::{TaskImage, ThreadImage, Timers};
use crate::image::tree::TreeImage;
use crate::image::ProcessImage;

pub(super) fn process(
    p: &ProcessImage,
    tree: &TreeImage,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let t = &p.task;
    writeln!(
        out,
        "\nprocess {} \"{}\" (pgid {}, sid {}, ppid {}), cwd {}, root {}, umask {:03o}",
        t.pid, t.comm, t.pgid, t.sid, t.ppid, t.cwd, t.root, t.umask
    )?;
    creds(t, out)?;
    let a = &t.attrs;
    writeln!(
        out,
        "  attrs: personality {:#x}, dumpable {}, thp_disable {:#x}, child_subreaper {}, membarrier {:#x}, oom_score_adj {}",
        t.personality, a.dumpable, a.thp_disable, a.child_subreaper, a.membarrier, t.oom_score_adj
    )?;
    match t.audit {
        Some(au) => writeln!(
            out,
            "  audit: loginuid {}, sessionid {}",
            id_or_unset(au.loginuid),
            id_or_unset(au.sessionid)
        )?,
        None => writeln!(out, "  audit: none (the dumping kernel has no audit)")?,
    }
    writeln!(out, "  rlimits: {}", rlimits(&t.rlimits))?;
    timers(&t.timers, out)?;
    for th in &t.threads {
        thread(th, &t.seccomp, out)?;
    }
    match tree.get(t.pid).filter(|e| e.shares_sighand) {
        Some(e) => writeln!(
            out,
            "  signals: the handlers of parent {}, shared pending: {}",
            e.ppid,
            signal_list(&t.shared_pending)
        )?,
        None => signals(t, out)?,
    }
    match tree.mm_owner(t.pid) {
        owner if owner == t.pid => super::memory::memory(p, out)?,
        owner => writeln!(out, "  memory: the address space of pid {owner}")?,
    }
    super::files::files(p, out)
}

fn creds(t: &TaskImage, out: &mut impl Write) -> std::io::Result<()> {
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
    )
}

/// A login or session id; `u32::MAX` is the kernel's "unset".
fn id_or_unset(id: u32) -> String {
    if id == u32::MAX {
        "unset".into()
    } else {
        id.to_string()
    }
}

/// `name soft/hard` per resource, `unlimited` for `RLIM_INFINITY`.
fn rlimits(limits: &[(u64, u64)]) -> String {
    const NAMES: [&str; 16] = [
        "cpu",
        "fsize",
        "data",
        "stack",
        "core",
        "rss",
        "nproc",
        "nofile",
        "memlock",
        "as",
        "locks",
        "sigpending",
        "msgqueue",
        "nice",
        "rtprio",
        "rttime",
    ];
    let value = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    NAMES
        .iter()
        .zip(limits)
        .map(|(name, &(soft, hard))| format!("{name} {}/{}", value(soft), value(hard)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn thread(
    th: &ThreadImage,
    filters: &[SeccompFilter],
    out: &mut impl Write,
) -> std::io::Result<()> {
    let r = &th.regs;
    writeln!(
        out,
        "  thread {} \"{}\": rip {:#x} rsp {:#x} rax {:#x} orig_rax {} fs_base {:#x}",
        th.tid, th.comm, r.rip, r.rsp, r.rax, r.orig_rax as i64, r.fs_base
    )?;
    writeln!(
        out,
        "    xsave {} bytes, sigmask {:#018x}, rseq {}, robust list {:#x}, clear_child_tid {:#x}",
        th.xsave.len(),
        th.sigmask,
        th.rseq
            .map(|r| format!("{:#x}", r.rseq_abi_pointer))
            .unwrap_or_else(|| "none".into()),
        th.robust_list,
        th.clear_child_tid
    )?;
    writeln!(out, "    pending: {}", signal_list(&th.pending))?;
    let alt = &th.altstack;
    if alt.flags & libc::SS_DISABLE != 0 || alt.size == 0 {
        writeln!(out, "    sigaltstack: none")?;
    } else {
        writeln!(
            out,
            "    sigaltstack: {:#x} size {} flags {:#x}",
            alt.sp, alt.size, alt.flags
        )?;
    }
    let s = &th.sched;
    writeln!(
        out,
        "    sched: policy {} prio {} flags {:#x} nice {}, affinity {:x?}, timerslack {} ns, ioprio {:#x}, pdeathsig {}",
        s.policy, s.priority, s.flags, s.nice, s.affinity, s.timerslack_ns, s.ioprio, th.pdeathsig
    )?;
    writeln!(out, "    seccomp: {}", seccomp_line(th.seccomp, filters))
}

/// The signal numbers of queued signals, in queue order.
fn signal_list(queue: &[SigInfo]) -> String {
    if queue.is_empty() {
        return "none".into();
    }
    let sigs: Vec<String> = queue.iter().map(|i| i.signo().to_string()).collect();
    format!("{} (signals {})", queue.len(), sigs.join(" "))
}

fn seccomp_line(s: ThreadSeccomp, filters: &[SeccompFilter]) -> String {
    match s.mode {
        MODE_DISABLED => "disabled".into(),
        MODE_STRICT => "strict".into(),
        _ => {
            let chain: Vec<String> = chain(filters, s.filter)
                .into_iter()
                .map(|i| {
                    let f = &filters[i as usize];
                    let log = if f.flags & FILTER_FLAG_LOG != 0 {
                        " log"
                    } else {
                        ""
                    };
                    format!("#{i} {} insns{log}", f.insns.len())
                })
                .collect();
            format!(
                "filter, {} filters (oldest first: {})",
                chain.len(),
                chain.join(", ")
            )
        }
    }
}

fn signals(t: &TaskImage, out: &mut impl Write) -> std::io::Result<()> {
    let handled = t.sigactions.iter().filter(|a| a.handler > 1).count();
    let ignored = t.sigactions.iter().filter(|a| a.handler == 1).count();
    writeln!(
        out,
        "  signals: {handled} handlers, {ignored} ignored, shared pending: {}",
        signal_list(&t.shared_pending)
    )?;
    for (i, a) in t
        .sigactions
        .iter()
        .enumerate()
        .filter(|(_, a)| a.handler > 1)
    {
        writeln!(
            out,
            "    handler {}: {:#x} flags {:#x} ({}) mask {:#x}",
            i + 1,
            a.handler,
            a.flags,
            sa_flags(a.flags),
            a.mask
        )?;
    }
    Ok(())
}

fn sa_flags(flags: u64) -> String {
    const NAMES: [(u64, &str); 8] = [
        (0x1, "SA_NOCLDSTOP"),
        (0x2, "SA_NOCLDWAIT"),
        (0x4, "SA_SIGINFO"),
        (0x0400_0000, "SA_RESTORER"),
        (0x0800_0000, "SA_ONSTACK"),
        (0x1000_0000, "SA_RESTART"),
        (0x4000_0000, "SA_NODEFER"),
        (0x8000_0000, "SA_RESETHAND"),
    ];
    let set: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    set.join("|")
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
