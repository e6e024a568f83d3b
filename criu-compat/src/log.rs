//! A CRIU-style log (`dump.log`, `restore.log` in the work directory): one line per event,
//! `(SS.uuuuuu) text`, seconds since the start; errors are written as
//! `Error (stasis): reason`, and a failed run ends with its reason, which runtimes print.
//! Levels as CRIU's `-v`: 0 none but failures, 1 errors, 2 warnings, 3 info, 4 debug.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

/// A handle on the log; clones write to the same file (the notifier logs each exchange).
#[derive(Clone)]
pub struct Log {
    out: Option<Rc<RefCell<Box<dyn Write>>>>,
    level: i32,
    started: Instant,
}

impl Log {
    /// A log into `path` (created or truncated), or to stderr if `path` is `-`.
    pub fn open(path: Option<&Path>, level: i32) -> Result<Log, String> {
        let out: Option<Box<dyn Write>> = match path {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(std::io::stderr())),
            Some(p) => {
                Some(Box::new(File::create(p).map_err(|e| {
                    format!("create log file {}: {e}", p.display())
                })?))
            }
        };
        Ok(Log {
            out: out.map(|o| Rc::new(RefCell::new(o))),
            level,
            started: Instant::now(),
        })
    }

    /// No log at all.
    pub fn none() -> Log {
        Log {
            out: None,
            level: 0,
            started: Instant::now(),
        }
    }

    /// An info line (level 3 and up).
    pub fn info(&mut self, text: &str) {
        if self.level >= 3 {
            self.line(text);
        }
    }

    /// An error line, written at every level: the reason of a failure.
    pub fn error(&mut self, text: &str) {
        self.line(&format!("Error (stasis): {text}"));
    }

    fn line(&mut self, text: &str) {
        let t = self.started.elapsed();
        if let Some(out) = &self.out {
            let mut out = out.borrow_mut();
            let _ = writeln!(out, "({:02}.{:06}) {text}", t.as_secs(), t.subsec_micros());
            let _ = out.flush();
        }
    }
}
