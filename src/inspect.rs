//! `stasis inspect`: what an image holds, as text for people or JSON for tools (like
//! CRIU's `crit show`). Reads metadata only; page contents are summarized by count.
//! The text shows every saved item of a task: ids and credentials, attributes, audit ids,
//! limits, timers, per thread registers, signals, altstack, scheduling and seccomp, the
//! handlers, mappings with their flags, guard regions, and the fds.

use std::io::Write;
use std::path::Path;

use crate::abi::SigInfo;
use crate::image::files::FdKind;
use crate::image::mm::{Vma, VmaKind};
use crate::image::seccomp::{
    chain, SeccompFilter, ThreadSeccomp, FILTER_FLAG_LOG, MODE_DISABLED, MODE_STRICT,
};
use crate::image::sock::{
    tcp_state, InetSocket, InetState, SockAddr, TcpRepair, UnixPeer, UnixSocket,
};
use crate::image::task::{TaskImage, ThreadImage, Timers};
use crate::image::tree::{ProcEntry, ProcState, TreeImage};
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
    let tables = image.processes.iter().map(|p| (p.task.pid, &p.files));
    let lock = crate::image::netlock::NetLockImage::load(dir, tables)?;
    // Asked of the kernel now: a lock still held is one the restore has not lifted yet.
    let held: Vec<i32> = lock
        .pids
        .iter()
        .copied()
        .filter(|p| crate::netlock::held(lock.mode, *p))
        .collect();
    if json {
        let mut value = to_json(&image);
        value["netlock"] =
            serde_json::json!({ "mode": lock.mode.name(), "pids": lock.pids, "held_now": held });
        serde_json::to_writer_pretty(&mut *out, &value)?;
        writeln!(out)?;
    } else {
        text(&image, out)?;
        network_lock(dir, &lock, &held, out)?;
    }
    Ok(())
}

/// The dump's network lock, and whether it is still held now (a stale lock, if the image
/// is not being restored).
fn network_lock(
    dir: &Path,
    lock: &crate::image::netlock::NetLockImage,
    held: &[i32],
    out: &mut impl Write,
) -> std::io::Result<()> {
    write!(out, "network lock: {}", lock.mode.name())?;
    if lock.pids.is_empty() {
        return writeln!(out, ", no connection locked");
    }
    let names: Vec<String> = lock.pids.iter().map(|p| crate::netlock::name(*p)).collect();
    writeln!(out, " ({})", names.join(" "))?;
    for pid in held {
        writeln!(
            out,
            "  {} held now: stale unless this image is being restored; lift it with `stasis network-unlock -D {}`",
            crate::netlock::name(*pid),
            dir.display()
        )?;
    }
    Ok(())
}

fn to_json(image: &Image) -> serde_json::Value {
    let processes: Vec<serde_json::Value> = image
        .processes
        .iter()
        .map(|p| {
            let pid = p.task.pid;
            let owner = image.tree.mm_owner(pid);
            serde_json::json!({
                "pid": pid,
                "task": p.task,
                // A process sharing its parent's address space has no mm of its own.
                "mm": (owner == pid).then_some(&p.mm),
                "mm_of": owner,
                "files": p.files,
                "pages_stored": p.mm.pages(),
            })
        })
        .collect();
    let ghosts: Vec<serde_json::Value> = image
        .ghosts
        .files
        .iter()
        .map(|g| {
            serde_json::json!({
                "path": g.path,
                "type": g.body.describe(),
                "mode": g.mode,
                "uid": g.uid,
                "gid": g.gid,
                "mtime_ns": g.mtime_ns,
                "bytes_stored": g.body.stored(),
                "cwd_of": g.cwd_of,
            })
        })
        .collect();
    serde_json::json!({
        "inventory": image.inventory,
        "tree": image.tree,
        "tty": image.tty,
        "processes": processes,
        "ghosts": ghosts,
        "sysv": image.sysv,
        "mqueue": image.mqueue,
    })
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
    terminals(&image.tty, out)?;
    for p in &image.processes {
        process(p, &image.tree, out)?;
    }
    ghosts(&image.ghosts, out)?;
    sysv(&image.sysv, out)?;
    mqueues(&image.mqueue, out)
}

/// One line per POSIX message queue.
fn mqueues(m: &crate::image::mqueue::MqueueImage, out: &mut impl Write) -> std::io::Result<()> {
    for q in &m.queues {
        writeln!(
            out,
            "POSIX queue /{}: mode {:o} owner {}:{}, maxmsg {} msgsize {}, {} messages",
            q.name,
            q.mode,
            q.uid,
            q.gid,
            q.maxmsg,
            q.msgsize,
            q.messages.len()
        )?;
    }
    Ok(())
}

/// The files deleted while in use, one line each.
fn ghosts(g: &crate::image::ghost::GhostsImage, out: &mut impl Write) -> std::io::Result<()> {
    for (i, f) in g.files.iter().enumerate() {
        let size = match &f.body {
            crate::image::ghost::GhostBody::Regular { size, extents } => format!(
                ", {size} bytes, {} stored in {} extents",
                f.body.stored(),
                extents.len()
            ),
            _ => String::new(),
        };
        let cwd = if f.cwd_of.is_empty() {
            String::new()
        } else {
            format!(", cwd of {:?}", f.cwd_of)
        };
        writeln!(
            out,
            "ghost {i}: {} ({}, mode {:o}, uid {} gid {}{size}{cwd})",
            f.path,
            f.body.describe(),
            f.mode,
            f.uid,
            f.gid
        )?;
    }
    Ok(())
}

/// One line per System V object.
fn sysv(s: &crate::image::sysv::SysvImage, out: &mut impl Write) -> std::io::Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    writeln!(out, "System V IPC ({:?} namespace):", s.ns)?;
    let perm = |p: &crate::image::sysv::IpcPerm| {
        format!(
            "id {} key {:#x} mode {:o} owner {}:{} creator {}:{}",
            p.id, p.key as u32, p.mode, p.uid, p.gid, p.cuid, p.cgid
        )
    };
    for m in &s.shm {
        let huge = m
            .hugetlb
            .map_or(String::new(), |h| format!(", hugetlb {h}"));
        let (size, pages) = (m.size, m.pages());
        writeln!(
            out,
            "  shm {}: {size} bytes{huge}, {pages} pages stored",
            perm(&m.perm)
        )?;
    }
    for m in &s.sem {
        writeln!(out, "  sem {}: values {:?}", perm(&m.perm), m.values)?;
    }
    for q in &s.msg {
        let n = q.messages.len();
        writeln!(
            out,
            "  msg {}: qbytes {}, {n} messages",
            perm(&q.perm),
            q.qbytes
        )?;
    }
    Ok(())
}

/// `c_lflag` of kernel termios bytes (the fourth u32).
fn lflag(termios: &[u8]) -> u32 {
    termios
        .get(12..16)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

fn tree(t: &TreeImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "tree: {} processes", t.processes.len())?;
    for e in &t.processes {
        let state = match e.state {
            ProcState::Alive { .. } => match e.state.stop_signal() {
                None => "running".to_string(),
                Some(sig) => format!("stopped by signal {sig}"),
            },
            ProcState::Zombie { status } => format!("zombie (wait status {status:#x})"),
            ProcState::GroupHelper => "group leader helper (exited at dump)".to_string(),
        };
        let shares = shared_with_parent(e);
        writeln!(
            out,
            "  pid {} ({}) parent {} pgid {} sid {} {state}{shares}",
            e.pid, e.comm, e.ppid, e.pgid, e.sid
        )?;
    }
    if let Some(term) = &t.terminal {
        writeln!(
            out,
            "  shell job terminal: foreground group {}, lflag {:#x}",
            term.foreground,
            lflag(&term.termios)
        )?;
    }
    Ok(())
}

/// The tree's ptys and its sessions' controlling terminals (`tty.img`).
fn terminals(t: &crate::image::tty::TtyImage, out: &mut impl Write) -> std::io::Result<()> {
    use crate::image::tty::Ctty;
    for p in &t.ptys {
        let hung = if p.hung_up { ", hung up" } else { "" };
        let excl = if p.exclusive { ", exclusive" } else { "" };
        writeln!(
            out,
            "  pts {}: owner {}:{} mode {:o}{excl}{hung}",
            p.index, p.uid, p.gid, p.mode
        )?;
    }
    for s in &t.sessions {
        let tty = match &s.tty {
            Ctty::Pty { index } => format!("pts {index}"),
            Ctty::Device { path, .. } => path.clone(),
        };
        writeln!(
            out,
            "  session {} controls {tty}, foreground group {}, without it: {:?}",
            s.sid, s.foreground, s.without
        )?;
    }
    Ok(())
}

/// `" shares fd table, fs with parent"`, or nothing.
fn shared_with_parent(e: &ProcEntry) -> String {
    let what: Vec<&str> = [
        (e.shares_files, "fd table"),
        (e.shares_fs, "fs"),
        (e.shares_vm, "address space"),
        (e.shares_sighand, "signal handlers"),
    ]
    .iter()
    .filter(|(shared, _)| *shared)
    .map(|(_, name)| *name)
    .collect();
    if what.is_empty() {
        String::new()
    } else {
        format!(" shares {} with parent", what.join(", "))
    }
}

fn process(p: &ProcessImage, tree: &TreeImage, out: &mut impl Write) -> std::io::Result<()> {
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
        owner if owner == t.pid => memory(p, out)?,
        owner => writeln!(out, "  memory: the address space of pid {owner}")?,
    }
    files(p, out)
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

fn memory(p: &ProcessImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "  memory: {} mappings, {} pages stored, {} guard regions",
        p.mm.vmas.len(),
        p.mm.pages(),
        p.mm.guards.len()
    )?;
    for v in &p.mm.vmas {
        writeln!(out, "    {}", vma_line(v))?;
    }
    for g in &p.mm.guards {
        writeln!(
            out,
            "    guard {:#014x}-{:#014x} ({} pages)",
            g.start,
            g.end,
            (g.end - g.start) / crate::abi::PAGE_SIZE
        )?;
    }
    Ok(())
}

fn files(p: &ProcessImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "  files: {} fds", p.files.fds.len())?;
    for f in &p.files.fds {
        let what = describe(&f.kind);
        let spare = if p.files.spares.contains(&f.fd) {
            " (spare, for a later process)".to_string()
        } else {
            in_flight_note(&p.files, f.fd)
        };
        writeln!(
            out,
            "    {:>4} flags {:#o}{} {what}{spare}",
            f.fd,
            f.flags,
            if f.cloexec { " cloexec" } else { "" }
        )?;
    }
    Ok(())
}

/// " (in flight to socket:[INO], message N)" for a file riding on a queued message.
fn in_flight_note(files: &crate::image::files::FilesImage, fd: i32) -> String {
    files
        .in_flight
        .iter()
        .find(|m| m.fds.contains(&fd))
        .map(|m| {
            format!(
                " (in flight to socket:[{}], message {})",
                m.socket, m.message
            )
        })
        .unwrap_or_default()
}

fn unix_line(u: &UnixSocket) -> String {
    let ty = match u.sock_type {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "?",
    };
    let name = match u.name.first() {
        None => String::new(),
        Some(0) => format!(" @{}", String::from_utf8_lossy(&u.name[1..])),
        Some(_) => format!(" {}", String::from_utf8_lossy(&u.name)),
    };
    let state = match (&u.listen_backlog, &u.peer) {
        (Some(b), _) => format!(" listening (backlog {b})"),
        (_, UnixPeer::None) => String::new(),
        (_, UnixPeer::Socket { ino }) => format!(" peer socket:[{ino}]"),
        (_, UnixPeer::Pending { listener, .. }) => format!(" pending on socket:[{listener}]"),
        (_, UnixPeer::Closed) => " peer closed".into(),
        (_, UnixPeer::External { .. }) => " external peer".into(),
    };
    let bytes: usize = u.queue.iter().map(|m| m.data.len()).sum();
    format!(
        "unix {ty} socket:[{}]{name}{state}, {} queued ({bytes} bytes){}",
        u.ino,
        u.queue.len(),
        opts_text(&u.opts)
    )
}

fn inet_line(s: &InetSocket) -> String {
    let proto = match (s.sock_type, s.protocol) {
        (libc::SOCK_RAW, _) => "raw",
        (_, libc::IPPROTO_TCP) => "tcp",
        (_, libc::IPPROTO_UDP) => "udp",
        (_, libc::IPPROTO_UDPLITE) => "udplite",
        _ => "ping",
    };
    let v = if s.family == libc::AF_INET6 { "6" } else { "" };
    let addr = |a: &Option<SockAddr>| a.as_ref().map_or("*".into(), crate::dump::files::addr_text);
    let state = match &s.state {
        InetState::Unconnected => String::new(),
        InetState::Listening { backlog } => format!(" listening (backlog {backlog})"),
        InetState::Established(r) => connection_text("established", r),
        InetState::Connection { state, repair } => {
            connection_text(&tcp_state::name(*state).to_lowercase(), repair)
        }
        InetState::Closed => " closed".into(),
        InetState::Shut { shutdown } => format!(" shut down ({})", shut_text(*shutdown)),
    };
    format!(
        "{proto}{v} {} -> {}{state}{}",
        addr(&s.local),
        addr(&s.remote),
        opts_text(&s.opts)
    )
}

fn connection_text(state: &str, r: &TcpRepair) -> String {
    format!(
        " {state}, {} bytes to send, {} received{}",
        r.send_queue.len(),
        r.recv_queue.len(),
        if r.locked { ", network locked" } else { "" }
    )
}

fn shut_text(bits: u8) -> &'static str {
    match bits & 3 {
        1 => "receive side",
        2 => "send side",
        _ => "both sides",
    }
}

/// `; SO_PRIORITY=5 TCP_NODELAY=1 ...`: the options saved (those not a new socket's).
fn opts_text(opts: &crate::image::sock::SockOpts) -> String {
    use crate::image::sockopts::{lookup, show};
    let list: Vec<String> = opts
        .opts
        .iter()
        .map(|o| {
            let label = lookup(o.level, o.name).map_or("?", |d| d.label);
            format!("{label}={}", show(&o.value))
        })
        .collect();
    if list.is_empty() {
        return String::new();
    }
    format!("; {}", list.join(" "))
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
        VmaKind::File { file, offset, .. } => format!("{} @{offset:#x}", file.path),
        VmaKind::Aio(r) => format!("[aio] {} events, head {} tail {}", r.nr, r.head, r.tail),
        VmaKind::PacketRing { socket, offset } => {
            format!("rings of packet socket:[{socket}] @{offset:#x}")
        }
        VmaKind::Vdso => "[vdso]".into(),
        VmaKind::Vvar => "[vvar]".into(),
        VmaKind::VvarVclock => "[vvar_vclock]".into(),
        VmaKind::Unlinked {
            name,
            memfd,
            size,
            offset,
            ..
        } => {
            let what = if *memfd { "memfd:" } else { "deleted " };
            format!("{what}{name} ({size} bytes) @{offset:#x}")
        }
        VmaKind::SysvShm { id, offset, .. } => format!("SysV shm id {id} @{offset:#x}"),
        VmaKind::Hugetlb { shift, memfd } => match memfd {
            Some(m) => format!(
                "hugetlb memfd:{} ({} bytes) @{:#x}",
                m.name, m.size, m.offset
            ),
            None => format!("anon hugetlb ({} KiB pages)", (1u64 << shift) >> 10),
        },
        VmaKind::PrivateUnlinked {
            name,
            offset,
            ghost,
        } => {
            let saved = ghost.map_or(String::new(), |g| format!(" (ghost {g})"));
            format!("private of {name} (deleted){saved} @{offset:#x}")
        }
    };
    format!(
        "{:#014x}-{:#014x} {perms} {what}{}",
        v.start,
        v.end,
        vma_flags(v)
    )
}

/// The mapping's flags beyond protection, as ` [locked sealed ...]`, or nothing.
fn vma_flags(v: &Vma) -> String {
    let f = &v.flags;
    let names = [
        (f.growsdown, "growsdown"),
        (f.noreserve, "noreserve"),
        (f.dontdump, "dontdump"),
        (f.dontfork, "dontfork"),
        (f.wipeonfork, "wipeonfork"),
        (f.hugepage, "hugepage"),
        (f.nohugepage, "nohugepage"),
        (f.mergeable, "mergeable"),
        (f.locked, "locked"),
        (f.lockonfault, "lockonfault"),
        (f.sealed, "sealed"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" [{}]", set.join(" "))
    }
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
        FdKind::Deleted(d) => format!(
            "ghost {} pos {}{}",
            d.ghost,
            d.pos,
            d.fifo.as_ref().map_or(String::new(), |f| format!(
                " ({} bytes buffered)",
                f.data.len()
            ))
        ),
        FdKind::Remap(r) => format!(
            "{} (unlinked, {} {} at {}) pos {}",
            r.path,
            r.link.size,
            if r.copied {
                "bytes copied"
            } else {
                "bytes linked"
            },
            r.link.path,
            r.pos
        ),
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
        FdKind::Unix(u) => unix_line(u),
        FdKind::Inet(s) => inet_line(s),
        FdKind::Packet(p) => format!(
            "packet socket type {} protocol {:#06x} ifindex {}, {} options, {} memberships{}{}{}",
            p.sock_type,
            p.protocol,
            p.ifindex,
            p.ints.len(),
            p.memberships.len(),
            if p.rx_ring.is_some() { ", rx ring" } else { "" },
            if p.tx_ring.is_some() { ", tx ring" } else { "" },
            p.fanout
                .map_or(String::new(), |f| format!(", fanout {f:#x}"))
        ),
        FdKind::Mqueue(q) => format!("POSIX message queue /{}", q.name),
        FdKind::Netlink(n) => format!(
            "netlink socket protocol {} port {} groups {:?}{}",
            n.protocol,
            n.portid,
            n.groups,
            n.dst.map_or(String::new(), |(p, g)| format!(
                ", connected to port {p} group {g}"
            ))
        ),
        FdKind::PtyMaster(m) => format!(
            "pty master of /dev/pts/{} ({} bytes input, {} bytes output buffered)",
            m.index,
            m.input.len(),
            m.output.len()
        ),
        FdKind::PtySlave { index } => format!("pty slave /dev/pts/{index}"),
        FdKind::ControllingTty => "/dev/tty (its controlling terminal)".to_string(),
        FdKind::Inotify(i) => format!(
            "inotify watching {:?}",
            i.watches
                .iter()
                .map(|w| w.path.as_str())
                .collect::<Vec<_>>()
        ),
        FdKind::Memfd(m) => format!("memfd:{} size {} seals {:#x}", m.name, m.size, m.seals),
        FdKind::PidFd(p) => format!("pidfd of pid {}", p.pid),
        FdKind::Namespace(n) => format!("its own {} namespace ({}:[{}])", n.kind, n.kind, n.ino),
        FdKind::DeadPidFd(p) => format!("pidfd of an exited process (pidfs inode {})", p.ino),
        FdKind::Reopen { pid, fd, pos } => {
            format!("the file of fd {fd} of pid {pid}, opened again, pos {pos}")
        }
        FdKind::Mapped(m) => format!(
            "the object pid {} maps at {:#x}-{:#x}, opened again, pos {}, seals {:#x}",
            m.pid, m.start, m.end, m.pos, m.seals
        ),
        FdKind::Fanotify(f) => format!(
            "fanotify flags {:#x} event flags {:#x}, marks {:?}",
            f.flags,
            f.event_flags,
            f.marks
                .iter()
                .map(|m| format!(
                    "{:?} mask {:#x} ignored {:#x}",
                    m.target, m.mask, m.ignored_mask
                ))
                .collect::<Vec<_>>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{AltStack, KernelSigaction};

    #[test]
    fn text_shows_the_network_lock_and_whether_it_is_held() {
        use crate::image::netlock::{LockMode, NetLockImage};
        let dir = Path::new("/img");
        let lock = NetLockImage {
            mode: LockMode::Iptables,
            pids: vec![7, 9],
        };
        let mut out = Vec::new();
        network_lock(dir, &lock, &[9], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("network lock: iptables (stasis_7 stasis_9)\n"),
            "{text}"
        );
        assert!(text.contains("stasis_9 held now"), "{text}");
        assert!(!text.contains("stasis_7 held"), "{text}");
        assert!(text.contains("stasis network-unlock -D /img"), "{text}");
        let mut out = Vec::new();
        let skip = NetLockImage {
            mode: LockMode::Skip,
            pids: vec![],
        };
        network_lock(dir, &skip, &[], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "network lock: skip, no connection locked\n"
        );
    }
    use crate::image::sample;

    fn sample_image() -> Image {
        let mut task = sample::task(10);
        task.sigactions[9] = KernelSigaction {
            handler: 0x40_1100,
            flags: 0x1c00_0004,
            restorer: 0x40_1200,
            mask: 0,
        };
        task.threads[0].altstack = AltStack {
            sp: 0x7f00_0000_0000,
            flags: 0,
            _pad: 0,
            size: 65536,
        };
        task.timers.itimers[0].value_us = 500;
        let mut mm = sample::mm();
        mm.vmas[1].flags.locked = true;
        mm.vmas[1].flags.sealed = true;
        let mut tree = sample::tree(&[10]);
        let mut termios = vec![0u8; 36];
        termios[12..16].copy_from_slice(&0x8a3bu32.to_ne_bytes());
        tree.terminal = Some(crate::image::tree::JobTerminal {
            foreground: 10,
            termios,
        });
        Image {
            dir: "/img".into(),
            inventory: sample::inventory(&[10]),
            tree,
            tty: Default::default(),
            processes: vec![ProcessImage {
                task,
                mm,
                files: sample::files(),
            }],
            ghosts: Default::default(),
            sysv: Default::default(),
            mqueue: Default::default(),
            orphan_pty: Default::default(),
            pty_devpts: Default::default(),
            ns: Default::default(),
            cgroup: Default::default(),
            mounts: None,
            netns: None,
            chain: None,
            parent_pages: Default::default(),
        }
    }

    #[test]
    fn text_lists_sysv_objects() {
        use crate::image::sysv::{IpcNs, IpcPerm, SemSet, ShmSegment, SysvImage};
        let mut image = sample_image();
        let perm = IpcPerm {
            key: 0x2a,
            id: 32768,
            mode: 0o1600,
            ..Default::default()
        };
        image.sysv = SysvImage {
            ns: IpcNs::Own,
            shm: vec![ShmSegment {
                perm,
                size: 100,
                hugetlb: None,
                runs: vec![(0, 1)],
            }],
            sem: vec![SemSet {
                perm,
                values: vec![3],
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        text(&image, &mut out).expect("write to a vector");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("System V IPC (Own namespace):"), "{text}");
        assert!(text.contains("  shm id 32768 key 0x2a mode 1600 owner 0:0 creator 0:0: 100 bytes, 1 pages stored"), "{text}");
        assert!(
            text.contains("  sem id 32768 key 0x2a mode 1600 owner 0:0 creator 0:0: values [3]"),
            "{text}"
        );
    }

    #[test]
    fn text_lists_posix_queues() {
        use crate::image::mqueue::{MqueueImage, PosixMessage, PosixQueue};
        let mut image = sample_image();
        image.mqueue = MqueueImage {
            queues: vec![PosixQueue {
                name: "q".into(),
                mode: 0o640,
                uid: 1,
                gid: 2,
                maxmsg: 10,
                msgsize: 64,
                messages: vec![PosixMessage::default()],
            }],
        };
        let mut out = Vec::new();
        text(&image, &mut out).expect("write to a vector");
        let text = String::from_utf8(out).expect("utf-8");
        let want = "POSIX queue /q: mode 640 owner 1:2, maxmsg 10 msgsize 64, 1 messages";
        assert!(text.contains(want), "{text}");
    }

    #[test]
    fn text_shows_every_task_attribute() {
        let mut out = Vec::new();
        text(&sample_image(), &mut out).expect("write to a vector");
        let text = String::from_utf8(out).expect("utf-8");
        let wanted = [
            "creds: uid [1000, 1000, 1000, 1000] gid [1000, 1000, 1000, 1000] groups [1000]",
            "caps: inh 0x0 prm 0x0 eff 0x0 bnd 0x1ffffffffff amb 0x0, securebits 0x0, no_new_privs false",
            "attrs: personality 0x0, dumpable 1, thp_disable 0x0, child_subreaper false, membarrier 0x0, oom_score_adj 0",
            "audit: loginuid 1000, sessionid 3",
            "rlimits: cpu unlimited/unlimited, fsize unlimited/unlimited",
            "itimer real: 500 us left",
            "timer 0: clock 1 notify 0 signal 34",
            "thread 10 \"thread-10\"",
            "pending: 1 (signals 0)",
            "sigaltstack: 0x7f0000000000 size 65536 flags 0x0",
            "sigaltstack: none",
            "sched: policy 0 prio 0 flags 0x0 nice 0, affinity [f], timerslack 50000 ns, ioprio 0x0, pdeathsig 0",
            "seccomp: disabled",
            "seccomp: filter, 2 filters (oldest first: #0 1 insns, #1 2 insns log)",
            "signals: 1 handlers, 0 ignored, shared pending: none",
            "handler 10: 0x401100 flags 0x1c000004 (SA_SIGINFO|SA_RESTORER|SA_ONSTACK|SA_RESTART) mask 0x0",
            "memory: 3 mappings, 3 pages stored, 1 guard regions",
            "0x000000600000-0x000000604000 rw-p anon [locked sealed]",
            "guard 0x000000603000-0x000000604000 (1 pages)",
            "shell job terminal: foreground group 10, lflag 0x8a3b",
        ];
        for w in wanted {
            assert!(text.contains(w), "{w:?} missing from:\n{text}");
        }
    }

    /// Pid 11 shares its parent's address space and signal handlers.
    fn sharing_image() -> Image {
        let mut image = sample_image();
        image.inventory = sample::inventory(&[10, 11]);
        image.tree = sample::tree(&[10, 11]);
        let child = &mut image.tree.processes[1];
        (child.shares_vm, child.shares_sighand) = (true, true);
        let mut task = sample::task(11);
        task.sigactions.clear();
        image.processes.push(ProcessImage {
            task,
            mm: crate::image::mm::MmImage::default(),
            files: sample::files(),
        });
        image
    }

    #[test]
    fn text_and_json_show_a_shared_address_space() {
        let mut out = Vec::new();
        text(&sharing_image(), &mut out).expect("write to a vector");
        let text = String::from_utf8(out).expect("utf-8");
        for w in [
            "pid 11 (proc-11) parent 10 pgid 10 sid 10 running shares address space, signal handlers with parent",
            "memory: the address space of pid 10",
            "signals: the handlers of parent 10, shared pending: none",
        ] {
            assert!(text.contains(w), "{w:?} missing from:\n{text}");
        }
        let json = to_json(&sharing_image());
        assert_eq!(json["processes"][1]["mm_of"], 10);
        assert!(json["processes"][1]["mm"].is_null());
        assert_eq!(json["processes"][0]["mm_of"], 10);
        assert!(json["processes"][0]["mm"]["vmas"].is_array());
    }

    #[test]
    fn json_holds_the_new_records() {
        let json = to_json(&sample_image()).to_string();
        for key in [
            "\"seccomp\"",
            "\"audit\"",
            "\"loginuid\"",
            "\"guards\"",
            "\"insns\"",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
    }
}
