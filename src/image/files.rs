//! The fd table record.

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
    /// A regular file or directory, reopened by path at `pos`.
    Path { file: FileId, pos: u64 },
    /// A character device reopened by path (`/dev/null`, `/dev/urandom`, ...).
    CharDev { path: String, rdev: u64, pos: u64 },
    /// The invoking terminal (`--shell-job`): restored as the restorer's terminal.
    Tty { rdev: u64 },
    /// The same open file description as the earlier fd `of` (a `dup`): one offset and
    /// one set of status flags for both.
    Dup { of: i32 },
    /// The same open file description as fd `fd` of process `pid`, which comes earlier in
    /// the tree (inherited across `fork`, or passed over a socket): one offset and one set
    /// of status flags for every holder.
    Inherited { pid: i32, fd: i32 },
}
