//! File locks held through an fd (`lock:` lines of fdinfo, which list the locks whose
//! file is this open file description): `flock`, POSIX record and OFD locks, and leases
//! (`F_SETLEASE`), also one being broken. Saved only under `--file-locks`; without it a
//! held lock is refused. fdinfo shows a lease being broken with the type it is broken
//! to: a write lease for one downgraded to `READ`; one broken to `UNLCK` is taken as a
//! read lease on a read-only description and a write lease otherwise (as CRIU does: a
//! read lease cannot be taken through a writable description, and the two differ only
//! in which opens the break makes wait). Waiters (`->`) are not locks:
//! a task blocked in `F_SETLKW` or `flock` asks again when it resumes. The restore side
//! is `restore/files/locks.rs`.

use super::{parsed, OpenFd};
use crate::dump::DumpError;
use crate::image::files::{FileLock, LockKind};
use crate::proc::fdkinds;

pub fn dump(open: &OpenFd, enabled: bool) -> Result<Vec<FileLock>, DumpError> {
    let held = parsed(open, fdkinds::locks(&open.info))?;
    held.iter()
        .filter(|l| !l.blocked)
        .map(|l| {
            let mut write = l.write;
            let kind = match l.kind.as_str() {
                "FLOCK" => LockKind::Flock,
                "POSIX" => LockKind::Posix,
                "OFDLCK" => LockKind::Ofd,
                "LEASE" if l.state == "BREAKING" => {
                    write = !l.unlock || open.info.flags & libc::O_ACCMODE != libc::O_RDONLY;
                    LockKind::LeaseBreaking { unlock: l.unlock }
                }
                "LEASE" => LockKind::Lease,
                other => {
                    return Err(open.error(&format!(
                        "holds a {other} lock on {}, which stasis cannot checkpoint",
                        open.target
                    )))
                }
            };
            if !enabled {
                return Err(open.error(&format!(
                    "holds a {} lock on {}; use --file-locks to save and restore it",
                    l.kind, open.target
                )));
            }
            Ok(FileLock {
                fd: open.fd,
                kind,
                write,
                start: l.start,
                len: l.end.map_or(0, |end| end - l.start + 1),
            })
        })
        .collect()
}
