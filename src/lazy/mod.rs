//! Post-copy migration (`dump --lazy-pages`, `restore --lazy-pages`): the dump writes
//! the image without the contents of private anonymous memory and keeps its tree frozen
//! to serve those pages over TCP (`source.rs`); the restore rebuilds the tree with those
//! mappings registered with a missing-mode userfaultfd made inside each process
//! (`restore.rs`), starts it at once and fills each page when it is first touched or
//! in the background (`target.rs`), over the protocol of `proto.rs`.
//!
//! What can be lazy is chosen at the dump (`plan.rs`): private anonymous mappings of
//! processes with no child in the tree (a child is forked from its restored parent and
//! inherits its memory, so a parent's must be whole before). Shared memory, private file
//! mappings' written pages, the vDSO, hugetlb, locked, sealed and guarded mappings are
//! written to the image and filled at restore as usual.
//!
//! It owns the protocol, the bookkeeping of missing pages (`remaining.rs`) and both
//! ends' loops; freezing, the image and the restore stages stay `dump/`'s, `image/`'s and
//! `restore/`'s.

pub mod inbox;
pub mod local;
pub mod plan;
pub mod proto;
pub mod remaining;
pub mod restore;
pub mod source;
pub mod stream;
pub mod target;
pub mod watchdog;

use nix::errno::Errno;

/// Errors of post-copy, each naming its peer, pid or range.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error("listen on {address}:{port} for the post-copy target")]
    Listen {
        address: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("accept the post-copy target")]
    Accept(#[source] std::io::Error),
    #[error("connect to the post-copy source at {address}:{port}")]
    Connect {
        address: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("the post-copy source refused: {why}")]
    Refused { why: String },
    #[error("post-copy protocol: {what}")]
    Protocol { what: String },
    #[error("the link to the post-copy source failed before every page arrived")]
    Link {
        #[source]
        source: std::io::Error,
    },
    #[error("pages {addr:#x}+{len:#x} of pid {pid} arrived corrupted (crc32 mismatch)")]
    Corrupt { pid: i32, addr: u64, len: u64 },
    #[error("userfaultfd {op} for pid {pid}")]
    Uffd {
        pid: i32,
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("poll the post-copy userfaultfds")]
    Poll {
        #[source]
        source: Errno,
    },
    #[error("the restore gave up before the tree ran")]
    Abandoned,
    #[error("start the post-copy watchdog: {op}")]
    Watchdog {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("this kernel's userfaultfd lacks {what}, which restore --lazy-pages needs")]
    Missing { what: String },
}
