//! The namespaces a dumped process lives in. stasis rebuilds a tree inside the restorer's
//! own namespaces, except the IPC namespace its root made (`dump/sysv.rs`) and the mount
//! namespace of its root (`dump/mnt/`, which checks the whole tree shares it): a process in
//! any other namespace than the dumper's — its own mount, network, UTS, time, user
//! or pid namespace, or one it prepared for its children (`pid_for_children`,
//! `time_for_children`) — would come back in the restorer's, its hostname, mounts,
//! interfaces or clocks silently different. Such a process is refused here, before
//! anything is frozen, naming the namespace.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use super::DumpError;

/// The namespace kinds checked, as named in `/proc/PID/ns`.
/// (The cgroup namespace is the tree's cgroup record's, `dump/cgroup/`.)
const KINDS: [&str; 8] = [
    "mnt",
    "net",
    "uts",
    "time",
    "time_for_children",
    "user",
    "pid",
    "pid_for_children",
];

/// The dumper's own namespace inodes, read once (0 where the kernel lacks the kind).
fn own() -> &'static [u64; 8] {
    static OWN: OnceLock<[u64; 8]> = OnceLock::new();
    OWN.get_or_init(|| KINDS.map(|k| inode("self", k).unwrap_or(0)))
}

fn inode(pid: &str, kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Refuses `pid` if one of its namespaces is not the dumper's.
pub fn refuse_foreign(pid: i32) -> Result<(), DumpError> {
    for (kind, mine) in KINDS.iter().zip(own()) {
        if *kind == "mnt" {
            continue; // dumped with the tree: dump/mnt
        }
        let Some(theirs) = inode(&pid.to_string(), kind) else {
            continue;
        };
        if theirs != *mine && *mine != 0 {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is in a {kind} namespace of its own ({kind}:[{theirs}], stasis \
                 is in {kind}:[{mine}]), which stasis cannot rebuild yet; run stasis inside \
                 that namespace to dump the tree as it sees it"
            )));
        }
    }
    Ok(())
}
