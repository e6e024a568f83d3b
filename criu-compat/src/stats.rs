//! `stats-dump` and `stats-restore` in CRIU's format (podman `--print-stats` reads them):
//! CRIU's service-image magic, the stats magic, then one `stats_entry` record (u32 LE
//! length + protobuf). Times are microseconds.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use stasis::dump::DumpSummary;
use stasis::restore::Restored;

use crate::proto::{DumpStatsEntry, RestoreStatsEntry, StatsEntry};

/// CRIU's `IMG_SERVICE_MAGIC` and `STATS_MAGIC` (criu/include/magic.h).
const SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The dump figures as CRIU names them: freezing is what came before the tree was
/// frozen, memdump the page scan, read and write (stasis streams pages, so memwrite is
/// part of it and counted there).
pub fn dump_entry(s: &DumpSummary) -> StatsEntry {
    let dump = DumpStatsEntry {
        freezing_time: us(s.total.saturating_sub(s.frozen)),
        frozen_time: us(s.frozen),
        memdump_time: us(s.memory),
        memwrite_time: 0,
        pages_scanned: s.pages_stored + s.zero_pages_skipped,
        pages_skipped_parent: 0,
        pages_written: s.pages_stored,
        pages_lazy: 0,
        ..Default::default()
    };
    StatsEntry {
        dump: Some(dump),
        restore: None,
    }
}

/// The restore figures: forking is loading and verifying the image, restore the whole.
pub fn restore_entry(r: &Restored) -> StatsEntry {
    let restore = RestoreStatsEntry {
        pages_compared: 0,
        pages_skipped_cow: 0,
        forking_time: us(r.load),
        restore_time: us(r.total),
        pages_restored: Some(r.pages),
    };
    StatsEntry {
        dump: None,
        restore: Some(restore),
    }
}

/// The bytes of a stats file holding `entry`.
pub fn encode(entry: &StatsEntry) -> Vec<u8> {
    let body = entry.encode_to_vec();
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&SERVICE_MAGIC.to_le_bytes());
    out.extend_from_slice(&STATS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes `stats-<what>` into `dir`.
pub fn write(dir: &Path, what: &str, entry: &StatsEntry) -> Result<(), String> {
    let path = dir.join(format!("stats-{what}"));
    std::fs::write(&path, encode(entry)).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Decodes a stats file.
#[cfg(test)]
fn decode(bytes: &[u8]) -> Result<StatsEntry, String> {
    let head = bytes
        .get(..12)
        .ok_or("a stats file shorter than its header")?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != SERVICE_MAGIC || word(4) != STATS_MAGIC {
        return Err("not a CRIU stats file (bad magic)".into());
    }
    let len = word(8) as usize;
    let body = bytes.get(12..12 + len).ok_or("a truncated stats file")?;
    StatsEntry::decode(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_stats_round_trip() {
        let s = DumpSummary {
            pid: 7,
            pages_stored: 10,
            zero_pages_skipped: 2,
            memory: Duration::from_micros(30),
            frozen: Duration::from_micros(50),
            total: Duration::from_micros(80),
            lazy_bytes: 0,
            lazy_started: None,
        };
        let back = decode(&encode(&dump_entry(&s))).unwrap().dump.unwrap();
        assert_eq!((back.pages_written, back.pages_scanned), (10, 12));
        assert_eq!(
            (back.freezing_time, back.frozen_time, back.memdump_time),
            (30, 50, 30)
        );
    }

    #[test]
    fn bad_magic_and_truncation_are_refused() {
        let mut bytes = encode(&StatsEntry::default());
        bytes[0] ^= 1;
        assert!(decode(&bytes).is_err());
        assert!(decode(&[0; 4]).is_err());
    }
}
