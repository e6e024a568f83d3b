//! binfmt_misc, made anew at restore as the one instance of its user namespace: that of
//! the host, not one of the tree's (whose entries would be the tree's own). Its entries
//! live as long as the instance is mounted somewhere: when the dumper's namespace mounts
//! it too they are the host's and stay; otherwise they end with the tree, and each is
//! saved (`binfmt.img`) from its file in the instance — interpreter, flags, offset,
//! magic and mask, or extension — to be registered again (`restore/mnt/binfmt.rs`).

use super::{reach, DumpError};
use crate::image::mnt::{BinfmtEntry, BinfmtImage, BinfmtMatch, How, Mount};
use crate::proc::mountinfo::MountInfo;

/// The binfmt_misc mount of the tree whose entries end with it, if any (its id and
/// mount point); refuses one of the tree's own user namespace.
pub(super) fn check(
    root: i32,
    mounts: &[Mount],
    mine: &[MountInfo],
) -> Result<Option<(u32, String)>, DumpError> {
    let Some(m) = (mounts.iter()).find(|m| m.fstype == "binfmt_misc" && m.how == How::New) else {
        return Ok(None);
    };
    let user = |pid: &str| super::super::ns::ns_inode(pid, "user");
    if user(&root.to_string())? != user("self")? {
        return Err(DumpError::unsupported(format!(
            "mount {} at {} is the binfmt_misc of pid {root}'s own user namespace, whose \
             entries stasis does not save; declare it with --external mnt[{}]:KEY",
            m.id, m.mountpoint, m.mountpoint
        )));
    }
    let kept = (mine.iter()).any(|h| h.fstype == "binfmt_misc" && h.dev == m.dev);
    Ok((!kept).then(|| (m.id, m.mountpoint.clone())))
}

/// The entries of the instance mounted at `mountpoint` (the tree is frozen).
pub(super) fn read(root: i32, id: u32, mountpoint: &str) -> Result<BinfmtImage, DumpError> {
    let dir = reach(root, mountpoint);
    let stat = |path: &std::path::Path, source| DumpError::Stat {
        path: path.to_string_lossy().into_owned(),
        source,
    };
    let mut entries = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| stat(&dir, e))? {
        let e = e.map_err(|e| stat(&dir, e))?;
        let name = e.file_name();
        if name == "register" || name == "status" {
            continue;
        }
        let text = std::fs::read(e.path()).map_err(|err| stat(&e.path(), err))?;
        let name = name.into_encoded_bytes();
        let entry = parse(name, &text).ok_or_else(|| {
            DumpError::unsupported(format!(
                "binfmt_misc entry {} at {mountpoint}: unexpected contents {:?}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&text)
            ))
        })?;
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(BinfmtImage { mount: id, entries })
}

/// An entry from its file: `enabled|disabled`, `interpreter PATH`, `flags: POCF`, then
/// `extension .EXT` or `offset N`, `magic HEX` and maybe `mask HEX`.
pub fn parse(name: Vec<u8>, text: &[u8]) -> Option<BinfmtEntry> {
    let (status, rest) = line(text)?;
    let enabled = match status {
        b"enabled" => true,
        b"disabled" => false,
        _ => return None,
    };
    let (interp, rest) = line(rest)?;
    let interpreter = interp.strip_prefix(b"interpreter ")?.to_vec();
    let (flags, rest) = line(rest)?;
    let flags = String::from_utf8(flags.strip_prefix(b"flags: ")?.to_vec()).ok()?;
    let matcher = match rest.strip_prefix(b"extension .") {
        // The extension is the rest (it may hold any byte but `/`), less the last newline.
        Some(ext) => BinfmtMatch::Extension(ext.strip_suffix(b"\n")?.to_vec()),
        None => magic(rest)?,
    };
    Some(BinfmtEntry {
        name,
        enabled,
        interpreter,
        flags,
        matcher,
    })
}

fn magic(text: &[u8]) -> Option<BinfmtMatch> {
    let (offset, rest) = line(text)?;
    let offset = std::str::from_utf8(offset.strip_prefix(b"offset ")?)
        .ok()?
        .parse()
        .ok()?;
    let (magic, rest) = line(rest)?;
    let magic = unhex(magic.strip_prefix(b"magic ")?)?;
    let mask = match line(rest) {
        Some((mask, _)) if !mask.is_empty() => Some(unhex(mask.strip_prefix(b"mask ")?)?),
        _ => None,
    };
    Some(BinfmtMatch::Magic {
        offset,
        magic,
        mask,
    })
}

fn line(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = text.iter().position(|&b| b == b'\n')?;
    Some((&text[..at], &text[at + 1..]))
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16);
    (hex.len() % 2 == 0).then_some(())?;
    (hex.chunks(2))
        .map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_magic_and_extension_entries() {
        let m = parse(
            b"m".to_vec(),
            b"disabled\ninterpreter /bin/i\nflags: OCP\noffset 12\nmagic 00ff\nmask 0f0f\n",
        )
        .unwrap();
        assert!(!m.enabled);
        assert_eq!(m.interpreter, b"/bin/i");
        assert_eq!(m.flags, "OCP");
        let magic = BinfmtMatch::Magic {
            offset: 12,
            magic: vec![0, 0xff],
            mask: Some(vec![0x0f, 0x0f]),
        };
        assert_eq!(m.matcher, magic);
        let e = parse(
            b"e".to_vec(),
            b"enabled\ninterpreter /bin/bash\nflags: \nextension .a:\nb\n",
        )
        .unwrap();
        assert!(e.enabled && e.flags.is_empty());
        assert_eq!(e.matcher, BinfmtMatch::Extension(b"a:\nb".to_vec()));
        let bare = parse(
            b"n".to_vec(),
            b"enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 7f\n",
        );
        let no_mask = BinfmtMatch::Magic {
            offset: 0,
            magic: vec![0x7f],
            mask: None,
        };
        assert_eq!(bare.unwrap().matcher, no_mask);
        assert!(parse(b"x".to_vec(), b"weird\n").is_none());
    }
}
