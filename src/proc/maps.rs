//! `/proc/PID/maps` and `/proc/PID/smaps`: the mappings of an address space.
//!
//! Owns the line format `start-end perms offset major:minor inode [path]` and the smaps
//! `Key: value` blocks that follow each such line (only `Rss` and `VmFlags` are kept).
//! It classifies the path column ([`MapPath`]) but does not decide what a mapping means:
//! whether `/dev/zero (deleted)` is shared anonymous memory, or `[vvar]` is skipped, is the
//! caller's business.

use super::{parse_error, ProcError};

/// One line of `maps`, plus the `Rss` and `VmFlags` of its `smaps` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` in the fourth permission column (`p` means private).
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub path: MapPath,
    /// Two-letter codes from smaps `VmFlags:` (empty for plain maps).
    pub vm_flags: Vec<String>,
    /// smaps `Rss:` in kB (0 for plain maps).
    pub rss_kb: u64,
}

/// The path column of a mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapPath {
    /// No path.
    Anonymous,
    /// A file path, as the kernel printed it: may contain spaces; a newline shows as `\012`.
    File(String),
    /// A path that ended in `" (deleted)"`, with that suffix stripped. Shared anonymous
    /// memory shows as `Deleted("/dev/zero")`, SysV shm as `Deleted("/SYSV0000002a")`.
    Deleted(String),
    Heap,
    Stack,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
    /// Any other `[bracketed]` name, brackets included (`[anon:foo]`, `[uprobes]`).
    Other(String),
}

impl MapEntry {
    /// Whether smaps listed `code` (e.g. `"gd"`, `"dd"`) in `VmFlags`.
    pub fn has_flag(&self, code: &str) -> bool {
        self.vm_flags.iter().any(|f| f == code)
    }
}

impl MapPath {
    /// Classifies the path column (already stripped of its leading padding).
    fn parse(column: &str) -> MapPath {
        if column.is_empty() {
            return MapPath::Anonymous;
        }
        if column.starts_with('[') && column.ends_with(']') {
            return MapPath::bracketed(column);
        }
        match column.strip_suffix(" (deleted)") {
            Some(path) => MapPath::Deleted(path.to_string()),
            None => MapPath::File(column.to_string()),
        }
    }

    fn bracketed(name: &str) -> MapPath {
        match name {
            "[heap]" => MapPath::Heap,
            "[stack]" => MapPath::Stack,
            "[vdso]" => MapPath::Vdso,
            "[vvar]" => MapPath::Vvar,
            "[vvar_vclock]" => MapPath::VvarVclock,
            "[vsyscall]" => MapPath::Vsyscall,
            other => MapPath::Other(other.to_string()),
        }
    }
}

/// Parses `/proc/PID/maps` text. Every entry has empty `vm_flags` and `rss_kb` 0.
pub fn parse_maps(text: &str) -> Result<Vec<MapEntry>, ProcError> {
    numbered_lines(text)
        .map(|(n, line)| parse_map_line(line).map_err(|what| parse_error("maps", n, what)))
        .collect()
}

/// Parses `/proc/PID/smaps` text: a maps line per mapping, each followed by `Key: value`
/// lines, of which `Rss` and `VmFlags` are kept.
pub fn parse_smaps(text: &str) -> Result<Vec<MapEntry>, ProcError> {
    let mut entries: Vec<MapEntry> = Vec::new();
    for (n, line) in numbered_lines(text) {
        let result = match entries.last_mut() {
            Some(entry) if is_smaps_field(line) => apply_smaps_field(entry, line),
            None if is_smaps_field(line) => Err("field before the first mapping".to_string()),
            _ => parse_map_line(line).map(|e| entries.push(e)),
        };
        result.map_err(|what| parse_error("smaps", n, what))?;
    }
    Ok(entries)
}

/// Non-empty lines with their 1-based numbers.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.is_empty())
}

/// A smaps field line starts with `Key:`; a mapping line starts with `start-end`.
fn is_smaps_field(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|word| word.ends_with(':'))
}

fn apply_smaps_field(entry: &mut MapEntry, line: &str) -> Result<(), String> {
    let (key, value) = line.split_once(':').ok_or("field without ':'")?;
    match key {
        "Rss" => entry.rss_kb = parse_kb(value)?,
        "VmFlags" => entry.vm_flags = value.split_whitespace().map(String::from).collect(),
        _ => {}
    }
    Ok(())
}

/// `"   8 kB"` → 8.
fn parse_kb(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let number = value.strip_suffix("kB").unwrap_or(value).trim();
    number.parse().map_err(|e| format!("size {value:?}: {e}"))
}

/// Parses one `maps` line; the error says which column was wrong.
fn parse_map_line(line: &str) -> Result<MapEntry, String> {
    let (range, rest) = next_column(line);
    let (perms, rest) = next_column(rest);
    let (offset, rest) = next_column(rest);
    let (dev, rest) = next_column(rest);
    let (inode, rest) = next_column(rest);
    let (start, end) = parse_range(range)?;
    let [read, write, exec, shared] = parse_perms(perms)?;
    let (dev_major, dev_minor) = parse_dev(dev)?;
    Ok(MapEntry {
        start,
        end,
        read,
        write,
        exec,
        shared,
        offset: hex(offset, "offset", u64::from_str_radix)?,
        dev_major,
        dev_minor,
        inode: inode.parse().map_err(|e| format!("inode {inode:?}: {e}"))?,
        path: MapPath::parse(rest.trim_start()),
        vm_flags: Vec::new(),
        rss_kb: 0,
    })
}

/// Splits off the first whitespace-separated column; the rest keeps its spacing.
fn next_column(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// Parses `text` with `from_radix` in base 16; the error names the column.
fn hex<T>(text: &str, what: &str, from_radix: FromRadix<T>) -> Result<T, String> {
    from_radix(text, 16).map_err(|e| format!("{what} {text:?}: {e}"))
}

type FromRadix<T> = fn(&str, u32) -> Result<T, std::num::ParseIntError>;

fn parse_range(range: &str) -> Result<(u64, u64), String> {
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| format!("address range {range:?} has no '-'"))?;
    let start = hex(start, "start address", u64::from_str_radix)?;
    Ok((start, hex(end, "end address", u64::from_str_radix)?))
}

/// `"rw-p"` → `[read, write, exec, shared]`.
fn parse_perms(perms: &str) -> Result<[bool; 4], String> {
    let bad = || format!("permissions {perms:?} are not of the form \"rwxp\"");
    let bytes: [u8; 4] = perms.as_bytes().try_into().map_err(|_| bad())?;
    let mut out = [false; 4];
    for (i, (&got, set)) in bytes.iter().zip(*b"rwxs").enumerate() {
        out[i] = match got {
            b'-' if i < 3 => false,
            b'p' if i == 3 => false,
            c if c == set => true,
            _ => return Err(bad()),
        };
    }
    Ok(out)
}

/// `"fe:01"` → `(0xfe, 0x01)`.
fn parse_dev(dev: &str) -> Result<(u32, u32), String> {
    let (major, minor) = dev
        .split_once(':')
        .ok_or_else(|| format!("device {dev:?} has no ':'"))?;
    let major = hex(major, "device major", u32::from_str_radix)?;
    Ok((major, hex(minor, "device minor", u32::from_str_radix)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// `maps` of a victim holding a file mapping under a path with spaces, a deleted file,
    /// shared anonymous memory, SysV shm and a file whose name contains a newline.
    const VICTIM_MAPS: &str = include_str!("testdata/victim.maps");
    /// `smaps` of the same victim.
    const VICTIM_SMAPS: &str = include_str!("testdata/victim.smaps");

    fn find<'a>(entries: &'a [MapEntry], path: &MapPath) -> &'a MapEntry {
        entries
            .iter()
            .find(|e| &e.path == path)
            .unwrap_or_else(|| panic!("no {path:?}"))
    }

    #[test]
    fn maps_first_line_every_column() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        assert_eq!(entries.len(), 31);
        let exe = MapEntry {
            start: 0x55b6_2f9d_5000,
            end: 0x55b6_2f9d_6000,
            read: true,
            write: false,
            exec: false,
            shared: false,
            offset: 0,
            dev_major: 0xfe,
            dev_minor: 0,
            inode: 10_010_825,
            path: MapPath::File("/tmp/cap/victim".into()),
            vm_flags: vec![],
            rss_kb: 0,
        };
        assert_eq!(entries[0], exe);
    }

    #[test]
    fn maps_path_with_spaces_is_kept_whole() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        let e = find(
            &entries,
            &MapPath::File("/tmp/cap/dir with space/my file".into()),
        );
        assert!(e.read && e.write && !e.exec && e.shared);
        assert_eq!(e.end - e.start, 0x2000);
        assert_eq!(e.inode, 10_010_821);
    }

    #[test]
    fn maps_deleted_paths_lose_the_suffix() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        let zero = find(&entries, &MapPath::Deleted("/dev/zero".into()));
        assert!(zero.shared && zero.write);
        assert_eq!((zero.dev_major, zero.dev_minor, zero.inode), (0, 1, 1025));
        let shm = find(&entries, &MapPath::Deleted("/SYSV00000000".into()));
        assert!(shm.shared);
        let gone = find(&entries, &MapPath::Deleted("/tmp/cap/gone".into()));
        assert!(!gone.shared && !gone.write);
    }

    #[test]
    fn maps_escaped_newline_is_kept_as_is() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        find(&entries, &MapPath::File("/tmp/cap/new\\012line".into()));
    }

    #[test]
    fn maps_special_mappings_in_order() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        let special: Vec<_> = entries
            .iter()
            .filter(|e| !matches!(e.path, MapPath::File(_) | MapPath::Deleted(_)))
            .filter(|e| e.path != MapPath::Anonymous)
            .map(|e| e.path.clone())
            .collect();
        use MapPath::*;
        assert_eq!(special, [Heap, Vvar, VvarVclock, Vdso, Stack, Vsyscall]);
        let vsyscall = entries.last().unwrap();
        assert_eq!(vsyscall.start, 0xffff_ffff_ff60_0000);
        assert!(vsyscall.exec && !vsyscall.read);
    }

    #[test]
    fn maps_vvar_vclock_sits_between_vvar_and_vdso() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        let at = entries
            .iter()
            .position(|e| e.path == MapPath::VvarVclock)
            .unwrap();
        assert_eq!(entries[at - 1].path, MapPath::Vvar);
        assert_eq!(entries[at + 1].path, MapPath::Vdso);
        assert_eq!(entries[at - 1].end, entries[at].start);
        assert_eq!(entries[at].end, entries[at + 1].start);
    }

    #[test]
    fn maps_anonymous_and_guard_pages() {
        let entries = parse_maps(VICTIM_MAPS).unwrap();
        let anon = entries.iter().filter(|e| e.path == MapPath::Anonymous);
        assert_eq!(anon.clone().count(), 5);
        let none = anon.filter(|e| !e.read && !e.write && !e.exec).count();
        assert_eq!(none, 1);
    }

    #[test]
    fn other_bracketed_names_keep_their_brackets() {
        let text = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0      [anon:foo bar]\n\
                    7f0000001000-7f0000002000 r-xp 00000000 00:00 0      [uprobes]\n";
        let entries = parse_maps(text).unwrap();
        assert_eq!(entries[0].path, MapPath::Other("[anon:foo bar]".into()));
        assert_eq!(entries[1].path, MapPath::Other("[uprobes]".into()));
    }

    #[test]
    fn smaps_agrees_with_maps_and_reads_rss_and_flags() {
        let smaps = parse_smaps(VICTIM_SMAPS).unwrap();
        let maps = parse_maps(VICTIM_MAPS).unwrap();
        assert_eq!(smaps.len(), maps.len());
        for (s, m) in smaps.iter().zip(&maps) {
            assert_eq!((s.start, s.end, &s.path), (m.start, m.end, &m.path));
            assert!(!s.vm_flags.is_empty(), "{:?} has flags", s.path);
        }
    }

    #[test]
    fn smaps_vm_flags_of_special_mappings() {
        let smaps = parse_smaps(VICTIM_SMAPS).unwrap();
        let vclock = find(&smaps, &MapPath::VvarVclock);
        assert_eq!(vclock.vm_flags, ["rd", "mr", "pf", "io", "de", "dd"]);
        assert_eq!(vclock.rss_kb, 0);
        let stack = find(&smaps, &MapPath::Stack);
        assert!(stack.has_flag("gd") && stack.has_flag("wr") && !stack.has_flag("sh"));
        assert!(stack.rss_kb > 0);
        let file = find(
            &smaps,
            &MapPath::File("/tmp/cap/dir with space/my file".into()),
        );
        assert!(file.has_flag("sh") && file.has_flag("ms"));
        assert_eq!(file.rss_kb, 4);
    }

    #[test]
    fn smaps_field_before_any_mapping_is_an_error() {
        let err = parse_smaps("Rss:   4 kB\n").unwrap_err();
        assert!(matches!(err, ProcError::Parse { line: 1, .. }), "{err}");
    }

    #[test]
    fn smaps_bad_rss_names_the_line() {
        let rss = VICTIM_SMAPS
            .lines()
            .position(|l| l.starts_with("Rss:"))
            .unwrap();
        let text: Vec<_> = VICTIM_SMAPS
            .lines()
            .enumerate()
            .map(|(i, l)| if i == rss { "Rss:  four kB" } else { l })
            .collect();
        let err = parse_smaps(&text.join("\n")).unwrap_err();
        let named = matches!(&err, ProcError::Parse { line, what, .. } if *line == rss + 1 && what.contains("four"));
        assert!(named, "{err}");
    }

    #[test]
    fn malformed_maps_lines_name_line_and_column() {
        let good = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n";
        let cases = [
            ("7f0000000000 rw-p 00000000 00:00 0", "address range"),
            ("7f00-zz rw-p 00000000 00:00 0", "end address"),
            ("7f00-7f01 rwxq 00000000 00:00 0", "permissions"),
            ("7f00-7f01 rw 00000000 00:00 0", "permissions"),
            ("7f00-7f01 rw-p 0000g000 00:00 0", "offset"),
            ("7f00-7f01 rw-p 00000000 0000 0", "device"),
            ("7f00-7f01 rw-p 00000000 00:00 x", "inode"),
            ("", "address range"),
        ];
        for (bad, column) in cases {
            let text = format!("{good}{good}{bad} \n");
            let err = parse_maps(&text).unwrap_err();
            let ok = matches!(&err, ProcError::Parse { line: 3, what, path } if what.contains(column) && path == "maps");
            assert!(ok, "{bad:?}: {err}");
        }
    }
}
