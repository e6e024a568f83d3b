//! Namespace files of the process's own namespaces, opened again as
//! `/proc/self/ns/KIND` once checked to be the namespace saved: the restored process must
//! be in it (stasis does not recreate namespaces). The dump side is `dump/files/ns.rs`.

use std::os::unix::fs::MetadataExt;

use super::Install;
use crate::image::files::NsFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, n: &NsFd) -> Result<(), RestoreError> {
    let pid = at.child.pid();
    let now = std::fs::metadata(format!("/proc/{pid}/ns/{}", n.kind)).map(|m| m.ino());
    if now.as_ref().ok() != Some(&n.ino) {
        let now = now.map_or_else(|e| e.to_string(), |i| format!("{}:[{i}]", n.kind));
        return Err(RestoreError::Unsupported {
            what: format!(
                "fd {} of pid {pid} was open on its {}:[{}] namespace, and the restored process is in {now}",
                at.entry.fd, n.kind, n.ino
            ),
        });
    }
    let flags = at.reopen_flags();
    let got = crate::restore::mm::open_in(at.child, &format!("/proc/self/ns/{}", n.kind), flags)?;
    at.place(got)
}
