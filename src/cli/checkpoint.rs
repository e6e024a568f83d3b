//! `stasis checkpoint` (one checkpoint, or a schedule of them, into a checkpoint store)
//! and `stasis gc` (retention). The store itself is `stasis::checkpoint`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::compat::CriuFlags;
use super::store::SealArgs;
use super::{report, stats, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::checkpoint::schedule::{self, Ended, Event, Plan};
use stasis::checkpoint::{seq_name, take::Taken, Meta, Store};
use stasis::dump::DumpOptions;
use stasis::image::store::StoreOptions;

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Pid of the root of the tree to checkpoint (it runs on).
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// The checkpoint store (created if missing; must then be empty).
    #[arg(short = 'D', long = "store", visible_alias = "images-dir")]
    pub store: PathBuf,
    /// Take a checkpoint this often (`90`, `30s`, `5m`, `2h`) until the tree exits or
    /// SIGINT/SIGTERM/SIGHUP (SIGUSR1: one now); without it, one checkpoint.
    #[arg(long = "every", value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// After each checkpoint, keep only the newest N (`stasis gc --keep N`).
    #[arg(long = "keep", value_name = "N")]
    pub keep: Option<usize>,
    /// Kill the tree once the checkpoint is committed (not with --every).
    #[arg(long = "kill", conflicts_with = "every")]
    pub kill: bool,
    #[command(flatten)]
    pub seal: SealArgs,
    /// Write each checkpoint's figures (frozen time, bytes, compression ratio,
    /// duration) as JSON here, rewritten after every checkpoint.
    #[arg(long = "stats-json", value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Write Prometheus metrics (text format) here after every checkpoint, atomically.
    #[arg(long = "metrics-file", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// The tree is attached to the invoking terminal.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Save established TCP connections.
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow unix sockets connected outside the tree.
    #[arg(short = 'x', long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Save file locks held by the tree.
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Give up on a task that takes longer than this many seconds to stop.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    /// Do not print a line per checkpoint.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub criu: CriuFlags,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// The checkpoint store.
    #[arg(short = 'D', long = "store", visible_alias = "images-dir")]
    pub store: PathBuf,
    /// How many of the newest checkpoints to keep (at least 1).
    #[arg(long = "keep", value_name = "N")]
    pub keep: usize,
    /// The key of an encrypted store (needed when a kept checkpoint must be merged).
    #[arg(
        long = "encrypt-key",
        visible_alias = "decrypt-key",
        value_name = "FILE"
    )]
    pub encrypt_key: Option<PathBuf>,
    /// The signing key of a signed store (needed when a kept checkpoint must be merged).
    #[arg(long = "sign", value_name = "FILE")]
    pub sign: Option<PathBuf>,
}

fn dump_options(a: &CheckpointArgs, store: StoreOptions) -> DumpOptions {
    DumpOptions {
        pid: a.pid,
        dir: PathBuf::new(),
        leave_running: true,
        shell_job: a.shell_job,
        orphan_pts_master: false,
        lazy: None,
        remote: None,
        tcp_established: a.tcp_established,
        tcp_close: false,
        ext_unix_sk: a.ext_unix_sk,
        skip_in_flight: false,
        network_lock: a.criu.lock_mode().unwrap_or_default(),
        ghost_limit: stasis::dump::DEFAULT_GHOST_LIMIT,
        link_remap: false,
        file_locks: a.file_locks,
        file_hash: false,
        freeze_cgroup: None,
        timeout: Duration::from_secs(a.timeout.max(1)),
        cgroups: a.criu.cgroup_dump(),
        mnt_externals: a.criu.mount_externals(),
        store,
        prev_images_dir: None,
        track_mem: true,
        veth_externals: a.criu.veth_externals(),
        net_external: a.criu.net_external(),
    }
}

/// `stasis checkpoint`.
pub fn run(args: CheckpointArgs) -> i32 {
    if let Err(why) = args.criu.check() {
        eprintln!("stasis: {why}");
        return EXIT_USAGE;
    }
    if !args.seal.encrypt_to.is_empty() {
        eprintln!(
            "stasis: checkpoint: --encrypt-to is for dump only (a store's checkpoints share \
             one key for their chain and gc): use --encrypt-key FILE"
        );
        return EXIT_USAGE;
    }
    if args.keep == Some(0) {
        eprintln!("stasis: --keep 0 would remove every checkpoint: keep at least 1");
        return EXIT_USAGE;
    }
    let store = match args.seal.options() {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_USAGE;
        }
    };
    let base = dump_options(&args, store);
    let plan = Plan {
        store: args.store.clone(),
        every: args.every,
        keep: args.keep,
        kill: args.kill,
        metrics: args.metrics_file.clone(),
    };
    let mut taken: Vec<Value> = Vec::new();
    let mut failed = false;
    let mut on_event = |event: Event| match event {
        Event::Taken(t) => {
            if !args.quiet {
                eprintln!("{}", line(t));
            }
            taken.push(meta_json(&t.meta));
            if let Some(path) = &args.stats_json {
                let doc = json!({ "store": args.store, "checkpoints": taken });
                if let Err(e) = stats::write_json(path, &doc) {
                    eprintln!("stasis: warning: {e}");
                }
            }
        }
        Event::Failed(e) => {
            failed = true;
            report(e);
        }
        Event::Collected(r) => {
            if !args.quiet {
                print_merges(r);
            }
            if !args.quiet && !r.removed.is_empty() {
                let names: Vec<String> = r.removed.iter().map(|s| seq_name(*s)).collect();
                eprintln!("stasis: gc removed checkpoint(s) {}", names.join(", "));
            }
        }
    };
    match schedule::run(&base, &plan, &mut on_event) {
        Ok(ended) => {
            if !args.quiet && ended != Ended::Once {
                eprintln!("stasis: checkpoint schedule ended: {}", ended_text(ended));
            }
            EXIT_OK
        }
        Err(e) => {
            report(&e);
            let _ = failed;
            EXIT_FAILED
        }
    }
}

fn ended_text(e: Ended) -> String {
    match e {
        Ended::Once => "one checkpoint".into(),
        Ended::TreeExited => "the tree exited".into(),
        Ended::Signal(s) => format!("{s} received"),
    }
}

/// `stasis: checkpoint 000003 of pid 42 (incremental on 000002): 12 pages, 0.1 MiB
/// stored (ratio 3.10), frozen 0.012 s, total 0.040 s`
fn line(t: &Taken) -> String {
    let m = &t.meta;
    let kind = match m.parent {
        Some(p) => format!("incremental on {}", seq_name(p)),
        None => "full".into(),
    };
    format!(
        "stasis: checkpoint {} of pid {} ({kind}): {} pages, {:.1} MiB stored (ratio {:.2}), frozen {:.3} s, total {:.3} s",
        seq_name(m.seq),
        m.pid,
        m.pages_stored,
        m.bytes_written as f64 / f64::from(1 << 20),
        m.ratio(),
        m.frozen_s,
        m.duration_s
    )
}

/// A checkpoint's figures for --stats-json.
pub fn meta_json(m: &Meta) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    v["compression_ratio"] = json!(m.ratio());
    v["incremental"] = json!(m.parent.is_some());
    v
}

/// `stasis gc`.
pub fn gc(args: GcArgs) -> i32 {
    let keys = SealArgs {
        compress: None,
        encrypt_key: args.encrypt_key.clone(),
        encrypt_to: Vec::new(),
        sign: args.sign.clone(),
    };
    let keys = match keys.options() {
        Ok(k) => k,
        Err(e) => {
            report(&e);
            return EXIT_USAGE;
        }
    };
    if !stasis::checkpoint::is_store(&args.store) {
        let e = stasis::checkpoint::CheckpointError::NotAStore { path: args.store };
        report(&e);
        return EXIT_FAILED;
    }
    let done = Store::open_writer(&args.store)
        .and_then(|s| stasis::checkpoint::gc::gc(&s, args.keep, &keys));
    match done {
        Ok(r) => {
            print_merges(&r);
            let names: Vec<String> = r.removed.iter().map(|s| seq_name(*s)).collect();
            eprintln!(
                "stasis: removed {} checkpoint(s) {}",
                names.len(),
                names.join(", ")
            );
            EXIT_OK
        }
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}

fn print_merges(r: &stasis::checkpoint::gc::Report) {
    for (seq, gone) in &r.merged {
        let names: Vec<String> = gone.iter().map(|s| seq_name(*s)).collect();
        eprintln!(
            "stasis: gc merged the pages of {} into checkpoint {}",
            names.join(", "),
            seq_name(*seq)
        );
    }
}

/// `90` (seconds), `500ms`, `30s`, `5m`, `2h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (90, 500ms, 30s, 5m, 2h)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?}: the units are ms, s, m and h")),
    };
    if d.is_zero() {
        return Err("the interval must be above zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
