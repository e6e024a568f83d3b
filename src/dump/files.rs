//! The fd table, cwd/root and umask. Each fd is classified from `/proc/PID/fd` and
//! `/proc/PID/fdinfo` without touching the open file; kinds stasis cannot restore are
//! refused here, naming the fd, the pid and the kind. The restore side is `restore/files.rs`.
//! Sockets are `files/{sock,unix,inet}.rs`, pseudo-terminals `files/pty.rs`.

mod inet;
mod pty;
mod sock;
mod unix;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::mm::file_id;
use super::DumpError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::proc;
pub use inet::{addr_text, Held};
use sock::SockCtx;

/// What the user allowed for fds (CRIU's option names).
#[derive(Clone, Debug, Default)]
pub struct FdOptions {
    /// `--shell-job`: terminal fds are the invoking terminal.
    pub shell_job: bool,
    /// `--tcp-established`: save established TCP connections with TCP_REPAIR.
    pub tcp_established: bool,
    /// `--tcp-close`: save established TCP connections as closed.
    pub tcp_close: bool,
    /// `--ext-unix-sk`: unix sockets connected outside are connected again at restore.
    pub ext_unix_sk: bool,
    /// `--skip-in-flight`: drop fds in flight and connections not yet accepted.
    pub skip_in_flight: bool,
}

/// All open fds of `pid`, and the sockets held in repair mode meanwhile (see [`Held`]).
pub fn fd_table(pid: i32, opts: &FdOptions) -> Result<(FilesImage, Held), DumpError> {
    let mut fds: Vec<FdEntry> = Vec::new();
    let mut links = Vec::new();
    for fd in proc::fds(pid)? {
        let target = proc::link(pid, &format!("fd/{fd}"))?
            .to_string_lossy()
            .into_owned();
        links.push((fd, target));
    }
    let mut ctx = SockCtx::new(pid, opts, &links);
    find_ptys(&mut ctx, &links)?;
    for (fd, target) in &links {
        let entry = fd_entry(&mut ctx, *fd, target)?;
        let dup = fds
            .iter()
            .find(|e| !matches!(e.kind, FdKind::Dup { .. }) && same_description(pid, e, &entry));
        let entry = match dup {
            Some(orig) => FdEntry {
                kind: FdKind::Dup { of: orig.fd },
                ..entry
            },
            None => entry,
        };
        fds.push(entry);
    }
    Ok((FilesImage { fds }, ctx.held))
}

/// Pty masters of the process by pts number, and the first fd of each of their slaves.
fn find_ptys(ctx: &mut SockCtx<'_>, links: &[(i32, String)]) -> Result<(), DumpError> {
    for (fd, target) in links {
        if pty::is_master(target) {
            let info = proc::fdinfo(ctx.pid, *fd)?;
            if let Some(index) = pty::master_index(&info.extra) {
                ctx.masters.entry(index).or_insert(*fd);
            }
        } else if target.starts_with("/dev/pts/") {
            let rdev = std::fs::metadata(format!("/proc/{}/fd/{fd}", ctx.pid))
                .map(|m| m.rdev())
                .unwrap_or(0);
            if let Some(index) = pty::slave_index(rdev) {
                ctx.slaves.entry(index).or_insert(*fd);
            }
        }
    }
    Ok(())
}

/// Two fds of `pid` share one open file description (`kcmp(KCMP_FILE)`); only asked for
/// fds that name the same object, so the common case costs no syscall.
fn same_description(pid: i32, a: &FdEntry, b: &FdEntry) -> bool {
    let same_object = match (&a.kind, &b.kind) {
        (FdKind::Path { file: x, .. }, FdKind::Path { file: y, .. }) => {
            x.dev == y.dev && x.ino == y.ino
        }
        (FdKind::CharDev { rdev: x, .. }, FdKind::CharDev { rdev: y, .. }) => x == y,
        (FdKind::PtySlave { index: x }, FdKind::PtySlave { index: y }) => x == y,
        _ => false,
    };
    let p = nix::unistd::Pid::from_raw(pid);
    same_object && crate::sys::probe::kcmp_file(p, p, a.fd, b.fd) == Ok(0)
}

fn fd_entry(ctx: &mut SockCtx<'_>, fd: i32, target: &str) -> Result<FdEntry, DumpError> {
    let info = proc::fdinfo(ctx.pid, fd)?;
    let kind = if let Some(ino) = sock::socket_inode(target) {
        sock::socket_kind(ctx, fd, ino)?
    } else if let Some(index) = pty::is_master(target)
        .then(|| pty::master_index(&info.extra))
        .flatten()
    {
        pty::master_kind(ctx, fd, index)?
    } else {
        fd_kind(ctx, fd, target, info.pos)?
    };
    Ok(FdEntry {
        fd,
        cloexec: info.flags & libc::O_CLOEXEC != 0,
        flags: info.flags & !libc::O_CLOEXEC,
        kind,
    })
}

fn fd_kind(ctx: &SockCtx<'_>, fd: i32, target: &str, pos: u64) -> Result<FdKind, DumpError> {
    let (pid, shell_job) = (ctx.pid, ctx.opts.shell_job);
    let refuse = |kind: &str| {
        DumpError::unsupported(format!(
            "fd {fd} of pid {pid} is {kind} ({target}), which stasis cannot checkpoint yet"
        ))
    };
    if let Some(kind) = special_kind(target) {
        return Err(refuse(kind));
    }
    if target.ends_with(" (deleted)") {
        return Err(refuse("a deleted file"));
    }
    let through = format!("/proc/{pid}/fd/{fd}");
    let meta = std::fs::metadata(&through).map_err(|source| DumpError::Stat {
        path: through.clone(),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        return Ok(FdKind::Path {
            file: checked_path(pid, fd, &through, target)?,
            pos,
        });
    }
    if let Some(kind) = pty::slave_index(meta.rdev()).and_then(|i| pty::slave_kind(ctx, i)) {
        return Ok(kind);
    }
    if ft.is_char_device() {
        return char_device(meta.rdev(), target, pos, shell_job).ok_or_else(|| {
            DumpError::unsupported(format!(
                "fd {fd} of pid {pid} is a terminal ({target}); use --shell-job (-j) to restore it on the current terminal"
            ))
        });
    }
    Err(refuse(if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a block device"
    }))
}

/// Kinds recognizable from the link text alone.
fn special_kind(target: &str) -> Option<&'static str> {
    if target.starts_with("pipe:") {
        Some("a pipe")
    } else if target.starts_with("/memfd:") {
        Some("a memfd")
    } else if let Some(rest) = target.strip_prefix("anon_inode:") {
        Some(match rest.trim_matches(|c| c == '[' || c == ']') {
            "eventfd" => "an eventfd",
            "eventpoll" => "an epoll instance",
            "timerfd" => "a timerfd",
            "signalfd" => "a signalfd",
            "inotify" => "an inotify instance",
            "io_uring" => "an io_uring instance",
            "[userfaultfd]" | "userfaultfd" => "a userfaultfd",
            "bpf-map" | "bpf-prog" => "a bpf object",
            "perf_event" => "a perf_event",
            "[pidfd]" | "pidfd" => "a pidfd",
            _ => "an anonymous-inode file",
        })
    } else {
        None
    }
}

fn checked_path(
    pid: i32,
    fd: i32,
    through: &str,
    target: &str,
) -> Result<crate::image::mm::FileId, DumpError> {
    let id = file_id(through, target)?;
    match std::fs::metadata(target) {
        Ok(m) if m.dev() == id.dev && m.ino() == id.ino => Ok(id),
        _ => Err(DumpError::unsupported(format!(
            "fd {fd} of pid {pid}: {target} no longer names the open file (moved, replaced or in another mount namespace)"
        ))),
    }
}

/// Terminals become `Tty` under `--shell-job`; other character devices reopen by path.
fn char_device(rdev: u64, target: &str, pos: u64, shell_job: bool) -> Option<FdKind> {
    if !is_tty(rdev) {
        return Some(FdKind::CharDev {
            path: target.to_string(),
            rdev,
            pos,
        });
    }
    shell_job.then_some(FdKind::Tty { rdev })
}

/// Pseudo-terminal slaves (136-143), virtual consoles (4) and /dev/tty, /dev/console (5).
pub fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    (136..=143).contains(&major) || major == 4 || (major == 5 && libc::minor(rdev) < 2)
}
