//! `/proc/PID/mountinfo`: one line per mount of the process's mount namespace, as seen
//! from its root. Pure parser; what a mount means for a dump is `dump/mnt`'s business.
//!
//! Line format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT MNT_OPTS [OPTIONAL...] - FSTYPE
//! SOURCE SUPER_OPTS`, where paths escape space, tab, newline and backslash as `\ooo`.

/// One line of `mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub dev: (u32, u32),
    /// The directory of the filesystem this mount shows (`/` for a whole filesystem).
    pub root: String,
    pub mountpoint: String,
    /// Per-mount options (`rw`/`ro`, `nosuid`, `nodev`, `noexec`, atime modes).
    pub mnt_opts: String,
    /// `shared:N`: the peer group this mount shares events with.
    pub shared: Option<u32>,
    /// `master:N`: the peer group this mount receives events from (a slave).
    pub master: Option<u32>,
    pub unbindable: bool,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options.
    pub super_opts: String,
}

/// The mount of `mounts` that `path` is on: the deepest mount point holding it, the last
/// mounted there.
pub fn holding<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    let on = |mp: &str| {
        let mp = mp.trim_end_matches('/');
        path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
    };
    let deepest = (mounts.iter().filter(|h| on(&h.mountpoint)))
        .map(|h| h.mountpoint.trim_end_matches('/').len())
        .max()?;
    (mounts.iter().rev())
        .find(|h| on(&h.mountpoint) && h.mountpoint.trim_end_matches('/').len() == deepest)
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mountinfo line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: &'static str,
}

/// Parses the whole text of a `mountinfo` file.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    (text.lines().enumerate())
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_line(l).map_err(|what| ParseError { line: i + 1, what }))
        .collect()
}

fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    let (head, tail) = line.split_once(" - ").ok_or("no ' - ' separator")?;
    let mut f = head.split(' ');
    let mut next = |what| f.next().ok_or(what);
    let id = next("no id")?.parse().map_err(|_| "bad id")?;
    let parent = next("no parent")?.parse().map_err(|_| "bad parent id")?;
    let dev = parse_dev(next("no device")?)?;
    let root = unescape(next("no root")?);
    let mountpoint = unescape(next("no mount point")?);
    let mnt_opts = next("no mount options")?.to_string();
    let (mut shared, mut master, mut unbindable) = (None, None, false);
    for tag in f {
        if let Some(n) = tag.strip_prefix("shared:") {
            shared = Some(n.parse().map_err(|_| "bad shared:")?);
        } else if let Some(n) = tag.strip_prefix("master:") {
            master = Some(n.parse().map_err(|_| "bad master:")?);
        } else if tag == "unbindable" {
            unbindable = true;
        }
    }
    let mut t = tail.splitn(3, ' ');
    let fstype = t.next().ok_or("no fs type")?.to_string();
    let source = unescape(t.next().ok_or("no source")?);
    let super_opts = t.next().unwrap_or("").to_string();
    Ok(MountInfo {
        id,
        parent,
        dev,
        root,
        mountpoint,
        mnt_opts,
        shared,
        master,
        unbindable,
        fstype,
        source,
        super_opts,
    })
}

fn parse_dev(s: &str) -> Result<(u32, u32), &'static str> {
    let (a, b) = s.split_once(':').ok_or("bad device")?;
    Ok((
        a.parse().map_err(|_| "bad major")?,
        b.parse().map_err(|_| "bad minor")?,
    ))
}

/// Undoes the kernel's `\ooo` octal escapes.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(o)) => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
        45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw\n\
        50 27 0:40 / /tmp/a\\040b ro,nosuid master:3 unbindable - tmpfs none rw,size=4k\n";

    #[test]
    fn parses_fields_tags_and_escapes() {
        let m = parse(TEXT).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].parent, 1);
        assert_eq!(m[0].dev, (254, 0));
        assert_eq!(m[1].shared, Some(1));
        assert_eq!(m[1].root, "/run/netns");
        assert_eq!(m[2].mountpoint, "/tmp/a b");
        assert_eq!(m[2].master, Some(3));
        assert!(m[2].unbindable);
        assert_eq!(m[2].super_opts, "rw,size=4k");
        assert_eq!(m[2].source, "none");
    }

    #[test]
    fn rejects_a_line_without_separator() {
        let e = parse("1 2 0:1 / / rw\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn the_deepest_last_mount_holds_a_path() {
        let mine = parse(
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
             30 27 0:50 / /tmp rw - tmpfs t rw\n\
             31 27 0:51 / /tmp rw - tmpfs u rw\n\
             32 31 0:52 / /tmp/ab rw - tmpfs v rw\n",
        )
        .unwrap();
        assert_eq!(holding(&mine, "/tmp/a").map(|h| h.id), Some(31));
        assert_eq!(holding(&mine, "/tmp/ab/c").map(|h| h.id), Some(32));
        assert_eq!(holding(&mine, "/etc").map(|h| h.id), Some(27));
    }
}
