//! Where the time of one dump or restore goes: named spans (time and count, summed) and
//! counters (ptrace stops, injected syscalls, batches), printed on stderr at the end of
//! the command when `STASIS_PROFILE` is set in the environment. This module owns only the
//! bookkeeping; the library opens spans around its phases and counts its round trips.
//! Disabled, a span or a count costs one atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// 0 unknown, 1 off, 2 on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

struct Entry {
    name: &'static str,
    count: u64,
    time: Duration,
}

/// True when `STASIS_PROFILE` is set.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("STASIS_PROFILE").is_some();
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        s => s == 2,
    }
}

/// A timed span; its time is added to `name` when dropped.
pub struct Span {
    name: &'static str,
    start: Option<Instant>,
}

/// Opens a span named `name`.
pub fn span(name: &'static str) -> Span {
    Span {
        name,
        start: enabled().then(Instant::now),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            add(self.name, 1, start.elapsed());
        }
    }
}

/// Adds `n` to the counter `name`.
pub fn count(name: &'static str, n: u64) {
    if enabled() {
        add(name, n, Duration::ZERO);
    }
}

fn add(name: &'static str, n: u64, time: Duration) {
    let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    match table.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            e.count += n;
            e.time += time;
        }
        None => table.push(Entry {
            name,
            count: n,
            time,
        }),
    }
}

/// Prints every span and counter, in first-seen order, if profiling is on.
pub fn report() {
    if !enabled() {
        return;
    }
    let table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    for e in table.iter() {
        if e.time.is_zero() {
            eprintln!("profile: {:<28} {:>8}", e.name, e.count);
        } else {
            eprintln!(
                "profile: {:<28} {:>8} {:>10.3} ms",
                e.name,
                e.count,
                e.time.as_secs_f64() * 1e3
            );
        }
    }
}
