//! stasis: transparent checkpoint/restore of Linux x86_64 processes.
//!
//! Data flows one way: [`proc`] (pure /proc parsers) and [`sys`] (the only unsafe code:
//! ptrace, injected syscalls, clone3) feed [`dump`], which writes an [`image`]; [`restore`]
//! reads an image and rebuilds the process through [`sys`]. See `docs/ARCHITECTURE.md`.
#![deny(unsafe_code)]

pub mod abi;
pub mod cgroupfs;
pub mod check;
pub mod dump;
pub mod image;
pub mod inspect;
pub mod jobctl;
pub mod netlock;
pub mod proc;
pub mod profile;
pub mod progress;
pub mod restore;
pub mod sys;
pub mod vdso;
