//! `stasis migrate --lazy`: post-copy over the migration's connection and a link of its
//! own. The source freezes the tree and sends the image without its private anonymous
//! memory (`dump --lazy-pages`'s image) to `stasis receive`, with the port it serves
//! that memory on (`tag::LAZY`, on the address the connection left from); the receiver
//! stores it and runs `stasis restore --lazy-pages` against that port: the tree starts
//! at once, its memory filled on fault and in the background (`crate::lazy`). The source
//! kills its tree once the target holds every page, then waits for the receiver's word
//! that the restore ended well.
//!
//! Failures (docs/migration.md "Post-copy"): before the target's tree runs, the source
//! resumes its own (the dump fails); after, the target kills its copy (it never runs
//! with a missing page) and the source keeps its tree frozen, serving the same image to
//! a new `restore --lazy-pages`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::client::RemoteImage;
use super::error::MigrateError;
use super::rounds::{final_options, MigrateOptions, MigrateSummary, Round};
use crate::dump::{dump_with, LazyServe};
use crate::hooks::{Hooks, Point};
use crate::image::RemoteSink;
use crate::lazy::source::GiveUp;

/// Watches the migration's connection once the image is stored: the receiver answers
/// when its restore ended; a failure before the target ran the tree ends the source's
/// wait for it (`GiveUp`).
struct Watch {
    sink: Arc<RemoteImage>,
    give_up: GiveUp,
    frozen_at: Option<Instant>,
    sent: u64,
    answer: Option<JoinHandle<Result<(), MigrateError>>>,
}

impl Hooks for Watch {
    fn at(&mut self, point: Point, _pid: i32) -> Result<(), String> {
        match point {
            Point::NetworkLock => self.frozen_at = Some(Instant::now()),
            Point::PostDump => {
                self.sent = self.sink.bytes_sent();
                let (sink, give_up) = (self.sink.clone(), self.give_up.clone());
                let answer = std::thread::Builder::new()
                    .name("migrate-answer".into())
                    .spawn(move || {
                        let r = sink.wait_restored_unbounded();
                        if let Err(e) = &r {
                            give_up.set(crate::error_line(e));
                        }
                        r
                    })
                    .map_err(|e| format!("start the thread waiting for the receiver: {e}"))?;
                self.answer = Some(answer);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The post-copy migration: one frozen dump without the served memory, then the
/// serving until the target holds every page.
pub fn migrate_lazily(
    opts: &MigrateOptions,
    summary: &mut MigrateSummary,
) -> Result<(), MigrateError> {
    let started = Instant::now();
    let sink = RemoteImage::begin(&opts.target, "", true)?;
    let ip = sink.local_ip()?;
    let listener = std::net::TcpListener::bind((ip, 0)).map_err(|source| MigrateError::Listen {
        addr: format!("{ip} (a port for the post-copy pages)"),
        source,
    })?;
    let port = listener.local_addr().map_or(0, |a| a.port());
    sink.serve_lazily(port)?;
    let give_up = GiveUp::default();
    let mut watch = Watch {
        sink: sink.clone(),
        give_up: give_up.clone(),
        frozen_at: None,
        sent: 0,
        answer: None,
    };
    let mut dopts = final_options(opts, 1, RemoteSink(sink.clone()));
    dopts.lazy = Some(LazyServe {
        address: ip.to_string(),
        port,
        listener: Some(Arc::new(listener)),
        give_up,
    });
    let dumped = dump_with(&dopts, &mut watch);
    let done = Instant::now();
    let answer = watch.answer.take();
    let s = match dumped {
        Ok(s) => s,
        Err(e) => {
            // The tree resumed here; the receiver's answer is not awaited.
            sink.shutdown();
            return Err(e.into());
        }
    };
    if let Some(answer) = answer {
        answer.join().map_err(|_| MigrateError::Refused {
            peer: opts.target.peer.clone(),
            what: "the thread waiting for the receiver panicked".into(),
        })??;
    }
    let running = s.lazy_started.unwrap_or(done);
    if let Some(f) = watch.frozen_at {
        summary.downtime_ms = running.saturating_duration_since(f).as_secs_f64() * 1e3;
    }
    summary.rounds.push(Round {
        kind: "dump",
        pages: s.pages_stored,
        bytes: watch.sent,
        seconds: running.duration_since(started).as_secs_f64(),
        frozen_ms: s.frozen.as_secs_f64() * 1e3,
    });
    summary.rounds.push(Round {
        kind: "post-copy",
        pages: s.lazy_bytes / crate::abi::PAGE_SIZE,
        bytes: s.lazy_bytes,
        seconds: done.saturating_duration_since(running).as_secs_f64(),
        frozen_ms: 0.0,
    });
    Ok(())
}
