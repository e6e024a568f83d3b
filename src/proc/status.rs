//! `/proc/PID/status`: the `Key:\tvalue` description of a task.
//!
//! Owns the value syntax of each key stasis reads: identity (pids in every pid namespace,
//! credentials, groups), signal masks, capabilities and the seccomp / no_new_privs state.
//! `Umask` is octal, `Sig*`/`ShdPnd`/`Cap*` are hex, the rest decimal. Unknown keys are
//! ignored; keys a kernel may lack (`Umask`, `NSpid`, `Seccomp_filters`...) default.

use super::{parse_error, ProcError};
use std::str::FromStr;

/// The fields of `/proc/PID/status` that checkpoint/restore uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// As printed by the kernel, which escapes `\n` and `\\` in the name.
    pub name: String,
    pub umask: Option<u32>,
    pub state: char,
    pub tgid: i32,
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// Real, effective, saved, filesystem.
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    /// The pid in each pid namespace, outermost first.
    pub ns_pid: Vec<i32>,
    pub ns_sid: Vec<i32>,
    pub ns_pgid: Vec<i32>,
    pub threads: u32,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp: u32,
    pub seccomp_filters: u32,
    pub speculation_store_bypass: String,
}

/// Keys without which the text is not a status file; their absence is an error (line 0).
const REQUIRED: [&str; 7] = ["Name", "State", "Tgid", "Pid", "PPid", "Uid", "Gid"];

/// Parses the text of `/proc/PID/status`.
pub fn parse_status(text: &str) -> Result<Status, ProcError> {
    let mut status = Status::default();
    let mut seen = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let err = |what| parse_error("status", i + 1, what);
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| err(format!("no ':' in {line:?}")))?;
        apply(&mut status, key, value).map_err(|e| err(format!("{key} {value:?}: {e}")))?;
        seen.push(key);
    }
    match REQUIRED.iter().find(|key| !seen.contains(key)) {
        Some(key) => Err(parse_error("status", 0, format!("no {key} line"))),
        None => Ok(status),
    }
}

/// Stores `value` in the field named by `key`; unknown keys are ignored.
fn apply(s: &mut Status, key: &str, value: &str) -> Result<(), String> {
    match key {
        "Name" => s.name = value.strip_prefix('\t').unwrap_or(value).to_string(),
        "Umask" => s.umask = Some(radix(value, 8)?),
        "State" => s.state = value.trim().chars().next().ok_or("empty")?,
        "Tgid" => s.tgid = dec(value)?,
        "Pid" => s.pid = dec(value)?,
        "PPid" => s.ppid = dec(value)?,
        "TracerPid" => s.tracer_pid = dec(value)?,
        "Uid" => s.uid = four(value)?,
        "Gid" => s.gid = four(value)?,
        "Groups" => s.groups = list(value)?,
        "NSpid" => s.ns_pid = list(value)?,
        "NSsid" => s.ns_sid = list(value)?,
        "NSpgid" => s.ns_pgid = list(value)?,
        "Threads" => s.threads = dec(value)?,
        "NoNewPrivs" => s.no_new_privs = dec::<u8>(value)? != 0,
        "Seccomp" => s.seccomp = dec(value)?,
        "Seccomp_filters" => s.seccomp_filters = dec(value)?,
        "Speculation_Store_Bypass" => s.speculation_store_bypass = value.trim().to_string(),
        _ => apply_mask(s, key, value)?,
    }
    Ok(())
}

/// The hex signal and capability masks; other keys are ignored.
fn apply_mask(s: &mut Status, key: &str, value: &str) -> Result<(), String> {
    let field = match key {
        "SigPnd" => &mut s.sig_pnd,
        "ShdPnd" => &mut s.shd_pnd,
        "SigBlk" => &mut s.sig_blk,
        "SigIgn" => &mut s.sig_ign,
        "SigCgt" => &mut s.sig_cgt,
        "CapInh" => &mut s.cap_inh,
        "CapPrm" => &mut s.cap_prm,
        "CapEff" => &mut s.cap_eff,
        "CapBnd" => &mut s.cap_bnd,
        "CapAmb" => &mut s.cap_amb,
        _ => return Ok(()),
    };
    *field = u64::from_str_radix(value.trim(), 16).map_err(|e| e.to_string())?;
    Ok(())
}

fn dec<T: FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| e.to_string())
}

fn radix(value: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(value.trim(), radix).map_err(|e| e.to_string())
}

/// A whitespace-separated list of decimals; may be empty (`Groups:\t `).
fn list<T: FromStr>(value: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    value.split_whitespace().map(dec).collect()
}

/// Exactly four decimals (`Uid:` and `Gid:`).
fn four(value: &str) -> Result<[u32; 4], String> {
    let ids: Vec<u32> = list(value)?;
    ids.try_into()
        .map_err(|ids: Vec<u32>| format!("{} ids, expected 4", ids.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// A victim blocking SIGUSR1 and SIGTERM, ignoring SIGINT and SIGQUIT, named `a) b (c) d`.
    const VICTIM: &str = include_str!("testdata/victim.status");
    /// `cat` run with groups 4 24 27, umask 027, gid 0/100/100/100, no_new_privs and two
    /// seccomp filters, ignoring SIGUSR2.
    const SECCOMP: &str = include_str!("testdata/seccomp.status");

    #[test]
    fn victim_identity_and_masks() {
        let s = parse_status(VICTIM).unwrap();
        assert_eq!(s.name, "a) b (c) d");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(
            (s.state, s.tgid, s.pid, s.ppid, s.tracer_pid),
            ('S', 3926, 3926, 1, 0)
        );
        assert_eq!((s.uid, s.gid), ([0; 4], [0; 4]));
        assert!(s.groups.is_empty());
        assert_eq!(
            (s.ns_pid, s.ns_pgid, s.ns_sid),
            (vec![3926], vec![3915], vec![3120])
        );
        assert_eq!(s.threads, 1);
        let usr1_term = (1 << (libc::SIGUSR1 - 1)) | (1 << (libc::SIGTERM - 1));
        assert_eq!((s.sig_pnd, s.shd_pnd, s.sig_blk), (0, 0, usr1_term));
        assert_eq!((s.sig_ign, s.sig_cgt), (0x6, 0));
    }

    #[test]
    fn victim_capabilities_and_security() {
        let s = parse_status(VICTIM).unwrap();
        assert_eq!((s.cap_inh, s.cap_amb), (0, 0));
        assert_eq!(s.cap_prm, 0x1ff_feff_ffff);
        assert_eq!((s.cap_eff, s.cap_bnd), (s.cap_prm, s.cap_prm));
        assert!(!s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (0, 0));
        assert_eq!(s.speculation_store_bypass, "vulnerable");
    }

    #[test]
    fn groups_umask_gids_and_seccomp_filters() {
        let s = parse_status(SECCOMP).unwrap();
        assert_eq!(s.groups, [4, 24, 27]);
        assert_eq!(s.umask, Some(0o027));
        assert_eq!(s.gid, [0, 100, 100, 100]);
        assert!(s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (2, 2));
        assert_eq!(s.sig_ign, 1 << (libc::SIGUSR2 - 1));
    }

    #[test]
    fn nested_pid_namespaces_list_every_level() {
        let text = VICTIM
            .replace("NSpid:\t3926", "NSpid:\t3926\t1")
            .replace("NSsid:\t3120", "NSsid:\t3120\t0");
        let s = parse_status(&text).unwrap();
        assert_eq!((s.ns_pid, s.ns_sid), (vec![3926, 1], vec![3120, 0]));
    }

    #[test]
    fn optional_keys_default() {
        let text: String = VICTIM
            .lines()
            .filter(|l| !l.starts_with("Umask") && !l.starts_with("Seccomp"))
            .map(|l| format!("{l}\n"))
            .collect();
        let s = parse_status(&text).unwrap();
        assert_eq!((s.umask, s.seccomp, s.seccomp_filters), (None, 0, 0));
    }

    #[test]
    fn missing_required_key_is_an_error() {
        let text = VICTIM.replace("PPid:", "XPPid:");
        let err = parse_status(&text).unwrap_err();
        assert_eq!(err.to_string(), "parse status line 0: no PPid line");
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let cases = [
            ("SigBlk:\t0000000000004200", "SigBlk:\t00000000000042zz", 41),
            ("Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0", 9),
            ("Umask:\t0022", "Umask:\t0089", 2),
            ("Groups:\t ", "Groups", 12),
        ];
        for (good, bad, line) in cases {
            let err = parse_status(&VICTIM.replace(good, bad)).unwrap_err();
            let ok = matches!(err, ProcError::Parse { line: l, .. } if l == line);
            assert!(ok, "{bad:?}: {err}");
        }
    }
}
