//! What every restored process starts with, read once per run from the restorer itself:
//! its `/proc/self/status` (credentials, umask, seccomp), personality, cwd and root,
//! audit loginuid, `oom_score_adj` and timer slack. A stage compares the saved value with these to
//! skip setting what the child has already. The signal actions, limits and securebits
//! live in `sys/inherit.rs`, which reads them with raw syscalls.
//!
//! The cache is exact because:
//! - stasis never changes any of these of its own (no chdir, umask, personality, loginuid,
//!   oom_score_adj or timer slack write on itself; its credentials stay as started), so the
//!   first reading stays true until it exits;
//! - every process is created (the root by a clone of stasis, the others by a clone run
//!   in their parent) before any stage that sets one of these runs (they are all in the
//!   per-process stages run once the whole tree exists), and a clone inherits each of
//!   them, so every new process holds the restorer's values until its own stage sets its
//!   saved ones.
//!
//! It does not own the comparisons: each stage decides what "already set" means.

use std::sync::OnceLock;

use super::RestoreError;
use crate::proc::Status;

/// A reading kept for the run: a failure is kept as its message.
type Kept<T> = Result<T, String>;

fn me() -> i32 {
    std::process::id() as i32
}

/// The restorer's `/proc/self/status`.
pub fn status() -> Result<&'static Status, RestoreError> {
    static STATUS: OnceLock<Kept<Status>> = OnceLock::new();
    let kept = STATUS.get_or_init(|| crate::proc::status(me()).map_err(|e| e.to_string()));
    unsupported(kept.as_ref())
}

/// The restorer's personality, `None` if it cannot be read.
pub fn personality() -> Option<u32> {
    static PERSONALITY: OnceLock<Option<u32>> = OnceLock::new();
    *PERSONALITY.get_or_init(|| crate::proc::personality(me()).ok())
}

/// The restorer's `(cwd, root)`, `None` if either cannot be read.
pub fn cwd_and_root() -> Option<&'static (String, String)> {
    static FS: OnceLock<Option<(String, String)>> = OnceLock::new();
    let link = |name| crate::proc::link(me(), name).map(|p| p.to_string_lossy().into_owned());
    FS.get_or_init(|| Some((link("cwd").ok()?, link("root").ok()?)))
        .as_ref()
}

/// The restorer's audit loginuid; `None` where the kernel has no audit.
pub fn loginuid() -> Result<Option<u32>, RestoreError> {
    static LOGINUID: OnceLock<Kept<Option<u32>>> = OnceLock::new();
    let kept =
        LOGINUID.get_or_init(|| crate::proc::audit_id(me(), "loginuid").map_err(|e| e.to_string()));
    unsupported(kept.as_ref()).copied()
}

/// The restorer's `oom_score_adj`, `None` if it cannot be read.
pub fn oom_score_adj() -> Option<i32> {
    static ADJ: OnceLock<Option<i32>> = OnceLock::new();
    *ADJ.get_or_init(|| crate::proc::oom_score_adj(me()).ok())
}

/// The restorer's timer slack (that of its main thread, which restores), `None` if it
/// cannot be read.
pub fn timerslack() -> Option<u64> {
    static SLACK: OnceLock<Option<u64>> = OnceLock::new();
    *SLACK.get_or_init(|| nix::sys::prctl::get_timerslack().ok().map(|v| v as u64))
}

fn unsupported<T>(kept: Result<T, &String>) -> Result<T, RestoreError> {
    kept.map_err(|what| RestoreError::Unsupported { what: what.clone() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn kept_readings_are_our_own() {
        let (kept, now) = (status().unwrap(), crate::proc::status(me()).unwrap());
        let creds = |s: &Status| (s.uid, s.gid, s.umask, s.cap_prm, s.cap_eff, s.seccomp);
        assert_eq!(creds(kept), creds(&now));
        assert_eq!(personality(), crate::proc::personality(me()).ok());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(cwd_and_root().unwrap().0, cwd.to_string_lossy());
        assert_eq!(oom_score_adj(), crate::proc::oom_score_adj(me()).ok());
        let slack = nix::sys::prctl::get_timerslack().ok().map(|v| v as u64);
        assert_eq!(timerslack(), slack);
        assert_eq!(
            loginuid().unwrap(),
            crate::proc::audit_id(me(), "loginuid").unwrap()
        );
    }
}
