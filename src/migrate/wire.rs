//! The page stream's connection (`docs/migration.md`): the handshake, with or without a
//! pre-shared key, and the frames, each checked on its own (crc32, or XChaCha20-Poly1305
//! with the key) and all of them together (a BLAKE3 digest of every frame's length and
//! crc32, sent at the end of an image). It owns bytes on the socket, not what frames mean
//! (`client.rs`, `server.rs`). A large plain frame can be read in pieces of
//! [`STREAM_PIECE`] bytes, each summed while it is in the CPU's cache, the frame's crc32
//! checked after the last ([`Conn::recv_start`], [`Conn::recv_body`]); a sealed frame is
//! always read and opened whole.
//!
//! ```text
//! hello (each side, client first): magic "\x89STPAGE\n", version u32 = 1, flags u32
//!        (bit 0: pre-shared key, bit 1: certificate TLS), then with the key a 24-byte
//!        random nonce
//! certificate TLS: a TLS handshake (`tls.rs`) right after the hellos, then every byte
//!        below is inside TLS, the frames plain (with their crc32)
//! key confirmation (with the key): client sends MAC(c2s, "client"), server checks it
//!        and answers MAC(s2c, "server")
//! frame: len u32, body; plain body = payload, crc32(payload) u32;
//!        keyed body = XChaCha20-Poly1305(payload) with its 16-byte tag, nonce = frame
//!        number of that direction (u64 LE, zero padded), associated data = len
//! ```

use std::io::{IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::error::MigrateError;
use super::tls::{Link, TlsConfig};
use crate::image::store::keys::{random_bytes, SecretKey};

pub const MAGIC: [u8; 8] = *b"\x89STPAGE\n";
pub const VERSION: u32 = 1;
const FLAG_PSK: u32 = 1;
const FLAG_TLS: u32 = 2;
/// The largest frame body accepted.
pub const MAX_FRAME: usize = 16 << 20;
const TAG_LEN: usize = 16;
const KEY_PURPOSE: &str = "stasis 2026-12 page stream pre-shared key";

/// How long a write may wait on a peer that stopped reading (a cut link), and a read on
/// one that stopped sending, before the stream fails.
pub const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a receiver waits for the next frame: the sender may take long between two
/// (a large tree's preparation before its first page); a dead sender's connection is
/// reset by its kernel anyway.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A streamed frame ([`Conn::recv_start`]) holds more than this many bytes past its head.
pub const STREAM_MIN: usize = 64 << 10;
/// What a streamed frame is read in: a piece stays in the CPU's cache while it is summed
/// and written.
pub const STREAM_PIECE: usize = 256 << 10;

/// A frame begun by [`Conn::recv_start`].
pub enum Start {
    /// Read whole and checked: its crc32 and that of the payload past the head.
    Whole(u32, u32),
    /// Its head is read; the rest is left for [`Conn::recv_body`].
    Body(Body),
}

/// The unread rest of a streamed frame.
pub struct Body {
    /// Where the frame began on the connection.
    at: u64,
    /// Payload bytes left.
    pub rest: usize,
    /// The crc32 of the payload read so far.
    crc: crc32fast::Hasher,
}

/// Frame types: the first byte of a payload.
pub mod tag {
    /// Client: an image begins (`final` u8, name_len u16, subdirectory name).
    pub const BEGIN: u8 = 1;
    /// Client: a file begins (id u32, name_len u16, name).
    pub const OPEN: u8 = 2;
    /// Client: bytes of a file (id u32, offset u64, data).
    pub const DATA: u8 = 3;
    /// Client: the image ends (files u32, data bytes u64, digest 32 bytes).
    pub const END: u8 = 4;
    /// Server: a stage is reached or failed (stage u8, ok u8, message).
    pub const STATUS: u8 = 5;
    /// Client (`stasis migrate --lazy`, the final image): its private anonymous memory
    /// is served by post-copy from the sender's address at this port (u16): the
    /// receiver restores with `--lazy-pages`.
    pub const LAZY: u8 = 6;
}

/// `STATUS` stages.
pub const STORED: u8 = 1;
pub const RESTORED: u8 = 2;
/// (`stasis receive` filling lazily, after `RESTORED` with the message `filling`) All
/// the restored tree's memory is in place, or the fill failed and the tree was killed.
pub const FILLED: u8 = 3;

/// One direction's key and frame counter.
struct Sealer {
    cipher: XChaCha20Poly1305,
    next: u64,
}

impl Sealer {
    fn nonce(&mut self) -> XNonce {
        let mut n = [0u8; 24];
        n[..8].copy_from_slice(&self.next.to_le_bytes());
        self.next += 1;
        n.into()
    }
}

/// How a page stream is protected (`--tls`).
#[derive(Clone, Debug, Default)]
pub enum Security {
    /// Plain frames, each with its crc32.
    #[default]
    Plain,
    /// Frames sealed with XChaCha20-Poly1305 under keys derived from this pre-shared key
    /// ([`stream_key`]).
    Psk([u8; 32]),
    /// Certificate TLS, both sides authenticated.
    Tls(Arc<TlsConfig>),
}

impl Security {
    fn flags(&self) -> u32 {
        match self {
            Security::Plain => 0,
            Security::Psk(_) => FLAG_PSK,
            Security::Tls(_) => FLAG_TLS,
        }
    }
}

/// What a hello's flags ask for, said to the user.
fn mode_name(flags: u32) -> &'static str {
    match flags {
        0 => "a plain stream",
        FLAG_PSK => "a stream under a pre-shared key (--tls --tls-psk FILE)",
        FLAG_TLS => "certificate TLS (--tls --tls-cert FILE)",
        _ => "an unknown protection",
    }
}

/// An open page-stream connection, either side.
pub struct Conn {
    stream: Link,
    pub peer: String,
    /// Bytes written to and read from the socket.
    pub sent: u64,
    pub received: u64,
    keys: Option<(Sealer, Sealer)>,
    /// The digest of the frames sent (client) or received (server) in this image.
    pub digest: blake3::Hasher,
    /// Frames and payload bytes counted into `digest`.
    pub frames: u64,
}

/// The key a page stream is sealed with, derived from a key file's secret.
pub fn stream_key(secret: &SecretKey) -> [u8; 32] {
    secret.derive(KEY_PURPOSE)
}

impl Conn {
    /// Connects and shakes hands as the client.
    pub fn connect(peer: &str, security: &Security) -> Result<Conn, MigrateError> {
        let stream = TcpStream::connect(peer).map_err(|source| MigrateError::Connect {
            peer: peer.into(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn::new(stream, peer.into());
        c.handshake(security, true)?;
        Ok(c)
    }

    /// Shakes hands as the server on an accepted connection.
    pub fn accept(stream: TcpStream, security: &Security) -> Result<Conn, MigrateError> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let _ = stream.set_nodelay(true);
        let mut c = Conn::new(stream, peer);
        c.set_read_timeout(Some(IDLE_TIMEOUT));
        c.handshake(security, false)?;
        Ok(c)
    }

    fn new(stream: TcpStream, peer: String) -> Conn {
        keepalive(&stream);
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        Conn {
            stream: Link::Plain(stream),
            peer,
            sent: 0,
            received: 0,
            keys: None,
            digest: blake3::Hasher::new(),
            frames: 0,
        }
    }

    /// Hellos, then with a key the nonces and the key confirmation.
    ///
    /// Ordering requirements: the client speaks first at each step, so that a server
    /// refusing the client's key has read its confirmation before closing.
    fn handshake(&mut self, security: &Security, client: bool) -> Result<(), MigrateError> {
        let mut mine = [0u8; 24];
        if let Security::Psk(_) = security {
            random_bytes(&mut mine)?;
        }
        let hello = hello(security.flags(), &mine);
        let theirs = if client {
            self.put(&hello)?;
            self.read_hello(security.flags())?
        } else {
            let t = self.read_hello(security.flags());
            self.put(&hello)?;
            t?
        };
        let key = match security {
            Security::Plain => return Ok(()),
            Security::Tls(cfg) => return self.start_tls(cfg, client),
            Security::Psk(key) => key,
        };
        let (cn, sn) = if client {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let session = blake3::Hasher::new_keyed(key)
            .update(&cn)
            .update(&sn)
            .finalize();
        let c2s = blake3::keyed_hash(session.as_bytes(), b"client to server");
        let s2c = blake3::keyed_hash(session.as_bytes(), b"server to client");
        let confirm_c = blake3::keyed_hash(c2s.as_bytes(), b"client");
        let confirm_s = blake3::keyed_hash(s2c.as_bytes(), b"server");
        let (send, recv, my_confirm, their_confirm) = if client {
            (c2s, s2c, confirm_c, confirm_s)
        } else {
            (s2c, c2s, confirm_s, confirm_c)
        };
        if client {
            self.put(my_confirm.as_bytes())?;
        }
        let mut got = [0u8; 32];
        self.take(&mut got).map_err(|e| match e {
            MigrateError::Receive { peer, .. } if client => MigrateError::Handshake {
                peer,
                what: "the page server refused the pre-shared key (the key files differ)".into(),
            },
            other => other,
        })?;
        if blake3::Hash::from(got) != their_confirm {
            return Err(self.handshake_error(if client {
                "the page server does not hold the pre-shared key (the key files differ)"
            } else {
                "the client does not hold the pre-shared key (the key files differ)"
            }));
        }
        if !client {
            self.put(my_confirm.as_bytes())?;
        }
        let sealer = |k: blake3::Hash| Sealer {
            cipher: XChaCha20Poly1305::new(k.as_bytes().into()),
            next: 0,
        };
        self.keys = Some((sealer(send), sealer(recv)));
        Ok(())
    }

    /// Certificate TLS over the socket, right after the hellos.
    fn start_tls(&mut self, cfg: &TlsConfig, client: bool) -> Result<(), MigrateError> {
        let tcp = self
            .stream
            .tcp()
            .try_clone()
            .map_err(|e| self.recv_error(e))?;
        let link = match client {
            true => super::tls::client(cfg, tcp, &self.peer),
            false => super::tls::server(cfg, tcp),
        };
        self.stream = link.map_err(|what| self.handshake_error(&what))?;
        Ok(())
    }

    fn read_hello(&mut self, mine: u32) -> Result<[u8; 24], MigrateError> {
        let mut head = [0u8; 16];
        self.take(&mut head)?;
        if head[..8] != MAGIC {
            return Err(self.handshake_error("not a stasis page stream (bad magic)"));
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            let what = format!("page stream version {version}, this stasis speaks {VERSION}");
            return Err(self.handshake_error(&what));
        }
        let flags = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        if flags != mine {
            let what = format!(
                "the peer wants {} and this side {}",
                mode_name(flags),
                mode_name(mine)
            );
            return Err(self.handshake_error(&what));
        }
        let mut nonce = [0u8; 24];
        if mine == FLAG_PSK {
            self.take(&mut nonce)?;
        }
        Ok(nonce)
    }

    fn handshake_error(&self, what: &str) -> MigrateError {
        MigrateError::Handshake {
            peer: self.peer.clone(),
            what: what.into(),
        }
    }

    /// Sends one frame whose payload is `head` then the `data` pieces; `data_crc` is the
    /// crc32 of the pieces if the caller has it.
    pub fn send(
        &mut self,
        head: &[u8],
        data: &[&[u8]],
        data_crc: Option<&crc32fast::Hasher>,
    ) -> Result<(), MigrateError> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        match data_crc {
            Some(c) => crc.combine(c),
            None => data.iter().for_each(|d| crc.update(d)),
        }
        let crc = crc.finalize();
        let payload = head.len() + data.iter().map(|d| d.len()).sum::<usize>();
        self.count(payload, crc);
        match self.keys.as_mut() {
            None => {
                let len = ((payload + 4) as u32).to_le_bytes();
                let crc = crc.to_le_bytes();
                let mut pieces = vec![&len[..], head];
                pieces.extend_from_slice(data);
                pieces.push(&crc);
                self.put_all(&pieces)?;
                self.stream.flush_tls().map_err(|e| self.send_error(e))
            }
            Some((send, _)) => {
                let len = ((payload + TAG_LEN) as u32).to_le_bytes();
                let mut body = Vec::with_capacity(payload + TAG_LEN);
                body.extend_from_slice(head);
                data.iter().for_each(|d| body.extend_from_slice(d));
                let nonce = send.nonce();
                send.cipher
                    .encrypt_in_place(&nonce, &len, &mut body)
                    .map_err(|_| self.handshake_error("encryption failed"))?;
                self.put_all(&[&len, &body])
            }
        }
    }

    /// Receives one frame's payload into `buf`, checked; returns its crc32 (for
    /// [`Conn::count`]) and the crc32 of the payload past its first `head` bytes (the data
    /// of a DATA frame), so that no byte is summed twice.
    pub fn recv(&mut self, buf: &mut Vec<u8>, head: usize) -> Result<(u32, u32), MigrateError> {
        match self.recv_start(buf, head, None)? {
            Start::Whole(crc, rest) => Ok((crc, rest)),
            Start::Body(_) => unreachable!("recv_start streams only the tag it is given"),
        }
    }

    /// Like [`Conn::recv`], but a plain frame whose payload starts with `stream` (a tag)
    /// and holds more than [`STREAM_MIN`] bytes past `head` is left in the socket after
    /// its first `head` bytes: its [`Body`] is read with [`Conn::recv_body`].
    pub fn recv_start(
        &mut self,
        buf: &mut Vec<u8>,
        head: usize,
        stream: Option<u8>,
    ) -> Result<Start, MigrateError> {
        let at = self.received;
        let mut len = [0u8; 4];
        self.take(&mut len)?;
        let n = u32::from_le_bytes(len) as usize;
        if !(4..=MAX_FRAME).contains(&n) {
            return Err(self.corrupt(at, format!("frame length {n} out of range")));
        }
        let streams = self.keys.is_none() && stream.is_some() && n - 4 > head + STREAM_MIN;
        let first = if streams { head } else { n };
        buf.resize(first, 0);
        self.take(buf)?;
        if streams && buf.first() == stream.as_ref() {
            let mut crc = crate::sys::cpu::crc32();
            crc.update(buf);
            let rest = n - 4 - head;
            return Ok(Start::Body(Body { at, rest, crc }));
        }
        if streams {
            buf.resize(n, 0);
            self.take(&mut buf[head..])?;
        }
        self.check_whole(buf, &len, head, at)
            .map(|(c, r)| Start::Whole(c, r))
    }

    /// The rest of a frame read whole (`buf`, its length field `len`), checked.
    fn check_whole(
        &mut self,
        buf: &mut Vec<u8>,
        len: &[u8; 4],
        head: usize,
        at: u64,
    ) -> Result<(u32, u32), MigrateError> {
        let n = buf.len();
        let want = match self.keys.as_mut() {
            None => {
                let body = n - 4;
                let want =
                    u32::from_le_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]]);
                buf.truncate(body);
                Some(want)
            }
            Some((_, recv)) => {
                let nonce = recv.nonce();
                if recv.cipher.decrypt_in_place(&nonce, len, buf).is_err() {
                    return Err(self.corrupt(at, "frame authentication failed".into()));
                }
                None
            }
        };
        let split = head.min(buf.len());
        let mut whole = crc32fast::Hasher::new();
        whole.update(&buf[..split]);
        let mut rest = crc32fast::Hasher::new();
        rest.update(&buf[split..]);
        let rest_crc = rest.clone().finalize();
        whole.combine(&rest);
        let crc = whole.finalize();
        if want.is_some_and(|w| w != crc) {
            return Err(self.corrupt(at, "frame checksum mismatch".into()));
        }
        Ok((crc, rest_crc))
    }

    /// Reads the rest of a streamed frame piece by piece into `scratch` (each piece
    /// checksummed while it is still in the CPU's cache) and hands each to `each` with its
    /// offset in the rest; then checks the frame's crc32. Pieces are handed over before
    /// the frame is checked: the caller writes them where a failed check discards them.
    /// Returns the frame's crc32 and that of the rest, like [`Conn::recv`].
    pub fn recv_body(
        &mut self,
        body: Body,
        scratch: &mut Vec<u8>,
        mut each: impl FnMut(&mut Vec<u8>, u64) -> Result<(), MigrateError>,
    ) -> Result<(u32, u32), MigrateError> {
        let Body { at, rest, mut crc } = body;
        let mut data = crate::sys::cpu::crc32();
        let mut done = 0;
        while done < rest {
            let piece = (rest - done).min(STREAM_PIECE);
            scratch.resize(piece, 0);
            self.take(scratch)?;
            data.update(scratch);
            each(scratch, done as u64)?;
            done += piece;
        }
        let mut want = [0u8; 4];
        self.take(&mut want)?;
        let data_crc = data.clone().finalize();
        crc.combine(&data);
        let crc = crc.finalize();
        if u32::from_le_bytes(want) != crc {
            return Err(self.corrupt(at, "frame checksum mismatch".into()));
        }
        Ok((crc, data_crc))
    }

    /// Counts a frame into the digest: its payload length and crc32.
    pub fn count(&mut self, len: usize, crc: u32) {
        self.digest.update(&(len as u64).to_le_bytes());
        self.digest.update(&crc.to_le_bytes());
        self.frames += 1;
    }

    /// Starts a new digest (the previous one was sent or checked).
    pub fn take_digest(&mut self) -> [u8; 32] {
        let d = *self.digest.finalize().as_bytes();
        self.digest = blake3::Hasher::new();
        self.frames = 0;
        d
    }

    pub fn corrupt(&self, offset: u64, what: String) -> MigrateError {
        MigrateError::Corrupt {
            peer: self.peer.clone(),
            offset,
            what,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), MigrateError> {
        self.put_all(&[bytes])?;
        self.stream.flush_tls().map_err(|e| self.send_error(e))
    }

    /// `writev` until every byte of `pieces` is written.
    fn put_all(&mut self, pieces: &[&[u8]]) -> Result<(), MigrateError> {
        let (mut first, mut skip) = (0, 0);
        while first < pieces.len() {
            let iovs: Vec<IoSlice> = std::iter::once(IoSlice::new(&pieces[first][skip..]))
                .chain(pieces[first + 1..].iter().map(|p| IoSlice::new(p)))
                .take(1024)
                .collect();
            let mut n = match self.stream.write_vectored(&iovs) {
                Ok(0) => return Err(self.send_error(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.send_error(e)),
            };
            self.sent += n as u64;
            while first < pieces.len() && n >= pieces[first].len() - skip {
                n -= pieces[first].len() - skip;
                (first, skip) = (first + 1, 0);
            }
            skip += n;
        }
        Ok(())
    }

    fn send_error(&self, source: std::io::Error) -> MigrateError {
        let source = stalled(source);
        MigrateError::Send {
            peer: self.peer.clone(),
            offset: self.sent,
            source,
        }
    }

    /// Exactly `buf.len()` bytes; an early end of the connection is an error.
    fn take(&mut self, buf: &mut [u8]) -> Result<(), MigrateError> {
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => {
                    let eof = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection was closed",
                    );
                    return Err(self.recv_error(eof));
                }
                Ok(n) => {
                    got += n;
                    self.received += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.recv_error(e)),
            }
        }
        Ok(())
    }

    fn recv_error(&self, source: std::io::Error) -> MigrateError {
        let source = stalled(source);
        MigrateError::Receive {
            peer: self.peer.clone(),
            offset: self.received,
            source,
        }
    }

    /// The address of this side of the connection.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.tcp().local_addr()
    }

    /// The address of the other side.
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.tcp().peer_addr()
    }

    /// A second handle on the socket (to shut it down from another thread).
    pub fn socket(&self) -> std::io::Result<TcpStream> {
        self.stream.tcp().try_clone()
    }

    /// Sets how long a read may wait (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<std::time::Duration>) {
        let _ = self.stream.tcp().set_read_timeout(t);
    }
}

/// TCP keepalive probes every 2 s after 5 s idle, 4 unanswered ending the connection:
/// a side waiting for an answer (a slow restore on the other end is fine, its kernel
/// answers the probes) learns of a cut link in about 13 s.
pub fn keepalive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &5);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &2);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &4);
}

/// A socket timeout, said as what it means.
fn stalled(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out: no progress (the peer or the link is down)",
        ),
        _ => e,
    }
}

fn hello(flags: u32, nonce: &[u8; 24]) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    if flags == FLAG_PSK {
        h.extend_from_slice(nonce);
    }
    h
}

/// A STATUS payload.
pub fn status(stage: u8, ok: bool, message: &str) -> Vec<u8> {
    let mut p = vec![tag::STATUS, stage, u8::from(ok)];
    p.extend_from_slice(message.as_bytes());
    p
}

/// Reads `n` bytes at `at` of a payload, or says what is missing.
pub fn field<'a>(p: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let f = p.get(*at..*at + n)?;
    *at += n;
    Some(f)
}

pub fn u16_at(p: &[u8], at: &mut usize) -> Option<u16> {
    field(p, at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

pub fn u32_at(p: &[u8], at: &mut usize) -> Option<u32> {
    field(p, at, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

pub fn u64_at(p: &[u8], at: &mut usize) -> Option<u64> {
    field(p, at, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

/// `len u16, bytes` as a plain file name.
pub fn name_at(p: &[u8], at: &mut usize) -> Option<String> {
    let n = u16_at(p, at)? as usize;
    let s = std::str::from_utf8(field(p, at, n)?).ok()?;
    Some(s.to_string())
}

pub fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain connection over loopback: (client, server).
    fn pair() -> (Conn, Conn) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            Conn::accept(s, &Security::Plain).expect("server handshake")
        });
        let client = Conn::connect(&addr, &Security::Plain).expect("client handshake");
        (client, server.join().expect("server thread"))
    }

    /// A DATA frame's head (tag, file 7, offset 4096) and `n` bytes of data.
    fn data_frame(n: usize) -> (Vec<u8>, Vec<u8>) {
        let mut head = vec![tag::DATA];
        head.extend_from_slice(&7u32.to_le_bytes());
        head.extend_from_slice(&4096u64.to_le_bytes());
        let data = (0..n).map(|i| (i * 31 + i / 4096) as u8).collect();
        (head, data)
    }

    /// Reads the next frame, streaming DATA frames; the data (from the head on) and
    /// the crc32s `recv` would give.
    fn read_frame(server: &mut Conn) -> Result<(Vec<u8>, u32, u32), MigrateError> {
        let mut buf = Vec::new();
        match server.recv_start(&mut buf, 13, Some(tag::DATA))? {
            Start::Whole(crc, rest) => Ok((buf, crc, rest)),
            Start::Body(body) => {
                let mut got = buf.clone();
                let mut scratch = Vec::new();
                let (crc, rest) = server.recv_body(body, &mut scratch, |p, at| {
                    assert_eq!(got.len() as u64, 13 + at, "pieces come in order");
                    got.extend_from_slice(p);
                    Ok(())
                })?;
                Ok((got, crc, rest))
            }
        }
    }

    #[test]
    fn streamed_frames_read_as_whole_ones() {
        let (mut client, mut server) = pair();
        let (head, data) = data_frame(3 * STREAM_PIECE + 4096 * 5);
        let (small_head, small) = data_frame(4096);
        let big_open = [vec![tag::OPEN], vec![1u8; 2 * STREAM_MIN]].concat();
        let sender = std::thread::spawn(move || {
            client.send(&head, &[&data], None).expect("send");
            client.send(&small_head, &[&small], None).expect("send");
            client.send(&big_open, &[], None).expect("send");
            (head, data, small_head, small, big_open)
        });
        let streamed = read_frame(&mut server).expect("streamed frame");
        let small_frame = read_frame(&mut server).expect("small frame");
        let other = read_frame(&mut server).expect("large frame of another tag");
        let (head, data, small_head, small, big_open) = sender.join().expect("sender");
        let whole = |h: &[u8], d: &[u8]| {
            let mut rest = crc32fast::Hasher::new();
            rest.update(d);
            let mut all = crc32fast::Hasher::new();
            all.update(h);
            all.combine(&rest);
            (all.finalize(), rest.finalize())
        };
        assert_eq!(streamed.0, [&head[..], &data].concat());
        assert_eq!((streamed.1, streamed.2), whole(&head, &data));
        assert_eq!(small_frame.0, [&small_head[..], &small].concat());
        assert_eq!((small_frame.1, small_frame.2), whole(&small_head, &small));
        assert_eq!(other.0, big_open);
    }

    #[test]
    fn a_corrupt_streamed_frame_is_refused() {
        let (mut client, mut server) = pair();
        let (head, mut data) = data_frame(2 * STREAM_PIECE);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&data);
        let crc = crc.finalize();
        // A bit flipped on the way, in the last piece.
        data[STREAM_PIECE + 100] ^= 4;
        let len = ((head.len() + data.len() + 4) as u32).to_le_bytes();
        client
            .put_all(&[&len, &head, &data, &crc.to_le_bytes()])
            .expect("send");
        match read_frame(&mut server) {
            Err(MigrateError::Corrupt { what, .. }) => assert!(what.contains("checksum")),
            other => panic!("a corrupt frame was taken: {:?}", other.map(|o| o.1)),
        }
    }
}
