//! The checkpoint stream (`dump --stream`, `restore --stream`): every file of an image
//! directory, one after the other, in one byte stream. It owns that container format
//! (`docs/image-format.md`, "Checkpoint stream"), not what the files hold.
//!
//! ```text
//! header:  magic "\x89STSTRM\n", version u32 = 1, 4 zero bytes
//! entry:   tag u8 = 1, name_len u16, name, len u64, data, BLAKE3 of the entry from its tag
//!          through its data (32 bytes)
//! trailer: tag u8 = 2, entries u32, BLAKE3 of every byte of the stream before this digest
//! ```
//!
//! A reader writes each entry into a directory as it comes, and trusts the directory only
//! once the trailer is read and checked and nothing follows it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::error::StoreError;
use super::sealed::read_full;

const MAGIC: [u8; 8] = *b"\x89STSTRM\n";
const VERSION: u32 = 1;
const ENTRY: u8 = 1;
const TRAILER: u8 = 2;
/// The most files a stream may hold.
const MAX_ENTRIES: u32 = 1 << 20;
const COPY: usize = 1 << 20;

/// Writes every regular file of `dir` (in name order) to `out`; returns the bytes written.
pub fn write(dir: &Path, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut w = Out {
        out,
        hash: blake3::Hasher::new(),
        len: 0,
    };
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&[0; 4]);
    w.put(&head)?;
    let names = super::file_names(dir)?;
    for name in &names {
        write_entry(&mut w, &dir.join(name), name)?;
    }
    let mut trailer = vec![TRAILER];
    trailer.extend_from_slice(&(names.len() as u32).to_le_bytes());
    w.put(&trailer)?;
    let digest = *w.hash.finalize().as_bytes();
    w.put(&digest)?;
    w.out
        .flush()
        .map_err(StoreError::io("write", "the stream"))?;
    Ok(w.len)
}

struct Out<'a> {
    out: &'a mut dyn Write,
    hash: blake3::Hasher,
    len: u64,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(StoreError::io("write", "the stream"))
    }
}

fn write_entry(w: &mut Out, path: &Path, name: &str) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let len = file.metadata().map_err(StoreError::io("stat", path))?.len();
    let mut head = vec![ENTRY];
    head.extend_from_slice(&(name.len() as u16).to_le_bytes());
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(&len.to_le_bytes());
    let mut entry = blake3::Hasher::new();
    entry.update(&head);
    w.put(&head)?;
    let (mut buf, mut left) = (vec![0u8; COPY], len);
    while left > 0 {
        let want = left.min(COPY as u64) as usize;
        let n = read_full(&mut file, &mut buf[..want]).map_err(StoreError::io("read", path))?;
        if n < want {
            return Err(StoreError::sealed(path, "changed while it was streamed"));
        }
        entry.update(&buf[..n]);
        w.put(&buf[..n])?;
        left -= n as u64;
    }
    w.put(entry.finalize().as_bytes())
}

/// Reads a stream from `input` into the directory `into` (which must exist and be empty),
/// checking every entry and the trailer; anything wrong is an error and `into` is then
/// not to be used.
pub fn read(input: &mut dyn Read, into: &Path) -> Result<(), StoreError> {
    let mut r = In {
        input: BufReader::with_capacity(COPY, input),
        hash: blake3::Hasher::new(),
    };
    let mut head = [0u8; 16];
    r.take(&mut head, "the header")?;
    if head[..8] != MAGIC {
        return Err(StoreError::stream(
            "not a stasis checkpoint stream (bad magic)",
        ));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION || head[12..] != [0; 4] {
        let what = format!("stream version {version}, this stasis reads {VERSION}");
        return Err(StoreError::stream(what));
    }
    let mut names = BTreeSet::new();
    loop {
        let mut tag = [0u8; 1];
        r.take(&mut tag, "the next entry")?;
        match tag[0] {
            ENTRY if names.len() < MAX_ENTRIES as usize => {
                let name = read_entry(&mut r, into)?;
                if !names.insert(name.clone()) {
                    return Err(StoreError::stream(format!("{name} appears twice")));
                }
            }
            TRAILER => return read_trailer(r, names.len()),
            _ => return Err(StoreError::stream("malformed entry tag")),
        }
    }
}

struct In<'a> {
    input: BufReader<&'a mut dyn Read>,
    hash: blake3::Hasher,
}

impl In<'_> {
    /// Exactly `buf.len()` bytes, or "truncated" naming `what` was being read.
    fn take(&mut self, buf: &mut [u8], what: &str) -> Result<(), StoreError> {
        let n = read_full(&mut self.input, buf).map_err(StoreError::io("read", "the stream"))?;
        if n < buf.len() {
            return Err(StoreError::stream(format!("truncated in {what}")));
        }
        self.hash.update(buf);
        Ok(())
    }
}

fn read_entry(r: &mut In, into: &Path) -> Result<String, StoreError> {
    let mut entry = blake3::Hasher::new();
    entry.update(&[ENTRY]);
    let mut n = [0u8; 2];
    r.take(&mut n, "an entry")?;
    entry.update(&n);
    let mut name = vec![0u8; u16::from_le_bytes(n) as usize];
    r.take(&mut name, "an entry's name")?;
    entry.update(&name);
    let name = String::from_utf8(name)
        .ok()
        .filter(|n| super::plain_name(n))
        .ok_or_else(|| StoreError::stream("an entry's name is not a plain file name"))?;
    let mut len = [0u8; 8];
    r.take(&mut len, &name)?;
    entry.update(&len);
    let path = into.join(&name);
    let mut out = super::create_private(&path)?;
    let (mut buf, mut left) = (vec![0u8; COPY], u64::from_le_bytes(len));
    while left > 0 {
        let want = left.min(COPY as u64) as usize;
        r.take(&mut buf[..want], &name)?;
        entry.update(&buf[..want]);
        out.write_all(&buf[..want])
            .map_err(StoreError::io("write", &path))?;
        left -= want as u64;
    }
    let mut digest = [0u8; 32];
    r.take(&mut digest, &name)?;
    if entry.finalize().as_bytes() != &digest {
        return Err(StoreError::stream(format!("{name}: checksum mismatch")));
    }
    Ok(name)
}

fn read_trailer(mut r: In, entries: usize) -> Result<(), StoreError> {
    let mut count = [0u8; 4];
    r.take(&mut count, "the trailer")?;
    let expected = *r.hash.finalize().as_bytes();
    let mut digest = [0u8; 32];
    let n = read_full(&mut r.input, &mut digest).map_err(StoreError::io("read", "the stream"))?;
    if n < 32 {
        return Err(StoreError::stream("truncated in the trailer"));
    }
    if u32::from_le_bytes(count) as usize != entries || digest != expected {
        return Err(StoreError::stream(
            "the trailer does not match the entries read",
        ));
    }
    let mut more = [0u8; 1];
    match read_full(&mut r.input, &mut more).map_err(StoreError::io("read", "the stream"))? {
        0 => Ok(()),
        _ => Err(StoreError::stream("unexpected bytes after the trailer")),
    }
}

/// Removes what a failed [`read`] left in `into`.
pub fn clear(into: &Path) {
    if let Ok(entries) = fs::read_dir(into) {
        for e in entries.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a.img"), vec![5u8; 3 << 20]).unwrap();
        fs::write(src.path().join("b.img"), b"hello").unwrap();
        let mut bytes = Vec::new();
        write(src.path(), &mut bytes).unwrap();
        let dst = tempfile::tempdir().unwrap();
        read(&mut &bytes[..], dst.path()).unwrap();
        assert_eq!(fs::read(dst.path().join("b.img")).unwrap(), b"hello");
        assert_eq!(fs::read(dst.path().join("a.img")).unwrap().len(), 3 << 20);
        for cut in [0, 10, 100, bytes.len() / 2, bytes.len() - 1] {
            let d = tempfile::tempdir().unwrap();
            let err = read(&mut &bytes[..cut], d.path()).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{cut}: {err}");
        }
        for at in [
            3,
            20,
            30,
            bytes.len() / 2,
            bytes.len() - 40,
            bytes.len() - 2,
        ] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            let d = tempfile::tempdir().unwrap();
            assert!(read(&mut &bad[..], d.path()).is_err(), "{at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let d = tempfile::tempdir().unwrap();
        assert!(read(&mut &longer[..], d.path()).is_err());
    }
}
