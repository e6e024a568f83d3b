//! The audit login identity: `/proc/PID/loginuid` and `/proc/PID/sessionid`, or nothing
//! when the kernel has no audit. Linux keeps loginuid per thread (a thread inherits its
//! creator's); the image holds the leader's, and a thread whose own differs is refused.
//! The restore side is `restore/audit.rs`.

use super::DumpError;
use crate::image::task::Audit;
use crate::proc;

/// The process's loginuid and sessionid; `None` without audit support.
pub fn audit(pid: i32, tids: &[i32]) -> Result<Option<Audit>, DumpError> {
    let Some(loginuid) = proc::audit_id(pid, "loginuid")? else {
        return Ok(None);
    };
    // The leader's own file is the process's, read just above.
    for &tid in tids.iter().filter(|&&tid| tid != pid) {
        match proc::audit_id(pid, &format!("task/{tid}/loginuid"))? {
            Some(own) if own != loginuid => {
                return Err(DumpError::unsupported(format!(
                    "thread {tid} of pid {pid} has loginuid {own}, not its leader's {loginuid}, which stasis cannot checkpoint"
                )))
            }
            _ => {}
        }
    }
    let sessionid = proc::audit_id(pid, "sessionid")?.unwrap_or(u32::MAX);
    Ok(Some(Audit {
        loginuid,
        sessionid,
    }))
}
