//! Errors of the restore, each naming the pid, file or mapping concerned.

use crate::image::ImageError;
use crate::sys::clone::CloneError;
use crate::sys::inject::InjectError;
use crate::sys::mem::MemError;
use crate::sys::ptrace::PtraceError;
use crate::sys::sched::SchedError;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Lazy(#[from] crate::lazy::LazyError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("pid {pid} is in use by {owner}; stasis restores exact pids, so free it first (or restore into a new pid namespace)")]
    PidTaken { pid: i32, owner: String },
    #[error("pids {list} are in use; stasis restores exact pids, so free them first (or restore into a new pid namespace)")]
    PidsTaken { list: String },
    #[error("pid {pid} is not below this kernel's pid_max ({pid_max})")]
    PidMax { pid: i32, pid_max: i32 },
    #[error("the image needs CPU features this machine lacks: {missing}")]
    CpuFeatures { missing: String },
    #[error("the vDSO here differs from the dumped one ({what}); restoring across kernels with different vDSOs is not supported yet")]
    Vdso { what: String },
    #[error("{path} changed since the dump ({what}); it is needed unchanged by pid {pid}")]
    FileChanged {
        pid: i32,
        path: String,
        what: String,
    },
    #[error("{what}")]
    Unsupported { what: String },
    #[error("fd {fd} of pid {pid}")]
    Fd {
        fd: i32,
        pid: i32,
        #[source]
        source: Box<RestoreError>,
    },
    #[error("set socket option {option} to {value}")]
    SockOpt {
        option: &'static str,
        value: String,
        #[source]
        source: Box<RestoreError>,
    },
    #[error("stage {stage} of pid {pid}")]
    Stage {
        stage: &'static str,
        pid: i32,
        #[source]
        source: Box<RestoreError>,
    },
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error(transparent)]
    Ipc(#[from] crate::sys::ipc::IpcError),
    #[error(transparent)]
    IpcNs(#[from] crate::sys::ipc::NsError),
    #[error(transparent)]
    Mqueue(#[from] crate::sys::mqueue::MqError),
    #[error(transparent)]
    MqueueMount(#[from] crate::sys::mount::MountError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroupfs::CgroupError),
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    #[error(transparent)]
    Inject(#[from] InjectError),
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error("write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recreate {what} {path} of the image")]
    GhostCreate {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("remove the recreated deleted file {path}")]
    GhostRemove {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write pid file {path}")]
    PidFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for pid {pid}")]
    Wait {
        pid: i32,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("the caller refused the {point} notification of pid {pid}: {reason}")]
    Hook {
        point: &'static str,
        pid: i32,
        reason: String,
    },
}

impl RestoreError {
    /// `map_err` wrapper naming fd `fd` of `pid` as where the error happened.
    pub fn at_fd(pid: i32, fd: i32) -> impl Fn(RestoreError) -> RestoreError {
        move |e| RestoreError::Fd {
            fd,
            pid,
            source: Box::new(e),
        }
    }
}
