//! The system layer: every `unsafe` block of stasis lives under this module, each file
//! opening with a `# Safety` note. Wrappers here are thin and typed; policy lives above.

pub mod batch;
pub mod clone;
pub mod cpu;
pub mod daemon;
pub mod deadline;
pub mod ethtool;
pub mod fd;
pub mod file;
pub mod inherit;
pub mod inject;
pub mod ipc;
pub mod kcmp;
pub mod mem;
pub mod mount;
pub mod mqueue;
pub mod nsfs;
pub mod pagemap;
pub mod pod;
pub mod probe;
pub mod ptrace;
pub mod sched;
pub mod sock_diag;
pub mod socket;
pub mod thread;
pub mod tun;
pub mod uffd;
pub mod uffd_missing;

pub use pod::Pod;
