//! System V IPC objects and POSIX message queues, as `stasis inspect` shows them.

use std::io::Write;

/// One line per POSIX message queue.
pub(super) fn mqueues(
    m: &crate::image::mqueue::MqueueImage,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for q in &m.queues {
        writeln!(
            out,
            "POSIX queue /{}: mode {:o} owner {}:{}, maxmsg {} msgsize {}, {} messages",
            q.name,
            q.mode,
            q.uid,
            q.gid,
            q.maxmsg,
            q.msgsize,
            q.messages.len()
        )?;
    }
    Ok(())
}

/// One line per System V object.
pub(super) fn sysv(s: &crate::image::sysv::SysvImage, out: &mut impl Write) -> std::io::Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    writeln!(out, "System V IPC ({:?} namespace):", s.ns)?;
    let perm = |p: &crate::image::sysv::IpcPerm| {
        format!(
            "id {} key {:#x} mode {:o} owner {}:{} creator {}:{}",
            p.id, p.key as u32, p.mode, p.uid, p.gid, p.cuid, p.cgid
        )
    };
    for m in &s.shm {
        let huge = m
            .hugetlb
            .map_or(String::new(), |h| format!(", hugetlb {h}"));
        let (size, pages) = (m.size, m.pages());
        writeln!(
            out,
            "  shm {}: {size} bytes{huge}, {pages} pages stored",
            perm(&m.perm)
        )?;
    }
    for m in &s.sem {
        writeln!(out, "  sem {}: values {:?}", perm(&m.perm), m.values)?;
    }
    for q in &s.msg {
        let n = q.messages.len();
        writeln!(
            out,
            "  msg {}: qbytes {}, {n} messages",
            perm(&q.perm),
            q.qbytes
        )?;
    }
    Ok(())
}
