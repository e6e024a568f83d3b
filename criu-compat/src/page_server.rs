//! The receiving side of `--page-server`: `criu page-server` and the `PAGE_SERVER` /
//! `PAGE_SERVER_CHLD` requests run stasis's own page server (`stasis::migrate::server`)
//! on CRIU's images directory. Its protocol is stasis's: it receives from `stasis-criu
//! dump|pre-dump --page-server` (or `stasis dump --page-server`), never from CRIU, and
//! CRIU's dump cannot send to it. Where the images land is [`crate::job::Job::remote_name`]'s.
//!
//! The socket is bound before anything is reported ready (`--status-fd`, the RPC's
//! answer with the port, a daemon's parent exiting), so a sender started then connects.
//! A daemon (`-d`, the RPC requests) is this binary again, given the bound socket as
//! `--listen-fd N`.

use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stasis::migrate::server::{serve_on, ServerOptions};

/// One page server: where the images go and where it listens.
#[derive(Clone, Debug)]
pub struct PageServer {
    pub dir: PathBuf,
    pub address: String,
    /// 0: a port the kernel picks (the RPC's answer says which).
    pub port: u16,
    /// Where a daemon's stderr goes (its failure): the log file, else nowhere.
    pub log: Option<PathBuf>,
}

impl PageServer {
    /// `ADDR:PORT`, bracketing an IPv6 address.
    pub fn endpoint(&self) -> String {
        join(&self.address, self.port)
    }

    /// Binds and listens; the port actually bound is returned with the socket.
    pub fn bind(&self) -> Result<(TcpListener, u16), String> {
        let listener = TcpListener::bind(self.endpoint())
            .map_err(|e| format!("page server: listen on {}: {e}", self.endpoint()))?;
        let port = (listener.local_addr())
            .map_err(|e| format!("page server: the address of its socket: {e}"))?
            .port();
        Ok((listener, port))
    }

    /// Serves on `listener` until the last image of a chain (a dump's) is stored.
    pub fn serve(&self, listener: TcpListener) -> Result<(), String> {
        let opts = ServerOptions {
            listen: self.endpoint(),
            dir: self.dir.clone(),
            security: Default::default(),
            restore: None,
        };
        serve_on(listener, &opts, &mut |_| {}).map_err(|e| stasis::error_line(&e))
    }

    /// Starts this binary as the page server on `listener` (bound already), in the
    /// background; returns its pid.
    pub fn spawn(&self, listener: TcpListener) -> Result<u32, String> {
        let mut args: Vec<OsString> = vec!["page-server".into(), "-D".into()];
        args.push(self.dir.clone().into());
        for a in ["--address", &self.address, "--port", &self.port.to_string()] {
            args.push(a.into());
        }
        respawn(args, listener.into(), self.log.as_deref())
    }
}

/// Starts this binary with `args` and `--listen-fd N`, `fd` (a bound socket) being its
/// fd N, detached from our stdio as CRIU's daemons are (stderr into `log` if given);
/// returns its pid.
pub fn respawn(args: Vec<OsString>, fd: OwnedFd, log: Option<&Path>) -> Result<u32, String> {
    inheritable(&fd)?;
    let stderr = match log {
        Some(path) => Stdio::from(
            (std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path))
            .map_err(|e| format!("open the log {}: {e}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    let exe =
        std::env::current_exe().map_err(|e| format!("the path of stasis-criu itself: {e}"))?;
    let child = Command::new(exe)
        .args(&args)
        .args(["--listen-fd", &fd.as_raw_fd().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("start stasis-criu {:?} in the background: {e}", args[0]))?;
    Ok(child.id())
}

/// Lets a child started next inherit `fd` (std opens every fd close-on-exec).
fn inheritable(fd: &OwnedFd) -> Result<(), String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .map(drop)
        .map_err(|e| format!("page server: keep its socket open across exec: {e}"))
}

/// The listening socket a daemon's parent handed over as fd `fd` (checked to be an open
/// socket before it is owned).
pub fn inherited(fd: i32) -> Result<OwnedFd, String> {
    let link = format!("/proc/self/fd/{fd}");
    let target = std::fs::read_link(&link).map_err(|e| format!("--listen-fd {fd}: {e}"))?;
    if !target.to_string_lossy().starts_with("socket:") {
        return Err(format!(
            "--listen-fd {fd}: {} is not a socket",
            target.display()
        ));
    }
    Ok(stasis::sys::fd::adopt(fd))
}

/// CRIU's `--status-fd N`, taken (and kept from the children started next) until
/// [`ready`] writes it.
pub fn status_file(fd: Option<i32>) -> Result<Option<std::fs::File>, String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Some(fd) = fd else { return Ok(None) };
    let owned = inherited_any(fd, "--status-fd")?;
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| format!("--status-fd {fd}: {e}"))?;
    Ok(Some(std::fs::File::from(owned)))
}

/// CRIU's status byte: one zero byte once ready, then the fd is closed.
pub fn ready(status: Option<std::fs::File>) -> Result<(), String> {
    let Some(mut file) = status else {
        return Ok(());
    };
    file.write_all(&[0])
        .map_err(|e| format!("--status-fd: write the ready byte: {e}"))
}

/// fd `fd` of this process, owned, if it is open.
fn inherited_any(fd: i32, option: &str) -> Result<OwnedFd, String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("{option} {fd}: not an open fd: {e}"))?;
    Ok(stasis::sys::fd::adopt(fd))
}

/// CRIU's `--pidfile`: the daemon's pid.
pub fn write_pidfile(path: Option<&Path>, pid: u32) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    std::fs::write(path, format!("{pid}\n"))
        .map_err(|e| format!("write pid file {}: {e}", path.display()))
}

pub fn join(addr: &str, port: u16) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// `criu page-server`: serves in the foreground, or (`daemon`) starts a child serving on
/// the bound socket and returns once it runs.
pub fn run(
    ps: &PageServer,
    listen_fd: Option<i32>,
    daemon: bool,
    status_fd: Option<i32>,
    pidfile: Option<&Path>,
) -> Result<(), String> {
    let status = status_file(status_fd)?;
    let listener = match listen_fd {
        Some(fd) => TcpListener::from(inherited(fd)?),
        None => ps.bind()?.0,
    };
    if daemon {
        let pid = ps.spawn(listener)?;
        write_pidfile(pidfile, pid)?;
        return ready(status);
    }
    ready(status)?;
    ps.serve(listener)
}
