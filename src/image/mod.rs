//! The image directory: record types, their on-disk framing, atomic writing and verified
//! loading. This module knows the format, not processes: it never touches a live task.
//!
//! Layout of a directory (see `docs/image-format.md`):
//! `inventory.img`, `tree.img`, `tty.img` (from format 9), and per live process
//! `task-<pid>.img`, `mm-<pid>.img`, `files-<pid>.img`, `pages-<pid>.img`; `ghosts.img`
//! when files deleted while in use were saved.
//!
//! - [`file`]: the header and postcard payload of one record file.
//! - [`pages`]: the raw page data files.
//! - [`dir`]: writing a directory atomically ([`ImageWriter`]).
//! - [`store`]: compression, encryption, signatures and streams of whole image files.
//! - [`sink`]: an image sent elsewhere as it is written (`--page-server`).
//! - [`load`]: reading and verifying a whole directory ([`Image`]).
//! - [`validate`]: "impossible values" checks on decoded records ([`seccomp`] checks its own).

pub mod cgroup;
pub mod chain;
pub mod dir;
pub mod error;
pub mod file;
pub mod files;
pub mod files_v16;
pub mod files_v8;
pub mod forks;
pub mod ghost;
pub mod inventory;
pub mod lazy;
pub mod load;
pub mod mm;
pub mod mm_v8;
pub mod mnt;
pub mod mqueue;
pub mod netlock;
pub mod netns;
pub mod ns;
pub mod orphan_pty;
pub mod pages;
pub mod pty_devpts;
pub mod seccomp;
pub mod sink;
pub mod sock;
pub mod sockopts;
pub mod store;
pub mod sysv;
pub mod task;
pub mod tree;
pub mod tty;
pub mod userns;
pub mod validate;

#[cfg(test)]
pub(crate) mod sample;

pub use dir::ImageWriter;
pub use error::ImageError;
pub use file::Kind;
pub use load::{Image, ProcessImage};
pub use sink::{ImageSink, RemoteSink};
