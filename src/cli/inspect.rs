//! `stasis inspect`.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK};
use stasis::image::store::{self, SecretKey};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The key of an image dumped with --encrypt-key.
    #[arg(long = "decrypt-key", value_name = "FILE")]
    pub decrypt_key: Option<PathBuf>,
}

pub fn run(args: InspectArgs) -> i32 {
    // A compressed or encrypted image is verified and decoded into a temporary copy.
    let opts = args.decrypt_key.as_deref().map(SecretKey::read).transpose();
    let opened = opts.and_then(|decrypt| {
        let opts = store::OpenOptions {
            decrypt,
            require_signature: None,
        };
        store::open(&args.dir, &opts)
    });
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    match stasis::inspect::inspect(opened.dir(), args.json, &mut std::io::stdout()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}
