//! Seccomp records: the process's distinct filters as a tree (each filter points at the
//! one installed before it) and, per thread, its mode and newest filter; with the checks
//! that refuse impossible values. It knows the format, not how filters are read or
//! installed (`dump/seccomp.rs`, `restore/seccomp.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// `SECCOMP_MODE_DISABLED`, `SECCOMP_MODE_STRICT`, `SECCOMP_MODE_FILTER`.
pub const MODE_DISABLED: u32 = 0;
pub const MODE_STRICT: u32 = 1;
pub const MODE_FILTER: u32 = 2;
/// `SECCOMP_FILTER_FLAG_LOG`: the only filter flag the kernel reports
/// (`PTRACE_GET_SECCOMP_METADATA`) and the only one stored.
pub const FILTER_FLAG_LOG: u32 = 2;
/// `BPF_MAXINSNS`: the kernel refuses longer classic BPF programs.
pub const MAX_INSNS: usize = 4096;

/// One classic BPF seccomp program as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    /// Index (in [`crate::image::task::TaskImage::seccomp`]) of the filter installed just
    /// before this one in the same chain; always smaller than this filter's own index.
    pub prev: Option<u32>,
    /// `SECCOMP_FILTER_FLAG_LOG` or 0.
    pub flags: u32,
    /// `struct sock_filter` entries, each `code | jt << 16 | jf << 24 | k << 32`.
    pub insns: Vec<u64>,
}

/// One thread's seccomp state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSeccomp {
    /// [`MODE_DISABLED`], [`MODE_STRICT`] or [`MODE_FILTER`].
    pub mode: u32,
    /// In filter mode, the index of the thread's newest filter; its chain is followed
    /// through [`SeccompFilter::prev`].
    pub filter: Option<u32>,
}

/// The chain of filter `newest`, oldest first (the order to install them in). Call on
/// validated records only: `prev` indices decrease, so the walk ends.
pub fn chain(filters: &[SeccompFilter], newest: Option<u32>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = newest;
    while let Some(i) = at {
        out.push(i);
        at = filters.get(i as usize).and_then(|f| f.prev);
    }
    out.reverse();
    out
}

/// Filters well formed (known flags, 1..=4096 instructions, `prev` pointing back), and
/// every thread in a known mode with a filter exactly when in filter mode.
pub fn validate(
    filters: &[SeccompFilter],
    threads: &[(i32, ThreadSeccomp)],
    path: &Path,
) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    for (i, f) in filters.iter().enumerate() {
        if f.prev.is_some_and(|p| p as usize >= i) {
            return fail(format!("seccomp filter {i} follows a later filter"));
        }
        if f.flags & !FILTER_FLAG_LOG != 0 {
            return fail(format!("seccomp filter {i} has flags {:#x}", f.flags));
        }
        if f.insns.is_empty() || f.insns.len() > MAX_INSNS {
            return fail(format!(
                "seccomp filter {i} has {} instructions, outside 1..={MAX_INSNS}",
                f.insns.len()
            ));
        }
    }
    for &(tid, s) in threads {
        let known = s.filter.map_or(true, |f| (f as usize) < filters.len());
        let consistent = (s.mode == MODE_FILTER) == s.filter.is_some();
        if s.mode > MODE_FILTER || !known || !consistent {
            return fail(format!(
                "thread {tid} has seccomp mode {} with filter {:?} of {}",
                s.mode,
                s.filter,
                filters.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(prev: Option<u32>) -> SeccompFilter {
        SeccompFilter {
            prev,
            flags: 0,
            insns: vec![0x7fff_0000_0000_0006],
        }
    }

    fn err(filters: &[SeccompFilter], threads: &[(i32, ThreadSeccomp)]) -> String {
        match validate(filters, threads, Path::new("t.img")) {
            Err(ImageError::Invalid { what, .. }) => what,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn chains_are_oldest_first() {
        let f = [
            filter(None),
            filter(Some(0)),
            filter(Some(1)),
            filter(Some(0)),
        ];
        assert_eq!(chain(&f, Some(2)), vec![0, 1, 2]);
        assert_eq!(chain(&f, Some(3)), vec![0, 3]);
        assert!(chain(&f, None).is_empty());
    }

    #[test]
    fn rules() {
        let on = |f| ThreadSeccomp {
            mode: MODE_FILTER,
            filter: Some(f),
        };
        let ok = [filter(None), filter(Some(0))];
        validate(&ok, &[(1, on(1))], Path::new("t.img")).expect("valid");
        assert_eq!(
            err(&[filter(Some(0))], &[]),
            "seccomp filter 0 follows a later filter"
        );
        let mut bad = filter(None);
        bad.flags = 8;
        assert_eq!(err(&[bad], &[]), "seccomp filter 0 has flags 0x8");
        bad = filter(None);
        bad.insns.clear();
        assert_eq!(
            err(&[bad], &[]),
            "seccomp filter 0 has 0 instructions, outside 1..=4096"
        );
        assert_eq!(
            err(&ok, &[(7, on(2))]),
            "thread 7 has seccomp mode 2 with filter Some(2) of 2"
        );
        let strict_with_filter = ThreadSeccomp {
            mode: MODE_STRICT,
            filter: Some(0),
        };
        assert!(err(&ok, &[(7, strict_with_filter)]).starts_with("thread 7"));
        let filter_without = ThreadSeccomp {
            mode: MODE_FILTER,
            filter: None,
        };
        assert!(err(&ok, &[(7, filter_without)]).starts_with("thread 7"));
    }
}
