//! Namespace files (`/proc/PID/ns/net`...: link text `net:[4026531840]`) of the process's
//! own namespaces. The restored process lives in the namespaces it is restored in (the
//! tree's own, made anew, or the host's), so only an fd on one the process is in itself
//! can be opened again (`/proc/self/ns/KIND` at restore); one on another namespace is
//! refused. The restore side is `restore/files/ns.rs`.

use std::os::unix::fs::MetadataExt;

use super::OpenFd;
use crate::dump::DumpError;
use crate::image::files::{FdKind, NsFd};

/// `Some` for an fd on a namespace file; refused unless it is one of the process's own.
pub fn dump(open: &OpenFd) -> Result<Option<FdKind>, DumpError> {
    let Some((kind, ino)) = parse(&open.target) else {
        return Ok(None);
    };
    // The link text names the namespace type ("pid"), which the process's
    // `pid_for_children` may share: any of its files of that type will do.
    let own = crate::dump::ns::KINDS
        .iter()
        .filter(|k| k.split('_').next() == Some(kind))
        .find(|k| {
            std::fs::metadata(format!("/proc/{}/ns/{k}", open.pid)).is_ok_and(|m| m.ino() == ino)
        });
    match own {
        Some(k) => Ok(Some(FdKind::Namespace(NsFd {
            kind: (*k).to_string(),
            ino,
        }))),
        None => Err(open.error(&format!(
            "is open on {}, a namespace the process is not in; stasis restores namespace files of the process's own namespaces only",
            open.target
        ))),
    }
}

/// `("net", 4026531840)` from `net:[4026531840]`, for a known kind.
fn parse(target: &str) -> Option<(&str, u64)> {
    let (kind, rest) = target.split_once(":[")?;
    let ino = rest.strip_suffix(']')?.parse().ok()?;
    crate::dump::ns::KINDS
        .contains(&kind)
        .then_some((kind, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_link_texts() {
        assert_eq!(parse("net:[4026531840]"), Some(("net", 4026531840)));
        assert_eq!(parse("time:[1]"), Some(("time", 1)));
        assert_eq!(parse("pipe:[12]"), None);
        assert_eq!(parse("/proc/1/ns/net"), None);
        assert_eq!(parse("net:[x]"), None);
    }
}
