//! # Safety
//! The one place where kernel ABI structs become bytes and back. Every other module moves
//! registers, siginfo and friends through [`Pod`], so no other file needs a transmute.
#![allow(unsafe_code)]

use crate::abi::{
    AltStack, CapData, CapHeader, CloneArgs, GpRegs, IoVec, KernelSigaction, KernelSigevent,
    PrctlMmMap, RseqConfig, SchedAttr, SigInfo, TimerPair,
};

/// Plain old data: any byte pattern of `size_of::<Self>()` is a valid value, and the type
/// has no padding whose contents could leak or matter.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers (or arrays of them) with no
/// implicit padding.
pub unsafe trait Pod: Copy + Default {
    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod types are repr(C) integers without padding, so every byte is
        // initialized; the slice borrows `self` for its lifetime.
        unsafe {
            std::slice::from_raw_parts(
                self as *const Self as *const u8,
                std::mem::size_of::<Self>(),
            )
        }
    }

    /// The value's bytes, writable.
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and any byte pattern is a valid Pod value, so writes through
        // the slice cannot create an invalid value.
        unsafe {
            std::slice::from_raw_parts_mut(
                self as *mut Self as *mut u8,
                std::mem::size_of::<Self>(),
            )
        }
    }

    /// A value read from the start of `bytes`; `None` if it is too short.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut v = Self::default();
        let n = std::mem::size_of::<Self>();
        v.as_bytes_mut().copy_from_slice(bytes.get(..n)?);
        Some(v)
    }
}

// SAFETY: all of these are repr(C) structs of u64/u32/i32 fields laid out without padding
// (checked by the size assertions below).
unsafe impl Pod for GpRegs {}
// SAFETY: see above.
unsafe impl Pod for KernelSigaction {}
// SAFETY: see above.
unsafe impl Pod for AltStack {}
// SAFETY: see above.
unsafe impl Pod for RseqConfig {}
// SAFETY: see above.
unsafe impl Pod for PrctlMmMap {}
// SAFETY: see above.
unsafe impl Pod for IoVec {}
// SAFETY: see above.
unsafe impl Pod for CloneArgs {}
// SAFETY: see above.
unsafe impl Pod for TimerPair {}
// SAFETY: see above (the trailing padding is an explicit `[i32; 11]`).
unsafe impl Pod for KernelSigevent {}
// SAFETY: see above.
unsafe impl Pod for CapHeader {}
// SAFETY: see above.
unsafe impl Pod for CapData {}
// SAFETY: see above (the u32 pairs keep every u64 8-byte aligned).
unsafe impl Pod for SchedAttr {}
// SAFETY: see above.
unsafe impl Pod for u64 {}
// SAFETY: see above.
unsafe impl Pod for i32 {}
// SAFETY: two i32s, no padding; every bit pattern is valid (`pipe2`'s `int fds[2]`).
unsafe impl Pod for [i32; 2] {}
// SAFETY: two u32s, no padding; every bit pattern is valid (`F_GETOWNER_UIDS`'s two uid_t).
unsafe impl Pod for [u32; 2] {}

impl Default for SigInfo {
    fn default() -> Self {
        SigInfo([0; 128])
    }
}
// SAFETY: a 128-byte array.
unsafe impl Pod for SigInfo {}

const _: () = assert!(std::mem::size_of::<GpRegs>() == 27 * 8);
const _: () = assert!(std::mem::size_of::<KernelSigaction>() == 32);
const _: () = assert!(std::mem::size_of::<AltStack>() == 24);
const _: () = assert!(std::mem::size_of::<RseqConfig>() == 24);
const _: () = assert!(std::mem::size_of::<PrctlMmMap>() == 104);
const _: () = assert!(std::mem::size_of::<SigInfo>() == 128);
const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);
const _: () = assert!(std::mem::size_of::<TimerPair>() == 32);
const _: () = assert!(std::mem::size_of::<KernelSigevent>() == 64);
const _: () = assert!(std::mem::size_of::<CapHeader>() == 8);
const _: () = assert!(std::mem::size_of::<CapData>() == 24);
const _: () = assert!(std::mem::size_of::<SchedAttr>() == 56);

/// A slice of Pod values as bytes.
pub fn slice_as_bytes<T: Pod>(items: &[T]) -> &[u8] {
    // SAFETY: a slice of Pod values is contiguous initialized memory of
    // len * size_of::<T>() bytes, borrowed for the slice's lifetime.
    unsafe { std::slice::from_raw_parts(items.as_ptr() as *const u8, std::mem::size_of_val(items)) }
}
