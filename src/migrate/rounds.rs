//! `stasis migrate`: pre-copy rounds, then the final dump, all sent to `stasis receive`.
//!
//! Round 1 is a pre-dump of the whole memory (the tree runs on, its writes tracked);
//! each next round a pre-dump of what was written since, until the dirty set stops
//! shrinking, the estimated final round fits the downtime budget or the round limit is
//! reached. The final dump (frozen) sends what was written since the last round and the
//! rest of the image; the receiver restores the chain and answers. Only then is the source
//! killed: a receiver that fails (to store or to restore) fails the dump, which resumes
//! the tree. Each round's records stay in a local directory (`work`), which the next
//! round's incremental dump reads as its parent; pages are never written locally.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::client::{RemoteImage, Target};
use super::error::MigrateError;
use crate::dump::predump::{pre_dump, stop_tracking, PreDumpOptions};
use crate::dump::{dump_with, DumpOptions};
use crate::hooks::{Hooks, Point};
use crate::image::RemoteSink;

/// What `stasis migrate` was asked to do.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    pub pid: i32,
    pub target: Target,
    pub max_downtime: Duration,
    /// Pre-copy rounds at most (the final dump not counted); 0: stop-and-copy.
    pub max_rounds: u32,
    /// Local directory for each round's records (created; must not exist or be empty).
    pub work: PathBuf,
    pub timeout: Duration,
    pub tcp_established: bool,
    /// `--lazy`: post-copy (`postcopy.rs`) instead of the rounds.
    pub lazy: bool,
}

/// One round's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Round {
    /// "pre-dump" or "dump".
    pub kind: &'static str,
    pub pages: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// How long the tree was frozen in this round.
    pub frozen_ms: f64,
}

/// What a migration did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MigrateSummary {
    pub pid: i32,
    pub rounds: Vec<Round>,
    /// From the freeze of the final dump to the receiver's word that the tree runs
    /// (`--lazy`: to the target's word that its tree runs, before its memory is in).
    pub downtime_ms: f64,
    /// (pre-copy with `stasis receive` filling lazily) From the freeze to the receiver's
    /// word that all the restored tree's memory is in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_place_ms: Option<f64>,
    pub total_seconds: f64,
}

/// Migrates the tree rooted at `opts.pid` to the receiver at `opts.target`.
pub fn migrate(opts: &MigrateOptions) -> Result<MigrateSummary, MigrateError> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.work)
        .map_err(crate::image::ImageError::io("create directory", &opts.work))?;
    let mut summary = MigrateSummary {
        pid: opts.pid,
        ..Default::default()
    };
    let result = match opts.lazy {
        true => super::postcopy::migrate_lazily(opts, &mut summary),
        false => precopy(opts, &mut summary).and_then(|()| finish(opts, &mut summary)),
    };
    if result.is_err() {
        // The tree runs on (a failed dump resumes it): untracked, as before.
        let _ = stop_tracking(opts.pid);
    }
    result?;
    summary.total_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A round that leaves at least this share of the previous one's pages has stopped
/// shrinking the dirty set.
const SHRINK: f64 = 0.9;

/// Pre-copy rounds until one of the stopping rules holds: the dirty set stopped
/// shrinking, or the pages of the last round would be sent within the downtime budget at
/// the best rate seen (the final dump sends about what a round found written).
fn precopy(opts: &MigrateOptions, summary: &mut MigrateSummary) -> Result<(), MigrateError> {
    let mut rate: f64 = 1.0;
    for n in 1..=opts.max_rounds {
        let round = pre_round(opts, n)?;
        let shrinking = (summary.rounds.last()).map_or(true, |prev| {
            (round.pages as f64) < prev.pages as f64 * SHRINK
        });
        rate = rate.max(round.bytes as f64 / round.seconds.max(1e-6));
        let estimate = Duration::from_secs_f64(round.bytes as f64 / rate);
        summary.rounds.push(round);
        if n > 1 && (!shrinking || estimate <= opts.max_downtime) {
            break;
        }
    }
    Ok(())
}

fn round_dir(opts: &MigrateOptions, n: u32) -> PathBuf {
    opts.work.join(n.to_string())
}

fn parent(n: u32) -> Option<PathBuf> {
    (n > 1).then(|| Path::new("..").join((n - 1).to_string()))
}

fn pre_round(opts: &MigrateOptions, n: u32) -> Result<Round, MigrateError> {
    let started = Instant::now();
    let sink = RemoteImage::begin(&opts.target, &n.to_string(), false)?;
    let s = pre_dump(&PreDumpOptions {
        pid: opts.pid,
        dir: round_dir(opts, n),
        prev_images_dir: parent(n),
        timeout: opts.timeout,
        remote: Some(RemoteSink(sink.clone())),
    })?;
    Ok(Round {
        kind: "pre-dump",
        pages: s.pages_stored,
        bytes: sink.bytes_sent(),
        seconds: started.elapsed().as_secs_f64(),
        frozen_ms: s.frozen.as_secs_f64() * 1e3,
    })
}

/// Waits, once the final image is stored, for the receiver to restore it, and keeps
/// the moment of the freeze.
struct Handover {
    sink: std::sync::Arc<RemoteImage>,
    frozen_at: Option<Instant>,
    running_at: Option<Instant>,
    /// The receiver fills the memory after the tree runs: `FILLED` follows.
    filling: bool,
}

impl Hooks for Handover {
    fn at(&mut self, point: Point, _pid: i32) -> Result<(), String> {
        match point {
            Point::NetworkLock => self.frozen_at = Some(Instant::now()),
            Point::PostDump => {
                self.filling = (self.sink.wait_restored()).map_err(|e| crate::error_line(&e))?;
                self.running_at = Some(Instant::now());
            }
            _ => {}
        }
        Ok(())
    }
}

/// The final dump, incremental against the last round.
fn finish(opts: &MigrateOptions, summary: &mut MigrateSummary) -> Result<(), MigrateError> {
    let n = summary.rounds.len() as u32 + 1;
    let started = Instant::now();
    let name = if n == 1 { String::new() } else { n.to_string() };
    let sink = RemoteImage::begin(&opts.target, &name, true)?;
    let mut hand = Handover {
        sink: sink.clone(),
        frozen_at: None,
        running_at: None,
        filling: false,
    };
    let dopts = final_options(opts, n, RemoteSink(sink.clone()));
    // The tree is frozen from here until the receiver's tree runs: the downtime.
    let raised = crate::priority::raise();
    let s = dump_with(&dopts, &mut hand);
    drop(raised);
    let s = s?;
    if let (Some(f), Some(r)) = (hand.frozen_at, hand.running_at) {
        summary.downtime_ms = r.duration_since(f).as_secs_f64() * 1e3;
    }
    // The tree runs on the target (and is gone here): its memory is being filled there
    // from the received images. A failed fill killed it there (see docs/migration.md).
    if hand.filling {
        sink.wait_filled()?;
        let f = hand.frozen_at.unwrap_or(started);
        summary.memory_in_place_ms = Some(f.elapsed().as_secs_f64() * 1e3);
    }
    summary.rounds.push(Round {
        kind: "dump",
        pages: s.pages_stored,
        bytes: sink.bytes_sent(),
        seconds: started.elapsed().as_secs_f64(),
        frozen_ms: s.frozen.as_secs_f64() * 1e3,
    });
    Ok(())
}

/// The final dump's options (round `n`, sending to `sink`).
pub(super) fn final_options(opts: &MigrateOptions, n: u32, sink: RemoteSink) -> DumpOptions {
    DumpOptions {
        pid: opts.pid,
        dir: round_dir(opts, n),
        leave_running: false,
        shell_job: false,
        orphan_pts_master: false,
        lazy: None,
        ghost_limit: crate::dump::DEFAULT_GHOST_LIMIT,
        link_remap: false,
        file_locks: false,
        file_hash: false,
        tcp_established: opts.tcp_established,
        tcp_close: false,
        ext_unix_sk: false,
        skip_in_flight: false,
        network_lock: Default::default(),
        freeze_cgroup: None,
        timeout: opts.timeout,
        cgroups: Default::default(),
        mnt_externals: Default::default(),
        store: Default::default(),
        prev_images_dir: parent(n),
        track_mem: false,
        veth_externals: Vec::new(),
        net_external: None,
        remote: Some(sink),
    }
}
