//! `stasis dump`.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK};
use stasis::dump::{dump, DumpOptions};

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Pid of the process to dump.
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// Image directory (created; must not exist or be empty).
    #[arg(short = 'D', long = "images-dir")]
    pub dir: PathBuf,
    /// Let the process run on after the dump instead of killing it.
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    /// The process is attached to the invoking terminal: save terminal fds as such.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Freeze this cgroup (v1 freezer or v2) before seizing the tree: for trees that fork
    /// faster than they can be frozen one by one.
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    pub freeze_cgroup: Option<std::path::PathBuf>,
    /// Print a summary line.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Write the dump figures as JSON to this file.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
}

pub fn run(args: DumpArgs) -> i32 {
    let opts = DumpOptions {
        pid: args.pid,
        dir: args.dir,
        leave_running: args.leave_running,
        shell_job: args.shell_job,
        freeze_cgroup: args.freeze_cgroup,
    };
    match dump(&opts) {
        Ok(s) => {
            if args.verbose {
                eprintln!(
                    "stasis: dumped pid {}: {} pages stored ({} MiB), {} zero pages skipped, frozen {:.1} ms, total {:.1} ms",
                    s.pid,
                    s.pages_stored,
                    (s.pages_stored * 4096) >> 20,
                    s.zero_pages_skipped,
                    s.frozen.as_secs_f64() * 1e3,
                    s.total.as_secs_f64() * 1e3
                );
            }
            if let Some(path) = args.stats_json {
                let _ = std::fs::write(path, serde_json::to_vec_pretty(&s).unwrap_or_default());
            }
            EXIT_OK
        }
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}
