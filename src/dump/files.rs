//! The fd table, cwd/root and umask. Each fd is classified from `/proc/PID/fd` and
//! `/proc/PID/fdinfo` without touching the open file; kinds stasis cannot restore are
//! refused here, naming the fd, the pid and the kind. The restore side is `restore/files.rs`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::mm::file_id;
use super::DumpError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::proc;

/// All open fds of `pid`.
pub fn fd_table(pid: i32, shell_job: bool) -> Result<FilesImage, DumpError> {
    let mut fds: Vec<FdEntry> = Vec::new();
    for fd in proc::fds(pid)? {
        let entry = fd_entry(pid, fd, shell_job)?;
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
    Ok(FilesImage { fds })
}

/// Two fds of `pid` share one open file description (`kcmp(KCMP_FILE)`); only asked for
/// fds that name the same object, so the common case costs no syscall.
fn same_description(pid: i32, a: &FdEntry, b: &FdEntry) -> bool {
    let same_object = match (&a.kind, &b.kind) {
        (FdKind::Path { file: x, .. }, FdKind::Path { file: y, .. }) => {
            x.dev == y.dev && x.ino == y.ino
        }
        (FdKind::CharDev { rdev: x, .. }, FdKind::CharDev { rdev: y, .. }) => x == y,
        _ => false,
    };
    let p = nix::unistd::Pid::from_raw(pid);
    same_object && crate::sys::probe::kcmp_file(p, p, a.fd, b.fd) == Ok(0)
}

fn fd_entry(pid: i32, fd: i32, shell_job: bool) -> Result<FdEntry, DumpError> {
    let info = proc::fdinfo(pid, fd)?;
    let target = proc::link(pid, &format!("fd/{fd}"))?
        .to_string_lossy()
        .into_owned();
    let kind = fd_kind(pid, fd, &target, info.pos, shell_job)?;
    Ok(FdEntry {
        fd,
        cloexec: info.flags & libc::O_CLOEXEC != 0,
        flags: info.flags & !libc::O_CLOEXEC,
        kind,
    })
}

fn fd_kind(
    pid: i32,
    fd: i32,
    target: &str,
    pos: u64,
    shell_job: bool,
) -> Result<FdKind, DumpError> {
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
    } else if target.starts_with("socket:") {
        Some("a socket")
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
