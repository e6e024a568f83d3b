//! The fd table of a child being restored: which numbers are open, for predicting the
//! numbers the kernel hands out next (always the lowest free one). Each number is asked of
//! the kernel (`kcmp`, see `sys/kcmp.rs`) the first time it matters, a few cheap calls
//! where listing `/proc/PID/fd` makes the kernel build an entry per fd; where `kcmp` is
//! not available, `/proc/PID/fd` is listed once instead.
//!
//! The table is the kernel's now, which is the one the pending batches of
//! `restore/staged.rs` leave: they close every fd they open.

use std::collections::{BTreeMap, BTreeSet};

use super::RestoreError;

pub struct FdTable {
    pid: i32,
    /// What is known of each number asked about.
    known: BTreeMap<u64, bool>,
    /// `/proc/PID/fd`, listed once if `kcmp` failed.
    listed: Option<BTreeSet<u64>>,
}

impl FdTable {
    /// The table of `pid`, nothing asked yet.
    pub fn of(pid: i32) -> FdTable {
        FdTable {
            pid,
            known: BTreeMap::new(),
            listed: None,
        }
    }

    /// Whether `fd` is open.
    pub fn is_open(&mut self, fd: u64) -> Result<bool, RestoreError> {
        if let Some(&open) = self.known.get(&fd) {
            return Ok(open);
        }
        let open = match crate::sys::kcmp::fd_open(self.pid, fd) {
            Ok(open) => open,
            Err(_) => self.listed()?.contains(&fd),
        };
        self.known.insert(fd, open);
        Ok(open)
    }

    /// The lowest number at least `from` that is free: what the next call making an fd
    /// (with that minimum) gets.
    pub fn lowest_free(&mut self, from: u64) -> Result<u64, RestoreError> {
        for fd in from.. {
            if !self.is_open(fd)? {
                return Ok(fd);
            }
        }
        unreachable!("u64 fd numbers do not run out")
    }

    fn listed(&mut self) -> Result<&BTreeSet<u64>, RestoreError> {
        if self.listed.is_none() {
            let fds = crate::proc::fds(self.pid).map_err(|e| RestoreError::Unsupported {
                what: e.to_string(),
            })?;
            self.listed = Some(fds.into_iter().map(|fd| fd as u64).collect());
        }
        Ok(self.listed.as_ref().expect("listed above"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn tells_open_numbers_from_free_ones() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = file.as_raw_fd() as u64;
        let mut table = FdTable::of(std::process::id() as i32);
        assert!(table.is_open(fd).unwrap());
        assert!(table.lowest_free(fd).unwrap() > fd);
        assert!(!table.is_open(1 << 20).unwrap());
        assert_eq!(table.lowest_free(1 << 20).unwrap(), 1 << 20);
    }
}
