//! The names of the tree's own UTS namespace, set by the root in the namespace its
//! `clone3` made. The dump side is `dump/ns/uts.rs`.

use super::super::child::Child;
use super::super::RestoreError;
use crate::image::ns::Uts;

/// `sethostname` and `setdomainname` injected into the root.
pub fn restore(root: &Child, names: &Uts) -> Result<(), RestoreError> {
    let remote = root.remote();
    let host = root.put(0, names.hostname.as_bytes())?;
    let len = names.hostname.len() as u64;
    remote.call("sethostname", libc::SYS_sethostname, &[host, len])?;
    let domain = root.put(0, names.domainname.as_bytes())?;
    let len = names.domainname.len() as u64;
    remote.call("setdomainname", libc::SYS_setdomainname, &[domain, len])?;
    Ok(())
}
