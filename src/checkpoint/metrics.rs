//! The Prometheus text file of `stasis checkpoint --metrics-file` (the node exporter's
//! textfile collector reads it): the last checkpoint's figures as gauges, this run's
//! totals as counters, the store's size. Rewritten atomically after every checkpoint, so
//! a scrape never sees half a file.

use std::fmt::Write;
use std::path::Path;

use super::{write_atomic, CheckpointError, Meta, Store};

/// This run's totals and last checkpoint.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub taken: u64,
    pub failed: u64,
    pub bytes_written: u64,
    pub frozen_s: f64,
    pub last: Option<Meta>,
}

impl Counters {
    pub fn taken(&mut self, meta: &Meta) {
        self.taken += 1;
        self.bytes_written += meta.bytes_written;
        self.frozen_s += meta.frozen_s;
        self.last = Some(meta.clone());
    }

    pub fn failed(&mut self) {
        self.failed += 1;
    }
}

/// Writes the metrics of `counters` and `store` to `path`.
pub fn write(path: &Path, store: &Store, counters: &Counters) -> Result<(), CheckpointError> {
    let list = store.list()?;
    let stored: u64 = list.iter().map(|e| e.meta.bytes_written).sum();
    let text = render(counters, list.len(), stored);
    write_atomic(path, text.as_bytes())
}

/// The text exposition format: `# HELP`, `# TYPE`, then the sample, for each metric.
pub fn render(c: &Counters, checkpoints: usize, stored: u64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    if let Some(m) = &c.last {
        let last: [(&str, &str, f64); 9] = [
            (
                "timestamp_seconds",
                "Unix time the last checkpoint was committed.",
                m.time as f64,
            ),
            (
                "sequence",
                "Number of the last checkpoint in its store.",
                f64::from(m.seq),
            ),
            (
                "frozen_seconds",
                "How long the tree was frozen for the last checkpoint.",
                m.frozen_s,
            ),
            (
                "duration_seconds",
                "From the start of the last checkpoint to its commit.",
                m.duration_s,
            ),
            (
                "bytes_written",
                "Bytes the last checkpoint stored.",
                m.bytes_written as f64,
            ),
            (
                "plain_bytes",
                "Bytes of the last checkpoint before compression.",
                m.plain_bytes as f64,
            ),
            (
                "compression_ratio",
                "Plain bytes per stored byte of the last checkpoint.",
                m.ratio(),
            ),
            (
                "pages_stored",
                "Memory pages the last checkpoint stored.",
                m.pages_stored as f64,
            ),
            (
                "incremental",
                "1 if the last checkpoint stored only pages written since its parent.",
                f64::from(u8::from(m.parent.is_some())),
            ),
        ];
        for (name, help, value) in last {
            metric(
                &format!("stasis_checkpoint_last_{name}"),
                "gauge",
                help,
                value,
            );
        }
    }
    let totals: [(&str, &str, &str, f64); 6] = [
        (
            "stasis_checkpoints_total",
            "counter",
            "Checkpoints committed by this run.",
            c.taken as f64,
        ),
        (
            "stasis_checkpoint_failures_total",
            "counter",
            "Checkpoints that failed in this run (the tree ran on).",
            c.failed as f64,
        ),
        (
            "stasis_checkpoint_bytes_written_total",
            "counter",
            "Bytes stored by this run's checkpoints.",
            c.bytes_written as f64,
        ),
        (
            "stasis_checkpoint_frozen_seconds_total",
            "counter",
            "Time the tree was frozen by this run's checkpoints.",
            c.frozen_s,
        ),
        (
            "stasis_checkpoint_stored",
            "gauge",
            "Checkpoints in the store.",
            checkpoints as f64,
        ),
        (
            "stasis_checkpoint_store_bytes",
            "gauge",
            "Bytes of all checkpoints in the store.",
            stored as f64,
        ),
    ];
    for (name, kind, help, value) in totals {
        metric(name, kind, help, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_help_and_type() {
        let mut c = Counters::default();
        let meta = Meta {
            seq: 3,
            parent: Some(2),
            bytes_written: 100,
            plain_bytes: 400,
            frozen_s: 0.01,
            ..Meta::default()
        };
        c.taken(&meta);
        c.failed();
        let text = render(&c, 2, 300);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() % 3, 0);
        for group in lines.chunks(3) {
            let name = group[2].split(' ').next().unwrap_or_default();
            assert!(
                group[0].starts_with(&format!("# HELP {name} ")),
                "{group:?}"
            );
            assert!(
                group[1].starts_with(&format!("# TYPE {name} ")),
                "{group:?}"
            );
        }
        assert!(text.contains("\nstasis_checkpoint_last_compression_ratio 4\n"));
        assert!(text.contains("\nstasis_checkpoint_last_incremental 1\n"));
        assert!(text.contains("\nstasis_checkpoints_total 1\n"));
        assert!(text.contains("\nstasis_checkpoint_failures_total 1\n"));
    }
}
