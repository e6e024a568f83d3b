//! The raw page data file, `pages-<pid>.img`: a standard header padded with zeros to
//! [`PAGES_DATA_OFFSET`], then whole 4096-byte pages in the order of the mm record's page
//! runs. The header's length is the number of data bytes and its crc32 covers them. This
//! module streams the file out and verifies it; which page goes where is `mm`'s business.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::ImageError;
use super::file::{truncated, Header, Kind, HEADER_LEN};
use super::sink::RemoteSink;
use super::store::sealed::PagesSeal;
use super::store::PagesSealing;
use crate::abi::PAGE_SIZE;
use crate::sys::file::pwrite_all;

/// True if every piece starts on a page boundary in memory (their lengths are whole
/// pages): what `O_DIRECT` needs.
fn page_aligned(pieces: &[&[u8]]) -> bool {
    pieces
        .iter()
        .all(|p| p.as_ptr().align_offset(PAGE_SIZE as usize) == 0)
}

/// Where the first page starts: page aligned, so the data can be mmap'ed.
pub const PAGES_DATA_OFFSET: u64 = 4096;
/// What one read takes when verifying: a buffer that stays in the CPU's cache makes the
/// copy out of the page cache cheaper than larger reads save in calls (tree-50 loads in
/// 2.7 ms instead of 3.2 with 1 MiB, a 512 MiB file in 100 ms instead of 110).
const VERIFY_CHUNK: usize = 128 << 10;
/// Threads verifying one large pages file.
const VERIFY_STREAMS: u64 = 2;
/// Smaller files are verified by one thread: a thread costs more than it saves.
const PARALLEL_VERIFY_MIN: u64 = 64 << 20;
/// `IOV_MAX`.
const MAX_IOVS: usize = 1024;

/// Streams pages into a new pages file, unbuffered: callers hand over large pieces. Until
/// [`PagesWriter::finish`] the header is zeros, so a file left half-written is refused for
/// its bad magic.
pub struct PagesWriter {
    path: PathBuf,
    /// The local file; none when the pages go to a sink.
    out: Option<File>,
    crc: crc32fast::Hasher,
    len: u64,
    /// Sealed as it is written (`create_sealed`): `out` is then unused.
    seal: Option<Box<PagesSeal>>,
    /// Sent to a sink (`image::sink`) as its file `.1` instead of written locally.
    remote: Option<(RemoteSink, u32)>,
    /// A second descriptor of the local file opened with `O_DIRECT` ([`use_direct`]):
    /// page-aligned pieces go through it at their offsets, past the page cache.
    ///
    /// [`use_direct`]: PagesWriter::use_direct
    direct: Option<File>,
}

impl PagesWriter {
    /// Creates (or truncates) `path`, mode 0600: page data is the process's memory.
    pub fn create(path: &Path) -> Result<Self, ImageError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(ImageError::io("create", path))?;
        let mut out = file;
        out.write_all(&[0; PAGES_DATA_OFFSET as usize])
            .map_err(ImageError::io("write", path))?;
        let (path, crc) = (path.to_path_buf(), crate::sys::cpu::crc32());
        Ok(PagesWriter {
            path,
            out: Some(out),
            crc,
            len: 0,
            seal: None,
            remote: None,
            direct: None,
        })
    }

    /// Creates `path` (new, mode 0600) as a sealed file (`store::sealed::PagesSeal`)
    /// holding what [`PagesWriter::create`] would have written plain.
    pub fn create_sealed(path: &Path, name: &str, how: &PagesSealing) -> Result<Self, ImageError> {
        let out = crate::image::store::create_private(path)?;
        let file = out.try_clone().map_err(ImageError::io("dup", path))?;
        let seal = PagesSeal::new(file, name, how)?;
        Ok(PagesWriter {
            path: path.to_path_buf(),
            out: Some(out),
            crc: crate::sys::cpu::crc32(),
            len: 0,
            seal: Some(Box::new(seal)),
            remote: None,
            direct: None,
        })
    }

    /// A pages file `name` written to `sink` only (`path` names it in errors).
    pub fn remote(path: &Path, name: &str, sink: &RemoteSink) -> Result<Self, ImageError> {
        let id = sink.0.open(name)?;
        Ok(PagesWriter {
            path: path.to_path_buf(),
            out: None,
            crc: crate::sys::cpu::crc32(),
            len: 0,
            seal: None,
            remote: Some((sink.clone(), id)),
            direct: None,
        })
    }

    /// True when the pages go to a sink (a page server), not to a local file.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// From now on writes the pages past the page cache (`O_DIRECT`) when the file is a
    /// plain local one on a filesystem with writeback (not tmpfs) that accepts it; the
    /// caller hands over page-aligned memory then (other pieces still go through the
    /// page cache). Returns whether it does.
    pub fn use_direct(&mut self) -> bool {
        if self.seal.is_some() || self.remote.is_some() || self.out.is_none() {
            return false;
        }
        self.direct = crate::sys::file::reopen_direct(&self.path);
        self.direct.is_some()
    }

    /// Appends whole pages; `data.len()` must be a multiple of 4096.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.write_pieces(&[data])
    }

    /// Appends the pieces one after the other, with as few `writev` calls as `IOV_MAX`
    /// allows; each piece's length must be a multiple of 4096.
    pub fn write_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), ImageError> {
        let mut crc = crate::sys::cpu::crc32();
        pieces.iter().for_each(|p| crc.update(p));
        self.write_summed(pieces, &crc)
    }

    /// Like [`PagesWriter::write_pieces`], with the crc32 of the pieces (one after the
    /// other) already computed by the caller, so that a writer thread does not spend its
    /// time on it.
    pub fn write_summed(
        &mut self,
        pieces: &[&[u8]],
        crc: &crc32fast::Hasher,
    ) -> Result<(), ImageError> {
        if let Some(p) = pieces.iter().find(|p| p.len() as u64 % PAGE_SIZE != 0) {
            let (path, len) = (self.path.clone(), p.len() as u64);
            return Err(ImageError::UnalignedWrite { path, len });
        }
        if let Some((sink, id)) = &self.remote {
            sink.0
                .write_at(*id, PAGES_DATA_OFFSET + self.len, pieces, Some(crc))?;
        } else {
            let mut at = PAGES_DATA_OFFSET + self.len;
            for group in pieces.chunks(MAX_IOVS) {
                self.write_group(group, at)
                    .map_err(ImageError::io("write", &self.path))?;
                at += group.iter().map(|p| p.len() as u64).sum::<u64>();
            }
        }
        self.crc.combine(crc);
        self.len += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    /// `pwritev` until every byte of `pieces` is written at `at` (the end of what is
    /// written so far), through the `O_DIRECT` descriptor when there is one and the
    /// pieces are page-aligned.
    fn write_group(&mut self, pieces: &[&[u8]], at: u64) -> std::io::Result<()> {
        if let Some(seal) = self.seal.as_mut() {
            return pieces.iter().try_for_each(|p| seal.write(p));
        }
        let Some(out) = self.out.as_ref() else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        if let Some(direct) = self.direct.as_ref().filter(|_| page_aligned(pieces)) {
            let _span = crate::profile::span("direct write");
            match pwrite_all(direct, pieces, at) {
                Ok(()) => return Ok(()),
                // Refused before writing (an alignment the device wants and pages do not
                // meet): through the page cache from now on.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        pwrite_all(out, pieces, at)
    }

    /// The file being written, for calls this module does not make (writeback hints);
    /// none when the pages go to a sink.
    pub fn file(&self) -> Option<&File> {
        self.out.as_ref()
    }

    /// Data bytes written so far; the data starts at [`PAGES_DATA_OFFSET`].
    pub fn data_len(&self) -> u64 {
        self.len
    }

    /// Writes the header and returns the number of pages written. The file is made
    /// durable with the whole image (`ImageWriter::commit`).
    pub fn finish(self) -> Result<u64, ImageError> {
        let (path, file) = (self.path, self.out);
        let header = Header::sealed(Kind::Pages, self.len, &self.crc);
        let mut head = vec![0u8; PAGES_DATA_OFFSET as usize];
        head[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        if let Some((sink, id)) = self.remote {
            sink.0.write_at(id, 0, &[&head], None)?;
            return Ok(self.len / PAGE_SIZE);
        }
        let Some(file) = file else {
            return Err(ImageError::io("write", &path)(
                std::io::ErrorKind::Unsupported.into(),
            ));
        };
        if let Some(seal) = self.seal {
            seal.finish(&head).map_err(ImageError::io("write", &path))?;
            return Ok(self.len / PAGE_SIZE);
        }
        file.write_all_at(&header.to_bytes(), 0)
            .map_err(ImageError::io("write", &path))?;
        Ok(self.len / PAGE_SIZE)
    }
}

/// Checks the header, the page count, the file size and the crc32 of the data.
pub fn verify_pages(path: &Path, expected_pages: u64) -> Result<(), ImageError> {
    let (file, header) = open_checked(path, expected_pages)?;
    header.verify(path, &stream_crc(&file, header.len, path)?)
}

/// Everything [`verify_pages`] checks but the crc; returns the file (read with `pread`
/// only, so still at offset 0) and the data length.
pub fn check_pages(path: &Path, expected_pages: u64) -> Result<(File, u64), ImageError> {
    open_checked(path, expected_pages).map(|(file, header)| (file, header.len))
}

/// A pages file whose header, page count, size and padding were checked, not yet its
/// crc32: the restore sums the data as it copies it into memory (`restore/checked.rs`)
/// and checks the sums with [`Unverified::check`] before any restored process runs.
#[derive(Debug)]
pub struct Unverified {
    pub path: PathBuf,
    header: Header,
}

/// The crc32 of `len` data bytes from data offset `at` (0 being the first page).
#[derive(Clone, Debug)]
pub struct Sum {
    pub at: u64,
    pub len: u64,
    pub crc: crc32fast::Hasher,
}

/// Everything [`verify_pages`] checks but the crc, which is left to the caller.
pub fn unverified(path: &Path, expected_pages: u64) -> Result<Unverified, ImageError> {
    let (_, header) = open_checked(path, expected_pages)?;
    let path = path.to_path_buf();
    Ok(Unverified { path, header })
}

impl Unverified {
    /// The data bytes.
    pub fn len(&self) -> u64 {
        self.header.len
    }

    /// Whether the file has no data.
    pub fn is_empty(&self) -> bool {
        self.header.len == 0
    }

    /// Checks the stored crc against `sums` if they cover the data exactly, one after the
    /// other (in any order); otherwise reads the whole file as [`verify_pages`] does.
    pub fn check(&self, mut sums: Vec<Sum>) -> Result<(), ImageError> {
        sums.sort_by_key(|s| s.at);
        let mut crc = crate::sys::cpu::crc32();
        let mut at = 0;
        for s in sums.iter().filter(|s| s.len > 0) {
            if s.at != at {
                return self.check_by_reading();
            }
            crc.combine(&s.crc);
            at += s.len;
        }
        if at != self.header.len {
            return self.check_by_reading();
        }
        self.header.verify(&self.path, &crc)
    }

    /// The whole pass of [`verify_pages`], header included (the file may have changed).
    pub fn check_by_reading(&self) -> Result<(), ImageError> {
        verify_pages(&self.path, self.header.len / PAGE_SIZE)
    }
}

/// Opens the file and checks its header, page count, size and zero padding, reading the
/// header and its padding (the file's first [`PAGES_DATA_OFFSET`] bytes) in one `pread`.
fn open_checked(path: &Path, expected_pages: u64) -> Result<(File, Header), ImageError> {
    let file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut first = vec![0u8; PAGES_DATA_OFFSET as usize];
    let n = read_at_most(&file, &mut first, path)?;
    let header = Header::parse(&first[..n.min(HEADER_LEN)], Kind::Pages, path)?;
    check_len(&header, expected_pages, path)?;
    let size = file.metadata().map_err(ImageError::io("stat", path))?.len();
    check_size(size, PAGES_DATA_OFFSET + header.len, path)?;
    if n < first.len() {
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        return Err(ImageError::io("read", path)(eof));
    }
    if first[HEADER_LEN..].iter().any(|&b| b != 0) {
        return Err(ImageError::invalid(path, "header padding is not zero"));
    }
    Ok((file, header))
}

/// Reads up to `buf.len()` bytes from offset 0; fewer only at end of file.
fn read_at_most(file: &File, buf: &mut [u8], path: &Path) -> Result<usize, ImageError> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io("read", path)(e)),
        }
    }
    Ok(n)
}

fn check_len(header: &Header, expected_pages: u64, path: &Path) -> Result<(), ImageError> {
    if header.len % PAGE_SIZE != 0 {
        let what = format!("data length {} is not a whole number of pages", header.len);
        return Err(ImageError::invalid(path, what));
    }
    let found = header.len / PAGE_SIZE;
    if found != expected_pages {
        let path = path.to_path_buf();
        return Err(ImageError::PageCount {
            path,
            expected: expected_pages,
            found,
        });
    }
    Ok(())
}

fn check_size(size: u64, expected: u64, path: &Path) -> Result<(), ImageError> {
    if size < expected {
        return Err(truncated(path, expected, size));
    }
    if size > expected {
        let extra = size - expected;
        return Err(ImageError::TrailingBytes {
            path: path.into(),
            extra,
        });
    }
    Ok(())
}

/// The crc32 of the `len` data bytes, read by up to [`VERIFY_STREAMS`] threads each
/// taking one slice of the file: reading page cache out of tmpfs is the cost (one thread
/// moves 4–6 GiB/s, crc32 itself runs at over 20), and two readers halve it.
fn stream_crc(file: &File, len: u64, path: &Path) -> Result<crc32fast::Hasher, ImageError> {
    let progress = crate::progress::Phase::begin("verifying pages", len);
    let streams = if len >= PARALLEL_VERIFY_MIN {
        VERIFY_STREAMS
    } else {
        1
    };
    let slice = (len / streams).next_multiple_of(PAGE_SIZE);
    let parts: Vec<(u64, u64)> = (0..streams)
        .map(|i| (i * slice, len.min((i + 1) * slice)))
        .filter(|(start, end)| start < end)
        .collect();
    let progress = &progress;
    if let [(start, end)] = parts[..] {
        // One stream: no thread to start.
        return slice_crc(file, start, end, path, progress);
    }
    let hashers = std::thread::scope(|s| {
        let workers: Vec<_> = parts
            .iter()
            .map(|&(start, end)| s.spawn(move || slice_crc(file, start, end, path, progress)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut crc = crate::sys::cpu::crc32();
    for h in &hashers {
        crc.combine(h);
    }
    Ok(crc)
}

/// The crc32 state of data bytes `start..end`.
fn slice_crc(
    file: &File,
    start: u64,
    end: u64,
    path: &Path,
    progress: &crate::progress::Phase,
) -> Result<crc32fast::Hasher, ImageError> {
    let mut crc = crate::sys::cpu::crc32();
    let mut buf = vec![0u8; (end - start).min(VERIFY_CHUNK as u64) as usize];
    let mut at = start;
    while at < end {
        let chunk = &mut buf[..(end - at).min(VERIFY_CHUNK as u64) as usize];
        file.read_exact_at(chunk, PAGES_DATA_OFFSET + at)
            .map_err(ImageError::io("read", path))?;
        crc.update(chunk);
        progress.advance(chunk.len() as u64);
        at += chunk.len() as u64;
    }
    Ok(crc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write_pages(path: &Path, pages: u8) -> u64 {
        let mut w = PagesWriter::create(path).unwrap();
        for i in 0..pages {
            w.write(&[i + 1; 4096]).unwrap();
        }
        w.finish().unwrap()
    }

    fn flip(path: &Path, offset: u64) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, offset).unwrap();
        f.write_all_at(&[b[0] ^ 0x80], offset).unwrap();
    }

    /// The sums of data bytes `at..at + len` of each cut, read from `path`.
    fn sums_of(path: &Path, cuts: &[(u64, u64)]) -> Vec<Sum> {
        let f = File::open(path).unwrap();
        let sum = |&(at, len): &(u64, u64)| {
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, PAGES_DATA_OFFSET + at).unwrap();
            let mut crc = crc32fast::Hasher::new();
            crc.update(&buf);
            Sum { at, len, crc }
        };
        cuts.iter().map(sum).collect()
    }

    #[test]
    fn sums_covering_the_data_check_it_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages-1.img");
        write_pages(&path, 5);
        let file = unverified(&path, 5).unwrap();
        assert_eq!(file.len(), 5 * 4096);
        let sums = sums_of(&path, &[(3 * 4096, 2 * 4096), (0, 4096), (4096, 2 * 4096)]);
        file.check(sums).unwrap();
    }

    #[test]
    fn sums_of_a_flipped_byte_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages-1.img");
        write_pages(&path, 4);
        let file = unverified(&path, 4).unwrap();
        flip(&path, PAGES_DATA_OFFSET + 3 * 4096 + 17);
        let sums = sums_of(&path, &[(0, 2 * 4096), (2 * 4096, 2 * 4096)]);
        let err = file.check(sums).unwrap_err();
        assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    }

    /// Sums that leave a hole or overlap do not vouch for the file: it is read whole,
    /// and a flipped byte in the hole is found.
    #[test]
    fn sums_not_covering_the_data_fall_back_to_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages-1.img");
        write_pages(&path, 4);
        let file = unverified(&path, 4).unwrap();
        file.check(sums_of(&path, &[(0, 4096), (2 * 4096, 2 * 4096)]))
            .unwrap();
        file.check(sums_of(&path, &[(0, 3 * 4096), (2 * 4096, 2 * 4096)]))
            .unwrap();
        file.check(Vec::new()).unwrap();
        let sums = sums_of(&path, &[(0, 4096), (2 * 4096, 2 * 4096)]);
        flip(&path, PAGES_DATA_OFFSET + 4096 + 5);
        let err = file.check(sums).unwrap_err();
        assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    }

    #[test]
    fn writes_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages-1.img");
        assert_eq!(write_pages(&path, 3), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096 * 4);
        verify_pages(&path, 3).unwrap();
    }

    #[test]
    fn large_write_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let mut w = PagesWriter::create(&path).unwrap();
        w.write(&vec![7u8; 3 << 20]).unwrap();
        assert_eq!(w.finish().unwrap(), 768);
        verify_pages(&path, 768).unwrap();
    }

    /// Page-aligned pieces through `O_DIRECT` (on the tests' disk, where the filesystem has
    /// writeback), unaligned ones through the page cache, in one file: read back in order.
    #[test]
    fn direct_and_buffered_pieces_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages-1.img");
        let mut w = PagesWriter::create(&path).unwrap();
        if !w.use_direct() {
            eprintln!("SKIP: {} takes no O_DIRECT writes", dir.path().display());
            return;
        }
        let mut whole = vec![0u8; 4 * 4096];
        let base = whole.as_ptr().align_offset(4096);
        let aligned = &mut whole[base..base + 2 * 4096];
        aligned[..4096].fill(1);
        aligned[4096..].fill(2);
        let unaligned = vec![3u8; 4096 + 1];
        let at = unaligned.as_ptr().align_offset(4096);
        let unaligned = &unaligned[usize::from(at == 0)..][..4096];
        w.write_pieces(&[&aligned[..4096], &aligned[4096..]])
            .unwrap();
        w.write(unaligned).unwrap();
        w.write(&aligned[..4096]).unwrap();
        assert_eq!(w.finish().unwrap(), 4);
        verify_pages(&path, 4).unwrap();
        let data = std::fs::read(&path).unwrap();
        let firsts: Vec<u8> = (1..5).map(|i| data[i * 4096]).collect();
        assert_eq!(firsts, vec![1, 2, 3, 1]);
    }

    #[test]
    fn pieces_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let mut w = PagesWriter::create(&path).unwrap();
        let many: Vec<Vec<u8>> = (0..1500u32).map(|i| vec![i as u8; 4096]).collect();
        let refs: Vec<&[u8]> = many.iter().map(|v| &v[..]).collect();
        w.write_pieces(&refs).unwrap();
        assert_eq!(w.finish().unwrap(), 1500);
        verify_pages(&path, 1500).unwrap();
        let data = std::fs::read(&path).unwrap();
        for (i, page) in data[4096..].chunks(4096).enumerate() {
            assert!(page.iter().all(|&b| b == i as u8), "page {i} out of place");
        }
    }

    #[test]
    fn large_file_is_verified_in_slices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let mut w = PagesWriter::create(&path).unwrap();
        let pages = PARALLEL_VERIFY_MIN / PAGE_SIZE + 3;
        let data: Vec<u8> = (0..pages * PAGE_SIZE)
            .map(|i| ((i * 31) >> 7) as u8)
            .collect();
        w.write(&data).unwrap();
        assert_eq!(w.finish().unwrap(), pages);
        verify_pages(&path, pages).unwrap();
        // A flipped bit at either end, either side of the split and inside the second slice.
        let split = (pages * PAGE_SIZE / 2).next_multiple_of(PAGE_SIZE);
        for at in [
            0,
            split - 1,
            split,
            split + split / 2,
            pages * PAGE_SIZE - 1,
        ] {
            flip(&path, PAGES_DATA_OFFSET + at);
            let err = verify_pages(&path, pages).unwrap_err();
            assert!(matches!(err, ImageError::Checksum { .. }), "{at}: {err}");
            flip(&path, PAGES_DATA_OFFSET + at);
        }
        verify_pages(&path, pages).unwrap();
    }

    #[test]
    fn refuses_partial_page_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(&dir.path().join("p.img")).unwrap();
        let err = w.write(&[0; 100]).unwrap_err();
        assert!(matches!(err, ImageError::UnalignedWrite { len: 100, .. }));
    }

    #[test]
    fn unfinished_file_has_bad_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let mut w = PagesWriter::create(&path).unwrap();
        w.write(&[1; 4096]).unwrap();
        drop(w);
        assert!(matches!(
            verify_pages(&path, 1),
            Err(ImageError::BadMagic { .. })
        ));
    }

    #[test]
    fn rejects_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        write_pages(&path, 2);
        flip(&path, PAGES_DATA_OFFSET + 5000);
        assert!(matches!(
            verify_pages(&path, 2),
            Err(ImageError::Checksum { .. })
        ));
        check_pages(&path, 2).unwrap();
    }

    #[test]
    fn rejects_wrong_page_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        write_pages(&path, 2);
        let err = verify_pages(&path, 3).unwrap_err();
        assert!(matches!(
            err,
            ImageError::PageCount {
                expected: 3,
                found: 2,
                ..
            }
        ));
    }

    #[test]
    fn rejects_truncated_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        write_pages(&path, 2);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(PAGES_DATA_OFFSET + 4096).unwrap();
        let err = verify_pages(&path, 2).unwrap_err();
        assert!(matches!(
            err,
            ImageError::Truncated {
                expected: 12288,
                found: 8192,
                ..
            }
        ));
    }

    #[test]
    fn rejects_truncated_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        std::fs::write(&path, [0u8; 10]).unwrap();
        let err = verify_pages(&path, 0).unwrap_err();
        assert!(matches!(
            err,
            ImageError::Truncated {
                expected: 32,
                found: 10,
                ..
            }
        ));
    }

    #[test]
    fn rejects_nonzero_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        write_pages(&path, 1);
        flip(&path, 100);
        assert!(matches!(
            verify_pages(&path, 1),
            Err(ImageError::Invalid { .. })
        ));
    }
}
