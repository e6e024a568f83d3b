//! The address-space record: mappings, the kernel's mm fields, and where saved pages go.

use serde::{Deserialize, Serialize};

pub use super::mm_v8::{MmImageV8, VmaFlagsV8, VmaKindV8, VmaV8};

/// `mm-<pid>.img`. The default (empty) one stands for a process sharing its parent's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmImage {
    /// Mappings in address order, non-overlapping.
    pub vmas: Vec<Vma>,
    /// Saved pages in address order; each pages file holds its own runs in this order.
    pub page_runs: Vec<PageRun>,
    pub fields: MmFields,
    /// `/proc/PID/auxv` as (type, value) words, AT_NULL included.
    pub auxv: Vec<u64>,
    /// `/proc/PID/exe`.
    pub exe: Option<FileId>,
    /// Symbol offsets of the dumped vDSO, to check the restoring kernel's one matches.
    pub vdso_symbols: Vec<(String, u64)>,
    /// The shared anonymous mappings, and which process of the tree creates each object.
    pub shmem: Vec<ShmemRef>,
    /// Guard regions (`MADV_GUARD_INSTALL`) in address order, each inside one mapping.
    pub guards: Vec<Guard>,
    /// Private memory still shared copy-on-write with the parent, in address order: kept
    /// from the parent at restore instead of stored again.
    pub cow: Vec<CowRange>,
    /// The shared anonymous objects this process creates (`ShmemRef` without owner), by
    /// the mapping that creates each: their size and that mapping's offset in them.
    pub shmem_objects: Vec<ShmemObject>,
}

/// A shared anonymous object (`MAP_SHARED | MAP_ANONYMOUS`) as the kernel sized it, which
/// may be larger than the mapping that creates it at restore (its first in the tree):
/// other mappings, later in this process or in later ones, reach the rest, at the same
/// offsets as at dump. The pages of a part of the object are saved by the first mapping
/// of the tree that maps that part, and filled through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemObject {
    /// Start of the creating mapping (a shared `VmaKind::Anon` `Vma` with a `ShmemRef`
    /// without owner).
    pub start: u64,
    /// The object's size, and the creating mapping's offset in it. Every `ShmemOwner`
    /// offset referring to this mapping is an offset in the object.
    pub size: u64,
    pub offset: u64,
}

/// An mm record of format 7 (one pages file: runs without a stripe).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmImageV7 {
    pub vmas: Vec<VmaV8>,
    pub page_runs: Vec<PageRunV7>,
    pub fields: MmFields,
    pub auxv: Vec<u64>,
    pub exe: Option<FileId>,
    pub vdso_symbols: Vec<(String, u64)>,
    pub shmem: Vec<ShmemRef>,
    pub guards: Vec<Guard>,
    pub cow: Vec<CowRange>,
}

impl From<MmImageV7> for MmImage {
    fn from(old: MmImageV7) -> Self {
        MmImageV8 {
            vmas: old.vmas,
            page_runs: old.page_runs.into_iter().map(PageRun::from).collect(),
            fields: old.fields,
            auxv: old.auxv,
            exe: old.exe,
            vdso_symbols: old.vdso_symbols,
            shmem: old.shmem,
            guards: old.guards,
            cow: old.cow,
        }
        .into()
    }
}

/// An mm record of format 6 and older (no `cow`, one pages file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmImageV6 {
    pub vmas: Vec<VmaV8>,
    pub page_runs: Vec<PageRunV7>,
    pub fields: MmFields,
    pub auxv: Vec<u64>,
    pub exe: Option<FileId>,
    pub vdso_symbols: Vec<(String, u64)>,
    pub shmem: Vec<ShmemRef>,
    pub guards: Vec<Guard>,
}

impl From<MmImageV6> for MmImage {
    fn from(old: MmImageV6) -> Self {
        MmImageV7 {
            vmas: old.vmas,
            page_runs: old.page_runs,
            fields: old.fields,
            auxv: old.auxv,
            exe: old.exe,
            vdso_symbols: old.vdso_symbols,
            shmem: old.shmem,
            guards: old.guards,
            cow: Vec::new(),
        }
        .into()
    }
}

/// `[start, end)`, from the start of a private anonymous or file mapping of this process,
/// which it still shared copy-on-write with the parent's mapping at the same addresses
/// (same backing and protection). A process is restored by a fork of its restored parent, so it keeps what
/// it inherits there instead of mapping it afresh: the shared pages are stored once, by
/// the parent, and stay shared. The process's own pages in the range are stored and
/// filled as usual (overwriting the inherited ones), the mapping grows to its own end if
/// longer, and `zap` lists where the parent has pages that this process did not have (they
/// are dropped with `MADV_DONTNEED`: zeros, or the file's contents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CowRange {
    pub start: u64,
    pub end: u64,
    /// Sorted, non-overlapping `[start, end)` page ranges inside the range.
    pub zap: Vec<(u64, u64)>,
}

/// A shared anonymous mapping (`MAP_SHARED | MAP_ANONYMOUS`): a shmem object that several
/// processes of the tree may map, restored as one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemRef {
    /// Start of the mapping in this process (a shared `VmaKind::Anon` `Vma`).
    pub start: u64,
    /// `None`: this process creates the object and its pages are stored here. Otherwise
    /// the object is the one an earlier process of the tree maps.
    pub owner: Option<ShmemOwner>,
}

/// The mapping of an earlier process through which a shared object is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemOwner {
    pub pid: i32,
    pub start: u64,
    pub end: u64,
    /// Offset in the object of this process's mapping, relative to the owner's mapping.
    pub offset: u64,
}

/// Pages `[start, end)` of one mapping that fault on any access (a guard region).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub start: u64,
    pub end: u64,
}

/// The kernel's `mm_struct` fields that `PR_SET_MM_MAP` restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// One mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_READ | PROT_WRITE | PROT_EXEC` bits.
    pub prot: u32,
    /// `MAP_SHARED` rather than `MAP_PRIVATE`.
    pub shared: bool,
    pub kind: VmaKind,
    /// Flags from smaps `VmFlags` that are restored with mmap/madvise/mlock/mseal.
    pub flags: VmaFlags,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// A private mapping of anonymous memory or of a file: its written pages are
    /// anonymous, and a fork shares them copy-on-write.
    pub fn is_private_memory(&self) -> bool {
        !self.shared && matches!(self.kind, VmaKind::Anon | VmaKind::File { .. })
    }

    /// Private anonymous memory (not a stack, not droppable): the kernel merges it with
    /// a like neighbour where their page offsets continue and their anonymous memory is
    /// compatible (`restore/apart.rs`, `dump/track.rs`).
    pub fn is_plain_anon(&self) -> bool {
        matches!(self.kind, VmaKind::Anon)
            && !self.shared
            && !self.flags.growsdown
            && !self.flags.droppable
    }

    /// Whether `next` starts where this mapping ends and is plain anonymous memory with
    /// the same protection and flags: the kernel would make the two one mapping, were
    /// the second made fresh beside the first.
    pub fn merges_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.is_plain_anon()
            && next.is_plain_anon()
            && self.prot == next.prot
            && self.flags == next.flags
    }

    /// Whether `p` (another process's mapping, starting at or before this one) maps at
    /// this mapping's start what this one maps there, as a fork would have left it: both
    /// private memory of the same backing (anonymous, or the same file at the same
    /// offset) and the same protection.
    pub fn same_backing(&self, p: &Vma) -> bool {
        let backing = match (&self.kind, &p.kind) {
            (VmaKind::Anon, VmaKind::Anon) => true,
            (
                VmaKind::File { file, offset, .. },
                VmaKind::File {
                    file: f, offset: o, ..
                },
            ) => {
                file == f
                    && self.start >= p.start
                    && o.checked_add(self.start - p.start) == Some(*offset)
            }
            _ => false,
        };
        backing && self.is_private_memory() && p.is_private_memory() && p.prot == self.prot
    }
}

/// What backs a mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Anonymous memory (heap and stack included).
    Anon,
    /// A file, mapped from `offset`. `writable`: the task's open file description was
    /// opened for writing (the mode of its `/proc/PID/map_files` link), which decides
    /// whether a shared mapping of it may become writable with `mprotect`.
    File {
        file: FileId,
        offset: u64,
        writable: bool,
    },
    /// The kernel's special mappings, moved back to where they were.
    Vdso,
    Vvar,
    VvarVclock,
    /// A shared mapping of a file that has no name any more: a memfd, or a deleted file
    /// (python's semaphores map an unlinked `/dev/shm` file). The object is rebuilt
    /// once, by the first process of the tree that maps it (`MmImage::shmem`), from the
    /// pages stored for that mapping; the others map that object.
    Unlinked {
        /// The memfd's name (without `/memfd:`), or the file's last path.
        name: String,
        memfd: bool,
        /// Size of the object, and this mapping's offset in it.
        size: u64,
        offset: u64,
        /// Permission bits of a deleted file (recreated with them, then unlinked).
        mode: u32,
    },
    /// A System V shared memory segment attached here (`shmat`): the segment itself is in
    /// `sysv.img`; the restore attaches it again at this address. One `shmat` makes the
    /// mapping at `offset` 0 and those that follow it contiguously (a split attachment).
    SysvShm {
        /// The segment's id (the inode number `/proc/PID/maps` shows).
        id: i32,
        /// This mapping's offset in the segment.
        offset: u64,
        /// `VM_MAYWRITE` (smaps `mw`): attached without `SHM_RDONLY`.
        may_write: bool,
    },
    /// The completion ring of a native AIO context (`io_setup(2)`, `/[aio]` in maps):
    /// made again with `io_setup`, brought to the same head and tail, and moved here.
    Aio(AioRing),
    /// (format 9) Memory in huge pages of `1 << shift` bytes: anonymous (`MAP_HUGETLB`,
    /// `/anon_hugepage` in maps), or with `memfd` a shared mapping of a `MFD_HUGETLB`
    /// memfd, rebuilt as an `Unlinked` memfd is. A shared one has its `ShmemRef` (the
    /// first mapping of the object creates it, from its stored pages). Never kept
    /// copy-on-write from the parent: a child stores its own pages.
    Hugetlb {
        shift: u8,
        memfd: Option<HugetlbMemfd>,
    },
    /// (format 9) A private mapping of a file that has no name any more: a memfd, a
    /// deleted file, shared anonymous memory (`/dev/zero`) or a hugetlb file. It maps
    /// `MAP_PRIVATE` the object its `ShmemRef` names, or, without an owner, the deleted
    /// file `ghost` (an index in `ghosts.img`, recreated before any process); only
    /// the pages written since (copy-on-write copies) are stored, so the others still
    /// show what the object holds.
    PrivateUnlinked {
        /// The path shown in maps, without " (deleted)".
        name: String,
        /// Offset in the object as reached through the owner's mapping (a shared
        /// anonymous object is recreated from its owner's mapping: relative to it).
        offset: u64,
        ghost: Option<u32>,
    },
    /// (format 10) The `PACKET_MMAP` rings of packet socket `socket` (its inode; an fd of
    /// the process holds it), mapped from `offset`: mapped again from that fd once the
    /// fd table is rebuilt. Its pages are the socket's and are not stored.
    PacketRing {
        socket: u64,
        offset: u64,
    },
}

/// A hugetlb memfd (`memfd_create(MFD_HUGETLB)`), as in `VmaKind::Unlinked`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbMemfd {
    /// Without `/memfd:`.
    pub name: String,
    pub size: u64,
    pub offset: u64,
    pub mode: u32,
}

/// An AIO context's ring: its header words and its events, as the task saw them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AioRing {
    /// What `io_setup` is asked for: the kernel sizes the ring from it (it doubles it,
    /// adds two and rounds up to pages), so any request that gives the same ring does.
    pub nr_req: u32,
    /// Events in the ring (`struct aio_ring::nr`).
    pub nr: u32,
    /// Next event the task will reap, next slot the kernel fills.
    pub head: u32,
    pub tail: u32,
    /// The `struct io_event` array (32 bytes each) that follows the 32-byte header.
    pub events: Vec<u8>,
}

impl AioRing {
    /// `sizeof(struct aio_ring)`, the header, and `sizeof(struct io_event)`.
    pub const HEADER: usize = 32;
    pub const EVENT: usize = 32;
}

/// Mapping flags beyond protection (smaps `VmFlags` two-letter codes in brackets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaFlags {
    /// `gd`: grows down (a stack).
    pub growsdown: bool,
    /// `nr`: MAP_NORESERVE.
    pub noreserve: bool,
    /// `dd`: MADV_DONTDUMP.
    pub dontdump: bool,
    /// `dc`: MADV_DONTFORK.
    pub dontfork: bool,
    /// `wf`: MADV_WIPEONFORK.
    pub wipeonfork: bool,
    /// `hg` / `nh`: MADV_HUGEPAGE / MADV_NOHUGEPAGE.
    pub hugepage: bool,
    pub nohugepage: bool,
    /// `mg`: MADV_MERGEABLE.
    pub mergeable: bool,
    /// `lo` / `lf`: mlock'ed (on fault).
    pub locked: bool,
    pub lockonfault: bool,
    /// `sl`: mseal'ed.
    pub sealed: bool,
    /// `sr` / `rr`: MADV_SEQUENTIAL / MADV_RANDOM.
    pub seqread: bool,
    pub randread: bool,
    /// `dp`: MAP_DROPPABLE (its pages may vanish at any time: none are saved).
    pub droppable: bool,
}

/// A contiguous run of saved pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    pub addr: u64,
    pub pages: u64,
    /// The pages file holding the run: 0 is `pages-<pid>.img`, n is `pages-<pid>.n.img`.
    /// A large address space is written by several threads at once, each appending to a
    /// file of its own (fresh page-cache pages are allocated faster into several files
    /// than into one); each file holds its runs in address order.
    pub stripe: u8,
}

/// How many pages files the runs of one process may be spread over.
pub const MAX_STRIPES: u8 = 4;
/// (format 11) The `stripe` of a run whose pages are not stored in this image but in its
/// parent's (`image::chain`), at the same address of the same process.
pub const PARENT_STRIPE: u8 = 255;

/// A page run of format 7 and older, all in `pages-<pid>.img`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRunV7 {
    pub addr: u64,
    pub pages: u64,
}

impl From<PageRunV7> for PageRun {
    fn from(old: PageRunV7) -> Self {
        PageRun {
            addr: old.addr,
            pages: old.pages,
            stripe: 0,
        }
    }
}

impl MmImage {
    /// How many pages files hold this process's runs (at least one: `pages-<pid>.img`
    /// exists even when empty).
    pub fn stripes(&self) -> u8 {
        self.page_runs
            .iter()
            .filter(|r| r.stripe != PARENT_STRIPE)
            .map(|r| r.stripe + 1)
            .max()
            .unwrap_or(1)
    }

    /// The page runs taken from the parent image, as `[start, end)`.
    pub fn parent_ranges(&self) -> Vec<(u64, u64)> {
        (self.page_runs.iter())
            .filter(|r| r.stripe == PARENT_STRIPE)
            .map(|r| (r.addr, r.addr + r.pages * crate::abi::PAGE_SIZE))
            .collect()
    }

    /// The pages restored, from all pages files and the parents. Call on a validated
    /// record (no overflow then).
    pub fn pages(&self) -> u64 {
        self.page_runs.iter().map(|r| r.pages).sum()
    }

    /// The pages stored in pages file `stripe`.
    pub fn stripe_pages(&self, stripe: u8) -> u64 {
        (self.page_runs.iter())
            .filter(|r| r.stripe == stripe)
            .map(|r| r.pages)
            .sum()
    }
}

/// A file as it was at dump time, so restore can tell if it changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}
