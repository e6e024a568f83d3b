//! The local source of post-copy (`restore --lazy-local`, `stasis receive`'s lazy fill):
//! the restore starts the tree at once and serves its private anonymous memory from the
//! image's own pages files (and its ancestors') instead of a remote `dump --lazy-pages`.
//! A thread of the restore speaks the post-copy protocol (`proto.rs`) over a unix socket
//! pair to the same daemon (`target.rs`) that a remote source feeds, so faults, forks,
//! remaps and the background fill work exactly as for post-copy.
//!
//! Nothing is served unverified. Every pages file is read whole once, by two threads
//! started when the tree runs (`Resumed`, or at the first page asked for; the smallest files first): the crc32
//! of each [`CHUNK`] of its data is kept and their combination must match the crc32 in
//! the file's header; no page of a file is served before its check ended. Each page served later is read
//! again with its whole chunk, whose crc32 must match the one kept. A file that fails
//! either check, or cannot be read, ends serving with a refusal naming the file: the
//! daemon then kills the restored tree (a page that cannot be trusted cannot be made up,
//! and the program must not run on with wrong memory).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use super::proto::{self, Header, Kind};
use super::stream::Stream;
use super::LazyError;
use crate::image::chain::Piece;
use crate::image::file::{Header as FileHeader, Kind as FileKind, HEADER_LEN};
use crate::image::pages::PAGES_DATA_OFFSET;

/// Bytes of pages data under one kept crc32 (and read at once to serve a page).
const CHUNK: u64 = 1 << 20;

/// Where the served pages of each process are: pieces of pages files, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct LocalPages {
    pub processes: Vec<(i32, Vec<Piece>)>,
}

impl LocalPages {
    /// Bytes served.
    pub fn bytes(&self) -> u64 {
        self.processes
            .iter()
            .flat_map(|(_, p)| p)
            .map(|p| p.len)
            .sum()
    }
}

/// Starts the serving thread; returns the daemon's end of the link.
pub fn start(pages: LocalPages, session: u64) -> Result<Stream, LazyError> {
    let link = |source| LazyError::Link { source };
    let (ours, theirs) = UnixStream::pair().map_err(link)?;
    std::thread::Builder::new()
        .name("lazy-local".into())
        .spawn(move || {
            let mut s = Server {
                pages,
                files: HashMap::new(),
                checked: None,
                cache: HashMap::new(),
            };
            if let Err(e) = s.run(ours, session) {
                eprintln!("stasis: local post-copy source: {e}");
            }
        })
        .map_err(link)?;
    Ok(Stream::Unix(theirs))
}

/// A pages file checked whole, with the crc32 of each chunk of its data.
struct Checked {
    file: File,
    len: u64,
    sums: Vec<u32>,
}

/// Threads checking the pages files at once.
const CHECKERS: usize = 2;

/// Starts checking every pages file of `pages` ([`check`]) in [`CHECKERS`] threads, the
/// smallest first (the later rounds of a chain, likely the most touched); each result
/// comes on the channel returned, as soon as it is known.
fn check_all(pages: &LocalPages) -> std::io::Result<Receiver<(PathBuf, Result<Checked, String>)>> {
    let mut paths: Vec<PathBuf> = (pages.processes.iter())
        .flat_map(|(_, v)| v.iter().map(|p| p.path.to_path_buf()))
        .collect();
    paths.sort();
    paths.dedup();
    paths.sort_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(paths)));
    let (tx, rx) = channel();
    for _ in 0..CHECKERS {
        let (queue, tx) = (queue.clone(), tx.clone());
        std::thread::Builder::new()
            .name("lazy-check".into())
            .spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(path) = next else { return };
                let r = check(&path).map_err(|e| crate::error_line(&e));
                if tx.send((path, r)).is_err() {
                    return;
                }
            })?;
    }
    Ok(rx)
}

struct Server {
    pages: LocalPages,
    files: HashMap<PathBuf, Checked>,
    /// The checkers' results not taken yet, once started: when the tree runs, or at
    /// the first page asked for if that comes first (so they do not take the CPU from
    /// the restore itself).
    checked: Option<Receiver<(PathBuf, Result<Checked, String>)>>,
    /// The last chunk read and verified of each file: (chunk index, data). Pieces come
    /// in address order and alternate between the files of a chain, each file's in
    /// file order: one chunk per file is read once.
    cache: HashMap<PathBuf, (u64, Vec<u8>)>,
}

impl Server {
    fn run(&mut self, stream: UnixStream, session: u64) -> std::io::Result<()> {
        let mut tx = stream.try_clone()?;
        let mut rx = BufReader::new(stream);
        let hello = proto::recv(&mut rx)?;
        if hello.kind != Kind::Hello || hello.addr != session || hello.len != proto::VERSION {
            return proto::refuse(&mut tx, "not this restore's session");
        }
        let mut welcome = Header::new(Kind::Welcome);
        welcome.len = self.pages.bytes();
        proto::send(&mut tx, welcome, &[])?;
        // Nothing is pushed: the daemon asks for everything, faults first.
        proto::send(&mut tx, Header::new(Kind::Pushed), &[])?;
        let mut buf = Vec::new();
        loop {
            let h = proto::recv(&mut rx)?;
            if self.checked.is_none() && matches!(h.kind, Kind::Get | Kind::Resumed) {
                self.checked = Some(check_all(&self.pages)?);
            }
            match h.kind {
                Kind::Get => match self.read(h.pid, h.addr, h.len, &mut buf) {
                    Ok(()) => {
                        if let Some(p) = super::source::pace() {
                            std::thread::sleep(p * (h.len.div_ceil(1 << 20)) as u32);
                        }
                        let mut a = Header::new(Kind::Pages);
                        (a.id, a.pid, a.addr, a.len) = (h.id, h.pid, h.addr, h.len);
                        a.crc = crc32fast::hash(&buf);
                        proto::send(&mut tx, a, &buf)?;
                    }
                    Err(why) => {
                        let why =
                            format!("the local image cannot serve pid {}'s pages: {why}", h.pid);
                        return proto::refuse(&mut tx, &why);
                    }
                },
                Kind::Started => proto::send(&mut tx, Header::new(Kind::Go), &[])?,
                Kind::Resumed => {}
                Kind::Done => return proto::send(&mut tx, Header::new(Kind::Bye), &[]),
                other => {
                    let why = format!("unexpected message {other:?}");
                    return proto::refuse(&mut tx, &why);
                }
            }
        }
    }

    /// The verified bytes `[addr, addr + len)` of `pid` into `out`.
    fn read(&mut self, pid: i32, addr: u64, len: u64, out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        out.resize(len as usize, 0);
        let end = addr + len;
        let all = (self.pages.processes.iter()).find(|(p, _)| *p == pid);
        let all = all.map_or(&[][..], |(_, v)| &v[..]);
        // Sorted by address, not overlapping: from the first one ending after `addr`.
        let first = all.partition_point(|p| p.addr + p.len <= addr);
        let pieces: Vec<Piece> = (all[first..].iter())
            .take_while(|p| p.addr < end)
            .cloned()
            .collect();
        let mut covered = 0;
        for p in pieces {
            let (a, b) = (p.addr.max(addr), (p.addr + p.len).min(end));
            let at = p.offset + (a - p.addr);
            let dst = &mut out[(a - addr) as usize..(b - addr) as usize];
            self.read_file(&p.path, at, dst)?;
            covered += b - a;
        }
        if covered != len {
            return Err(format!(
                "pages {addr:#x}+{len:#x} of pid {pid} are not all in the local image"
            ));
        }
        Ok(())
    }

    /// `dst.len()` bytes of `path` from file offset `at`, each chunk checked.
    fn read_file(&mut self, path: &Path, at: u64, dst: &mut [u8]) -> Result<(), String> {
        let data = at
            .checked_sub(PAGES_DATA_OFFSET)
            .ok_or_else(|| format!("{}: offset {at:#x} inside the header", path.display()))?;
        let mut done = 0usize;
        while done < dst.len() {
            let pos = data + done as u64;
            let (index, within) = (pos / CHUNK, (pos % CHUNK) as usize);
            let chunk = self.chunk(path, index)?;
            let n = (chunk.len() - within).min(dst.len() - done);
            if n == 0 {
                return Err(format!("{}: read past the end of its data", path.display()));
            }
            dst[done..done + n].copy_from_slice(&chunk[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// Chunk `index` of `path`, read and checked against its kept crc32.
    fn chunk(&mut self, path: &Path, index: u64) -> Result<&[u8], String> {
        let hit = matches!(self.cache.get(path), Some((i, _)) if *i == index);
        if !hit {
            let data = self.read_chunk(path, index)?;
            self.cache.insert(path.to_path_buf(), (index, data));
        }
        Ok(&self.cache[path].1)
    }

    fn read_chunk(&mut self, path: &Path, index: u64) -> Result<Vec<u8>, String> {
        while !self.files.contains_key(path) {
            // A failed check of any file ends serving, whichever file is asked for.
            let next = self.checked.as_ref().and_then(|c| c.recv().ok());
            let (p, c) = next.ok_or_else(|| format!("{} was never checked", path.display()))?;
            self.files.insert(p, c?);
        }
        let c = &self.files[path];
        let start = index * CHUNK;
        if start >= c.len {
            return Err(format!("{}: read past the end of its data", path.display()));
        }
        let mut buf = vec![0u8; (c.len - start).min(CHUNK) as usize];
        (c.file.read_exact_at(&mut buf, PAGES_DATA_OFFSET + start))
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if crc32fast::hash(&buf) != c.sums[index as usize] {
            return Err(format!(
                "{} changed since it was verified: data bytes {start:#x}+{:#x} fail their \
                 checksum",
                path.display(),
                buf.len()
            ));
        }
        Ok(buf)
    }
}

/// Reads the pages file at `path` whole: its header, its size, the crc32 of each chunk
/// and their combination against the header's.
fn check(path: &Path) -> Result<Checked, crate::image::ImageError> {
    use crate::image::ImageError;
    let file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut head = [0u8; HEADER_LEN];
    (file.read_exact_at(&mut head, 0)).map_err(ImageError::io("read", path))?;
    let header = FileHeader::parse(&head, FileKind::Pages, path)?;
    let size = file.metadata().map_err(ImageError::io("stat", path))?.len();
    if size != PAGES_DATA_OFFSET + header.len {
        let what = format!(
            "{size} bytes, its header says {}",
            PAGES_DATA_OFFSET + header.len
        );
        return Err(ImageError::invalid(path, what));
    }
    let mut sums = Vec::new();
    let mut whole = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK.min(header.len) as usize];
    let mut at = 0;
    while at < header.len {
        let b = &mut buf[..(header.len - at).min(CHUNK) as usize];
        (file.read_exact_at(b, PAGES_DATA_OFFSET + at)).map_err(ImageError::io("read", path))?;
        let sum = crc32fast::hash(b);
        whole.combine(&crc32fast::Hasher::new_with_initial_len(
            sum,
            b.len() as u64,
        ));
        sums.push(sum);
        at += b.len() as u64;
    }
    header.verify(path, &whole)?;
    Ok(Checked {
        file,
        len: header.len,
        sums,
    })
}

/// What of `image` the local source serves: for each live process that no other process
/// of the tree takes its memory from (`origins`: forkers and the address spaces shared
/// with them), the saved pages of its private anonymous mappings that post-copy can take
/// (`plan.rs`: not kept copy-on-write from a parent, not locked, sealed, droppable or
/// guarded), located in this image's pages files or its ancestors'.
pub fn served(image: &crate::image::Image, origins: &std::collections::HashSet<i32>) -> LocalPages {
    let mut out = LocalPages::default();
    for p in &image.processes {
        let pid = p.task.pid;
        let entry = image.tree.processes.iter().find(|e| e.pid == pid);
        if origins.contains(&pid) || !entry.is_some_and(|e| !e.shares_vm) {
            continue;
        }
        let inherited: Vec<(u64, u64)> = p.mm.cow.iter().map(|c| (c.start, c.end)).collect();
        let lazy = super::plan::lazy_vmas(&p.mm.vmas, &inherited);
        let lazy = super::plan::without_guards(&lazy, &p.mm.guards);
        // The mappings the restore itself touches before the tree runs are filled
        // first: each thread's stack (injected calls run on it), its TLS, rseq area and
        // robust list (the kernel writes the rseq area when it is registered).
        let touched: Vec<u64> = (p.task.threads.iter())
            .flat_map(|t| {
                let rseq = t.rseq.map_or(0, |r| r.rseq_abi_pointer);
                [t.regs.rsp, t.regs.fs_base, rseq, t.robust_list]
            })
            .filter(|&a| a != 0)
            .collect();
        let lazy: Vec<(u64, u64)> = (lazy.into_iter())
            .filter(|&(s, e)| !touched.iter().any(|&a| s <= a && a <= e))
            .collect();
        let parents = image.parent_pages.get(&pid).map_or(&[][..], |v| v);
        let own = located(image, pid, &p.mm);
        let mut pieces = within(parents.iter().chain(&own), &lazy);
        pieces.sort_by_key(|p| p.addr);
        if !pieces.is_empty() {
            out.processes.push((pid, pieces));
        }
    }
    out
}

/// Every page of `mm` saved in the image's own pages files, with its file and offset
/// (runs of one stripe follow each other in its file); those kept in ancestors are
/// `image.parent_pages`.
fn located(image: &crate::image::Image, pid: i32, mm: &crate::image::mm::MmImage) -> Vec<Piece> {
    use crate::image::mm::PARENT_STRIPE;
    let paths: Vec<Arc<Path>> = (0..mm.stripes())
        .map(|s| Arc::from(image.pages_path(pid, s)))
        .collect();
    let mut at = [PAGES_DATA_OFFSET; 256];
    let mut out = Vec::new();
    for r in mm.page_runs.iter().filter(|r| r.stripe != PARENT_STRIPE) {
        let len = r.pages * crate::abi::PAGE_SIZE;
        out.push(Piece {
            path: paths[usize::from(r.stripe)].clone(),
            addr: r.addr,
            len,
            offset: at[usize::from(r.stripe)],
        });
        at[usize::from(r.stripe)] += len;
    }
    out
}

/// The parts of `pieces` inside `ranges` (sorted, not overlapping): each piece is cut
/// by the ranges from the first one ending after its start (a binary search; a 2 GiB
/// chain has hundreds of thousands of pieces).
fn within<'a>(pieces: impl Iterator<Item = &'a Piece>, ranges: &[(u64, u64)]) -> Vec<Piece> {
    let mut out = Vec::new();
    for p in pieces {
        let end = p.addr + p.len;
        let first = ranges.partition_point(|&(_, e)| e <= p.addr);
        for &(s, e) in ranges[first..].iter().take_while(|&&(s, _)| s < end) {
            let (a, b) = (s.max(p.addr), e.min(end));
            out.push(Piece {
                path: p.path.clone(),
                addr: a,
                len: b - a,
                offset: p.offset + (a - p.addr),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_cut_to_the_ranges_with_their_offsets() {
        let p = Piece {
            path: Arc::from(Path::new("pages-1.img")),
            addr: 0x1000,
            len: 0x4000,
            offset: 0x1000,
        };
        let got = within([p].iter(), &[(0x2000, 0x3000), (0x4000, 0x9000)]);
        let at: Vec<(u64, u64, u64)> = got.iter().map(|p| (p.addr, p.len, p.offset)).collect();
        assert_eq!(at, vec![(0x2000, 0x1000, 0x2000), (0x4000, 0x1000, 0x4000)]);
    }
}
