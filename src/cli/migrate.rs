//! `stasis page-server`, `stasis receive`, `stasis migrate`, and the `--page-server`
//! options of `stasis dump` and `stasis pre-dump`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{report, stats, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use stasis::image::store::keys::SecretKey;
use stasis::image::RemoteSink;
use stasis::migrate::rounds::{migrate, MigrateOptions};
use stasis::migrate::server::{serve, Fill, ServerOptions};
use stasis::migrate::wire::stream_key;
use stasis::migrate::{RemoteImage, Security, Target, TlsConfig, TlsFiles};

/// `--tls` and its keys (CRIU's names for the certificate ones).
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Encrypt and authenticate the page stream: with certificates (--tls-cacert,
    /// --tls-cert, --tls-key) or a pre-shared key (--tls-psk).
    #[arg(long = "tls")]
    pub tls: bool,
    /// Pre-shared key file (`stasis keygen FILE`) both ends hold: the stream is sealed
    /// with XChaCha20-Poly1305 under session keys derived from it.
    #[arg(long = "tls-psk", value_name = "FILE")]
    pub tls_psk: Option<PathBuf>,
    /// This side's certificate (PEM; its chain may follow), presented to the peer.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) (PEM) the peer's certificate must be signed by.
    #[arg(long = "tls-cacert", value_name = "FILE")]
    pub tls_cacert: Option<PathBuf>,
    /// Do not check that the page server's certificate names the address dialled (its
    /// chain is still checked against --tls-cacert).
    #[arg(long = "tls-no-cn-verify")]
    pub tls_no_cn_verify: bool,
}

impl TlsArgs {
    /// How the stream is protected, or why the options cannot be used (a usage error, or
    /// a file that cannot be read).
    pub fn security(&self) -> Result<Security, String> {
        let certs = [&self.tls_cert, &self.tls_key, &self.tls_cacert];
        let any_cert = certs.iter().any(|c| c.is_some()) || self.tls_no_cn_verify;
        match (self.tls, &self.tls_psk, any_cert) {
            (false, None, false) => Ok(Security::Plain),
            (false, _, _) => Err("--tls-psk, --tls-cert, --tls-key, --tls-cacert and \
                                  --tls-no-cn-verify need --tls"
                .into()),
            (true, Some(_), true) => {
                Err("--tls-psk and the certificate options exclude each other".into())
            }
            (true, None, false) => Err("--tls needs --tls-cacert FILE --tls-cert FILE \
                                        --tls-key FILE (certificates), or --tls-psk FILE \
                                        (a key file of `stasis keygen`, the same on both ends)"
                .into()),
            (true, Some(path), false) => SecretKey::read(path)
                .map(|k| Security::Psk(stream_key(&k)))
                .map_err(|e| stasis::error_line(&e)),
            (true, None, true) => self.certificates(),
        }
    }

    fn certificates(&self) -> Result<Security, String> {
        let (Some(cacert), Some(cert), Some(key)) =
            (&self.tls_cacert, &self.tls_cert, &self.tls_key)
        else {
            return Err(
                "certificate TLS needs all of --tls-cacert FILE, --tls-cert FILE \
                        and --tls-key FILE"
                    .into(),
            );
        };
        let files = TlsFiles {
            cacert: cacert.clone(),
            cert: cert.clone(),
            key: key.clone(),
            no_cn_verify: self.tls_no_cn_verify,
        };
        TlsConfig::load(&files)
            .map(|c| Security::Tls(std::sync::Arc::new(c)))
            .map_err(|e| stasis::error_line(&e))
    }
}

/// `dump|pre-dump --page-server --address A --port P`.
#[derive(Args, Debug, Clone, Default)]
pub struct PageServerArgs {
    /// Send the image to a page server (`stasis page-server`) instead of writing it
    /// locally: the images dir then keeps the records only (no page data).
    #[arg(long = "page-server")]
    pub page_server: bool,
    /// The page server's address (with `dump --lazy-pages`: the address to listen on).
    #[arg(long = "address")]
    pub address: Option<String>,
    /// The page server's port (with `dump --lazy-pages`: the port to listen on).
    #[arg(long = "port")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl PageServerArgs {
    /// Connects and begins the image named after `dir` when it is part of a chain
    /// (`chained`), else the server's directory itself; `last` for a dump.
    pub fn connect(
        &self,
        dir: &std::path::Path,
        chained: bool,
        last: bool,
    ) -> Result<Option<RemoteSink>, i32> {
        if !self.page_server {
            if self.tls.tls {
                eprintln!(
                    "stasis: --tls goes with --page-server (a local image, or the post-copy \
                     stream of --lazy-pages, is not encrypted by it)"
                );
                return Err(EXIT_USAGE);
            }
            return Ok(None);
        }
        let target = self.target().map_err(|why| {
            eprintln!("stasis: {why}");
            EXIT_USAGE
        })?;
        let name = match chained {
            true => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            false => String::new(),
        };
        RemoteImage::begin(&target, &name, last)
            .map(|s| Some(RemoteSink(s)))
            .map_err(|e| {
                report(&e);
                EXIT_FAILED
            })
    }

    fn target(&self) -> Result<Target, String> {
        let port = self.port.ok_or("--page-server needs --port")?;
        let addr = self.address.as_deref().unwrap_or("127.0.0.1");
        Ok(Target {
            peer: join(addr, port),
            security: self.tls.security()?,
        })
    }
}

fn join(addr: &str, port: u16) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

#[derive(Args, Debug)]
pub struct PageServerCmd {
    /// Address to listen on.
    #[arg(long = "address", default_value = "0.0.0.0")]
    pub address: String,
    #[arg(long = "port")]
    pub port: u16,
    /// Where the image goes (a chain: each image in its own subdirectory).
    #[arg(short = 'D', long = "images-dir")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

pub fn page_server(args: PageServerCmd) -> i32 {
    let listen = join(&args.address, args.port);
    run_server(listen, args.dir, &args.tls, None, args.quiet)
}

#[derive(Args, Debug)]
pub struct ReceiveCmd {
    /// `ADDR:PORT` to listen on.
    #[arg(long = "listen")]
    pub listen: String,
    /// Where the images go, one subdirectory per round.
    #[arg(short = 'D', long = "images-dir")]
    pub dir: PathBuf,
    /// Restore established TCP connections (the source dumps them with
    /// --tcp-established).
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// How the restored tree's memory is filled after a pre-copy migration: `lazy`
    /// starts the tree at once and fills its private anonymous memory from the received
    /// images on first touch and in the background (each page checked first; a failed
    /// check kills the restored tree); `eager` fills it all before the tree runs; `auto`
    /// (the default) is `lazy` when the received pages reach 256 MiB.
    #[arg(long = "fill", value_enum, default_value = "auto")]
    pub fill: Fill,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

pub fn receive(args: ReceiveCmd) -> i32 {
    let extra = match args.tcp_established {
        true => vec!["--tcp-established".to_string()],
        false => Vec::new(),
    };
    let restore = Some((extra, args.fill));
    run_server(args.listen, args.dir, &args.tls, restore, args.quiet)
}

fn run_server(
    listen: String,
    dir: PathBuf,
    tls: &TlsArgs,
    restore: Option<(Vec<String>, Fill)>,
    quiet: bool,
) -> i32 {
    let security = match tls.security() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("stasis: {why}");
            return EXIT_USAGE;
        }
    };
    let opts = ServerOptions {
        listen,
        dir,
        security,
        restore,
    };
    let mut print = |r: &stasis::migrate::server::Received| {
        if !quiet {
            eprintln!("received {} ({} bytes)", r.dir.display(), r.bytes);
        }
    };
    match serve(&opts, &mut print) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}

#[derive(Args, Debug)]
pub struct MigrateCmd {
    /// Pid of the root of the tree.
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// `ADDR:PORT` of `stasis receive` on the target.
    #[arg(long = "to")]
    pub to: String,
    /// The downtime to aim for (e.g. 50ms, 1s): pre-copy stops once the final round is
    /// estimated to fit.
    #[arg(long = "max-downtime", value_parser = parse_duration, default_value = "50ms")]
    pub max_downtime: Duration,
    /// Pre-copy rounds at most (0: stop-and-copy; default 8).
    #[arg(long = "rounds")]
    pub rounds: Option<u32>,
    /// Post-copy: freeze, send all but the private memory, run the tree on the target at
    /// once and fill its memory from here on fault and in the background.
    #[arg(long = "lazy")]
    pub lazy: bool,
    /// Save established TCP connections (the receiver restores them).
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Local directory for each round's records (default: a new one under $TMPDIR).
    #[arg(long = "work-dir")]
    pub work: Option<PathBuf>,
    /// Write the rounds, bytes and downtime as JSON here.
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

pub fn run_migrate(args: MigrateCmd) -> i32 {
    if let Err(e) = check_lazy(&args) {
        report(&e);
        return EXIT_USAGE;
    }
    let security = match args.tls.security() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("stasis: {why}");
            return EXIT_USAGE;
        }
    };
    let (work, remove) = match args.work {
        Some(w) => (w, false),
        None => (
            // Pids repeat across pid namespaces (and a killed migrate leaves its
            // directory): the clock's nanoseconds keep two runs apart.
            std::env::temp_dir().join(format!(
                "stasis-migrate-{}-{}-{}",
                args.pid,
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            )),
            true,
        ),
    };
    let opts = MigrateOptions {
        pid: args.pid,
        target: Target {
            peer: args.to,
            security,
        },
        max_downtime: args.max_downtime,
        max_rounds: args.rounds.unwrap_or(8),
        work: work.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
        tcp_established: args.tcp_established,
        lazy: args.lazy,
    };
    let result = migrate(&opts);
    if remove {
        let _ = std::fs::remove_dir_all(&work);
    }
    let s = match result {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return EXIT_FAILED;
        }
    };
    let mut line = String::new();
    for (i, r) in s.rounds.iter().enumerate() {
        line.push_str(&format!(
            "round {} ({}): {} pages, {} bytes, {:.1} ms, frozen {:.1} ms\n",
            i + 1,
            r.kind,
            r.pages,
            r.bytes,
            r.seconds * 1e3,
            r.frozen_ms
        ));
    }
    line.push_str(&format!(
        "migrated pid {}: downtime {:.1} ms, total {:.1} ms",
        s.pid,
        s.downtime_ms,
        s.total_seconds * 1e3
    ));
    if let Some(ms) = s.memory_in_place_ms {
        line.push_str(&format!(
            "\nthe target filled its memory after it ran: all in place {ms:.1} ms after the freeze"
        ));
    }
    stats::report(args.quiet, &line, args.stats_json.as_deref(), || {
        serde_json::to_value(&s).unwrap_or_default()
    });
    EXIT_OK
}

/// `--lazy` goes without pre-copy rounds and without `--tls`.
fn check_lazy(args: &MigrateCmd) -> Result<(), stasis::migrate::MigrateError> {
    use stasis::migrate::MigrateError;
    match (args.lazy, args.rounds) {
        (true, Some(n)) if n > 0 => Err(MigrateError::LazyWithRounds(n)),
        (true, _) if args.tls.tls => Err(MigrateError::LazyWithTls),
        _ => Ok(()),
    }
}

/// `50ms`, `2s`, `1500us`, or a plain number of milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "ms"), |i| text.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|e| format!("{text:?} is not a duration (e.g. 50ms, 1s): {e}"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, ms, us)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_millis(20)));
        assert!(parse_duration("5h").is_err());
    }
}
