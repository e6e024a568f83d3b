//! Native AIO contexts (`io_setup(2)`): each is a ring the kernel maps into the task
//! (`/[aio]` in maps) and the task reads completions from. Saved as the ring's header
//! words and events; the restore side is `restore/aio.rs`.
//!
//! Requests still in flight (submitted, not completed) live only in the kernel, which
//! shows them nowhere: the ring holds completions. One that completes while the process
//! is being dumped moves the ring's tail, which is read again once its pages are saved
//! (refused then); one that stays in flight (a poll, a stuck disk) cannot be seen and
//! is lost. The ring is checked to be sane, and
//! to be a context of the process itself: a child forked from an AIO user maps its
//! parent's ring, but the context stays with the parent, which such a child cannot use
//! (refused: stasis would give it a context of its own).

use super::DumpError;
use crate::image::mm::{AioRing, Vma, VmaKind};
use crate::proc::MapEntry;
use crate::sys::batch::{Batch, Done};
use crate::sys::mem::Mem;

/// How an AIO ring shows in maps.
pub const RING: &str = "/[aio]";
/// `AIO_RING_MAGIC`, `AIO_RING_COMPAT_FEATURES`, `AIO_RING_INCOMPAT_FEATURES`.
const MAGIC: u32 = 0xa10a_10a1;
const COMPAT: u32 = 1;
const INCOMPAT: u32 = 0;
const HEADER: usize = AioRing::HEADER;
const EVENT: usize = AioRing::EVENT;

/// The ring mapped at `e` in `pid`, read through `/proc/PID/mem`.
pub fn ring(pid: i32, e: &MapEntry) -> Result<VmaKind, DumpError> {
    let mut bytes = vec![0u8; (e.end - e.start) as usize];
    Mem::open(pid, false)?.read(e.start, &mut bytes)?;
    parse(&bytes).map(VmaKind::Aio).map_err(|what| {
        DumpError::unsupported(format!(
            "the AIO ring {:#x}-{:#x} of pid {pid} {what}, which stasis cannot checkpoint",
            e.start, e.end
        ))
    })
}

/// Asks, in batch `b`, whether each ring at `starts` is a context of the process:
/// `io_getevents(ctx, 0, 0, NULL, NULL)` returns 0 at once for its own (reaping nothing)
/// and EINVAL for another's. The check refuses a ring that is not.
pub fn query_owned(
    b: &mut Batch,
    pid: i32,
    starts: Vec<u64>,
) -> impl FnOnce(&Done) -> Result<(), DumpError> {
    let rets: Vec<_> = (starts.iter())
        .map(|&ctx| b.try_call("io_getevents", libc::SYS_io_getevents, &[ctx, 0, 0, 0, 0]))
        .collect();
    move |d| {
        match starts.iter().zip(rets).find(|(_, r)| d.raw(*r) != 0) {
            Some((ctx, _)) => Err(DumpError::unsupported(format!(
                "pid {pid} maps the AIO ring at {ctx:#x} of a context it does not own (inherited by fork), which stasis cannot checkpoint"
            ))),
            None => Ok(()),
        }
    }
}

/// Refuses a ring of `vmas` whose head or tail moved since it was read: a request was in
/// flight and completed meanwhile (the process itself is frozen).
pub fn check_settled(pid: i32, vmas: &[Vma]) -> Result<(), DumpError> {
    if !vmas.iter().any(|v| matches!(v.kind, VmaKind::Aio(_))) {
        return Ok(());
    }
    let mem = Mem::open(pid, false)?;
    for v in vmas {
        let VmaKind::Aio(r) = &v.kind else { continue };
        let mut words = [0u8; 16];
        mem.read(v.start, &mut words)?;
        let word =
            |i: usize| u32::from_ne_bytes(words[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        if (word(2), word(3)) != (r.head, r.tail) {
            return Err(DumpError::unsupported(format!(
                "the AIO ring at {:#x} of pid {pid} had requests in flight (head/tail {}/{} became {}/{} during the dump), which stasis cannot checkpoint",
                v.start, r.head, r.tail, word(2), word(3)
            )));
        }
    }
    Ok(())
}

/// The ring in `bytes` (the whole mapping), or what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<AioRing, String> {
    let word = |i: usize| u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if bytes.len() < HEADER {
        return Err("is shorter than its header".into());
    }
    let (nr, head, tail) = (word(1), word(2), word(3));
    let fits = (bytes.len() - HEADER) / EVENT;
    if (word(4), word(5), word(6), word(7)) != (MAGIC, COMPAT, INCOMPAT, HEADER as u32) {
        return Err("has a header of an unknown layout".into());
    }
    if nr as usize != fits || head >= nr || tail >= nr || nr < 2 {
        return Err(format!(
            "is inconsistent (nr {nr}, head {head}, tail {tail}, room for {fits} events)"
        ));
    }
    Ok(AioRing {
        nr_req: (nr - 2) / 2,
        nr,
        head,
        tail,
        events: bytes[HEADER..HEADER + nr as usize * EVENT].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_bytes(nr: u32, head: u32, tail: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        for (i, w) in [7, nr, head, tail, MAGIC, COMPAT, INCOMPAT, 32]
            .iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        b[HEADER] = 0xab;
        b
    }

    #[test]
    fn a_sane_ring_is_read() {
        let r = parse(&ring_bytes(127, 3, 9)).expect("sane");
        assert_eq!((r.nr, r.head, r.tail, r.nr_req), (127, 3, 9, 62));
        assert_eq!(r.events.len(), 127 * EVENT);
        assert_eq!(r.events[0], 0xab);
    }

    #[test]
    fn a_bad_ring_is_refused() {
        assert!(
            parse(&ring_bytes(126, 0, 0)).is_err(),
            "nr not filling the pages"
        );
        assert!(
            parse(&ring_bytes(127, 127, 0)).is_err(),
            "head out of the ring"
        );
        let mut b = ring_bytes(127, 0, 0);
        b[16] ^= 1;
        assert!(parse(&b).is_err(), "bad magic");
    }
}
