//! Credentials: ids, groups, the five capability sets and no_new_privs from
//! `/proc/PID/status`, securebits asked with an injected `PR_GET_SECUREBITS`.
//! Linux keeps credentials per thread; the image holds the leader's, and those of every
//! other thread whose own differ (`TaskImage::thread_creds`). The restore side is
//! `restore/creds.rs`.

use super::DumpError;
use crate::image::task::{Caps, Creds, ThreadCreds, ThreadImage};
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

/// The credentials of the other `threads` of `pid` (`/proc/PID/task/TID/status` and the
/// `securebits` each reported, in the same order) that differ from the `leader`'s.
pub fn other_threads(
    pid: i32,
    threads: &[ThreadImage],
    securebits: &[u32],
    leader: &Creds,
) -> Result<Vec<ThreadCreds>, DumpError> {
    let mut differ = Vec::new();
    for (t, &bits) in threads.iter().zip(securebits) {
        let own = creds(&crate::proc::thread_status(pid, t.tid)?, bits);
        if own != *leader {
            differ.push(ThreadCreds {
                tid: t.tid,
                creds: own,
            });
        }
    }
    Ok(differ)
}
