//! The System V IPC record (`sysv.img`): the shared memory segments, semaphore sets and
//! message queues of the tree's IPC namespace that the image carries, and which namespace
//! they come back into. Segment contents are raw pages in `sysv-shm.img` (the pages-file
//! format of `pages.rs`), each segment's runs in record order.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::mm::{MmImage, VmaKind};

/// Name of the record file (absent: no IPC object was saved).
pub const SYSV: &str = "sysv.img";
/// Name of the segments' pages file.
pub const SYSV_SHM_PAGES: &str = "sysv-shm.img";

/// `sysv.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvImage {
    pub ns: IpcNs,
    /// The namespace's sysctls (`kernel/msgmnb`...) as text, set in a namespace made for
    /// the tree (`IpcNs::Own` only).
    pub sysctls: Vec<(String, String)>,
    pub shm: Vec<ShmSegment>,
    pub sem: Vec<SemSet>,
    pub msg: Vec<MsgQueue>,
}

/// Whose IPC namespace the tree lived in, which decides what was saved and where it goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpcNs {
    /// The host's initial namespace: only the segments the tree had attached were saved;
    /// they come back into the restorer's namespace.
    #[default]
    Host,
    /// The dumper's own namespace, not the initial one: every object in it was saved; they
    /// come back into the restorer's namespace.
    Dumper,
    /// A namespace of the tree's own (its root's, not its parent's nor the dumper's):
    /// every object was saved; the root is created in a new namespace, which gets them.
    Own,
}

/// What every object has (`struct ipc_perm`); `cuid`/`cgid` are its creator's euid/egid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcPerm {
    pub key: i32,
    pub id: i32,
    /// The permission bits (0o777) and, for a segment, `SHM_DEST` (removed, alive while
    /// attached) and `SHM_LOCKED`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
}

/// `SHM_DEST`: the segment was removed (`IPC_RMID`) and lives until its last detach.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED`: the segment's pages are locked in memory (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;

/// A shared memory segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSegment {
    pub perm: IpcPerm,
    /// `shm_segsz`, as asked at `shmget` (not rounded to pages).
    pub size: u64,
    /// The huge page size of a `SHM_HUGETLB` segment (none: ordinary pages).
    pub hugetlb: Option<u64>,
    /// `(offset, pages)` of the 4 KiB pages stored for it, in offset order; the pages
    /// file holds them after those of the segments before it.
    pub runs: Vec<(u64, u64)>,
}

impl ShmSegment {
    /// Pages stored for this segment.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }
}

/// A semaphore set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemSet {
    pub perm: IpcPerm,
    /// `semval` of each semaphore (`GETALL`).
    pub values: Vec<u16>,
}

/// A message queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgQueue {
    pub perm: IpcPerm,
    /// `msg_qbytes`: the most bytes of text the queue holds.
    pub qbytes: u64,
    /// The messages in queue order.
    pub messages: Vec<Message>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub mtype: i64,
    pub text: Vec<u8>,
}

/// The IPC sysctls of a namespace that an image may set (a record naming another is
/// refused: the restorer writes these files as root). The `*_next_id` ones are set
/// after the objects are made (format 11 adds them and `fs/mqueue/*`).
pub const SYSCTLS: [&str; 17] = [
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/auto_msgmni",
    "kernel/sem",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
    "kernel/msg_next_id",
    "kernel/sem_next_id",
    "kernel/shm_next_id",
];

/// Most semaphores in a set (`SEMMSL`'s hard cap).
const MAX_SEMS: usize = 32000;

/// Impossible values: unknown sysctls, ids repeated within a kind, stored runs outside
/// their segment or out of order, empty or oversized semaphore sets.
pub fn validate(img: &SysvImage, path: &Path) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    if let Some((name, _)) = img
        .sysctls
        .iter()
        .find(|(n, _)| !SYSCTLS.contains(&n.as_str()))
    {
        return fail(format!("sysctl {name} is not an IPC sysctl stasis sets"));
    }
    let ids = [
        img.shm.iter().map(|s| s.perm.id).collect::<Vec<_>>(),
        img.sem.iter().map(|s| s.perm.id).collect(),
        img.msg.iter().map(|s| s.perm.id).collect(),
    ];
    for (kind, mut ids) in ["segment", "semaphore set", "message queue"]
        .into_iter()
        .zip(ids)
    {
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return fail(format!("{kind} id {} appears twice", w[0]));
        }
        if let Some(id) = ids.iter().find(|&&id| id < 0) {
            return fail(format!("{kind} id {id} is negative"));
        }
    }
    for s in &img.shm {
        let end = s.size.div_ceil(PAGE) * PAGE;
        let mut at = 0;
        for &(off, pages) in &s.runs {
            if off % PAGE != 0 || off < at || pages == 0 || off + pages * PAGE > end {
                return fail(format!(
                    "segment {} stores pages outside it or out of order",
                    s.perm.id
                ));
            }
            at = off + pages * PAGE;
        }
    }
    if let Some(s) = img
        .sem
        .iter()
        .find(|s| s.values.is_empty() || s.values.len() > MAX_SEMS)
    {
        return fail(format!(
            "semaphore set {} has {} semaphores",
            s.perm.id,
            s.values.len()
        ));
    }
    Ok(())
}

const PAGE: u64 = crate::abi::PAGE_SIZE;

/// Every segment `mm` attaches is in the record, and no pages are stored for it (its
/// contents are the segment's).
pub fn attached_known(img: &SysvImage, mm: &MmImage, path: &Path) -> Result<(), ImageError> {
    for v in &mm.vmas {
        let VmaKind::SysvShm { id, .. } = v.kind else {
            continue;
        };
        if img.segment(id).is_none() {
            let what = format!(
                "mapping {:#x}-{:#x} attaches System V segment {id}, which sysv.img lacks",
                v.start, v.end
            );
            return Err(ImageError::invalid(path, what));
        }
        let end = v.end;
        if mm
            .page_runs
            .iter()
            .any(|r| r.addr < end && r.addr + r.pages * PAGE > v.start)
        {
            let what = format!(
                "pages are stored for the System V mapping {:#x}-{:#x}",
                v.start, v.end
            );
            return Err(ImageError::invalid(path, what));
        }
    }
    Ok(())
}

impl SysvImage {
    /// Pages stored in `sysv-shm.img`.
    pub fn pages(&self) -> u64 {
        self.shm.iter().map(ShmSegment::pages).sum()
    }

    /// Whether the image carries nothing (then no record is written).
    pub fn is_empty(&self) -> bool {
        self.shm.is_empty() && self.sem.is_empty() && self.msg.is_empty() && self.ns != IpcNs::Own
    }

    /// The segment with id `id`.
    pub fn segment(&self, id: i32) -> Option<&ShmSegment> {
        self.shm.iter().find(|s| s.perm.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::{decode, encode, Kind};

    #[test]
    fn round_trips_every_object_kind() {
        let perm = IpcPerm {
            key: -2,
            id: 32769,
            mode: 0o1640,
            uid: 1,
            gid: 2,
            cuid: 3,
            cgid: 4,
        };
        let img = SysvImage {
            ns: IpcNs::Own,
            sysctls: vec![("kernel/msgmnb".into(), "16384".into())],
            shm: vec![ShmSegment {
                perm,
                size: 10000,
                hugetlb: Some(2 << 20),
                runs: vec![(0, 1), (8192, 1)],
            }],
            sem: vec![SemSet {
                perm,
                values: vec![0, 7, 65535],
            }],
            msg: vec![MsgQueue {
                perm,
                qbytes: 100,
                messages: vec![Message {
                    mtype: 5,
                    text: b"hi".to_vec(),
                }],
            }],
        };
        let bytes = encode(Kind::Sysv, &img).unwrap();
        let back: SysvImage = decode(Kind::Sysv, &bytes, std::path::Path::new(SYSV)).unwrap();
        assert_eq!(back, img);
        assert_eq!(back.pages(), 2);
        assert!(back.segment(32769).is_some());
        validate(&back, Path::new(SYSV)).unwrap();
    }

    #[test]
    fn refuses_impossible_records() {
        let seg = |id, runs| ShmSegment {
            perm: IpcPerm {
                id,
                ..Default::default()
            },
            size: 8192,
            hugetlb: None,
            runs,
        };
        let bad = [
            SysvImage {
                sysctls: vec![("kernel/core_pattern".into(), "|x".into())],
                ..Default::default()
            },
            SysvImage {
                shm: vec![seg(1, vec![]), seg(1, vec![])],
                ..Default::default()
            },
            SysvImage {
                shm: vec![seg(1, vec![(4096, 2)])],
                ..Default::default()
            },
            SysvImage {
                shm: vec![seg(1, vec![(4096, 1), (0, 1)])],
                ..Default::default()
            },
            SysvImage {
                sem: vec![SemSet::default()],
                ..Default::default()
            },
        ];
        for img in bad {
            assert!(validate(&img, Path::new(SYSV)).is_err(), "{img:?}");
        }
    }
}
