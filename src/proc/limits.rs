//! `/proc/PID/limits`: the 16 resource limits, in `RLIMIT_*` order (the kernel prints them
//! in that order). `unlimited` is `RLIM_INFINITY` (`u64::MAX`).

use super::ProcError;

/// Number of resource limits on Linux (`RLIM_NLIMITS`).
pub const NLIMITS: usize = 16;

/// `(soft, hard)` per resource, index = `RLIMIT_*`.
pub fn parse_limits(text: &str) -> Result<Vec<(u64, u64)>, ProcError> {
    let mut out = Vec::with_capacity(NLIMITS);
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(line).ok_or_else(|| ProcError::Parse {
            path: "limits".into(),
            line: i + 1,
            what: format!("cannot read soft and hard limits from {line:?}"),
        })?);
    }
    if out.len() != NLIMITS {
        return Err(ProcError::Parse {
            path: "limits".into(),
            line: 0,
            what: format!("{} limits, expected {NLIMITS}", out.len()),
        });
    }
    Ok(out)
}

/// The name column is 26 characters wide; soft and hard follow, separated by spaces.
fn parse_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.get(26..)?.split_whitespace();
    let value = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((value(fields.next()?)?, value(fields.next()?)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             95470                95470                processes \n\
Max open files            1000                 20000                files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       95470                95470                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

    #[test]
    fn parses_all_sixteen() {
        let l = parse_limits(SAMPLE).unwrap();
        assert_eq!(l.len(), 16);
        assert_eq!(l[libc::RLIMIT_NOFILE as usize], (1000, 20000));
        assert_eq!(l[libc::RLIMIT_STACK as usize], (8388608, u64::MAX));
        assert_eq!(l[libc::RLIMIT_RTTIME as usize], (u64::MAX, u64::MAX));
    }

    #[test]
    fn short_file_is_an_error() {
        let text: String = SAMPLE.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(parse_limits(&text).is_err());
    }

    #[test]
    fn garbage_value_names_the_line() {
        let bad = SAMPLE.replace("1000                 20000", "lots                 20000");
        match parse_limits(&bad) {
            Err(ProcError::Parse { line, .. }) => assert_eq!(line, 9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn own_limits() {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        assert_eq!(parse_limits(&text).unwrap().len(), NLIMITS);
    }
}
