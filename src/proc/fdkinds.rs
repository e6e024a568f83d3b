//! The kind-specific lines of `/proc/PID/fdinfo/FD` ([`FdInfo::extra`]), turned into
//! values: eventfd counter, timerfd setting, signalfd mask, epoll `tfd:` targets, inotify
//! watches, pidfd pid and `lock:` lines. Pure functions over the text; a missing or
//! malformed line is an `Err` naming the key.

use super::FdInfo;

/// A parse failure: which key and why.
pub type Parsed<T> = Result<T, String>;

impl FdInfo {
    /// The value of the first line with `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The values of every line with `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.extra
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, key: &str) -> Parsed<&str> {
        self.get(key).ok_or_else(|| format!("no {key:?} line"))
    }

    fn hex(&self, key: &str) -> Parsed<u64> {
        let v = self.need(key)?;
        u64::from_str_radix(v, 16).map_err(|e| format!("{key} {v:?}: {e}"))
    }

    fn dec<T: std::str::FromStr>(&self, key: &str) -> Parsed<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.need(key)?;
        v.parse().map_err(|e| format!("{key} {v:?}: {e}"))
    }
}

/// `eventfd-count` (hex) and `eventfd-semaphore`.
pub fn eventfd(info: &FdInfo) -> Parsed<(u64, bool)> {
    Ok((
        info.hex("eventfd-count")?,
        info.dec::<u8>("eventfd-semaphore")? != 0,
    ))
}

/// `sigmask` of a signalfd (hex).
pub fn signalfd_mask(info: &FdInfo) -> Parsed<u64> {
    info.hex("sigmask")
}

/// `Pid` of a pidfd (-1 once the process is gone).
pub fn pidfd_pid(info: &FdInfo) -> Parsed<i32> {
    info.dec("Pid")
}

/// A timerfd's fdinfo lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerFdInfo {
    pub clock: i32,
    pub ticks: u64,
    pub settime_flags: i32,
    pub value_ns: u64,
    pub interval_ns: u64,
}

pub fn timerfd(info: &FdInfo) -> Parsed<TimerFdInfo> {
    let flags = info.need("settime flags")?;
    Ok(TimerFdInfo {
        clock: info.dec("clockid")?,
        ticks: info.dec("ticks")?,
        settime_flags: i32::from_str_radix(flags, 8).map_err(|e| format!("{flags:?}: {e}"))?,
        value_ns: timespec(info.need("it_value")?)?,
        interval_ns: timespec(info.need("it_interval")?)?,
    })
}

/// `(98, 64207868)` → nanoseconds.
fn timespec(v: &str) -> Parsed<u64> {
    let inner = v.trim_start_matches('(').trim_end_matches(')');
    let (s, ns) = inner.split_once(',').ok_or_else(|| format!("{v:?}"))?;
    let num = |t: &str| t.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    Ok(num(s)? * 1_000_000_000 + num(ns)?)
}

/// `key:value` tokens after a leading word (`tfd:  8 events: 19 data: 63 ...`,
/// `wd:1 ino:98c0b4 ...`): the value following `key`.
fn token<'a>(line: &'a str, key: &str) -> Parsed<&'a str> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if let Some(rest) = w.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            return match rest {
                "" => words.next().ok_or_else(|| format!("{key}: no value")),
                v => Ok(v),
            };
        }
    }
    Err(format!("no {key} in {line:?}"))
}

fn hex_token(line: &str, key: &str) -> Parsed<u64> {
    let v = token(line, key)?;
    u64::from_str_radix(v, 16).map_err(|e| format!("{key} {v:?}: {e}"))
}

/// One epoll registration (`tfd:` line): the fd number it was added under, events, data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollTfd {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

pub fn epoll_targets(info: &FdInfo) -> Parsed<Vec<EpollTfd>> {
    info.all("tfd").map(epoll_tfd).collect()
}

fn epoll_tfd(v: &str) -> Parsed<EpollTfd> {
    let first = v.split_whitespace().next().unwrap_or_default();
    Ok(EpollTfd {
        fd: first.parse().map_err(|e| format!("tfd {first:?}: {e}"))?,
        events: hex_token(v, "events")? as u32,
        data: hex_token(v, "data")?,
    })
}

/// One inotify watch: its descriptor, mask, the watched inode's device (kernel `dev_t`
/// encoding) and file handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InotifyWatchInfo {
    pub wd: i32,
    pub ino: u64,
    pub sdev: u64,
    pub mask: u32,
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

pub fn inotify_watches(info: &FdInfo) -> Parsed<Vec<InotifyWatchInfo>> {
    info.all("inotify").map(inotify_watch).collect()
}

fn inotify_watch(v: &str) -> Parsed<InotifyWatchInfo> {
    let wd = token(v, "wd")?;
    let h = file_handle(v)?;
    Ok(InotifyWatchInfo {
        wd: wd.parse().map_err(|e| format!("wd {wd:?}: {e}"))?,
        ino: h.ino,
        sdev: h.sdev,
        mask: hex_token(v, "mask")? as u32,
        handle_type: h.handle_type,
        handle: h.handle,
    })
}

/// A fanotify group as fdinfo shows it: `fanotify flags:3 event-flags:8000`, then one
/// line per mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanotifyInfo {
    pub flags: u32,
    pub event_flags: u32,
    pub marks: Vec<FanotifyMarkInfo>,
}

/// One fanotify mark line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanotifyMarkInfo {
    pub on: MarkedObject,
    pub flags: u32,
    pub mask: u32,
    pub ignored_mask: u32,
}

/// What a mark line is on: an inode (`ino:`, with its file handle), a mount (`mnt_id:`)
/// or a filesystem (`sdev:` alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkedObject {
    Inode(FileHandle),
    Mount { mnt_id: u64 },
    Filesystem { sdev: u64 },
}

/// An inode by device (kernel `dev_t` encoding), number and file handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    pub ino: u64,
    pub sdev: u64,
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

pub fn fanotify(info: &FdInfo) -> Parsed<FanotifyInfo> {
    let mut lines = info.all("fanotify");
    let head = lines.next().ok_or("no fanotify flags line")?;
    Ok(FanotifyInfo {
        flags: hex_token(head, "flags")? as u32,
        event_flags: hex_token(head, "event-flags")? as u32,
        marks: lines.map(fanotify_mark).collect::<Parsed<_>>()?,
    })
}

fn fanotify_mark(v: &str) -> Parsed<FanotifyMarkInfo> {
    let on = if token(v, "ino").is_ok() {
        MarkedObject::Inode(file_handle(v)?)
    } else if token(v, "mnt_id").is_ok() {
        MarkedObject::Mount {
            mnt_id: hex_token(v, "mnt_id")?,
        }
    } else if token(v, "sdev").is_ok() {
        MarkedObject::Filesystem {
            sdev: hex_token(v, "sdev")?,
        }
    } else {
        return Err(format!("a fanotify mark of unknown kind: {v:?}"));
    };
    Ok(FanotifyMarkInfo {
        on,
        flags: hex_token(v, "mflags")? as u32,
        mask: hex_token(v, "mask")? as u32,
        ignored_mask: hex_token(v, "ignored_mask")? as u32,
    })
}

/// `ino:98c0b4 sdev:fe00000 ... fhandle-type:1 f_handle:b4c0...` of an inotify watch or
/// a fanotify inode mark.
fn file_handle(v: &str) -> Parsed<FileHandle> {
    let hex = token(v, "f_handle")?;
    let handle = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| format!("f_handle {hex:?}: {e}"))?;
    Ok(FileHandle {
        ino: hex_token(v, "ino")?,
        sdev: hex_token(v, "sdev")?,
        handle_type: hex_token(v, "fhandle-type")? as i32,
        handle,
    })
}

/// One `lock:` line: `1: POSIX  ADVISORY  WRITE 22733 fe:00:10010729 5 14`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// `FLOCK`, `POSIX`, `OFDLCK`, `LEASE`, `DELEG`...
    pub kind: String,
    /// A waiter (`->`) rather than a holder.
    pub blocked: bool,
    /// `ADVISORY`, `MANDATORY`; for leases `ACTIVE`, `BREAKING`, `BREAKER`.
    pub state: String,
    /// `WRITE`; for a lease being broken, the type it is broken to (`READ` or `UNLCK`).
    pub write: bool,
    /// `UNLCK`: a lease being broken to nothing.
    pub unlock: bool,
    pub start: u64,
    /// Inclusive end; `None` for `EOF`.
    pub end: Option<u64>,
}

pub fn locks(info: &FdInfo) -> Parsed<Vec<LockInfo>> {
    info.all("lock").map(lock).collect()
}

fn lock(v: &str) -> Parsed<LockInfo> {
    let mut w: Vec<&str> = v.split_whitespace().skip(1).collect();
    let blocked = w.first() == Some(&"->");
    if blocked {
        w.remove(0);
    }
    let [kind, state, mode, _pid, _id, start, end] = w[..] else {
        return Err(format!("lock {v:?}: expected 7 fields"));
    };
    let num = |t: &str| t.parse::<u64>().map_err(|e| format!("lock {v:?}: {e}"));
    Ok(LockInfo {
        kind: kind.to_string(),
        blocked,
        state: state.to_string(),
        write: mode == "WRITE",
        unlock: mode == "UNLCK",
        start: num(start)?,
        end: if end == "EOF" { None } else { Some(num(end)?) },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proc::fdinfo::parse_fdinfo;

    fn info(name: &str) -> FdInfo {
        let path = format!("{}/src/proc/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_fdinfo(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn eventfd_counter() {
        assert_eq!(eventfd(&info("eventfd.fdinfo")).unwrap(), (42, false));
    }

    #[test]
    fn signalfd_sigmask() {
        let want = 1 << (libc::SIGUSR1 - 1) | 1 << (libc::SIGTERM - 1);
        assert_eq!(signalfd_mask(&info("signalfd.fdinfo")).unwrap(), want);
    }

    #[test]
    fn timerfd_setting() {
        let t = timerfd(&info("timerfd.fdinfo")).unwrap();
        let want = TimerFdInfo {
            clock: 1,
            ticks: 0,
            settime_flags: 0,
            value_ns: 98_064_207_868,
            interval_ns: 1_000_000_000,
        };
        assert_eq!(t, want);
    }

    #[test]
    fn epoll_tfd_lines() {
        let t = epoll_targets(&info("epoll.fdinfo")).unwrap();
        let want = [
            EpollTfd {
                fd: 8,
                events: 0x19,
                data: 0x63,
            },
            EpollTfd {
                fd: 6,
                events: 0x8000_0019,
                data: 0x1234,
            },
        ];
        assert_eq!(t, want);
    }

    #[test]
    fn inotify_watch_line() {
        let w = inotify_watches(&info("inotify.fdinfo")).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].wd, w[0].mask, w[0].sdev), (1, 0x300, 0xfe00000));
        assert_eq!((w[0].ino, w[0].handle_type), (0x98c0b4, 1));
        assert_eq!(
            w[0].handle,
            [0xb4, 0xc0, 0x98, 0x00, 0xed, 0x58, 0xd5, 0x30]
        );
    }

    #[test]
    fn fanotify_lines() {
        let f = fanotify(&info("fanotify.fdinfo")).unwrap();
        assert_eq!((f.flags, f.event_flags, f.marks.len()), (3, 0x8000, 4));
        assert_eq!(f.marks[0].on, MarkedObject::Filesystem { sdev: 0xfe0_0000 });
        assert_eq!(f.marks[1].on, MarkedObject::Mount { mnt_id: 0x1b });
        let MarkedObject::Inode(h) = &f.marks[2].on else {
            panic!("an inode mark expected")
        };
        assert_eq!((h.ino, h.handle_type, h.handle.len()), (0x99_21eb, 1, 8));
        assert_eq!(
            (f.marks[2].flags, f.marks[2].mask, f.marks[2].ignored_mask),
            (0x40, 2, 0x20)
        );
        assert_eq!(f.marks[3].mask, 0x4800_0008);
    }

    #[test]
    fn lock_lines() {
        let text = "pos:\t0\nflags:\t02\n\
                    lock:\t1: POSIX  ADVISORY  WRITE 22733 fe:00:10010729 5 14\n\
                    lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:10010730 3 EOF\n\
                    lock:\t3: -> FLOCK  ADVISORY  WRITE 9 fe:00:1 0 EOF\n";
        let l = locks(&parse_fdinfo(text).unwrap()).unwrap();
        assert_eq!((l[0].kind.as_str(), l[0].write), ("POSIX", true));
        assert_eq!((l[0].start, l[0].end), (5, Some(14)));
        assert_eq!(
            (l[1].kind.as_str(), l[1].write, l[1].end),
            ("OFDLCK", false, None)
        );
        assert!(l[2].blocked && !l[0].blocked);
        assert!(lock("1: POSIX WRITE").is_err());
        let lease = lock("1: LEASE  BREAKING  UNLCK 25455 fe:00:10010724 0 EOF").unwrap();
        assert_eq!(
            (lease.kind.as_str(), lease.state.as_str()),
            ("LEASE", "BREAKING")
        );
        assert!(lease.unlock && !lease.write);
    }

    #[test]
    fn missing_lines_name_the_key() {
        let i = info("regular.fdinfo");
        assert_eq!(eventfd(&i).unwrap_err(), "no \"eventfd-count\" line");
        assert!(timerfd(&i).unwrap_err().contains("settime flags"));
    }
}

/// The mount point of the first mount of device `major:minor` in a `mountinfo` text
/// (octal escapes such as `\040` decoded).
pub fn mount_point(mountinfo: &str, major: u64, minor: u64) -> Option<String> {
    let dev = format!("{major}:{minor}");
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(dev.as_str()))?;
    Some(super::mountinfo::unescape(line.split_whitespace().nth(4)?))
}

/// The mount point of the mount with id `id` (the first field) in a `mountinfo` text.
pub fn mount_point_by_id(mountinfo: &str, id: u64) -> Option<String> {
    let id = id.to_string();
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))?;
    Some(super::mountinfo::unescape(line.split_whitespace().nth(4)?))
}

#[cfg(test)]
mod mountinfo_tests {
    #[test]
    fn mount_point_by_device() {
        let text = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    30 22 0:27 / /tmp/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(super::mount_point(text, 254, 0).as_deref(), Some("/"));
        assert_eq!(
            super::mount_point(text, 0, 27).as_deref(),
            Some("/tmp/with space")
        );
        assert_eq!(super::mount_point(text, 1, 1), None);
        assert_eq!(super::mount_point_by_id(text, 22).as_deref(), Some("/"));
        assert_eq!(super::mount_point_by_id(text, 99), None);
    }
}
