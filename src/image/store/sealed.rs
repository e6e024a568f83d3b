//! One sealed file: the bytes of an image file cut into chunks of [`CHUNK`] bytes, each
//! compressed (zstd or lz4) and then either encrypted with XChaCha20-Poly1305 or followed
//! by a CRC-32, so that every chunk is decoded and checked on its own as it is read. It
//! owns this byte layout (see `docs/image-format.md`, "Sealed files"), not which files are
//! sealed nor the manifest (`store`).
//!
//! ```text
//! header (40 bytes): magic "\x89STSEAL\n", version u32 = 1, compression u8 (0 none,
//!   1 zstd, 2 lz4, 3 lz4 in blocks), cipher u8 (0 none, 1 XChaCha20-Poly1305), 2 zero bytes,
//!   chunk size u32, head u32 (plain bytes of the head chunk, 0: none), nonce [u8; 16]
//!   (random; zeros without cipher)
//! chunk: plain_len u32, stored_len u32 (bit 31: stored uncompressed, bit 30: the head
//!   chunk: the file's first `head` plain bytes, last before the end chunk), body, and
//!   without cipher a CRC-32 of the chunk's 8 length bytes and body
//! end: a chunk with plain_len 0 and an empty body, then end of file
//! ```
//!
//! With compression 3 (what `--compress lz4` writes since image format 17), a compressed
//! body is the chunk's plain bytes cut into blocks of [`LZ4_BLOCK`] bytes, each an
//! independent lz4 block: first the compressed length of every block (u32 LE each), then
//! the blocks. lz4_flex compresses 64 KiB blocks about 1.3 times faster than one 1 MiB
//! block (its matches reach back 64 KiB at most; a 1 MiB input only adds lookups that
//! miss), while the chunk stays the unit that is checked and decoded at restore.
//! Compression 2 (one lz4 block per chunk) is still read.
//!
//! With the cipher, the body is the ciphertext and its 16-byte tag; the nonce is the
//! file's 16 bytes then the chunk's index (u64 LE), the associated data the file header,
//! the file's name and the chunk's 8 length bytes: a chunk moved, dropped, taken from
//! another file or another image, or an end chunk forged, fails authentication.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::indexed::{self, Indexed};
use super::keys::random_bytes;

/// Plain bytes per chunk (every chunk but the last holds exactly this many).
pub const CHUNK: usize = 1 << 20;
/// Plain bytes per lz4 block of a chunk (compression 3; only the last may be shorter).
pub const LZ4_BLOCK: usize = 64 << 10;
/// lz4 acceleration of the encoder (C liblz4's `LZ4_compress_fast`; 1 is lz4's default).
/// On a Python heap's pages, 64 KiB blocks: lz4_flex 0.98–1.13 GB/s (ratio 0.257–0.269),
/// liblz4 at 1 the same, at 2 1.21–1.24 GB/s (0.262–0.273), at 3 1.27–1.30 (0.264–0.276),
/// at 4 slower again and larger (0.298). Any acceleration writes plain lz4 blocks.
const LZ4_ACCELERATION: i32 = 2;
/// Compression code of one lz4 block per chunk (read only).
const LZ4_WHOLE: u8 = 2;
/// Compression code of lz4 in [`LZ4_BLOCK`] blocks.
const LZ4_BLOCKS: u8 = 3;
/// The largest chunk size a reader accepts.
const MAX_CHUNK: u32 = 16 << 20;
const MAGIC: [u8; 8] = *b"\x89STSEAL\n";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
const RAW: u32 = 1 << 31;
/// Bit 30 of `stored_len`: the head chunk (the plain bytes before the data).
const HEAD: u32 = 1 << 30;
const FLAGS: u32 = RAW | HEAD;
const TAG_LEN: usize = 16;
/// What BLAKE3 `derive_key` context turns the secret into the file cipher's key.
pub const CIPHER_CONTEXT: &str = "stasis 2026-12 image file encryption";

/// How page data and records are compressed (`dump --compress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    #[default]
    None,
    /// zstd at this level (1..=19; 3 by default).
    Zstd {
        level: i32,
    },
    Lz4,
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd { .. } => 1,
            Compression::Lz4 => LZ4_BLOCKS,
        }
    }
}

/// The key of the file cipher.
pub type CipherKey = [u8; 32];

/// What sealing produced: the sealed file's length and BLAKE3 digest, and the plain length.
pub struct Sealed {
    pub len: u64,
    pub digest: [u8; 32],
    pub plain_len: u64,
}

/// Writes `src` sealed into `dst` (created, mode 0600). `name` is the file's name in the
/// image, bound into every chunk's authentication.
pub fn seal(
    src: &Path,
    dst: &Path,
    name: &str,
    compression: Compression,
    key: Option<&CipherKey>,
) -> Result<Sealed, StoreError> {
    let input = File::open(src).map_err(StoreError::io("open", src))?;
    let out = super::create_private(dst)?;
    let mut w = Writer::new(
        BufWriter::with_capacity(CHUNK, out),
        name,
        compression,
        key,
        0,
    )?;
    let mut input = BufReader::with_capacity(0, input);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut input, &mut buf).map_err(StoreError::io("read", src))?;
        if n == 0 {
            break;
        }
        w.chunk(&buf[..n]).map_err(StoreError::io("write", dst))?;
    }
    let (out, sealed) = w.finish().map_err(StoreError::io("write", dst))?;
    out.into_inner()
        .map_err(|e| StoreError::io("write", dst)(e.into_error()))?;
    Ok(sealed)
}

/// A pages file sealed as it is written (`dump` with a store option): the data in
/// chunks of [`CHUNK`] bytes, compressed and encrypted by the thread that writes them,
/// then the head chunk (the pages header and padding, known only at the end: the plain
/// file's first [`PAGES_HEAD`] bytes), then the end chunk.
pub struct PagesSeal {
    w: Writer<BufWriter<File>>,
    stage: Vec<u8>,
    name: String,
    done: super::Sealed,
}

/// The plain bytes before a pages file's data (`pages::PAGES_DATA_OFFSET`).
pub const PAGES_HEAD: usize = 4096;

impl PagesSeal {
    /// Starts the sealed pages file on `file` (new, empty), named `name` in the image.
    pub fn new(file: File, name: &str, how: &super::PagesSealing) -> Result<Self, StoreError> {
        let out = BufWriter::with_capacity(CHUNK, file);
        let key = how.key.as_ref();
        let w = Writer::new(out, name, how.compression, key, PAGES_HEAD as u32)?;
        Ok(PagesSeal {
            w,
            stage: Vec::with_capacity(CHUNK),
            name: name.into(),
            done: how.done.clone(),
        })
    }

    /// Appends data; full chunks are sealed and written.
    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.stage.is_empty() && data.len() >= CHUNK {
                self.w.chunk(&data[..CHUNK])?;
                data = &data[CHUNK..];
                continue;
            }
            let take = (CHUNK - self.stage.len()).min(data.len());
            self.stage.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.stage.len() == CHUNK {
                let stage = std::mem::take(&mut self.stage);
                self.w.chunk(&stage)?;
                self.stage = stage;
                self.stage.clear();
            }
        }
        Ok(())
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        self.w.out.get_ref()
    }

    /// Seals what is staged, the head chunk holding `head`, the end chunk; leaves the
    /// file's length and digest for `seal_dir`.
    pub fn finish(mut self, head: &[u8]) -> std::io::Result<()> {
        if !self.stage.is_empty() {
            let stage = std::mem::take(&mut self.stage);
            self.w.chunk(&stage)?;
        }
        self.w.plain_len += head.len() as u64;
        self.w.raw(head, HEAD)?;
        let (mut out, sealed) = self.w.finish()?;
        out.flush()?;
        if let Ok(mut done) = self.done.lock() {
            done.push((self.name, sealed));
        }
        Ok(())
    }
}

/// Length, BLAKE3 and plain length of a sealed file (one `PagesSeal` wrote), from its
/// chunk headers; `None` if `path` is not a sealed file.
pub fn survey(path: &Path) -> Result<Option<Sealed>, StoreError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut header = [0u8; HEADER_LEN];
    let n = read_full(&mut &file, &mut header).map_err(StoreError::io("read", path))?;
    if n < HEADER_LEN || header[..8] != MAGIC {
        return Ok(None);
    }
    let len = file.metadata().map_err(StoreError::io("stat", path))?.len();
    let extra = if header[13] == 1 { 0 } else { 4 };
    let (mut at, mut plain_len) = (HEADER_LEN as u64, 0u64);
    while at + 8 <= len {
        let mut lens = [0u8; 8];
        file.read_exact_at(&mut lens, at)
            .map_err(StoreError::io("read", path))?;
        plain_len += u64::from(u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]));
        let stored = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) & !FLAGS;
        at += 8 + u64::from(stored) + extra;
    }
    let mut hash = blake3::Hasher::new();
    let mut whole = File::open(path).map_err(StoreError::io("open", path))?;
    std::io::copy(&mut whole, &mut hash).map_err(StoreError::io("read", path))?;
    Ok(Some(Sealed {
        len,
        digest: *hash.finalize().as_bytes(),
        plain_len,
    }))
}

/// Reads until `buf` is full or the input ends; returns how much it read.
pub fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Compresses and encrypts chunks onto `out`, hashing what it writes.
struct Writer<W: Write> {
    out: W,
    header: [u8; HEADER_LEN],
    name: Vec<u8>,
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    cipher: Option<XChaCha20Poly1305>,
    index: u64,
    hash: blake3::Hasher,
    len: u64,
    plain_len: u64,
    body: Vec<u8>,
}

impl<W: Write> Writer<W> {
    fn new(
        out: W,
        name: &str,
        compression: Compression,
        key: Option<&CipherKey>,
        head: u32,
    ) -> Result<Self, StoreError> {
        let mut header = [0u8; HEADER_LEN];
        header[20..24].copy_from_slice(&head.to_le_bytes());
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12] = compression.code();
        header[13] = u8::from(key.is_some());
        header[16..20].copy_from_slice(&(CHUNK as u32).to_le_bytes());
        if key.is_some() {
            random_bytes(&mut header[24..40])?;
        }
        let zstd = match compression {
            Compression::Zstd { level } => Some(zstd::bulk::Compressor::new(level).map_err(
                |source| StoreError::Codec {
                    what: "zstd",
                    source,
                },
            )?),
            _ => None,
        };
        let cipher = key.map(|k| XChaCha20Poly1305::new(k.into()));
        let mut w = Writer {
            out,
            header,
            name: name.as_bytes().to_vec(),
            compression,
            zstd,
            cipher,
            index: 0,
            hash: blake3::Hasher::new(),
            len: 0,
            plain_len: 0,
            body: Vec::with_capacity(CHUNK + CHUNK / 64 + 64),
        };
        w.emit(&header).map_err(StoreError::io("write", name))?;
        Ok(w)
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// One chunk of plain bytes (at most [`CHUNK`]; only the last one may be shorter).
    fn chunk(&mut self, plain: &[u8]) -> std::io::Result<()> {
        self.plain_len += plain.len() as u64;
        let mut body = std::mem::take(&mut self.body);
        let r = match self.compress(plain, &mut body) {
            Ok(Some(n)) => self.put(plain.len() as u32, 0, &mut body[..n]),
            Ok(None) => {
                self.body = body;
                return self.raw(plain, 0);
            }
            Err(e) => Err(e),
        };
        self.body = body;
        r
    }

    /// Compresses `plain` into `body`; the compressed length, or `None` when that would
    /// not make it smaller. `body` is only grown (its bytes are overwritten, not zeroed
    /// again for every chunk).
    fn compress(&mut self, plain: &[u8], body: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
        let n = match self.compression {
            Compression::None => return Ok(None),
            Compression::Lz4 => lz4_blocks(plain, body)?,
            Compression::Zstd { .. } => {
                body.clear();
                body.reserve(zstd::zstd_safe::compress_bound(plain.len()));
                if let Some(z) = self.zstd.as_mut() {
                    z.compress_to_buffer(plain, body)?;
                }
                body.len()
            }
        };
        Ok((n + TAG_LEN < plain.len()).then_some(n))
    }

    /// Writes `plain` as a chunk stored uncompressed (flags RAW and `flags`): without
    /// cipher straight from `plain`, with it through `body` (encrypted in place).
    fn raw(&mut self, plain: &[u8], flags: u32) -> std::io::Result<()> {
        let (len, flags) = (plain.len() as u32, RAW | flags);
        if self.cipher.is_none() {
            let lens = self.lens(len, plain.len(), flags);
            return self.put_checked(&lens, plain);
        }
        let mut body = std::mem::take(&mut self.body);
        if body.len() < plain.len() {
            body.resize(plain.len(), 0);
        }
        body[..plain.len()].copy_from_slice(plain);
        let r = self.put(len, flags, &mut body[..plain.len()]);
        self.body = body;
        r
    }

    /// The chunk's 8 length bytes: plain length, stored length (with the tag) and flags.
    fn lens(&self, plain_len: u32, body_len: usize, flags: u32) -> [u8; 8] {
        let sealed = (body_len + self.cipher.as_ref().map_or(0, |_| TAG_LEN)) as u32;
        let mut lens = [0u8; 8];
        lens[..4].copy_from_slice(&plain_len.to_le_bytes());
        lens[4..].copy_from_slice(&(sealed | flags).to_le_bytes());
        lens
    }

    /// Writes chunk `self.index` whose stored bytes are `body`: lengths, body (encrypted
    /// in place, then its tag; or followed by its crc), each piece written as it is (no
    /// copy of the chunk into a frame).
    fn put(&mut self, plain_len: u32, flags: u32, body: &mut [u8]) -> std::io::Result<()> {
        let lens = self.lens(plain_len, body.len(), flags);
        let Some(cipher) = &self.cipher else {
            return self.put_checked(&lens, body);
        };
        let nonce = nonce(&self.header, self.index);
        let aad = aad(&self.header, &self.name, &lens);
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &aad, body)
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        self.emit(&lens)?;
        self.emit(body)?;
        self.emit(&tag)?;
        self.index += 1;
        Ok(())
    }

    /// Without cipher: lengths, body, CRC-32 of both.
    fn put_checked(&mut self, lens: &[u8; 8], body: &[u8]) -> std::io::Result<()> {
        let mut crc = crate::sys::cpu::crc32();
        crc.update(lens);
        crc.update(body);
        self.emit(lens)?;
        self.emit(body)?;
        self.emit(&crc.finalize().to_le_bytes())?;
        self.index += 1;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<(W, Sealed)> {
        self.raw(&[], 0)?;
        let sealed = Sealed {
            len: self.len,
            digest: *self.hash.finalize().as_bytes(),
            plain_len: self.plain_len,
        };
        Ok((self.out, sealed))
    }
}

/// Compresses `plain` into `body` as independent lz4 blocks of [`LZ4_BLOCK`] plain bytes
/// (compression 3): the compressed length of each (u32 LE), then the blocks. Returns the
/// length written; `body` grows to the worst case once and is then reused as it is.
///
/// Encoded by C liblz4 (the `lz4` crate) at [`LZ4_ACCELERATION`], decoded by lz4_flex
/// (safe Rust, bounds-checked: the decoder is what sees untrusted bytes): lz4_flex has no
/// acceleration, and at lz4's default both encode this data at the same speed.
fn lz4_blocks(plain: &[u8], body: &mut Vec<u8>) -> std::io::Result<usize> {
    let blocks = plain.len().div_ceil(LZ4_BLOCK);
    let table = 4 * blocks;
    let worst = table + blocks * lz4_flex::block::get_maximum_output_size(LZ4_BLOCK);
    if body.len() < worst {
        body.resize(worst, 0);
    }
    let mut at = table;
    for (i, block) in plain.chunks(LZ4_BLOCK).enumerate() {
        let fast = Some(lz4::block::CompressionMode::FAST(LZ4_ACCELERATION));
        let n = lz4::block::compress_to_buffer(block, fast, false, &mut body[at..])?;
        body[4 * i..4 * i + 4].copy_from_slice(&(n as u32).to_le_bytes());
        at += n;
    }
    Ok(at)
}

/// Decodes a compression-3 body (see [`lz4_blocks`]) into `plain` (its plain length);
/// `None` unless the table, the blocks and the lengths all agree.
fn lz4_unblock(body: &[u8], plain: &mut [u8]) -> Option<()> {
    let table = 4 * plain.len().div_ceil(LZ4_BLOCK);
    let (lens, mut rest) = (body.get(..table)?, body.get(table..)?);
    for (len, out) in lens.chunks_exact(4).zip(plain.chunks_mut(LZ4_BLOCK)) {
        let n = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let block = rest.get(..n)?;
        rest = &rest[n..];
        if lz4_flex::block::decompress_into(block, out).ok()? != out.len() {
            return None;
        }
    }
    rest.is_empty().then_some(())
}

fn nonce(header: &[u8; HEADER_LEN], index: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(&header[24..40]);
    n[16..].copy_from_slice(&index.to_le_bytes());
    n.into()
}

fn aad(header: &[u8; HEADER_LEN], name: &[u8], lens: &[u8; 8]) -> Vec<u8> {
    [&header[..], name, lens].concat()
}

/// What the manifest promises of a sealed file.
pub struct Expect {
    pub len: u64,
    pub digest: [u8; 32],
    pub plain_len: u64,
}

/// Reads the sealed `src`, checking every chunk, and writes the plain bytes to `dst`
/// (created, mode 0600); then checks the length and digest against `expect`.
pub fn unseal(
    src: &Path,
    dst: &Path,
    name: &str,
    key: Option<&CipherKey>,
    expect: &Expect,
) -> Result<(), StoreError> {
    let file = File::open(src).map_err(StoreError::io("open", src))?;
    let out = super::create_private(dst)?;
    let mut out = BufWriter::with_capacity(CHUNK, out);
    let mut r = Reader::new(Hashing::new(file), src, name, key)?;
    // Data chunks follow the head's place; the head chunk is written into it.
    let write = |e| StoreError::io("write", dst)(e);
    std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(r.head.into())).map_err(write)?;
    let mut plain = Vec::with_capacity(CHUNK);
    while let Some(head) = r.next(&mut plain)? {
        if head {
            std::os::unix::fs::FileExt::write_all_at(out.get_ref(), &plain, 0).map_err(write)?;
        } else {
            out.write_all(&plain).map_err(write)?;
        }
    }
    out.flush().map_err(write)?;
    r.check(expect)
}

/// Verifies the sealed pages file `src` whole as [`unseal`] does (its framing, its head
/// chunk, its length and digest against `expect`) without decoding its data chunks:
/// their places are returned, for `Indexed::decode` to decode each where it is needed,
/// checked again then (authenticated, or against the BLAKE3 of its bytes taken here).
/// The plain file's first [`PAGES_HEAD`] bytes (the pages header) are decoded here.
pub fn index(
    src: &Path,
    name: &str,
    key: Option<&CipherKey>,
    expect: &Expect,
) -> Result<Indexed, StoreError> {
    let file = File::open(src).map_err(StoreError::io("open", src))?;
    let mut r = Reader::new(Hashing::new(file), src, name, key)?;
    r.survey = Some((PAGES_HEAD as u64, Vec::new()));
    let mut prefix = vec![0u8; PAGES_HEAD];
    let mut plain = Vec::with_capacity(CHUNK);
    loop {
        let before = r.data_len;
        let Some(head) = r.next(&mut plain)? else {
            break;
        };
        let start = if head { 0 } else { u64::from(r.head) + before } as usize;
        if start < PAGES_HEAD && !plain.is_empty() {
            let n = (PAGES_HEAD - start).min(plain.len());
            prefix[start..start + n].copy_from_slice(&plain[..n]);
        }
    }
    let chunks = r.survey.take().map(|(_, c)| c).unwrap_or_default();
    let (header, plain_len) = (r.header, r.plain_len);
    r.check(expect)?;
    prefix.truncate(plain_len.min(PAGES_HEAD as u64) as usize);
    Ok(Indexed::new(
        src, name, header, key, chunks, prefix, plain_len,
    ))
}

/// Counts and hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: blake3::Hasher,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        let hash = blake3::Hasher::new();
        Hashing {
            inner,
            hash,
            len: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Decodes and checks chunks one by one.
struct Reader<'a, R: Read> {
    input: BufReader<Hashing<R>>,
    path: &'a Path,
    header: [u8; HEADER_LEN],
    name: &'a [u8],
    chunk_size: u32,
    /// Plain bytes of the head chunk (0: none).
    head: u32,
    head_seen: bool,
    compression: u8,
    cipher: Option<XChaCha20Poly1305>,
    index: u64,
    plain_len: u64,
    body: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Offset in the sealed file of the next chunk.
    at: u64,
    /// Plain bytes of the data chunks so far.
    data_len: u64,
    /// Surveying (`indexed::index`): data chunks from this plain offset on are only
    /// recorded here, not decoded.
    survey: Option<(u64, Vec<indexed::ChunkAt>)>,
}

impl<'a, R: Read> Reader<'a, R> {
    fn new(
        input: Hashing<R>,
        path: &'a Path,
        name: &'a str,
        key: Option<&CipherKey>,
    ) -> Result<Self, StoreError> {
        let mut input = BufReader::with_capacity(CHUNK, input);
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut input, &mut header).map_err(StoreError::io("read", path))?;
        let header = check_header(header, n, path, key.is_some())?;
        let chunk_size = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        Ok(Reader {
            input,
            path,
            header,
            name: name.as_bytes(),
            chunk_size,
            head: u32::from_le_bytes([header[20], header[21], header[22], header[23]]),
            head_seen: false,
            compression: header[12],
            cipher: key.map(|k| XChaCha20Poly1305::new(k.into())),
            index: 0,
            plain_len: 0,
            body: Vec::with_capacity(CHUNK),
            zstd: decompressor(header[12])?,
            at: HEADER_LEN as u64,
            data_len: 0,
            survey: None,
        })
    }

    fn fail(&self, what: &'static str) -> StoreError {
        StoreError::Chunk {
            path: self.path.into(),
            chunk: self.index,
            what,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        let n = read_full(&mut self.input, buf).map_err(StoreError::io("read", self.path))?;
        if n < buf.len() {
            return Err(self.fail("truncated: the file ends inside this chunk"));
        }
        self.at += n as u64;
        Ok(())
    }

    /// The next chunk's plain bytes into `plain`, and whether it is the head chunk; `None`
    /// at the (checked) end chunk. A data chunk only surveyed leaves `plain` empty.
    fn next(&mut self, plain: &mut Vec<u8>) -> Result<Option<bool>, StoreError> {
        let at = self.at;
        let mut lens = [0u8; 8];
        self.read_exact(&mut lens)?;
        let plain_len = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]);
        let stored = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]);
        let (raw, head) = (stored & RAW != 0, stored & HEAD != 0);
        let stored = (stored & !FLAGS) as usize;
        let after_head = self.head_seen && plain_len != 0;
        if after_head || head && (self.head == 0 || plain_len != self.head) {
            return Err(self.fail("misplaced head chunk"));
        }
        if plain_len > self.chunk_size || stored > self.chunk_size as usize + 4096 {
            return Err(self.fail("impossible length"));
        }
        self.body.resize(stored, 0);
        let mut body = std::mem::take(&mut self.body);
        self.read_exact(&mut body)?;
        let mut crc = [0u8; 4];
        if self.cipher.is_none() {
            self.read_exact(&mut crc)?;
        }
        let start = if head {
            0
        } else {
            u64::from(self.head) + self.data_len
        };
        let chunk = Chunk { lens, raw, crc };
        match &mut self.survey {
            Some((from, chunks)) if !head && plain_len != 0 => {
                let check = self.cipher.is_none();
                let c = indexed::ChunkAt::new(at, self.index, &chunk, &body, start, check);
                chunks.push(c);
                if start < *from {
                    let body = self.open(&chunk, body)?;
                    self.decode(&body, plain_len, raw, plain)?;
                    self.body = body;
                } else {
                    plain.clear();
                    self.body = body;
                }
            }
            _ => {
                let body = self.open(&chunk, body)?;
                self.decode(&body, plain_len, raw, plain)?;
                self.body = body;
            }
        }
        self.index += 1;
        if plain_len == 0 {
            if self.head != 0 && !self.head_seen {
                return Err(self.fail("the head chunk is missing"));
            }
            return self.at_end().map(|()| None);
        }
        self.head_seen |= head;
        self.plain_len += u64::from(plain_len);
        if !head {
            self.data_len += u64::from(plain_len);
        }
        Ok(Some(head))
    }

    /// Authenticates and decrypts the body, or checks its CRC-32; returns the stored bytes.
    fn open(&self, chunk: &Chunk, body: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let keyed = self.cipher.as_ref().map(|c| (c, &self.header, self.name));
        open_chunk(keyed, self.index, chunk, body).map_err(|what| self.fail(what))
    }

    fn decode(
        &mut self,
        body: &[u8],
        plain_len: u32,
        raw: bool,
        plain: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let r = decode_chunk(
            self.compression,
            self.zstd.as_mut(),
            body,
            plain_len,
            raw,
            plain,
        );
        r.map_err(|what| self.fail(what))
    }

    /// After the end chunk: nothing more in the file.
    fn at_end(&mut self) -> Result<(), StoreError> {
        let mut one = [0u8; 1];
        match read_full(&mut self.input, &mut one).map_err(StoreError::io("read", self.path))? {
            0 => Ok(()),
            _ => Err(StoreError::sealed(self.path, "bytes after the end chunk")),
        }
    }

    /// The whole file against the manifest.
    fn check(self, expect: &Expect) -> Result<(), StoreError> {
        let path = self.path.to_path_buf();
        let hashing = self.input.into_inner();
        if hashing.len != expect.len || self.plain_len != expect.plain_len {
            return Err(StoreError::Mismatch {
                path,
                what: "length",
            });
        }
        if hashing.hash.finalize().as_bytes() != &expect.digest {
            return Err(StoreError::Mismatch {
                path,
                what: "digest",
            });
        }
        Ok(())
    }
}

/// A chunk's framing: its 8 length bytes, whether it is stored uncompressed, and
/// (without cipher) its CRC-32.
pub(super) struct Chunk {
    pub lens: [u8; 8],
    pub raw: bool,
    pub crc: [u8; 4],
}

/// The zstd decompressor a file of compression `code` needs.
pub(super) fn decompressor(
    code: u8,
) -> Result<Option<zstd::bulk::Decompressor<'static>>, StoreError> {
    if code != 1 {
        return Ok(None);
    }
    let z = zstd::bulk::Decompressor::new().map_err(|source| StoreError::Codec {
        what: "zstd",
        source,
    })?;
    Ok(Some(z))
}

/// With the cipher (and the file's header and name), authenticates and decrypts chunk
/// `index`'s body; else checks its CRC-32. Returns the stored (compressed) bytes.
pub(super) fn open_chunk(
    keyed: Option<(&XChaCha20Poly1305, &[u8; HEADER_LEN], &[u8])>,
    index: u64,
    chunk: &Chunk,
    mut body: Vec<u8>,
) -> Result<Vec<u8>, &'static str> {
    if let Some((cipher, header, name)) = keyed {
        if body.len() < TAG_LEN {
            return Err("impossible length");
        }
        let tag = Tag::clone_from_slice(&body[body.len() - TAG_LEN..]);
        body.truncate(body.len() - TAG_LEN);
        let nonce = nonce(header, index);
        let aad = aad(header, name, &chunk.lens);
        return match cipher.decrypt_in_place_detached(&nonce, &aad, &mut body, &tag) {
            Ok(()) => Ok(body),
            Err(_) => Err("fails authentication: altered, or another key"),
        };
    }
    let mut sum = crate::sys::cpu::crc32();
    sum.update(&chunk.lens);
    sum.update(&body);
    if sum.finalize() != u32::from_le_bytes(chunk.crc) {
        return Err("checksum mismatch");
    }
    Ok(body)
}

/// Decompresses `body` into `plain` (exactly `plain_len` bytes), or copies it if stored
/// uncompressed.
pub(super) fn decode_chunk(
    compression: u8,
    zstd: Option<&mut zstd::bulk::Decompressor<'static>>,
    body: &[u8],
    plain_len: u32,
    raw: bool,
    plain: &mut Vec<u8>,
) -> Result<(), &'static str> {
    if raw || compression == 0 {
        plain.clear();
        if body.len() != plain_len as usize {
            return Err("stored length differs from the plain length");
        }
        plain.extend_from_slice(body);
        return Ok(());
    }
    // Every byte is written by the decompressor: only a longer buffer needs zeroing.
    plain.resize(plain_len as usize, 0);
    let n = match (compression, zstd) {
        (1, Some(z)) => z.decompress_to_buffer(body, plain).ok(),
        (LZ4_WHOLE, _) => lz4_flex::block::decompress_into(body, plain).ok(),
        (LZ4_BLOCKS, _) => lz4_unblock(body, plain).map(|()| plain.len()),
        _ => None,
    };
    if n != Some(plain_len as usize) {
        return Err("does not decompress to its plain length");
    }
    Ok(())
}

fn check_header(
    header: [u8; HEADER_LEN],
    n: usize,
    path: &Path,
    keyed: bool,
) -> Result<[u8; HEADER_LEN], StoreError> {
    if n < HEADER_LEN || header[..8] != MAGIC {
        return Err(StoreError::sealed(
            path,
            "not a sealed stasis file (bad magic)",
        ));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != VERSION {
        let what = format!("sealed format version {version}, this stasis reads {VERSION}");
        return Err(StoreError::sealed(path, what));
    }
    let chunk = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    let head = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    let zero = header[14..16].iter().all(|&b| b == 0);
    let sizes = chunk == 0 || chunk > MAX_CHUNK || head > chunk;
    if header[12] > LZ4_BLOCKS {
        let what = format!("compression code {} unknown to this stasis", header[12]);
        return Err(StoreError::sealed(path, what));
    }
    if header[13] > 1 || !zero || sizes {
        return Err(StoreError::sealed(path, "malformed sealed file header"));
    }
    if (header[13] == 1) != keyed {
        let what = "the manifest and this file disagree about encryption";
        return Err(StoreError::sealed(path, what));
    }
    Ok(header)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 251) as u8).collect()
    }

    /// A temporary directory and its files `a` (plain), `b` (sealed), `c` (unsealed).
    fn paths() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = |n| dir.path().join(n);
        let (a, b, c) = (p("a"), p("b"), p("c"));
        (dir, a, b, c)
    }

    /// What the manifest would promise of `s`.
    fn expect_of(s: &Sealed) -> Expect {
        Expect {
            len: s.len,
            digest: s.digest,
            plain_len: s.plain_len,
        }
    }

    fn round_trip(c: Compression, key: Option<&CipherKey>) {
        let (_dir, src, mid, dst) = paths();
        let data = sample(CHUNK * 2 + 12345);
        std::fs::write(&src, &data).unwrap();
        let s = seal(&src, &mid, "a", c, key).unwrap();
        let expect = expect_of(&s);
        unseal(&mid, &dst, "a", key, &expect).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        if c != Compression::None {
            assert!(s.len < data.len() as u64 / 2, "{c:?} {}", s.len);
        }
        // A flipped byte anywhere is refused.
        let mut bytes = std::fs::read(&mid).unwrap();
        for at in [0, 13, 50, bytes.len() / 2, bytes.len() - 1] {
            bytes[at] ^= 0x10;
            std::fs::write(&mid, &bytes).unwrap();
            let _ = std::fs::remove_file(&dst);
            assert!(
                unseal(&mid, &dst, "a", key, &expect).is_err(),
                "{c:?} byte {at}"
            );
            bytes[at] ^= 0x10;
        }
        // Truncated.
        std::fs::write(&mid, &bytes[..bytes.len() - 30]).unwrap();
        let _ = std::fs::remove_file(&dst);
        assert!(unseal(&mid, &dst, "a", key, &expect).is_err());
        // Another name.
        std::fs::write(&mid, &bytes).unwrap();
        let _ = std::fs::remove_file(&dst);
        if key.is_some() {
            assert!(unseal(&mid, &dst, "b", key, &expect).is_err());
        }
    }

    #[test]
    fn every_mode_round_trips_and_refuses_damage() {
        let key = [7u8; 32];
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 3 },
        ] {
            round_trip(c, None);
            round_trip(c, Some(&key));
        }
    }

    /// A sealed file as image format 16 wrote it with `--compress lz4`: compression code
    /// 2, one lz4 block per chunk, CRC-32s.
    fn lz4_whole_file(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&[LZ4_WHOLE, 0, 0, 0]);
        out.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        for plain in data.chunks(CHUNK).chain([&[][..]]) {
            let body = match plain.is_empty() {
                true => Vec::new(),
                false => lz4_flex::block::compress(plain),
            };
            let flags = if plain.is_empty() { RAW } else { 0 };
            let mut lens = (plain.len() as u32).to_le_bytes().to_vec();
            lens.extend_from_slice(&(body.len() as u32 | flags).to_le_bytes());
            let mut crc = crate::sys::cpu::crc32();
            crc.update(&lens);
            crc.update(&body);
            out.extend_from_slice(&lens);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc.finalize().to_le_bytes());
        }
        out
    }

    #[test]
    fn lz4_is_written_in_blocks_and_format_16_lz4_is_still_read() {
        let (_dir, src, mid, dst) = paths();
        let data = sample(CHUNK + 3 * LZ4_BLOCK + 100);
        std::fs::write(&src, &data).unwrap();
        let s = seal(&src, &mid, "a", Compression::Lz4, None).unwrap();
        assert_eq!(std::fs::read(&mid).unwrap()[12], LZ4_BLOCKS);
        let old = lz4_whole_file(&data);
        std::fs::write(&mid, &old).unwrap();
        let expect = Expect {
            len: old.len() as u64,
            digest: *blake3::hash(&old).as_bytes(),
            plain_len: s.plain_len,
        };
        unseal(&mid, &dst, "a", None, &expect).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    /// A body whose block table, blocks or lengths disagree is refused (no panic), even
    /// past its checksum (as a forged chunk with a right CRC would be).
    #[test]
    fn inconsistent_lz4_blocks_are_refused() {
        let plain = sample(2 * LZ4_BLOCK + 5);
        let mut body = Vec::new();
        let n = lz4_blocks(&plain, &mut body).unwrap();
        body.truncate(n);
        let mut out = vec![0u8; plain.len()];
        assert_eq!(lz4_unblock(&body, &mut out), Some(()));
        assert_eq!(out, plain);
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(lz4_unblock(&longer, &mut out), None);
        assert_eq!(lz4_unblock(&body[..n - 1], &mut out), None);
        let mut table = body.clone();
        table[0] = table[0].wrapping_add(1);
        assert_eq!(lz4_unblock(&table, &mut out), None);
        assert_eq!(lz4_unblock(&body[..3], &mut out), None);
        let mut short = vec![0u8; plain.len() - 1];
        assert_eq!(lz4_unblock(&body, &mut short), None);
        for at in (0..n).step_by(97) {
            let mut bad = body.clone();
            bad[at] ^= 0x5a;
            let _ = lz4_unblock(&bad, &mut out);
        }
    }

    #[test]
    fn unknown_compression_is_named() {
        let (_dir, src, mid, dst) = paths();
        std::fs::write(&src, sample(5000)).unwrap();
        let s = seal(&src, &mid, "a", Compression::Lz4, None).unwrap();
        let mut bytes = std::fs::read(&mid).unwrap();
        bytes[12] = 9;
        std::fs::write(&mid, &bytes).unwrap();
        let expect = expect_of(&s);
        let err = unseal(&mid, &dst, "a", None, &expect).unwrap_err();
        assert!(
            err.to_string().contains("compression code 9 unknown"),
            "{err}"
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        let (_dir, src, mid, dst) = paths();
        std::fs::write(&src, sample(5000)).unwrap();
        let s = seal(&src, &mid, "a", Compression::Lz4, Some(&[1; 32])).unwrap();
        let expect = expect_of(&s);
        let err = unseal(&mid, &dst, "a", Some(&[2; 32]), &expect).unwrap_err();
        assert!(err.to_string().contains("fails authentication"), "{err}");
    }
}
