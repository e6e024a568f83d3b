//! `/proc/PID/stat`: the one-line summary of a task.
//!
//! Owns the field layout of proc(5) and the one trap in it: `comm` is printed in parentheses
//! and may itself contain `") "`, so the fields are split after the *last* `)`. Only the
//! fields stasis needs are kept (see [`Stat`]); timing and fault counters are ignored.

use super::{parse_error, ProcError};
use std::str::FromStr;

/// The fields of `/proc/PID/stat` that checkpoint/restore uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    pub tpgid: i32,
    pub flags: u32,
    pub num_threads: i64,
    /// Clock ticks after boot.
    pub start_time: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Signal sent to the parent on exit (field 38).
    pub exit_signal: i32,
    /// Wait status of an exited task (field 52), as `waitpid` reports it.
    pub exit_code: i32,
}

/// The highest proc(5) field number read (`exit_code`).
const LAST_FIELD: usize = 52;

/// Parses the text of `/proc/PID/stat` (one line; a trailing newline is fine).
pub fn parse_stat(text: &str) -> Result<Stat, ProcError> {
    let err = |what: String| parse_error("stat", 1, what);
    let (pid, comm, rest) = split_comm(text).map_err(err)?;
    let fields = Fields::new(rest).map_err(err)?;
    fields.stat(pid, comm).map_err(err)
}

/// `"42 (a) b) S 1 ..."` → `("42", "a) b", "S 1 ...")`.
fn split_comm(text: &str) -> Result<(&str, &str, &str), String> {
    let open = text.find('(').ok_or("no '(' before comm")?;
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    if close < open {
        return Err("')' before '('".into());
    }
    Ok((
        text[..open].trim(),
        &text[open + 1..close],
        &text[close + 1..],
    ))
}

/// The fields after `comm` up to [`LAST_FIELD`], addressed by their proc(5) number: a
/// fixed array, as `/proc` is scanned whole at every dump (one `stat` a process).
struct Fields<'a>([&'a str; LAST_FIELD - 2]);

impl<'a> Fields<'a> {
    fn new(rest: &'a str) -> Result<Self, String> {
        let mut fields = [""; LAST_FIELD - 2];
        let mut count = 2; // pid and comm come before `rest`
        for (slot, text) in fields.iter_mut().zip(rest.split_ascii_whitespace()) {
            *slot = text;
            count += 1;
        }
        if count < LAST_FIELD {
            return Err(format!("{count} fields, expected at least {LAST_FIELD}"));
        }
        Ok(Fields(fields))
    }

    /// Field `number` (1-based as in proc(5); 3 is the first after `comm`), parsed.
    fn get<T: FromStr>(&self, number: usize) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.0[number - 3];
        text.parse()
            .map_err(|e| format!("field {number} {text:?}: {e}"))
    }

    fn stat(&self, pid: &str, comm: &str) -> Result<Stat, String> {
        Ok(Stat {
            pid: pid.parse().map_err(|e| format!("pid {pid:?}: {e}"))?,
            comm: comm.to_string(),
            state: self.get(3)?,
            ppid: self.get(4)?,
            pgrp: self.get(5)?,
            session: self.get(6)?,
            tty_nr: self.get(7)?,
            tpgid: self.get(8)?,
            flags: self.get(9)?,
            num_threads: self.get(20)?,
            start_time: self.get(22)?,
            start_code: self.get(26)?,
            end_code: self.get(27)?,
            start_stack: self.get(28)?,
            start_data: self.get(45)?,
            end_data: self.get(46)?,
            start_brk: self.get(47)?,
            arg_start: self.get(48)?,
            arg_end: self.get(49)?,
            env_start: self.get(50)?,
            env_end: self.get(51)?,
            exit_signal: self.get(38)?,
            exit_code: self.get(52)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// A victim that renamed itself `a) b (c) d` with `PR_SET_NAME`.
    const VICTIM: &str = include_str!("testdata/victim.stat");
    /// A kernel thread: no code, stack or arguments.
    const KTHREADD: &str = include_str!("testdata/kthreadd.stat");

    #[test]
    fn comm_with_parens_and_spaces() {
        let s = parse_stat(VICTIM).unwrap();
        assert_eq!(s.comm, "a) b (c) d");
        assert_eq!((s.pid, s.state, s.ppid), (3926, 'S', 1));
    }

    #[test]
    fn every_field_of_the_victim() {
        let expected = Stat {
            pid: 3926,
            comm: "a) b (c) d".into(),
            state: 'S',
            ppid: 1,
            pgrp: 3915,
            session: 3120,
            tty_nr: 0,
            tpgid: -1,
            flags: 4_194_304,
            num_threads: 1,
            start_time: 35200,
            start_code: 94_240_971_251_712,
            end_code: 94_240_971_253_493,
            start_stack: 140_724_927_918_224,
            start_data: 94_240_971_263_440,
            end_data: 94_240_971_264_216,
            start_brk: 94_242_003_243_008,
            arg_start: 140_724_927_924_776,
            arg_end: 140_724_927_924_785,
            env_start: 140_724_927_924_785,
            env_end: 140_724_927_926_255,
            exit_signal: 17,
            exit_code: 0,
        };
        assert_eq!(parse_stat(VICTIM).unwrap(), expected);
    }

    #[test]
    fn kernel_thread_has_no_layout() {
        let s = parse_stat(KTHREADD).unwrap();
        assert_eq!((s.pid, s.comm.as_str(), s.ppid), (2, "kthreadd", 0));
        assert_eq!((s.start_code, s.arg_start, s.env_end), (0, 0, 0));
    }

    #[test]
    fn comm_that_looks_like_fields() {
        let text = VICTIM.replace("(a) b (c) d)", "() S 1 2 3 ) )");
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.comm, ") S 1 2 3 ) ");
        assert_eq!(s.ppid, 1);
    }

    #[test]
    fn truncated_line_is_an_error() {
        let text: Vec<&str> = VICTIM.split(' ').take(40).collect();
        let err = parse_stat(&text.join(" ")).unwrap_err();
        let ok = matches!(&err, ProcError::Parse { line: 1, what, .. } if what.contains("fields"));
        assert!(ok, "{err}");
    }

    #[test]
    fn bad_number_names_the_field() {
        let text = VICTIM.replacen(" S 1 3915", " S one 3915", 1);
        let err = parse_stat(&text).unwrap_err();
        assert!(err.to_string().contains("field 4 \"one\""), "{err}");
    }

    #[test]
    fn missing_parens_are_errors() {
        assert!(parse_stat("1 init S 0").is_err());
        assert!(parse_stat("1 )init( S 0").is_err());
        assert!(parse_stat("").is_err());
    }
}
