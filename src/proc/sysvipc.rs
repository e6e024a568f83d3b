//! `/proc/sysvipc/{shm,sem,msg}`: the System V IPC objects of the reader's IPC namespace
//! (the namespace of the thread that opens the file).
//!
//! Owns the table syntax: a header line naming the columns, then one line of numbers per
//! object (`key` signed decimal, `perms` octal, the rest decimal). Columns are found by
//! name, so added columns are harmless. What to do with the objects is `dump/sysv.rs`'s.

use std::collections::HashMap;

use super::{parse_error, ProcError};

/// Identity, owner and mode of one object (`struct ipc_perm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub id: i32,
    /// Mode bits, with `SHM_DEST` (0o1000) and `SHM_LOCKED` (0o2000) for segments.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
}

/// A line of `/proc/sysvipc/shm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shm {
    pub perm: Perm,
    pub size: u64,
    pub nattch: u64,
}

/// A line of `/proc/sysvipc/sem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sem {
    pub perm: Perm,
    pub nsems: u64,
}

/// A line of `/proc/sysvipc/msg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub perm: Perm,
    /// Bytes of message text queued.
    pub cbytes: u64,
    /// Messages queued.
    pub qnum: u64,
}

/// One object's columns by name.
struct Row<'a> {
    format: &'a str,
    line: usize,
    cols: HashMap<&'a str, &'a str>,
}

impl Row<'_> {
    fn field(&self, name: &str, radix: u32) -> Result<i64, ProcError> {
        let text = self
            .cols
            .get(name)
            .ok_or_else(|| parse_error(self.format, self.line, format!("no column {name}")))?;
        i64::from_str_radix(text, radix).map_err(|_| {
            parse_error(
                self.format,
                self.line,
                format!("{name} is not a number: {text}"),
            )
        })
    }

    fn u64(&self, name: &str) -> Result<u64, ProcError> {
        self.field(name, 10).map(|v| v as u64)
    }

    fn u32(&self, name: &str) -> Result<u32, ProcError> {
        self.field(name, 10).map(|v| v as u32)
    }

    fn perm(&self, id_column: &str) -> Result<Perm, ProcError> {
        Ok(Perm {
            key: self.field("key", 10)? as i32,
            id: self.field(id_column, 10)? as i32,
            mode: self.field("perms", 8)? as u32,
            uid: self.u32("uid")?,
            gid: self.u32("gid")?,
            cuid: self.u32("cuid")?,
            cgid: self.u32("cgid")?,
        })
    }
}

fn rows<'a>(text: &'a str, format: &'a str) -> Result<Vec<Row<'a>>, ProcError> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != names.len() {
            return Err(parse_error(format, i + 1, "not one value per column"));
        }
        let cols = names.iter().copied().zip(values).collect();
        out.push(Row {
            format,
            line: i + 1,
            cols,
        });
    }
    Ok(out)
}

/// Parses `/proc/sysvipc/shm`.
pub fn parse_shm(text: &str) -> Result<Vec<Shm>, ProcError> {
    rows(text, "sysvipc/shm")?
        .iter()
        .map(|r| {
            Ok(Shm {
                perm: r.perm("shmid")?,
                size: r.u64("size")?,
                nattch: r.u64("nattch")?,
            })
        })
        .collect()
}

/// Parses `/proc/sysvipc/sem`.
pub fn parse_sem(text: &str) -> Result<Vec<Sem>, ProcError> {
    rows(text, "sysvipc/sem")?
        .iter()
        .map(|r| {
            Ok(Sem {
                perm: r.perm("semid")?,
                nsems: r.u64("nsems")?,
            })
        })
        .collect()
}

/// Parses `/proc/sysvipc/msg`.
pub fn parse_msg(text: &str) -> Result<Vec<Msg>, ProcError> {
    rows(text, "sysvipc/msg")?
        .iter()
        .map(|r| {
            Ok(Msg {
                perm: r.perm("msqid")?,
                cbytes: r.u64("cbytes")?,
                qnum: r.u64("qnum")?,
            })
        })
        .collect()
}

/// Reads `/proc/sysvipc/NAME` (in the calling thread's IPC namespace) and parses it.
pub fn read<T>(
    name: &str,
    parse: fn(&str) -> Result<Vec<T>, ProcError>,
) -> Result<Vec<T>, ProcError> {
    let path = std::path::PathBuf::from(format!("/proc/sysvipc/{name}"));
    let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ProcError::Parse { line, what, .. } => ProcError::Parse {
            path: path.display().to_string(),
            line,
            what,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
         0          3  1640                 10000 31075 31075      1  1000   100     0     0 1796564213          0 1796564213                     0                     0
 -559038737        131  2600                  4096     5     6      0     0     0     7     8          0          0 1796564213                  4096                     0
";

    #[test]
    fn shm_lines_keep_the_destroyed_and_locked_bits_and_signed_keys() {
        let s = parse_shm(SHM).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].perm,
            Perm {
                key: 0,
                id: 3,
                mode: 0o1640,
                uid: 1000,
                gid: 100,
                cuid: 0,
                cgid: 0
            }
        );
        assert_eq!((s[0].size, s[0].nattch), (10000, 1));
        assert_eq!(s[1].perm.key, 0xdeadbeefu32 as i32);
        assert_eq!(s[1].perm.mode, 0o2600);
        assert_eq!((s[1].perm.cuid, s[1].perm.cgid), (7, 8));
    }

    #[test]
    fn sem_and_msg_lines() {
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n        85          0   600          3     0     0     0     0          0 1796564213\n";
        assert_eq!(parse_sem(sem).unwrap()[0].nsems, 3);
        let msg = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n       102      32768   600          12          2     0     0     0     0     0     0          0          0 1796564213\n";
        let m = parse_msg(msg).unwrap();
        assert_eq!((m[0].perm.id, m[0].cbytes, m[0].qnum), (32768, 12, 2));
    }

    #[test]
    fn an_empty_table_and_a_short_line() {
        assert!(parse_sem("key semid perms\n").unwrap().is_empty());
        assert!(parse_msg("key msqid perms\n1 2\n").is_err());
    }
}
