//! Reading a live process through `/proc`.
//!
//! This module owns the text formats of `/proc/PID/{smaps,maps,stat,status,fdinfo/N,auxv,timers}`
//! and the small files and links next to them (`comm`, `personality`, `oom_score_adj`, `fd/`, `task/`, `cwd`,
//! `root`, `exe`). Each format has a pure parser in its own submodule, tested on text captured
//! from a real kernel; the readers here only read the file, call the parser and attach the
//! path to any error.
//!
//! It does not interpret what it reads (whether a mapping is dumpable, what an fd points at):
//! that is `dump`'s job. It holds no unsafe code and never stops or traces the process.
//!
//! Text is decoded lossily: a mapped file whose name is not UTF-8 comes back with U+FFFD in
//! its path.

pub mod auxv;
pub mod cgroup;
pub mod fdinfo;
pub mod fdkinds;
pub mod limits;
pub mod maps;
pub mod mountinfo;
pub mod netsock;
pub mod stat;
pub mod status;
pub mod sysctl;
pub mod sysvipc;
pub mod timers;

pub use fdinfo::FdInfo;
pub use maps::{MapEntry, MapPath};
pub use stat::Stat;
pub use status::Status;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, FileStat, Mode};

/// A failure to read or understand a `/proc` file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file or directory could not be read (the process may have exited).
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text did not have the expected shape. `line` is 1-based; 0 means the file as a
    /// whole (e.g. a required key is missing). Pure parsers name the format (`"smaps"`);
    /// the readers replace that with the full path.
    #[error("parse {path} line {line}: {what}")]
    Parse {
        path: String,
        line: usize,
        what: String,
    },
}

/// Builds a [`ProcError::Parse`]; used by the pure parsers.
pub(crate) fn parse_error(format: &str, line: usize, what: impl Into<String>) -> ProcError {
    ProcError::Parse {
        path: format.to_string(),
        line,
        what: what.into(),
    }
}

/// `/proc/PID/smaps`: every mapping with its `VmFlags` and `Rss`.
pub fn smaps(pid: i32) -> Result<Vec<MapEntry>, ProcError> {
    parse_listing(pid, "smaps", maps::parse_smaps)
}

/// `/proc/PID/maps`: every mapping; `vm_flags` is empty and `rss_kb` is 0.
pub fn maps(pid: i32) -> Result<Vec<MapEntry>, ProcError> {
    parse_listing(pid, "maps", maps::parse_maps)
}

/// `/proc/PID/stat`.
pub fn stat(pid: i32) -> Result<Stat, ProcError> {
    parse_file(pid, "stat", stat::parse_stat)
}

/// `/proc/PID/task/TID/stat`: one thread's state.
pub fn thread_stat(pid: i32, tid: i32) -> Result<Stat, ProcError> {
    parse_file(pid, &format!("task/{tid}/stat"), stat::parse_stat)
}

/// `/proc/PID/limits`: `(soft, hard)` per `RLIMIT_*`.
pub fn limits(pid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    parse_file(pid, "limits", limits::parse_limits)
}

/// `/proc/PID/status`.
pub fn status(pid: i32) -> Result<Status, ProcError> {
    parse_file(pid, "status", status::parse_status)
}

/// `/proc/PID/task/TID/status`: one thread's credentials and state.
pub fn thread_status(pid: i32, tid: i32) -> Result<Status, ProcError> {
    parse_file(pid, &format!("task/{tid}/status"), status::parse_status)
}

/// `/proc/PID/timers`: the POSIX timers.
pub fn timers(pid: i32) -> Result<Vec<timers::ProcTimer>, ProcError> {
    parse_listing(pid, "timers", timers::parse_timers)
}

/// `/proc/PID/oom_score_adj`.
pub fn oom_score_adj(pid: i32) -> Result<i32, ProcError> {
    number(pid, "oom_score_adj")
}

/// `/proc/PID/NAME` for the audit ids `loginuid` and `sessionid` (`task/TID/loginuid` for
/// one thread); `None` when the kernel has no audit support (the file is absent).
pub fn audit_id(pid: i32, name: &str) -> Result<Option<u32>, ProcError> {
    match number(pid, name) {
        Err(ProcError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// `/proc/PID/NAME` holding one decimal number.
fn number<T: std::str::FromStr>(pid: i32, name: &str) -> Result<T, ProcError>
where
    T::Err: std::fmt::Display,
{
    let path = proc_path(pid, name);
    let text = read_text(&path)?;
    text.trim().parse().map_err(|e| ProcError::Parse {
        path: path.display().to_string(),
        line: 1,
        what: format!("{name} {:?}: {e}", text.trim()),
    })
}

/// `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    parse_file(pid, &format!("fdinfo/{fd}"), fdinfo::parse_fdinfo)
}

/// The fd table of one process through `/proc/PID/fd` and `/proc/PID/fdinfo`, both
/// directories opened once: each fd then costs the lookup of its number only, not a walk
/// of the whole path (which checks access to the process again at every use).
pub struct FdDir {
    pid: i32,
    links: OwnedFd,
    infos: OwnedFd,
}

impl FdDir {
    /// Opens `/proc/PID/fd` and `/proc/PID/fdinfo`.
    pub fn open(pid: i32) -> Result<FdDir, ProcError> {
        let dir = |name: &str| {
            let path = proc_path(pid, name);
            std::fs::File::open(&path)
                .map(OwnedFd::from)
                .map_err(|source| ProcError::Read { path, source })
        };
        Ok(FdDir {
            pid,
            links: dir("fd")?,
            infos: dir("fdinfo")?,
        })
    }

    /// The process whose fd table this is.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// How many fds are open: the size `stat` gives `/proc/PID/fd` (Linux 6.2 and
    /// later; 0 before, or when it cannot be read).
    pub fn count(&self) -> usize {
        nix::sys::stat::fstat(&self.links).map_or(0, |s| s.st_size.max(0) as usize)
    }

    /// `readlink /proc/PID/fd/FD`.
    pub fn link(&self, fd: i32) -> Result<PathBuf, ProcError> {
        nix::fcntl::readlinkat(&self.links, fd.to_string().as_str())
            .map(PathBuf::from)
            .map_err(|e| self.link_error(fd, e))
    }

    /// `stat /proc/PID/fd/FD`: the open file itself, through the magic link.
    pub fn stat(&self, fd: i32) -> Result<FileStat, ProcError> {
        fstatat(&self.links, fd.to_string().as_str(), AtFlags::empty())
            .map_err(|e| self.link_error(fd, e))
    }

    fn link_error(&self, fd: i32, e: nix::errno::Errno) -> ProcError {
        ProcError::Read {
            path: proc_path(self.pid, &format!("fd/{fd}")),
            source: e.into(),
        }
    }

    /// `/proc/PID/fdinfo/FD`.
    pub fn info(&self, fd: i32) -> Result<FdInfo, ProcError> {
        use nix::fcntl::OFlag;
        let path = || proc_path(self.pid, &format!("fdinfo/{fd}"));
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let file = nix::fcntl::openat(&self.infos, fd.to_string().as_str(), flags, Mode::empty())
            .map_err(|e| ProcError::Read {
            path: path(),
            source: e.into(),
        })?;
        let text = read_open(file.into(), &path(), Shape::Record)?;
        fdinfo::parse_fdinfo(&text).map_err(|e| with_path(e, &path()))
    }
}

/// The open descriptors of `pid`: the entries of `/proc/PID/fd`, sorted.
pub fn fds(pid: i32) -> Result<Vec<i32>, ProcError> {
    numbered_entries(&proc_path(pid, "fd"))
}

/// Every process (thread-group leader) in the pid namespace of `/proc`, sorted. Entries
/// that are not numbers (`self`, `sys`...) are skipped.
pub fn pids() -> Result<Vec<i32>, ProcError> {
    let dir = Path::new("/proc");
    let read_err = |source| ProcError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name();
        pids.extend(name.to_str().and_then(|n| n.parse::<i32>().ok()));
    }
    pids.sort_unstable();
    Ok(pids)
}

/// The threads of `pid`: the entries of `/proc/PID/task`, sorted.
pub fn tids(pid: i32) -> Result<Vec<i32>, ProcError> {
    numbered_entries(&proc_path(pid, "task"))
}

/// `/proc/PID/auxv` as native-endian words, through the `AT_NULL` pair.
pub fn auxv(pid: i32) -> Result<Vec<u64>, ProcError> {
    let path = proc_path(pid, "auxv");
    // One read of the whole vector (a few hundred bytes; `fs::read` grows its buffer
    // from the size `/proc` reports, 0, over six reads).
    let mut bytes = Vec::with_capacity(AUXV_BUF);
    let read = std::fs::File::open(&path).and_then(|mut f| {
        use std::io::Read;
        f.read_to_end(&mut bytes)
    });
    read.map_err(|source| ProcError::Read { path, source })?;
    Ok(auxv::parse_auxv(&bytes))
}

/// Room for a whole auxiliary vector: the kernel's is at most 2 × 64 words (`AT_VECTOR_SIZE`
/// is below that on every architecture).
const AUXV_BUF: usize = 1024;

/// `/proc/PID/comm` without its trailing newline.
pub fn comm(pid: i32) -> Result<String, ProcError> {
    let text = read_text(&proc_path(pid, "comm"))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// `/proc/PID/task/TID/comm` without its trailing newline: one thread's name.
pub fn thread_comm(pid: i32, tid: i32) -> Result<String, ProcError> {
    let text = read_text(&proc_path(pid, &format!("task/{tid}/comm")))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// `/proc/PID/task/TID/syscall`: the syscall number and first argument the thread is
/// blocked in, or `None` if it is running or blocked outside a syscall.
pub fn thread_syscall(pid: i32, tid: i32) -> Result<Option<(i64, u64)>, ProcError> {
    parse_file(pid, &format!("task/{tid}/syscall"), parse_syscall)
}

/// Parses `/proc/PID/syscall`: `running`, `-1 SP PC` (blocked outside a syscall), or
/// `NR ARG1..ARG6 SP PC` with NR in decimal and the rest in hex.
pub fn parse_syscall(text: &str) -> Result<Option<(i64, u64)>, ProcError> {
    let bad = |what: &str| parse_error("syscall", 1, format!("{what} in {:?}", text.trim()));
    let mut words = text.split_whitespace();
    let first = words.next().ok_or_else(|| bad("no field"))?;
    if first == "running" {
        return Ok(None);
    }
    let nr: i64 = first.parse().map_err(|_| bad("bad syscall number"))?;
    if nr < 0 {
        return Ok(None);
    }
    let arg = words.next().ok_or_else(|| bad("no first argument"))?;
    let hex = arg
        .strip_prefix("0x")
        .ok_or_else(|| bad("argument not in hex"))?;
    let arg = u64::from_str_radix(hex, 16).map_err(|_| bad("bad argument"))?;
    Ok(Some((nr, arg)))
}

/// `/proc/PID/personality`: the `personality(2)` word, written by the kernel in hex.
pub fn personality(pid: i32) -> Result<u32, ProcError> {
    let path = proc_path(pid, "personality");
    let text = read_text(&path)?;
    u32::from_str_radix(text.trim(), 16).map_err(|e| ProcError::Parse {
        path: path.display().to_string(),
        line: 1,
        what: format!("personality {:?}: {e}", text.trim()),
    })
}

/// `readlink /proc/PID/<name>`, e.g. `cwd`, `root`, `exe` or `fd/3`.
pub fn link(pid: i32, name: &str) -> Result<PathBuf, ProcError> {
    let path = proc_path(pid, name);
    std::fs::read_link(&path).map_err(|source| ProcError::Read { path, source })
}

fn proc_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads the one-record file `/proc/PID/<name>` and runs `parse` on it, naming the file
/// in any parse error.
fn parse_file<T>(
    pid: i32,
    name: &str,
    parse: fn(&str) -> Result<T, ProcError>,
) -> Result<T, ProcError> {
    let path = proc_path(pid, name);
    let text = read_text(&path)?;
    parse(&text).map_err(|e| with_path(e, &path))
}

/// [`parse_file`] for a file of many records (`maps`, `smaps`, `timers`).
fn parse_listing<T>(
    pid: i32,
    name: &str,
    parse: fn(&str) -> Result<T, ProcError>,
) -> Result<T, ProcError> {
    let path = proc_path(pid, name);
    let text = read_proc(&path, Shape::Listing)?;
    parse(&text).map_err(|e| with_path(e, &path))
}

/// How a /proc file is produced, which tells when a read has seen all of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One record (`stat`, `status`, `fdinfo/N`, `comm`...: the kernel's `single_open`
    /// or a plain buffer): a read that does not fill the buffer returned all of it.
    Record,
    /// Many records (`maps`...): a read returns whole records only, so a short read may
    /// be followed by more; the end is a read of 0.
    Listing,
}

/// Reads a whole one-record /proc file (see [`Shape::Record`]).
fn read_text(path: &Path) -> Result<String, ProcError> {
    read_proc(path, Shape::Record)
}

/// Reads a whole many-record /proc file (`mountinfo`, `cpuinfo`...: see [`Shape::Listing`]).
pub fn read_listing(path: &Path) -> Result<String, ProcError> {
    read_proc(path, Shape::Listing)
}

/// Reads a whole /proc file. Not `std::fs::read`: /proc files report size 0, so that
/// would `statx` first and then read in small steps; a record fits one 4 KiB read here.
fn read_proc(path: &Path, shape: Shape) -> Result<String, ProcError> {
    let file = std::fs::File::open(path).map_err(|source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read_open(file, path, shape)
}

/// Reads the whole of `file`, opened from `path`.
fn read_open(mut file: std::fs::File, path: &Path, shape: Shape) -> Result<String, ProcError> {
    use std::io::Read;
    const STEP: usize = 4096;
    let fail = |source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    let mut buf = [0u8; STEP];
    loop {
        match file.read(&mut buf) {
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if n == 0 || (n < STEP && shape == Shape::Record) {
                    return Ok(text(bytes));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
    }
}

/// `bytes` as text: kept as they are when valid UTF-8 (the usual case), else with the
/// invalid sequences replaced (a `comm` or path may hold any bytes).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
}

/// Replaces the format name a pure parser put in a [`ProcError::Parse`] with the real path.
fn with_path(err: ProcError, path: &Path) -> ProcError {
    match err {
        ProcError::Parse { line, what, .. } => ProcError::Parse {
            path: path.display().to_string(),
            line,
            what,
        },
        other => other,
    }
}

/// The numeric entry names of a directory such as `/proc/PID/fd`, sorted.
fn numbered_entries(dir: &Path) -> Result<Vec<i32>, ProcError> {
    let read_err = |source| ProcError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name();
        numbers.push(entry_number(dir, &name.to_string_lossy())?);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn entry_number(dir: &Path, name: &str) -> Result<i32, ProcError> {
    name.parse().map_err(|_| ProcError::Parse {
        path: dir.display().to_string(),
        line: 0,
        what: format!("entry {name:?} is not a number"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn me() -> i32 {
        i32::try_from(std::process::id()).expect("pid fits in i32")
    }

    #[test]
    fn smaps_of_self_has_stack_vdso_and_flags() {
        let entries = smaps(me()).unwrap();
        assert!(entries.iter().any(|e| e.path == MapPath::Stack));
        assert!(entries.iter().any(|e| e.path == MapPath::Vdso));
        let stack = entries.iter().find(|e| e.path == MapPath::Stack).unwrap();
        assert!(stack.has_flag("gd"));
        assert!(stack.rss_kb > 0);
        assert!(entries.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn maps_of_self_matches_smaps_ranges_without_flags() {
        let entries = maps(me()).unwrap();
        assert!(entries
            .iter()
            .any(|e| e.path == MapPath::Heap || e.path == MapPath::Stack));
        assert!(entries
            .iter()
            .all(|e| e.vm_flags.is_empty() && e.rss_kb == 0));
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_string_lossy();
        assert!(entries
            .iter()
            .any(|e| e.path == MapPath::File(exe.to_string())));
    }

    #[test]
    fn stat_of_self() {
        let s = stat(me()).unwrap();
        assert_eq!(s.pid, me());
        assert!(s.num_threads >= 1);
        assert!(s.start_code < s.end_code);
        assert!(s.arg_start < s.arg_end);
        assert!(matches!(s.state, 'R' | 'S'));
    }

    #[test]
    fn status_of_self() {
        let s = status(me()).unwrap();
        assert_eq!(s.pid, me());
        assert_eq!(s.tgid, me());
        assert_eq!(s.ns_pid.last(), Some(&me()));
        assert!(s.threads >= 1);
        assert!(s.umask.is_some());
    }

    #[test]
    fn fdinfo_of_an_open_file() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let info = fdinfo(me(), file.as_raw_fd()).unwrap();
        assert_eq!(info.flags & libc::O_ACCMODE, libc::O_RDONLY);
        assert_ne!(info.flags & libc::O_CLOEXEC, 0);
        assert_eq!(info.pos, 0);
    }

    #[test]
    fn fd_dir_sees_what_the_paths_show() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = file.as_raw_fd();
        let dir = FdDir::open(me()).unwrap();
        assert_eq!(dir.info(fd).unwrap(), fdinfo(me(), fd).unwrap());
        assert_eq!(
            dir.link(fd).unwrap(),
            link(me(), &format!("fd/{fd}")).unwrap()
        );
        let meta = file.metadata().unwrap();
        let stat = dir.stat(fd).unwrap();
        assert_eq!((stat.st_dev, stat.st_ino), (meta.dev(), meta.ino()));
        let err = dir.info(i32::MAX).unwrap_err().to_string();
        assert_eq!(err, format!("read /proc/{}/fdinfo/{}", me(), i32::MAX));
    }

    #[test]
    fn fds_lists_an_open_file() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fds = fds(me()).unwrap();
        assert!(fds.contains(&file.as_raw_fd()));
        assert!(fds.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall("running\n").unwrap(), None);
        assert_eq!(parse_syscall("-1 0x7ffd1000 0x401000\n").unwrap(), None);
        let vfork = "58 0x0 0x7ffc 0x1 0x0 0x0 0x0 0x7ffd2000 0x7f00123\n";
        assert_eq!(parse_syscall(vfork).unwrap(), Some((58, 0)));
        assert_eq!(
            parse_syscall("56 0x4111 0x0 0x0 0x0 0x0 0x0 0x1 0x2").unwrap(),
            Some((56, 0x4111))
        );
        assert!(parse_syscall("").is_err());
        assert!(parse_syscall("x 0x0").is_err());
        assert!(parse_syscall("56 12").is_err());
    }

    #[test]
    fn tids_include_the_main_thread() {
        let tids = tids(me()).unwrap();
        assert!(tids.contains(&me()));
        assert!(tids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn auxv_of_self_has_page_size() {
        let words = auxv(me()).unwrap();
        assert_eq!(words.len() % 2, 0);
        assert_eq!(&words[words.len() - 2..], &[0, 0]);
        let pairs: Vec<_> = words.chunks(2).map(|p| (p[0], p[1])).collect();
        assert!(pairs.contains(&(libc::AT_PAGESZ, 4096)));
    }

    #[test]
    fn comm_of_self_has_no_newline() {
        let name = comm(me()).unwrap();
        assert!(!name.is_empty() && !name.contains('\n'));
        assert_eq!(name, stat(me()).unwrap().comm);
    }

    #[test]
    fn personality_of_self_parses() {
        let persona = personality(me()).unwrap();
        assert_eq!(persona & 0xff, 0, "PER_LINUX");
    }

    #[test]
    fn link_exe_is_current_exe() {
        let exe = link(me(), "exe").unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        assert!(link(me(), "cwd").unwrap().is_absolute());
    }

    #[test]
    fn missing_process_is_a_read_error_naming_the_path() {
        let err = stat(i32::MAX).unwrap_err();
        assert!(matches!(&err, ProcError::Read { path, .. } if path.ends_with("stat")));
        assert_eq!(err.to_string(), format!("read /proc/{}/stat", i32::MAX));
    }

    #[test]
    fn a_record_longer_than_one_read_is_read_whole() {
        let path = std::env::temp_dir().join(format!("stasis-proc-record-{}", me()));
        let text: String = (0..2000).map(|i| format!("{i:04}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let read = read_text(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.unwrap(), text);
    }

    #[test]
    fn reader_parse_errors_name_the_file() {
        let err = with_path(parse_error("stat", 1, "x"), Path::new("/proc/1/stat"));
        assert_eq!(err.to_string(), "parse /proc/1/stat line 1: x");
    }
}
