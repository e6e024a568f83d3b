//! The common fds of a table rebuilt in batches (`sys/batch.rs`) instead of one injected
//! syscall at a time: files and character devices reopened by path, `O_PATH` fds, dups,
//! copies of an earlier process's fds (`Inherited`), pipes (their buffered bytes, up to
//! [`PIPE_DATA_MAX`], written by a `write` of the batch) and the other ends of pipes, unix
//! socket pairs of their own (`unix_pair.rs`), all added to the process's pending batch
//! (`restore/staged.rs`).
//! The other kinds go through their own modules one call at a time; the pending batch
//! runs before each of them.
//!
//! Calls in a batch cannot read each other's results, so the fd numbers the kernel hands
//! out are predicted: it always picks the lowest free number, and the child's table is
//! known (read from `/proc/PID/fd` when the batch starts, or empty after the stage's own
//! `close_range`, then followed call by call).
//! Each call that returns an fd is expected to return exactly the predicted one, so a
//! wrong prediction stops the batch like a failure; `pipe2`, which returns its fds in
//! memory, is checked once the batch ran (`socketpair` too). The calls are the ones the kind modules make
//! (see `path.rs`, `pipe.rs`, `Install::place`, `inherit`).

use std::collections::BTreeSet;

use super::unix_pair::{self, End, Pairs};
use super::Install;
use crate::image::files::{FdEntry, FdKind, PipeEnd, PipeFd};
use crate::image::sock::UnixMessage;
use crate::restore::staged::Staged;
use crate::restore::RestoreError;
use crate::sys::batch::{Done, Out};

/// Room kept free in a batch for the next entry's calls and data.
const SLACK: u64 = 8192;

/// The most buffered bytes of a pipe written from the batch's region (the default pipe
/// capacity); a pipe holding more is filled from stasis (`pipe.rs`).
pub const PIPE_DATA_MAX: usize = 64 * 1024;

/// Whether `entry` of process `pid` is rebuilt here (not an fd of a process it cannot
/// see, outside its pid namespace: `ns/handover.rs`; a unix socket of one of the table's
/// `pairs`).
pub fn takes(entry: &FdEntry, pairs: &Pairs, pid: i32) -> bool {
    match &entry.kind {
        FdKind::Unix(_) => pairs.get(entry.fd).is_some(),
        // A file of another mount namespace is opened by stasis there (`mnt/nested.rs`).
        FdKind::Path(_) | FdKind::OPath(_) | FdKind::CharDev(_) => {
            !crate::restore::mnt::nested::is_elsewhere(pid, entry.fd)
        }
        FdKind::Dup { .. } => true,
        FdKind::PipePeer { .. } => true,
        FdKind::Inherited { pid: owner, .. } => crate::restore::ns::pid::view(pid, *owner) != 0,
        FdKind::Pipe(p) => p.data.len() <= PIPE_DATA_MAX,
        _ => false,
    }
}

/// Bytes of the region `entry` needs beyond [`SLACK`] (a unix pair's messages: each
/// with its `msghdr`, `iovec` and credentials, 128 bytes at most).
fn data_len(at: &Install) -> u64 {
    match &at.entry.kind {
        FdKind::Pipe(p) => p.data.len() as u64,
        FdKind::Unix(_) => at.pairs.get(at.entry.fd).map_or(0, |p| {
            let queues = p.low.sock.queue.iter().chain(&p.high.sock.queue);
            queues.map(|m| m.data.len() as u64 + 128).sum()
        }),
        _ => 0,
    }
}

/// A `pipe2` or `socketpair` whose fds are checked after the batch.
struct PairCheck {
    call: &'static str,
    fds: Out<[i32; 2]>,
    predicted: [u64; 2],
    fd: i32,
}

/// The pending batch and the child's fd table as it will be once the batch ran.
pub struct Batcher<'s, 'a> {
    s: &'s mut Staged<'a>,
    /// `None` once an fd was made outside the batch: read again when needed.
    open: Option<Predicted>,
}

/// The numbers open in the child's table as predicted, and where the search for the
/// lowest free one starts.
struct Predicted {
    open: BTreeSet<u64>,
    /// Every number below it is in `open` (a table of thousands of fds would otherwise be
    /// walked from its first number at each `open`: quadratic in the table's size).
    low: u64,
}

impl Predicted {
    fn new(open: BTreeSet<u64>) -> Self {
        Predicted { open, low: 0 }
    }

    /// The number the kernel hands out next (the lowest free one at least `from`),
    /// marked taken.
    fn take(&mut self, from: u64) -> u64 {
        let open = &self.open;
        let fd = (from.max(self.low)..)
            .find(|n| !open.contains(n))
            .expect("a free fd");
        self.open.insert(fd);
        // Searched from `low`: every number from `low` to `fd` is open now.
        if from <= self.low {
            self.low = fd + 1;
        }
        fd
    }

    fn insert(&mut self, fd: u64) {
        self.open.insert(fd);
    }

    fn remove(&mut self, fd: u64) {
        self.open.remove(&fd);
        self.low = self.low.min(fd);
    }
}

impl<'s, 'a> Batcher<'s, 'a> {
    /// `open`: the fd table once the pending calls ran, if known.
    pub fn new(s: &'s mut Staged<'a>, open: Option<BTreeSet<u64>>) -> Self {
        Batcher {
            s,
            open: open.map(Predicted::new),
        }
    }

    /// Adds the calls that rebuild `at.entry` (one [`takes`]).
    pub fn add(&mut self, at: &Install) -> Result<(), RestoreError> {
        if self.s.room() < SLACK + data_len(at) {
            self.flush()?;
        }
        if self.open.is_none() {
            self.flush()?;
            self.open = Some(Predicted::new(open_fds(self.s.child().pid())?));
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
            FdKind::Unix(_) => self.unix_pair(at, &about),
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

    fn table(&mut self) -> &mut Predicted {
        self.open.as_mut().expect("read by add")
    }

    /// [`Predicted::take`].
    fn take(&mut self, from: u64) -> u64 {
        self.table().take(from)
    }

    fn close(&mut self, fd: u64, about: &str) {
        self.table().remove(fd);
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
        let (r, w) = self.make_pair(("pipe2", libc::SYS_pipe2), |fds| vec![fds, 0], at, about);
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

    /// `pipe2` or `socketpair` (`args` given where the kernel puts the two fds): the
    /// fds predicted for it, checked once the batch ran.
    fn make_pair(
        &mut self,
        (call, nr): (&'static str, i64),
        args: impl FnOnce(u64) -> Vec<u64>,
        at: &Install,
        about: &str,
    ) -> (u64, u64) {
        let fds = self.s.batch().out::<[i32; 2]>();
        let (a, b) = (self.take(0), self.take(0));
        self.s.batch().expect(call, nr, &args(fds.addr()), 0);
        self.s.batch().about(about);
        let check = PairCheck {
            call,
            fds,
            predicted: [a, b],
            fd: at.entry.fd,
        };
        let pid = self.s.child().pid();
        self.s.check(move |done| check_pair(done, &check, pid));
        (a, b)
    }

    /// `unix_pair.rs`: at the lower fd of the pair, `socketpair`, each queue sent by the
    /// other end, shutdowns, options, flags, both ends placed; nothing at the higher fd.
    fn unix_pair(&mut self, at: &Install, about: &str) {
        let pair = *at.pairs.get(at.entry.fd).expect("only pairs are taken");
        if pair.high.entry.fd == at.entry.fd {
            return;
        }
        let ty = pair.low.sock.sock_type as u64;
        let call = ("socketpair(AF_UNIX)", libc::SYS_socketpair);
        let args = |fds| vec![libc::AF_UNIX as u64, ty, 0, fds];
        let (lo, hi) = self.make_pair(call, args, at, about);
        let (low, high) = (pair.low, pair.high);
        let high_raised = self.fill(low, hi, about);
        let low_raised = self.fill(high, lo, about);
        self.finish_end(low, high, lo, high_raised, about);
        self.finish_end(high, low, hi, low_raised, about);
        // The high end first when it sits on the low end's number (it is then free).
        if hi == low.entry.fd as u64 {
            self.place_end(high, hi, about);
            self.place_end(low, lo, about);
        } else {
            self.place_end(low, lo, about);
            self.place_end(high, hi, about);
        }
    }

    /// The queue of `to` sent from `sender`, its buffer raised first when the queue
    /// might not fit; returns whether it was.
    fn fill(&mut self, to: End, sender: u64, about: &str) -> bool {
        let raise = unix_pair::needs_raise(&to.sock.queue);
        if raise {
            let big = (64i32 << 20).to_ne_bytes();
            self.setsockopt(
                sender,
                (libc::SOL_SOCKET, super::sockopts::raise_name(), &big),
                about,
            );
        }
        for m in &to.sock.queue {
            self.sendmsg(sender, m, unix_pair::creds(to.sock, m), about);
        }
        raise
    }

    /// `sendmsg` of one message, all of it, without blocking (`prep::send_msg`).
    fn sendmsg(&mut self, fd: u64, m: &UnixMessage, creds: Option<(i32, u32, u32)>, about: &str) {
        let batch = self.s.batch();
        let len = m.data.len() as u64;
        let base = batch.put(&m.data);
        let iov = batch.put(&[base.to_ne_bytes(), len.to_ne_bytes()].concat());
        let c = super::prep::control(creds, &[]);
        let (control, controllen) = match c.len() {
            0 => (0, 0),
            n => (batch.put(&c), n as u64),
        };
        let hdr: Vec<u8> = [0, 0, iov, 1, control, controllen, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let msg = batch.put(&hdr);
        let args = [fd, msg, libc::MSG_DONTWAIT as u64];
        batch.expect("sendmsg", libc::SYS_sendmsg, &args, len);
        batch.about(format!("{about} (queued bytes)"));
    }

    /// Shutdown, options and status flags of end `e` (peer `peer`), at `fd`.
    fn finish_end(&mut self, e: End, peer: End, fd: u64, raised: bool, about: &str) {
        if let Some(how) = unix_pair::shutdown_how(e.sock, peer.sock) {
            let batch = self.s.batch();
            batch.call("shutdown", libc::SYS_shutdown, &[fd, how as u64]);
            batch.about(about);
        }
        for (level, name, value) in unix_pair::option_calls(e.sock, raised) {
            self.setsockopt(fd, (level, name, &value), about);
        }
        if let Some(flags) = unix_pair::status_flags(e.entry) {
            let args = [fd, libc::F_SETFL as u64, flags as u64];
            let batch = self.s.batch();
            batch.call("fcntl(F_SETFL)", libc::SYS_fcntl, &args);
            batch.about(about);
        }
    }

    fn setsockopt(&mut self, fd: u64, (level, name, value): (i32, i32, &[u8]), about: &str) {
        let batch = self.s.batch();
        let addr = batch.put(value);
        let args = [fd, level as u64, name as u64, addr, value.len() as u64];
        batch.call("setsockopt", libc::SYS_setsockopt, &args);
        batch.about(about);
    }

    /// End `e`, made at `got`, moved to its number with its `FD_CLOEXEC`.
    fn place_end(&mut self, e: End, got: u64, about: &str) {
        let want = e.entry.fd as u64;
        let cloexec = if e.entry.cloexec { libc::O_CLOEXEC } else { 0 };
        if got != want {
            self.dup3(got, want, cloexec as u64, about);
            self.close(got, about);
        } else if e.entry.cloexec {
            let args = [want, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64];
            let batch = self.s.batch();
            batch.call("fcntl(F_SETFD)", libc::SYS_fcntl, &args);
            batch.about(about);
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

/// The pipe or pair got the fds predicted for it (the calls after it used them).
fn check_pair(done: &Done, p: &PairCheck, pid: i32) -> Result<(), RestoreError> {
    let got = done.get(p.fds).map(|fd| fd as u64);
    if got == p.predicted {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        what: format!(
            "fd {} of pid {pid}: {} returned fds {got:?}, not the predicted {:?}",
            p.fd, p.call, p.predicted
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lowest free number at least `from`, found the slow way.
    fn lowest_free(open: &BTreeSet<u64>, from: u64) -> u64 {
        (from..).find(|n| !open.contains(n)).expect("a free fd")
    }

    /// Regression: a `dup3` onto the number where the search starts (stderr a dup of
    /// stdout, made once 0 and 1 were opened) left `low` on an open number for good, and
    /// each later prediction walked every fd opened since (2,000 files: ~40 ms of CPU).
    #[test]
    fn low_advances_past_a_dup_onto_it() {
        let mut t = Predicted::new(BTreeSet::new());
        assert_eq!((t.take(0), t.take(0)), (0, 1));
        t.insert(2);
        assert_eq!(t.take(0), 3);
        assert_eq!(t.low, 4);
        assert_eq!(t.take(0), 4);
        assert_eq!(t.low, 5);
    }

    /// Fds open below the first free number when the table was read from `/proc`.
    #[test]
    fn low_advances_past_fds_open_before() {
        let mut t = Predicted::new([0, 1, 2, 5].into_iter().collect());
        assert_eq!(t.take(0), 3);
        assert_eq!(t.low, 4);
        assert_eq!(t.take(0), 4);
        assert_eq!(t.take(0), 6);
        assert_eq!(t.low, 7);
    }

    #[test]
    fn predictions_match_the_lowest_free_number() {
        let mut t = Predicted::new([0, 1, 2, 7, 9, 40].into_iter().collect());
        let mut naive = t.open.clone();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 5 {
                0 if !naive.is_empty() => {
                    let fd = *naive
                        .iter()
                        .nth((x >> 8) as usize % naive.len())
                        .expect("in");
                    naive.remove(&fd);
                    t.remove(fd);
                }
                1 => {
                    let fd = (x >> 8) % 64;
                    naive.insert(fd);
                    t.insert(fd);
                }
                _ => {
                    let from = if x % 7 == 0 { (x >> 8) % 64 } else { 0 };
                    let want = lowest_free(&naive, from);
                    naive.insert(want);
                    assert_eq!(t.take(from), want);
                }
            }
            assert!((0..t.low).all(|n| t.open.contains(&n)));
        }
        assert_eq!(t.open, naive);
    }
}
