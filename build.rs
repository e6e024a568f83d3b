//! Links the `stasis` executable at a fixed address (`-no-pie`; its libraries, heap, stack
//! and mappings stay randomized): a position-independent executable has the dynamic loader
//! write a relocation into every page of its read-only-after-relocation data at each start
//! (9,800 relocations over 46 pages, a page fault and a page copy each), which was the
//! largest part of the start-up cost that made `stasis dump`/`restore` of a small process
//! slower than the session start's (docs/benchmarks.md, "Start-up cost"). Only the
//! binaries: tests and the library are linked as before.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
