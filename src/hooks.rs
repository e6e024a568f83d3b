//! Notification points of a dump and a restore, for a front end that must tell its own
//! caller when each is reached (criu-compat sends CRIU's `notify` messages from them).
//! The library calls [`Hooks::at`] at the moment each [`Point`] names and waits for it;
//! an error aborts the operation there, as a failed step would (the dumped tree is left
//! running, a half-restored tree is killed). It owns the points, not what is done at them.

/// A moment of a dump or a restore, in the order it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Dump: the checks passed, the tree is not frozen yet.
    PreDump,
    /// Dump: the tree is frozen, before its sockets are saved (and locked).
    NetworkLock,
    /// Dump: the image is committed, the tree is still frozen (an error releases it).
    PostDump,
    /// Dump with leave-running: the tree runs again.
    NetworkUnlock,
    /// Restore: before the image is read.
    PreRestore,
    /// Restore: the image is verified; the root's pid is known, no process exists yet
    /// (stasis makes no namespaces of its own to set up).
    SetupNamespaces,
    /// Restore: right after [`Point::SetupNamespaces`].
    PostSetupNamespaces,
    /// Restore: every process is rebuilt and still stopped.
    PostRestore,
    /// Restore: just before the tree resumes.
    PreResume,
    /// Restore: the tree runs; an error here cannot undo the restore and is ignored by the
    /// library (the hook reports it itself).
    PostResume,
}

impl Point {
    /// CRIU's name for the point (its action-script and `notify` name).
    pub fn criu_name(self) -> &'static str {
        match self {
            Point::PreDump => "pre-dump",
            Point::NetworkLock => "network-lock",
            Point::PostDump => "post-dump",
            Point::NetworkUnlock => "network-unlock",
            Point::PreRestore => "pre-restore",
            Point::SetupNamespaces => "setup-namespaces",
            Point::PostSetupNamespaces => "post-setup-namespaces",
            Point::PostRestore => "post-restore",
            Point::PreResume => "pre-resume",
            Point::PostResume => "post-resume",
        }
    }
}

/// What a front end does at each point; `pid` is the tree's root.
pub trait Hooks {
    /// Called at `point`; an `Err` (its reason) stops the operation there.
    fn at(&mut self, point: Point, pid: i32) -> Result<(), String>;

    /// Restore: the new master of the pty whose master was outside the tree (a
    /// runtime's console, CRIU's `orphan-pts-master`), once every process is rebuilt
    /// and before [`Point::PostRestore`]; the front end keeps its own duplicate. Only
    /// called when the restore was asked to (`RestoreOptions::orphan_pts_master`).
    fn orphan_pts_master(&mut self, master: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
        let _ = master;
        Err("this front end takes no pty master".into())
    }
}

/// No hooks: what `stasis dump` and `stasis restore` use.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn at(&mut self, _point: Point, _pid: i32) -> Result<(), String> {
        Ok(())
    }
}
