//! The inventory: what an image directory holds and where it came from.

use serde::{Deserialize, Serialize};

/// `inventory.img`: written last, so a directory without it is not an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Version of stasis that wrote the image (informational; the header carries the format).
    pub stasis_version: String,
    /// Seconds since the epoch when the dump finished.
    pub created_unix: u64,
    /// `uname -r` and hostname of the dumping machine.
    pub kernel_release: String,
    pub hostname: String,
    /// PID of the dumped root task.
    pub root_pid: i32,
    /// Every process in the image, the root first.
    pub pids: Vec<i32>,
    /// The CPU the registers were saved on.
    pub cpu: CpuInfo,
    /// The dump ran with `--shell-job`: terminal fds are re-attached to the restorer's.
    pub shell_job: bool,
}

/// What the saved register state needs from the CPU it is restored on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// XCR0: the xsave features enabled when the registers were saved.
    pub xcr0: u64,
    /// Size in bytes of the xsave area for those features (CPUID 0xD, EBX).
    pub xsave_size: u32,
    /// `/proc/cpuinfo` "model name", for the humans reading `inspect`.
    pub model_name: String,
}
