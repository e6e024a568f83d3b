//! One dump or restore as either front end (RPC or command line) asks it: directories,
//! log, and the options stasis implements. [`run_dump`] and [`run_restore`] call the
//! library, write the CRIU-style log and the stats file, and return the reason of a
//! failure as one line.

use std::path::{Path, PathBuf};

use stasis::dump::predump::PreDumpOptions;
use stasis::dump::{DumpOptions, DumpSummary, LazyServe, DEFAULT_GHOST_LIMIT};
use stasis::hooks::Hooks;
use stasis::image::RemoteSink;
use stasis::migrate::{RemoteImage, Target};
use stasis::restore::{RestoreOptions, Restored};

use crate::log::Log;
use crate::stats;

/// The subdirectory of CRIU's images directory holding stasis's image: runtimes keep
/// files of their own in the images directory (runc's `descriptors.json`, the logs),
/// and stasis writes its image atomically into a directory of its own.
pub const IMAGE_SUBDIR: &str = "stasis-image";

#[derive(Clone, Debug)]
pub struct Job {
    /// CRIU's images directory.
    pub images: PathBuf,
    /// CRIU's work directory (logs), the images directory by default.
    pub work: PathBuf,
    /// Log file name (relative to the work directory) or `-` for stderr.
    pub log_file: Option<PathBuf>,
    pub log_level: i32,
    pub pid: i32,
    pub leave_running: bool,
    pub shell_job: bool,
    /// `orphan_pts_master`: a pty whose master is outside the tree (the container's
    /// console) is saved, and its new master sent to the client at restore.
    pub orphan_pts_master: bool,
    pub tcp_established: bool,
    pub tcp_close: bool,
    /// `network_lock` / `--network-lock` (iptables when not given, as CRIU).
    pub network_lock: stasis::netlock::LockMode,
    pub ext_unix_sk: bool,
    pub skip_in_flight: bool,
    pub file_locks: bool,
    pub link_remap: bool,
    pub ghost_limit: u64,
    pub freeze_cgroup: Option<PathBuf>,
    /// `cg_root`, `cgroup_yard`, `cgroup_dump_controller` at dump.
    pub cgroup_dump: stasis::dump::cgroup::CgroupDumpOptions,
    /// `manage_cgroups(_mode)`, `cg_root`, `cgroup_yard` at restore.
    pub cgroup_restore: stasis::restore::CgroupRestoreOptions,
    /// `ext_mnt` and `external mnt[A]:B`, as `(A, B)`.
    pub mnt_externals: Vec<(String, String)>,
    /// `--external mnt[]` / `--ext-mount-map auto` (dump): mounts of filesystems the dumper
    /// has mounted are bound from there at restore.
    pub mnt_auto: bool,
    /// `join_ns` of kind `net`: the network namespace the tree comes back in.
    pub join_net: Option<PathBuf>,
    /// `external veth[INSIDE]:OUTSIDE[@BRIDGE]`.
    pub veth_externals: Vec<stasis::netns::VethExternal>,
    /// `external net[INO]:KEY`: the tree's network namespace is the caller's.
    pub net_external: Option<stasis::netns::NetExternal>,
    /// `root` at restore (a tree with its own mount namespace comes back in it).
    pub root: Option<PathBuf>,
    /// `timeout`: the longest any task may take to stop (10 s, as CRIU, when 0 or unset).
    pub timeout: std::time::Duration,
    pub rst_sibling: bool,
    pub skip_file_check: bool,
    /// `inherit_fd` / `--inherit-fd fd[N]:KEY`: (key, our fd N); KEY `pipe:[INO]` or an
    /// external network namespace's.
    pub inherit_fds: Vec<(String, i32)>,
    /// `parent_img` / `--prev-images-dir`: CRIU's parent images dir, relative to
    /// `images`.
    pub parent_img: Option<PathBuf>,
    /// `track_mem` / `--track-mem`.
    pub track_mem: bool,
    /// `ps` / `--page-server --address A --port P` at dump: the image is sent to
    /// stasis's page server (`crate::page_server`), the images directory keeps the
    /// records only.
    pub page_server: Option<(String, u16)>,
    /// `lazy_pages` / `--lazy-pages` with `--address A --port P`. Dump: where the source
    /// listens for the target; restore: the source the lazy-pages daemon named.
    pub lazy: Option<(String, u16)>,
}

impl Job {
    pub fn new(images: PathBuf) -> Job {
        Job {
            work: images.clone(),
            images,
            log_file: None,
            log_level: 2,
            pid: 0,
            leave_running: false,
            shell_job: false,
            orphan_pts_master: false,
            tcp_established: false,
            tcp_close: false,
            network_lock: Default::default(),
            ext_unix_sk: false,
            skip_in_flight: false,
            file_locks: false,
            link_remap: false,
            ghost_limit: DEFAULT_GHOST_LIMIT,
            freeze_cgroup: None,
            cgroup_dump: Default::default(),
            cgroup_restore: Default::default(),
            mnt_externals: Vec::new(),
            mnt_auto: false,
            join_net: None,
            veth_externals: Vec::new(),
            net_external: None,
            root: None,
            timeout: std::time::Duration::from_secs(10),
            rst_sibling: false,
            skip_file_check: false,
            inherit_fds: Vec::new(),
            parent_img: None,
            track_mem: false,
            page_server: None,
            lazy: None,
        }
    }

    /// The log of this job.
    pub fn open_log(&self) -> Result<Log, String> {
        match &self.log_file {
            Some(name) if name == Path::new("-") => Log::open(Some(name), self.log_level),
            Some(name) => Log::open(Some(&self.work.join(name)), self.log_level),
            None => Ok(Log::none()),
        }
    }

    /// Where stasis's image is (a stasis image given directly is read in place).
    pub fn image_dir(&self, restoring: bool) -> PathBuf {
        let sub = self.images.join(IMAGE_SUBDIR);
        if restoring && !sub.exists() {
            return self.images.clone();
        }
        sub
    }

    /// stasis's image inside the parent CRIU images dir (`parent_img` is relative to
    /// `images`, as CRIU takes it; stasis's image is a subdirectory of each).
    fn parent_image(&self) -> Option<PathBuf> {
        Some(self.parent_dir()?.join(IMAGE_SUBDIR))
    }

    /// The parent CRIU images dir, absolute.
    fn parent_dir(&self) -> Option<PathBuf> {
        let dir = self.images.join(self.parent_img.as_ref()?);
        Some(std::fs::canonicalize(&dir).unwrap_or(dir))
    }

    /// Whether this image is part of a chain (a pre-dump, or a dump with a parent or
    /// leaving the tracking armed).
    fn chained(&self, pre_dump: bool) -> bool {
        pre_dump || self.parent_img.is_some() || self.track_mem
    }

    /// The name the page server stores this image under, in its directory: a lone dump
    /// as `stasis-image` (so `criu restore -D SERVER_DIR` finds it, as a local dump
    /// would be found), an image of a chain under its CRIU images dir's name (so the
    /// relative parent reference, `../NAME`, holds there: restore with
    /// `-D SERVER_DIR/NAME`).
    pub fn remote_name(&self, pre_dump: bool) -> Result<String, String> {
        if !self.chained(pre_dump) {
            return Ok(IMAGE_SUBDIR.into());
        }
        base_name(&self.images)
    }

    /// The parent reference of an image sent to a page server: `../NAME` (the parent's
    /// name on the server), made to hold locally too by a link `images/NAME` to the
    /// parent's stasis image (stasis's image is `images/stasis-image`, so `../NAME` is
    /// `images/NAME`).
    fn remote_parent(&self) -> Result<Option<PathBuf>, String> {
        let Some(dir) = self.parent_dir() else {
            return Ok(None);
        };
        let name = base_name(&dir)?;
        if name == base_name(&self.images)? || name == IMAGE_SUBDIR {
            return Err(format!(
                "--page-server with --prev-images-dir: the parent images dir {} and this \
                 one share the name {name:?}, which names each on the page server",
                dir.display()
            ));
        }
        let link = self.images.join(&name);
        let target = dir.join(IMAGE_SUBDIR);
        if std::fs::read_link(&link).ok().as_ref() != Some(&target) {
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| format!("link {} to {}: {e}", link.display(), target.display()))?;
        }
        Ok(Some(Path::new("..").join(name)))
    }

    /// Connects to the page server of `page_server`, if any, and begins this image.
    fn connect(&self, pre_dump: bool) -> Result<Option<RemoteSink>, String> {
        let Some((address, port)) = &self.page_server else {
            return Ok(None);
        };
        let target = Target {
            peer: crate::page_server::join(address, *port),
            security: Default::default(),
        };
        let name = self.remote_name(pre_dump)?;
        RemoteImage::begin(&target, &name, !pre_dump)
            .map(|s| Some(RemoteSink(s)))
            .map_err(|e| stasis::error_line(&e))
    }

    /// The parent image as the dump is given it: sent to a page server, relative.
    fn prev_images_dir(&self) -> Result<Option<PathBuf>, String> {
        match self.page_server {
            Some(_) => self.remote_parent(),
            None => Ok(self.parent_image()),
        }
    }

    fn pre_dump_options(&self) -> Result<PreDumpOptions, String> {
        Ok(PreDumpOptions {
            pid: self.pid,
            dir: self.image_dir(false),
            prev_images_dir: self.prev_images_dir()?,
            timeout: self.timeout,
            remote: self.connect(true)?,
        })
    }

    fn dump_options(&self) -> Result<DumpOptions, String> {
        Ok(DumpOptions {
            pid: self.pid,
            dir: self.image_dir(false),
            leave_running: self.leave_running,
            shell_job: self.shell_job,
            orphan_pts_master: self.orphan_pts_master,
            ghost_limit: self.ghost_limit,
            link_remap: self.link_remap,
            file_locks: self.file_locks,
            file_hash: false,
            tcp_established: self.tcp_established,
            tcp_close: self.tcp_close,
            network_lock: self.network_lock,
            ext_unix_sk: self.ext_unix_sk,
            skip_in_flight: self.skip_in_flight,
            freeze_cgroup: self.freeze_cgroup.clone(),
            cgroups: self.cgroup_dump.clone(),
            mnt_externals: stasis::dump::mnt::Externals {
                named: self.mnt_externals.clone(),
                auto: self.mnt_auto,
            },
            prev_images_dir: self.prev_images_dir()?,
            track_mem: self.track_mem,
            remote: self.connect(false)?,
            veth_externals: self.veth_externals.clone(),
            net_external: self.net_external.clone(),
            lazy: (self.lazy.clone()).map(|(address, port)| LazyServe {
                address,
                port,
                listener: None,
                give_up: Default::default(),
            }),
            timeout: self.timeout,
            store: Default::default(),
        })
    }
}

/// Pre-dumps as `job` says (`criu pre-dump`, `PRE_DUMP`): the tree runs on, its memory
/// saved and its writes tracked for the dump that names this image as its parent.
pub fn run_pre_dump(job: &Job, log: &mut Log) -> Result<(), String> {
    log.info(&format!(
        "Pre-dumping processes (pid: {}) with stasis {}",
        job.pid,
        stasis_version()
    ));
    let options = job.pre_dump_options().inspect_err(|why| log.error(why))?;
    let done = stasis::dump::predump::pre_dump(&options);
    match &done {
        Ok(s) => log.info(&format!(
            "Pre-dumping finished successfully ({} pages, frozen {:.1} ms{})",
            s.pages_stored,
            s.frozen.as_secs_f64() * 1e3,
            s.gone_note()
        )),
        Err(e) => log.error(&stasis::error_line(e)),
    }
    done.map(drop).map_err(|e| stasis::error_line(&e))
}

/// Dumps as `job` says; the log ends with the reason of a failure.
pub fn run_dump(job: &Job, log: &mut Log, hooks: &mut dyn Hooks) -> Result<DumpSummary, String> {
    log.info(&format!(
        "Dumping processes (pid: {}) with stasis {}",
        job.pid,
        stasis_version()
    ));
    let summary = job.dump_options().and_then(|options| {
        stasis::dump::dump_with(&options, hooks).map_err(|e| stasis::error_line(&e))
    });
    let summary =
        summary.and_then(|s| stats::write(&job.work, "dump", &stats::dump_entry(&s)).map(|()| s));
    let summary = summary.and_then(|s| link_inventory(&job.images).map(|()| s));
    match &summary {
        Ok(s) => log.info(&format!(
            "Dumping finished successfully ({} pages)",
            s.pages_stored
        )),
        Err(why) => log.error(why),
    }
    summary
}

/// Restores as `job` says; the log ends with the reason of a failure.
pub fn run_restore(job: &Job, log: &mut Log, hooks: &mut dyn Hooks) -> Result<Restored, String> {
    log.info(&format!(
        "Restoring processes with stasis {}",
        stasis_version()
    ));
    let opts = RestoreOptions {
        dir: job.image_dir(true),
        shell_job: job.shell_job,
        orphan_pts_master: job.orphan_pts_master,
        tcp_close: job.tcp_close,
        skip_file_check: job.skip_file_check,
        cgroups: job.cgroup_restore.clone(),
        root: job.root.clone(),
        mnt_externals: job.mnt_externals.clone(),
        inherit_fds: job.inherit_fds.clone(),
        store: Default::default(),
        join_net: job.join_net.clone(),
        veth_externals: job.veth_externals.clone(),
        lazy: (job.lazy.clone())
            .map(|(address, port)| stasis::lazy::restore::LazyFrom { address, port }),
        pages_verified: Vec::new(),
        lazy_local: false,
    };
    stasis::restore::set_root_sibling(job.rst_sibling);
    let restored = stasis::restore::restore_with(&opts, hooks).map_err(|e| stasis::error_line(&e));
    let restored = restored
        .and_then(|r| stats::write(&job.work, "restore", &stats::restore_entry(&r)).map(|()| r));
    match &restored {
        Ok(r) => log.info(&format!("Restore finished successfully (pid {})", r.pid)),
        Err(why) => log.error(why),
    }
    restored
}

/// `inventory.img` in the images directory, a link to the stasis image's inventory:
/// podman takes that file as the sign that a checkpoint exists (it only stats it). A
/// reader of CRIU's format opening it finds stasis's magic and refuses it.
fn link_inventory(images: &Path) -> Result<(), String> {
    let link = images.join("inventory.img");
    if link
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(&link);
    }
    let target = Path::new(IMAGE_SUBDIR).join("inventory.img");
    match std::os::unix::fs::symlink(&target, &link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "link {} to {}: {e}",
            link.display(),
            target.display()
        )),
    }
}

/// The last component of `dir`, as a page server names an image of a chain by it.
fn base_name(dir: &Path) -> Result<String, String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    (dir.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{}: an images dir with a name is needed", dir.display()))
}

pub fn stasis_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
