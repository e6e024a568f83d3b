//! The system layer: every `unsafe` block of stasis lives under this module, each file
//! opening with a `# Safety` note. Wrappers here are thin and typed; policy lives above.

pub mod cpu;
pub mod pod;
pub mod probe;

pub use pod::Pod;
