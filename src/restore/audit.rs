//! The audit loginuid, the restore side of `dump/audit.rs`. The kernel accepts a write to
//! `/proc/PID/loginuid` only from the task itself, so the child writes its own
//! `/proc/self/loginuid`; changing one already set needs CAP_AUDIT_CONTROL. The session
//! id cannot be chosen: the kernel hands out a new one with every loginuid change.

use super::mm::open_in;
use super::staged::Staged;
use super::RestoreError;
use crate::image::task::TaskImage;

/// Scratch offset of the text written (clear of the path at 0).
const TEXT_OFF: u64 = 1024;

/// Sets the saved loginuid if it differs from the one the child inherited from the
/// restorer. Nothing is done where this kernel has no audit (no task can see a loginuid
/// there) or the image recorded none.
///
/// Ordering requirements: before the threads are created (they inherit the leader's
/// loginuid) and before the credentials drop (CAP_AUDIT_CONTROL). A change runs the
/// pending batch first (it is made by single calls); no earlier stage's calls change the
/// loginuid the child inherited (see `restore/inherited.rs`).
pub fn restore_loginuid(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    let Some(audit) = task.audit else {
        return Ok(());
    };
    let child = s.child();
    let inherited = super::inherited::loginuid()?;
    if inherited.map_or(true, |uid| uid == audit.loginuid) {
        return Ok(());
    }
    s.flush()?;
    let text = audit.loginuid.to_string();
    let addr = child.put(TEXT_OFF, text.as_bytes())?;
    let fd = open_in(
        child,
        "/proc/self/loginuid",
        libc::O_WRONLY | libc::O_CLOEXEC,
    )?;
    let remote = child.remote();
    let written = remote.call(
        "write(loginuid)",
        libc::SYS_write,
        &[fd, addr, text.len() as u64],
    );
    remote.call("close", libc::SYS_close, &[fd])?;
    written?;
    Ok(())
}
