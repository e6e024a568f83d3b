//! The tree's own time namespace: stasis unshares a new one for its children
//! (`time_for_children`), sets its offsets so that the namespace's monotonic and boottime
//! clocks go on from the values saved at dump (`/proc/TID/timens_offsets`, which
//! may be written until a task enters the namespace), clones the root into it, then goes
//! back to its own. The dump side is `dump/ns/time.rs`.

use std::fs::File;

use nix::sched::CloneFlags;

use super::super::RestoreError;
use crate::image::ns::TimeNs;

/// `CLONE_NEWTIME` (nix lacks it).
const CLONE_NEWTIME: i32 = 0x80;

/// While alive, stasis's children are created in the new time namespace; dropping it
/// puts stasis back into its own for its children.
pub struct ForRoot {
    own: File,
}

impl Drop for ForRoot {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.own, CloneFlags::from_bits_retain(CLONE_NEWTIME));
    }
}

fn fail(what: String) -> RestoreError {
    RestoreError::Unsupported {
        what: format!("time namespace of the root: {what}"),
    }
}

/// Makes the new time namespace the one stasis's next child (the root) is created in.
pub fn enter_for_root(clocks: &TimeNs) -> Result<ForRoot, RestoreError> {
    let own = File::open("/proc/thread-self/ns/time_for_children")
        .map_err(|e| fail(format!("open our own: {e}")))?;
    // `/proc/TID/`: this thread's own entries (`thread-self` has no `timens_offsets`).
    let me = nix::unistd::gettid().as_raw();
    let ours = crate::dump::ns::time::read_offsets(me).map_err(|e| fail(e.to_string()))?;
    nix::sched::unshare(CloneFlags::from_bits_retain(CLONE_NEWTIME))
        .map_err(|e| fail(format!("unshare(CLONE_NEWTIME): {e}")))?;
    let guard = ForRoot { own };
    let host = |clock, ours: i128| crate::dump::ns::time::now(clock) - ours;
    let mono = i128::from(clocks.monotonic) - host(libc::CLOCK_MONOTONIC, ours.0);
    let boot = i128::from(clocks.boottime) - host(libc::CLOCK_BOOTTIME, ours.1);
    let text = format!("monotonic {}\nboottime {}\n", split(mono), split(boot));
    std::fs::write(format!("/proc/{me}/timens_offsets"), text)
        .map_err(|e| fail(format!("write timens_offsets: {e}")))?;
    Ok(guard)
}

/// `S NS` with `0 <= NS < 1e9`, as the kernel reads an offset.
fn split(ns: i128) -> String {
    let (s, n) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    format!("{s} {n}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn negative_offsets_keep_nanoseconds_positive() {
        assert_eq!(super::split(-1), "-1 999999999");
        assert_eq!(super::split(2_000_000_001), "2 1");
    }
}
