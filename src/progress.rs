//! Progress of the long phases (copying pages), told to whoever listens. The library opens
//! a [`Phase`] with the number of bytes it will move and advances it; the command line
//! installs a [`Listener`] that draws a bar on a terminal. This module owns only the
//! plumbing: no drawing, no terminal detection. Without a listener a phase costs an atomic
//! load per call.

use std::sync::OnceLock;

/// Receives the progress of one phase at a time.
pub trait Listener: Send + Sync {
    /// A phase named `what` starts and will move `total` bytes.
    fn begin(&self, what: &'static str, total: u64);
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The phase is over (finished or failed).
    fn end(&self);
}

static LISTENER: OnceLock<Box<dyn Listener>> = OnceLock::new();

/// Installs the process-wide listener; false if one was installed already.
pub fn set_listener(listener: Box<dyn Listener>) -> bool {
    LISTENER.set(listener).is_ok()
}

/// One phase in progress; ends when dropped.
pub struct Phase {
    listener: Option<&'static dyn Listener>,
}

impl Phase {
    /// Starts a phase of `total` bytes.
    pub fn begin(what: &'static str, total: u64) -> Phase {
        let listener = LISTENER.get().map(|l| &**l);
        if let Some(l) = listener {
            l.begin(what, total);
        }
        Phase { listener }
    }

    /// Reports `bytes` more done.
    pub fn advance(&self, bytes: u64) {
        if let Some(l) = self.listener {
            l.advance(bytes);
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(l) = self.listener {
            l.end();
        }
    }
}
