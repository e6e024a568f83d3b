//! The target's reading end of the post-copy link: a thread of its own reads each
//! message of the source (its header, then the data a `Pages` or `Refused` carries,
//! straight into a buffer of its own; the crc32 of pages summed there) and queues it for
//! the daemon, whose `poll` a pipe wakes. Receiving the next answer then overlaps with
//! putting the previous one in place (`UFFDIO_COPY`), instead of taking turns.
//!
//! At most [`DEPTH`] messages wait in the queue: a daemon that falls behind stops the
//! reading, and TCP stops the source. Buffers go back to the thread once placed. The
//! inbox dropped shuts the connection down: the thread's read ends, and so does it,
//! and the source sees the link end as it did when the daemon held the only socket.

use std::io::{BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};

use super::proto::{self, Header, Kind};
use super::stream::Stream;

/// Messages read ahead at most.
const DEPTH: usize = 4;

/// One message of the source, with what followed its header.
pub struct Message {
    pub header: Header,
    pub data: Vec<u8>,
    /// `Pages`: the data's crc32 matches the header's.
    pub intact: bool,
}

/// The queue of messages read by the thread.
pub struct Inbox {
    queue: Receiver<std::io::Result<Message>>,
    wake: OwnedFd,
    spare: SyncSender<Vec<u8>>,
    socket: Stream,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.socket.shutdown();
    }
}

impl Inbox {
    /// Starts the reading thread on `rx` (the link after the hello).
    pub fn start(rx: BufReader<Stream>) -> std::io::Result<Inbox> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (wake, woken) = nix::unistd::pipe2(flags).map_err(std::io::Error::from)?;
        let (tx, queue) = sync_channel(DEPTH);
        let (spare, spares) = sync_channel(DEPTH + 2);
        let socket = rx.get_ref().try_clone()?;
        std::thread::Builder::new()
            .name("lazy-inbox".into())
            .spawn(move || read_loop(rx, &tx, &spares, &woken))?;
        Ok(Inbox {
            queue,
            wake,
            spare,
            socket,
        })
    }

    /// What the daemon polls: readable once a message (or the link's failure) waits.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The next message if one waits (`Ok(None)` if not); the link's failure is an
    /// error (and stays one).
    pub fn try_take(&self) -> std::io::Result<Option<Message>> {
        let mut sink = [0u8; 256];
        while matches!(nix::unistd::read(&self.wake, &mut sink), Ok(n) if n > 0) {}
        match self.queue.try_recv() {
            Ok(m) => m.map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(gone()),
        }
    }

    /// The next message, waiting for it.
    pub fn take(&self) -> std::io::Result<Message> {
        self.queue.recv().map_err(|_| gone())?
    }

    /// The next message, waiting for it until `deadline`; `Ok(None)` then.
    pub fn take_until(&self, deadline: std::time::Instant) -> std::io::Result<Option<Message>> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match self.queue.recv_timeout(left) {
            Ok(m) => m.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    /// A placed message's buffer, for the thread to read into again.
    pub fn recycle(&self, data: Vec<u8>) {
        let _ = self.spare.try_send(data);
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the post-copy link's reading thread ended",
    )
}

/// The thread: reads messages until the link fails or the daemon is gone.
fn read_loop(
    mut rx: BufReader<Stream>,
    out: &SyncSender<std::io::Result<Message>>,
    spares: &Receiver<Vec<u8>>,
    woken: &OwnedFd,
) {
    loop {
        let m = read_one(&mut rx, spares);
        let failed = m.is_err();
        if out.send(m).is_err() {
            return;
        }
        let _ = nix::unistd::write(woken, &[1]);
        if failed {
            return;
        }
    }
}

/// One message: the header, and the bytes a `Pages` or `Refused` carries.
fn read_one(rx: &mut BufReader<Stream>, spares: &Receiver<Vec<u8>>) -> std::io::Result<Message> {
    let header = proto::recv(rx)?;
    let carries = matches!(header.kind, Kind::Pages | Kind::Refused);
    let mut data = spares.try_recv().unwrap_or_default();
    data.resize(if carries { header.len as usize } else { 0 }, 0);
    rx.read_exact(&mut data)?;
    let intact = header.kind != Kind::Pages || crc32fast::hash(&data) == header.crc;
    Ok(Message {
        header,
        data,
        intact,
    })
}
