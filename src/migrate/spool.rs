//! The page server's writer thread: the receiving thread checks each frame and hands its
//! buffer here (a large DATA frame piece by piece as it is read, before the frame's
//! crc32 is checked: a failed check discards the whole image, `server.rs`), to be
//! written at its offset while the next is received, so that reading the socket and
//! writing the files overlap instead of taking turns. Buffers go back to the receiving
//! thread once written. It owns the writing of received bytes, not
//! their checking (`server.rs`).
//!
//! At most [`DEPTH`] frames wait: a disk slower than the link stops the receiving, and
//! TCP the sender. The first failed write ends the thread; the receiving thread learns
//! of it at its next hand-over or at [`Spool::finish`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::error::MigrateError;
use crate::image::ImageError;

/// Frames waiting to be written at most.
const DEPTH: usize = 4;

/// A file written by the thread, with its path for errors.
pub struct Target {
    pub file: File,
    pub path: PathBuf,
}

/// One write: `buf[from..]` at `offset` of `target`.
struct Job {
    target: Arc<Target>,
    offset: u64,
    buf: Vec<u8>,
    from: usize,
}

/// The writer thread and its queues.
pub struct Spool {
    jobs: Option<SyncSender<Job>>,
    spares: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Result<(), MigrateError>>>,
}

impl Spool {
    pub fn start() -> Result<Spool, MigrateError> {
        let (jobs, queue) = sync_channel::<Job>(DEPTH);
        let (give, spares) = sync_channel(DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("page-writer".into())
            .spawn(move || write_loop(&queue, &give))
            .map_err(|source| MigrateError::Spawn {
                what: "the page server's writer thread".into(),
                source,
            })?;
        Ok(Spool {
            jobs: Some(jobs),
            spares,
            thread: Some(thread),
        })
    }

    /// A buffer to receive the next frame into (a written one, or a new one).
    pub fn spare(&self) -> Vec<u8> {
        self.spares.try_recv().unwrap_or_default()
    }

    /// Queues `buf[from..]` to be written at `offset`; a failed earlier write is
    /// returned here.
    pub fn write(
        &mut self,
        target: &Arc<Target>,
        offset: u64,
        buf: Vec<u8>,
        from: usize,
    ) -> Result<(), MigrateError> {
        let job = Job {
            target: target.clone(),
            offset,
            buf,
            from,
        };
        let sent = self.jobs.as_ref().map(|j| j.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread ended: its error says why.
            _ => self.finish(),
        }
    }

    /// Waits until every queued write is done; the first failure.
    pub fn finish(&mut self) -> Result<(), MigrateError> {
        self.jobs.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(MigrateError::Spawn {
                what: "the page server's writer thread (it panicked)".into(),
                source: std::io::ErrorKind::Other.into(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn write_loop(queue: &Receiver<Job>, give: &SyncSender<Vec<u8>>) -> Result<(), MigrateError> {
    for job in queue {
        let t = &job.target;
        t.file
            .write_all_at(&job.buf[job.from..], job.offset)
            .map_err(ImageError::io("write", &t.path))?;
        let _ = give.try_send(job.buf);
    }
    Ok(())
}
