//! An address space as `stasis inspect` shows it: mappings with their flags, guard
//! regions, pages stored.

use std::io::Write;

use crate::image::mm::{Vma, VmaKind};
use crate::image::ProcessImage;

pub(super) fn memory(p: &ProcessImage, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "  memory: {} mappings, {} pages stored, {} guard regions",
        p.mm.vmas.len(),
        p.mm.pages(),
        p.mm.guards.len()
    )?;
    for v in &p.mm.vmas {
        writeln!(out, "    {}", vma_line(v))?;
    }
    for g in &p.mm.guards {
        writeln!(
            out,
            "    guard {:#014x}-{:#014x} ({} pages)",
            g.start,
            g.end,
            (g.end - g.start) / crate::abi::PAGE_SIZE
        )?;
    }
    Ok(())
}

fn vma_line(v: &Vma) -> String {
    let p = |bit: i32, c: char| if v.prot & bit as u32 != 0 { c } else { '-' };
    let perms = format!(
        "{}{}{}{}",
        p(libc::PROT_READ, 'r'),
        p(libc::PROT_WRITE, 'w'),
        p(libc::PROT_EXEC, 'x'),
        if v.shared { 's' } else { 'p' }
    );
    let what = match &v.kind {
        VmaKind::Anon => "anon".to_string(),
        VmaKind::File { file, offset, .. } => format!("{} @{offset:#x}", file.path),
        VmaKind::Aio(r) => format!("[aio] {} events, head {} tail {}", r.nr, r.head, r.tail),
        VmaKind::PacketRing { socket, offset } => {
            format!("rings of packet socket:[{socket}] @{offset:#x}")
        }
        VmaKind::Vdso => "[vdso]".into(),
        VmaKind::Vvar => "[vvar]".into(),
        VmaKind::VvarVclock => "[vvar_vclock]".into(),
        VmaKind::Unlinked {
            name,
            memfd,
            size,
            offset,
            ..
        } => {
            let what = if *memfd { "memfd:" } else { "deleted " };
            format!("{what}{name} ({size} bytes) @{offset:#x}")
        }
        VmaKind::SysvShm { id, offset, .. } => format!("SysV shm id {id} @{offset:#x}"),
        VmaKind::Hugetlb { shift, memfd } => match memfd {
            Some(m) => format!(
                "hugetlb memfd:{} ({} bytes) @{:#x}",
                m.name, m.size, m.offset
            ),
            None => format!("anon hugetlb ({} KiB pages)", (1u64 << shift) >> 10),
        },
        VmaKind::PrivateUnlinked {
            name,
            offset,
            ghost,
        } => {
            let saved = ghost.map_or(String::new(), |g| format!(" (ghost {g})"));
            format!("private of {name} (deleted){saved} @{offset:#x}")
        }
    };
    format!(
        "{:#014x}-{:#014x} {perms} {what}{}",
        v.start,
        v.end,
        vma_flags(v)
    )
}

/// The mapping's flags beyond protection, as ` [locked sealed ...]`, or nothing.
fn vma_flags(v: &Vma) -> String {
    let f = &v.flags;
    let names = [
        (f.growsdown, "growsdown"),
        (f.noreserve, "noreserve"),
        (f.dontdump, "dontdump"),
        (f.dontfork, "dontfork"),
        (f.wipeonfork, "wipeonfork"),
        (f.hugepage, "hugepage"),
        (f.nohugepage, "nohugepage"),
        (f.mergeable, "mergeable"),
        (f.locked, "locked"),
        (f.lockonfault, "lockonfault"),
        (f.sealed, "sealed"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" [{}]", set.join(" "))
    }
}
