//! `/proc/PID/task/TID/cgroup`: one line per hierarchy, `ID:CONTROLLERS:PATH` (`0::PATH`
//! for the unified hierarchy), paths relative to the reader's cgroup namespace.

use std::path::Path;

use super::{parse_error, with_path, ProcError};

/// One line: the hierarchy's controllers as the kernel names them (`cpu,cpuacct`,
/// `name=systemd`, empty for v2) and the cgroup's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub controllers: String,
    pub path: String,
}

/// Parses the file's text; a v1 hierarchy without controllers nor name is skipped.
pub fn parse(text: &str) -> Result<Vec<Membership>, ProcError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(parse_error("cgroup", i + 1, "not ID:CONTROLLERS:PATH"));
        };
        if controllers.is_empty() && id != "0" {
            continue;
        }
        out.push(Membership {
            controllers: controllers.to_string(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Reads and parses the cgroups of thread `tid` of `pid` ("self" for stasis).
pub fn read(pid: &str, tid: Option<i32>) -> Result<Vec<Membership>, ProcError> {
    let path = match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}/cgroup"),
        None => format!("/proc/{pid}/cgroup"),
    };
    // One record (`single_open`): one read, no `statx` (as `read_to_string` makes).
    let text = super::read_text(Path::new(&path))?;
    parse(&text).map_err(|e| with_path(e, Path::new(&path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host() {
        let text =
            "12:net_prio:/\n10:name=zdtmtst:/subcg00\n4:memory:/a/b\n1:cpu,cpuacct:/\n0::/\n";
        let got = parse(text).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[1].controllers, "name=zdtmtst");
        assert_eq!(got[1].path, "/subcg00");
        assert_eq!(got[3].controllers, "cpu,cpuacct");
        assert_eq!(got[4].controllers, "");
        assert!(parse("garbage\n").is_err());
    }
}
