//! prctl attributes: dumpable, THP disable, child subreaper, membarrier registrations
//! (process-wide) and the parent-death signal (per thread), injected into the task.
//! `no_new_privs` travels with the credentials (`dump/creds.rs`). The restore side is
//! `restore/prctl.rs`.

use crate::image::task::ProcessAttrs;
use crate::sys::batch::{Batch, Done};

/// `MEMBARRIER_CMD_GET_REGISTRATIONS` (Linux 6.3).
pub const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// The process-wide attributes, asked in batch `b`.
pub fn query_process(b: &mut Batch) -> impl FnOnce(&Done) -> ProcessAttrs {
    let mut prctl = |name, op: i32| b.call(name, libc::SYS_prctl, &[op as u64, 0, 0, 0, 0]);
    let dumpable = prctl("prctl(PR_GET_DUMPABLE)", libc::PR_GET_DUMPABLE);
    let thp_disable = prctl("prctl(PR_GET_THP_DISABLE)", libc::PR_GET_THP_DISABLE);
    let subreaper = b.out::<i32>();
    let op = libc::PR_GET_CHILD_SUBREAPER as u64;
    b.call(
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        &[op, subreaper.addr()],
    );
    // Older kernels cannot tell: EINVAL reads as "nothing registered".
    let mb = b.try_call(
        "membarrier",
        libc::SYS_membarrier,
        &[MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0],
    );
    move |d| ProcessAttrs {
        dumpable: d.ret(dumpable) as u32,
        thp_disable: d.ret(thp_disable) as u32,
        child_subreaper: d.get(subreaper) != 0,
        membarrier: d.raw(mb).max(0) as u32,
    }
}

/// `PR_GET_PDEATHSIG` of the querying thread, asked in batch `b`.
pub fn query_pdeathsig(b: &mut Batch) -> impl FnOnce(&Done) -> i32 {
    let sig = b.out::<i32>();
    let op = libc::PR_GET_PDEATHSIG as u64;
    b.call(
        "prctl(PR_GET_PDEATHSIG)",
        libc::SYS_prctl,
        &[op, sig.addr()],
    );
    move |d| d.get(sig)
}
