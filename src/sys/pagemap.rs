//! # Safety
//! The `PAGEMAP_SCAN` ioctl (Linux 6.7) with an argument struct and an output vector that
//! live on our side for the duration of the call.
//!
//! One ioctl on `/proc/PID/pagemap` returns the target's pages grouped into ranges by
//! category (present, swapped, file-backed, zero-pfn, guard...), instead of one 8-byte
//! pagemap entry per page.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::errno::Errno;

pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_GUARD: u64 = 1 << 8;

/// `PM_SCAN_WP_MATCHING`: write-protect (uffd-wp) the pages reported, atomically with
/// reporting them.
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// `PM_SCAN_CHECK_WPASYNC`: fail with `EPERM` unless every mapping of the range is
/// registered with an async write-protect userfaultfd.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// Pagemap entry bit 62: a swap entry, which is a page swapped out or a page table entry
/// holding a marker instead of a page.
const PM_SWAP: u64 = 1 << 62;
/// Pagemap entry bit 63: the page is present.
const PM_PRESENT: u64 = 1 << 63;
/// Bits 0-4 of a swap entry's frame field: its swap type (0 unless the reader has
/// CAP_SYS_ADMIN, which shows the frame field).
const SWP_TYPE: u64 = 31;
/// `SWP_PTE_MARKER`: the last of the 32 swap types (`MAX_SWAPFILES_SHIFT` = 5, never a
/// swap file's), that of an entry holding a marker and no page: a page not populated but
/// write-protected by a userfaultfd (`PTE_MARKER_UFFD_WP`), a guard, a poisoned page.
const SWP_PTE_MARKER: u64 = 31;
/// Pagemap entry bit 57: the page, or the marker, is write-protected by a userfaultfd.
const PM_UFFD_WP: u64 = 1 << 57;
/// Pagemap entry bits 0-54: the frame field (a swap entry's type and offset).
const PM_FRAME: u64 = (1 << 55) - 1;
/// Pagemap entries read at once by [`Pagemap::markers`].
const MARKER_STEP_PAGES: u64 = 16384;

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
const REGIONS_PER_CALL: usize = 4096;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`: `[start, end)` whose pages all have `categories`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// What to look for: pages with every category of `all` (after inverting `inverted`), at
/// least one of `any`, reporting the categories in `report`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query {
    pub all: u64,
    pub inverted: u64,
    pub any: u64,
    pub report: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PagemapError {
    #[error("open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read the pagemap of pid {pid} at {addr:#x}")]
    Read {
        pid: i32,
        addr: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("PAGEMAP_SCAN of pid {pid} at {addr:#x} (needs Linux 6.7 or newer)")]
    Scan {
        pid: i32,
        addr: u64,
        #[source]
        source: Errno,
    },
}

/// `/proc/PID/pagemap` opened for scanning.
pub struct Pagemap {
    pid: i32,
    file: File,
}

impl Pagemap {
    pub fn open(pid: i32) -> Result<Self, PagemapError> {
        let path = PathBuf::from(format!("/proc/{pid}/pagemap"));
        let file = File::open(&path).map_err(|source| PagemapError::Open { path, source })?;
        Ok(Pagemap { pid, file })
    }

    /// Whether the address space this file was opened on is gone: its process exited or
    /// called exec since. The file holds that address space, not the process's current
    /// one, and the kernel answers a read with end of file once it is torn down, where a
    /// live one has an entry for every page, even unmapped (`pagemap_read`).
    pub fn address_space_gone(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut entry = [0u8; 8];
        matches!(self.file.read_at(&mut entry, 0), Ok(0))
    }

    /// The raw pagemap entries of `[start, end)`, one per page: bit 63 says present, bits
    /// 0-54 hold the page frame number (zero unless the reader has CAP_SYS_ADMIN), see
    /// <https://docs.kernel.org/admin-guide/mm/pagemap.html>.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<u64>, PagemapError> {
        use std::os::unix::fs::FileExt;
        let pages = ((end - start) / 4096) as usize;
        let mut bytes = vec![0u8; pages * 8];
        self.file
            .read_exact_at(&mut bytes, start / 4096 * 8)
            .map_err(|source| PagemapError::Read {
                pid: self.pid,
                addr: start,
                source,
            })?;
        Ok(bytes
            .chunks_exact(8)
            .map(|w| u64::from_ne_bytes(w.try_into().expect("8-byte chunk")))
            .collect())
    }

    /// The ranges of `[start, end)` whose entries hold a PTE marker and no page.
    /// `PAGEMAP_SCAN` reports them as swapped (`PAGE_IS_SWAPPED`, and never
    /// `PAGE_IS_FILE`): a userfaultfd's write protection of a page not populated (every
    /// such page of a private file mapping, and with `UFFD_FEATURE_WP_UNPOPULATED` of an
    /// anonymous one, once `UFFDIO_WRITEPROTECT`ed, or a protected page reclaimed
    /// since) leaves one. Reading such a page faults in the file's page or a zero page:
    /// its contents are what a fresh mapping gives. The swap type is in the frame field,
    /// shown only to a reader with CAP_SYS_ADMIN: without it, a write-protected swap
    /// entry may be a marker or a page swapped out, and is reported as undecided.
    pub fn markers(&self, start: u64, end: u64) -> Result<Markers, PagemapError> {
        let mut out = Markers::default();
        let mut at = start;
        while at < end {
            let to = end.min(at + MARKER_STEP_PAGES * 4096);
            for (i, e) in self.entries(at, to)?.into_iter().enumerate() {
                let page = at + i as u64 * 4096;
                match kind_of(e) {
                    Swap::Marker => match out.found.last_mut() {
                        Some(last) if last.1 == page => last.1 = page + 4096,
                        _ => out.found.push((page, page + 4096)),
                    },
                    Swap::Undecided => {
                        out.undecided.get_or_insert(page);
                    }
                    Swap::Other => {}
                }
            }
            at = to;
        }
        Ok(out)
    }

    /// All matching regions in `[start, end)`, looping on `walk_end`. Kernels older than
    /// 6.14 do not know `PAGE_IS_GUARD` (EINVAL): they cannot have guard pages either, so
    /// the query is repeated without it.
    pub fn scan(&self, start: u64, end: u64, q: Query) -> Result<Vec<PageRegion>, PagemapError> {
        match self.scan_all(start, end, q, 0) {
            Err(PagemapError::Scan {
                source: Errno::EINVAL,
                ..
            }) if (q.any | q.report) & PAGE_IS_GUARD != 0 => {
                let g = !PAGE_IS_GUARD;
                let q = Query {
                    all: q.all & g,
                    inverted: q.inverted & g,
                    any: q.any & g,
                    report: q.report & g,
                };
                self.scan_all(start, end, q, 0)
            }
            r => r,
        }
    }

    /// The pages of `[start, end)` written since they were last write-protected through
    /// a userfaultfd in async mode (`PAGE_IS_WRITTEN`), write-protecting them again as
    /// they are reported (`PM_SCAN_WP_MATCHING`): one atomic read-and-reset of the dirty
    /// state. Fails with `EPERM` (`PM_SCAN_CHECK_WPASYNC`) when some mapping of the
    /// range is not registered for async write-protection (mapped or moved since).
    /// See <https://docs.kernel.org/admin-guide/mm/pagemap.html>.
    pub fn take_written(&self, start: u64, end: u64) -> Result<Vec<PageRegion>, PagemapError> {
        let q = Query {
            all: PAGE_IS_WRITTEN,
            report: PAGE_IS_WRITTEN,
            ..Default::default()
        };
        self.scan_all(start, end, q, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC)
    }

    /// Whether the mapping holding `addr` is registered with a userfaultfd in async
    /// write-protect mode: a `PAGEMAP_SCAN` of its page with `PM_SCAN_CHECK_WPASYNC`
    /// (`EPERM` if not), reading nothing and protecting nothing.
    pub fn registered(&self, addr: u64) -> Result<bool, PagemapError> {
        let q = Query {
            all: PAGE_IS_WRITTEN,
            report: PAGE_IS_WRITTEN,
            ..Default::default()
        };
        let mut out = Vec::new();
        match self.scan_once(addr, addr + 4096, q, PM_SCAN_CHECK_WPASYNC, &mut out) {
            Ok(_) => Ok(true),
            Err(PagemapError::Scan {
                source: Errno::EPERM,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All matching regions of `[start, end)`: a range of [`SPLIT_MIN`] or more is cut
    /// into parts walked by threads of their own, one per usable CPU (at most
    /// [`MAX_PARTS`]), and their regions joined where a cut fell inside one. The walk of
    /// every page table entry is most of a frozen incremental dump's scan (about 12 ms
    /// per 4 GiB for a present-page query): the parts hold the page-table lock of
    /// different tables, so they run side by side.
    fn scan_all(
        &self,
        start: u64,
        end: u64,
        q: Query,
        flags: u64,
    ) -> Result<Vec<PageRegion>, PagemapError> {
        let cuts = split(start, end, crate::sys::cpu::usable());
        if cuts.len() <= 2 {
            return self.scan_part(start, end, q, flags);
        }
        let parts: Vec<Result<Vec<PageRegion>, PagemapError>> = std::thread::scope(|s| {
            let walks: Vec<_> = (cuts.windows(2))
                .map(|w| s.spawn(move || self.scan_part(w[0], w[1], q, flags)))
                .collect();
            (walks.into_iter())
                .map(|w| w.join().expect("a pagemap walk does not panic"))
                .collect()
        });
        let mut out: Vec<PageRegion> = Vec::new();
        for part in parts {
            for r in part? {
                match out.last_mut() {
                    Some(l) if l.end == r.start && l.categories == r.categories => l.end = r.end,
                    _ => out.push(r),
                }
            }
        }
        Ok(out)
    }

    fn scan_part(
        &self,
        start: u64,
        end: u64,
        q: Query,
        flags: u64,
    ) -> Result<Vec<PageRegion>, PagemapError> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            at = self.scan_once(at, end, q, flags, &mut out)?;
        }
        Ok(out)
    }

    fn scan_once(
        &self,
        start: u64,
        end: u64,
        q: Query,
        flags: u64,
        out: &mut Vec<PageRegion>,
    ) -> Result<u64, PagemapError> {
        let mut vec = vec![PageRegion::default(); REGIONS_PER_CALL];
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start,
            end,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            category_inverted: q.inverted,
            category_mask: q.all,
            category_anyof_mask: q.any,
            return_mask: q.report,
            ..Default::default()
        };
        // SAFETY: `arg` is a correctly sized pm_scan_arg; `vec` has room for vec_len
        // page_region entries and outlives the call; the kernel writes only within them.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                PAGEMAP_SCAN,
                &mut arg as *mut PmScanArg,
            )
        };
        let n = Errno::result(r).map_err(|source| PagemapError::Scan {
            pid: self.pid,
            addr: start,
            source,
        })?;
        let found = &vec[..n as usize];
        out.extend_from_slice(found);
        // The next walk starts after the last region reported: the kernel's `walk_end`
        // can lie below it (6.18: 2 MiB short after 2048 alternating present and
        // zero-page regions, the buffer not full), and a walk from there would report
        // those pages a second time.
        let next = found
            .last()
            .map_or(arg.walk_end, |r| r.end.max(arg.walk_end));
        // A walk that made no progress would loop forever; treat it as done.
        Ok(if next > start { next } else { end })
    }
}

/// Ranges at least this long are walked in parts ([`Pagemap::scan_all`]).
const SPLIT_MIN: u64 = 256 << 20;
/// At most this many parts.
const MAX_PARTS: usize = 4;
/// Where parts begin and end: page-table (2 MiB) boundaries.
const PART_ALIGN: u64 = 2 << 20;

/// The bounds of the parts `[start, end)` is walked in by `cpus` threads: `[start, end]`
/// alone below [`SPLIT_MIN`] or with one CPU, else up to [`MAX_PARTS`] parts of about
/// equal length, cut at [`PART_ALIGN`] boundaries.
fn split(start: u64, end: u64, cpus: usize) -> Vec<u64> {
    let parts = cpus.clamp(1, MAX_PARTS) as u64;
    if end - start < SPLIT_MIN || parts == 1 {
        return vec![start, end];
    }
    let step = (end - start) / parts;
    let mut cuts = vec![start];
    for i in 1..parts {
        let at = (start + i * step) / PART_ALIGN * PART_ALIGN;
        if at > *cuts.last().expect("start") && at < end {
            cuts.push(at);
        }
    }
    cuts.push(end);
    cuts
}

/// What [`Pagemap::markers`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Markers {
    /// Ranges of PTE markers.
    pub found: Vec<(u64, u64)>,
    /// The first write-protected swap entry whose type is hidden (no CAP_SYS_ADMIN).
    pub undecided: Option<u64>,
}

/// What a pagemap entry holds, as far as markers go.
enum Swap {
    Marker,
    /// Write-protected, and its type hidden: a marker or a page swapped out.
    Undecided,
    Other,
}

/// Tells a PTE marker (a swap entry of type `SWP_PTE_MARKER`) from a page. A swap entry
/// whose frame field is 0 has it hidden: a real one is never offset 0 (the swap header)
/// and a marker's offset is its nonzero marker bits.
fn kind_of(e: u64) -> Swap {
    if e & (PM_SWAP | PM_PRESENT) != PM_SWAP {
        return Swap::Other;
    }
    match e & PM_FRAME {
        0 if e & PM_UFFD_WP != 0 => Swap::Undecided,
        f if f & SWP_TYPE == SWP_PTE_MARKER => Swap::Marker,
        _ => Swap::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh private anonymous read-write mapping of `len` bytes, for one test.
    fn map_anon(len: usize) -> *mut libc::c_void {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh private anonymous mapping, used only by the calling test.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p
    }

    /// [`map_anon`] with its first `written` pages written; the mapping and its address.
    fn written_anon(len: usize, written: usize) -> (*mut libc::c_void, u64) {
        let p = map_anon(len);
        for page in 0..written {
            // SAFETY: the caller's pages lie inside the mapping above.
            unsafe { std::ptr::write_volatile((p as *mut u8).add(page * 4096), 1) };
        }
        (p, p as u64)
    }

    /// Maps 16 pages of our own, touches some, installs a guard page, and scans.
    #[test]
    fn large_ranges_are_split_at_table_boundaries() {
        assert_eq!(split(0x1000, 0x2000, 4), vec![0x1000, 0x2000]);
        let (start, end) = (0x7f00_0000_1000, 0x7f00_0000_1000 + (1 << 30));
        assert_eq!(split(start, end, 1), vec![start, end]);
        let cuts = split(start, end, 2);
        assert_eq!(cuts.len(), 3);
        assert_eq!(cuts[1] % PART_ALIGN, 0);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split(start, end, 64).len(), MAX_PARTS + 1);
    }

    #[test]
    fn a_split_scan_reports_what_one_walk_does() {
        let len = SPLIT_MIN as usize + (4 << 20);
        let (p, _) = written_anon(len, len / 4096 * 2 / 3);
        let pagemap = Pagemap::open(std::process::id() as i32).expect("open");
        let q = Query {
            any: PAGE_IS_PRESENT,
            report: PAGE_IS_PRESENT,
            ..Default::default()
        };
        let (start, end) = (p as u64, p as u64 + len as u64);
        let whole = pagemap.scan_part(start, end, q, 0).expect("scan");
        let split = pagemap.scan_all(start, end, q, 0).expect("scan");
        // SAFETY: unmapping the test's own mapping, used no more.
        unsafe { libc::munmap(p, len) };
        assert_eq!(whole, split);
    }

    #[test]
    fn scan_finds_present_and_guard_pages() {
        let len = 16 * 4096;
        let (p, base) = written_anon(len, 2);
        // SAFETY: MADV_GUARD_INSTALL (102) on page 8 of our own mapping.
        let guard = unsafe { libc::madvise((p as *mut u8).add(8 * 4096).cast(), 4096, 102) } == 0;
        let pm = Pagemap::open(std::process::id() as i32).expect("open own pagemap");
        let q = Query {
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
            report: PAGE_IS_PRESENT | PAGE_IS_GUARD,
            ..Default::default()
        };
        let regions = pm.scan(base, base + len as u64, q).expect("scan");
        assert_eq!(
            regions[0],
            PageRegion {
                start: base,
                end: base + 8192,
                categories: PAGE_IS_PRESENT
            }
        );
        if guard {
            let g = base + 8 * 4096;
            assert!(
                regions.contains(&PageRegion {
                    start: g,
                    end: g + 4096,
                    categories: PAGE_IS_GUARD
                }),
                "{regions:x?}"
            );
        }
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
    }

    /// 8 MiB whose pages alternate between written and read-only (the shared zero
    /// page): every page is reported once, in address order.
    #[test]
    fn scan_of_alternating_regions_reports_each_page_once() {
        let len = 8 << 20;
        let p = map_anon(len);
        let base = p as u64;
        for page in 0..len / 4096 {
            // SAFETY: every page lies inside the mapping above.
            let at = unsafe { (p as *mut u8).add(page * 4096) };
            if page % 2 == 0 {
                // SAFETY: as above.
                unsafe { std::ptr::read_volatile(at) };
            } else {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile(at, 1) };
            }
        }
        let pm = Pagemap::open(std::process::id() as i32).expect("open own pagemap");
        let q = Query {
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            report: PAGE_IS_PFNZERO,
            ..Default::default()
        };
        let regions = pm.scan(base, base + len as u64, q).expect("scan");
        let pages: u64 = regions.iter().map(|r| (r.end - r.start) / 4096).sum();
        assert_eq!(
            pages,
            len as u64 / 4096,
            "{:x?}",
            &regions[regions.len() - 3..]
        );
        assert!(regions.windows(2).all(|w| w[0].end <= w[1].start));
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
    }

    /// Whether we can read swap types from pagemap: CAP_SYS_ADMIN (21) shows frame fields.
    fn frames_visible() -> bool {
        let own = crate::proc::status(std::process::id() as i32).expect("own status");
        own.cap_eff & (1 << 21) != 0
    }

    /// Async write protection of a mapping with pages not populated leaves PTE markers
    /// there, which `PAGEMAP_SCAN` reports as swapped and `markers` finds; the populated
    /// pages are no markers.
    #[test]
    fn write_protection_of_unpopulated_pages_leaves_markers() {
        use crate::sys::uffd::Uffd;
        let len = 16 * 4096;
        let (p, base) = written_anon(len, 1);
        let Ok(uffd) = crate::sys::probe::userfaultfd().and_then(Uffd::new) else {
            eprintln!("skipped: no async write-protect userfaultfd here");
            return;
        };
        uffd.register_wp(base, len as u64).expect("UFFDIO_REGISTER");
        uffd.write_protect(base, len as u64)
            .expect("UFFDIO_WRITEPROTECT");
        let pm = Pagemap::open(std::process::id() as i32).expect("open own pagemap");
        let q = Query {
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            report: PAGE_IS_SWAPPED,
            ..Default::default()
        };
        let swapped: Vec<(u64, u64)> = (pm.scan(base, base + len as u64, q).expect("scan"))
            .iter()
            .filter(|r| r.categories & PAGE_IS_SWAPPED != 0)
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(swapped, vec![(base + 4096, base + len as u64)]);
        let markers = pm.markers(base, base + len as u64).expect("markers");
        let want = match frames_visible() {
            true => Markers {
                found: swapped,
                undecided: None,
            },
            false => Markers {
                found: vec![],
                undecided: Some(base + 4096),
            },
        };
        assert_eq!(markers, want);
        drop(uffd);
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
    }

    /// The pagemap holds the address space it was opened on: gone at exit, and at exec
    /// although the process lives on.
    #[test]
    fn address_space_gone_after_exit_and_after_exec() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut sh = Command::new("sh")
            .args(["-c", "read x; exec sleep 5"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pagemap = Pagemap::open(sh.id() as i32).expect("open");
        assert!(!pagemap.address_space_gone());
        writeln!(sh.stdin.as_mut().expect("piped")).expect("write");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pagemap.address_space_gone() {
            assert!(std::time::Instant::now() < end, "not gone after exec");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", sh.id())).expect("exe");
        assert!(exe.ends_with("sleep"), "{exe:?} runs");
        let pagemap = Pagemap::open(sh.id() as i32).expect("open");
        assert!(!pagemap.address_space_gone());
        sh.kill().expect("kill");
        sh.wait().expect("wait");
        assert!(pagemap.address_space_gone(), "after exit");
    }
}
