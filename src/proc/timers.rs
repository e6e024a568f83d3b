//! `/proc/PID/timers`: the POSIX timers of a process, four lines each:
//!
//! ```text
//! ID: 5
//! signal: 35/000000001234abcd      signal number / sigev_value (hex)
//! notify: signal/pid.31734         signal|none|thread, then pid.N or tid.N (SIGEV_THREAD_ID)
//! ClockID: 1
//! ```
//!
//! Owns that syntax only; the timers' current values come from `timer_gettime` (dump).

use super::{parse_error, ProcError};

pub const SIGEV_SIGNAL: i32 = 0;
pub const SIGEV_NONE: i32 = 1;
pub const SIGEV_THREAD: i32 = 2;
pub const SIGEV_THREAD_ID: i32 = 4;

/// One timer as `/proc/PID/timers` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcTimer {
    pub id: i32,
    pub signal: i32,
    pub sigev_value: u64,
    /// `SIGEV_*`, with `SIGEV_THREAD_ID` or'ed in when a thread is targeted.
    pub notify: i32,
    /// The pid or tid the kernel reports next to the notify kind.
    pub target: i32,
    pub clock: i32,
}

/// Parses the text of `/proc/PID/timers`; timers come back in the kernel's order.
pub fn parse_timers(text: &str) -> Result<Vec<ProcTimer>, ProcError> {
    let mut timers: Vec<ProcTimer> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let err = |what: String| parse_error("timers", i + 1, what);
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| err(format!("no ': ' in {line:?}")))?;
        if key == "ID" {
            timers.push(ProcTimer::default());
        }
        let t = timers
            .last_mut()
            .ok_or_else(|| err(format!("{key} before the first ID")))?;
        apply(t, key, value.trim()).map_err(|e| err(format!("{key} {value:?}: {e}")))?;
    }
    Ok(timers)
}

fn apply(t: &mut ProcTimer, key: &str, value: &str) -> Result<(), String> {
    let int = |s: &str| s.parse::<i32>().map_err(|e| e.to_string());
    match key {
        "ID" => t.id = int(value)?,
        "ClockID" => t.clock = int(value)?,
        "signal" => {
            let (sig, val) = value.split_once('/').ok_or("no '/'")?;
            t.signal = int(sig)?;
            t.sigev_value = u64::from_str_radix(val, 16).map_err(|e| e.to_string())?;
        }
        "notify" => (t.notify, t.target) = notify(value)?,
        _ => {}
    }
    Ok(())
}

/// `signal/pid.123` → (SIGEV_SIGNAL, 123); `signal/tid.7` → (SIGEV_SIGNAL|SIGEV_THREAD_ID, 7).
fn notify(value: &str) -> Result<(i32, i32), String> {
    let (kind, rest) = value.split_once('/').ok_or("no '/'")?;
    let (who, id) = rest.split_once('.').ok_or("no '.'")?;
    let kind = match kind {
        "signal" => SIGEV_SIGNAL,
        "none" => SIGEV_NONE,
        "thread" => SIGEV_THREAD,
        other => return Err(format!("unknown notify kind {other:?}")),
    };
    let thread = match who {
        "pid" => 0,
        "tid" => SIGEV_THREAD_ID,
        other => return Err(format!("unknown target {other:?}")),
    };
    let id = id.parse::<i32>().map_err(|e| e.to_string())?;
    Ok((kind | thread, id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn real_kernel_output() {
        let t = parse_timers(include_str!("testdata/victim.timers")).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(
            t[4],
            ProcTimer {
                id: 5,
                signal: 35,
                sigev_value: 0x1234_abcd,
                notify: SIGEV_SIGNAL,
                target: 31734,
                clock: 1,
            }
        );
        assert_eq!((t[0].notify, t[0].clock), (SIGEV_NONE, -253878));
        assert_eq!((t[2].notify, t[2].target), (SIGEV_THREAD_ID, 31734));
        assert_eq!((t[3].signal, t[3].sigev_value), (14, 6));
    }

    #[test]
    fn empty_and_broken() {
        assert!(parse_timers("").unwrap().is_empty());
        assert!(parse_timers("signal: 14/0\n").is_err());
        assert!(parse_timers("ID: 1\nnotify: bogus/pid.1\n").is_err());
        assert!(parse_timers("ID: x\n").is_err());
    }
}
