//! The target side of post-copy: one thread of `stasis restore --lazy-pages` holds a
//! missing-mode userfaultfd of every restored address space with served pages, and the
//! link to the source. It answers each fault by asking the source for the page and its
//! neighbours (`PREFETCH`), asks for everything else in address order meanwhile (at most
//! `WINDOW` bytes in flight, so a fault waits behind little), and puts each answer in
//! place with `UFFDIO_COPY` once its crc32 matched. Events of the program keep the
//! bookkeeping true: `MADV_DONTNEED` and `munmap` drop what was missing there (it reads
//! as zeros, or is gone), `mremap` moves it, `fork` gives a child's userfaultfd, which
//! waits for what its parent still missed. A fault on a page the dump did not save gets
//! a zero page.
//!
//! A fork is exact without any guess, by the kernel's promise: from the moment `fork`
//! starts copying the parent's registered mappings until its `UFFD_EVENT_FORK` is read,
//! the parent's userfaultfd refuses `UFFDIO_COPY`/`UFFDIO_ZEROPAGE` with `EAGAIN`
//! (`mmap_changing`, raised in `dup_userfaultfd` under the parent's mmap lock, dropped
//! when the event is read), and the child does not run before. So the child's memory is
//! its parent's as it was when the event is read, and what the parent's bookkeeping says
//! is missing then is exactly what the child misses: a copy that got `EAGAIN` is retried
//! after the events are read. Once every page is in, each userfaultfd is closed (the mappings are then
//! as a plain restore leaves them), the source is told (`Done`) and kills its tree.
//!
//! The link failing before that kills the restored tree: a page never fetched cannot be
//! made up, and a program must not run on with zeros in place of its memory.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::inbox::{Inbox, Message};
use super::proto::{self, Header, Kind};
use super::remaining::{Piece, Remaining};
use super::stream::Stream;
use super::watchdog::Watchdog;
use super::LazyError;
use crate::sys::uffd_missing::{self as uffd, Copied, Event};

/// Bytes asked for around a fault (from the faulting page on).
const PREFETCH: u64 = 256 << 10;
/// Bytes of one background request.
const CHUNK: u64 = 1 << 20;
/// Background bytes in flight at most.
const WINDOW: u64 = 4 * CHUNK;
/// How long `UFFDIO_COPY` is retried while the address space keeps changing.
const AGAIN_BOUND: Duration = Duration::from_secs(10);

/// What the restore tells the daemon.
pub enum Msg {
    /// A restored address space whose served pages are registered: the source pid (whose
    /// pages it asks for), its userfaultfd and the runs.
    Space {
        pid: i32,
        uffd: OwnedFd,
        runs: Vec<(u64, u64)>,
    },
    /// The tree is about to be resumed: the source must first take for good the
    /// decision never to resume its own (`Started`, answered by `Go`); the sender hears
    /// `()` once it did, and is dropped if the link fails first.
    Claim(Sender<()>),
    /// The tree runs.
    Started,
}

/// Figures of a finished post-copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub bytes: u64,
    pub faults: u64,
    /// From the tree's start to the last page in place.
    pub complete: Duration,
}

/// The link to the source after the hello.
pub struct Link {
    rx: BufReader<Stream>,
    tx: Stream,
    pub lazy_bytes: u64,
}

/// Connects to the source and says hello; refused sessions and versions fail here,
/// before any process is made.
pub fn connect(address: &str, port: u16, session: u64) -> Result<Link, LazyError> {
    let fail = |source: std::io::Error| LazyError::Connect {
        address: address.to_string(),
        port,
        source,
    };
    let stream = TcpStream::connect((address, port)).map_err(fail)?;
    let _ = stream.set_nodelay(true);
    super::source::stall_limits(&stream);
    hello(Stream::Tcp(stream), session).map_err(|e| match e {
        LazyError::Link { source } => fail(source),
        e => e,
    })
}

/// Says hello on `stream` (naming `session`) and reads the answer.
pub fn hello(stream: Stream, session: u64) -> Result<Link, LazyError> {
    let fail = |source| LazyError::Link { source };
    let mut tx = stream.try_clone().map_err(fail)?;
    // Small: page data is read past the buffer straight into place (a large buffer would
    // take most of each 1 MiB answer and copy it out once more).
    let mut rx = BufReader::with_capacity(16 << 10, stream);
    let mut hello = Header::new(Kind::Hello);
    (hello.addr, hello.len) = (session, proto::VERSION);
    proto::send(&mut tx, hello, &[]).map_err(fail)?;
    let answer = proto::recv(&mut rx).map_err(fail)?;
    match answer.kind {
        Kind::Welcome => Ok(Link {
            rx,
            tx,
            lazy_bytes: answer.len,
        }),
        Kind::Refused => Err(LazyError::Refused {
            why: reason(&mut rx, answer.len),
        }),
        other => Err(LazyError::Protocol {
            what: format!("answer {other:?} to hello"),
        }),
    }
}

fn reason(rx: &mut BufReader<Stream>, len: u64) -> String {
    let mut b = vec![0u8; len as usize];
    match std::io::Read::read_exact(rx, &mut b) {
        Ok(()) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("(reason unreadable: {e})"),
    }
}

/// One address space being filled.
struct Space {
    pid: i32,
    uffd: OwnedFd,
    remaining: Remaining,
    cursor: u64,
    /// Faulting pages to be zero-filled that got `EAGAIN` (an event, such as a fork,
    /// waits to be read): retried once the events are read.
    zeros: Vec<u64>,
    /// The watchdog's copy of `uffd`, let go with the space.
    _watched: Watched,
}

/// Tells the watchdog to close its copy of a space's userfaultfd when the space goes.
struct Watched {
    key: u64,
    watchdog: Arc<Watchdog>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watchdog.drop_space(self.key);
    }
}

/// A request in flight.
struct Asked {
    space: u64,
    src: u64,
    len: u64,
    background: bool,
}

/// The daemon's state.
pub struct Daemon {
    tx: Stream,
    inbox: Inbox,
    rx: Receiver<Msg>,
    /// Readable when the restore sent a message on `rx`.
    woken: OwnedFd,
    /// The restore waiting for the source's `Go`.
    claim: Option<Sender<()>>,
    watchdog: Arc<Watchdog>,
    spaces: BTreeMap<u64, Space>,
    next_space: u64,
    asked: HashMap<u32, Asked>,
    next_id: u32,
    in_flight: u64,
    started: Option<Instant>,
    stats: Stats,
    turn: u64,
    /// The source pushed every page once: what is missing still is asked for.
    pushed: bool,
    /// The inbox may hold more messages than the last turn took.
    more: bool,
}

/// Messages handled in one turn at most, between two looks at the faults.
const TURN: usize = 8;
/// How long a failed write waits for the source's reason.
const REASON_WAIT: Duration = Duration::from_secs(2);

impl Daemon {
    /// Starts the link's reading thread (`inbox.rs`).
    /// `woken` is readable once the restore sent a message on `rx`.
    pub fn new(
        link: Link,
        (rx, woken): (Receiver<Msg>, OwnedFd),
        watchdog: Arc<Watchdog>,
    ) -> Result<Daemon, LazyError> {
        let inbox = Inbox::start(link.rx).map_err(|source| LazyError::Link { source })?;
        Ok(Daemon {
            tx: link.tx,
            inbox,
            rx,
            woken,
            claim: None,
            watchdog,
            spaces: BTreeMap::new(),
            next_space: 0,
            asked: HashMap::new(),
            next_id: 1,
            in_flight: 0,
            started: None,
            stats: Stats::default(),
            turn: 0,
            pushed: false,
            more: false,
        })
    }

    /// Serves until every page is in place (`Ok`), or fails; a restore that gave up
    /// (the sender dropped before `Started`) ends it with [`LazyError::Abandoned`].
    pub fn run(mut self) -> Result<Stats, LazyError> {
        loop {
            if !self.take_messages()? {
                return Err(LazyError::Abandoned);
            }
            self.ask_background()?;
            if self.started.is_some() && self.spaces.is_empty() && self.asked.is_empty() {
                return self.finish();
            }
            self.wait_and_serve()?;
        }
    }

    /// Takes what the restore sent; `false` once it gave up.
    fn take_messages(&mut self) -> Result<bool, LazyError> {
        let mut sink = [0u8; 64];
        while matches!(nix::unistd::read(&self.woken, &mut sink), Ok(n) if n > 0) {}
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Space { pid, uffd, runs }) => {
                    self.add_space(pid, uffd, Remaining::new(&runs));
                }
                Ok(Msg::Claim(answer)) => {
                    self.claim = Some(answer);
                    self.send(Header::new(Kind::Started))?;
                }
                Ok(Msg::Started) => {
                    self.started = Some(Instant::now());
                    self.send(Header::new(Kind::Resumed))?;
                }
                Err(TryRecvError::Empty) => return Ok(true),
                Err(TryRecvError::Disconnected) => return Ok(self.started.is_some()),
            }
        }
    }

    fn add_space(&mut self, pid: i32, uffd: OwnedFd, remaining: Remaining) {
        let key = self.next_space;
        self.watchdog.keep(key, uffd.as_fd());
        let space = Space {
            pid,
            uffd,
            remaining,
            cursor: 0,
            zeros: Vec::new(),
            _watched: Watched {
                key,
                watchdog: self.watchdog.clone(),
            },
        };
        self.spaces.insert(self.next_space, space);
        self.next_space += 1;
    }

    fn send(&mut self, h: Header) -> Result<(), LazyError> {
        match proto::send(&mut self.tx, h, &[]) {
            Ok(()) => Ok(()),
            Err(source) => Err(self.link_failed(source)),
        }
    }

    /// Why a write to the source failed: a source that ends serving sends its reason
    /// and closes, and a request sent meanwhile fails on the closed socket; the reason,
    /// read within [`REASON_WAIT`], is the news, not the broken pipe.
    fn link_failed(&mut self, source: std::io::Error) -> LazyError {
        let deadline = Instant::now() + REASON_WAIT;
        while let Ok(Some(m)) = self.inbox.take_until(deadline) {
            if m.header.kind == Kind::Refused {
                let why = String::from_utf8_lossy(&m.data).into_owned();
                return LazyError::Refused { why };
            }
            self.inbox.recycle(m.data);
        }
        LazyError::Link { source }
    }

    fn ask(&mut self, space: u64, src: u64, len: u64, background: bool) -> Result<(), LazyError> {
        let pid = self.spaces.get(&space).map_or(0, |s| s.pid);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut h = Header::new(Kind::Get);
        (h.id, h.pid, h.addr, h.len) = (id, pid, src, len);
        self.send(h)?;
        let asked = Asked {
            space,
            src,
            len,
            background,
        };
        self.asked.insert(id, asked);
        if background {
            self.in_flight += len;
        }
        Ok(())
    }

    /// Asks for the next pages in address order, space after space, up to the window.
    fn ask_background(&mut self) -> Result<(), LazyError> {
        // Once the tree runs: before, only faults are served, the CPU left to the restore.
        if !self.pushed || self.started.is_none() {
            return Ok(());
        }
        let keys: Vec<u64> = self.spaces.keys().copied().collect();
        let mut idle = 0;
        while self.in_flight < WINDOW && idle < keys.len() {
            let key = keys[(self.turn as usize) % keys.len()];
            self.turn += 1;
            let next = self.next_background(key);
            match next {
                Some((src, len)) => {
                    idle = 0;
                    self.ask(key, src, len, true)?;
                }
                None => idle += 1,
            }
        }
        Ok(())
    }

    /// The next missing range of `key` after its cursor not asked for yet.
    /// Once past the end, it starts over if nothing of the space is in flight (pieces
    /// left behind by a copy that had to wait).
    fn next_background(&mut self, key: u64) -> Option<(u64, u64)> {
        let busy = self.asked.values().any(|a| a.space == key);
        let space = self.spaces.get_mut(&key)?;
        let piece = match space.remaining.next_from(space.cursor) {
            Some(p) => p,
            None if !busy => space.remaining.next_from(0)?,
            None => return None,
        };
        let len = piece.len().min(CHUNK);
        space.cursor = piece.start + len;
        Some((piece.src, len))
    }

    fn wait_and_serve(&mut self) -> Result<(), LazyError> {
        let mut fds = vec![libc::pollfd {
            fd: self.inbox.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let keys: Vec<u64> = self.spaces.keys().copied().collect();
        fds.extend(self.spaces.values().map(|s| libc::pollfd {
            fd: s.uffd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // Last: the restore's messages, taken at the next turn.
        fds.push(libc::pollfd {
            fd: self.woken.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = if self.more { 0 } else { 5 };
        crate::sys::fd::poll(&mut fds, timeout).map_err(|source| LazyError::Poll { source })?;
        for (i, key) in keys.iter().enumerate() {
            let revents = fds[i + 1].revents;
            if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                // The address space is gone (every process using it exited).
                self.spaces.remove(key);
            } else if revents != 0 {
                self.events(*key)?;
            }
        }
        if self.more || fds[0].revents != 0 {
            self.receive()?;
        }
        Ok(())
    }

    /// Reads and handles the queued events of space `key`.
    fn events(&mut self, key: u64) -> Result<(), LazyError> {
        loop {
            let Some(space) = self.spaces.get_mut(&key) else {
                return Ok(());
            };
            let events = match uffd::read_events(space.uffd.as_fd()) {
                Ok(e) => e,
                Err(source) => {
                    return Err(LazyError::Uffd {
                        pid: space.pid,
                        op: "read",
                        source,
                    })
                }
            };
            if events.is_empty() {
                return self.retry_zeros(key);
            }
            for e in events {
                self.event(key, e)?;
            }
        }
    }

    fn event(&mut self, key: u64, e: Event) -> Result<(), LazyError> {
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        match e {
            Event::Fault { addr } => return self.fault(key, addr & !4095),
            Event::Remove { start, end } | Event::Unmap { start, end } => {
                space.remaining.take(start, end);
            }
            Event::Remap { from, to, len } => space.remaining.remap(from, to, len),
            Event::Fork { uffd } => {
                // Exact: see the module's note on forks.
                let child = space.remaining.clone();
                let pid = space.pid;
                self.add_space(pid, uffd, child);
            }
            Event::Other(n) => {
                return Err(LazyError::Protocol {
                    what: format!("userfaultfd message {n:#x} of pid {}", space.pid),
                })
            }
        }
        Ok(())
    }

    /// A thread waits for the page at `page`: ask for it (and what follows it) unless
    /// it is on its way; a page with nothing saved gets zeros.
    fn fault(&mut self, key: u64, page: u64) -> Result<(), LazyError> {
        self.stats.faults += 1;
        let space = self.spaces.get(&key).expect("caller checked");
        let Some(piece) = space.remaining.find(page) else {
            return self.zero(key, page);
        };
        let src = piece.src + (page - piece.start);
        let coming = self
            .asked
            .values()
            .any(|a| a.space == key && a.src <= src && src < a.src + a.len);
        if coming {
            return Ok(());
        }
        let len = (piece.end - page).min(PREFETCH);
        self.ask(key, src, len, false)
    }

    /// Zero-fills the faulting `page` that the dump did not save (and wakes its
    /// waiters); on `EAGAIN` it waits in `zeros` until the events are read.
    fn zero(&mut self, key: u64, page: u64) -> Result<(), LazyError> {
        let space = self.spaces.get_mut(&key).expect("caller checked");
        let fd = space.uffd.as_fd();
        match uffd::zeropage(fd, page).and_then(|()| uffd::wake(fd, page)) {
            Ok(()) | Err(Errno::ESRCH) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EAGAIN) => {
                space.zeros.push(page);
                Ok(())
            }
            Err(source) => Err(LazyError::Uffd {
                pid: space.pid,
                op: "zeropage",
                source,
            }),
        }
    }

    /// The zero fills that had to wait, once the events of space `key` are read.
    fn retry_zeros(&mut self, key: u64) -> Result<(), LazyError> {
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        for page in std::mem::take(&mut space.zeros) {
            // A page missing again (moved here, say) is the fetch's business.
            if self
                .spaces
                .get(&key)
                .is_some_and(|s| s.remaining.find(page).is_none())
            {
                self.zero(key, page)?;
            }
        }
        Ok(())
    }

    /// Takes the answers of the source waiting in the inbox (up to a turn's worth) and
    /// puts their pages in place.
    fn receive(&mut self) -> Result<(), LazyError> {
        self.more = false;
        for _ in 0..TURN {
            let m = self.inbox.try_take();
            match m.map_err(|source| LazyError::Link { source })? {
                Some(m) => self.answered(m)?,
                None => return Ok(()),
            }
        }
        self.more = true;
        Ok(())
    }

    /// One message of the source.
    fn answered(&mut self, m: Message) -> Result<(), LazyError> {
        let h = m.header;
        match h.kind {
            Kind::Pages => {}
            Kind::Pushed => {
                self.pushed = true;
                return Ok(());
            }
            Kind::Refused => {
                let why = String::from_utf8_lossy(&m.data).into_owned();
                return Err(LazyError::Refused { why });
            }
            Kind::Go => return self.go(),
            other => {
                return Err(LazyError::Protocol {
                    what: format!("message {other:?} instead of pages"),
                })
            }
        }
        let placed = if h.id == 0 {
            self.pushed_pages(h, &m)
        } else {
            self.asked_pages(h, &m)
        };
        self.inbox.recycle(m.data);
        placed
    }

    /// The source's answer to `Started`: the restore may resume the tree. A restore
    /// that stopped waiting for it gave up (it kills the tree it made).
    fn go(&mut self) -> Result<(), LazyError> {
        let Some(claim) = self.claim.take() else {
            return Err(LazyError::Protocol {
                what: "go-ahead nobody asked for".into(),
            });
        };
        claim.send(()).map_err(|_| LazyError::Abandoned)
    }

    /// Pages a request asked for.
    fn asked_pages(&mut self, h: Header, m: &Message) -> Result<(), LazyError> {
        let Some(asked) = self.asked.remove(&h.id) else {
            return Err(LazyError::Protocol {
                what: format!("pages nobody asked for (request {})", h.id),
            });
        };
        if asked.background {
            self.in_flight -= asked.len;
        }
        if !m.intact || h.addr != asked.src || h.len != asked.len {
            return Err(LazyError::Corrupt {
                pid: h.pid,
                addr: h.addr,
                len: h.len,
            });
        }
        self.stats.bytes += h.len;
        self.place(asked.space, asked.src, &m.data)
    }

    /// Pages the source pushed: every space of that process takes what it misses.
    fn pushed_pages(&mut self, h: Header, m: &Message) -> Result<(), LazyError> {
        if !m.intact {
            return Err(LazyError::Corrupt {
                pid: h.pid,
                addr: h.addr,
                len: h.len,
            });
        }
        self.stats.bytes += h.len;
        let keys: Vec<u64> = (self.spaces.iter())
            .filter(|(_, s)| s.pid == h.pid)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .try_for_each(|k| self.place(k, h.addr, &m.data))
    }

    /// Copies what of `[src, src + data.len())` the space still misses.
    fn place(&mut self, key: u64, src: u64, data: &[u8]) -> Result<(), LazyError> {
        let end = src + data.len() as u64;
        let since = Instant::now();
        loop {
            self.events(key)?;
            let Some(space) = self.spaces.get_mut(&key) else {
                return Ok(());
            };
            let mut redo = false;
            for p in space.remaining.by_source(src, end) {
                let off = (p.src - src) as usize;
                match copy_piece(space, p, &data[off..off + p.len() as usize]) {
                    Ok(true) => {}
                    Ok(false) => {
                        redo = true;
                        break;
                    }
                    Err(Errno::ESRCH) => {
                        // The process is gone (it exited): nothing more to fill.
                        self.spaces.remove(&key);
                        return Ok(());
                    }
                    Err(source) => {
                        let pid = space.pid;
                        return Err(LazyError::Uffd {
                            pid,
                            op: "copy",
                            source,
                        });
                    }
                }
            }
            if !redo {
                self.retire(key);
                return Ok(());
            }
            if since.elapsed() > AGAIN_BOUND {
                let pid = self.spaces.get(&key).map_or(0, |s| s.pid);
                return Err(LazyError::Uffd {
                    pid,
                    op: "copy (address space kept changing)",
                    source: Errno::EAGAIN,
                });
            }
        }
    }

    /// Closes the userfaultfd of a space that misses nothing more.
    fn retire(&mut self, key: u64) {
        let done = self
            .spaces
            .get(&key)
            .is_some_and(|s| s.remaining.is_empty());
        let asked = self.asked.values().any(|a| a.space == key);
        if done && !asked {
            self.spaces.remove(&key);
        }
    }

    fn finish(mut self) -> Result<Stats, LazyError> {
        self.send(Header::new(Kind::Done))?;
        let link = |source| LazyError::Link { source };
        // Pages pushed before the source read `Done` come first: skipped.
        loop {
            let m = self.inbox.take().map_err(link)?;
            match m.header.kind {
                Kind::Bye => break,
                Kind::Pages | Kind::Pushed => self.inbox.recycle(m.data),
                other => {
                    return Err(LazyError::Protocol {
                        what: format!("message {other:?} instead of bye"),
                    })
                }
            }
        }
        self.stats.complete = self.started.map_or(Duration::ZERO, |t| t.elapsed());
        Ok(self.stats)
    }
}

/// Copies one piece; `Ok(false)` when the rest must wait for events to be read (or a
/// page was there already): the caller reads them and tries again.
fn copy_piece(space: &mut Space, p: Piece, data: &[u8]) -> Result<bool, Errno> {
    let fd = space.uffd.as_fd();
    let (done, whole) = match uffd::copy(fd, p.start, data) {
        Ok(Copied::All) => (p.len(), true),
        Ok(Copied::Exists { done }) => {
            // Present already (a fork child's copy of its parent's page): keep it.
            let _ = uffd::wake(fd, p.start + done);
            (done + 4096, false)
        }
        Ok(Copied::Again { done }) => (done, false),
        // The mapping is gone without an event reaching us first: nothing to fill.
        Err(Errno::ENOENT) | Err(Errno::EFAULT) => (p.len(), true),
        Err(e) => return Err(e),
    };
    let done = done.min(p.len());
    space.remaining.take(p.start, p.start + done);
    Ok(whole)
}
