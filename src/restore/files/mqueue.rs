//! POSIX message queue descriptors, reopened by name in the process's IPC namespace (the
//! queue itself was made before the tree's fds, `restore/mqueue.rs`). The dump side is
//! `dump/files/mqueue.rs`.

use super::Install;
use crate::image::files::MqueueFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, q: &MqueueFd) -> Result<(), RestoreError> {
    let flags = at.entry.flags & (libc::O_ACCMODE | libc::O_NONBLOCK) | at.cloexec();
    // The syscall takes the name without the `/` that mq_open(3) strips.
    let name = at.child.put_str(0, &q.name)?;
    let got = at.call("mq_open", libc::SYS_mq_open, &[name, flags as u64, 0, 0])?;
    at.place(got)
}
