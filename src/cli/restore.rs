//! `stasis restore`.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::compat::{CriuFlags, RestoreNoops};
use super::progress::{self, When};
use super::store::{receive, RestoreStoreArgs};
use super::{report, stats, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::checkpoint::view::View;
use stasis::checkpoint::{seq_name, CheckpointError, Store};
use stasis::restore::{restore, RestoreOptions};

/// `stasis restore`'s options: those most runs give, which the common path parses alone
/// (see `main.rs`), and the rest.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").args(["dir", "stream"]).required(true)))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub core: RestoreCore,
    #[command(flatten)]
    pub more: RestoreMore,
}

/// The options of `stasis restore` besides CRIU's and the image's source and keys.
#[derive(Args, Debug)]
pub struct RestoreCore {
    /// Image directory written by `stasis dump`. Not with --stream.
    #[arg(short = 'D', long = "images-dir")]
    pub dir: Option<PathBuf>,
    /// With a checkpoint store as -D: restore this checkpoint (its number, as `stasis
    /// inspect STORE` lists them) instead of the latest valid one.
    #[arg(long = "checkpoint", value_name = "N")]
    pub checkpoint: Option<u32>,
    /// Return once the process runs instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached")]
    pub detached: bool,
    /// Write the restored pid here.
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Re-attach terminal fds to the current terminal.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Restore established TCP connections closed (the task sees them aborted).
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,
    /// Restore open files even if they changed (size, mtime or inode) since the dump.
    #[arg(long = "skip-file-check")]
    pub skip_file_check: bool,
    /// (Internal, `stasis receive`.) An image directory whose pages files the caller has
    /// verified already: their checksums are not read again.
    #[arg(long = "pages-verified", value_name = "DIR", hide = true)]
    pub pages_verified: Vec<PathBuf>,
    /// Start the tree at once and fill its private anonymous memory from this image on
    /// first touch and in the background, each page checked against the image's
    /// checksums first; should a page fail its check or not be readable, the restored
    /// tree is killed (exit code 3). With -d, stasis returns once all memory is in place.
    #[arg(long = "lazy-local", conflicts_with = "lazy_pages")]
    pub lazy_local: bool,
    /// (Internal, `stasis receive`.) Print `running PID` on stdout as soon as the tree
    /// runs (before a post-copy fill ends).
    #[arg(long = "report-running", hide = true)]
    pub report_running: bool,
    /// The directory that becomes the root of a tree that had its own root (`pivot_root`).
    #[arg(long = "root", value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// CRIU's `--join-ns NS:PATH`: only `net:PATH` (or `net:PID`), the network namespace
    /// the tree comes back in, instead of a new one rebuilt from the image.
    #[arg(long = "join-ns", value_name = "net:PATH")]
    pub join_ns: Vec<String>,
    /// CRIU's choice of mount engine, accepted: stasis has one, which rebuilds peer
    /// groups with MOVE_MOUNT_SET_GROUP (CRIU's default engine).
    #[arg(long = "mntns-compat-mode", hide = true)]
    pub mntns_compat_mode: bool,
    #[arg(long = "no-mntns-compat-mode", hide = true)]
    pub no_mntns_compat_mode: bool,
    /// Do not print the summary line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Show a progress bar on a terminal.
    #[arg(long = "progress", value_enum, default_value_t)]
    pub progress: When,
    /// Write the restore figures (pages, bytes, MB/s, times) as JSON here.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
}

/// Post-copy, stream and keys, CRIU's names: options a plain restore does not give.
#[derive(Args, Debug, Default)]
pub struct RestoreMore {
    #[command(flatten)]
    pub lazy: super::lazy::LazyArgs,
    #[command(flatten)]
    pub store: RestoreStoreArgs,
    #[command(flatten)]
    pub criu: CriuFlags,
    #[command(flatten)]
    pub dump_side: RestoreNoops,
}

pub fn run(args: RestoreArgs) -> i32 {
    if let Err(why) = args.more.criu.check() {
        eprintln!("stasis: {why}");
        return EXIT_USAGE;
    }
    let join_net = match join_net(&args.core.join_ns) {
        Ok(j) => j,
        Err(why) => {
            eprintln!("stasis: {why}");
            return EXIT_USAGE;
        }
    };
    let store = match args.more.store.options() {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_USAGE;
        }
    };
    // A stream is read whole and checked into a private directory first; a store's
    // checkpoint is verified and laid out with its chain.
    let (mut from_store, mut store) = (None, store);
    let (received, dir) = match (&args.core.dir, &args.more.store.stream) {
        (Some(dir), _) if stasis::checkpoint::is_store(dir) => {
            match checkpoint_view(dir, args.core.checkpoint, &store) {
                Ok((lock, view)) => {
                    let image = view.image().to_path_buf();
                    from_store = Some((lock, view));
                    // Verified and decoded already.
                    store = Default::default();
                    (None, image)
                }
                Err(e) => {
                    report(&e);
                    return EXIT_FAILED;
                }
            }
        }
        (Some(_), _) if args.core.checkpoint.is_some() => {
            eprintln!("stasis: --checkpoint N needs a checkpoint store as -D");
            return EXIT_USAGE;
        }
        (Some(dir), _) => (None, dir.clone()),
        (None, Some(from)) => match receive(from) {
            Ok((temp, dir)) => (Some(temp), dir),
            Err(e) => {
                report(&e);
                return EXIT_FAILED;
            }
        },
        (None, None) => unreachable!("clap requires --images-dir or --stream"),
    };
    let opts = RestoreOptions {
        dir,
        shell_job: args.core.shell_job,
        orphan_pts_master: false,
        tcp_close: args.core.tcp_close,
        skip_file_check: args.core.skip_file_check,
        cgroups: args.more.criu.cgroup_restore(),
        root: args.core.root,
        mnt_externals: args.more.criu.restore_mnt_externals(),
        join_net,
        inherit_fds: args.more.criu.inherit_fds().unwrap_or_default(),
        store,
        veth_externals: args.more.criu.veth_externals(),
        lazy: (args.more.lazy.endpoint())
            .map(|(address, port)| stasis::lazy::restore::LazyFrom { address, port }),
        pages_verified: args.core.pages_verified,
        lazy_local: args.core.lazy_local,
    };
    if !args.core.quiet {
        progress::install(args.core.progress);
    }
    let restored = restore(&opts);
    // The stream's copy is not needed once the tree is rebuilt (nor kept while we wait),
    // nor the store's view and lock.
    drop(received);
    drop(from_store);
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    stats::report(
        args.core.quiet,
        &stats::restore_line(&restored),
        args.core.stats_json.as_deref(),
        || stats::restore_json(&restored),
    );
    if let Some(path) = &args.core.pidfile {
        if let Err(e) = std::fs::write(path, format!("{}\n", restored.pid)) {
            eprintln!("stasis: write pid file {}: {e}", path.display());
            return EXIT_FAILED;
        }
    }
    if args.core.report_running {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "running {}", restored.pid).and_then(|()| out.flush());
    }
    // Post-copy ends first (the tree runs meanwhile); a failed one killed the tree.
    let post_copy = restored.post_copy.as_deref().map(|p| p.wait());
    let failed = match post_copy {
        Some(Err(e)) => {
            eprintln!(
                "stasis: post-copy failed, the restored tree (pid {}) was killed: it cannot \
                 run without the pages it never received: {}",
                restored.pid,
                stasis::error_line(&e)
            );
            true
        }
        Some(Ok(s)) if !args.core.quiet => {
            eprintln!(
                "stasis: post-copy complete: {} MiB in {:.3} s after the start ({} faults)",
                s.bytes >> 20,
                s.complete.as_secs_f64(),
                s.faults
            );
            false
        }
        _ => false,
    };
    let code = if args.core.detached {
        EXIT_OK
    } else {
        wait_for(restored.pid)
    };
    if failed {
        EXIT_POST_COPY
    } else {
        code
    }
}

/// Picks and verifies the checkpoint of the store `dir` to restore, under the store's
/// shared lock (no gc meanwhile).
fn checkpoint_view(
    dir: &std::path::Path,
    wanted: Option<u32>,
    opts: &stasis::image::store::OpenOptions,
) -> Result<(Store, View), CheckpointError> {
    let store = Store::open_reader(dir)?;
    let (entry, view) = stasis::checkpoint::view::pick(&store, wanted, opts)?;
    eprintln!(
        "stasis: restoring checkpoint {} of {} (pid {}, taken at {})",
        seq_name(entry.seq),
        dir.display(),
        entry.meta.pid,
        stasis::checkpoint::utc(entry.meta.time)
    );
    Ok((store, view))
}

/// Exit code of a restore whose post-copy failed (the restored tree was killed).
const EXIT_POST_COPY: i32 = 3;

/// Waits for the restored task and turns its end into our exit code (128+signal if killed).
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("stasis: wait for pid {pid}: {e}");
                return EXIT_FAILED;
            }
        }
    }
}

/// The network namespace of `--join-ns net:PATH|PID`; other kinds are refused.
fn join_net(given: &[String]) -> Result<Option<PathBuf>, String> {
    let mut net = None;
    for j in given {
        let Some(target) = j.strip_prefix("net:") else {
            return Err(format!(
                "--join-ns {j}: stasis joins only a network namespace (net:PATH or net:PID)"
            ));
        };
        let target = target.split(',').next().unwrap_or_default();
        net = Some(match target.parse::<i32>() {
            Ok(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Err(_) => PathBuf::from(target),
        });
    }
    Ok(net)
}
