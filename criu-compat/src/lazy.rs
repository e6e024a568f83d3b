//! CRIU's lazy restore, three processes, on stasis's post-copy (`stasis::lazy`), which
//! needs two: CRIU's `dump --lazy-pages` on the source is stasis's (the tree stays
//! frozen, its pages served on `--address`/`--port` until the target has them all); on
//! the target, CRIU's `lazy-pages --page-server` daemon fetches the pages and its
//! `restore --lazy-pages` rebuilds the tree and hands the daemon its userfaultfds.
//! stasis's restore fetches the pages itself, so here the daemon only tells the restore
//! where the source is, through `lazy-pages.socket` in the work directory (CRIU's
//! socket, same name and place), and waits for the post-copy's outcome: it exits 0 once
//! every page is in, as CRIU's daemon does, or 1 with the reason.
//!
//! What differs, said where it applies: the daemon needs `--page-server` (stasis has no
//! lazy restore from local images); `restore --lazy-pages -d` returns once every page is
//! in, not at once (the restoring process holds the userfaultfds: it must outlive the
//! copy); the daemon's `lazy-pages.socket` speaks stasis's own lines, not CRIU's.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use stasis::restore::Restored;

use crate::page_server::{inherited, ready, respawn, status_file, write_pidfile};

/// CRIU's name for the socket between the lazy-pages daemon and the restore.
pub const SOCKET: &str = "lazy-pages.socket";

/// `criu lazy-pages --page-server --address A --port P`.
#[derive(Clone, Debug)]
pub struct Daemon {
    pub work: PathBuf,
    pub address: String,
    pub port: u16,
    /// Where the daemon's stderr goes (its failure): the log file, else nowhere.
    pub log: Option<PathBuf>,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.work.join(SOCKET)
    }

    /// Listens on `lazy-pages.socket`, reports ready, and serves one restore (in a child
    /// when `daemon`): exits once its post-copy ended.
    pub fn run(
        &self,
        listen_fd: Option<i32>,
        daemon: bool,
        status_fd: Option<i32>,
        pidfile: Option<&Path>,
    ) -> Result<(), String> {
        let status = status_file(status_fd)?;
        let listener = match listen_fd {
            Some(fd) => UnixListener::from(inherited(fd)?),
            None => self.bind()?,
        };
        if daemon {
            let pid = respawn(self.args(), listener.into(), self.log.as_deref())?;
            write_pidfile(pidfile, pid)?;
            return ready(status);
        }
        ready(status)?;
        let served = self.serve(&listener);
        let _ = std::fs::remove_file(self.socket());
        served
    }

    fn bind(&self) -> Result<UnixListener, String> {
        let path = self.socket();
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| format!("lazy-pages: remove the old {}: {e}", path.display()))?;
        }
        UnixListener::bind(&path)
            .map_err(|e| format!("lazy-pages: listen on {}: {e}", path.display()))
    }

    /// This command again, for the daemon's child.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["lazy-pages".into(), "--page-server".into()];
        for a in ["--address", &self.address, "--port", &self.port.to_string()] {
            args.push(a.into());
        }
        args.extend(["-D".into(), self.work.clone().into()]);
        args
    }

    /// One restore: tells it the source, then waits for its word on the post-copy.
    fn serve(&self, listener: &UnixListener) -> Result<(), String> {
        let (mut stream, _) = listener.accept().map_err(|e| {
            format!(
                "lazy-pages: accept the restore on {}: {e}",
                self.socket().display()
            )
        })?;
        writeln!(stream, "{} {}", self.address, self.port)
            .map_err(|e| format!("lazy-pages: tell the restore the source: {e}"))?;
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        match line.trim_end() {
            "ok" => Ok(()),
            "" => Err("lazy-pages: the restore ended before its post-copy completed".into()),
            why => Err(format!(
                "lazy-pages: {}",
                why.trim_start_matches("failed: ")
            )),
        }
    }
}

/// The restore's end of the daemon's socket.
pub struct Link(UnixStream);

/// `restore --lazy-pages`: asks the lazy-pages daemon of `work` where the source is.
pub fn connect(work: &Path) -> Result<(Link, (String, u16)), String> {
    let path = work.join(SOCKET);
    let stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "--lazy-pages: no lazy-pages daemon at {} ({e}): start `criu lazy-pages \
             --page-server --address SOURCE --port PORT` with this work directory first",
            path.display()
        )
    })?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("--lazy-pages: read the source from {}: {e}", path.display()))?;
    let source = line
        .trim_end()
        .rsplit_once(' ')
        .and_then(|(a, p)| Some((a.to_string(), p.parse().ok()?)))
        .ok_or_else(|| {
            format!(
                "--lazy-pages: {} sent {line:?}, not ADDRESS PORT",
                path.display()
            )
        })?;
    Ok((Link(stream), source))
}

/// Waits for the post-copy of `restored` and tells the daemon how it ended; a failed
/// one killed the restored tree, which the error says.
pub fn complete(mut link: Link, restored: &Restored) -> Result<(), String> {
    let done = match restored.post_copy.as_deref().map(|p| p.wait()) {
        Some(Err(e)) => Err(format!(
            "post-copy failed, the restored tree (pid {}) was killed: it cannot run \
             without the pages it never received: {}",
            restored.pid,
            stasis::error_line(&e)
        )),
        _ => Ok(()),
    };
    let word = match &done {
        Ok(()) => "ok".to_string(),
        Err(why) => format!("failed: {why}"),
    };
    let _ = writeln!(link.0, "{word}");
    done
}
