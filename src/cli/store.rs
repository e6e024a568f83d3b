//! The image store's flags of `stasis dump` and `stasis restore` (compression,
//! encryption, signatures, streams) and `stasis keygen`. Keys are named by file, never
//! given on the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{report, EXIT_FAILED, EXIT_OK};
use stasis::hooks::{Hooks, Point};
use stasis::image::store::{self, keys, Compression, SecretKey, StoreError, TempDir};

#[derive(Args, Debug, Default)]
pub struct DumpStoreArgs {
    #[command(flatten)]
    pub seal: SealArgs,
    /// Write the whole checkpoint as one stream to this file, `-` for standard output,
    /// instead of an image directory (written to a private temporary directory first).
    #[arg(long = "stream", value_name = "FILE")]
    pub stream: Option<PathBuf>,
    /// Do not sync the image before reporting success (and, without -R, before killing
    /// the tree), as CRIU does: the image is complete and renamed into place, but a
    /// machine crash (power loss, kernel panic) before the kernel writes it back can
    /// lose it along with the killed tree. By default the image is durable first.
    #[arg(long = "no-sync")]
    pub no_sync: bool,
    /// Write the page data past the page cache (`O_DIRECT`) on filesystems that have one
    /// (not tmpfs; ignored with --compress or encryption): a large dump copies no pages
    /// into the page cache, but a restore on this machine then reads them from the disk.
    /// For an image restored elsewhere or later.
    #[arg(long = "direct-io")]
    pub direct_io: bool,
}

/// How the image's files are kept at rest (`dump` and `checkpoint`).
#[derive(Args, Debug, Default)]
pub struct SealArgs {
    /// Compress the image's files in independently checked chunks: `zstd`, `zstd:LEVEL`
    /// (1..=19, default 3) or `lz4`. The restore needs no flag.
    #[arg(long = "compress", value_name = "ALGO", value_parser = parse_compression)]
    pub compress: Option<Compression>,
    /// Encrypt every file of the image (XChaCha20-Poly1305, chunked) with the 32-byte
    /// key in FILE (`stasis keygen FILE`; mode 0600).
    #[arg(long = "encrypt-key", value_name = "FILE")]
    pub encrypt_key: Option<PathBuf>,
    /// Encrypt every file of the image as --encrypt-key does, with a fresh random key
    /// kept in the image only wrapped (age) for the X25519 recipient `age1...` (public:
    /// `age-keygen -y` or `stasis keygen --age`); repeat for more recipients. Restore
    /// with `--decrypt-key IDENTITY_FILE`.
    #[arg(
        long = "encrypt-to",
        value_name = "RECIPIENT",
        conflicts_with = "encrypt_key"
    )]
    pub encrypt_to: Vec<String>,
    /// Sign the image (ed25519, over a manifest of every file's BLAKE3 digest) with the
    /// secret key in FILE (`stasis keygen FILE`); verify with `FILE.pub`.
    #[arg(long = "sign", value_name = "FILE")]
    pub sign: Option<PathBuf>,
}

#[derive(Args, Debug, Default)]
pub struct RestoreStoreArgs {
    /// Decrypt an image made with `dump --encrypt-key` with the key in FILE, or one made
    /// with `--encrypt-to` with the age identity file FILE.
    #[arg(long = "decrypt-key", value_name = "FILE")]
    pub decrypt_key: Option<PathBuf>,
    /// Refuse an image that is not signed by the key whose public half is in FILE
    /// (`FILE.pub` of `stasis keygen`), or that changed since it was signed.
    #[arg(long = "require-signature", value_name = "PUBFILE")]
    pub require_signature: Option<PathBuf>,
    /// Read the checkpoint as one stream (`dump --stream`) from this file, `-` for
    /// standard input; it is checked whole into a private temporary directory before
    /// anything is restored.
    #[arg(long = "stream", value_name = "FILE")]
    pub stream: Option<PathBuf>,
}

/// `zstd`, `zstd:N`, `lz4`, `none`.
fn parse_compression(text: &str) -> Result<Compression, String> {
    match text.split_once(':') {
        None if text == "zstd" => Ok(Compression::Zstd { level: 3 }),
        None if text == "lz4" => Ok(Compression::Lz4),
        None if text == "none" => Ok(Compression::None),
        Some(("zstd", level)) => match level.parse() {
            Ok(level @ 1..=19) => Ok(Compression::Zstd { level }),
            _ => Err(format!("zstd level {level:?} is not in 1..=19")),
        },
        _ => Err(format!("{text:?}: expected zstd, zstd:LEVEL, lz4 or none")),
    }
}

impl DumpStoreArgs {
    /// The store options, keys read from their files.
    pub fn options(&self) -> Result<store::StoreOptions, StoreError> {
        let mut opts = self.seal.options()?;
        opts.no_sync = self.no_sync;
        opts.direct_io = self.direct_io;
        Ok(opts)
    }

    /// Whether the image's files are compressed, encrypted or signed.
    pub fn sealed(&self) -> bool {
        let s = &self.seal;
        s.sealed()
    }
}

impl SealArgs {
    /// The store options, keys read from their files (with `--encrypt-to`, a new random
    /// key).
    pub fn options(&self) -> Result<store::StoreOptions, StoreError> {
        let recipients = store::recipients::parse_recipients(&self.encrypt_to)?;
        let encrypt = match recipients.is_empty() {
            true => self
                .encrypt_key
                .as_deref()
                .map(SecretKey::read)
                .transpose()?,
            false => Some(SecretKey::generate()?),
        };
        Ok(store::StoreOptions {
            compression: self.compress.unwrap_or_default(),
            encrypt,
            sign: self.sign.as_deref().map(SecretKey::read).transpose()?,
            recipients,
            no_sync: false,
            direct_io: false,
        })
    }

    /// Whether the image's files are compressed, encrypted or signed.
    pub fn sealed(&self) -> bool {
        let encrypted = self.encrypt_key.is_some() || !self.encrypt_to.is_empty();
        self.compress.is_some() || encrypted || self.sign.is_some()
    }
}

impl RestoreStoreArgs {
    /// The open options, keys read from their files.
    pub fn options(&self) -> Result<store::OpenOptions, StoreError> {
        let require = self.require_signature.as_deref();
        let mut opts = store::OpenOptions {
            require_signature: require.map(keys::read_public).transpose()?,
            ..store::OpenOptions::default()
        };
        if let Some(path) = self.decrypt_key.as_deref() {
            opts.read_decrypt_key(path)?;
        }
        Ok(opts)
    }
}

/// Where a streamed dump writes its image before sending it: `<temp>/image`.
pub fn stream_dir() -> Result<(TempDir, PathBuf), StoreError> {
    let temp = TempDir::new("stream")?;
    let dir = temp.path().join("image");
    Ok((temp, dir))
}

/// Refuses to send binary data to a terminal.
pub fn check_stream_target(to: &Path) -> Result<(), String> {
    if to == Path::new("-") && std::io::stdout().is_terminal() {
        return Err("--stream -: standard output is a terminal; redirect or pipe it".into());
    }
    Ok(())
}

/// At post-dump (the image committed, the tree still frozen) sends the image as a stream;
/// a failure there fails the dump and leaves the tree running.
pub struct StreamHook {
    pub dir: PathBuf,
    pub to: PathBuf,
}

impl Hooks for StreamHook {
    fn at(&mut self, point: Point, _pid: i32) -> Result<(), String> {
        if point != Point::PostDump {
            return Ok(());
        }
        let sent = if self.to == Path::new("-") {
            store::stream::write(&self.dir, &mut std::io::stdout().lock())
        } else {
            create_stream_file(&self.to).and_then(|mut f| store::stream::write(&self.dir, &mut f))
        };
        sent.map(|_| ()).map_err(|e| stasis::error_line(&e))
    }
}

fn create_stream_file(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("create", path))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// Reads a stream (`-`: standard input) into a new private directory, checked whole.
pub fn receive(from: &Path) -> Result<(TempDir, PathBuf), StoreError> {
    let (temp, dir) = stream_dir()?;
    std::fs::create_dir(&dir).map_err(StoreError::io("create directory", &dir))?;
    let read = if from == Path::new("-") {
        store::stream::read(&mut std::io::stdin().lock(), &dir)
    } else {
        let file = std::fs::File::open(from).map_err(StoreError::io("open", from))?;
        store::stream::read(&mut std::io::BufReader::new(file), &dir)
    };
    read.map(|()| (temp, dir))
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the new secret key (mode 0600); its ed25519 public key goes to
    /// `FILE.pub`. Neither may exist.
    pub file: PathBuf,
    /// Write an age X25519 identity instead (for `dump --encrypt-to` and `restore
    /// --decrypt-key FILE`), its recipient `age1...` in `FILE.pub`.
    #[arg(long = "age")]
    pub age: bool,
}

/// `stasis keygen FILE`.
pub fn keygen(args: KeygenArgs) -> i32 {
    if args.age {
        return match store::recipients::write_identity(&args.file) {
            Ok(public) => {
                let file = args.file.display();
                eprintln!("stasis: wrote the age identity to {file}; its recipient: {public}");
                EXIT_OK
            }
            Err(e) => {
                report(&e);
                EXIT_FAILED
            }
        };
    }
    match SecretKey::generate().and_then(|k| k.write_pair(&args.file)) {
        Ok(()) => {
            let public = keys::public_path(&args.file);
            eprintln!(
                "stasis: wrote the secret key to {} and its public key to {}",
                args.file.display(),
                public.display()
            );
            EXIT_OK
        }
        Err(e) => {
            report(&e);
            EXIT_FAILED
        }
    }
}
