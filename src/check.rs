//! `stasis check`: find out whether this kernel and this process can checkpoint and restore.
//!
//! Every kernel feature stasis relies on is probed by using it — seizing a real child,
//! issuing the real ioctl — never by comparing version numbers, because distributions
//! backport and configs disable. Each probe is one small function returning the detail it
//! saw or the [`CheckError`] that shows the feature missing; [`run_all`] turns those into
//! [`Probe`] lines and [`print`] shows them. This module owns the verdicts and the words;
//! the raw calls live in [`crate::sys::probe`] and [`crate::sys::cpu`], and it never
//! changes the system: children it forks are killed and reaped before it returns.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{sysconf, Pid, SysconfVar};

use crate::abi::{PrctlMmMap, SigInfo, PAGE_SIZE};
use crate::sys::cpu;
use crate::sys::pagemap::{PageRegion, Pagemap, Query, PAGE_IS_PRESENT};
use crate::sys::probe::{self, ChildEnd, PausedChild};

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// What was probed, e.g. "PAGEMAP_SCAN ioctl".
    pub name: &'static str,
    /// stasis cannot work without it.
    pub required: bool,
    /// The feature is present.
    pub ok: bool,
    /// What the probe saw: the value found, or the error chain that showed it missing.
    pub detail: String,
    /// What fails without the feature ("PIDs cannot be restored"); empty for info lines.
    pub consequence: &'static str,
}

/// Why a probe judged its feature missing; the subject and the errno are in the message.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    LazyPages(crate::lazy::LazyError),
    #[error("stasis runs on x86_64, not {machine}")]
    Arch { machine: String },
    #[error("page size is {size} bytes, not 4096")]
    PageSize { size: i64 },
    #[error("sysconf(_SC_PAGESIZE) failed")]
    Sysconf(#[source] Errno),
    #[error("uname failed")]
    Uname(#[source] Errno),
    #[error("reading the capability sets failed")]
    Caps(#[source] caps::errors::CapsError),
    #[error("neither CAP_SYS_ADMIN nor CAP_CHECKPOINT_RESTORE is in the effective set")]
    NoCapability,
    #[error("fork of a probe child failed")]
    Fork(#[source] Errno),
    #[error("ptrace(PTRACE_SEIZE) of pid {pid} failed")]
    Seize { pid: Pid, source: Errno },
    #[error("ptrace(PTRACE_INTERRUPT) of pid {pid} failed")]
    Interrupt { pid: Pid, source: Errno },
    #[error("waitpid for the stop of pid {pid} failed")]
    WaitStop { pid: Pid, source: Errno },
    #[error("pid {pid} reported {status} instead of a PTRACE_EVENT_STOP")]
    NotEventStop { pid: Pid, status: String },
    #[error("needs a stopped tracee, which could not be made (see the ptrace seize line)")]
    NoTracee,
    #[error("/dev/null could not be opened to share with the probe child")]
    NoSharedFile,
    #[error("ptrace(PTRACE_GETREGSET, NT_X86_XSTATE) of pid {pid} failed")]
    GetXstate { pid: Pid, source: Errno },
    #[error("ptrace(PTRACE_GET_RSEQ_CONFIGURATION) of pid {pid} failed")]
    GetRseq { pid: Pid, source: Errno },
    #[error("ptrace(PTRACE_GETSIGMASK) of pid {pid} failed")]
    GetSigmask { pid: Pid, source: Errno },
    #[error("ptrace(PTRACE_PEEKSIGINFO) of pid {pid} failed")]
    PeekSiginfo { pid: Pid, source: Errno },
    #[error("process_vm_readv of {len} bytes at {addr:#x} in pid {pid} failed")]
    VmReadv {
        pid: Pid,
        addr: u64,
        len: usize,
        source: Errno,
    },
    #[error("opening {path} failed")]
    Open { path: String, source: io::Error },
    #[error("reading {len} bytes at {addr:#x} of {path} failed")]
    ReadAt {
        path: String,
        addr: u64,
        len: usize,
        source: io::Error,
    },
    #[error("{what} of pid {pid} returned different bytes than this process has at {addr:#x}")]
    Mismatch {
        what: &'static str,
        pid: Pid,
        addr: u64,
    },
    #[error("pidfd_open of pid {pid} failed")]
    PidfdOpen { pid: Pid, source: Errno },
    #[error("pidfd_getfd of fd {fd} of pid {pid} failed")]
    PidfdGetfd { pid: Pid, fd: i32, source: Errno },
    #[error("kcmp(KCMP_FILE) of fd {fd} in pids {a} and {b} failed")]
    Kcmp {
        a: Pid,
        b: Pid,
        fd: i32,
        source: Errno,
    },
    #[error(
        "kcmp(KCMP_FILE) says fd {fd} differs between a process and its fork (result {result})"
    )]
    KcmpResult { fd: i32, result: i32 },
    #[error("PAGEMAP_SCAN of our own pagemap failed")]
    PagemapScan(#[source] crate::sys::pagemap::PagemapError),
    #[error("PAGEMAP_SCAN did not report the touched page at {addr:#x} as present: {found:?}")]
    PagemapScanResult { addr: u64, found: Vec<PageRegion> },
    #[error("clone3 with CLONE_NEWPID and set_tid [1] failed")]
    Clone3(#[source] Errno),
    #[error("the clone3 child {end} instead of exiting 0 as pid 1")]
    Clone3Child { end: String },
    #[error("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) failed")]
    MmMapSize(#[source] Errno),
    #[error("the kernel's struct prctl_mm_map is {kernel} bytes, stasis's is {ours}")]
    MmMapSizeMismatch { kernel: u32, ours: usize },
    #[error("userfaultfd() failed")]
    Userfaultfd(#[source] Errno),
    #[error("UFFDIO_API with UFFD_FEATURE_WP_ASYNC failed")]
    UffdioApi(#[source] Errno),
    #[error("writing 4 to /proc/self/clear_refs failed")]
    ClearRefs(#[source] io::Error),
    #[error("pagemap bit 55 stayed clear after a write to {addr:#x} (no CONFIG_MEM_SOFT_DIRTY)")]
    SoftDirtyNotSet { addr: u64 },
    #[error("the [vdso] mapping at {start:#x} is sealed (VmFlags sl)")]
    VdsoSealed { start: u64 },
    #[error("a child's mremap of its [vdso] at {start:#x} failed")]
    VdsoMremap { start: u64, source: Errno },
    #[error("the vDSO mover child {end}")]
    VdsoMoverChild { end: String },
}

/// A feature: its name, whether stasis needs it, and what breaks without it.
struct Spec {
    name: &'static str,
    required: bool,
    consequence: &'static str,
}

const ARCH: Spec = Spec {
    name: "x86_64 with 4 KiB pages",
    required: true,
    consequence: "registers and pages are not in the layout stasis saves",
};
const CAPS: Spec = Spec {
    name: "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE",
    required: true,
    consequence: "PIDs, memory maps and other processes' state are off limits",
};
const SEIZE: Spec = Spec {
    name: "ptrace PTRACE_SEIZE + PTRACE_INTERRUPT",
    required: true,
    consequence: "processes cannot be stopped for a dump",
};
const XSTATE: Spec = Spec {
    name: "ptrace PTRACE_GETREGSET NT_X86_XSTATE",
    required: true,
    consequence: "FPU/SSE/AVX registers cannot be saved",
};
const RSEQ: Spec = Spec {
    name: "ptrace PTRACE_GET_RSEQ_CONFIGURATION",
    required: true,
    consequence: "rseq areas cannot be saved (glibc registers one in every thread)",
};
const SIGNALS: Spec = Spec {
    name: "ptrace PTRACE_GETSIGMASK + PTRACE_PEEKSIGINFO",
    required: true,
    consequence: "blocked and pending signals cannot be saved",
};
const VM_READV: Spec = Spec {
    name: "process_vm_readv",
    required: true,
    consequence: "memory cannot be copied out of a stopped process",
};
const PROC_MEM: Spec = Spec {
    name: "/proc/PID/mem",
    required: true,
    consequence: "memory of a stopped process cannot be read or written",
};
const PIDFD: Spec = Spec {
    name: "pidfd_open + pidfd_getfd",
    required: false,
    consequence: "file descriptors cannot be stolen for inspection",
};
const KCMP: Spec = Spec {
    name: "kcmp",
    required: false,
    consequence: "files shared between processes cannot be told from copies",
};
const PAGEMAP_SCAN: Spec = Spec {
    name: "PAGEMAP_SCAN ioctl",
    required: true,
    consequence: "present pages cannot be found in one call",
};
const CLONE3: Spec = Spec {
    name: "clone3 with set_tid",
    required: true,
    consequence: "PIDs cannot be restored",
};
const MM_MAP: Spec = Spec {
    name: "prctl PR_SET_MM_MAP",
    required: true,
    consequence: "brk, arg/env and auxv cannot be restored",
};
const PID_MAX: Spec = Spec {
    name: "pid_max",
    required: false,
    consequence: "",
};
const UFFD_WP: Spec = Spec {
    name: "userfaultfd UFFD_FEATURE_WP_ASYNC (dirty-page tracking for pre-dump)",
    required: false,
    consequence:
        "pre-dump and incremental dumps unavailable (stasis tracks with uffd-wp async only)",
};
const LAZY_PAGES: Spec = Spec {
    name: "lazy_pages: userfaultfd missing mode, fork/remap/remove/unmap events, UFFDIO_COPY",
    required: false,
    consequence: "dump/restore --lazy-pages (post-copy) unavailable",
};
const TRACKING: Spec = Spec {
    name: "dirty-page tracking method",
    required: false,
    consequence: "pre-dump and incremental dumps are refused",
};
const SOFT_DIRTY: Spec = Spec {
    name: "soft-dirty",
    required: false,
    consequence: "dirty pages must be tracked with userfaultfd write-protect instead",
};
const VDSO_LAYOUT: Spec = Spec {
    name: "vDSO layout, not sealed",
    required: true,
    consequence: "a sealed vDSO cannot be moved back to its dumped address",
};
const VDSO_MREMAP: Spec = Spec {
    name: "mremap of the vDSO",
    required: true,
    consequence: "the vDSO cannot be moved back to its dumped address",
};

/// Bytes a forked child shares with this process at the same address, for read probes.
static MARKER: [u8; 16] = *b"stasis-check-mrk";

/// `UFFD_FEATURE_WP_ASYNC` (linux/userfaultfd.h, Linux 6.7).
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `NT_X86_XSTATE` (linux/elf.h).
const NT_X86_XSTATE: u32 = 0x202;
/// Pagemap entry bit: the page was written since the last soft-dirty clear.
const PM_SOFT_DIRTY: u64 = 1 << 55;

/// Run every probe, in a fixed order, and return their outcomes.
pub fn run_all() -> Vec<Probe> {
    let mut probes = vec![outcome(&ARCH, arch()), outcome(&CAPS, capabilities())];
    probes.extend(child_probes());
    probes.extend([
        outcome(&PAGEMAP_SCAN, pagemap_scan()),
        outcome(&CLONE3, clone3_set_tid()),
        outcome(&MM_MAP, mm_map_size()),
        info(&PID_MAX, pid_max()),
        outcome(&UFFD_WP, uffd_wp_async()),
        outcome(&LAZY_PAGES, lazy_pages()),
        outcome(&SOFT_DIRTY, soft_dirty()),
        outcome(&TRACKING, tracking()),
        outcome(&VDSO_LAYOUT, vdso_layout()),
        outcome(&VDSO_MREMAP, vdso_mremap()),
    ]);
    probes
}

/// Print one line per probe: `OK      <name> (<detail>)` or
/// `MISSING <name>: <consequence> (<detail>)`, optional features marked as such.
pub fn print(probes: &[Probe], out: &mut impl Write) -> io::Result<()> {
    for p in probes {
        if p.ok {
            writeln!(out, "OK      {} ({})", p.name, p.detail)?;
        } else {
            let optional = if p.required { "" } else { " (optional)" };
            writeln!(
                out,
                "MISSING {}{optional}: {} ({})",
                p.name, p.consequence, p.detail
            )?;
        }
    }
    Ok(())
}

/// Every required feature is present.
pub fn all_required_ok(probes: &[Probe]) -> bool {
    probes.iter().all(|p| p.ok || !p.required)
}

/// A probe line from a probe function's result.
fn outcome(spec: &Spec, result: Result<String, CheckError>) -> Probe {
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(e) => (false, error_chain(&e)),
    };
    Probe {
        name: spec.name,
        required: spec.required,
        ok,
        detail,
        consequence: spec.consequence,
    }
}

/// An information-only line: always OK.
fn info(spec: &Spec, detail: String) -> Probe {
    Probe {
        name: spec.name,
        required: false,
        ok: true,
        detail,
        consequence: spec.consequence,
    }
}

/// `error: cause: cause...`
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// x86_64 machine and 4 KiB pages.
fn arch() -> Result<String, CheckError> {
    let uts = nix::sys::utsname::uname().map_err(CheckError::Uname)?;
    let machine = uts.machine().to_string_lossy().into_owned();
    if machine != "x86_64" {
        return Err(CheckError::Arch { machine });
    }
    let size = sysconf(SysconfVar::PAGE_SIZE)
        .map_err(CheckError::Sysconf)?
        .unwrap_or(0);
    if size as u64 != PAGE_SIZE {
        return Err(CheckError::PageSize { size: size as i64 });
    }
    Ok(format!("{machine}, {size}-byte pages"))
}

/// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE is effective.
fn capabilities() -> Result<String, CheckError> {
    for cap in [
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_CHECKPOINT_RESTORE,
    ] {
        if caps::has_cap(None, CapSet::Effective, cap).map_err(CheckError::Caps)? {
            return Ok(format!("{cap} is effective"));
        }
    }
    Err(CheckError::NoCapability)
}

/// The probes that need a forked child: ptrace, remote reads, pidfd and kcmp.
///
/// Ordering requirements: `/dev/null` is opened before the fork so the child inherits it
/// (pidfd and kcmp look at its copy), and all ptrace requests come from this thread, the
/// tracer.
fn child_probes() -> Vec<Probe> {
    let shared = File::open("/dev/null").ok();
    let (seize_line, tracee) = match seize_interrupt() {
        Ok(child) => (Ok(seized_detail(&child)), Some(child)),
        Err(e) => (Err(e), None),
    };
    let pid = tracee.as_ref().map(PausedChild::pid);
    let with_tracee =
        |f: fn(Pid) -> Result<String, CheckError>| pid.map_or(Err(CheckError::NoTracee), f);
    let with_fd = |f: fn(Pid, &File) -> Result<String, CheckError>| match (pid, &shared) {
        (Some(pid), Some(file)) => f(pid, file),
        (None, _) => Err(CheckError::NoTracee),
        (_, None) => Err(CheckError::NoSharedFile),
    };
    vec![
        outcome(&SEIZE, seize_line),
        outcome(&XSTATE, with_tracee(xstate)),
        outcome(&RSEQ, with_tracee(rseq)),
        outcome(&SIGNALS, with_tracee(signals)),
        outcome(&VM_READV, with_tracee(vm_readv)),
        outcome(&PROC_MEM, with_tracee(proc_mem)),
        outcome(&PIDFD, with_fd(pidfd)),
        outcome(&KCMP, with_fd(kcmp)),
    ]
}

/// The detail line of a successful seize.
fn seized_detail(child: &PausedChild) -> String {
    format!(
        "pid {} seized and stopped in PTRACE_EVENT_STOP",
        child.pid()
    )
}

/// Fork a paused child, `PTRACE_SEIZE` it and `PTRACE_INTERRUPT` it into a ptrace stop.
/// The returned child is killed and reaped on drop.
fn seize_interrupt() -> Result<PausedChild, CheckError> {
    let child = probe::spawn_paused().map_err(CheckError::Fork)?;
    let pid = child.pid();
    ptrace::seize(pid, ptrace::Options::empty())
        .map_err(|source| CheckError::Seize { pid, source })?;
    ptrace::interrupt(pid).map_err(|source| CheckError::Interrupt { pid, source })?;
    wait_event_stop(pid)?;
    Ok(child)
}

/// Wait for `pid`'s `PTRACE_EVENT_STOP`.
fn wait_event_stop(pid: Pid) -> Result<(), CheckError> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP)) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(source) => return Err(CheckError::WaitStop { pid, source }),
            Ok(status) => {
                return Err(CheckError::NotEventStop {
                    pid,
                    status: format!("{status:?}"),
                })
            }
        }
    }
}

/// `PTRACE_GETREGSET NT_X86_XSTATE` returns the tracee's xsave area.
fn xstate(pid: Pid) -> Result<String, CheckError> {
    let mut buf = vec![0u8; (cpu::xsave_size() as usize).max(4096)];
    let n = probe::getregset(pid, NT_X86_XSTATE, &mut buf)
        .map_err(|source| CheckError::GetXstate { pid, source })?;
    let features = match buf.get(..n).and_then(xstate_xcr0) {
        Some(mask) => format!("XCR0 {mask:#x} ({})", cpu::xfeature_names(mask).join(" ")),
        None => "too short to hold XCR0".to_owned(),
    };
    Ok(format!("{n} bytes; {features}"))
}

/// The XCR0 the kernel stores in software-usable bytes 464..472 of a ptrace xsave image
/// (`struct user_xstateregs`, arch/x86/include/asm/user.h).
fn xstate_xcr0(xsave: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(xsave.get(464..472)?.try_into().ok()?))
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` answers.
fn rseq(pid: Pid) -> Result<String, CheckError> {
    let (conf, n) =
        probe::get_rseq_configuration(pid).map_err(|source| CheckError::GetRseq { pid, source })?;
    Ok(match conf.rseq_abi_pointer {
        0 => format!("{n} bytes; the tracee has no rseq area"),
        ptr => format!(
            "{n} bytes; rseq area at {ptr:#x}, {} bytes, signature {:#x}",
            conf.rseq_abi_size, conf.signature
        ),
    })
}

/// `PTRACE_GETSIGMASK` and `PTRACE_PEEKSIGINFO` (thread and shared queues) answer.
fn signals(pid: Pid) -> Result<String, CheckError> {
    let mask = probe::getsigmask(pid).map_err(|source| CheckError::GetSigmask { pid, source })?;
    let mut info = [SigInfo::default(); 4];
    let mut peek = |shared| {
        probe::peeksiginfo(pid, 0, shared, &mut info)
            .map_err(|source| CheckError::PeekSiginfo { pid, source })
    };
    let (private, shared) = (peek(false)?, peek(true)?);
    Ok(format!(
        "mask {mask:#x}; {private} thread and {shared} process signals pending"
    ))
}

/// `process_vm_readv` reads [`MARKER`] out of the tracee.
fn vm_readv(pid: Pid) -> Result<String, CheckError> {
    let (addr, len) = (MARKER.as_ptr() as u64, MARKER.len());
    let mut buf = [0u8; 16];
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    process_vm_readv(pid, &mut [io::IoSliceMut::new(&mut buf)], &remote).map_err(|source| {
        CheckError::VmReadv {
            pid,
            addr,
            len,
            source,
        }
    })?;
    if buf != MARKER {
        return Err(CheckError::Mismatch {
            what: "process_vm_readv",
            pid,
            addr,
        });
    }
    Ok(format!("read {len} bytes at {addr:#x}"))
}

/// `/proc/PID/mem` of the tracee is readable and holds [`MARKER`].
fn proc_mem(pid: Pid) -> Result<String, CheckError> {
    let path = format!("/proc/{pid}/mem");
    let (addr, len) = (MARKER.as_ptr() as u64, MARKER.len());
    let file = File::open(&path).map_err(|source| CheckError::Open {
        path: path.clone(),
        source,
    })?;
    let mut buf = [0u8; 16];
    file.read_exact_at(&mut buf, addr)
        .map_err(|source| CheckError::ReadAt {
            path: path.clone(),
            addr,
            len,
            source,
        })?;
    if buf != MARKER {
        return Err(CheckError::Mismatch {
            what: "/proc/PID/mem",
            pid,
            addr,
        });
    }
    Ok(format!("read {len} bytes at {addr:#x} of {path}"))
}

/// `pidfd_open` the child and `pidfd_getfd` its copy of `shared`.
fn pidfd(pid: Pid, shared: &File) -> Result<String, CheckError> {
    let fd = shared.as_raw_fd();
    let pidfd = probe::pidfd_open(pid).map_err(|source| CheckError::PidfdOpen { pid, source })?;
    let stolen = probe::pidfd_getfd(pidfd.as_fd(), fd)
        .map_err(|source| CheckError::PidfdGetfd { pid, fd, source })?;
    Ok(format!(
        "fd {fd} of pid {pid} copied as fd {}",
        stolen.as_raw_fd()
    ))
}

/// `kcmp(KCMP_FILE)` sees that the child's copy of `shared` is the same open file.
fn kcmp(pid: Pid, shared: &File) -> Result<String, CheckError> {
    let (me, fd) = (Pid::this(), shared.as_raw_fd());
    let file = crate::sys::kcmp::Object::File;
    match crate::sys::kcmp::compare(me.as_raw(), pid.as_raw(), file, fd as u64, fd as u64) {
        Ok(0) => Ok(format!("fd {fd} of pids {me} and {pid} is one open file")),
        Ok(result) => Err(CheckError::KcmpResult { fd, result }),
        Err(source) => Err(CheckError::Kcmp {
            a: me,
            b: pid,
            fd,
            source,
        }),
    }
}

/// One page-aligned page inside a freshly written heap buffer, which must outlive its use.
fn touched_page(buf: &mut Vec<u8>) -> u64 {
    buf.resize(3 * PAGE_SIZE as usize, 0);
    buf.fill(0x5a);
    std::hint::black_box(&mut *buf);
    (buf.as_ptr() as u64 + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// `PAGEMAP_SCAN` finds a page this process just wrote as present.
fn pagemap_scan() -> Result<String, CheckError> {
    let pagemap = Pagemap::open(std::process::id() as i32).map_err(CheckError::PagemapScan)?;
    let mut buf = Vec::new();
    let addr = touched_page(&mut buf);
    let q = Query {
        all: PAGE_IS_PRESENT,
        report: PAGE_IS_PRESENT,
        ..Default::default()
    };
    let found = pagemap
        .scan(addr, addr + PAGE_SIZE, q)
        .map_err(CheckError::PagemapScan)?;
    std::hint::black_box(&buf);
    match found.as_slice() {
        [r] if r.start == addr && r.categories & PAGE_IS_PRESENT != 0 => {
            Ok(format!("page {addr:#x} reported present"))
        }
        _ => Err(CheckError::PagemapScanResult { addr, found }),
    }
}

/// `clone3` with `set_tid = [1]` into a new PID namespace.
fn clone3_set_tid() -> Result<String, CheckError> {
    match probe::clone3_set_tid_in_new_pidns().map_err(CheckError::Clone3)? {
        ChildEnd::Exited(0) => Ok("a child was created as pid 1 of a new PID namespace".into()),
        end => Err(CheckError::Clone3Child {
            end: describe_end(end),
        }),
    }
}

/// "exited with code N" / "was killed by SIGX".
fn describe_end(end: ChildEnd) -> String {
    match end {
        ChildEnd::Exited(code) => format!("exited with code {code}"),
        ChildEnd::Signaled(sig) => format!("was killed by {}", Signal::as_str(sig)),
    }
}

/// `PR_SET_MM_MAP_SIZE` answers with the size of our `PrctlMmMap`.
fn mm_map_size() -> Result<String, CheckError> {
    let kernel = probe::prctl_mm_map_size().map_err(CheckError::MmMapSize)?;
    let ours = std::mem::size_of::<PrctlMmMap>();
    if kernel as usize != ours {
        return Err(CheckError::MmMapSizeMismatch { kernel, ours });
    }
    Ok(format!("struct prctl_mm_map is {kernel} bytes"))
}

/// `/proc/sys/kernel/pid_max`, for information.
fn pid_max() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/pid_max") {
        Ok(text) => text.trim().to_owned(),
        Err(e) => format!("/proc/sys/kernel/pid_max unreadable: {e}"),
    }
}

/// The way this kernel lets stasis track written pages (pre-dump, incremental dumps):
/// `Some("uffd-wp async")`, or `None` (stasis does not use soft-dirty: it is compiled out
/// of the kernels this was built for, and userfaultfd tracking needs no `clear_refs`).
pub fn tracking_method() -> Option<&'static str> {
    uffd_wp_async().ok().map(|_| "uffd-wp async")
}

/// Which method pre-dump uses: uffd-wp async, or none (soft-dirty alone is not used).
fn tracking() -> Result<String, CheckError> {
    let soft = if soft_dirty().is_ok() {
        "soft-dirty present, unused"
    } else {
        "no soft-dirty"
    };
    uffd_wp_async().map(|_| format!("uffd-wp async; {soft}"))
}

/// A userfaultfd accepts `UFFD_FEATURE_WP_ASYNC` in its API handshake.
fn uffd_wp_async() -> Result<String, CheckError> {
    let uffd = probe::userfaultfd().map_err(CheckError::Userfaultfd)?;
    let features =
        probe::uffdio_api(uffd.as_fd(), UFFD_FEATURE_WP_ASYNC).map_err(CheckError::UffdioApi)?;
    Ok(format!("handshake enabled features {features:#x}"))
}

/// A page of ours filled through a missing-mode userfaultfd (`lazy::restore`).
fn lazy_pages() -> Result<String, CheckError> {
    crate::lazy::restore::check_kernel()
        .map(|f| format!("handshake enabled features {f:#x}"))
        .map_err(CheckError::LazyPages)
}

/// After clearing soft-dirty bits, a written page shows pagemap bit 55.
///
/// Writing 4 to `clear_refs` succeeds even without CONFIG_MEM_SOFT_DIRTY, so only the bit
/// tells. Side effect: this process's soft-dirty bits are reset (nothing here uses them).
fn soft_dirty() -> Result<String, CheckError> {
    let mut buf = Vec::new();
    let addr = touched_page(&mut buf);
    std::fs::write("/proc/self/clear_refs", "4").map_err(CheckError::ClearRefs)?;
    touched_page(&mut buf);
    let entry = pagemap_entry(addr)?;
    std::hint::black_box(&buf);
    if entry & PM_SOFT_DIRTY == 0 {
        return Err(CheckError::SoftDirtyNotSet { addr });
    }
    Ok(format!("page {addr:#x} soft-dirty after a write"))
}

/// The `/proc/self/pagemap` entry of the page at `addr`.
fn pagemap_entry(addr: u64) -> Result<u64, CheckError> {
    let path = "/proc/self/pagemap";
    let file = File::open(path).map_err(|source| CheckError::Open {
        path: path.into(),
        source,
    })?;
    let mut entry = [0u8; 8];
    let offset = addr / PAGE_SIZE * 8;
    file.read_exact_at(&mut entry, offset)
        .map_err(|source| CheckError::ReadAt {
            path: path.into(),
            addr: offset,
            len: 8,
            source,
        })?;
    Ok(u64::from_le_bytes(entry))
}

/// Where the vDSO of this process is and how it is laid out.
#[derive(Debug, PartialEq, Eq)]
struct VdsoLayout {
    /// `[vdso]` start and end.
    vdso: Option<(u64, u64)>,
    /// A `[vvar_vclock]` mapping exists (Linux 6.13+: vvar, vvar_vclock, vdso).
    vvar_vclock: bool,
}

/// The vDSO mappings named in `/proc/PID/maps` text.
fn parse_vdso_layout(maps: &str) -> VdsoLayout {
    let mut layout = VdsoLayout {
        vdso: None,
        vvar_vclock: false,
    };
    for line in maps.lines() {
        match line.split_whitespace().nth(5) {
            Some("[vdso]") => layout.vdso = parse_range(line),
            Some("[vvar_vclock]") => layout.vvar_vclock = true,
            _ => {}
        }
    }
    layout
}

/// The `start-end` range at the head of a maps line.
fn parse_range(line: &str) -> Option<(u64, u64)> {
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    ))
}

/// The `VmFlags` of the mapping starting at `start` in `/proc/PID/smaps` text contain `sl`.
fn smaps_sealed(smaps: &str, start: u64) -> bool {
    let mut in_vma = false;
    for line in smaps.lines() {
        if is_vma_header(line) {
            in_vma = parse_range(line).is_some_and(|(s, _)| s == start);
        } else if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| in_vma) {
            return flags.split_whitespace().any(|f| f == "sl");
        }
    }
    false
}

/// A smaps line that starts a mapping (`start-end perms ...`), not a `Key: value` line.
fn is_vma_header(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
}

/// Read `/proc/self/<name>`.
fn read_self(name: &str) -> Result<String, CheckError> {
    let path = format!("/proc/self/{name}");
    std::fs::read_to_string(&path).map_err(|source| CheckError::Open { path, source })
}

/// The vDSO layout, and that `[vdso]` is not sealed.
fn vdso_layout() -> Result<String, CheckError> {
    let layout = parse_vdso_layout(&read_self("maps")?);
    let shape = if layout.vvar_vclock {
        "3-mapping layout ([vvar], [vvar_vclock], [vdso])"
    } else {
        "2-mapping layout ([vvar], [vdso])"
    };
    let Some((start, _)) = layout.vdso else {
        return Ok("no [vdso] mapping".into());
    };
    if smaps_sealed(&read_self("smaps")?, start) {
        return Err(CheckError::VdsoSealed { start });
    }
    Ok(format!("{shape}; [vdso] at {start:#x} not sealed"))
}

/// A forked child can `mremap` its `[vdso]` elsewhere.
fn vdso_mremap() -> Result<String, CheckError> {
    let Some((start, end)) = parse_vdso_layout(&read_self("maps")?).vdso else {
        return Ok("no [vdso] mapping to move".into());
    };
    match probe::mremap_vdso_in_child(start, end - start).map_err(CheckError::Fork)? {
        ChildEnd::Exited(0) => Ok(format!("a child moved its [vdso] from {start:#x}")),
        ChildEnd::Exited(code) => Err(CheckError::VdsoMremap {
            start,
            source: Errno::from_raw(code),
        }),
        end => Err(CheckError::VdsoMoverChild {
            end: describe_end(end),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS_3: &str = "\
7f7bd0732000-7f7bd0736000 r--p 00000000 00:00 0                          [vvar]
7f7bd0736000-7f7bd0738000 r--p 00000000 00:00 0                          [vvar_vclock]
7f7bd0738000-7f7bd073a000 r-xp 00000000 00:00 0                          [vdso]
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn vdso_layout_with_vvar_vclock() {
        let layout = parse_vdso_layout(MAPS_3);
        assert_eq!(layout.vdso, Some((0x7f7bd0738000, 0x7f7bd073a000)));
        assert!(layout.vvar_vclock);
    }

    #[test]
    fn vdso_layout_two_mappings_and_none() {
        let two =
            "7f00-7f04 r--p 00000000 00:00 0 [vvar]\n7f04-7f06 r-xp 00000000 00:00 0 [vdso]\n";
        assert_eq!(
            parse_vdso_layout(two),
            VdsoLayout {
                vdso: Some((0x7f04, 0x7f06)),
                vvar_vclock: false
            }
        );
        assert_eq!(
            parse_vdso_layout("1000-2000 r-xp 00000000 08:01 5 /bin/true\n").vdso,
            None
        );
    }

    #[test]
    fn sealed_flag_is_read_from_the_right_mapping() {
        let smaps = "\
1000-2000 r-xp 00000000 00:00 0 [vvar]
Size:                  4 kB
VmFlags: rd mr sl
3000-4000 r-xp 00000000 00:00 0 [vdso]
Size:                  4 kB
VmFlags: rd ex mr mw me de
";
        assert!(smaps_sealed(smaps, 0x1000));
        assert!(!smaps_sealed(smaps, 0x3000));
        assert!(!smaps_sealed(smaps, 0x5000));
    }

    #[test]
    fn xcr0_is_read_from_the_software_bytes() {
        let mut xsave = vec![0u8; 576];
        xsave[464..472].copy_from_slice(&0xe7u64.to_le_bytes());
        assert_eq!(xstate_xcr0(&xsave), Some(0xe7));
        assert_eq!(xstate_xcr0(&xsave[..100]), None);
    }

    fn probe(name: &'static str, required: bool, ok: bool) -> Probe {
        Probe {
            name,
            required,
            ok,
            detail: "d".into(),
            consequence: "c",
        }
    }

    #[test]
    fn only_required_probes_decide() {
        assert!(all_required_ok(&[
            probe("a", true, true),
            probe("b", false, false)
        ]));
        assert!(!all_required_ok(&[
            probe("a", true, false),
            probe("b", false, true)
        ]));
    }

    #[test]
    fn print_format() {
        let mut out = Vec::new();
        print(
            &[
                probe("a", true, true),
                probe("b", true, false),
                probe("c", false, false),
            ],
            &mut out,
        )
        .expect("writing to a Vec cannot fail");
        let text = String::from_utf8(out).expect("print writes UTF-8");
        assert_eq!(
            text,
            "OK      a (d)\nMISSING b: c (d)\nMISSING c (optional): c (d)\n"
        );
    }

    #[test]
    fn every_required_feature_is_present_here() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: the probes need root (CAP_SYS_ADMIN, ptrace, clone3 set_tid)");
            return;
        }
        let probes = run_all();
        let mut out = Vec::new();
        print(&probes, &mut out).expect("writing to a Vec cannot fail");
        let text = String::from_utf8_lossy(&out);
        eprintln!("{text}");
        assert_eq!(probes.len(), 20);
        assert!(all_required_ok(&probes), "{text}");
        assert!(probes.iter().any(|p| p.name == "pid_max" && p.ok));
    }
}
