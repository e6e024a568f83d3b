//! The mm record of formats 5 to 8, converted on load: their mappings lack what format 9
//! added (the `sr`/`rr`/`dp` flags, the access mode of a mapped file, AIO rings; and
//! `shmem_objects`: each shared anonymous object was as large as its first mapping).

use serde::{Deserialize, Serialize};

use super::mm::{
    CowRange, FileId, Guard, MmFields, MmImage, PageRun, ShmemRef, Vma, VmaFlags, VmaKind,
};

/// An mm record of format 8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmImageV8 {
    pub vmas: Vec<VmaV8>,
    pub page_runs: Vec<PageRun>,
    pub fields: MmFields,
    pub auxv: Vec<u64>,
    pub exe: Option<FileId>,
    pub vdso_symbols: Vec<(String, u64)>,
    pub shmem: Vec<ShmemRef>,
    pub guards: Vec<Guard>,
    pub cow: Vec<CowRange>,
}

impl From<MmImageV8> for MmImage {
    fn from(old: MmImageV8) -> Self {
        MmImage {
            vmas: old.vmas.into_iter().map(Vma::from).collect(),
            page_runs: old.page_runs,
            fields: old.fields,
            auxv: old.auxv,
            exe: old.exe,
            vdso_symbols: old.vdso_symbols,
            shmem: old.shmem,
            guards: old.guards,
            cow: old.cow,
            shmem_objects: Vec::new(),
        }
    }
}

/// A mapping of format 8 and older.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaV8 {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub kind: VmaKindV8,
    pub flags: VmaFlagsV8,
}

/// What backed a mapping in format 8 and older (no AIO rings; no file access mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKindV8 {
    Anon,
    File {
        file: FileId,
        offset: u64,
    },
    Vdso,
    Vvar,
    VvarVclock,
    Unlinked {
        name: String,
        memfd: bool,
        size: u64,
        offset: u64,
        mode: u32,
    },
}

/// Mapping flags of format 8 and older.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaFlagsV8 {
    pub growsdown: bool,
    pub noreserve: bool,
    pub dontdump: bool,
    pub dontfork: bool,
    pub wipeonfork: bool,
    pub hugepage: bool,
    pub nohugepage: bool,
    pub mergeable: bool,
    pub locked: bool,
    pub lockonfault: bool,
    pub sealed: bool,
}

impl From<VmaV8> for Vma {
    /// A file was reopened for writing exactly when it was mapped shared and writable.
    fn from(old: VmaV8) -> Self {
        let writable = old.shared && old.prot & libc::PROT_WRITE as u32 != 0;
        let kind = match old.kind {
            VmaKindV8::Anon => VmaKind::Anon,
            VmaKindV8::File { file, offset } => VmaKind::File {
                file,
                offset,
                writable,
            },
            VmaKindV8::Vdso => VmaKind::Vdso,
            VmaKindV8::Vvar => VmaKind::Vvar,
            VmaKindV8::VvarVclock => VmaKind::VvarVclock,
            VmaKindV8::Unlinked {
                name,
                memfd,
                size,
                offset,
                mode,
            } => VmaKind::Unlinked {
                name,
                memfd,
                size,
                offset,
                mode,
            },
        };
        let f = old.flags;
        Vma {
            start: old.start,
            end: old.end,
            prot: old.prot,
            shared: old.shared,
            kind,
            flags: VmaFlags {
                growsdown: f.growsdown,
                noreserve: f.noreserve,
                dontdump: f.dontdump,
                dontfork: f.dontfork,
                wipeonfork: f.wipeonfork,
                hugepage: f.hugepage,
                nohugepage: f.nohugepage,
                mergeable: f.mergeable,
                locked: f.locked,
                lockonfault: f.lockonfault,
                sealed: f.sealed,
                ..VmaFlags::default()
            },
        }
    }
}
