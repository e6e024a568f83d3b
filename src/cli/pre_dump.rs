//! `stasis pre-dump`.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::dump::predump::{pre_dump, stop_tracking, PreDumpOptions};

#[derive(Args, Debug)]
pub struct PreDumpArgs {
    /// Pid of the root of the tree.
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// Image directory (created; must not exist or be empty).
    #[arg(
        short = 'D',
        long = "images-dir",
        required_unless_present = "stop_tracking"
    )]
    pub dir: Option<PathBuf>,
    /// The previous pre-dump of the tree: only pages written since are stored. A relative
    /// path is relative to the images dir.
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    pub prev_images_dir: Option<PathBuf>,
    /// Disarm the tree's tracking of written pages instead (its tracker ends).
    #[arg(long = "stop-tracking")]
    pub stop_tracking: bool,
    /// Give up when a task takes longer than this many seconds to stop or answer.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    /// Do not print the summary line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub remote: super::migrate::PageServerArgs,
}

pub fn run(args: PreDumpArgs) -> i32 {
    if args.stop_tracking {
        return match stop_tracking(args.pid) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                report(&e);
                EXIT_FAILED
            }
        };
    }
    let Some(dir) = args.dir else {
        eprintln!("stasis: pre-dump needs --images-dir");
        return EXIT_USAGE;
    };
    let given = args.remote.address.is_some() || args.remote.port.is_some();
    if given && !args.remote.page_server {
        eprintln!("stasis: --address and --port go with --page-server");
        return EXIT_USAGE;
    }
    let remote = match args.remote.connect(&dir, true, false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = PreDumpOptions {
        remote,
        pid: args.pid,
        dir,
        prev_images_dir: args.prev_images_dir,
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
    };
    match pre_dump(&opts) {
        Ok(s) => {
            if !args.quiet {
                eprintln!(
                    "pre-dump of pid {}: {} pages stored, {} in the parent image, frozen {:.1} ms, total {:.1} ms, tracker pid {}{}",
                    args.pid,
                    s.pages_stored,
                    s.pages_in_parent,
                    s.frozen.as_secs_f64() * 1e3,
                    s.total.as_secs_f64() * 1e3,
                    s.tracker_pid,
                    s.gone_note()
                );
            }
            EXIT_OK
        }
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}
