//! The fd table record: one [`FdEntry`] per descriptor, whose [`FdKind`] says what it
//! refers to. Each kind of object has its own struct (`PathFd`, `CharDevFd`, ...), and the
//! code that dumps and restores it lives in `dump/files/<kind>.rs` and
//! `restore/files/<kind>.rs`.
//!
//! Objects are created once, by the first fd that holds them; every other fd holding the
//! same open file description refers to that one ([`FdKind::Dup`] within a process).

use serde::{Deserialize, Serialize};

use super::mm::FileId;

/// `files-<pid>.img`: the open file descriptors of one process, in fd order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesImage {
    pub fds: Vec<FdEntry>,
}

/// One open file descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub fd: i32,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
    /// Open file status flags (`O_APPEND`, `O_NONBLOCK`, access mode...) from fdinfo.
    pub flags: i32,
    pub kind: FdKind,
}

/// What the descriptor refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// A regular file or directory, reopened by path.
    Path(PathFd),
    /// A character device reopened by path (`/dev/null`, `/dev/urandom`, ...).
    CharDev(CharDevFd),
    /// The invoking terminal (`--shell-job`): restored as the restorer's terminal.
    Tty(TtyFd),
    /// The same open file description as the earlier fd `of` (a `dup`): one offset and
    /// one set of status flags for both.
    Dup { of: i32 },
}

/// A regular file or directory, reopened by path at `pos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFd {
    pub file: FileId,
    pub pos: u64,
}

/// A character device other than a terminal, reopened by path at `pos`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharDevFd {
    pub path: String,
    pub rdev: u64,
    pub pos: u64,
}

/// A terminal fd of a shell job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyFd {
    pub rdev: u64,
}
