//! Shared harness for the integration tests: building victims, spawning them under the
//! victim contract, running `stasis`, and reaping every process a test creates.
//!
//! It owns process bookkeeping for the tests; it does not know the image format beyond
//! the file names the CLI documents (`inventory.img`, `pages-PID.img`, ...).
//!
//! Rules every test follows (see docs/testing.md):
//! - hold [`serial()`] for the whole scenario: cargo runs tests as threads of one
//!   process, and ptrace, PID reuse and restoring into a fixed PID do not mix;
//! - the test process is a child subreaper (PID 1 on the CI machine never reaps
//!   orphans), so tasks restored with `-d` become our children: reap them by PID
//!   ([`Proc`] does it on drop), never with `wait(-1)`;
//! - privileged tests start with [`require_privileged!`], which prints
//!   `SKIP <test>: <why>` and returns when the machine cannot run them.
//!
//! # Safety
//! This is the only test code with `unsafe`: thin libc calls (prctl, kill, waitpid,
//! geteuid, setsid/close_range between fork and exec) on plain integers and valid
//! out-pointers. Test files call the safe wrappers here.
#![allow(dead_code)] // each test binary uses a different part of the harness
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const STASIS: &str = env!("CARGO_BIN_EXE_stasis");

/// How long a victim may take to print READY (the 512 MiB one fills its memory first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one `stasis` invocation.
pub const STASIS_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a victim may take to verify and exit after the go signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Victims in tests/victims/, with the extra gcc flags each needs.
/// (regs.c enables AVX-512 per function with a target attribute, so that the rest of
/// the program, including its CPU check, runs on any x86_64.)
const VICTIMS: &[(&str, &[&str])] = &[
    ("memory", &[]),
    ("pivot_child", &[]),
    ("regs", &[]),
    ("signals", &[]),
    ("syscalls", &[]),
    ("files", &[]),
    ("procattrs", &[]),
    ("threads", &["-pthread"]),
    ("cgroups", &["-pthread"]),
    ("timers", &[]),
    ("sched", &[]),
    ("prctl", &[]),
    ("creds", &["-pthread"]),
    ("unix_peercred", &["-pthread"]),
    ("mmflags", &[]),
    ("file_prot", &[]),
    ("many_maps", &[]),
    ("no_vdso", &[]),
    ("aio", &[]),
    ("shmem_pieces", &[]),
    ("seccomp", &["-pthread"]),
    ("loginuid", &[]),
    ("guards", &[]),
    ("tree", &[]),
    ("stopped", &["-pthread"]),
    ("group_helper", &[]),
    ("sessions", &[]),
    ("shared_vm", &[]),
    ("cow", &[]),
    ("unlinked_maps", &[]),
    ("private_maps", &[]),
    ("hugetlb", &[]),
    ("unix_sockets", &[]),
    ("inflight", &[]),
    ("inflight_epoll", &[]),
    ("unix_layouts", &[]),
    ("unix_many", &[]),
    ("unix_senders", &[]),
    ("packet_sockets", &[]),
    ("netlink_sockets", &[]),
    ("fanotify", &[]),
    ("inet_sockets", &[]),
    ("sockopts", &[]),
    ("pty", &[]),
    ("ctty", &[]),
    ("pty_hangup", &[]),
    ("devpts_pty", &[]),
    ("split", &[]),
    ("tcp_echo", &[]),
    ("tcp_states", &[]),
    ("netns", &[]),
    ("netlinks", &[]),
    ("tun", &[]),
    ("netns_sockets", &[]),
    ("netns_cross", &[]),
    ("pipes", &[]),
    ("zero_pages", &[]),
    ("migrate_writer", &[]),
    ("anonfds", &[]),
    ("epoll_moved", &[]),
    ("inotify", &[]),
    ("memfd", &[]),
    ("sysv", &[]),
    ("mqueue", &[]),
    ("ghost", &[]),
    ("ghost_holes", &[]),
    ("ghost_kinds", &[]),
    ("locks", &[]),
    ("fown", &["-pthread"]),
    ("unix_unlinked", &[]),
    ("leases", &[]),
    ("pidfd_dead", &[]),
    ("chrooted", &[]),
    ("proc_files", &[]),
    ("unsupported", &[]),
    ("tracked", &[]),
    ("tracked_writer", &["-pthread"]),
    ("heap_grow", &[]),
    ("churn", &[]),
    ("lazy_mem", &[]),
];

// ---------------------------------------------------------------------------------------
// Serialization and the subreaper

static SERIAL: Mutex<()> = Mutex::new(());

/// Take the scenario lock (and make this process a subreaper, once).
/// A test that panicked while holding it does not poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    become_subreaper();
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer argument and touches
        // no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(
            r,
            0,
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    });
}

// ---------------------------------------------------------------------------------------
// Skips

/// `Ok` when this machine can run dump/restore tests, else why not.
pub fn privileged() -> Result<(), String> {
    static CACHE: OnceLock<Result<(), String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            if euid() != 0 {
                return Err(format!("needs root (euid is {})", euid()));
            }
            let out = stasis(&["check"]);
            if out.code() != Some(0) {
                let missing: Vec<&str> = out
                    .stdout
                    .lines()
                    .filter(|l| l.starts_with("MISSING"))
                    .collect();
                return Err(format!(
                    "`stasis check` exited with {:?}: {}{}",
                    out.code(),
                    missing.join("; "),
                    out.stderr.trim()
                ));
            }
            Ok(())
        })
        .clone()
}

pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no arguments.
    unsafe { libc::geteuid() }
}

pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
}

/// Return from the calling test with a `SKIP` line unless it can dump and restore here.
#[macro_export]
macro_rules! require_privileged {
    ($test:expr) => {
        if let Err(why) = $crate::common::privileged() {
            $crate::common::skip($test, &why);
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------
// Temporary directories

/// A directory removed on drop, unless the test is failing (then its path is printed,
/// so the images and logs can be looked at).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stasis-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Victims

/// Path of a compiled victim. All victims are compiled once per test binary.
pub fn victim_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<HashMap<&'static str, Result<PathBuf, String>>> = OnceLock::new();
    let built = BUILT.get_or_init(build_victims);
    match built.get(name) {
        Some(Ok(path)) => path.clone(),
        Some(Err(e)) => panic!("victim {name} did not compile:\n{e}"),
        None => panic!("no victim named {name} in tests/victims"),
    }
}

fn build_victims() -> HashMap<&'static str, Result<PathBuf, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/victims");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("victims");
    fs::create_dir_all(&out).expect("create the victims build directory");
    let pid = std::process::id();
    VICTIMS
        .iter()
        .map(|&(name, flags)| {
            // Build under a private name, then rename: another test binary may be
            // running the previous build.
            let (tmp, bin) = (out.join(format!("{name}.{pid}")), out.join(name));
            let mut gcc = Command::new("gcc");
            gcc.args(["-O1", "-g", "-Wall", "-o"])
                .arg(&tmp)
                .arg(src.join(format!("{name}.c")));
            gcc.args(flags);
            let res = match gcc.output() {
                Ok(o) if o.status.success() => fs::rename(&tmp, &bin)
                    .map(|()| bin)
                    .map_err(|e| format!("rename {}: {e}", tmp.display())),
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Err(format!("cannot run gcc: {e}")),
            };
            (name, res)
        })
        .collect()
}

/// What a victim said after starting.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Ready,
    /// The victim cannot test its feature here; the reason it printed.
    Skip(String),
}

/// A process this test created (or that was restored into our care), reaped by PID.
pub struct Proc {
    pub pid: i32,
    pub log: PathBuf,
    reaped: bool,
}

/// Spawn `cmd` the way victims run: own session (`setsid`), stdin `/dev/null`, stdout
/// and stderr appended to `log`, no other inherited fds.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Proc {
    spawn_with(cmd, log, true)
}

/// Spawn victim `name` with `args`, cwd `dir`, log `dir/<name>.log`.
pub fn spawn_victim(name: &str, args: &[&str], dir: &Path) -> Proc {
    spawn_with(
        &mut victim_cmd(name, args, dir),
        &dir.join(format!("{name}.log")),
        true,
    )
}

/// Like [`spawn_victim`], but the victim stays in the test's session (which stasis
/// must refuse to dump without `--shell-job`).
pub fn spawn_victim_in_our_session(name: &str, args: &[&str], dir: &Path) -> Proc {
    spawn_with(
        &mut victim_cmd(name, args, dir),
        &dir.join(format!("{name}.log")),
        false,
    )
}

/// Like [`spawn_victim`], run through `wrapper` (a command that execs the victim in
/// place, such as `unshare --uts`: the victim keeps the wrapper's pid).
pub fn spawn_victim_under(wrapper: &[&str], name: &str, args: &[&str], dir: &Path) -> Proc {
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..])
        .arg(victim_bin(name))
        .args(args)
        .current_dir(dir);
    spawn_with(&mut cmd, &dir.join(format!("{name}.log")), true)
}

fn victim_cmd(name: &str, args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(victim_bin(name));
    cmd.args(args).current_dir(dir);
    cmd
}

fn spawn_with(cmd: &mut Command, log: &Path, own_session: bool) -> Proc {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let err = out.try_clone().expect("dup the log fd");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: the closure only makes async-signal-safe syscalls (setsid, close_range)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if own_session && libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            libc::close_range(3, libc::c_uint::MAX, 0);
            Ok(())
        });
    }
    // Reaped by pid through the returned Proc, not through `Child`.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Proc::adopt(child.id() as i32, log)
}

impl Proc {
    /// Take responsibility for reaping `pid`, a child of ours (or about to become one).
    pub fn adopt(pid: i32, log: &Path) -> Proc {
        Proc {
            pid,
            log: log.to_path_buf(),
            reaped: false,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for READY (or SKIP) in the log.
    pub fn wait_ready(&mut self) -> Start {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log_text();
            if log.lines().any(|l| l == "READY") {
                return Start::Ready;
            }
            if let Some(l) = log.lines().find(|l| l.starts_with("SKIP")) {
                let why = l
                    .trim_start_matches("SKIP")
                    .trim_start_matches(':')
                    .trim()
                    .to_string();
                self.wait_exit(EXIT_TIMEOUT);
                return Start::Skip(why);
            }
            if let Some(status) = self.try_reap() {
                panic!(
                    "pid {} exited with {status:?} before READY; log:\n{log}",
                    self.pid
                );
            }
            assert!(
                Instant::now() < deadline,
                "pid {} not READY after {READY_TIMEOUT:?}; log:\n{log}",
                self.pid
            );
            sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        kill(self.pid, sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", self.pid));
    }

    /// Non-blocking reap: `Some(status)` once the process has ended.
    pub fn try_reap(&mut self) -> Option<Status> {
        assert!(!self.reaped, "pid {} was reaped already", self.pid);
        let mut st = 0;
        // SAFETY: waitpid on one specific pid; st is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG | libc::__WALL) };
        match r {
            0 => None,
            r if r == self.pid => {
                self.reaped = true;
                Some(Status::from_raw(st))
            }
            _ => panic!(
                "waitpid({}): {} (not our child?)",
                self.pid,
                io::Error::last_os_error()
            ),
        }
    }

    /// Reap, waiting at most `timeout` (then panic with the log).
    pub fn wait_exit(&mut self, timeout: Duration) -> Status {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_reap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} still running after {timeout:?}; log:\n{}",
                self.pid,
                self.log_text()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// Send the go signal and wait for the victim's verdict. SIGUSR1 is repeated every
    /// second (victims treat it as level-triggered) in case the first one raced pause().
    pub fn go(&mut self) -> Status {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                // A failure means it has just exited: try_reap below sees it.
                let _ = kill(self.pid, libc::SIGUSR1);
                next += Duration::from_secs(1);
            }
            if let Some(st) = self.try_reap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} did not finish after go; log:\n{}",
                self.pid,
                self.log_text()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// `go()` and assert the victim passed: exit 0 and PASS as its last line.
    pub fn go_and_expect_pass(&mut self) {
        let st = self.go();
        self.assert_passed(st);
    }

    pub fn assert_passed(&self, st: Status) {
        let log = self.log_text();
        assert_eq!(
            st,
            Status::Exited(0),
            "victim pid {} did not pass; log:\n{log}",
            self.pid
        );
        assert_eq!(
            log.lines().last(),
            Some("PASS"),
            "victim log does not end with PASS:\n{log}"
        );
        let readies = log.lines().filter(|l| *l == "READY").count();
        assert_eq!(
            readies, 1,
            "victim printed READY {readies} times (started over?):\n{log}"
        );
    }

    pub fn alive(&self) -> bool {
        !self.reaped && proc_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// Mark as reaped by someone else (e.g. `stasis restore` reaped its own child).
    pub fn forget(mut self) {
        self.reaped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: kill/waitpid on our own child's pid; st is a valid out-pointer.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, libc::__WALL);
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    fn from_raw(st: i32) -> Status {
        if libc::WIFEXITED(st) {
            Status::Exited(libc::WEXITSTATUS(st))
        } else {
            Status::Signaled(libc::WTERMSIG(st))
        }
    }
}

/// `kill(2)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    match unsafe { libc::kill(pid, sig) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A pidfd of any process (not only a child), to learn how it ended.
pub struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// `pidfd_open(2)` of `pid`.
    pub fn open(pid: i32) -> io::Result<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain integers in; a new fd out, owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this fd; nothing else owns it.
        Ok(PidFd(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    /// How the process ended, once it has been reaped (`PIDFD_GET_INFO` with
    /// `PIDFD_INFO_EXIT`, Linux 6.15); `Err` with `ENOTTY`/`EINVAL` on older kernels and
    /// `ESRCH` while it is not reaped yet.
    pub fn exit_status(&self) -> io::Result<Status> {
        use std::os::fd::AsRawFd;
        /// `struct pidfd_info` as of Linux 6.15 (`PIDFD_INFO_SIZE_VER0`, 64 bytes).
        #[repr(C)]
        #[derive(Default)]
        struct PidfdInfo {
            mask: u64,
            cgroupid: u64,
            ids: [u32; 11],
            exit_code: i32,
            _spare: [u32; 2],
        }
        const PIDFD_INFO_EXIT: u64 = 1 << 3;
        // _IOWR(0xFF, 11, struct pidfd_info)
        const PIDFD_GET_INFO: u64 = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..Default::default()
        };
        // SAFETY: the ioctl writes at most size_of::<PidfdInfo>() (64, encoded in the
        // request) bytes into `info`, which lives across the call.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if info.mask & PIDFD_INFO_EXIT == 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let st = info.exit_code;
        Ok(if libc::WIFSIGNALED(st) {
            Status::Signaled(libc::WTERMSIG(st))
        } else {
            Status::Exited(libc::WEXITSTATUS(st))
        })
    }
}

// ---------------------------------------------------------------------------------------
// /proc helpers

/// The state letter from /proc/PID/stat (`R`, `S`, `T`, `t`, `Z`...), None if gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Field 22 of /proc/PID/stat: start time in clock ticks (tells a PID's processes apart).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// A `Name:`-style field of /proc/PID/status.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

/// The `NSpid` line of `/proc/PID/status`: the pid in each namespace, outermost first.
pub fn nspids(pid: i32) -> Vec<i32> {
    status_field(pid, "NSpid")
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread ids of `pid` (`/proc/PID/task`), sorted.
pub fn thread_ids(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// Number of processes whose comm is `comm`.
pub fn count_comm(comm: &str) -> usize {
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .count()
}

/// Assert `pid` runs freely: alive, not traced, not stopped (after a failed dump).
pub fn assert_untouched(victim: &Proc) {
    let pid = victim.pid;
    assert!(
        victim.alive(),
        "pid {pid} died; log:\n{}",
        victim.log_text()
    );
    assert_eq!(
        status_field(pid, "TracerPid").as_deref(),
        Some("0"),
        "pid {pid} is still traced"
    );
    let state = proc_state(pid);
    assert!(
        matches!(state, Some('R' | 'S' | 'D')),
        "pid {pid} is in state {state:?}"
    );
}

/// Every `inventory.img` below `dir` (a complete-looking image).
pub fn find_inventories(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if e.file_name() == "inventory.img" {
                found.push(p);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Running stasis

/// The result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Assert exit 0, printing everything otherwise.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Assert a failed operation: exit 1, one `stasis: ...` line on stderr. Returns it.
    pub fn assert_failed(&self, what: &str) -> &str {
        assert_eq!(
            self.code(),
            Some(1),
            "{what}: expected exit 1, got {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with("stasis: "),
            "{what}: stderr does not start with \"stasis: \": {line:?}"
        );
        line
    }
}

/// A command running in the background, its output going to files (not pipes: a restored
/// task must not be able to keep our reader blocked).
pub struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    done: bool,
}

static OUT_N: AtomicUsize = AtomicUsize::new(0);

pub fn start(cmd: &mut Command) -> Running {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("output");
    fs::create_dir_all(&dir).expect("create the output directory");
    let n = format!(
        "{}-{}",
        std::process::id(),
        OUT_N.fetch_add(1, Ordering::Relaxed)
    );
    let (out, err) = (dir.join(format!("{n}.out")), dir.join(format!("{n}.err")));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"));
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Running {
        child,
        out,
        err,
        done: false,
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn try_finish(&mut self) -> Option<Output> {
        let status = self.child.try_wait().expect("try_wait")?;
        self.done = true;
        let read = |p: &Path| {
            let s = fs::read_to_string(p).unwrap_or_default();
            let _ = fs::remove_file(p);
            s
        };
        Some(Output {
            status,
            stdout: read(&self.out),
            stderr: read(&self.err),
        })
    }

    /// Wait for the exit, SIGKILLing it after `timeout` (and panicking).
    pub fn finish(&mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(out) = self.try_finish() {
                return out;
            }
            if Instant::now() >= deadline {
                self.kill();
                let out = self.finish(Duration::from_secs(10));
                panic!(
                    "{:?} still running after {timeout:?}, killed; stderr:\n{}",
                    self.child, out.stderr
                );
            }
            sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn stasis_cmd<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(STASIS);
    cmd.args(args);
    cmd
}

/// Run `stasis ARGS` to completion (bounded by [`STASIS_TIMEOUT`]).
pub fn stasis<S: AsRef<OsStr>>(args: &[S]) -> Output {
    start(&mut stasis_cmd(args)).finish(STASIS_TIMEOUT)
}

/// `stasis ARGS` run without capability `cap` (e.g. `"sys_admin"`): `setpriv` drops it
/// from the bounding set, so the exec of stasis (as root) does not get it back. `Err` says
/// why this cannot run here (no setpriv).
pub fn stasis_without_cap<S: AsRef<OsStr>>(cap: &str, args: &[S]) -> Result<Output, String> {
    if !Path::new("/usr/bin/setpriv").exists() {
        return Err("needs setpriv (util-linux) to drop a capability".into());
    }
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.arg("--bounding-set")
        .arg(format!("-{cap}"))
        .arg(STASIS)
        .args(args);
    Ok(start(&mut cmd).finish(STASIS_TIMEOUT))
}

/// `stasis dump -t PID -D DIR EXTRA...`, not started.
pub fn dump_cmd(pid: i32, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(STASIS);
    cmd.arg("dump")
        .arg("-t")
        .arg(pid.to_string())
        .arg("-D")
        .arg(dir)
        .args(extra);
    cmd
}

/// `stasis dump -t PID -D DIR EXTRA...`, run to its end.
///
/// A dump refused because a thread of the tree waits in `vfork` (a shell script starting
/// a command at that moment) is run again for up to [`VFORK_RETRY`], as a user would: the
/// refusal left the tree running. The last output is returned.
pub fn dump(pid: i32, dir: &Path, extra: &[&str]) -> Output {
    let deadline = Instant::now() + VFORK_RETRY;
    loop {
        let out = start(&mut dump_cmd(pid, dir, extra)).finish(STASIS_TIMEOUT);
        if out.status.success()
            || !out.stderr.contains("waits in vfork")
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long a dump refused for a `vfork` in progress is retried ([`dump`]).
pub const VFORK_RETRY: Duration = Duration::from_secs(3);

/// `stasis restore -D DIR -d --pidfile DIR.pid`: Ok(pid from the pidfile) or the output.
pub fn restore_detached(dir: &Path) -> Result<i32, Output> {
    restore_detached_with(dir, &[])
}

/// [`restore_detached`] with `extra` arguments.
pub fn restore_detached_with(dir: &Path, extra: &[&str]) -> Result<i32, Output> {
    let pidfile = dir.with_extension("pid");
    let _ = fs::remove_file(&pidfile);
    let mut args = vec![
        OsStr::new("restore"),
        "-D".as_ref(),
        dir.as_os_str(),
        "-d".as_ref(),
        "--pidfile".as_ref(),
        pidfile.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let out = stasis(&args);
    if !out.status.success() {
        return Err(out);
    }
    let text = fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("restore succeeded but {}: {e}", pidfile.display()));
    Ok(text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pidfile holds {text:?}")))
}

/// Whether `pid` looks fully restored by the attached `stasis restore` (pid `parent`):
/// its child, untraced, with a SIGUSR1 handler installed (so the go signal cannot kill it).
pub fn restored_under(pid: i32, parent: i32) -> bool {
    let field = |f| status_field(pid, f);
    let sigcgt = field("SigCgt")
        .and_then(|m| u64::from_str_radix(&m, 16).ok())
        .unwrap_or(0);
    field("PPid") == Some(parent.to_string())
        && field("TracerPid").as_deref() == Some("0")
        && sigcgt & (1 << (libc::SIGUSR1 - 1)) != 0
        && matches!(proc_state(pid), Some('R' | 'S'))
}

/// Every descendant of `pid`, found through the parent links in /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let table: Vec<(i32, i32)> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| Some((p, parent_of(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, _) in table.iter().filter(|&&(_, pp)| pp == p) {
            out.push(child);
            frontier.push(child);
        }
    }
    out
}

/// The parent pid of `pid` (field 4 of /proc/PID/stat).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Kills `pids` (if `kill`) and reaps each once it is our child (an orphan reparented to
/// us, the subreaper), waiting up to 10 s for each to be gone.
pub fn reap_all(pids: &[i32], kill_them: bool) {
    for &pid in pids {
        if kill_them {
            let _ = kill(pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            let mut st = 0;
            // SAFETY: waitpid on one pid with a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
            sleep_ms(2);
        }
    }
}

/// Reaps every process of the tree in image `img` but the root (orphans of a killing
/// dump are reparented to us, the subreaper).
pub fn reap_image_tree(img: &Path) {
    let image = stasis::image::Image::load_metadata(img).expect("load the dumped image");
    let pids: Vec<i32> = image.tree.processes[1..].iter().map(|p| p.pid).collect();
    reap_all(&pids, false);
}

/// Kills and reaps a victim's descendants when dropped (a failed test leaves none).
pub struct TreeGuard(pub Vec<i32>);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        reap_all(&self.0, true);
    }
}

pub fn sleep_ms(ms: u64) {
    sleep(Duration::from_millis(ms));
}

/// Whether `tool` is on PATH.
pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Poll `f` every 20 ms until it returns Some, or panic after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep_ms(20);
    }
}

/// Waits up to `secs` for `path` to exist with some content.
pub fn wait_nonempty(path: &Path, secs: u64) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        sleep_ms(20);
    }
    false
}

/// Tells a restored script tree to go on (`go` in `dir`) and returns its answer
/// (`dir/result`, within 20 s).
pub fn go_and_answer(dir: &Path) -> String {
    std::fs::write(dir.join("go"), "").expect("go");
    assert!(
        wait_nonempty(&dir.join("result"), 20),
        "the restored tree never answered"
    );
    std::fs::read_to_string(dir.join("result")).expect("result")
}
