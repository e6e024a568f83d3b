//! `/proc/PID/fdinfo/FD`: the kernel's view of one open file description.
//!
//! Owns the `key: value` line syntax: the four common keys (`pos`, `flags` in octal,
//! `mnt_id`, `ino`) become fields, every other line is kept verbatim in order in
//! [`FdInfo::extra`] for the per-kind code in `dump` (eventfd counter, epoll `tfd` targets,
//! timerfd settings, inotify watches, signalfd mask) to interpret. Lines of inotify and
//! fanotify (`inotify wd:1 ino:...`) have no colon after their key; they are kept under the
//! key `inotify` / `fanotify` with the rest of the line as the value.

use super::{parse_error, ProcError};

/// The common fields of an fdinfo file and the kind-specific lines after them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// `open(2)` flags (octal in the text), including `O_CLOEXEC` of this descriptor.
    pub flags: i32,
    /// 0 on kernels that do not print it.
    pub mnt_id: i32,
    /// 0 on kernels that do not print it.
    pub ino: u64,
    /// Every other line as `(key, value)`, in order, the value trimmed.
    pub extra: Vec<(String, String)>,
}

/// Keys written as `key value...` rather than `key: value`.
const SPACE_KEYED: [&str; 2] = ["inotify", "fanotify"];

/// Parses the text of `/proc/PID/fdinfo/FD`. `pos` and `flags` must be present.
pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ProcError> {
    let mut info = FdInfo::default();
    let mut seen = (false, false);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let err = |what| parse_error("fdinfo", i + 1, what);
        let (key, value) = split_line(line).ok_or_else(|| err(format!("no key in {line:?}")))?;
        apply(&mut info, key, value).map_err(|e| err(format!("{key} {value:?}: {e}")))?;
        seen = (seen.0 || key == "pos", seen.1 || key == "flags");
    }
    match seen {
        (true, true) => Ok(info),
        (false, _) => Err(parse_error("fdinfo", 0, "no pos line")),
        (true, false) => Err(parse_error("fdinfo", 0, "no flags line")),
    }
}

/// `"eventfd-count:   2a"` → `("eventfd-count", "2a")`; `"inotify wd:1 ..."` →
/// `("inotify", "wd:1 ...")`.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let spaced = SPACE_KEYED
        .iter()
        .find_map(|key| Some((*key, line.strip_prefix(key)?.strip_prefix(' ')?)));
    let (key, value) = spaced.or_else(|| line.split_once(':'))?;
    Some((key.trim_end(), value.trim()))
}

fn apply(info: &mut FdInfo, key: &str, value: &str) -> Result<(), String> {
    let text_err = |e: std::num::ParseIntError| e.to_string();
    match key {
        "pos" => info.pos = value.parse().map_err(text_err)?,
        "flags" => info.flags = i32::from_str_radix(value, 8).map_err(text_err)?,
        "mnt_id" => info.mnt_id = value.parse().map_err(text_err)?,
        "ino" => info.ino = value.parse().map_err(text_err)?,
        _ => info.extra.push((key.to_string(), value.to_string())),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const REGULAR: &str = include_str!("testdata/regular.fdinfo");
    /// `eventfd(42, EFD_NONBLOCK | EFD_CLOEXEC)`.
    const EVENTFD: &str = include_str!("testdata/eventfd.fdinfo");
    /// An epoll instance watching the timerfd (fd 8) and the eventfd (fd 6, `EPOLLET`).
    const EPOLL: &str = include_str!("testdata/epoll.fdinfo");
    const TIMERFD: &str = include_str!("testdata/timerfd.fdinfo");
    const INOTIFY: &str = include_str!("testdata/inotify.fdinfo");
    const SIGNALFD: &str = include_str!("testdata/signalfd.fdinfo");

    /// The kernel forces `O_LARGEFILE` on 64-bit; glibc's constant for it is 0.
    const KERNEL_O_LARGEFILE: i32 = 0o100000;

    fn extra(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn regular_file() {
        let info = parse_fdinfo(REGULAR).unwrap();
        let expected = FdInfo {
            pos: 100,
            flags: libc::O_RDWR | KERNEL_O_LARGEFILE,
            mnt_id: 27,
            ino: 10_010_821,
            extra: vec![],
        };
        assert_eq!(info, expected);
    }

    #[test]
    fn eventfd_counter_and_flags() {
        let info = parse_fdinfo(EVENTFD).unwrap();
        assert_eq!(
            info.flags,
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC
        );
        assert_eq!((info.mnt_id, info.ino), (17, 1038));
        let want = [
            ("eventfd-count", "2a"),
            ("eventfd-id", "1"),
            ("eventfd-semaphore", "0"),
        ];
        assert_eq!(info.extra, extra(&want));
    }

    #[test]
    fn epoll_tfd_lines_in_order() {
        let info = parse_fdinfo(EPOLL).unwrap();
        assert_eq!(info.flags, libc::O_RDWR);
        let want = [
            (
                "tfd",
                "8 events:       19 data:               63  pos:0 ino:40e sdev:10",
            ),
            (
                "tfd",
                "6 events: 80000019 data:             1234  pos:0 ino:40e sdev:10",
            ),
        ];
        assert_eq!(info.extra, extra(&want));
    }

    #[test]
    fn timerfd_keys_with_spaces() {
        let info = parse_fdinfo(TIMERFD).unwrap();
        let keys: Vec<_> = info.extra.iter().map(|(k, _)| k.as_str()).collect();
        let want = [
            "clockid",
            "ticks",
            "settime flags",
            "it_value",
            "it_interval",
        ];
        assert_eq!(keys, want);
        assert_eq!(info.extra[4].1, "(1, 0)");
    }

    #[test]
    fn inotify_watch_keeps_the_rest_of_the_line() {
        let info = parse_fdinfo(INOTIFY).unwrap();
        assert_eq!(info.flags, 0);
        let value = "wd:1 ino:98c0b4 sdev:fe00000 mask:300 ignored_mask:0 \
                     fhandle-bytes:8 fhandle-type:1 f_handle:b4c09800ed58d530";
        assert_eq!(info.extra, extra(&[("inotify", value)]));
    }

    #[test]
    fn signalfd_mask() {
        let info = parse_fdinfo(SIGNALFD).unwrap();
        assert_eq!(info.flags, libc::O_RDWR | libc::O_NONBLOCK);
        assert_eq!(info.extra, extra(&[("sigmask", "0000000000004200")]));
    }

    #[test]
    fn fanotify_lines_are_space_keyed() {
        let text = "pos:\t0\nflags:\t02\nfanotify flags:10 event-flags:0\n";
        let info = parse_fdinfo(text).unwrap();
        assert_eq!(info.extra, extra(&[("fanotify", "flags:10 event-flags:0")]));
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            (REGULAR.replace("flags:\t0100002", "flags:\t0100009"), 2),
            (REGULAR.replace("pos:\t100", "pos:\t-1"), 1),
            (REGULAR.replace("ino:\t", "ino\t"), 4),
            (format!("{EVENTFD}garbage\n"), 8),
        ];
        for (text, line) in cases {
            let err = parse_fdinfo(&text).unwrap_err();
            let ok = matches!(err, ProcError::Parse { line: l, .. } if l == line);
            assert!(ok, "{text:?}: {err}");
        }
    }

    #[test]
    fn missing_pos_or_flags_is_an_error() {
        let err = parse_fdinfo("mnt_id:\t17\n").unwrap_err();
        assert_eq!(err.to_string(), "parse fdinfo line 0: no pos line");
        let err = parse_fdinfo("pos:\t0\n").unwrap_err();
        assert_eq!(err.to_string(), "parse fdinfo line 0: no flags line");
    }
}
