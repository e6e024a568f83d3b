//! `stasis dump`.

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::compat::CriuFlags;
use super::progress::{self, When};
use super::store::{check_stream_target, stream_dir, DumpStoreArgs, StreamHook};
use super::{report, stats, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::dump::{dump_with, DumpOptions};
use stasis::hooks::NoHooks;

/// `stasis dump`'s options: those most runs give, which the common path parses alone
/// (see `main.rs`), and the rest.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").args(["dir", "stream"]).required(true)))]
pub struct DumpArgs {
    #[command(flatten)]
    pub core: DumpCore,
    #[command(flatten)]
    pub more: DumpMore,
}

/// The options of `stasis dump` besides CRIU's, the page server's and the image's form.
#[derive(Args, Debug)]
pub struct DumpCore {
    /// Pid of the process to dump.
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// Image directory (created; must not exist or be empty). Not with --stream.
    #[arg(short = 'D', long = "images-dir")]
    pub dir: Option<PathBuf>,
    /// Let the process run on after the dump instead of killing it.
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    /// The process is attached to the invoking terminal: save terminal fds as such.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Save established TCP connections (TCP_REPAIR) so they resume after restore.
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Save established TCP connections as closed (the restored task sees them reset).
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// Allow unix sockets connected to sockets outside the process: they are connected
    /// to the same address again at restore.
    #[arg(short = 'x', long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Drop file descriptors in flight (SCM_RIGHTS) and connections not yet accepted
    /// instead of refusing the dump.
    #[arg(long = "skip-in-flight")]
    pub skip_in_flight: bool,
    /// Save a file deleted while open if it holds at most this much data (bytes, or with
    /// a K/M/G suffix; holes do not count, as with CRIU's FIEMAP mode); a larger one is
    /// refused (or, with --link-remap, linked beside its old path).
    #[arg(long = "ghost-limit", value_parser = parse_size, default_value = "1M")]
    pub ghost_limit: u64,
    /// Accepted for CRIU compatibility: CRIU finds a deleted file's data with FIEMAP under
    /// this option and with SEEK_DATA/SEEK_HOLE without it; stasis always uses
    /// SEEK_DATA/SEEK_HOLE, which finds the same data and holes.
    #[arg(long = "ghost-fiemap", overrides_with = "no_ghost_fiemap")]
    pub ghost_fiemap: bool,
    /// Accepted for CRIU compatibility (see --ghost-fiemap).
    #[arg(long = "no-ghost-fiemap", overrides_with = "ghost_fiemap")]
    pub no_ghost_fiemap: bool,
    /// Keep files whose name was unlinked while open (one with other links left, or a
    /// deleted one above --ghost-limit) through a link made beside them at dump time,
    /// removed by a successful restore, instead of refusing them.
    #[arg(long = "link-remap")]
    pub link_remap: bool,
    /// Save file locks (flock, POSIX, OFD) held by the process; without it a held lock is
    /// refused.
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Record a CRC-32 of the whole contents of every regular file held open (whatever
    /// its size), so that a restore also refuses a file rewritten with the same size and
    /// mtime (unless --skip-file-check).
    #[arg(long = "file-hash")]
    pub file_hash: bool,
    /// Freeze this cgroup (v1 freezer or v2) before seizing the tree: for trees that fork
    /// faster than they can be frozen one by one.
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    pub freeze_cgroup: Option<std::path::PathBuf>,
    /// Give up (and let the tree run on, unless it was killed already) when a task takes
    /// longer than this many seconds to stop, to answer or to exit.
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    /// Do not print the summary line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Show a progress bar on a terminal.
    #[arg(long = "progress", value_enum, default_value_t)]
    pub progress: When,
    /// Write the dump figures (pages, bytes, MB/s, frozen and total time) as JSON here.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
    /// Accepted (CRIU's name): a device is reopened by its path, which may be any node
    /// of the same device; a path naming another file now is refused.
    #[arg(long = "evasive-devices")]
    pub evasive_devices: bool,
    /// Make an incremental dump: pages not written since this image (a pre-dump or an
    /// earlier dump of the same tree, whose tracking is still armed) are taken from it
    /// instead of stored. A relative path is relative to the images dir.
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    pub prev_images_dir: Option<PathBuf>,
    /// With -R: leave the tracking of written pages armed, so that a later dump with
    /// --prev-images-dir pointing at this one stores only what changed.
    #[arg(long = "track-mem")]
    pub track_mem: bool,
}

/// Post-copy, the image's form and stream, the page server, CRIU's names: options a
/// plain dump does not give.
#[derive(Args, Debug, Default)]
pub struct DumpMore {
    #[command(flatten)]
    pub lazy: super::lazy::LazyDumpArgs,
    #[command(flatten)]
    pub store: DumpStoreArgs,
    #[command(flatten)]
    pub remote: super::migrate::PageServerArgs,
    #[command(flatten)]
    pub criu: CriuFlags,
}

/// An incremental image may be sealed (compressed, encrypted, signed: its parents are
/// opened and verified with the same keys at restore), but not streamed: it names its
/// parent by directory.
fn check_incremental(args: &DumpArgs) -> Result<(), String> {
    let incremental = args.core.prev_images_dir.is_some() || args.core.track_mem;
    if incremental && args.more.store.stream.is_some() {
        return Err(
            "--prev-images-dir and --track-mem cannot be combined with --stream: an \
             incremental image names its parent by directory"
                .into(),
        );
    }
    Ok(())
}

/// A post-copy dump keeps its tree frozen to serve it, and writes a plain image.
fn check_lazy(args: &DumpArgs) -> Result<(), String> {
    let s = &args.more.store;
    let stored = s.sealed();
    let other =
        args.core.leave_running || args.core.prev_images_dir.is_some() || args.core.track_mem;
    if args.more.lazy.lazy_pages && (stored || s.stream.is_some() || other) {
        return Err(
            "--lazy-pages cannot be combined with -R, --prev-images-dir, --track-mem, \
             --compress, --encrypt-key, --sign or --stream: its tree is killed once served, \
             and its image is plain"
                .into(),
        );
    }
    if args.more.lazy.lazy_pages && args.more.remote.page_server {
        return Err("--lazy-pages and --page-server cannot be combined".into());
    }
    if args.more.lazy.lazy_pages && args.more.remote.port.is_none() {
        return Err("--lazy-pages needs --port".into());
    }
    let given = args.more.remote.address.is_some() || args.more.remote.port.is_some();
    if given && !args.more.lazy.lazy_pages && !args.more.remote.page_server {
        return Err("--address and --port go with --page-server or --lazy-pages".into());
    }
    Ok(())
}

/// A page server receives the image as it is written: it cannot be sealed or streamed.
fn check_page_server(args: &DumpArgs) -> Result<(), String> {
    let s = &args.more.store;
    let stored = s.sealed();
    if args.more.remote.page_server && (stored || s.stream.is_some()) {
        return Err(
            "--page-server cannot be combined with --compress, --encrypt-key, \
                    --sign or --stream (use --tls to encrypt the stream)"
                .into(),
        );
    }
    if args.more.remote.page_server && args.core.dir.is_none() {
        return Err("--page-server needs --images-dir for the records kept locally".into());
    }
    Ok(())
}

/// The usage checks clap cannot make: CRIU's flags, an incremental image that would be
/// stored sealed, the stream's target, the page server.
fn check_usage(args: &DumpArgs) -> Result<(), String> {
    args.more.criu.check()?;
    check_incremental(args)?;
    check_lazy(args)?;
    check_page_server(args)?;
    args.more
        .store
        .stream
        .as_deref()
        .map_or(Ok(()), check_stream_target)
}

pub fn run(args: DumpArgs) -> i32 {
    if let Err(why) = check_usage(&args) {
        eprintln!("stasis: {why}");
        return EXIT_USAGE;
    }
    let store = match args.more.store.options() {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_USAGE;
        }
    };
    // A streamed dump writes its image into a private directory, sent at post-dump.
    let (_temp, dir, mut hook): (_, _, Box<dyn stasis::hooks::Hooks>) =
        match (&args.core.dir, &args.more.store.stream) {
            (Some(dir), _) => (None, dir.clone(), Box::new(NoHooks)),
            (None, Some(to)) => match stream_dir() {
                Ok((temp, dir)) => {
                    let (d, to) = (dir.clone(), to.clone());
                    (Some(temp), dir, Box::new(StreamHook { dir: d, to }))
                }
                Err(e) => {
                    report(&e);
                    return EXIT_FAILED;
                }
            },
            (None, None) => unreachable!("clap requires --images-dir or --stream"),
        };
    let chained = args.core.prev_images_dir.is_some() || args.core.track_mem;
    let remote = match args.more.remote.connect(&dir, chained, true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = DumpOptions {
        pid: args.core.pid,
        dir,
        remote,
        leave_running: args.core.leave_running,
        shell_job: args.core.shell_job,
        orphan_pts_master: false,
        tcp_established: args.core.tcp_established,
        tcp_close: args.core.tcp_close,
        ext_unix_sk: args.core.ext_unix_sk,
        skip_in_flight: args.core.skip_in_flight,
        network_lock: args.more.criu.lock_mode().unwrap_or_default(),
        ghost_limit: args.core.ghost_limit,
        link_remap: args.core.link_remap,
        file_locks: args.core.file_locks,
        file_hash: args.core.file_hash,
        freeze_cgroup: args.core.freeze_cgroup,
        timeout: std::time::Duration::from_secs(args.core.timeout.max(1)),
        cgroups: args.more.criu.cgroup_dump(),
        mnt_externals: args.more.criu.mount_externals(),
        store,
        prev_images_dir: args.core.prev_images_dir,
        track_mem: args.core.track_mem,
        veth_externals: args.more.criu.veth_externals(),
        net_external: args.more.criu.net_external(),
        lazy: (args.more.remote.port)
            .filter(|_| args.more.lazy.lazy_pages)
            .map(|port| stasis::dump::LazyServe {
                address: (args.more.remote.address.clone()).unwrap_or_else(|| "0.0.0.0".into()),
                port,
                ..Default::default()
            }),
    };
    if !args.core.quiet {
        progress::install(args.core.progress);
    }
    let summary = match dump_with(&opts, hook.as_mut()) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    stats::report(
        args.core.quiet,
        &stats::dump_line(&summary),
        args.core.stats_json.as_deref(),
        || stats::dump_json(&summary),
    );
    EXIT_OK
}

/// `4096`, `64K`, `1M`, `2G` (binary units) → bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|e| format!("{text:?} is not a size (bytes, or with a K/M/G suffix): {e}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
