//! The sending side of the page stream: an [`ImageSink`] that sends an image to a page
//! server (`stasis dump|pre-dump --page-server`, each round of `stasis migrate`) as it is
//! written. Page data goes from the buffer it was read into (out of the tree's memory)
//! straight to the socket; the record files are sent from the local directory at the
//! commit. Frames of several pages files are interleaved on one connection, each naming
//! its file and offset.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::error::MigrateError;
use super::wire::{self, put_name, tag, Conn};
use crate::image::{ImageError, ImageSink};

/// What a record file is sent in: one frame per this many bytes.
const FILE_CHUNK: usize = 1 << 20;
/// How long the sender waits for the receiver to store or restore an image.
const STATUS_WAIT: Duration = Duration::from_secs(300);
/// How long a sender whose write failed waits for the receiver's reason.
const REASON_WAIT: Duration = Duration::from_secs(2);

/// Where an image is sent: `ADDR:PORT` and how the stream is protected (`--tls`).
#[derive(Clone, Debug)]
pub struct Target {
    pub peer: String,
    pub security: wire::Security,
}

/// One image on its way to a page server.
pub struct RemoteImage {
    conn: Mutex<Conn>,
    next_id: AtomicU32,
    /// Files sent through `open` (the commit sends the others).
    opened: Mutex<BTreeSet<String>>,
    data: AtomicU64,
    /// A second handle on the socket, to end a wait from another thread.
    socket: Option<std::net::TcpStream>,
}

impl RemoteImage {
    /// Connects to `target` and begins the image `name` (a subdirectory of the server's
    /// directory, or "" for that directory itself); `last` ends the server's run.
    pub fn begin(target: &Target, name: &str, last: bool) -> Result<Arc<Self>, MigrateError> {
        let mut conn = Conn::connect(&target.peer, &target.security)?;
        let mut head = vec![tag::BEGIN, u8::from(last)];
        put_name(&mut head, name);
        conn.send(&head, &[], None)?;
        let socket = conn.socket().ok();
        Ok(Arc::new(RemoteImage {
            conn: Mutex::new(conn),
            next_id: AtomicU32::new(1),
            opened: Mutex::new(BTreeSet::new()),
            data: AtomicU64::new(0),
            socket,
        }))
    }

    /// This side's address on the connection (where a post-copy source listens, so
    /// that the receiver reaches it by the route it answers on).
    pub fn local_ip(&self) -> Result<std::net::IpAddr, MigrateError> {
        let conn = self.lock();
        conn.local_addr()
            .map(|a| a.ip())
            .map_err(|source| MigrateError::Send {
                peer: conn.peer.clone(),
                offset: conn.sent,
                source,
            })
    }

    /// Tells the receiver that this image's private anonymous memory is served by
    /// post-copy from this side's address at `port` (`tag::LAZY`).
    pub fn serve_lazily(&self, port: u16) -> Result<(), MigrateError> {
        let mut head = vec![tag::LAZY];
        head.extend_from_slice(&port.to_le_bytes());
        self.send(&head, &[], None)
    }

    /// [`RemoteImage::wait_restored`] without a time limit (a post-copy restore answers
    /// once every page is in; a dead peer is found by the keepalive probes).
    pub fn wait_restored_unbounded(&self) -> Result<(), MigrateError> {
        self.wait_status_for(wire::RESTORED, None).map(drop)
    }

    /// Ends any wait on the connection (the waiting thread gets an error).
    pub fn shutdown(&self) {
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Bytes written to the socket so far.
    pub fn bytes_sent(&self) -> u64 {
        self.lock().sent
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the receiver's word that the image is restored and runs (`stasis
    /// receive`); its failure is an error naming why.
    /// `Ok(true)` when the receiver fills the tree's memory lazily: its
    /// [`RemoteImage::wait_filled`] follows.
    pub fn wait_restored(&self) -> Result<bool, MigrateError> {
        self.wait_status(wire::RESTORED).map(|m| m == "filling")
    }

    /// Waits for the receiver's word that all the restored tree's memory is in place
    /// (no time limit: 2 GiB may take seconds on a loaded machine; a dead peer is found
    /// by the keepalive probes).
    pub fn wait_filled(&self) -> Result<(), MigrateError> {
        self.wait_status_for(wire::FILLED, None).map(drop)
    }

    fn wait_status(&self, stage: u8) -> Result<String, MigrateError> {
        // The receiver verifies and syncs (and may restore) a large image first.
        self.wait_status_for(stage, Some(STATUS_WAIT))
    }

    fn wait_status_for(&self, stage: u8, limit: Option<Duration>) -> Result<String, MigrateError> {
        let mut conn = self.lock();
        let mut buf = Vec::new();
        conn.set_read_timeout(limit);
        conn.recv(&mut buf, 0)?;
        let peer = conn.peer.clone();
        match buf.as_slice() {
            [tag::STATUS, s, 1, msg @ ..] if *s == stage => {
                Ok(String::from_utf8_lossy(msg).into_owned())
            }
            [tag::STATUS, _, _, msg @ ..] => Err(MigrateError::Refused {
                peer,
                what: String::from_utf8_lossy(msg).into_owned(),
            }),
            _ => Err(conn.corrupt(conn.received, "expected a status frame".into())),
        }
    }

    /// After a failed write: the receiver's own reason if it sent one, else `err`.
    fn explain(conn: &mut Conn, err: MigrateError) -> MigrateError {
        if !matches!(err, MigrateError::Send { .. }) {
            return err;
        }
        conn.set_read_timeout(Some(REASON_WAIT));
        let mut buf = Vec::new();
        if conn.recv(&mut buf, 0).is_ok() {
            if let [tag::STATUS, _, 0, msg @ ..] = buf.as_slice() {
                let what = String::from_utf8_lossy(msg);
                return MigrateError::Refused {
                    peer: conn.peer.clone(),
                    what: format!("{what} (after {} bytes sent)", conn.sent),
                };
            }
        }
        err
    }

    fn send(
        &self,
        head: &[u8],
        data: &[&[u8]],
        crc: Option<&crc32fast::Hasher>,
    ) -> Result<(), MigrateError> {
        let mut conn = self.lock();
        conn.send(head, data, crc)
            .map_err(|e| Self::explain(&mut conn, e))
    }

    /// Sends the file `name` of `dir` whole.
    fn send_file(&self, dir: &Path, name: &str) -> Result<(), MigrateError> {
        let path = dir.join(name);
        let mut file = std::fs::File::open(&path).map_err(ImageError::io("open", &path))?;
        let id = self.open(name)?;
        let (mut buf, mut at) = (vec![0u8; FILE_CHUNK], 0u64);
        loop {
            let n = file.read(&mut buf).map_err(ImageError::io("read", &path))?;
            if n == 0 {
                return Ok(());
            }
            self.write_at(id, at, &[&buf[..n]], None)?;
            at += n as u64;
        }
    }

    fn end(&self, files: u32) -> Result<(), MigrateError> {
        let mut conn = self.lock();
        let digest = conn.take_digest();
        let mut head = vec![tag::END];
        head.extend_from_slice(&files.to_le_bytes());
        head.extend_from_slice(&self.data.load(Ordering::Relaxed).to_le_bytes());
        head.extend_from_slice(&digest);
        conn.send(&head, &[], None)
            .map_err(|e| Self::explain(&mut conn, e))
    }
}

impl ImageSink for RemoteImage {
    fn open(&self, name: &str) -> Result<u32, ImageError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        let mut head = vec![tag::OPEN];
        head.extend_from_slice(&id.to_le_bytes());
        put_name(&mut head, name);
        self.send(&head, &[], None)?;
        Ok(id)
    }

    fn write_at(
        &self,
        file: u32,
        offset: u64,
        pieces: &[&[u8]],
        crc: Option<&crc32fast::Hasher>,
    ) -> Result<(), ImageError> {
        let mut head = [0u8; 13];
        head[0] = tag::DATA;
        head[1..5].copy_from_slice(&file.to_le_bytes());
        head[5..].copy_from_slice(&offset.to_le_bytes());
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        // A frame holds at most MAX_FRAME bytes: larger writes go in several.
        if len + 64 > wire::MAX_FRAME {
            return split_write(self, file, offset, pieces);
        }
        self.send(&head, pieces, crc)?;
        self.data.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    fn commit(&self, dir: &Path) -> Result<(), ImageError> {
        let names = crate::image::store::file_names(dir).map_err(ImageError::from)?;
        let opened = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for name in names.iter().filter(|n| !opened.contains(*n)) {
            self.send_file(dir, name)?;
        }
        let files = self.next_id.load(Ordering::Relaxed) - 1;
        self.end(files)?;
        Ok(self.wait_status(wire::STORED).map(drop)?)
    }
}

/// Writes `pieces` at `offset` in frames small enough, piece by piece (each piece of a
/// pages write is at most a batch of a few MiB).
fn split_write(
    sink: &RemoteImage,
    file: u32,
    mut offset: u64,
    pieces: &[&[u8]],
) -> Result<(), ImageError> {
    for p in pieces {
        for part in p.chunks(wire::MAX_FRAME / 2) {
            sink.write_at(file, offset, &[part], None)?;
            offset += part.len() as u64;
        }
    }
    Ok(())
}
