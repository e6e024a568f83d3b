//! The image directory: record types, their on-disk framing, atomic writing and verified
//! loading. This module knows the format, not processes: it never touches a live task.
//!
//! Layout of a directory (see `docs/image-format.md`):
//! `inventory.img`, and per process `task-<pid>.img`, `mm-<pid>.img`, `files-<pid>.img`,
//! `pages-<pid>.img`.

pub mod files;
pub mod inventory;
pub mod mm;
pub mod task;
