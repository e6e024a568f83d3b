//! binfmt_misc entries that ended with the tree (`binfmt.img`, dumped by
//! `dump/mnt/binfmt.rs`), registered again in the new instance once the namespace is
//! built: one write of `:name:type:offset:magic:mask:interpreter:flags` each to its
//! `register` file (with a delimiter none of the fields holds; magic and mask as `\xHH`
//! escapes), then `0` to the entry's file for one that was disabled.
//!
//! Ordering requirements: run by the thread that built the namespace, after its
//! `pivot_root` (paths are the tree's; an `F` entry opens its interpreter there).

use std::io::Write;

use super::unsupported;
use crate::image::mnt::{BinfmtEntry, BinfmtImage, BinfmtMatch, MountsImage};
use crate::restore::RestoreError;

/// Registers every entry of `image` at its mount of `mounts`.
pub fn register(image: &BinfmtImage, mounts: &MountsImage) -> Result<(), RestoreError> {
    let Some(m) = mounts.mounts.iter().find(|m| m.id == image.mount) else {
        return Err(unsupported(format!(
            "binfmt_misc entries of mount {}, which the image does not have",
            image.mount
        )));
    };
    let dir = std::path::Path::new(&m.mountpoint);
    for e in &image.entries {
        let name = String::from_utf8_lossy(&e.name);
        let fail = |what: &str, err: std::io::Error| {
            unsupported(format!(
                "binfmt_misc entry {name} at {}: {what}: {err}",
                m.mountpoint
            ))
        };
        let line = register_line(e).ok_or_else(|| {
            fail(
                "register",
                std::io::Error::other("every delimiter is in a field"),
            )
        })?;
        let mut reg = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("register"))
            .map_err(|err| fail("open register", err))?;
        // One write per entry: the kernel parses each write as a whole.
        let n = reg.write(&line).map_err(|err| fail("register", err))?;
        if n != line.len() {
            return Err(fail("register", std::io::Error::other("short write")));
        }
        if !e.enabled {
            let path =
                dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&e.name));
            std::fs::write(path, b"0").map_err(|err| fail("disable", err))?;
        }
    }
    Ok(())
}

/// The register string of `e`, delimited by a byte no field holds.
pub fn register_line(e: &BinfmtEntry) -> Option<Vec<u8>> {
    let escape = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .flat_map(|x| format!("\\x{x:02x}").into_bytes())
            .collect()
    };
    let (kind, offset, matched, mask) = match &e.matcher {
        BinfmtMatch::Magic {
            offset,
            magic,
            mask,
        } => (
            b'M',
            offset.to_string().into_bytes(),
            escape(magic),
            mask.as_deref().map(escape).unwrap_or_default(),
        ),
        BinfmtMatch::Extension(ext) => (b'E', Vec::new(), ext.clone(), Vec::new()),
    };
    let fields: [&[u8]; 7] = [
        &e.name,
        &[kind],
        &offset,
        &matched,
        &mask,
        &e.interpreter,
        e.flags.as_bytes(),
    ];
    let del =
        (b":|!#,;@%^&*~=+-_.".iter().copied()).find(|d| fields.iter().all(|f| !f.contains(d)))?;
    let mut out = Vec::new();
    for f in fields {
        out.push(del);
        out.extend_from_slice(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lines_escape_magic_and_avoid_delimiters_in_fields() {
        let mut e = BinfmtEntry {
            name: b"m".to_vec(),
            enabled: true,
            interpreter: b"/bin/i".to_vec(),
            flags: "OC".into(),
            matcher: BinfmtMatch::Magic {
                offset: 3,
                magic: vec![0, 0x3a],
                mask: Some(vec![0xff, 0x0f]),
            },
        };
        let line = register_line(&e).unwrap();
        assert_eq!(line, b":m:M:3:\\x00\\x3a:\\xff\\x0f:/bin/i:OC".to_vec());
        e.matcher = BinfmtMatch::Extension(b"a:b".to_vec());
        let line = register_line(&e).unwrap();
        assert_eq!(line, b"|m|E||a:b||/bin/i|OC".to_vec());
    }
}
