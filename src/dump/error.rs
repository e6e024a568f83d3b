//! Errors of the dump, each naming the task and the object that failed.

use crate::image::ImageError;
use crate::proc::ProcError;
use crate::sys::inject::InjectError;
use crate::sys::mem::MemError;
use crate::sys::pagemap::PagemapError;
use crate::sys::ptrace::PtraceError;
use crate::sys::sched::SchedError;
use crate::sys::thread::RobustListError;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Lazy(#[from] crate::lazy::LazyError),
    #[error("pid {pid} does not exist")]
    NoSuchTask { pid: i32 },
    #[error("pid {pid} is stasis itself")]
    SelfDump { pid: i32 },
    #[error("pid {pid} is a zombie")]
    Zombie { pid: i32 },
    #[error("pid {pid} is traced by pid {tracer}; detach that tracer first")]
    Traced { pid: i32, tracer: i32 },
    #[error("pid {pid} belongs to session {sid}, whose leader is outside the dumped tree; use --shell-job (-j) to restore it into the restorer's session")]
    ForeignSession { pid: i32, sid: i32 },
    #[error("pid {pid} is in process group {pgid} led by another process; dumping process groups spanning processes is not supported yet")]
    ForeignGroup { pid: i32, pgid: i32 },
    #[error("{what}")]
    Unsupported { what: String },
    #[error("stat {path}")]
    Stat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid} has no syscall instruction in its vDSO nor in any executable mapping to run queries with")]
    NoSyscallInsn { pid: i32 },
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    #[error(transparent)]
    RobustList(#[from] RobustListError),
    #[error(transparent)]
    Inject(#[from] InjectError),
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error(transparent)]
    Pagemap(#[from] PagemapError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error(transparent)]
    Ipc(#[from] crate::sys::ipc::IpcError),
    #[error(transparent)]
    IpcNs(#[from] crate::sys::ipc::NsError),
    #[error(transparent)]
    Mqueue(#[from] crate::sys::mqueue::MqError),
    #[error(transparent)]
    MqueueMount(#[from] crate::sys::mount::MountError),
    #[error("the caller refused the {point} notification of pid {pid}: {reason}")]
    Hook {
        point: &'static str,
        pid: i32,
        reason: String,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroupfs::CgroupError),
    #[error(transparent)]
    Tracker(#[from] crate::tracker::TrackerError),
    #[error("{what} of pid {pid} (dirty-page tracking)")]
    Track {
        pid: i32,
        what: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
}

impl DumpError {
    pub fn unsupported(what: impl Into<String>) -> Self {
        DumpError::Unsupported { what: what.into() }
    }
}
