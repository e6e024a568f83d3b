//! The common fds of a table rebuilt in batches (`sys/batch.rs`) instead of one injected
//! syscall at a time: files and character devices reopened by path, `O_PATH` fds, dups,
//! copies of an earlier process's fds (`Inherited`), pipes (their buffered bytes, up to
//! [`PIPE_DATA_MAX`], written by a `write` of the batch) and the other ends of pipes, all
//! added to the process's pending batch (`restore/staged.rs`).
//! The other kinds go through their own modules one call at a time; the pending batch
//! runs before each of them.
//!
//! Calls in a batch cannot read each other's results, so the fd numbers the kernel hands
//! out are predicted: it always picks the lowest free number, and the child's table is
//! known (read from `/proc/PID/fd` when the batch starts, or empty after the stage's own
//! `close_range`, then followed call by call).
//! Each call that returns an fd is expected to return exactly the predicted one, so a
//! wrong prediction stops the batch like a failure; `pipe2`, which returns its fds in
//! memory, is checked once the batch ran. The calls are the ones the kind modules make
//! (see `path.rs`, `pipe.rs`, `Install::place`, `inherit`).

use std::collections::BTreeSet;

use super::Install;
use crate::image::files::{FdEntry, FdKind, PipeEnd, PipeFd};
use crate::restore::staged::Staged;
use crate::restore::RestoreError;
use crate::sys::batch::{Done, Out};

/// Room kept free in a batch for the next entry's calls and data.
const SLACK: u64 = 8192;

/// The most buffered bytes of a pipe written from the batch's region (the default pipe
/// capacity); a pipe holding more is filled from stasis (`pipe.rs`).
pub const PIPE_DATA_MAX: usize = 64 * 1024;

/// Whether `entry` of process `pid` is rebuilt here (not an fd of a process it cannot
/// see, outside its pid namespace: `ns/handover.rs`).
pub fn takes(entry: &FdEntry, pid: i32) -> bool {
    match &entry.kind {
        FdKind::Path(_) | FdKind::OPath(_) | FdKind::CharDev(_) | FdKind::Dup { .. } => true,
        FdKind::PipePeer { .. } => true,
        FdKind::Inherited { pid: owner, .. } => crate::restore::ns::pid::view(pid, *owner) != 0,
        FdKind::Pipe(p) => p.data.len() <= PIPE_DATA_MAX,
        _ => false,
    }
}

/// Bytes of the region `entry` needs beyond [`SLACK`].
fn data_len(entry: &FdEntry) -> u64 {
    match &entry.kind {
        FdKind::Pipe(p) => p.data.len() as u64,
        _ => 0,
    }
}

/// A `pipe2` whose fds are checked after the batch.
struct PipeCheck {
    fds: Out<[i32; 2]>,
    predicted: [u64; 2],
    fd: i32,
}

/// The pending batch and the child's fd table as it will be once the batch ran.
pub struct Batcher<'s, 'a> {
    s: &'s mut Staged<'a>,
    /// `None` once an fd was made outside the batch: read again when needed.
    open: Option<BTreeSet<u64>>,
}

impl<'s, 'a> Batcher<'s, 'a> {
    /// `open`: the fd table once the pending calls ran, if known.
    pub fn new(s: &'s mut Staged<'a>, open: Option<BTreeSet<u64>>) -> Self {
        Batcher { s, open }
    }

    /// Adds the calls that rebuild `at.entry` (one [`takes`]).
    pub fn add(&mut self, at: &Install) -> Result<(), RestoreError> {
        if self.s.room() < SLACK + data_len(at.entry) {
            self.flush()?;
        }
        if self.open.is_none() {
            self.flush()?;
            self.open = Some(open_fds(self.s.child().pid())?);
        }
        let e = at.entry;
        let about = format!("fd {} of pid {}", e.fd, self.s.child().pid());
        match &e.kind {
            FdKind::Path(p) => self.reopen(at, &p.file.path, p.pos, &about),
            FdKind::CharDev(c) => self.reopen(at, &c.path, c.pos, &about),
            FdKind::OPath(p) => self.reopen(at, &p.path, 0, &about),
            FdKind::Dup { of } => self.dup_of(at, *of as u64, &about),
            FdKind::PipePeer { .. } => {
                self.set_status_flags(at, at.fd(), &about);
                self.set_cloexec(at, &about);
            }
            FdKind::Inherited { pid, fd } => self.inherit(at, *pid, *fd, &about),
            FdKind::Pipe(p) => self.pipe(at, p, &about),
            _ => unreachable!("only kinds that `takes` accepts are added"),
        }
        Ok(())
    }

    /// Runs the pending calls (the pipes' fds are checked then).
    pub fn flush(&mut self) -> Result<(), RestoreError> {
        self.s.flush()
    }

    /// After an fd made outside the batch: the table must be read again.
    pub fn forget(&mut self) {
        self.open = None;
    }

    fn table(&mut self) -> &mut BTreeSet<u64> {
        self.open.as_mut().expect("read by add")
    }

    /// The number the kernel hands out next (the lowest free one at least `from`),
    /// marked taken.
    fn take(&mut self, from: u64) -> u64 {
        let open = self.table();
        let fd = (from..).find(|n| !open.contains(n)).expect("a free fd");
        open.insert(fd);
        fd
    }

    fn close(&mut self, fd: u64, about: &str) {
        self.table().remove(&fd);
        self.s.batch().expect("close", libc::SYS_close, &[fd], 0);
        self.s.batch().about(about);
    }

    /// `openat` of `path` with the entry's flags, moved to its number, at `pos`.
    fn reopen(&mut self, at: &Install, path: &str, pos: u64, about: &str) {
        let got = self.take(0);
        let addr = self.s.batch().put_str(path);
        let args = [libc::AT_FDCWD as u64, addr, at.reopen_flags() as u64, 0];
        self.s
            .batch()
            .expect("openat", libc::SYS_openat, &args, got);
        self.s.batch().about(format!("{about} (open {path})"));
        self.place(at, got, about);
        if pos != 0 {
            let args = [at.fd(), pos, libc::SEEK_SET as u64];
            self.s.batch().expect("lseek", libc::SYS_lseek, &args, pos);
            self.s.batch().about(about);
        }
    }

    /// [`Install::place`]: `dup3` to the entry's number and close, if not there yet.
    fn place(&mut self, at: &Install, got: u64, about: &str) {
        let want = at.fd();
        if got != want {
            self.dup3(got, want, at.cloexec() as u64, about);
            self.close(got, about);
        }
    }

    fn dup3(&mut self, from: u64, to: u64, flags: u64, about: &str) {
        self.table().insert(to);
        self.s
            .batch()
            .expect("dup3", libc::SYS_dup3, &[from, to, flags], to);
        self.s.batch().about(about);
    }

    fn dup_of(&mut self, at: &Install, of: u64, about: &str) {
        self.dup3(of, at.fd(), at.cloexec() as u64, about);
    }

    fn set_status_flags(&mut self, at: &Install, fd: u64, about: &str) {
        let args = [fd, libc::F_SETFL as u64, at.entry.flags as u64];
        self.s
            .batch()
            .call("fcntl(F_SETFL)", libc::SYS_fcntl, &args);
        self.s.batch().about(about);
    }

    fn set_cloexec(&mut self, at: &Install, about: &str) {
        let args = [at.fd(), libc::F_SETFD as u64, u64::from(at.entry.cloexec)];
        self.s
            .batch()
            .call("fcntl(F_SETFD)", libc::SYS_fcntl, &args);
        self.s.batch().about(about);
    }

    /// `inherit` in `files/mod.rs`: `pidfd_open` + `pidfd_getfd`, then placed.
    fn inherit(&mut self, at: &Install, owner: i32, fd: i32, about: &str) {
        let pidfd = self.take(0);
        let seen = crate::restore::ns::pid::view(at.child.pid(), owner);
        let args = [seen as u64, 0];
        self.s
            .batch()
            .expect("pidfd_open", libc::SYS_pidfd_open, &args, pidfd);
        self.s.batch().about(format!("{about} (pid {owner})"));
        let got = self.take(0);
        let args = [pidfd, fd as u64, 0];
        self.s
            .batch()
            .expect("pidfd_getfd", libc::SYS_pidfd_getfd, &args, got);
        self.s
            .batch()
            .about(format!("{about} (fd {fd} of pid {owner})"));
        self.close(pidfd, about);
        self.place(at, got, about);
        if got == at.fd() {
            // pidfd_getfd always sets FD_CLOEXEC.
            self.set_cloexec(at, about);
        }
    }

    /// `pipe.rs`: `pipe2`, capacity, buffered bytes written into the write end (they fit:
    /// the capacity is set first and the pipe is still blocking), flags, our end placed,
    /// the other end at its holder's number (or closed).
    fn pipe(&mut self, at: &Install, p: &PipeFd, about: &str) {
        let fds = self.s.batch().out::<[i32; 2]>();
        let (r, w) = (self.take(0), self.take(0));
        self.s
            .batch()
            .expect("pipe2", libc::SYS_pipe2, &[fds.addr(), 0], 0);
        self.s.batch().about(about);
        let check = PipeCheck {
            fds,
            predicted: [r, w],
            fd: at.entry.fd,
        };
        let pid = self.s.child().pid();
        self.s.check(move |done| check_pipe(done, &check, pid));
        let (ours, other) = match p.end {
            PipeEnd::Read => (r, w),
            PipeEnd::Write => (w, r),
        };
        if p.size != 0 {
            let args = [ours, libc::F_SETPIPE_SZ as u64, u64::from(p.size)];
            self.s
                .batch()
                .call("fcntl(F_SETPIPE_SZ)", libc::SYS_fcntl, &args);
            self.s.batch().about(about);
        }
        if !p.data.is_empty() {
            let addr = self.s.batch().put(&p.data);
            let len = p.data.len() as u64;
            self.s
                .batch()
                .expect("write", libc::SYS_write, &[w, addr, len], len);
            self.s.batch().about(format!("{about} (buffered bytes)"));
        }
        self.set_status_flags(at, ours, about);
        let other = self.aside(at, other, about);
        self.place(at, ours, about);
        match p.peer {
            Some(peer) if peer as u64 != other => {
                self.dup3(other, peer as u64, 0, about);
                self.close(other, about);
            }
            Some(_) => {}
            None => self.close(other, about),
        }
    }

    /// [`Install::aside`]: a helper fd moved above the entry's number if it sits on it.
    fn aside(&mut self, at: &Install, fd: u64, about: &str) -> u64 {
        if fd != at.fd() {
            return fd;
        }
        let moved = self.take(at.fd() + 1);
        let args = [fd, libc::F_DUPFD_CLOEXEC as u64, at.fd() + 1];
        self.s
            .batch()
            .expect("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &args, moved);
        self.s.batch().about(about);
        self.close(fd, about);
        moved
    }
}

/// The pipe got the fds predicted for it (the calls after it used them).
fn check_pipe(done: &Done, p: &PipeCheck, pid: i32) -> Result<(), RestoreError> {
    let got = done.get(p.fds).map(|fd| fd as u64);
    if got == p.predicted {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "fd {} of pid {pid}: pipe2 returned fds {got:?}, not the predicted {:?}",
            p.fd, p.predicted
        ),
    })
}

/// The fds open in `pid` now (`/proc/PID/fd`).
fn open_fds(pid: i32) -> Result<BTreeSet<u64>, RestoreError> {
    let path = format!("/proc/{pid}/fd");
    let dir = std::fs::read_dir(&path).map_err(|source| RestoreError::Read {
        path: path.clone(),
        source,
    })?;
    let mut out = BTreeSet::new();
    for entry in dir {
        let entry = entry.map_err(|source| RestoreError::Read {
            path: path.clone(),
            source,
        })?;
        if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.insert(fd);
        }
    }
    Ok(out)
}
