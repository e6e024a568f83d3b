//! The calling thread's scheduling priority raised for a window in which it is what the
//! user waits for: a migration's final dump on the source (the tree frozen) and a
//! post-copy restore until its tree runs. The restore's own post-copy threads, started
//! before the raise, check and fill pages at the priority they had: on a machine of two
//! CPUs, two threads checksumming the 2 GiB of a migrated process's pages otherwise take
//! most of the CPU from the restore and double its downtime.
//!
//! This module owns only the raise and its undoing. Threads and processes a raised thread
//! starts inherit the raise: the restore gives each restored thread its saved nice value
//! in its Sched stage (`restore/sched.rs`), so the tree never keeps ours. Raising needs
//! `CAP_SYS_NICE`; without it nothing is raised and nothing fails.

use crate::sys::sched::{nice, set_nice};

/// The nice value of a raised thread: above every default (0) thread of the host, but
/// for the real-time ones, below the most urgent nice values an administrator may give.
const RAISED: i32 = -10;

/// The calling thread raised; dropped, its nice value is given back.
#[derive(Debug)]
pub struct Raised {
    was: i32,
}

/// Raises the calling thread to [`RAISED`] unless it has that priority already; `None`
/// when it does or may not (the caller goes on at its priority).
pub fn raise() -> Option<Raised> {
    // 0: the calling thread (`setpriority(PRIO_PROCESS, 0)` is per thread on Linux).
    let was = nice(0).ok()?;
    if was <= RAISED {
        return None;
    }
    set_nice(0, RAISED).ok()?;
    Some(Raised { was })
}

impl Drop for Raised {
    fn drop(&mut self) {
        // Lowering one's own priority is always allowed.
        let _ = set_nice(0, self.was);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_raise_is_given_back_when_dropped() {
        let before = nice(0).unwrap();
        let Some(raised) = raise() else {
            eprintln!("SKIP: a_raise_is_given_back_when_dropped: no CAP_SYS_NICE (or raised)");
            return;
        };
        assert_eq!(nice(0).unwrap(), RAISED);
        drop(raised);
        assert_eq!(nice(0).unwrap(), before);
    }
}
