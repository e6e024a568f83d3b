//! The post-copy wire protocol between `stasis dump --lazy-pages` (the source, which
//! listens) and `stasis restore --lazy-pages` (the target, which connects). Every message
//! starts with one 32-byte little-endian header; page data follows a `Pages` header,
//! checked by the crc32 the header carries; a refusal's reason follows a `Refused` one.
//!
//! ```text
//! target → source: Hello(session, VERSION) · Get(id, pid, addr, len)* · Started · Resumed · Done
//! source → target: Welcome(lazy bytes) | Refused(reason) · Pages(id, pid, addr, len, crc) data*
//!                  · Go · (from Resumed on, between answers) Pages(0, ...) data* · Pushed · Bye
//! ```
//!
//! `Started` and `Go` are a handshake: the target asks before it resumes its tree, and
//! resumes it only once the source answered `Go`, having taken for good the decision
//! never to resume its own. A link that fails in between leaves the target's tree
//! unstarted and the source's frozen: never both running, never both lost for good
//! (stopping the source resumes its tree).
//!
//! The source answers requests first (a fault waits for its page) and, from `Resumed`
//! on (the target's tree runs: until then the CPU is the restore's), pushes every served page once in address order between them, so the bulk of the
//! memory flows without a round trip per chunk.

use std::io::{IoSlice, Read, Write};

/// Version of this protocol; a peer speaking another is refused.
pub const VERSION: u64 = 2;
/// The most one `Get` may ask for (and one `Pages` carry).
pub const MAX_LEN: u64 = 16 << 20;
/// Header length.
pub const HEADER_LEN: usize = 32;

/// Message kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `addr` = the image's session, `len` = [`VERSION`].
    Hello = 1,
    /// `len` = bytes the source serves.
    Welcome = 2,
    /// `pid`, `addr`, `len`: pages of that process at the dump; `id` names the answer.
    Get = 3,
    /// The pages asked for by `id`, `len` bytes follow, `crc` their crc32.
    Pages = 4,
    /// The target is about to resume its tree: the source may no longer resume its own,
    /// and answers [`Kind::Go`].
    Started = 5,
    /// The target holds every page: the source kills its tree.
    Done = 6,
    /// `len` bytes of a reason follow; the connection ends.
    Refused = 7,
    /// The source's tree is gone.
    Bye = 8,
    /// The source pushed every page once (unasked `Pages`, `id` 0, sent from `Resumed`
    /// on, in address order); what is still missing must be asked for.
    Pushed = 9,
    /// The answer to `Started`: the source will not resume its tree; the target's may run.
    Go = 10,
    /// The target's tree runs: the source starts pushing.
    Resumed = 11,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Get,
            4 => Kind::Pages,
            5 => Kind::Started,
            6 => Kind::Done,
            7 => Kind::Refused,
            8 => Kind::Bye,
            9 => Kind::Pushed,
            10 => Kind::Go,
            11 => Kind::Resumed,
            _ => return None,
        })
    }
}

/// One message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub id: u32,
    pub pid: i32,
    pub crc: u32,
    pub addr: u64,
    pub len: u64,
}

impl Header {
    pub fn new(kind: Kind) -> Header {
        Header {
            kind,
            id: 0,
            pid: 0,
            crc: 0,
            addr: 0,
            len: 0,
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses a header; `None` for an unknown kind or a length over [`MAX_LEN`] where
    /// data follows.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let h = Header {
            kind: Kind::from_u32(u32_at(0))?,
            id: u32_at(4),
            pid: u32_at(8) as i32,
            crc: u32_at(12),
            addr: u64_at(16),
            len: u64_at(24),
        };
        let carries = matches!(h.kind, Kind::Pages | Kind::Refused | Kind::Get);
        (!carries || h.len <= MAX_LEN).then_some(h)
    }
}

/// Writes a header and the data after it, in one `writev` where the writer takes it
/// (no copy of the data into a buffer, no lone segment for the header).
pub fn send(w: &mut impl Write, h: Header, data: &[u8]) -> std::io::Result<()> {
    let head = h.to_bytes();
    let mut at = 0usize;
    let total = HEADER_LEN + data.len();
    while at < total {
        let n = if at < HEADER_LEN {
            w.write_vectored(&[IoSlice::new(&head[at..]), IoSlice::new(data)])
        } else {
            w.write(&data[at - HEADER_LEN..])
        };
        match n {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one header: an unknown one is `InvalidData`.
pub fn recv(r: &mut impl Read) -> std::io::Result<Header> {
    let mut b = [0u8; HEADER_LEN];
    r.read_exact(&mut b)?;
    Header::parse(&b).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not a post-copy message")
    })
}

/// Sends `reason` as a refusal.
pub fn refuse(w: &mut impl Write, reason: &str) -> std::io::Result<()> {
    let mut h = Header::new(Kind::Refused);
    h.len = reason.len() as u64;
    send(w, h, reason.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            kind: Kind::Pages,
            id: 7,
            pid: 1234,
            crc: 0xdead_beef,
            addr: 0x7f00_0000_1000,
            len: 1 << 20,
        };
        assert_eq!(Header::parse(&h.to_bytes()), Some(h));
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut b = Header::new(Kind::Get).to_bytes();
        b[0] = 99;
        assert!(Header::parse(&b).is_none());
        let mut h = Header::new(Kind::Pages);
        h.len = MAX_LEN + 1;
        assert!(Header::parse(&h.to_bytes()).is_none());
    }

    #[test]
    fn messages_stream() {
        let mut buf = Vec::new();
        send(&mut buf, Header::new(Kind::Started), &[]).unwrap();
        refuse(&mut buf, "no").unwrap();
        let mut r = &buf[..];
        assert_eq!(recv(&mut r).unwrap().kind, Kind::Started);
        let h = recv(&mut r).unwrap();
        assert_eq!((h.kind, h.len), (Kind::Refused, 2));
    }
}
