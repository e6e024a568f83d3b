//! `stasis inspect`.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> i32 {
    match stasis::inspect::inspect(&args.dir, args.json, &mut std::io::stdout()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}
