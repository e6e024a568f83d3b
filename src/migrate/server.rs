//! The receiving side of the page stream: `stasis page-server` and `stasis receive`.
//! Each connection carries one image, written into a temporary sibling of its target as
//! the frames come (`ImageWriter`), checked (every frame, the digest of the whole stream,
//! the crc32 of each pages file against its header) and made durable before it is
//! renamed into place and acknowledged. A large DATA frame is written piece by piece as
//! it is read, before its crc32 is checked: only into the temporary directory, which a
//! failed check discards. A connection that breaks or lies leaves nothing under the
//! target's name. The server ends after the image marked last (or the first
//! failure); `stasis receive` then restores it and tells the sender.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::MigrateError;
use super::spool::{self, Spool};
use super::wire::{self, field, name_at, tag, u32_at, u64_at, Conn};
use crate::image::file::{Header, Kind, HEADER_LEN};
use crate::image::pages::PAGES_DATA_OFFSET;
use crate::image::ImageWriter;

/// The header of a DATA frame: tag, file id, offset.
const DATA_HEAD: usize = 13;
/// No file of an image is written beyond this offset.
const MAX_OFFSET: u64 = 1 << 44;

/// What `stasis page-server` / `stasis receive` was asked to do.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `ADDR:PORT` to listen on.
    pub listen: String,
    pub dir: PathBuf,
    pub security: wire::Security,
    /// `stasis receive`: restore the last image (`stasis restore -D IMAGE -d`, with
    /// these extra arguments, its memory filled as said) and tell the sender.
    pub restore: Option<(Vec<String>, Fill)>,
}

/// How `stasis receive` fills the restored tree's memory (pre-copy; a post-copy
/// migration's memory is on its source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fill {
    /// `lazy` when the received pages reach [`LAZY_FILL_MIN`].
    Auto,
    /// Everything before the tree runs.
    Eager,
    /// The tree starts at once; its private anonymous memory is filled from the received
    /// images on fault and in the background (`restore --lazy-local`).
    Lazy,
}

/// Received pages from which `Fill::Auto` fills lazily: below, the eager fill takes
/// tens of milliseconds and a lazy one gains little.
pub const LAZY_FILL_MIN: u64 = 256 << 20;

/// One image received.
#[derive(Clone, Debug)]
pub struct Received {
    pub dir: PathBuf,
    pub bytes: u64,
    pub last: bool,
    /// Where the image's served memory is (`tag::LAZY`: the sender's address, its port).
    pub lazy: Option<std::net::SocketAddr>,
}

/// Accepts connections on `opts.listen`, one image each, until the last image is stored
/// (and with `restore`, restored); the first failure ends the server.
pub fn serve(opts: &ServerOptions, report: &mut dyn FnMut(&Received)) -> Result<(), MigrateError> {
    let listener = TcpListener::bind(&opts.listen).map_err(|source| MigrateError::Listen {
        addr: opts.listen.clone(),
        source,
    })?;
    serve_on(listener, opts, report)
}

/// [`serve`] on a socket bound and listening already (`opts.listen` names it in errors):
/// a front end that must know the port before serving (port 0) or hand the socket to
/// another process binds it itself.
pub fn serve_on(
    listener: TcpListener,
    opts: &ServerOptions,
    report: &mut dyn FnMut(&Received),
) -> Result<(), MigrateError> {
    // Every image received and checked so far: the restore need not checksum its
    // pages again.
    let mut verified = Vec::new();
    loop {
        let (stream, _) = listener.accept().map_err(|source| MigrateError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
        let mut conn = Conn::accept(stream, &opts.security)?;
        let got = match receive(&mut conn, &opts.dir) {
            Ok(g) => g,
            Err(e) => {
                let why = crate::error_line(&e);
                let _ = conn.send(&wire::status(wire::STORED, false, &why), &[], None);
                return Err(e);
            }
        };
        conn.send(&wire::status(wire::STORED, true, ""), &[], None)?;
        report(&got);
        verified.push(got.dir.clone());
        if !got.last {
            continue;
        }
        if let Some((extra, fill)) = &opts.restore {
            let mut extra = extra.clone();
            let lazy = match got.lazy {
                Some(source) => {
                    extra.extend(lazy_args(source));
                    false
                }
                None => fills_lazily(*fill, &verified),
            };
            if lazy {
                extra.push("--lazy-local".into());
            }
            return restore(&mut conn, &got.dir, &extra, &verified);
        }
        return Ok(());
    }
}

/// Whether the restore fills memory lazily from the received images (`fill`, and for
/// `Auto` the size of the pages files of `received`).
fn fills_lazily(fill: Fill, received: &[PathBuf]) -> bool {
    match fill {
        Fill::Eager => false,
        Fill::Lazy => true,
        Fill::Auto => pages_bytes(received) >= LAZY_FILL_MIN,
    }
}

/// The size of the pages files (`pages-*.img`) in `dirs`.
fn pages_bytes(dirs: &[PathBuf]) -> u64 {
    let files = dirs.iter().filter_map(|d| fs::read_dir(d).ok()).flatten();
    files
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Restores the image in `dir` detached and tells the sender how it went; the pages of
/// the images in `verified` (received and checked here) are not checksummed again.
///
/// With `--lazy-local` among `extra` the sender hears twice: `RESTORED` (its message
/// `filling`) as soon as the tree runs, then `FILLED` once all memory is in place or
/// the fill failed (the restore killed the tree then).
fn restore(
    conn: &mut Conn,
    dir: &Path,
    extra: &[String],
    verified: &[PathBuf],
) -> Result<(), MigrateError> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|source| MigrateError::Spawn {
        what: "stasis (its own path)".into(),
        source,
    })?;
    let lazy = extra.iter().any(|a| a == "--lazy-local");
    let spawn = |source| MigrateError::Spawn {
        what: "stasis restore".into(),
        source,
    };
    let mut child = std::process::Command::new(exe)
        .arg("restore")
        .arg("-D")
        .arg(dir)
        .arg("-d")
        .arg("--report-running")
        .args(
            verified
                .iter()
                .flat_map(|v| [std::ffi::OsStr::new("--pages-verified"), v.as_os_str()]),
        )
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _s = crate::profile::span("receive: restore until running");
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let running = line.starts_with("running ");
    if running && lazy {
        conn.send(&wire::status(wire::RESTORED, true, "filling"), &[], None)?;
    }
    let status = child.wait().map_err(spawn)?;
    let ok = status.success() && running;
    let why = errors.join().unwrap_or_default().trim().to_string();
    if ok && !why.is_empty() {
        // The restore's own report (its summary, the fill's end, a profile).
        eprintln!("{why}");
    }
    let stage = match running && lazy {
        true => wire::FILLED,
        false => wire::RESTORED,
    };
    // A failed restore is the news, even if the sender cannot hear it (the link is
    // down: what failed the restore too, maybe).
    let told = conn.send(&wire::status(stage, ok, &why), &[], None);
    if !ok {
        return Err(MigrateError::Target {
            path: dir.to_path_buf(),
            what: format!("restore failed: {why}"),
        });
    }
    told
}

/// `restore --lazy-pages` arguments to fetch the memory from `source`.
fn lazy_args(source: std::net::SocketAddr) -> [String; 5] {
    [
        "--lazy-pages".into(),
        "--address".into(),
        source.ip().to_string(),
        "--port".into(),
        source.port().to_string(),
    ]
}

/// A file being received.
struct Incoming {
    /// Written by the writer thread (`spool.rs`).
    target: Arc<spool::Target>,
    /// A pages file: its header and the crc32 of its data, when the data came in order.
    pages: Option<PagesCheck>,
}

#[derive(Default)]
struct PagesCheck {
    head: Option<Vec<u8>>,
    crc: crc32fast::Hasher,
    next: u64,
    in_order: bool,
}

/// Reads one image from `conn` into its target under `dir`.
fn receive(conn: &mut Conn, dir: &Path) -> Result<Received, MigrateError> {
    let mut buf = Vec::new();
    let at = conn.received;
    let (crc, _) = conn.recv(&mut buf, 0)?;
    conn.count(buf.len(), crc);
    let mut i = 1;
    let (last, name) = match buf.first() {
        Some(&tag::BEGIN) => (
            field(&buf, &mut i, 1).map(|b| b[0] != 0),
            name_at(&buf, &mut i),
        ),
        _ => (None, None),
    };
    let (Some(last), Some(name)) = (last, name) else {
        return Err(conn.corrupt(at, "expected the beginning of an image".into()));
    };
    let target = target_dir(dir, &name).ok_or_else(|| MigrateError::Target {
        path: dir.to_path_buf(),
        what: format!("{name:?} is not a plain directory name"),
    })?;
    let writer = ImageWriter::create(&target)?;
    let mut files: HashMap<u32, Incoming> = HashMap::new();
    let mut lazy = None;
    let mut spool = Spool::start()?;
    let mut scratch = Vec::new();
    loop {
        let at = conn.received;
        let (crc, data_crc) = match conn.recv_start(&mut buf, DATA_HEAD, Some(tag::DATA))? {
            wire::Start::Whole(crc, data_crc) => (crc, data_crc),
            wire::Start::Body(body) => {
                let body_len = body.rest;
                let len = DATA_HEAD + body_len;
                let (crc, data_crc, piece) =
                    streamed(conn, &buf, body, at, &files, &mut spool, &mut scratch)?;
                account(&mut files, &buf, data_crc, body_len, &piece);
                conn.count(len, crc);
                continue;
            }
        };
        let len = buf.len();
        match buf.first() {
            Some(&tag::END) => {
                let _s = crate::profile::span("receive: end, check, commit");
                spool.finish()?;
                end(conn, &buf, at, &mut files)?;
                writer.commit()?;
                let bytes = conn.received;
                return Ok(Received {
                    dir: target,
                    bytes,
                    last,
                    lazy,
                });
            }
            Some(&tag::LAZY) => lazy = Some(lazy_source(conn, &buf, at, last)?),
            Some(&tag::OPEN) => open(conn, &buf, at, writer.temp_path(), &mut files)?,
            Some(&tag::DATA) => {
                let data_len = len.saturating_sub(DATA_HEAD);
                let (target, offset) = locate(conn, &buf, at, data_len, &files)?;
                account(&mut files, &buf, data_crc, data_len, &buf[DATA_HEAD..]);
                let full = std::mem::replace(&mut buf, spool.spare());
                spool.write(&target, offset, full, DATA_HEAD)?;
            }
            _ => return Err(conn.corrupt(at, "unexpected frame".into())),
        }
        conn.count(len, crc);
    }
}

/// The post-copy source a `LAZY` frame names: the sender's address, the frame's port.
/// Only the last image may be lazy (a parent's memory must be whole).
fn lazy_source(
    conn: &Conn,
    p: &[u8],
    at: u64,
    last: bool,
) -> Result<std::net::SocketAddr, MigrateError> {
    let port = field(p, &mut 1, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let Some(port) = port.filter(|_| last) else {
        return Err(conn.corrupt(at, "malformed post-copy frame".into()));
    };
    let peer = conn.peer_addr().map_err(|source| MigrateError::Receive {
        peer: conn.peer.clone(),
        offset: at,
        source,
    })?;
    Ok(std::net::SocketAddr::new(peer.ip(), port))
}

/// `dir` itself for "", else `dir/name` (and `dir` is created).
fn target_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return Some(dir.to_path_buf());
    }
    if !crate::image::store::plain_name(name) {
        return None;
    }
    fs::create_dir_all(dir).ok()?;
    Some(dir.join(name))
}

fn open(
    conn: &Conn,
    p: &[u8],
    at: u64,
    temp: &Path,
    files: &mut HashMap<u32, Incoming>,
) -> Result<(), MigrateError> {
    let mut i = 1;
    let id = u32_at(p, &mut i);
    let name = name_at(p, &mut i).filter(|n| crate::image::store::plain_name(n));
    let (Some(id), Some(name)) = (id, name) else {
        return Err(conn.corrupt(at, "malformed file frame".into()));
    };
    let path = temp.join(&name);
    if files.contains_key(&id) || files.values().any(|f| f.target.path == path) {
        return Err(conn.corrupt(at, format!("{name} sent twice")));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(crate::image::ImageError::io("create", &path))?;
    let pages = (name.starts_with("pages-") && name.ends_with(".img")).then(|| PagesCheck {
        next: PAGES_DATA_OFFSET,
        in_order: true,
        ..PagesCheck::default()
    });
    let target = Arc::new(spool::Target { file, path });
    files.insert(id, Incoming { target, pages });
    Ok(())
}

/// Checks a DATA frame whose data is `len` bytes (its file, its range, from the frame's
/// first [`DATA_HEAD`] bytes `p`): the file and offset to write the data at.
fn locate(
    conn: &Conn,
    p: &[u8],
    at: u64,
    len: usize,
    files: &HashMap<u32, Incoming>,
) -> Result<(Arc<spool::Target>, u64), MigrateError> {
    let (id, offset) =
        data_head(p).ok_or_else(|| conn.corrupt(at, "malformed data frame".into()))?;
    let Some(f) = files.get(&id) else {
        return Err(conn.corrupt(at, format!("data for file {id}, never opened")));
    };
    if offset.saturating_add(len as u64) > MAX_OFFSET {
        return Err(conn.corrupt(at, format!("offset {offset} out of range")));
    }
    Ok((f.target.clone(), offset))
}

/// A DATA frame's file id and offset.
fn data_head(p: &[u8]) -> Option<(u32, u64)> {
    let mut i = 1;
    Some((u32_at(p, &mut i)?, u64_at(p, &mut i)?))
}

/// Counts a checked DATA frame (head `p`, `len` data bytes of crc32 `crc`, the first of
/// which are `first`) into its pages file's crc32.
fn account(files: &mut HashMap<u32, Incoming>, p: &[u8], crc: u32, len: usize, first: &[u8]) {
    let Some((id, offset)) = data_head(p) else {
        return;
    };
    let Some(c) = files.get_mut(&id).and_then(|f| f.pages.as_mut()) else {
        return;
    };
    if offset == 0 {
        c.head = Some(first[..first.len().min(HEADER_LEN)].to_vec());
    } else if offset == c.next {
        let summed = crc32fast::Hasher::new_with_initial_len(crc, len as u64);
        c.crc.combine(&summed);
        c.next += len as u64;
    } else {
        c.in_order = false;
    }
}

/// Receives the data of a streamed DATA frame (head `p`) into its file, piece by piece;
/// the frame's crc32, that of its data, and the data's first bytes (a pages file's
/// header at offset 0).
fn streamed(
    conn: &mut Conn,
    p: &[u8],
    body: wire::Body,
    at: u64,
    files: &HashMap<u32, Incoming>,
    spool: &mut Spool,
    scratch: &mut Vec<u8>,
) -> Result<(u32, u32, Vec<u8>), MigrateError> {
    let (target, offset) = locate(conn, p, at, body.rest, files)?;
    let mut first = Vec::new();
    let each = |piece: &mut Vec<u8>, done: u64| -> Result<(), MigrateError> {
        if done == 0 {
            first.extend_from_slice(&piece[..piece.len().min(HEADER_LEN)]);
        }
        let full = std::mem::replace(piece, spool.spare());
        spool.write(&target, offset + done, full, 0)
    };
    let (crc, data_crc) = conn.recv_body(body, scratch, each)?;
    Ok((crc, data_crc, first))
}

/// The end of an image: the file count and the digest of every frame, then each pages
/// file's crc32 against its header.
fn end(
    conn: &mut Conn,
    p: &[u8],
    at: u64,
    files: &mut HashMap<u32, Incoming>,
) -> Result<(), MigrateError> {
    let mut i = 1;
    let count = u32_at(p, &mut i);
    let _bytes = u64_at(p, &mut i);
    let digest = field(p, &mut i, 32).map(<[u8]>::to_vec);
    let (Some(count), Some(digest)) = (count, digest) else {
        return Err(conn.corrupt(at, "malformed end frame".into()));
    };
    if conn.take_digest()[..] != digest[..] {
        return Err(conn.corrupt(at, "the stream's digest does not match its frames".into()));
    }
    if count as usize != files.len() {
        let what = format!("{count} files announced, {} received", files.len());
        return Err(conn.corrupt(at, what));
    }
    for f in files.values_mut() {
        if let Some(c) = f.pages.take() {
            check_pages(&f.target.path, c)?;
        }
    }
    Ok(())
}

/// A pages file's header against the data received (re-read if it came out of order).
fn check_pages(path: &Path, c: PagesCheck) -> Result<(), MigrateError> {
    let head = c.head.unwrap_or_default();
    let header = Header::parse(&head, Kind::Pages, path)?;
    if !c.in_order || header.len != c.next - PAGES_DATA_OFFSET {
        let pages = header.len / crate::abi::PAGE_SIZE;
        return Ok(crate::image::pages::verify_pages(path, pages)?);
    }
    Ok(header.verify(path, &c.crc)?)
}
