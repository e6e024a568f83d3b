//! Credentials: ids, groups, the five capability sets and no_new_privs from
//! `/proc/PID/status`, securebits asked with an injected `PR_GET_SECUREBITS`.
//! Linux keeps credentials per thread; the image holds the leader's, restored in every
//! thread, and a thread whose own differ is refused. The restore side is
//! `restore/creds.rs`.

use super::DumpError;
use crate::image::task::{Caps, Creds};
use crate::proc::Status;
use crate::sys::batch::{Batch, Done};

/// Credentials as status reports them, plus the queried securebits.
pub fn creds(status: &Status, securebits: u32) -> Creds {
    Creds {
        uid: status.uid,
        gid: status.gid,
        groups: status.groups.clone(),
        caps: Caps {
            inheritable: status.cap_inh,
            permitted: status.cap_prm,
            effective: status.cap_eff,
            bounding: status.cap_bnd,
            ambient: status.cap_amb,
        },
        securebits,
        no_new_privs: status.no_new_privs,
    }
}

/// `PR_GET_SECUREBITS` of the querying thread, asked in batch `b`.
pub fn query_securebits(b: &mut Batch) -> impl FnOnce(&Done) -> u32 {
    let op = libc::PR_GET_SECUREBITS as u64;
    let r = b.call("prctl(PR_GET_SECUREBITS)", libc::SYS_prctl, &[op]);
    move |d| d.ret(r) as u32
}

/// Refuses thread `tid` of `pid` if its credentials (`/proc/PID/task/TID/status` and the
/// `securebits` it reported) differ from its leader's: the image keeps one set for all.
pub fn check_thread(pid: i32, tid: i32, securebits: u32, leader: &Creds) -> Result<(), DumpError> {
    let own = creds(&crate::proc::thread_status(pid, tid)?, securebits);
    if own == *leader {
        return Ok(());
    }
    Err(DumpError::unsupported(format!(
        "thread {tid} of pid {pid} has credentials (ids, groups, capabilities, securebits or no_new_privs) other than its leader's, which stasis cannot checkpoint"
    )))
}
