//! prctl attributes, the restore side of `dump/prctl.rs`.
//!
//! Two halves: [`restore_process`] (THP disable, child subreaper, membarrier) runs with
//! the other process attributes; [`restore_after_creds`] (dumpable, parent-death signal)
//! runs after the credentials, because changing ids or capabilities resets both.

use super::staged::Staged;
use super::RestoreError;
use crate::image::task::ProcessAttrs;
use crate::sys::batch::Batch;

/// The `MEMBARRIER_CMD_REGISTER_*` commands `MEMBARRIER_CMD_GET_REGISTRATIONS` reports:
/// global expedited, private expedited, its sync-core and rseq variants.
const MEMBARRIER_REGISTER: [u32; 4] = [1 << 2, 1 << 4, 1 << 6, 1 << 8];

/// THP disable, child subreaper and membarrier registrations, added to the pending batch.
pub fn restore_process(s: &mut Staged, a: &ProcessAttrs) -> Result<(), RestoreError> {
    let b = s.batch();
    if a.thp_disable & 1 != 0 {
        let args = [
            libc::PR_SET_THP_DISABLE as u64,
            1,
            u64::from(a.thp_disable & !1),
        ];
        b.call("prctl(PR_SET_THP_DISABLE)", libc::SYS_prctl, &args);
    }
    if a.child_subreaper {
        let args = [libc::PR_SET_CHILD_SUBREAPER as u64, 1];
        b.call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, &args);
    }
    for cmd in MEMBARRIER_REGISTER
        .into_iter()
        .filter(|c| a.membarrier & c != 0)
    {
        let args = [u64::from(cmd), 0, 0];
        b.call("membarrier(register)", libc::SYS_membarrier, &args);
    }
    Ok(())
}

/// Dumpable and the parent-death signal, added to batch `b`, run by each thread after its own credentials
/// (the parent-death signal is per thread, dumpable per process).
///
/// Ordering requirements: after the last id or capability change (`commit_creds` resets
/// both). Dumpable 2 (`suid_dumpable`) cannot be set with prctl and is restored as 0, the
/// stricter choice.
pub fn restore_after_creds(b: &mut Batch, a: &ProcessAttrs, pdeathsig: i32) {
    let dumpable = u64::from(a.dumpable == 1);
    let args = [libc::PR_SET_DUMPABLE as u64, dumpable];
    b.call("prctl(PR_SET_DUMPABLE)", libc::SYS_prctl, &args);
    let args = [libc::PR_SET_PDEATHSIG as u64, pdeathsig as u64];
    b.call("prctl(PR_SET_PDEATHSIG)", libc::SYS_prctl, &args);
}
