//! `stasis dump`.

use std::path::PathBuf;

use clap::Args;

use super::progress::{self, When};
use super::{report, stats, EXIT_FAILED, EXIT_OK};
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
    /// Do not print the summary line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Show a progress bar on a terminal.
    #[arg(long = "progress", value_enum, default_value_t)]
    pub progress: When,
    /// Write the dump figures (pages, bytes, MB/s, frozen and total time) as JSON here.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
}

pub fn run(args: DumpArgs) -> i32 {
    let opts = DumpOptions {
        pid: args.pid,
        dir: args.dir,
        leave_running: args.leave_running,
        shell_job: args.shell_job,
    };
    if !args.quiet {
        progress::install(args.progress);
    }
    let summary = match dump(&opts) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    if !args.quiet {
        eprintln!("{}", stats::dump_line(&summary));
    }
    if let Some(path) = &args.stats_json {
        if let Err(e) = stats::write_json(path, &stats::dump_json(&summary)) {
            eprintln!("stasis: warning: {e}");
        }
    }
    EXIT_OK
}
