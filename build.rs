//! Build script: links libgcc's unwinder statically (`libgcc_eh.a`) instead of loading
//! `libgcc_s.so.1` at every start.
//!
//! Why: `libgcc_s.so.1`'s constructor (`__cpu_indicator_init`) runs `cpuid` a dozen times,
//! and in a virtual machine every `cpuid` exits to the hypervisor (~25 µs each measured
//! here), a fifth of a millisecond added to every `stasis dump` and `restore`
//! (docs/benchmarks.md, "cpuid at start"). Rust's standard library asks the linker for
//! `-lgcc_s` on `*-linux-gnu`; a `libgcc_s.so` linker script in a directory searched
//! first makes that `-lgcc_eh`, the same unwinder linked statically (what `gcc
//! -static-libgcc` does). Unwinding (`catch_unwind`, `resume_unwind`, backtraces) works
//! the same: the static unwinder finds the frames through `dl_iterate_phdr`. Nothing is
//! changed for other targets or a `crt-static` build (the standard library links
//! `libgcc_eh` itself there). Hand-written: no crate does this.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !gnu_linux || crt_static {
        return;
    }
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libgcc");
    fs::create_dir_all(&dir).expect("create OUT_DIR/libgcc");
    fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").expect("write libgcc_s.so");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
