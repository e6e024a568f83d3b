//! CRIU's command line: `criu dump|pre-dump|restore|check|page-server|lazy-pages` and
//! `--version`, with CRIU's option names, for scripts that call the binary directly.
//! The CRIU flags the `stasis` binary already takes are the same code
//! (`src/cli/compat.rs`); the rest map onto a [`Job`] as the RPC's options do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[path = "../../src/cli/compat.rs"]
pub(crate) mod compat;

use crate::job::{run_dump, run_restore, Job};
use compat::{CriuFlags, RestoreNoops};
use stasis::hooks::NoHooks;

/// CRIU's command line in front of stasis.
#[derive(Parser, Debug)]
#[command(name = "criu", disable_version_flag = true)]
pub struct Cli {
    /// Print the version (CRIU's form, then stasis's).
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Checkpoint a process tree.
    Dump(DumpArgs),
    /// Save memory while the tree runs on and track its writes (`stasis pre-dump`).
    #[command(name = "pre-dump")]
    PreDump(DumpArgs),
    /// Restore a process tree.
    Restore(RestoreArgs),
    /// Probe the kernel features stasis needs.
    Check(Ignored),
    /// Receive images into -D from `criu dump|pre-dump --page-server` (stasis's page
    /// server: its protocol is stasis's, CRIU cannot send to it).
    #[command(name = "page-server")]
    PageServer(PageServerArgs),
    /// The target's side of a lazy restore: tells `criu restore --lazy-pages` where the
    /// source (`criu dump --lazy-pages`) is, and waits until every page is in.
    #[command(name = "lazy-pages")]
    LazyPages(LazyPagesArgs),
}

/// The arguments of a refused command, taken whole so the refusal is the one message.
#[derive(Args, Debug)]
pub struct Ignored {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// What `criu page-server` and `criu lazy-pages` take besides their own options.
#[derive(Args, Debug)]
pub struct Daemon {
    #[arg(short = 'D', long = "images-dir")]
    pub images: PathBuf,
    #[arg(short = 'W', long = "work-dir")]
    pub work: Option<PathBuf>,
    #[arg(long = "address")]
    pub address: Option<String>,
    #[arg(long = "port")]
    pub port: Option<u16>,
    /// Run in the background once listening.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Write one zero byte to this fd once listening.
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    /// With -d: write the daemon's pid here.
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// With -d: the daemon's failure goes into this file of the work directory (else
    /// nowhere, its stdio being closed as CRIU's daemon's).
    #[arg(short = 'o', long = "log-file")]
    pub log_file: Option<PathBuf>,
    #[arg(short = 'v', value_parser = verbosity, num_args = 0..=1, default_missing_value = "v")]
    pub verbosity: Option<i32>,
    /// The bound socket, from the parent of a daemon (stasis-criu's own).
    #[arg(long = "listen-fd", hide = true)]
    pub listen_fd: Option<i32>,
}

impl Daemon {
    /// The log file in the work directory (`-o`), where a daemon's failure is written;
    /// `-` keeps stderr.
    fn log(&self) -> Option<PathBuf> {
        let name = self.log_file.as_ref().filter(|n| n.as_os_str() != "-")?;
        Some(self.work.as_ref().unwrap_or(&self.images).join(name))
    }
}

#[derive(Args, Debug)]
pub struct PageServerArgs {
    #[command(flatten)]
    pub daemon: Daemon,
}

#[derive(Args, Debug)]
pub struct LazyPagesArgs {
    /// Take the pages from the source's `criu dump --lazy-pages` (required: stasis has
    /// no lazy restore from local images).
    #[arg(long = "page-server")]
    pub page_server: bool,
    #[command(flatten)]
    pub daemon: Daemon,
}

/// `--page-server`, `--lazy-pages` and their `--address`/`--port` at dump.
#[derive(Args, Debug)]
pub struct Remote {
    /// Send the image to `criu page-server` (stasis's) at --address/--port.
    #[arg(long = "page-server")]
    pub page_server: bool,
    /// Post-copy: serve the tree's memory on --address/--port to `criu lazy-pages`.
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    #[arg(long = "address")]
    pub address: Option<String>,
    #[arg(long = "port")]
    pub port: Option<u16>,
}

impl Remote {
    /// `(page_server, lazy)` endpoints of the job, or the misuse named.
    #[allow(clippy::type_complexity)]
    fn endpoints(&self) -> Result<(Option<(String, u16)>, Option<(String, u16)>), String> {
        let given = self.address.is_some() || self.port.is_some();
        match (self.page_server, self.lazy_pages) {
            (true, true) => Err(
                "--page-server and --lazy-pages cannot be combined: stasis's \
                 lazy dump serves its pages itself"
                    .into(),
            ),
            (false, false) if given => {
                Err("--address and --port go with --page-server or --lazy-pages".into())
            }
            (false, false) => Ok((None, None)),
            (ps, _) => {
                let what = if ps { "--page-server" } else { "--lazy-pages" };
                let port = self.port.ok_or(format!("{what} needs --port"))?;
                let default = if ps { "127.0.0.1" } else { "0.0.0.0" };
                let at = (self.address.clone().unwrap_or(default.into()), port);
                Ok(if ps {
                    (Some(at), None)
                } else {
                    (None, Some(at))
                })
            }
        }
    }
}

/// Options both sides take.
#[derive(Args, Debug)]
pub struct Common {
    #[arg(short = 'D', long = "images-dir")]
    pub images: PathBuf,
    #[arg(short = 'W', long = "work-dir")]
    pub work: Option<PathBuf>,
    /// Log file, in the work directory (`-` for stderr).
    #[arg(short = 'o', long = "log-file")]
    pub log_file: Option<PathBuf>,
    /// Verbosity: `-v4`, or `-v` once per level.
    #[arg(short = 'v', value_parser = verbosity, num_args = 0..=1, default_missing_value = "v")]
    pub verbosity: Option<i32>,
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// Accepted: the stats files are always written.
    #[arg(long = "display-stats")]
    pub display_stats: bool,
    #[command(flatten)]
    pub criu: CriuFlags,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    #[arg(short = 'x', long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    #[arg(long = "skip-in-flight")]
    pub skip_in_flight: bool,
    #[arg(short = 'l', long = "file-locks")]
    pub file_locks: bool,
    #[arg(long = "link-remap")]
    pub link_remap: bool,
    #[arg(long = "freeze-cgroup")]
    pub freeze_cgroup: Option<PathBuf>,
    /// The parent images dir (relative to -D): store only pages written since it.
    #[arg(long = "prev-images-dir")]
    pub prev_images_dir: Option<PathBuf>,
    /// With -R: leave the tracking of written pages armed for a later dump.
    #[arg(long = "track-mem")]
    pub track_mem: bool,
    #[command(flatten)]
    pub remote: Remote,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[arg(short = 'd', long = "restore-detached")]
    pub detached: bool,
    #[arg(long = "restore-sibling")]
    pub sibling: bool,
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    #[arg(long = "skip-file-check")]
    pub skip_file_check: bool,
    /// Refused unless `/`: stasis restores no mount namespace.
    #[arg(short = 'r', long = "root")]
    pub root: Option<String>,
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub dump_side: RestoreNoops,
}

/// `-v4` → 4, `-v`/`-vv` (one `v` given as the value per extra level) → 3, 4...
fn verbosity(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse() {
        return Ok(n);
    }
    match text.chars().all(|c| c == 'v') {
        true => Ok(2 + text.len() as i32),
        false => Err(format!("-v{text}: a level (0-4) or more v's")),
    }
}

/// Runs the command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    if cli.version {
        println!(
            "Version: {}.{}",
            crate::swrk::CRIU_MAJOR,
            crate::swrk::CRIU_MINOR
        );
        println!("stasis: {}", crate::job::stasis_version());
        return 0;
    }
    let result = match cli.command {
        None => Err(
            "a command is needed: dump, pre-dump, restore, check, page-server, lazy-pages \
             (or --version)"
                .into(),
        ),
        Some(Command::Dump(a)) => dump(a),
        Some(Command::Restore(a)) => restore(a),
        Some(Command::Check(_)) => return check(),
        Some(Command::PreDump(a)) => pre_dump(a),
        Some(Command::PageServer(a)) => page_server(a),
        Some(Command::LazyPages(a)) => lazy_pages(a),
    };
    match result {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("Error (stasis): {why}");
            1
        }
    }
}

fn check() -> i32 {
    let probes = stasis::check::run_all();
    let _ = stasis::check::print(&probes, &mut std::io::stdout());
    match stasis::check::all_required_ok(&probes) {
        true => {
            println!("Looks good.");
            0
        }
        false => 1,
    }
}

fn common_job(c: &Common) -> Result<Job, String> {
    c.criu.check()?;
    let mut job = Job::new(c.images.clone());
    job.work = c.work.clone().unwrap_or_else(|| c.images.clone());
    job.log_file = c.log_file.clone();
    job.log_level = c.verbosity.unwrap_or(2);
    job.shell_job = c.shell_job;
    job.tcp_close = c.tcp_close;
    job.network_lock = c.criu.lock_mode()?;
    job.cgroup_dump = c.criu.cgroup_dump();
    job.cgroup_restore = c.criu.cgroup_restore();
    job.mnt_externals = c.criu.mnt_externals();
    job.mnt_auto = c.criu.mount_externals().auto;
    job.veth_externals = c.criu.veth_externals();
    job.net_external = c.criu.net_external();
    Ok(job)
}

/// `criu page-server`: stasis's page server on -D.
fn page_server(a: PageServerArgs) -> Result<(), String> {
    let d = &a.daemon;
    let port = d.port.ok_or("page-server needs --port")?;
    let ps = crate::page_server::PageServer {
        dir: d.images.clone(),
        address: d.address.clone().unwrap_or("0.0.0.0".into()),
        port,
        log: d.log(),
    };
    crate::page_server::run(
        &ps,
        d.listen_fd,
        d.daemon,
        d.status_fd,
        d.pidfile.as_deref(),
    )
}

/// `criu lazy-pages --page-server`: the daemon the target's restore asks for its source.
fn lazy_pages(a: LazyPagesArgs) -> Result<(), String> {
    if !a.page_server {
        return Err(
            "lazy-pages without --page-server: stasis's lazy restore takes the \
             pages from the source's `criu dump --lazy-pages` (--page-server --address \
             --port); lazy pages from the local images dir are not supported"
                .into(),
        );
    }
    let d = &a.daemon;
    let daemon = crate::lazy::Daemon {
        work: d.work.clone().unwrap_or(d.images.clone()),
        address: d
            .address
            .clone()
            .ok_or("lazy-pages needs --address (the source's)")?,
        port: d.port.ok_or("lazy-pages needs --port (the source's)")?,
        log: d.log(),
    };
    daemon.run(d.listen_fd, d.daemon, d.status_fd, d.pidfile.as_deref())
}

/// `criu pre-dump`: the tree runs on; its memory is saved and its writes tracked.
fn pre_dump(a: DumpArgs) -> Result<(), String> {
    let mut job = common_job(&a.common)?;
    if a.remote.lazy_pages {
        return Err(
            "pre-dump --lazy-pages: a pre-dump serves no pages (use dump --lazy-pages)".into(),
        );
    }
    (job.page_server, _) = a.remote.endpoints()?;
    job.pid = a.pid;
    job.parent_img = a.prev_images_dir.clone();
    job.track_mem = true;
    let mut log = job.open_log()?;
    crate::job::run_pre_dump(&job, &mut log)
}

fn dump(a: DumpArgs) -> Result<(), String> {
    let mut job = common_job(&a.common)?;
    (job.page_server, job.lazy) = a.remote.endpoints()?;
    let chained = a.leave_running || a.prev_images_dir.is_some() || a.track_mem;
    if job.lazy.is_some() && chained {
        return Err(
            "--lazy-pages cannot be combined with -R, --prev-images-dir or \
             --track-mem: its tree is killed once its pages are served"
                .into(),
        );
    }
    job.parent_img = a.prev_images_dir.clone();
    job.track_mem = a.track_mem;
    job.pid = a.pid;
    job.leave_running = a.leave_running;
    job.tcp_established = a.tcp_established;
    job.ext_unix_sk = a.ext_unix_sk;
    job.skip_in_flight = a.skip_in_flight;
    job.file_locks = a.file_locks;
    job.link_remap = a.link_remap;
    job.freeze_cgroup = a.freeze_cgroup;
    let mut log = job.open_log()?;
    run_dump(&job, &mut log, &mut NoHooks).map(drop)
}

fn restore(a: RestoreArgs) -> Result<(), String> {
    let inherit_fds = a.common.criu.inherit_fds()?;
    let mut job = common_job(&a.common)?;
    let link = match a.lazy_pages {
        true => Some(crate::lazy::connect(&job.work)?),
        false => None,
    };
    let link = link.map(|(link, source)| {
        job.lazy = Some(source);
        link
    });
    job.rst_sibling = a.sibling;
    job.root = a.root.as_deref().filter(|r| *r != "/").map(Into::into);
    job.skip_file_check = a.skip_file_check;
    job.inherit_fds = inherit_fds;
    let mut log = job.open_log()?;
    let restored = run_restore(&job, &mut log, &mut NoHooks)?;
    if let Some(path) = &a.pidfile {
        std::fs::write(path, format!("{}", restored.pid))
            .map_err(|e| format!("write pid file {}: {e}", path.display()))?;
    }
    if let Some(link) = link {
        crate::lazy::complete(link, &restored).inspect_err(|why| log.error(why))?;
    }
    match a.detached || a.sibling {
        true => Ok(()),
        false => wait(restored.pid),
    }
}

/// Waits for the restored root, as CRIU does without `-d`.
fn wait(pid: i32) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return Ok(()),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for pid {pid}: {e}")),
        }
    }
}
