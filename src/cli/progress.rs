//! The progress bar of `dump` and `restore`: listens to the library's [`Phase`]s and draws
//! a bar on stderr when it is a terminal, by default only once a phase has run for
//! [`SHOW_AFTER`], so short runs print nothing but their summary line.
//!
//! [`Phase`]: stasis::progress::Phase

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use stasis::progress::{set_listener, Listener};

/// How long a phase runs before its bar appears (`--progress auto`).
const SHOW_AFTER: Duration = Duration::from_millis(300);

/// `--progress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum When {
    /// On a terminal, for phases that take a while.
    #[default]
    Auto,
    /// On a terminal, from the start of every phase.
    Always,
    /// Never.
    Never,
}

/// Installs the bar if `when` and stderr allow it.
pub fn install(when: When) {
    let after = match when {
        When::Never => return,
        When::Auto => SHOW_AFTER,
        When::Always => Duration::ZERO,
    };
    if std::io::stderr().is_terminal() {
        set_listener(Box::new(Bar {
            after,
            state: Mutex::new(None),
        }));
    }
}

struct Bar {
    after: Duration,
    state: Mutex<Option<State>>,
}

/// The phase under way; `bar` exists once the phase has run for `Bar::after`.
struct State {
    what: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Bar {
    fn with_state(&self, f: impl FnOnce(&mut Option<State>)) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }
}

impl Listener for Bar {
    fn begin(&self, what: &'static str, total: u64) {
        self.with_state(|s| {
            *s = Some(State {
                what,
                total,
                done: 0,
                started: Instant::now(),
                bar: None,
            })
        });
        self.advance(0);
    }

    fn advance(&self, bytes: u64) {
        self.with_state(|s| {
            let Some(s) = s else { return };
            s.done += bytes;
            if s.bar.is_none() && s.started.elapsed() >= self.after {
                s.bar = Some(new_bar(s));
            }
            if let Some(bar) = &s.bar {
                bar.set_position(s.done);
            }
        });
    }

    fn end(&self) {
        self.with_state(|s| {
            if let Some(bar) = s.take().and_then(|s| s.bar) {
                bar.finish_and_clear();
            }
        });
    }
}

/// A bar that starts where the phase already is, so its rate and eta hold from the start.
fn new_bar(s: &State) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "stasis: {msg} [{bar:30}] {bytes}/{total_bytes} {mean_rate} eta {mean_eta}",
    )
    .expect("a valid template")
    .with_key("mean_rate", mean_rate)
    .with_key("mean_eta", mean_eta)
    .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(s.total), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(s.what)
        .with_position(s.done)
        .with_elapsed(s.started.elapsed())
}

/// Bytes per second since the phase began (indicatif's own estimate follows the last few
/// steps, which are large and uneven here).
fn rate(state: &ProgressState) -> f64 {
    let secs = state.elapsed().as_secs_f64();
    if secs > 0.0 {
        state.pos() as f64 / secs
    } else {
        0.0
    }
}

fn mean_rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0} MB/s", rate(state) / 1e6);
}

fn mean_eta(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let left = state.len().unwrap_or(0).saturating_sub(state.pos()) as f64;
    let r = rate(state);
    let secs = if r > 0.0 { left / r } else { 0.0 };
    let _ = write!(w, "{secs:.0}s");
}
