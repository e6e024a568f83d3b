//! The one-line summaries `dump` and `restore` print on success, and the `--stats-json`
//! files. Both are built here from the library's figures, so the two always agree.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stasis::dump::DumpSummary;
use stasis::restore::Restored;

const PAGE: u64 = 4096;

/// `stasis: dumped pid 42: 262144 pages (1024.0 MiB) at 812 MB/s, 10 zero pages skipped,
/// frozen 1.327 s, total 1.335 s`
pub fn dump_line(s: &DumpSummary) -> String {
    let bytes = s.pages_stored * PAGE;
    format!(
        "stasis: dumped pid {}: {} pages ({:.1} MiB) at {:.0} MB/s, {} zero pages skipped, frozen {:.3} s, total {:.3} s",
        s.pid,
        s.pages_stored,
        mib(bytes),
        mb_per_s(bytes, s.memory),
        s.zero_pages_skipped,
        s.frozen.as_secs_f64(),
        s.total.as_secs_f64()
    )
}

/// The figures of a dump, durations in seconds.
pub fn dump_json(s: &DumpSummary) -> Value {
    let bytes = s.pages_stored * PAGE;
    json!({
        "pid": s.pid,
        "pages_stored": s.pages_stored,
        "bytes_stored": bytes,
        "zero_pages_skipped": s.zero_pages_skipped,
        "memory_s": s.memory.as_secs_f64(),
        "mb_per_s": mb_per_s(bytes, s.memory),
        "frozen_s": s.frozen.as_secs_f64(),
        "total_s": s.total.as_secs_f64(),
    })
}

/// `stasis: restored pid 42: 262144 pages (1024.0 MiB) at 905 MB/s, image verified in
/// 0.210 s, running after 1.402 s`
pub fn restore_line(r: &Restored) -> String {
    let bytes = r.pages * PAGE;
    format!(
        "stasis: restored pid {}: {} pages ({:.1} MiB) at {:.0} MB/s, image verified in {:.3} s, running after {:.3} s",
        r.pid,
        r.pages,
        mib(bytes),
        mb_per_s(bytes, r.memory),
        r.load.as_secs_f64(),
        r.total.as_secs_f64()
    )
}

/// The figures of a restore, durations in seconds.
pub fn restore_json(r: &Restored) -> Value {
    let bytes = r.pages * PAGE;
    json!({
        "pid": r.pid,
        "pages": r.pages,
        "bytes": bytes,
        "load_s": r.load.as_secs_f64(),
        "memory_s": r.memory.as_secs_f64(),
        "mb_per_s": mb_per_s(bytes, r.memory),
        "total_s": r.total.as_secs_f64(),
    })
}

/// Prints the summary `line` on stderr unless `quiet`, and writes `json` to `path` if
/// asked (a failure there is a warning: the operation itself succeeded).
pub fn report(quiet: bool, line: &str, path: Option<&Path>, json: impl FnOnce() -> Value) {
    if !quiet {
        eprintln!("{line}");
    }
    if let Some(path) = path {
        if let Err(e) = write_json(path, &json()) {
            eprintln!("stasis: warning: {e}");
        }
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Decimal megabytes per second; 0 when nothing took measurable time.
fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> DumpSummary {
        let mut s = DumpSummary::default();
        (s.pid, s.pages_stored, s.zero_pages_skipped) = (42, 262_144, 10);
        s.memory = Duration::from_millis(1000);
        s.frozen = Duration::from_millis(1327);
        s.total = Duration::from_millis(1335);
        s
    }

    #[test]
    fn dump_line_has_every_figure() {
        assert_eq!(
            dump_line(&summary()),
            "stasis: dumped pid 42: 262144 pages (1024.0 MiB) at 1074 MB/s, 10 zero pages skipped, frozen 1.327 s, total 1.335 s"
        );
    }

    #[test]
    fn dump_json_agrees_with_the_line() {
        let j = dump_json(&summary());
        assert_eq!(j["bytes_stored"], 1u64 << 30);
        assert_eq!(j["frozen_s"], 1.327);
        assert!((j["mb_per_s"].as_f64().unwrap_or(0.0) - 1073.741824).abs() < 1e-6);
    }

    #[test]
    fn rate_of_nothing_is_zero() {
        assert_eq!(mb_per_s(4096, Duration::ZERO), 0.0);
    }
}
