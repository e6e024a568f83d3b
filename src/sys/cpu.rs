//! # Safety
//! CPU facts recorded in the image inventory and compared on restore: XCR0 (which xsave
//! features the OS enabled), the xsave area size, and the model name for humans.
//! `cpuid` and `xgetbv` are instructions, not syscalls; `xgetbv` faults (#UD) unless the OS
//! set CR4.OSXSAVE, so it is only executed after CPUID.1:ECX.OSXSAVE says it is enabled.
//! This module does not decide compatibility; `restore` compares the numbers.
//!
//! In a virtual machine every `cpuid` exits to the hypervisor (~25 µs each measured in
//! this project's VMs, docs/benchmarks.md "cpuid at start"), and a dump asks about
//! fourteen of them (the standard library's feature cache, which crc32fast fills at its
//! first checksum, nine; the xsave size and the brand string the rest). [`warm_up`] asks
//! them on a thread of their own at the start of a dump, while the main thread parses,
//! checks and freezes; the answers are kept once per process, and a caller that
//! comes first asks itself or waits for the thread's answer, never a different one.
#![allow(unsafe_code)]

use core::arch::x86_64::{__cpuid, __cpuid_count, __get_cpuid_max, _xgetbv, CpuidResult};

/// CPUID.1:ECX bit 27: the OS enabled XSAVE/XGETBV (CR4.OSXSAVE).
const CPUID1_ECX_OSXSAVE: u32 = 1 << 27;
/// The CPUID leaf describing the xsave area.
const LEAF_XSAVE: u32 = 0xd;

/// `cpuid` with `leaf`/`subleaf`; all zeros if the CPU does not have that leaf.
#[allow(unused_unsafe)] // `__cpuid_count` is an unsafe fn before Rust 1.87 (our MSRV is 1.80).
fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    // The maximum basic leaf, asked once: in a virtual machine every `cpuid` exits to the
    // hypervisor (8-16 µs each measured in this project's VMs).
    static MAX_LEAF: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // SAFETY: `cpuid` exists on every x86_64 CPU and only writes the four result registers;
    // asking for the maximum basic leaf (leaf 0) is always valid.
    let max_leaf = *MAX_LEAF.get_or_init(|| unsafe { __get_cpuid_max(0) }.0);
    if leaf > max_leaf {
        return CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        };
    }
    // SAFETY: as above, and `leaf` is at most the maximum basic leaf the CPU reports, so the
    // result is defined.
    unsafe { __cpuid_count(leaf, subleaf) }
}

/// `xgetbv` with ECX = 0.
///
/// # Safety
/// The caller must have checked CPUID.1:ECX.OSXSAVE; without it `xgetbv` raises #UD.
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller guarantees OSXSAVE, so XCR0 is readable from ring 3.
    unsafe { _xgetbv(0) }
}

/// Starts, once per process, a thread that fills the standard library's CPU feature
/// cache ([`features`]) and asks the xsave facts and the model name a dump's inventory
/// records, so that their `cpuid`s run on another CPU while this one works. A thread
/// that cannot be made leaves the asking to the first caller. (A restore does not: it
/// checksums its image at once, and would only wait for the thread.)
pub fn warm_up() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let ask = || {
            features();
            xsave_facts();
            model_name();
        };
        let thread = std::thread::Builder::new().name("stasis-cpuid".into());
        // Detached: it only fills the caches below, and it ends with them.
        let _ = thread.stack_size(WARM_UP_STACK).spawn(ask);
    });
}

/// [`warm_up`]'s stack: `cpuid`s and the brand string's 48 bytes.
const WARM_UP_STACK: usize = 64 << 10;

/// Fills the standard library's CPU feature cache (crc32fast asks it for `pclmulqdq` at
/// each new hasher) unless it is filled, waiting for [`warm_up`]'s thread when that one is
/// filling it, so the nine `cpuid`s are not asked twice.
pub fn features() {
    static FILLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    FILLED.get_or_init(|| {
        let _ = std::arch::is_x86_feature_detected!("pclmulqdq");
    });
}

/// A crc32 hasher, after [`features`] (the hasher picks its implementation from them).
pub fn crc32() -> crc32fast::Hasher {
    features();
    crc32fast::Hasher::new()
}

/// XCR0 and the xsave area's size, asked once per process.
fn xsave_facts() -> (u64, u32) {
    static FACTS: std::sync::OnceLock<(u64, u32)> = std::sync::OnceLock::new();
    *FACTS.get_or_init(|| (ask_xcr0(), ask_xsave_size()))
}

/// XCR0: the xsave feature bits the kernel enabled (`xgetbv(0)`); 0 when the OS did not
/// enable XSAVE at all.
pub fn xcr0() -> u64 {
    xsave_facts().0
}

/// Size in bytes of the xsave area for the features currently enabled in XCR0
/// (CPUID leaf 0xD subleaf 0, EBX); 0 if the CPU has no leaf 0xD.
pub fn xsave_size() -> u32 {
    xsave_facts().1
}

/// [`xcr0`], asked.
fn ask_xcr0() -> u64 {
    if !os_xsave() {
        return 0;
    }
    // SAFETY: OSXSAVE was checked just above, which also implies the CPU has XSAVE.
    unsafe { xgetbv0() }
}

/// [`xsave_size`], asked.
#[allow(unused_unsafe)] // `__cpuid_count` is an unsafe fn before Rust 1.87 (our MSRV is 1.80).
fn ask_xsave_size() -> u32 {
    if os_xsave() {
        // SAFETY: `cpuid` exists on every x86_64 CPU; OSXSAVE implies XSAVE, and a CPU
        // with XSAVE has leaf 0xD (Intel SDM vol. 1, 13.2; AMD APM vol. 3, CPUID Fn0000_000D).
        return unsafe { __cpuid_count(LEAF_XSAVE, 0) }.ebx;
    }
    cpuid(LEAF_XSAVE, 0).ebx
}

/// CPUID.1:ECX.OSXSAVE. The standard library's feature cache answers without a `cpuid`
/// when it says "xsave" (it only does with OSXSAVE set; the cache is filled once per
/// process through [`features`], and every dump and restore fills it anyway: crc32fast
/// asks it for `pclmulqdq`). Otherwise leaf 1 is asked. Each `cpuid` spared is ~25 µs in
/// this project's VMs (docs/benchmarks.md, "cpuid at start").
fn os_xsave() -> bool {
    features();
    std::arch::is_x86_feature_detected!("xsave") || cpuid(1, 0).ecx & CPUID1_ECX_OSXSAVE != 0
}

/// The CPU's brand string (CPUID leaves 0x8000_0002..4, which the kernel shows as the
/// "model name" of `/proc/cpuinfo`), else the first "model name" there, or `"unknown"`.
/// Generating `/proc/cpuinfo` costs a fifth of a millisecond; the four `cpuid`s half that
/// in a VM (each exits to the hypervisor), nothing on bare metal. Asked once per process.
pub fn model_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(ask_model_name).clone()
}

/// [`model_name`], asked.
fn ask_model_name() -> String {
    if let Some(brand) = brand_string() {
        return brand;
    }
    crate::proc::read_listing(std::path::Path::new("/proc/cpuinfo"))
        .ok()
        .and_then(|text| parse_model_name(&text))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// CPUID leaves 0x8000_0002..4: 48 bytes of text, NUL-padded; `None` when the CPU has
/// no such leaves or they are blank.
#[allow(unused_unsafe)] // `__cpuid` is an unsafe fn before Rust 1.87 (our MSRV is 1.80).
fn brand_string() -> Option<String> {
    const FIRST: u32 = 0x8000_0002;
    // SAFETY: `cpuid` exists on every x86_64 CPU; leaf 0x8000_0000 (the maximum extended
    // leaf) is always valid.
    let (max_leaf, _) = unsafe { __get_cpuid_max(0x8000_0000) };
    if max_leaf < FIRST + 2 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in FIRST..=FIRST + 2 {
        // SAFETY: `leaf` is at most the maximum extended leaf the CPU reports.
        let r = unsafe { __cpuid(leaf) };
        for reg in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&reg.to_le_bytes());
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let brand = text.trim_end_matches('\0').trim();
    (!brand.is_empty()).then(|| brand.to_owned())
}

/// The value of the first `model name` line of `/proc/cpuinfo` text.
fn parse_model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Names of the xsave feature bits set in `mask`, lowest bit first; bits without a
/// well-known name are called `xfeature-N`.
pub fn xfeature_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match xfeature_name(bit) {
            Some(name) => name.to_owned(),
            None => format!("xfeature-{bit}"),
        })
        .collect()
}

/// The kernel's name for xsave feature `bit` (arch/x86/include/asm/fpu/types.h).
fn xfeature_name(bit: u32) -> Option<&'static str> {
    Some(match bit {
        0 => "x87",
        1 => "sse",
        2 => "avx",
        3 => "mpx-bndregs",
        4 => "mpx-bndcsr",
        5 => "avx512-opmask",
        6 => "avx512-zmm-hi256",
        7 => "avx512-hi16-zmm",
        9 => "pkru",
        11 => "cet-user",
        17 => "amx-tilecfg",
        18 => "amx-tiledata",
        _ => return None,
    })
}

/// How many CPUs this process may run on (`available_parallelism`, 1 if unknown), asked
/// once: the standard library reads the affinity mask and the cgroup's CPU quota (three
/// files) at each call, and dumps asked once per process.
pub fn usable() -> usize {
    static USABLE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_legacy_and_avx_bits() {
        assert_eq!(xfeature_names(0b111), ["x87", "sse", "avx"]);
    }

    #[test]
    fn unnamed_bits_get_their_number() {
        assert_eq!(
            xfeature_names((1 << 9) | (1 << 10)),
            ["pkru", "xfeature-10"]
        );
        assert!(xfeature_names(0).is_empty());
    }

    #[test]
    fn xsave_area_holds_at_least_the_legacy_region_and_header() {
        assert!(xsave_size() >= 576, "xsave_size = {}", xsave_size());
    }

    #[test]
    fn os_xsave_is_what_cpuid_leaf_1_says() {
        assert_eq!(os_xsave(), cpuid(1, 0).ecx & CPUID1_ECX_OSXSAVE != 0);
    }

    #[test]
    fn xcr0_has_x87_and_sse() {
        assert_eq!(xcr0() & 3, 3, "xcr0 = {:#x}", xcr0());
    }

    #[test]
    fn model_name_is_the_first_one() {
        let text =
            "processor\t: 0\nmodel name\t: Foo CPU @ 3GHz\n\nprocessor\t: 1\nmodel name\t: Bar\n";
        assert_eq!(parse_model_name(text).as_deref(), Some("Foo CPU @ 3GHz"));
        assert_eq!(parse_model_name("processor : 0\n"), None);
    }
}
