//! `stasis inspect`.

use std::path::PathBuf;

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK};
use stasis::checkpoint::{seq_name, view, CheckpointError, Entry, Store};
use stasis::image::store::{self, SecretKey};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image directory, or a checkpoint store (then every checkpoint is listed and
    /// verified).
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The key of an image dumped with --encrypt-key.
    #[arg(long = "decrypt-key", value_name = "FILE")]
    pub decrypt_key: Option<PathBuf>,
}

pub fn run(args: InspectArgs) -> i32 {
    if stasis::checkpoint::is_store(&args.dir) {
        return store_list(&args);
    }
    // A compressed or encrypted image is verified and decoded into a temporary copy.
    let mut opts = store::OpenOptions::default();
    let read = match args.decrypt_key.as_deref() {
        Some(path) => opts.read_decrypt_key(path),
        None => Ok(()),
    };
    let opened = read.and_then(|()| store::open(&args.dir, &opts));
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

/// `stasis inspect STORE`: every checkpoint with its time, size, parent and whether it
/// (with its chain) passes verification.
fn store_list(args: &InspectArgs) -> i32 {
    let listed = args
        .decrypt_key
        .as_deref()
        .map(SecretKey::read)
        .transpose()
        .map_err(CheckpointError::from)
        .and_then(|decrypt| {
            let store = Store::open_reader(&args.dir)?;
            let opts = store::OpenOptions {
                decrypt,
                ..store::OpenOptions::default()
            };
            let rows: Vec<(Entry, Result<(), String>)> = (store.list()?.into_iter())
                .map(|e| {
                    let state = view::verified(&store, e.seq, &opts)
                        .map(drop)
                        .map_err(|err| stasis::error_line(&err));
                    (e, state)
                })
                .collect();
            Ok(rows)
        });
    let rows = match listed {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    if args.json {
        let all: Vec<serde_json::Value> = (rows.iter())
            .map(|(e, state)| {
                let mut v = super::checkpoint::meta_json(&e.meta);
                v["verified"] = serde_json::json!(state.is_ok());
                if let Err(why) = state {
                    v["verification_error"] = serde_json::json!(why);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return EXIT_OK;
    }
    println!(
        "{:<8} {:<23} {:>7} {:<8} {:>10} {:>10} {:>6} {:>8}  STATE",
        "SEQ", "TIME", "PID", "PARENT", "STORED", "PLAIN", "RATIO", "FROZEN"
    );
    for (e, state) in &rows {
        let m = &e.meta;
        let parent = m.parent.map_or_else(|| "-".into(), seq_name);
        let state = match state {
            Ok(()) => "verified".to_string(),
            Err(why) => format!("FAILS: {why}"),
        };
        println!(
            "{:<8} {:<23} {:>7} {:<8} {:>10} {:>10} {:>6.2} {:>7.3}s  {state}",
            seq_name(m.seq),
            stasis::checkpoint::utc(m.time),
            m.pid,
            parent,
            human(m.bytes_written),
            human(m.plain_bytes),
            m.ratio(),
            m.frozen_s
        );
    }
    EXIT_OK
}

/// `12.3 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut u) = (bytes as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}
