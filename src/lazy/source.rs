//! The source side of post-copy: after `dump --lazy-pages` committed its image, the
//! tree stays frozen and its pages are served from its memory (`process_vm_readv`, or
//! `/proc/PID/mem` for unreadable mappings) to the one target connected at a time.
//!
//! What happens when the link fails decides what is safe. The target resumes its tree
//! only after the source answered its `Started` with `Go` (`proto.rs`). Before `Started`
//! came, nothing of the tree ran anywhere else: the dump ends as a failed dump does, the
//! tree resumed here. After it, the target's tree may have run and is killed by the
//! target when the link fails; resuming the source would run the program on from an
//! older state beside any effect the target's run had, and killing it would lose the
//! program: the tree stays frozen and the source waits for a new target (a new `restore
//! --lazy-pages` of the same image starts the program again from the dump).
//!
//! The pages pushed in the background are read ahead by a thread of their own
//! ([`Reader`]: `process_vm_readv` of 1 MiB and its crc32, a few chunks ahead) while the
//! connection's thread sends the previous ones and answers requests: reading the frozen
//! memory and sending it overlap instead of taking turns.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::proto::{self, Header, Kind};
use super::LazyError;
use crate::image::lazy::LazyImage;
use crate::sys::mem::{vm_read, Mem};

/// How serving ended.
#[derive(Debug)]
pub enum Ending {
    /// The target holds every page: the source kills its tree. `started`: when the
    /// target said its tree runs.
    Complete { bytes: u64, started: Instant },
    /// The link failed before the target's tree ran: the source resumes its own.
    NeverStarted { why: String },
}

/// `--address`/`--port`: where the source listens.
pub fn listen(address: &str, port: u16) -> Result<TcpListener, LazyError> {
    TcpListener::bind((address, port)).map_err(|source| LazyError::Listen {
        address: address.to_string(),
        port,
        source,
    })
}

/// Word from elsewhere (`stasis migrate`: the receiver's failure) that no target will
/// connect: a source still waiting for its first target gives up, its tree resumed.
#[derive(Clone, Debug, Default)]
pub struct GiveUp(Arc<Mutex<Option<String>>>);

impl GiveUp {
    pub fn set(&self, why: String) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(why);
    }

    fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How long a write to the target may wait, and how long sent data may go unacknowledged,
/// before the link counts as failed (a cut link, not a closed one).
const STALL: Duration = Duration::from_secs(20);

/// Serves `image`'s pages until a target has them all, or the link fails before any
/// target started the tree (or `give_up` is said before any target started it).
pub fn serve(
    listener: &TcpListener,
    image: &LazyImage,
    give_up: &GiveUp,
) -> Result<Ending, LazyError> {
    let mut served = 0;
    let mut ran_elsewhere = false;
    loop {
        let Some((stream, peer)) = accept(listener, give_up, ran_elsewhere)? else {
            let why = give_up.reason().unwrap_or_default();
            return Ok(Ending::NeverStarted { why });
        };
        let mut link = Link::new(stream)?;
        match link.run(image, &mut served) {
            Ok(()) => {
                let started = link.started.unwrap_or_else(Instant::now);
                return Ok(Ending::Complete {
                    bytes: served,
                    started,
                });
            }
            Err(e) if link.started.is_none() && !ran_elsewhere => {
                return Ok(Ending::NeverStarted {
                    why: format!("{peer}: {e}"),
                })
            }
            Err(e) => {
                ran_elsewhere = true;
                let here = listener.local_addr().map(|a| a.to_string());
                eprintln!(
                    "stasis: post-copy link to {peer} failed after the target started the \
                     tree ({e}); the target kills its copy. The tree stays frozen here \
                     (stopping this stasis resumes it from the dump's state), waiting for a \
                     new `stasis restore --lazy-pages` of this image from {}",
                    here.unwrap_or_else(|e| format!("(address unknown: {e})"))
                );
            }
        }
    }
}

/// The next target's connection; `None` once `give_up` is said while no target ran the
/// tree yet (once one did, only a new target ends the wait).
fn accept(
    listener: &TcpListener,
    give_up: &GiveUp,
    ran_elsewhere: bool,
) -> Result<Option<(TcpStream, std::net::SocketAddr)>, LazyError> {
    let mut fds = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        if !ran_elsewhere && give_up.reason().is_some() {
            return Ok(None);
        }
        let ready = crate::sys::fd::poll(&mut fds, 100)
            .map_err(|e| LazyError::Accept(std::io::Error::from(e)))?;
        if ready == 0 {
            continue;
        }
        let (stream, peer) = listener.accept().map_err(LazyError::Accept)?;
        let _ = stream.set_nodelay(true);
        stall_limits(&stream);
        return Ok(Some((stream, peer)));
    }
}

/// A cut link (no reset, no close) fails the connection within about [`STALL`]: writes
/// time out, unacknowledged data aborts it (`TCP_USER_TIMEOUT`), keepalive probes find an
/// idle peer gone. Both ends of a post-copy link set these.
pub fn stall_limits(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    crate::migrate::wire::keepalive(stream);
    let _ = setsockopt(stream, sockopt::TcpUserTimeout, &(STALL.as_millis() as u32));
    let _ = stream.set_write_timeout(Some(STALL));
}

/// One target's connection.
struct Link {
    rx: BufReader<TcpStream>,
    tx: TcpStream,
    /// When the target said its tree runs.
    started: Option<Instant>,
    buf: Vec<u8>,
}

impl Link {
    fn new(stream: TcpStream) -> Result<Link, LazyError> {
        let tx = stream.try_clone().map_err(LazyError::Accept)?;
        Ok(Link {
            rx: BufReader::new(stream),
            tx,
            started: None,
            buf: Vec::new(),
        })
    }

    /// The conversation: hello, then requests until `Done`.
    fn run(&mut self, image: &LazyImage, served: &mut u64) -> Result<(), String> {
        let hello = proto::recv(&mut self.rx).map_err(|e| format!("hello: {e}"))?;
        if hello.kind != Kind::Hello || hello.len != proto::VERSION {
            return self.refuse("not a stasis post-copy target of this protocol version");
        }
        if hello.addr != image.session {
            return self.refuse("the target restores another image than this source serves");
        }
        let mut w = Header::new(Kind::Welcome);
        w.len = image.bytes();
        self.send(w, false)?;
        let mut push: Option<Reader> = None;
        let mut pushed = false;
        loop {
            // Requests first: a thread of the target waits for each.
            let pushing = push.is_some() && !pushed;
            if !pushing || self.asked().map_err(|e| e.to_string())? {
                let h = proto::recv(&mut self.rx).map_err(|e| e.to_string())?;
                match h.kind {
                    Kind::Get => *served += self.answer(image, h)?,
                    Kind::Started => {
                        self.started = Some(Instant::now());
                        if let Some(d) = go_delay() {
                            std::thread::sleep(d);
                        }
                        self.send(Header::new(Kind::Go), false)?;
                    }
                    Kind::Resumed if self.started.is_some() && push.is_none() => {
                        push = Some(Reader::start(image)?);
                    }
                    Kind::Done => return self.send(Header::new(Kind::Bye), false),
                    other => return self.refuse(&format!("unexpected message {other:?}")),
                }
                continue;
            }
            let reader = push.as_mut().expect("started");
            match reader.next()? {
                Some(chunk) => {
                    let mut h = Header::new(Kind::Pages);
                    (h.pid, h.addr, h.len, h.crc) =
                        (chunk.pid, chunk.addr, chunk.data.len() as u64, chunk.crc);
                    proto::send(&mut self.tx, h, &chunk.data).map_err(|e| e.to_string())?;
                    *served += h.len;
                    reader.give_back(chunk.data);
                }
                None => {
                    pushed = true;
                    self.send(Header::new(Kind::Pushed), false)?;
                }
            }
        }
    }

    /// Whether a message of the target waits to be read.
    fn asked(&mut self) -> std::io::Result<bool> {
        if !self.rx.buffer().is_empty() {
            return Ok(true);
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.rx.get_ref());
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let n = crate::sys::fd::poll(&mut fds, 0).map_err(std::io::Error::from)?;
        Ok(n > 0)
    }

    fn refuse(&mut self, why: &str) -> Result<(), String> {
        let _ = proto::refuse(&mut self.tx, why).and_then(|()| self.tx.flush());
        Err(why.to_string())
    }

    fn send(&mut self, h: Header, with_data: bool) -> Result<(), String> {
        let data = if with_data { &self.buf[..] } else { &[] };
        proto::send(&mut self.tx, h, data)
            .and_then(|()| self.tx.flush())
            .map_err(|e| e.to_string())
    }

    /// Reads the pages `h` asks for (only pages the image left out) and sends them.
    fn answer(&mut self, image: &LazyImage, h: Header) -> Result<u64, String> {
        if !served_here(image, h.pid, h.addr, h.len) {
            let what = format!("{:#x}+{:#x} of pid {}", h.addr, h.len, h.pid);
            let refused = self.refuse(&format!("{what} is not a page range this source serves"));
            return refused.map(|()| 0);
        }
        if let Some(pace) = pace() {
            std::thread::sleep(pace * (h.len.div_ceil(1 << 20) as u32));
        }
        self.buf.resize(h.len as usize, 0);
        read_pages(h.pid, h.addr, &mut self.buf).map_err(|e| e.to_string())?;
        let mut out = Header::new(Kind::Pages);
        (out.id, out.pid, out.addr, out.len) = (h.id, h.pid, h.addr, h.len);
        out.crc = crc32fast::hash(&self.buf);
        self.send(out, true)?;
        Ok(h.len)
    }
}

/// The served pages in push order: process after process, address order, in chunks.
fn push_order(image: &LazyImage) -> Vec<(i32, u64, u64)> {
    let mut chunks = Vec::new();
    for p in &image.processes {
        for &(s, e) in &p.runs {
            let mut a = s;
            while a < e {
                let len = (e - a).min(PUSH_CHUNK);
                chunks.push((p.pid, a, len));
                a += len;
            }
        }
    }
    chunks
}

/// Bytes of one pushed message.
const PUSH_CHUNK: u64 = 1 << 20;
/// Chunks read ahead of the one being sent.
const READ_AHEAD: usize = 4;

/// One pushed chunk, read and summed.
struct Chunk {
    pid: i32,
    addr: u64,
    data: Vec<u8>,
    crc: u32,
}

/// The thread reading the pushed chunks ahead, in push order; buffers go round between
/// it and the sender. It ends when every chunk is read, or when the [`Reader`] is dropped
/// (the link ended).
struct Reader {
    chunks: Receiver<Result<Chunk, String>>,
    spare: SyncSender<Vec<u8>>,
}

impl Reader {
    fn start(image: &LazyImage) -> Result<Reader, String> {
        let order = push_order(image);
        let (tx, chunks) = sync_channel(READ_AHEAD);
        let (spare, spares) = sync_channel(READ_AHEAD + 2);
        std::thread::Builder::new()
            .name("lazy-push".into())
            .spawn(move || read_ahead(order, &tx, &spares))
            .map_err(|e| format!("start the pushing thread: {e}"))?;
        Ok(Reader { chunks, spare })
    }

    /// The next chunk; `None` when every chunk was read.
    fn next(&mut self) -> Result<Option<Chunk>, String> {
        match self.chunks.recv() {
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        let _ = self.spare.try_send(buf);
    }
}

/// The reading thread's loop: each chunk of `order` read into a spare buffer (or a new
/// one) and summed; the first failure is passed on and ends it.
fn read_ahead(
    order: Vec<(i32, u64, u64)>,
    out: &SyncSender<Result<Chunk, String>>,
    spares: &Receiver<Vec<u8>>,
) {
    for (pid, addr, len) in order {
        if let Some(pace) = pace() {
            std::thread::sleep(pace * (len.div_ceil(1 << 20) as u32));
        }
        let mut data = spares.try_recv().unwrap_or_default();
        data.resize(len as usize, 0);
        let chunk = read_pages(pid, addr, &mut data)
            .map(|()| Chunk {
                pid,
                addr,
                crc: crc32fast::hash(&data),
                data,
            })
            .map_err(|e| e.to_string());
        let failed = chunk.is_err();
        if out.send(chunk).is_err() || failed {
            return;
        }
    }
}

/// `STASIS_LAZY_PACE_US`: a pause per MiB served, which slows the link down on purpose
/// (tests kill a source mid-copy with it; see docs/testing.md).
pub(super) fn pace() -> Option<std::time::Duration> {
    static PACE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *PACE.get_or_init(|| {
        let us = std::env::var("STASIS_LAZY_PACE_US").ok()?.parse().ok()?;
        Some(std::time::Duration::from_micros(us))
    })
}

/// `STASIS_LAZY_GO_DELAY_MS`: a pause before answering `Started` (tests end the source
/// while the target waits for its go-ahead; see docs/testing.md).
fn go_delay() -> Option<std::time::Duration> {
    let ms = std::env::var("STASIS_LAZY_GO_DELAY_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// Whether `[addr, addr + len)` of `pid` is page aligned and inside one served run.
fn served_here(image: &LazyImage, pid: i32, addr: u64, len: u64) -> bool {
    let aligned = addr % 4096 == 0 && len % 4096 == 0 && len > 0;
    let Some(p) = image.processes.iter().find(|p| p.pid == pid) else {
        return false;
    };
    aligned
        && p.runs
            .iter()
            .any(|&(s, e)| s <= addr && addr.saturating_add(len) <= e)
}

/// Reads `buf.len()` bytes at `addr` of the frozen `pid`.
fn read_pages(pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), crate::sys::mem::MemError> {
    let len = buf.len();
    match vm_read(pid, buf, &[(addr, len)]) {
        Ok(n) if n == len => Ok(()),
        // Unreadable (PROT_NONE) memory: /proc/PID/mem reads it (FOLL_FORCE).
        _ => Mem::open(pid, false)?.read(addr, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::lazy::LazyProcess;

    #[test]
    fn only_served_ranges_are_answered() {
        let image = LazyImage {
            session: 1,
            processes: vec![LazyProcess {
                pid: 5,
                runs: vec![(0x10000, 0x20000)],
            }],
        };
        assert!(served_here(&image, 5, 0x10000, 0x1000));
        assert!(served_here(&image, 5, 0x1f000, 0x1000));
        assert!(!served_here(&image, 5, 0x1f000, 0x2000));
        assert!(!served_here(&image, 5, 0x10800, 0x1000));
        assert!(!served_here(&image, 6, 0x10000, 0x1000));
    }
}
