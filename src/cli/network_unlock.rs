//! `stasis network-unlock`: list and lift the network locks dumps left behind.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::netlock;

#[derive(Args, Debug)]
pub struct NetworkUnlockArgs {
    /// Lift the locks the dump of this image directory left (its restore would lift them).
    #[arg(short = 'D', long = "images-dir", conflicts_with_all = ["all_stale", "list"])]
    pub dir: Option<PathBuf>,
    /// Lift every stasis lock, in every network namespace, whose process does not run:
    /// the locks of dumps never restored.
    #[arg(long = "all-stale", conflicts_with = "list")]
    pub all_stale: bool,
    /// Only list every stasis lock in every network namespace (mode, name, namespace,
    /// whether it is stale).
    #[arg(long)]
    pub list: bool,
}

pub fn run(args: NetworkUnlockArgs) -> i32 {
    if let Some(dir) = &args.dir {
        return match stasis::restore::unlock_image(dir) {
            Ok(pids) => {
                println!("lifted the network lock of {} process(es)", pids.len());
                EXIT_OK
            }
            Err(e) => {
                report(&e);
                EXIT_FAILED
            }
        };
    }
    if !args.all_stale && !args.list {
        eprintln!("stasis: network-unlock needs -D DIR, --all-stale or --list");
        return EXIT_USAGE;
    }
    let mut code = EXIT_OK;
    for lock in netlock::find_all() {
        let state = if lock.stale() { "stale" } else { "in use" };
        let line = format!(
            "{} {} ({}) in {}: pid {}, {state}",
            lock.found.mode.name(),
            lock.found.name,
            lock.found.tool,
            lock.ns_name,
            lock.pid
        );
        if args.list || !lock.stale() {
            println!("{line}");
            continue;
        }
        match lock.remove() {
            Ok(()) => println!("{line}: lifted"),
            Err(e) => {
                eprintln!("stasis: {line}: {e}");
                code = EXIT_FAILED;
            }
        }
    }
    code
}
