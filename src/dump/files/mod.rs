//! The fd table, cwd/root and umask. Each fd is looked at from `/proc/PID/fd` and
//! `/proc/PID/fdinfo` ([`OpenFd`]), fds sharing one open file description are recorded once
//! (the others become [`FdKind::Dup`]), and the rest is dispatched by kind to one module per
//! kind family, each the twin of `restore/files/<kind>.rs`. Kinds stasis cannot restore are
//! refused here, naming the fd, the pid and the kind.
//!
//! - [`path`]: regular files and directories;
//! - [`chardev`]: character devices and terminals.

pub mod chardev;
pub mod path;

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::DumpError;
use crate::image::files::{FdEntry, FdKind, FilesImage};
use crate::proc::{self, FdInfo};

pub use chardev::is_tty;

/// What the fd code needs of the dump options.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdOptions {
    pub shell_job: bool,
}

/// One open fd of the target, as seen from outside.
pub struct OpenFd {
    pub pid: i32,
    pub fd: i32,
    /// The `/proc/PID/fd/N` link text (`/path`, `pipe:[123]`, `anon_inode:[eventfd]`...).
    pub target: String,
    pub info: FdInfo,
    /// `stat` of the open file itself (through the magic link).
    pub meta: Metadata,
}

impl OpenFd {
    pub fn inspect(pid: i32, fd: i32) -> Result<OpenFd, DumpError> {
        let info = proc::fdinfo(pid, fd)?;
        let target = proc::link(pid, &format!("fd/{fd}"))?
            .to_string_lossy()
            .into_owned();
        let through = format!("/proc/{pid}/fd/{fd}");
        let meta = std::fs::metadata(&through).map_err(|source| DumpError::Stat {
            path: through,
            source,
        })?;
        Ok(OpenFd {
            pid,
            fd,
            target,
            info,
            meta,
        })
    }

    /// `/proc/PID/fd/N`, through which the open file can be reached.
    pub fn through(&self) -> String {
        format!("/proc/{}/fd/{}", self.pid, self.fd)
    }

    /// "fd 3 of pid 42 is <kind> (<target>), which stasis cannot checkpoint yet".
    pub fn refuse(&self, kind: &str) -> DumpError {
        self.error(&format!(
            "is {kind} ({}), which stasis cannot checkpoint yet",
            self.target
        ))
    }

    /// "fd 3 of pid 42 <what>".
    pub fn error(&self, what: &str) -> DumpError {
        DumpError::unsupported(format!("fd {} of pid {} {what}", self.fd, self.pid))
    }

    /// The open file's identity: equal for every fd of one open file description.
    fn object(&self) -> (u64, u64) {
        (self.meta.dev(), self.meta.ino())
    }
}

/// All open fds of `pid`.
pub fn fd_table(pid: i32, opts: &FdOptions) -> Result<FilesImage, DumpError> {
    let mut fds: Vec<FdEntry> = Vec::new();
    let mut created: Vec<(i32, (u64, u64))> = Vec::new();
    for fd in proc::fds(pid)? {
        let open = OpenFd::inspect(pid, fd)?;
        let kind = match same_description(&open, &created) {
            Some(of) => FdKind::Dup { of },
            None => {
                created.push((fd, open.object()));
                classify(&open, opts)?
            }
        };
        fds.push(FdEntry {
            fd,
            cloexec: open.info.flags & libc::O_CLOEXEC != 0,
            flags: open.info.flags & !libc::O_CLOEXEC,
            kind,
        });
    }
    Ok(FilesImage { fds })
}

/// The earlier fd holding the same open file description (`kcmp(KCMP_FILE)`), asked only
/// for fds of the same object, so the common case costs no syscall.
fn same_description(open: &OpenFd, created: &[(i32, (u64, u64))]) -> Option<i32> {
    let p = nix::unistd::Pid::from_raw(open.pid);
    created
        .iter()
        .filter(|(_, object)| *object == open.object())
        .find(|(fd, _)| crate::sys::probe::kcmp_file(p, p, *fd, open.fd) == Ok(0))
        .map(|(fd, _)| *fd)
}

/// Dispatches by kind.
fn classify(open: &OpenFd, opts: &FdOptions) -> Result<FdKind, DumpError> {
    if let Some(kind) = special_kind(&open.target) {
        return Err(open.refuse(kind));
    }
    if open.target.ends_with(" (deleted)") {
        return Err(open.refuse("a deleted file"));
    }
    let ft = open.meta.file_type();
    if ft.is_file() || ft.is_dir() {
        return path::dump(open);
    }
    if ft.is_char_device() {
        return chardev::dump(open, opts.shell_job);
    }
    Err(open.refuse(if ft.is_fifo() {
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
            "userfaultfd" => "a userfaultfd",
            "bpf-map" | "bpf-prog" => "a bpf object",
            "perf_event" => "a perf_event",
            "pidfd" => "a pidfd",
            _ => "an anonymous-inode file",
        })
    } else {
        None
    }
}
