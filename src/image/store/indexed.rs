//! A sealed pages file verified whole but not decoded (`sealed::index`): where each data
//! chunk is, so that the restore decodes every chunk straight into the restored memory
//! (`restore/sealed.rs`), in parallel, without a decoded copy of the file. Each chunk is
//! checked again as it is decoded: authenticated with the cipher, or its bytes compared
//! with the BLAKE3 taken when the whole file was verified, so a file changed since then
//! fails the restore (before the tree runs) instead of filling it with other bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;

use super::error::StoreError;
use super::sealed::{decode_chunk, decompressor, open_chunk, Chunk, CipherKey};

/// Length of a sealed file's header.
const HEADER_LEN: usize = 40;
const FLAGS: u32 = 3 << 30;

/// One data chunk of a sealed file.
#[derive(Clone, Debug)]
pub struct ChunkAt {
    /// Offset of its length bytes in the sealed file.
    at: u64,
    /// Its index (the cipher's nonce).
    index: u64,
    lens: [u8; 8],
    /// Offset of its plain bytes in the plain file.
    pub plain_start: u64,
    /// BLAKE3 of its length bytes, body and CRC (files without cipher).
    hash: Option<[u8; 32]>,
}

impl ChunkAt {
    pub(super) fn new(
        at: u64,
        index: u64,
        chunk: &Chunk,
        body: &[u8],
        plain_start: u64,
        hashed: bool,
    ) -> Self {
        let hash = hashed.then(|| frame_hash(&chunk.lens, body, &chunk.crc));
        ChunkAt {
            at,
            index,
            lens: chunk.lens,
            plain_start,
            hash,
        }
    }

    /// Plain bytes of the chunk.
    pub fn plain_len(&self) -> u64 {
        u64::from(u32::from_le_bytes([
            self.lens[0],
            self.lens[1],
            self.lens[2],
            self.lens[3],
        ]))
    }

    fn stored_len(&self) -> usize {
        (u32::from_le_bytes([self.lens[4], self.lens[5], self.lens[6], self.lens[7]]) & !FLAGS)
            as usize
    }

    fn raw(&self) -> bool {
        self.lens[7] & 0x80 != 0
    }
}

fn frame_hash(lens: &[u8; 8], body: &[u8], crc: &[u8; 4]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(lens);
    h.update(body);
    h.update(crc);
    *h.finalize().as_bytes()
}

/// A verified sealed pages file whose data chunks are decoded on demand.
pub struct Indexed {
    path: PathBuf,
    name: String,
    header: [u8; HEADER_LEN],
    cipher: Option<XChaCha20Poly1305>,
    chunks: Vec<ChunkAt>,
    /// The plain file's first bytes (its pages header).
    prefix: Vec<u8>,
    plain_len: u64,
}

impl std::fmt::Debug for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Indexed({}, {} chunks)",
            self.path.display(),
            self.chunks.len()
        )
    }
}

/// Buffers one decoding thread reuses.
pub struct Scratch {
    body: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Indexed {
    pub(super) fn new(
        path: &Path,
        name: &str,
        header: [u8; HEADER_LEN],
        key: Option<&CipherKey>,
        chunks: Vec<ChunkAt>,
        prefix: Vec<u8>,
        plain_len: u64,
    ) -> Self {
        Indexed {
            path: path.into(),
            name: name.into(),
            header,
            cipher: key.map(|k| XChaCha20Poly1305::new(k.into())),
            chunks,
            prefix,
            plain_len,
        }
    }

    /// The sealed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data chunks, in plain order.
    pub fn chunks(&self) -> &[ChunkAt] {
        &self.chunks
    }

    /// The plain file's first bytes (its pages header) and its length.
    pub fn prefix(&self) -> (&[u8], u64) {
        (&self.prefix, self.plain_len)
    }

    /// Buffers for [`Indexed::decode`].
    pub fn scratch(&self) -> Result<Scratch, StoreError> {
        Ok(Scratch {
            body: Vec::new(),
            zstd: decompressor(self.header[12])?,
        })
    }

    /// Reads chunk `i` from `file` (this sealed file, opened by the caller), checks it
    /// again, and decodes its plain bytes into `plain`.
    pub fn decode(
        &self,
        file: &File,
        i: usize,
        s: &mut Scratch,
        plain: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let c = &self.chunks[i];
        let fail = |what| StoreError::Chunk {
            path: self.path.clone(),
            chunk: c.index,
            what,
        };
        let stored = c.stored_len();
        let read = |buf: &mut [u8], at| {
            file.read_exact_at(buf, at)
                .map_err(StoreError::io("read", &self.path))
        };
        let mut chunk = Chunk {
            lens: [0; 8],
            raw: c.raw(),
            crc: [0; 4],
        };
        let mut body = std::mem::take(&mut s.body);
        body.resize(stored, 0);
        read(&mut chunk.lens, c.at)?;
        read(&mut body, c.at + 8)?;
        if self.cipher.is_none() {
            read(&mut chunk.crc, c.at + 8 + stored as u64)?;
        }
        let same = chunk.lens == c.lens
            && c.hash
                .map_or(true, |h| frame_hash(&c.lens, &body, &chunk.crc) == h);
        if !same {
            s.body = body;
            return Err(fail("changed since the image was verified"));
        }
        let keyed = self
            .cipher
            .as_ref()
            .map(|k| (k, &self.header, self.name.as_bytes()));
        let body = open_chunk(keyed, c.index, &chunk, body).map_err(fail)?;
        let plain_len = c.plain_len() as u32;
        let r = decode_chunk(
            self.header[12],
            s.zstd.as_mut(),
            &body,
            plain_len,
            chunk.raw,
            plain,
        );
        s.body = body;
        r.map_err(fail)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::sealed::{index, seal, Compression, Expect, CHUNK};

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 5 % 241) as u8).collect()
    }

    /// Seals a plain file of 2.5 chunks; returns the directory, the sealed path and what
    /// the manifest would hold.
    fn sealed(c: Compression, key: Option<&[u8; 32]>) -> (tempfile::TempDir, Vec<u8>, Expect) {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(CHUNK * 2 + CHUNK / 2);
        std::fs::write(dir.path().join("plain"), &data).unwrap();
        let (src, dst) = (dir.path().join("plain"), dir.path().join("pages-1.img"));
        let s = seal(&src, &dst, "pages-1.img", c, key).unwrap();
        let expect = Expect {
            len: s.len,
            digest: s.digest,
            plain_len: s.plain_len,
        };
        (dir, data, expect)
    }

    /// Every chunk decoded on its own, in any order, gives the plain file back.
    #[test]
    fn chunks_decode_to_the_plain_file() {
        let key = [3u8; 32];
        for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
            for k in [None, Some(&key)] {
                let (dir, data, expect) = sealed(c, k);
                let path = dir.path().join("pages-1.img");
                let ix = index(&path, "pages-1.img", k, &expect).unwrap();
                assert_eq!(ix.prefix().0, &data[..4096]);
                assert_eq!(ix.prefix().1, data.len() as u64);
                let file = std::fs::File::open(&path).unwrap();
                let (mut s, mut plain) = (ix.scratch().unwrap(), Vec::new());
                let mut out = vec![0u8; data.len()];
                for i in (0..ix.chunks().len()).rev() {
                    ix.decode(&file, i, &mut s, &mut plain).unwrap();
                    let at = ix.chunks()[i].plain_start as usize;
                    out[at..at + plain.len()].copy_from_slice(&plain);
                }
                assert_eq!(out, data, "{c:?} keyed {}", k.is_some());
            }
        }
    }

    /// A file altered before the index is refused by it; one altered after, by the
    /// decoding of the altered chunk.
    #[test]
    fn altered_files_are_refused_before_and_after_the_index() {
        let key = [3u8; 32];
        for k in [None, Some(&key)] {
            let (dir, _, expect) = sealed(Compression::Lz4, k);
            let path = dir.path().join("pages-1.img");
            let good = std::fs::read(&path).unwrap();
            let mut bad = good.clone();
            bad[good.len() / 2] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(index(&path, "pages-1.img", k, &expect).is_err());
            std::fs::write(&path, &good).unwrap();
            let ix = index(&path, "pages-1.img", k, &expect).unwrap();
            std::fs::write(&path, &bad).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let (mut s, mut plain) = (ix.scratch().unwrap(), Vec::new());
            let refused = (0..ix.chunks().len())
                .filter(|&i| ix.decode(&file, i, &mut s, &mut plain).is_err())
                .count();
            assert_eq!(refused, 1, "keyed {}", k.is_some());
        }
    }
}
