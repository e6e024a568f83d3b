//! `stasis restore`.

use std::path::PathBuf;

use clap::Args;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::compat::{CriuFlags, RestoreNoops};
use super::progress::{self, When};
use super::{report, stats, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::restore::{restore, RestoreOptions};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Image directory written by `stasis dump`.
    #[arg(short = 'D', long = "images-dir")]
    pub dir: PathBuf,
    /// Return once the process runs instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached")]
    pub detached: bool,
    /// Write the restored pid here.
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Re-attach terminal fds to the current terminal.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Restore established TCP connections closed (the task sees them aborted).
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// Restore open files even if they changed (size, mtime or inode) since the dump.
    #[arg(long = "skip-file-check")]
    pub skip_file_check: bool,
    /// The directory that becomes the root of a tree that had its own root (`pivot_root`).
    #[arg(long = "root", value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Do not print the summary line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Show a progress bar on a terminal.
    #[arg(long = "progress", value_enum, default_value_t)]
    pub progress: When,
    /// Write the restore figures (pages, bytes, MB/s, times) as JSON here.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
    #[command(flatten)]
    pub criu: CriuFlags,
    #[command(flatten)]
    pub dump_side: RestoreNoops,
}

pub fn run(args: RestoreArgs) -> i32 {
    if let Err(why) = args.criu.check() {
        eprintln!("stasis: {why}");
        return EXIT_USAGE;
    }
    let opts = RestoreOptions {
        dir: args.dir,
        shell_job: args.shell_job,
        tcp_close: args.tcp_close,
        skip_file_check: args.skip_file_check,
        cgroups: args.criu.cgroup_restore(),
        root: args.root,
        mnt_externals: args.criu.mnt_externals(),
        inherit_fds: args.criu.inherit_fds().unwrap_or_default(),
    };
    if !args.quiet {
        progress::install(args.progress);
    }
    let restored = match restore(&opts) {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    stats::report(
        args.quiet,
        &stats::restore_line(&restored),
        args.stats_json.as_deref(),
        || stats::restore_json(&restored),
    );
    if let Some(path) = &args.pidfile {
        if let Err(e) = std::fs::write(path, format!("{}\n", restored.pid)) {
            eprintln!("stasis: write pid file {}: {e}", path.display());
            return EXIT_FAILED;
        }
    }
    if args.detached {
        EXIT_OK
    } else {
        wait_for(restored.pid)
    }
}

/// Waits for the restored task and turns its end into our exit code (128+signal if killed).
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("stasis: wait for pid {pid}: {e}");
                return EXIT_FAILED;
            }
        }
    }
}
