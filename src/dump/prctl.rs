//! prctl attributes: dumpable, THP disable, child subreaper, membarrier registrations
//! (process-wide) and the parent-death signal (per thread), injected into the task.
//! `no_new_privs` travels with the credentials (`dump/creds.rs`). The restore side is
//! `restore/prctl.rs`.

use super::task::Query;
use super::DumpError;
use crate::image::task::ProcessAttrs;

/// `MEMBARRIER_CMD_GET_REGISTRATIONS` (Linux 6.3).
pub const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// The process-wide attributes.
pub fn query_process(q: &Query) -> Result<ProcessAttrs, DumpError> {
    let prctl = |name, op: i32| q.call(name, libc::SYS_prctl, &[op as u64, 0, 0, 0, 0]);
    let dumpable = prctl("prctl(PR_GET_DUMPABLE)", libc::PR_GET_DUMPABLE)? as u32;
    let thp_disable = prctl("prctl(PR_GET_THP_DISABLE)", libc::PR_GET_THP_DISABLE)? as u32;
    let op = libc::PR_GET_CHILD_SUBREAPER as u64;
    q.call(
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        &[op, q.scratch],
    )?;
    let child_subreaper = q.read::<i32>(0)? != 0;
    // Older kernels cannot tell: EINVAL reads as "nothing registered".
    let mb = q.raw(
        libc::SYS_membarrier,
        &[MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0],
    )?;
    Ok(ProcessAttrs {
        dumpable,
        thp_disable,
        child_subreaper,
        membarrier: mb.max(0) as u32,
    })
}

/// `PR_GET_PDEATHSIG` of the querying thread.
pub fn query_pdeathsig(q: &Query) -> Result<i32, DumpError> {
    let op = libc::PR_GET_PDEATHSIG as u64;
    q.call("prctl(PR_GET_PDEATHSIG)", libc::SYS_prctl, &[op, q.scratch])?;
    q.read::<i32>(0)
}
