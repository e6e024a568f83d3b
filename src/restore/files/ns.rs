//! Namespace files of the process's own namespaces (the dump refuses any other), opened
//! again as `/proc/self/ns/KIND`. The restored process is in the namespace the fd named
//! when that is one the restore made anew for the tree (its network, IPC, UTS, mount,
//! pid, cgroup or time namespace: a namespace that is not the restorer's), or when it is
//! the very namespace saved (same inode: the host's, shared with the dumper). A host
//! namespace that changed since the dump (another host, a reboot) is refused. The dump
//! side is `dump/files/ns.rs`.

use std::os::unix::fs::MetadataExt;

use super::Install;
use crate::image::files::NsFd;
use crate::restore::RestoreError;

pub fn restore(at: &Install, n: &NsFd) -> Result<(), RestoreError> {
    let pid = at.child.pid();
    let ino = |who: &str| std::fs::metadata(format!("/proc/{who}/ns/{}", n.kind)).map(|m| m.ino());
    let now = ino(&pid.to_string());
    // stasis itself enters the tree's new network namespace while it rebuilds it.
    let own = match n.kind.as_str() {
        "net" => crate::restore::ns::net::own_ino(),
        _ => ino("thread-self"),
    };
    let made_anew = now
        .as_ref()
        .is_ok_and(|now| own.is_ok_and(|own| own != *now));
    if now.as_ref().ok() != Some(&n.ino) && !made_anew {
        let now = now.map_or_else(|e| e.to_string(), |i| format!("{}:[{i}]", n.kind));
        return Err(RestoreError::Unsupported {
            what: format!(
                "fd {} of pid {pid} was open on its {}:[{}] namespace, and the restored process is in the restorer's {now}",
                at.entry.fd, n.kind, n.ino
            ),
        });
    }
    let flags = at.reopen_flags();
    let got = crate::restore::mm::open_in(at.child, &format!("/proc/self/ns/{}", n.kind), flags)?;
    at.place(got)
}
