//! stasis: transparent checkpoint/restore of Linux x86_64 processes.
//!
//! Data flows one way: [`proc`] (pure /proc parsers) and [`sys`] (the only unsafe code:
//! ptrace, injected syscalls, clone3) feed [`dump`], which writes an [`image`]; [`restore`]
//! reads an image and rebuilds the process through [`sys`]. See `docs/ARCHITECTURE.md`.
#![deny(unsafe_code)]

pub mod abi;
pub mod cgroupfs;
pub mod check;
pub mod checkpoint;
pub mod dump;
pub mod hooks;
pub mod image;
pub mod inspect;
pub mod jobctl;
pub mod lazy;
pub mod migrate;
pub mod netlock;
pub mod netns;
pub mod priority;
pub mod proc;
pub mod profile;
pub mod progress;
pub mod ranges;
pub mod restore;
pub mod rtnl;
pub mod sys;
pub mod tracker;
pub mod vdso;

/// An error and its causes on one line, a cause already said by the text before it left
/// out: what the front ends print and what a CRIU client gets as `cr_errmsg`.
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line
}
