//! Unit tests of the image loader (`load.rs`).

use super::*;
use crate::image::dir::ImageWriter;
use crate::image::file::encode;
use crate::image::pages::PAGES_DATA_OFFSET;
use crate::image::sample;
use std::fs;

fn is_socket(e: &crate::image::files::FdEntry) -> bool {
    use crate::image::files::FdKind;
    matches!(e.kind, FdKind::Unix(_) | FdKind::Inet(_))
}

const PID: i32 = 42;

fn process() -> ProcessImage {
    let (task, mm, files) = (sample::task(PID), sample::mm(), sample::files());
    ProcessImage { task, mm, files }
}

/// Writes one process with `pages` pages of data and commits it to `dir`.
fn write_image(dir: &Path, p: &ProcessImage, pages: u8) -> Image {
    let w = ImageWriter::create(dir).unwrap();
    let inventory = sample::inventory(&[PID]);
    write_task_and_files(&w, p);
    write_mm_and_pages(&w, p, pages);
    let tree = sample::tree(&[PID]);
    w.write_record(TREE, Kind::Tree, &tree).unwrap();
    w.write_record(INVENTORY, Kind::Inventory, &inventory)
        .unwrap();
    w.commit().unwrap();
    let (dir, processes) = (dir.to_path_buf(), vec![p.clone()]);
    Image {
        dir,
        inventory,
        tree,
        tty: Default::default(),
        processes,
        ghosts: Default::default(),
        ghost_homes: Default::default(),
        sysv: SysvImage::default(),
        mqueue: MqueueImage::default(),
        orphan_pty: OrphanPtyImage::default(),
        pty_devpts: PtyDevptsImage::default(),
        ns: Default::default(),
        cgroup: CgroupImage::default(),
        mounts: None,
        nested_mounts: Default::default(),
        mnt_joins: Default::default(),
        binfmt: Default::default(),
        maps_elsewhere: Default::default(),
        netns: None,
        netlinks: Default::default(),
        netpeers: Default::default(),
        netjoins: Default::default(),
        socket_nets: Default::default(),
        userns: None,
        chain: None,
        parent_pages: Default::default(),
        listed: Default::default(),
    }
}

fn write_task_and_files(w: &ImageWriter, p: &ProcessImage) {
    let pid = p.task.pid;
    w.write_record(&record_name("task", pid), Kind::Task, &p.task)
        .unwrap();
    w.write_record(&record_name("files", pid), Kind::Files, &p.files)
        .unwrap();
}

/// The mm record and `pages` pages of data (page `i` filled with `i`) in file 0.
fn write_mm_and_pages(w: &ImageWriter, p: &ProcessImage, pages: u8) {
    let pid = p.task.pid;
    w.write_record(&record_name("mm", pid), Kind::Mm, &p.mm)
        .unwrap();
    let mut pw = w.pages(&pages_name(pid, 0)).unwrap();
    (0..pages).for_each(|i| pw.write(&[i; 4096]).unwrap());
    pw.finish().unwrap();
}

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    write_image(&dir, &process(), 3);
    (parent, dir)
}

#[test]
fn round_trip() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    let written = write_image(&dir, &process(), 3);
    assert_eq!(Image::load(&dir).unwrap(), written);
    assert_eq!(Image::load_metadata(&dir).unwrap(), written);
    assert_eq!(written.pages_path(PID, 0), dir.join("pages-42.img"));
    assert_eq!(written.pages_path(PID, 1), dir.join("pages-42.1.img"));
}

/// Pid 43 shares the address space and signal handlers of its parent 42: it has no
/// mm or pages file, and loads with an empty mm.
#[test]
fn sharer_has_no_mm_of_its_own() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    let owner = process();
    let w = ImageWriter::create(&dir).unwrap();
    let mut sharer = ProcessImage {
        task: sample::task(43),
        mm: MmImage::default(),
        files: sample::files(),
    };
    (sharer.task.pgid, sharer.task.sid) = (PID, PID);
    sharer.task.sigactions.clear();
    for p in [&owner, &sharer] {
        write_task_and_files(&w, p);
    }
    write_mm_and_pages(&w, &owner, 3);
    let mut tree = sample::tree(&[PID, 43]);
    (
        tree.processes[1].shares_vm,
        tree.processes[1].shares_sighand,
    ) = (true, true);
    w.write_record(TREE, Kind::Tree, &tree).unwrap();
    let inventory = sample::inventory(&[PID, 43]);
    w.write_record(INVENTORY, Kind::Inventory, &inventory)
        .unwrap();
    w.commit().unwrap();
    let image = Image::load(&dir).unwrap();
    assert_eq!(image.processes, vec![owner, sharer]);
    assert!(image.owns_mm(PID) && !image.owns_mm(43));
    assert!(!dir.join("mm-43.img").exists());
}

fn v7_runs(mm: &MmImage) -> Vec<crate::image::mm::PageRunV7> {
    let run = |r: &crate::image::mm::PageRun| crate::image::mm::PageRunV7 {
        addr: r.addr,
        pages: r.pages,
    };
    mm.page_runs.iter().map(run).collect()
}

/// `mm`'s mappings as format 8 wrote them (only those format 8 could hold).
fn v8_vmas(mm: &MmImage) -> Vec<crate::image::mm::VmaV8> {
    use crate::image::mm::{VmaFlagsV8, VmaKind, VmaKindV8, VmaV8};
    let vma = |v: &crate::image::mm::Vma| VmaV8 {
        start: v.start,
        end: v.end,
        prot: v.prot,
        shared: v.shared,
        kind: match &v.kind {
            VmaKind::Anon => VmaKindV8::Anon,
            VmaKind::File { file, offset, .. } => VmaKindV8::File {
                file: file.clone(),
                offset: *offset,
            },
            VmaKind::Vdso => VmaKindV8::Vdso,
            VmaKind::Vvar => VmaKindV8::Vvar,
            VmaKind::VvarVclock => VmaKindV8::VvarVclock,
            other => panic!("format 8 had no {other:?}"),
        },
        flags: VmaFlagsV8 {
            growsdown: v.flags.growsdown,
            sealed: v.flags.sealed,
            ..VmaFlagsV8::default()
        },
    };
    mm.vmas.iter().map(vma).collect()
}

/// A version 8 mm record (mappings without the flags, file modes and rings of
/// format 9) loads with files opened for writing where mapped shared and writable.
#[test]
fn version_8_mm_is_converted() {
    let (_parent, dir) = fixture();
    let mut mm = sample::mm();
    mm.vmas[0].shared = true;
    mm.vmas[0].prot |= libc::PROT_WRITE as u32;
    let old = crate::image::mm::MmImageV8 {
        vmas: v8_vmas(&mm),
        page_runs: mm.page_runs.clone(),
        fields: mm.fields,
        auxv: mm.auxv.clone(),
        exe: mm.exe.clone(),
        vdso_symbols: mm.vdso_symbols.clone(),
        shmem: mm.shmem.clone(),
        guards: mm.guards.clone(),
        cow: mm.cow.clone(),
    };
    let mut bytes = encode(Kind::Mm, &old).unwrap();
    crate::image::file::set_version(&mut bytes, 8);
    fs::write(dir.join("mm-42.img"), bytes).unwrap();
    let image = Image::load(&dir).unwrap();
    if let crate::image::mm::VmaKind::File { writable, .. } = &mut mm.vmas[0].kind {
        *writable = true;
    }
    assert_eq!(image.processes[0].mm, mm);
}

/// A version 8 task record (no `thread_creds`) loads with every thread having the
/// leader's credentials; one of version 9 with another thread's own keeps them.
#[test]
fn version_8_task_is_converted() {
    let (_parent, dir) = fixture();
    let path = dir.join("task-42.img");
    let mut task: TaskImage = crate::image::file::read(Kind::Task, &path).unwrap();
    let mut bytes = encode(Kind::Task, &TaskImageV8::from(task.clone())).unwrap();
    crate::image::file::set_version(&mut bytes, 8);
    fs::write(&path, bytes).unwrap();
    assert_eq!(Image::load(&dir).unwrap().processes[0].task, task);
    let tid = task.threads[1].tid;
    let creds = crate::image::task::Creds::default();
    task.thread_creds = vec![crate::image::task::ThreadCreds { tid, creds }];
    fs::write(&path, encode(Kind::Task, &task).unwrap()).unwrap();
    let loaded = Image::load(&dir).unwrap().processes.remove(0).task;
    assert_eq!(loaded.creds_of(tid), &crate::image::task::Creds::default());
}

/// A version 7 mm record (runs without a stripe) loads with every run in the first
/// pages file.
#[test]
fn version_7_mm_is_converted() {
    let (_parent, dir) = fixture();
    let mm = sample::mm();
    let old = super::MmImageV7 {
        vmas: v8_vmas(&mm),
        page_runs: v7_runs(&mm),
        fields: mm.fields,
        auxv: mm.auxv.clone(),
        exe: mm.exe.clone(),
        vdso_symbols: mm.vdso_symbols.clone(),
        shmem: mm.shmem.clone(),
        guards: mm.guards.clone(),
        cow: mm.cow.clone(),
    };
    let path = dir.join("mm-42.img");
    let mut bytes = encode(Kind::Mm, &old).unwrap();
    crate::image::file::set_version(&mut bytes, 7);
    fs::write(&path, bytes).unwrap();
    let image = Image::load(&dir).unwrap();
    assert_eq!(image.processes[0].mm, mm);
    assert!(mm.page_runs.iter().all(|r| r.stripe == 0));
}

/// Runs spread over two pages files: each file is checked against its own runs.
#[test]
fn striped_pages_round_trip() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    let mut p = process();
    // sample::mm has runs of 2 and 1 pages: move the second to stripe 1.
    p.mm.page_runs[1].stripe = 1;
    let written = write_image(&dir, &p, 2);
    let w1 = dir.join("pages-42.1.img");
    assert!(matches!(
        Image::load_metadata(&dir),
        Err(ImageError::Io { ref path, .. }) if *path == w1
    ));
    let mut pw = crate::image::pages::PagesWriter::create(&w1).unwrap();
    pw.write(&[9; 4096]).unwrap();
    pw.finish().unwrap();
    assert_eq!(Image::load(&dir).unwrap(), written);
    let mut bytes = fs::read(&w1).unwrap();
    bytes[PAGES_DATA_OFFSET as usize] ^= 1;
    fs::write(&w1, bytes).unwrap();
    assert!(matches!(
        Image::load(&dir),
        Err(ImageError::Checksum { ref path, .. }) if *path == w1
    ));
}

#[test]
fn record_names() {
    assert_eq!(pages_name(123, 0), "pages-123.img");
    assert_eq!(pages_name(123, 2), "pages-123.2.img");
    assert_eq!(record_name("task", 123), "task-123.img");
}

#[test]
fn missing_inventory_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let err = Image::load(dir.path()).unwrap_err();
    assert!(matches!(err, ImageError::NotAnImage { .. }));
    assert!(err
        .to_string()
        .ends_with(": not a stasis image directory (no inventory.img)"));
}

#[test]
fn missing_process_file_names_it() {
    let (_parent, dir) = fixture();
    fs::remove_file(dir.join("mm-42.img")).unwrap();
    let err = Image::load(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("open {}", dir.join("mm-42.img").display())
    );
}

#[test]
fn pages_checksum_mismatch() {
    let (_parent, dir) = fixture();
    let path = dir.join("pages-42.img");
    let mut bytes = fs::read(&path).unwrap();
    bytes[PAGES_DATA_OFFSET as usize + 4097] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert!(matches!(
        Image::load(&dir),
        Err(ImageError::Checksum { .. })
    ));
    Image::load_metadata(&dir).unwrap();
}

#[test]
fn pages_file_shorter_than_page_runs() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    write_image(&dir, &process(), 2);
    let err = Image::load_metadata(&dir).unwrap_err();
    assert!(matches!(
        err,
        ImageError::PageCount {
            expected: 3,
            found: 2,
            ..
        }
    ));
}

#[test]
fn record_checksum_mismatch() {
    let (_parent, dir) = fixture();
    let path = dir.join("files-42.img");
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let err = Image::load(&dir).unwrap_err();
    assert!(matches!(err, ImageError::Checksum { path, .. } if path == dir.join("files-42.img")));
}

#[test]
fn record_renamed_to_another_kind() {
    let (_parent, dir) = fixture();
    fs::copy(dir.join("files-42.img"), dir.join("mm-42.img")).unwrap();
    assert!(matches!(
        Image::load(&dir),
        Err(ImageError::WrongKind {
            expected: 3,
            found: 4,
            ..
        })
    ));
}

#[test]
fn invalid_record_is_refused_with_its_path() {
    let (_parent, dir) = fixture();
    let mut task = sample::task(PID);
    task.pid = 43;
    fs::write(dir.join("task-42.img"), encode(Kind::Task, &task).unwrap()).unwrap();
    let err = Image::load(&dir).unwrap_err();
    let expected = format!(
        "{}: holds pid 43, but the file name says 42",
        dir.join("task-42.img").display()
    );
    assert_eq!(err.to_string(), expected);
}

/// A `Deleted` fd loads with the ghost it names; without that ghost it is refused.
#[test]
fn deleted_fds_need_their_ghost() {
    use crate::image::files::{DeletedFd, FdEntry};
    use crate::image::ghost::{GhostBody, GhostFile};
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("img");
    let mut p = process();
    p.files.fds.push(FdEntry {
        fd: 40,
        cloexec: false,
        flags: libc::O_RDONLY,
        kind: FdKind::Deleted(DeletedFd {
            ghost: 0,
            pos: 0,
            fifo: None,
        }),
    });
    write_image(&dir, &p, 3);
    let err = Image::load(&dir).unwrap_err().to_string();
    assert!(
        err.ends_with("fd 40 refers to ghost 0, which ghosts.img lacks"),
        "{err}"
    );
    let ghosts = GhostsImage {
        files: vec![GhostFile {
            path: "/gone".into(),
            dev: 1,
            ino: 2,
            mode: 0o700,
            uid: 0,
            gid: 0,
            atime_ns: 0,
            mtime_ns: 0,
            body: GhostBody::Directory,
            cwd_of: vec![PID],
        }],
    };
    fs::write(dir.join(GHOSTS), encode(Kind::Ghosts, &ghosts).unwrap()).unwrap();
    let image = Image::load(&dir).unwrap();
    assert_eq!(image.ghosts, ghosts);
}

#[test]
fn invalid_inventory_is_refused() {
    let (_parent, dir) = fixture();
    let mut inv = sample::inventory(&[PID]);
    inv.root_pid = 1;
    fs::write(dir.join(INVENTORY), encode(Kind::Inventory, &inv).unwrap()).unwrap();
    assert!(matches!(Image::load(&dir), Err(ImageError::Invalid { .. })));
}

/// A version 6 image (files records without `spares`, `in_flight`, `epoll_moved` and
/// `hashes`, tree records without `terminal` and sharing flags, mm records without
/// `cow`) loads, read as having none.
#[test]
fn version_6_records_are_converted() {
    let (_parent, dir) = fixture();
    let files = sample::files();
    let old = FilesImageV6::without_sockets(&files);
    fs::write(dir.join("files-42.img"), encode(Kind::Files, &old).unwrap()).unwrap();
    let tree = TreeImageV6::from(&sample::tree(&[PID]));
    fs::write(dir.join(TREE), encode(Kind::Tree, &tree).unwrap()).unwrap();
    let mm = sample::mm();
    let old_mm = super::MmImageV6 {
        vmas: v8_vmas(&mm),
        page_runs: v7_runs(&mm),
        fields: mm.fields,
        auxv: mm.auxv.clone(),
        exe: mm.exe.clone(),
        vdso_symbols: mm.vdso_symbols.clone(),
        shmem: mm.shmem.clone(),
        guards: mm.guards.clone(),
    };
    fs::write(dir.join("mm-42.img"), encode(Kind::Mm, &old_mm).unwrap()).unwrap();
    let task_path = dir.join("task-42.img");
    let task: TaskImage = crate::image::file::read(Kind::Task, &task_path).unwrap();
    let old_task = TaskImageV8::from(task.clone());
    fs::write(&task_path, encode(Kind::Task, &old_task).unwrap()).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        crate::image::file::set_version(&mut bytes, 6);
        fs::write(&path, bytes).unwrap();
    }
    let image = Image::load(&dir).unwrap();
    let converted = FilesImage {
        fds: files.fds.into_iter().filter(|e| !is_socket(e)).collect(),
        locks: files.locks,
        ..FilesImage::default()
    };
    assert_eq!(image.processes[0].files, converted);
    assert_eq!(image.tree.terminal, None);
    assert_eq!(image.processes[0].mm, mm);
    assert_eq!(
        image.processes[0].task, task,
        "no thread with credentials of its own"
    );
}

/// A files record of version 16 (no `dgram_senders`) loads with no senders: its queues
/// are sent again as before.
#[test]
fn version_16_files_load_without_senders() {
    let (_parent, dir) = fixture();
    let path = dir.join("files-42.img");
    let files: FilesImage = crate::image::file::read(Kind::Files, &path).unwrap();
    assert!(!files.dgram_senders.is_empty(), "the sample has senders");
    let old = crate::image::files_v16::FilesImageV16::from(&files);
    let mut bytes = encode(Kind::Files, &old).unwrap();
    crate::image::file::set_version(&mut bytes, 16);
    fs::write(&path, bytes).unwrap();
    let loaded = Image::load(&dir).unwrap();
    let want = FilesImage {
        dgram_senders: Vec::new(),
        ..files
    };
    assert_eq!(loaded.processes[0].files, want);
}
