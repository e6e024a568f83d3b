//! The chain side of a dump: its `chain.img`, its parent image (`--prev-images-dir`) and
//! the tracking of written pages (`track.rs`) that decides which pages the parent holds
//! unchanged. Shared by `stasis dump` and `stasis pre-dump` (`predump.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::track::{Scanned, Tracking};
use super::DumpError;
use crate::image::chain::{self, ChainImage, ParentRef};
use crate::image::mm::Vma;
use crate::image::store::{self, StoreOptions, TempDir};
use crate::proc::MapPath;
use crate::sys::ptrace::Seized;

/// What a dump needs to know and do about its place in a chain.
pub struct Incremental {
    pub id: u64,
    /// The parent image: as given, the directory holding its plain records, its chain
    /// record.
    parent: Option<(String, PathBuf, ChainImage)>,
    /// The parent's records decoded, when the parent is a sealed image.
    _records: Option<TempDir>,
    /// The ranges the parent holds pages (or parent runs) for, by pid: read from its
    /// `mm-PID.img` before the freeze, so that the frozen window only intersects.
    held: HashMap<i32, Vec<(u64, u64)>>,
    tracking: Option<Tracking>,
    /// The tracking goes on after this dump (`-R` with `--track-mem` or a parent, and
    /// every pre-dump).
    keep: bool,
}

impl Incremental {
    /// Loads the parent's chain record (decoding the parent's records first if it is a
    /// sealed image, with the key of `store`), checks the image directory `dir` is not
    /// the parent itself, and (for a tree it may track) refuses a tree using userfaultfd.
    ///
    /// Ordering requirements: before the tree is frozen (nothing here touches it), and
    /// before the dump enters the tree's network namespace (`tracker::remember_home_net`).
    pub fn open(
        dir: &Path,
        prev: Option<&Path>,
        keep: bool,
        store: &StoreOptions,
    ) -> Result<Incremental, DumpError> {
        crate::tracker::remember_home_net();
        if (keep || prev.is_some()) && crate::check::tracking_method().is_none() {
            return Err(DumpError::unsupported(
                "this kernel offers no dirty-page tracking stasis can use (userfaultfd \
                 async write-protect, Linux 6.7; see `stasis check`): pre-dump, --track-mem \
                 and --prev-images-dir are refused",
            ));
        }
        let mut records = None;
        let parent = match prev {
            Some(p) => {
                let given = p.to_string_lossy().into_owned();
                // Relative to the new image's directory, as CRIU takes it.
                let pdir = chain::relative_to(dir, p);
                let (pdir, temp) = parent_records(pdir, store)?;
                records = temp;
                let chain = chain::load(&pdir)?.ok_or_else(|| {
                    DumpError::unsupported(format!(
                        "{} is not an image stasis can make an incremental dump against \
                         (no {})",
                        pdir.display(),
                        chain::CHAIN
                    ))
                })?;
                Some((given, pdir, chain))
            }
            None => None,
        };
        let held = match &parent {
            Some((_, pdir, chain)) => held_ranges(pdir, &chain.pids),
            None => HashMap::new(),
        };
        Ok(Incremental {
            id: chain::new_id(),
            parent,
            _records: records,
            held,
            tracking: None,
            keep,
        })
    }

    /// Whether the tracking goes on after this dump.
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// Whether this dump uses or arms tracking at all.
    pub fn wanted(&self) -> bool {
        self.keep || self.parent.is_some()
    }

    /// Reaches the tree's tracking: starts a tracker if the tracking goes on, else uses
    /// the running one if any. Refuses a tree holding a userfaultfd.
    ///
    /// Ordering requirements: with the tree frozen, before any process is saved.
    pub fn begin(&mut self, root: i32, pids: &[i32]) -> Result<(), DumpError> {
        if !self.wanted() {
            return Ok(());
        }
        pids.iter()
            .try_for_each(|&p| super::track::refuse_userfaultfd(p))?;
        let parent = self.parent.as_ref().map(|(_, _, c)| c.id);
        let running = crate::tracker::Tracker::find(&crate::tracker::name(root))?.is_some();
        if self.keep || running {
            self.tracking = Some(Tracking::begin(root, parent, self.id)?);
        }
        Ok(())
    }

    /// The ranges of `pid` whose pages the parent image holds unchanged, after resetting
    /// the written state; with `keep`, its untracked mappings are armed (the frozen
    /// `leader` and a `syscall` instruction at `ip` make its userfaultfd if needed).
    ///
    /// Ordering requirements: while `pid` is frozen, before its pages are read.
    pub fn unchanged(
        &mut self,
        pid: i32,
        vmas: &[Vma],
        leader: &Seized,
        ip: u64,
    ) -> Result<Vec<(u64, u64)>, DumpError> {
        let scanned = {
            let _span = crate::profile::span("written scan");
            self.scan(pid, vmas)?
        };
        if self.keep {
            if let Some(t) = self.tracking.as_mut() {
                let _span = crate::profile::span("arm tracking");
                t.ensure_uffd(pid, leader, ip)?;
                t.arm(pid, &scanned.unarmed, Some((leader, ip)))?;
            }
        }
        let _span = crate::profile::span("parent runs");
        self.in_parent(pid, scanned.clean)
    }

    /// Lets the kernel merge what the tracking alone kept apart in `pid`
    /// ([`Tracking::join`]; nothing without tracking).
    ///
    /// Ordering requirements: with `pid` frozen, before its mappings are read for the
    /// image and before [`Incremental::scan`].
    pub fn join(&mut self, pid: i32) -> Result<(), DumpError> {
        let Some(t) = self.tracking.as_mut() else {
            return Ok(());
        };
        let _span = crate::profile::span("tracking join");
        // Private anonymous memory only: no file of a mapping is looked at while frozen.
        let anon: Vec<_> = (crate::proc::maps(pid)?.into_iter())
            .filter(|e| !e.shared && e.inode == 0)
            .filter(|e| match &e.path {
                MapPath::Anonymous | MapPath::Heap => true,
                MapPath::Other(name) => name.starts_with("[anon:"),
                _ => false,
            })
            .collect();
        let vmas = super::mm::vmas(pid, &anon)?;
        t.join(pid, &vmas).map(drop)
    }

    /// The written state of `pid` read and reset (nothing without tracking).
    pub fn scan(&self, pid: i32, vmas: &[Vma]) -> Result<Scanned, DumpError> {
        match &self.tracking {
            Some(t) => t.scan(pid, vmas),
            None => Ok(Scanned::default()),
        }
    }

    /// The tracking, to arm mappings once the tree runs again (`predump.rs`).
    pub fn tracking_mut(&mut self) -> Option<&mut Tracking> {
        self.tracking.as_mut()
    }

    /// The part of `clean` the parent image holds pages (or parent runs) for.
    pub fn in_parent(
        &self,
        pid: i32,
        clean: Vec<(u64, u64)>,
    ) -> Result<Vec<(u64, u64)>, DumpError> {
        let Some((_, pdir, chain)) = &self.parent else {
            return Ok(Vec::new());
        };
        if clean.is_empty() || !chain.pids.contains(&pid) {
            return Ok(Vec::new());
        }
        match self.held.get(&pid) {
            Some(held) => Ok(crate::ranges::intersect(&clean, held)),
            // Not read before the freeze: its failure, now that it matters.
            None => {
                crate::image::load::load_mm(pdir, pid)?;
                Ok(Vec::new())
            }
        }
    }

    /// `chain.img` of this image.
    pub fn record(&self, pids: &[i32], predump: bool) -> ChainImage {
        ChainImage {
            id: self.id,
            predump,
            parent: self.parent.as_ref().map(|(given, _, c)| ParentRef {
                dir: given.clone(),
                id: c.id,
            }),
            tracker: self
                .keep
                .then(|| self.tracking.as_ref().map(Tracking::name))
                .flatten(),
            pids: pids.to_vec(),
        }
    }

    /// After the image is committed: the tracking is stopped unless it goes on.
    pub fn finish(self) -> Result<(), DumpError> {
        match self.tracking {
            Some(t) if !self.keep => t.stop(),
            _ => Ok(()),
        }
    }
}

/// The ranges each process `pids` of the parent image `pdir` holds pages (or parent
/// runs) for, from its `mm-PID.img`. A record that does not load is left out: its error
/// is raised if the dump asks for it (`Incremental::in_parent`), as the process may be
/// gone.
///
/// Ordering requirements: before the freeze (the parent image does not change).
fn held_ranges(pdir: &Path, pids: &[i32]) -> HashMap<i32, Vec<(u64, u64)>> {
    let _span = crate::profile::span("parent runs (read)");
    let mut out = HashMap::new();
    for &pid in pids {
        let Ok(mm) = crate::image::load::load_mm(pdir, pid) else {
            continue;
        };
        let held = (mm.page_runs.iter())
            .map(|r| (r.addr, r.addr + r.pages * crate::abi::PAGE_SIZE))
            .collect();
        out.insert(pid, held);
    }
    out
}

/// The directory holding the plain chain and mm records of the parent image `pdir`: itself,
/// or (a compressed or encrypted parent) a private copy of just those records, decoded
/// and verified with the key the dump encrypts with.
fn parent_records(
    pdir: PathBuf,
    store: &StoreOptions,
) -> Result<(PathBuf, Option<TempDir>), DumpError> {
    if !pdir.join(store::MANIFEST).exists() {
        return Ok((pdir, None));
    }
    let opts = store::OpenOptions {
        decrypt: store.encrypt.clone(),
        ..store::OpenOptions::default()
    };
    let temp = TempDir::new("parent").map_err(crate::image::ImageError::from)?;
    let dest = temp.path().join("records");
    let is_record = |n: &str| n == chain::CHAIN || n.starts_with("mm-");
    match store::unseal_into(&pdir, &opts, &dest, &is_record) {
        Ok(true) => Ok((dest, Some(temp))),
        Ok(false) => Ok((pdir, None)),
        Err(e) => Err(crate::image::ImageError::from(e).into()),
    }
}
