//! The common fds of a table rebuilt in batches (`sys/batch.rs`) instead of one injected
//! syscall at a time: files and character devices reopened by path, `O_PATH` fds, dups,
//! copies of an earlier process's fds (`Inherited`), pipes without buffered bytes and the
//! other ends of pipes. The other kinds go through their own modules one call at a time;
//! the pending batch runs before each of them.
//!
//! Calls in a batch cannot read each other's results, so the fd numbers the kernel hands
//! out are predicted: it always picks the lowest free number, and the child's table is
//! known (asked of the kernel number by number, then followed call by call: see
//! `restore/fdtable.rs`).
//! Each call that returns an fd is expected to return exactly the predicted one, so a
//! wrong prediction stops the batch like a failure; `pipe2`, which returns its fds in
//! memory, is checked once the batch ran. The calls are the ones the kind modules make
//! (see `path.rs`, `pipe.rs`, `Install::place`, `inherit`).

use super::Install;
use crate::image::files::{FdEntry, FdKind, PipeEnd, PipeFd};
use crate::restore::child::Child;
use crate::restore::fdtable::FdTable;
use crate::restore::RestoreError;
use crate::sys::batch::{Batch, Done, Out};
use crate::sys::inject::Remote;

/// Room kept free in a batch for the next entry's calls and data.
const SLACK: u64 = 8192;

/// Whether `entry` is rebuilt here.
pub fn takes(entry: &FdEntry) -> bool {
    match &entry.kind {
        FdKind::Path(_) | FdKind::OPath(_) | FdKind::CharDev(_) | FdKind::Dup { .. } => true,
        FdKind::PipePeer { .. } | FdKind::Inherited { .. } => true,
        FdKind::Pipe(p) => p.data.is_empty(),
        _ => false,
    }
}

/// A `pipe2` whose fds are checked after the batch.
struct PipeCheck {
    fds: Out<[i32; 2]>,
    predicted: [u64; 2],
    fd: i32,
}

/// The pending batch and the child's fd table as it will be once the batch ran.
pub struct Batcher<'a> {
    child: &'a Child,
    remote: Remote<'a>,
    batch: Batch,
    /// `None` once an fd was made outside the batch: asked again when needed.
    open: Option<FdTable>,
    pipes: Vec<PipeCheck>,
}

impl<'a> Batcher<'a> {
    pub fn new(child: &'a Child) -> Self {
        let remote = child.remote();
        let batch = remote.batch();
        Batcher {
            child,
            remote,
            batch,
            open: None,
            pipes: Vec::new(),
        }
    }

    /// Adds the calls that rebuild `at.entry` (one [`takes`]).
    pub fn add(&mut self, at: &Install) -> Result<(), RestoreError> {
        if self.batch.room() < SLACK {
            self.flush()?;
        }
        if self.open.is_none() {
            self.open = Some(self.child.fd_table());
        }
        let e = at.entry;
        let about = format!("fd {} of pid {}", e.fd, self.child.pid());
        match &e.kind {
            FdKind::Path(p) => self.reopen(at, &p.file.path, p.pos, &about)?,
            FdKind::CharDev(c) => self.reopen(at, &c.path, c.pos, &about)?,
            FdKind::OPath(p) => self.reopen(at, &p.path, 0, &about)?,
            FdKind::Dup { of } => self.dup_of(at, *of as u64, &about),
            FdKind::PipePeer { .. } => {
                self.set_status_flags(at, at.fd(), &about);
                self.set_cloexec(at, &about);
            }
            FdKind::Inherited { pid, fd } => self.inherit(at, *pid, *fd, &about)?,
            FdKind::Pipe(p) => self.pipe(at, p, &about)?,
            _ => unreachable!("only kinds that `takes` accepts are added"),
        }
        Ok(())
    }

    /// Runs the pending calls and checks the pipes' fds.
    pub fn flush(&mut self) -> Result<(), RestoreError> {
        let batch = std::mem::replace(&mut self.batch, self.remote.batch());
        let done = self.remote.run(&batch)?;
        for p in std::mem::take(&mut self.pipes) {
            check_pipe(&done, &p, self.child.pid())?;
        }
        Ok(())
    }

    /// After an fd made outside the batch: the table must be read again.
    pub fn forget(&mut self) {
        self.open = None;
    }

    fn table(&mut self) -> &mut FdTable {
        self.open.as_mut().expect("made by add")
    }

    /// The number the kernel hands out next (the lowest free one at least `from`),
    /// marked taken.
    fn take(&mut self, from: u64) -> Result<u64, RestoreError> {
        let open = self.table();
        let fd = open.lowest_free(from)?;
        open.set(fd, true);
        Ok(fd)
    }

    fn close(&mut self, fd: u64, about: &str) {
        self.table().set(fd, false);
        self.batch.expect("close", libc::SYS_close, &[fd], 0);
        self.batch.about(about);
    }

    /// `openat` of `path` with the entry's flags, moved to its number, at `pos`.
    fn reopen(
        &mut self,
        at: &Install,
        path: &str,
        pos: u64,
        about: &str,
    ) -> Result<(), RestoreError> {
        let got = self.take(0)?;
        let addr = self.batch.put_str(path);
        let args = [libc::AT_FDCWD as u64, addr, at.reopen_flags() as u64, 0];
        self.batch.expect("openat", libc::SYS_openat, &args, got);
        self.batch.about(format!("{about} (open {path})"));
        self.place(at, got, about);
        if pos != 0 {
            let args = [at.fd(), pos, libc::SEEK_SET as u64];
            self.batch.expect("lseek", libc::SYS_lseek, &args, pos);
            self.batch.about(about);
        }
        Ok(())
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
        self.table().set(to, true);
        self.batch
            .expect("dup3", libc::SYS_dup3, &[from, to, flags], to);
        self.batch.about(about);
    }

    fn dup_of(&mut self, at: &Install, of: u64, about: &str) {
        self.dup3(of, at.fd(), at.cloexec() as u64, about);
    }

    fn set_status_flags(&mut self, at: &Install, fd: u64, about: &str) {
        let args = [fd, libc::F_SETFL as u64, at.entry.flags as u64];
        self.batch.call("fcntl(F_SETFL)", libc::SYS_fcntl, &args);
        self.batch.about(about);
    }

    fn set_cloexec(&mut self, at: &Install, about: &str) {
        let args = [at.fd(), libc::F_SETFD as u64, u64::from(at.entry.cloexec)];
        self.batch.call("fcntl(F_SETFD)", libc::SYS_fcntl, &args);
        self.batch.about(about);
    }

    /// `inherit` in `files/mod.rs`: `pidfd_open` + `pidfd_getfd`, then placed.
    fn inherit(
        &mut self,
        at: &Install,
        owner: i32,
        fd: i32,
        about: &str,
    ) -> Result<(), RestoreError> {
        let pidfd = self.take(0)?;
        let args = [owner as u64, 0];
        self.batch
            .expect("pidfd_open", libc::SYS_pidfd_open, &args, pidfd);
        self.batch.about(format!("{about} (pid {owner})"));
        let got = self.take(0)?;
        let args = [pidfd, fd as u64, 0];
        self.batch
            .expect("pidfd_getfd", libc::SYS_pidfd_getfd, &args, got);
        self.batch
            .about(format!("{about} (fd {fd} of pid {owner})"));
        self.close(pidfd, about);
        self.place(at, got, about);
        if got == at.fd() {
            // pidfd_getfd always sets FD_CLOEXEC.
            self.set_cloexec(at, about);
        }
        Ok(())
    }

    /// `pipe.rs` for a pipe without buffered bytes: `pipe2`, capacity, flags, our end
    /// placed, the other end at its holder's number (or closed).
    fn pipe(&mut self, at: &Install, p: &PipeFd, about: &str) -> Result<(), RestoreError> {
        let fds = self.batch.out::<[i32; 2]>();
        let (r, w) = (self.take(0)?, self.take(0)?);
        self.batch
            .expect("pipe2", libc::SYS_pipe2, &[fds.addr(), 0], 0);
        self.batch.about(about);
        self.pipes.push(PipeCheck {
            fds,
            predicted: [r, w],
            fd: at.entry.fd,
        });
        let (ours, other) = match p.end {
            PipeEnd::Read => (r, w),
            PipeEnd::Write => (w, r),
        };
        if p.size != 0 {
            let args = [ours, libc::F_SETPIPE_SZ as u64, u64::from(p.size)];
            self.batch
                .call("fcntl(F_SETPIPE_SZ)", libc::SYS_fcntl, &args);
            self.batch.about(about);
        }
        self.set_status_flags(at, ours, about);
        let other = self.aside(at, other, about)?;
        self.place(at, ours, about);
        match p.peer {
            Some(peer) if peer as u64 != other => {
                self.dup3(other, peer as u64, 0, about);
                self.close(other, about);
            }
            Some(_) => {}
            None => self.close(other, about),
        }
        Ok(())
    }

    /// [`Install::aside`]: a helper fd moved above the entry's number if it sits on it.
    fn aside(&mut self, at: &Install, fd: u64, about: &str) -> Result<u64, RestoreError> {
        if fd != at.fd() {
            return Ok(fd);
        }
        let moved = self.take(at.fd() + 1)?;
        let args = [fd, libc::F_DUPFD_CLOEXEC as u64, at.fd() + 1];
        self.batch
            .expect("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &args, moved);
        self.batch.about(about);
        self.close(fd, about);
        Ok(moved)
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
