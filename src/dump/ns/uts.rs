//! The UTS namespace of the tree: if the root's is not the dumper's, its host and domain
//! names are saved, and every process of the tree must share it. The restore side is
//! `restore/ns/uts.rs`.

use super::{inode, DumpError};
use crate::image::ns::Uts;

/// The names of the root's UTS namespace, if it is not the dumper's. `pids`: every live
/// process of the tree, the root first.
pub fn collect(pids: &[i32]) -> Result<Option<Uts>, DumpError> {
    let root = pids[0];
    let tree = inode(&root.to_string(), "uts");
    for &pid in &pids[1..] {
        if inode(&pid.to_string(), "uts") != tree {
            return Err(DumpError::unsupported(format!(
                "pid {pid} is in another UTS namespace than the tree's root {root}; stasis \
                 restores one UTS namespace per tree"
            )));
        }
    }
    if tree == inode("self", "uts") {
        return Ok(None);
    }
    names_in(root).map(Some)
}

/// `uname()` from a thread of stasis that enters the UTS namespace of `pid`.
fn names_in(pid: i32) -> Result<Uts, DumpError> {
    let path = format!("/proc/{pid}/ns/uts");
    let fail = |e: String| DumpError::unsupported(format!("read the UTS names of {path}: {e}"));
    let ns = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUTS)?;
            nix::sys::utsname::uname()
        })
        .join()
    });
    let names = match got {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail("the reading thread panicked".to_string())),
    };
    Ok(Uts {
        hostname: names.nodename().to_string_lossy().into_owned(),
        domainname: names.domainname().to_string_lossy().into_owned(),
    })
}
