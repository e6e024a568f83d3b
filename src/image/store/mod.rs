//! The image store: how the files of an image directory are kept at rest and carried —
//! compressed, encrypted, signed, or sent as one stream. Pages files are sealed as the
//! dump writes them (`sealed::PagesSeal`, through `ImageWriter::set_store`); every other
//! file is sealed, and the manifest written and signed, once the directory is complete and
//! before it is committed ([`seal_dir`]). It turns such a directory back into a plain one
//! that `load` reads, verifying everything before restore creates any process ([`open`]).
//! It owns `store.img` (kind 20, [`StoreManifest`]), `store.sig` (kind 21,
//! [`StoreSignature`]), the sealed file layout (`sealed`) and the stream (`stream`); not
//! what the files hold.
//!
//! A sealed image is opened by unsealing every file into a private temporary directory
//! (under `$TMPDIR`, else `/tmp`; mode 0700, removed when the restore ends): the restore
//! reads the plain copy, so nothing it reads was not authenticated first.

pub mod error;
pub mod indexed;
pub mod keys;
mod parents;
pub mod recipients;
pub mod sealed;
pub mod stream;

use std::fs::{self, DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use keys::SecretKey;
pub use sealed::Compression;

use super::file::{encode, read, Kind};

/// Name of the manifest: present exactly when the image was sealed or signed.
pub const MANIFEST: &str = "store.img";
/// Name of the signature of `store.img`.
pub const SIGNATURE: &str = "store.sig";
const KEY_ID_CONTEXT: &str = "stasis 2026-12 image key id";
const MAC_CONTEXT: &str = "stasis 2026-12 image manifest mac";

/// How `store.img` lists the image's files (kind 20).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreManifest {
    pub compression: Compression,
    pub cipher: Cipher,
    /// Every file of the image but `store.img` and `store.sig`, in name order.
    pub files: Vec<StoredFile>,
    /// With a cipher: keyed BLAKE3 (key derived from the secret) of this record's payload
    /// encoded with `mac` empty; else empty.
    pub mac: Vec<u8>,
}

/// How the image's files are encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    None,
    /// Chunked XChaCha20-Poly1305; `key_id` tells a wrong key from damage.
    XChaCha20Poly1305 {
        key_id: [u8; 16],
    },
    /// As `XChaCha20Poly1305`, with a random secret kept here only wrapped (an age file)
    /// for the `--encrypt-to` recipients (format 14).
    AgeX25519 {
        key_id: [u8; 16],
        wrapped: Vec<u8>,
    },
}

/// One file of the image as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    /// Length of the file as stored (sealed or plain).
    pub len: u64,
    /// BLAKE3 of the file as stored.
    pub digest: [u8; 32],
    /// Length of the plain image file.
    pub plain_len: u64,
}

/// `store.sig` (kind 21): an ed25519 signature of the whole `store.img` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSignature {
    pub public_key: [u8; 32],
    /// 64 bytes.
    pub signature: Vec<u8>,
}

/// What `dump` was asked to do with the image's files.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub compression: Compression,
    /// `--encrypt-key FILE`.
    pub encrypt: Option<SecretKey>,
    /// `--sign FILE`.
    pub sign: Option<SecretKey>,
    /// `--encrypt-to RECIPIENT`: `encrypt` is then a fresh random secret, kept in the
    /// manifest wrapped for these.
    pub recipients: Vec<age::x25519::Recipient>,
    /// `dump --no-sync`: the image is committed without being made durable first
    /// (`ImageWriter::set_sync`); `stasis checkpoint` never sets it.
    pub no_sync: bool,
    /// `dump --direct-io`: plain pages files are written with `O_DIRECT`
    /// (`PagesWriter::use_direct`).
    pub direct_io: bool,
}

impl StoreOptions {
    /// How pages files are sealed as they are written: `None` when files stay plain.
    pub fn pages_sealing(&self) -> Option<PagesSealing> {
        self.rewrites().then(|| PagesSealing {
            compression: self.compression,
            key: self
                .encrypt
                .as_ref()
                .map(|k| k.derive(sealed::CIPHER_CONTEXT)),
            done: Sealed::default(),
        })
    }

    /// Nothing to do: the image stays as `ImageWriter` wrote it.
    pub fn is_plain(&self) -> bool {
        self.compression == Compression::None && self.encrypt.is_none() && self.sign.is_none()
    }

    fn rewrites(&self) -> bool {
        self.compression != Compression::None || self.encrypt.is_some()
    }
}

/// What a pages file sealed as it is written needs (`ImageWriter::pages`), and where it
/// leaves its length and digest for [`seal_dir`].
#[derive(Clone)]
pub struct PagesSealing {
    pub compression: Compression,
    pub key: Option<sealed::CipherKey>,
    pub done: Sealed,
}

/// Pages files sealed as they were written, by name.
pub type Sealed = std::sync::Arc<Mutex<Vec<(String, sealed::Sealed)>>>;

impl std::fmt::Debug for PagesSealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keyed = self.key.is_some();
        write!(
            f,
            "PagesSealing({:?}, encrypted: {keyed})",
            self.compression
        )
    }
}

/// What `restore` (and `inspect`) may use to open a stored image.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `--decrypt-key FILE`.
    pub decrypt: Option<SecretKey>,
    /// `--require-signature PUBFILE`.
    pub require_signature: Option<ed25519_dalek::VerifyingKey>,
    /// `--decrypt-key IDENTITY_FILE` of an image made with `--encrypt-to`.
    pub identities: recipients::Identities,
}

impl OpenOptions {
    /// Reads the `--decrypt-key` file into `decrypt` (a `stasis keygen` key) or
    /// `identities` (an age identity file).
    pub fn read_decrypt_key(&mut self, path: &Path) -> Result<(), StoreError> {
        if recipients::is_identity_file(path)? {
            self.identities = recipients::read_identities(path)?;
        } else {
            self.decrypt = Some(SecretKey::read(path)?);
        }
        Ok(())
    }
}

/// Seals every file of the written (not yet committed) directory `dir` in place, then
/// writes `store.img` and, with a signing key, `store.sig`.
///
/// `done` holds the pages files sealed as they were written, taken as they are.
pub fn seal_dir(dir: &Path, opts: &StoreOptions, done: Option<&Sealed>) -> Result<(), StoreError> {
    if opts.is_plain() {
        return Ok(());
    }
    let names = image_files(dir)?;
    let cipher_key = opts
        .encrypt
        .as_ref()
        .map(|k| k.derive(sealed::CIPHER_CONTEXT));
    let mut written: Vec<(String, sealed::Sealed)> = match done {
        Some(d) => std::mem::take(&mut *d.lock().unwrap_or_else(|e| e.into_inner())),
        None => Vec::new(),
    };
    written.sort_by(|a, b| a.0.cmp(&b.0));
    let files = parallel(&names, |name| {
        if let Ok(i) = written.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            let s = &written[i].1;
            return Ok(StoredFile {
                name: name.clone(),
                len: s.len,
                digest: s.digest,
                plain_len: s.plain_len,
            });
        }
        if opts.rewrites() {
            seal_one(dir, name, opts.compression, cipher_key.as_ref())
        } else {
            digest_one(dir, name)
        }
    })?;
    let cipher = match &opts.encrypt {
        Some(k) if !opts.recipients.is_empty() => Cipher::AgeX25519 {
            key_id: key_id(k),
            wrapped: recipients::wrap(k, &opts.recipients)?,
        },
        Some(k) => Cipher::XChaCha20Poly1305 { key_id: key_id(k) },
        None => Cipher::None,
    };
    let mut manifest = StoreManifest {
        compression: opts.compression,
        cipher,
        files,
        mac: Vec::new(),
    };
    if let Some(k) = &opts.encrypt {
        manifest.mac = mac(&manifest, k)?.to_vec();
    }
    let bytes = encode(Kind::Store, &manifest)?;
    write_file(&dir.join(MANIFEST), &bytes)?;
    if let Some(k) = &opts.sign {
        let signing = k.signing();
        let sig = StoreSignature {
            public_key: signing.verifying_key().to_bytes(),
            signature: signing.sign(&bytes).to_bytes().to_vec(),
        };
        write_file(&dir.join(SIGNATURE), &encode(Kind::StoreSignature, &sig)?)?;
    }
    Ok(())
}

/// Seals one file, unless it was sealed as it was written (`PagesSeal`).
fn seal_one(
    dir: &Path,
    name: &str,
    compression: Compression,
    key: Option<&sealed::CipherKey>,
) -> Result<StoredFile, StoreError> {
    let (src, tmp) = (dir.join(name), dir.join(format!(".{name}.sealing")));
    let s = match sealed::survey(&src)? {
        Some(s) => s,
        None => {
            let s = sealed::seal(&src, &tmp, name, compression, key)?;
            fs::rename(&tmp, &src).map_err(StoreError::io("rename", &tmp))?;
            s
        }
    };
    Ok(StoredFile {
        name: name.into(),
        len: s.len,
        digest: s.digest,
        plain_len: s.plain_len,
    })
}

fn digest_one(dir: &Path, name: &str) -> Result<StoredFile, StoreError> {
    let path = dir.join(name);
    let (len, digest) = digest_file(&path)?;
    Ok(StoredFile {
        name: name.into(),
        len,
        digest,
        plain_len: len,
    })
}

/// Length and BLAKE3 of a file.
fn digest_file(path: &Path) -> Result<(u64, [u8; 32]), StoreError> {
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut hash = blake3::Hasher::new();
    let len = std::io::copy(&mut file, &mut hash).map_err(StoreError::io("read", path))?;
    Ok((len, *hash.finalize().as_bytes()))
}

fn key_id(key: &SecretKey) -> [u8; 16] {
    let mut id = [0; 16];
    id.copy_from_slice(&key.derive(KEY_ID_CONTEXT)[..16]);
    id
}

/// The manifest's MAC: keyed BLAKE3 of its payload with `mac` empty.
fn mac(manifest: &StoreManifest, key: &SecretKey) -> Result<[u8; 32], StoreError> {
    let unsigned = StoreManifest {
        mac: Vec::new(),
        ..manifest.clone()
    };
    let bytes = postcard::to_allocvec(&unsigned)
        .map_err(|source| StoreError::Image(super::ImageError::Encode { source }))?;
    Ok(*blake3::keyed_hash(&key.derive(MAC_CONTEXT), &bytes).as_bytes())
}

/// An image directory ready for `load`: the directory itself, or a verified plain copy
/// that is removed when this is dropped.
#[derive(Debug)]
pub struct Opened {
    dir: PathBuf,
    _temp: Option<TempDir>,
    /// `dir` is a copy decoded and verified whole (not links to a plain image's files).
    copy: bool,
    pages: SealedPages,
    /// The opened ancestors of an incremental image (`parents.rs`), kept while in use.
    parents: Vec<Opened>,
}

/// Pages files left sealed by [`open_for_restore`], by the path of their stand-in in the
/// opened directory.
pub type SealedPages = std::collections::BTreeMap<PathBuf, indexed::Indexed>;

impl Opened {
    /// The directory to load.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `dir` (this image's or an ancestor's directory) is a copy decoded and
    /// verified whole: its pages files need no second pass.
    pub fn verified(&self, dir: &Path) -> bool {
        parents::verified_copy(self, dir)
    }

    /// The pages files [`open_for_restore`] verified but left sealed: their stand-ins in
    /// [`Opened::dir`] hold only the pages header (the rest reads as zeros), and their
    /// data must be decoded from here.
    pub fn sealed_pages(&self) -> &SealedPages {
        &self.pages
    }
}

/// Verifies the stored image in `dir` (signature, manifest, every file) and returns a
/// directory `load` can read. A plain image without `store.img` is returned as it is
/// (refused if a signature is required).
pub fn open(dir: &Path, opts: &OpenOptions) -> Result<Opened, StoreError> {
    open_with(dir, opts, false)
}

/// [`open`], but the compressed or encrypted pages files (`pages-*.img`) are verified
/// whole (framing, length, digest) without being decoded into the copy: the restore
/// decodes them straight into the restored memory ([`Opened::sealed_pages`]), checking
/// each chunk again as it does. Only for a caller that fills memory from those.
pub fn open_for_restore(dir: &Path, opts: &OpenOptions) -> Result<Opened, StoreError> {
    open_with(dir, opts, true)
}

fn open_with(dir: &Path, opts: &OpenOptions, defer: bool) -> Result<Opened, StoreError> {
    let mut opened = open_one(dir, opts, defer)?;
    parents::open(&mut opened, dir, opts, 0)?;
    Ok(opened)
}

/// The image in `dir` alone, verified (its parents are `parents.rs`'s).
fn open_one(dir: &Path, opts: &OpenOptions, defer: bool) -> Result<Opened, StoreError> {
    // Most images are plain: no temporary directory for them (its mkdir and rmdir were a
    // third of a small restore's load).
    let as_is = || Opened {
        dir: dir.into(),
        _temp: None,
        copy: false,
        pages: SealedPages::new(),
        parents: Vec::new(),
    };
    if is_plain(dir, opts)? {
        return Ok(as_is());
    }
    let temp = TempDir::new("unseal")?;
    let decoded = temp.path.join("image");
    let Some(pages) = unseal_deferring(dir, opts, &decoded, &|_| true, defer)? else {
        return Ok(as_is());
    };
    Ok(Opened {
        dir: decoded,
        _temp: Some(temp),
        copy: true,
        pages,
        parents: Vec::new(),
    })
}

/// True when `dir` holds a plain image without `store.img` (refused if a signature is
/// required).
fn is_plain(dir: &Path, opts: &OpenOptions) -> Result<bool, StoreError> {
    if dir.join(MANIFEST).exists() {
        return Ok(false);
    }
    match opts.require_signature {
        Some(_) => Err(StoreError::NotSigned { dir: dir.into() }),
        None => Ok(true),
    }
}

/// Verifies the stored image in `dir` as [`open`] does and, if its files are compressed
/// or encrypted, decodes those `want` accepts into `dest` (a new directory, mode 0700):
/// true then. False when the image is plain (signed or not): its files (those `want`
/// accepts) were checked in place and `dest` is not made.
pub fn unseal_into(
    dir: &Path,
    opts: &OpenOptions,
    dest: &Path,
    want: &(dyn Fn(&str) -> bool + Sync),
) -> Result<bool, StoreError> {
    Ok(unseal_deferring(dir, opts, dest, want, false)?.is_some())
}

/// [`unseal_into`]; with `defer`, pages files are verified and left sealed (a stand-in
/// of each in `dest`, see [`open_for_restore`]). `None` when the image is plain.
fn unseal_deferring(
    dir: &Path,
    opts: &OpenOptions,
    dest: &Path,
    want: &(dyn Fn(&str) -> bool + Sync),
    defer: bool,
) -> Result<Option<SealedPages>, StoreError> {
    if is_plain(dir, opts)? {
        return Ok(None);
    }
    let path = dir.join(MANIFEST);
    verify_signature(dir, opts)?;
    let manifest: StoreManifest = read(Kind::Store, &path)?;
    let key = check_key(dir, &manifest, opts)?;
    let key = key.as_ref();
    check_listing(dir, &manifest)?;
    let files: Vec<&StoredFile> = manifest.files.iter().filter(|f| want(&f.name)).collect();
    if manifest.compression == Compression::None && key.is_none() {
        parallel(&files, |f| check_plain(dir, f))?;
        return Ok(None);
    }
    DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(StoreError::io("create directory", dest))?;
    let cipher_key = key.map(|k| k.derive(sealed::CIPHER_CONTEXT));
    let done = parallel(&files, |f| {
        let expect = sealed::Expect {
            len: f.len,
            digest: f.digest,
            plain_len: f.plain_len,
        };
        let (src, dst) = (dir.join(&f.name), dest.join(&f.name));
        if defer && f.name.starts_with("pages-") {
            let indexed = sealed::index(&src, &f.name, cipher_key.as_ref(), &expect)?;
            stand_in(&dst, &indexed)?;
            return Ok(Some((dst, indexed)));
        }
        sealed::unseal(&src, &dst, &f.name, cipher_key.as_ref(), &expect).map(|()| None)
    })?;
    Ok(Some(done.into_iter().flatten().collect()))
}

/// The stand-in of a pages file left sealed: its pages header, then a hole as long as
/// its data (what `load` checks: the header and the length).
fn stand_in(path: &Path, pages: &indexed::Indexed) -> Result<(), StoreError> {
    use std::io::Write;
    let (prefix, len) = pages.prefix();
    let mut file = create_private(path)?;
    file.write_all(prefix)
        .map_err(StoreError::io("write", path))?;
    file.set_len(len).map_err(StoreError::io("write", path))
}

/// The manifest of a stored image (unverified), `None` for a plain image without one.
pub fn manifest(dir: &Path) -> Result<Option<StoreManifest>, StoreError> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read(Kind::Store, &path)?))
}

fn verify_signature(dir: &Path, opts: &OpenOptions) -> Result<(), StoreError> {
    let path = dir.join(SIGNATURE);
    if !path.exists() {
        return match opts.require_signature {
            Some(_) => Err(StoreError::NotSigned { dir: dir.into() }),
            None => Ok(()),
        };
    }
    let sig: StoreSignature = read(Kind::StoreSignature, &path)?;
    let bad = || StoreError::BadSignature { path: path.clone() };
    let public = ed25519_dalek::VerifyingKey::from_bytes(&sig.public_key).map_err(|_| bad())?;
    if opts.require_signature.is_some_and(|k| k != public) {
        return Err(StoreError::OtherSigner { path });
    }
    let bytes: [u8; 64] = sig.signature.as_slice().try_into().map_err(|_| bad())?;
    let manifest = dir.join(MANIFEST);
    let signed = fs::read(&manifest).map_err(StoreError::io("read", &manifest))?;
    public
        .verify(&signed, &ed25519_dalek::Signature::from_bytes(&bytes))
        .map_err(|_| bad())
}

/// The decryption key (given, or unwrapped with the given identities), checked against
/// the manifest's key id and MAC.
fn check_key(
    dir: &Path,
    manifest: &StoreManifest,
    opts: &OpenOptions,
) -> Result<Option<SecretKey>, StoreError> {
    let encrypted = || StoreError::Encrypted { dir: dir.into() };
    let (id, key) = match &manifest.cipher {
        Cipher::None => return Ok(None),
        Cipher::XChaCha20Poly1305 { key_id } => {
            let key = opts
                .decrypt
                .clone()
                .ok_or_else(|| match opts.identities.is_empty() {
                    true => encrypted(),
                    false => StoreError::WrongKey { dir: dir.into() },
                })?;
            (key_id, key)
        }
        Cipher::AgeX25519 { key_id, wrapped } => {
            if opts.identities.is_empty() {
                return Err(match opts.decrypt {
                    Some(_) => StoreError::WrongKey { dir: dir.into() },
                    None => encrypted(),
                });
            }
            (key_id, recipients::unwrap(dir, wrapped, &opts.identities)?)
        }
    };
    if key_id(&key) != *id {
        return Err(StoreError::WrongKey { dir: dir.into() });
    }
    if mac(manifest, &key)?.as_slice() != manifest.mac.as_slice() {
        let path = dir.join(MANIFEST);
        return Err(StoreError::ManifestMac { path });
    }
    Ok(Some(key))
}

/// Every file of the directory is listed (a file slipped in would be loaded), names are
/// plain and listed once.
fn check_listing(dir: &Path, manifest: &StoreManifest) -> Result<(), StoreError> {
    let listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.name.as_str()).collect();
    let path = dir.join(MANIFEST);
    if listed.len() != manifest.files.len() || !listed.iter().all(|n| plain_name(n)) {
        return Err(StoreError::sealed(path, "file names repeated or not plain"));
    }
    for name in image_files(dir)? {
        if !listed.contains(name.as_str()) {
            return Err(StoreError::Unlisted {
                path: dir.join(name),
            });
        }
    }
    Ok(())
}

fn check_plain(dir: &Path, f: &StoredFile) -> Result<(), StoreError> {
    let path = dir.join(&f.name);
    let (len, digest) = digest_file(&path)?;
    if len != f.len {
        return Err(StoreError::Mismatch {
            path,
            what: "length",
        });
    }
    if digest != f.digest {
        return Err(StoreError::Mismatch {
            path,
            what: "digest",
        });
    }
    Ok(())
}

/// Runs `work` on every item on up to one thread per CPU, biggest share first; the
/// results in the items' order, or the first error.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R, StoreError> + Sync,
) -> Result<Vec<R>, StoreError> {
    let threads = crate::sys::cpu::usable();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R, StoreError>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = work(item);
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            });
        }
    });
    let all = results.into_inner().unwrap_or_else(|e| e.into_inner());
    all.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::stream("a worker thread failed"))))
        .collect()
}

/// The files of `dir` but `store.img` and `store.sig`, in name order.
fn image_files(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = file_names(dir)?;
    names.retain(|n| n != MANIFEST && n != SIGNATURE);
    Ok(names)
}

/// The regular files of `dir`, in name order; anything else (a directory, a link) is
/// refused.
pub fn file_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("read directory", dir))? {
        let entry = entry.map_err(StoreError::io("read directory", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(StoreError::io("stat", &path))?;
        let name = entry
            .file_name()
            .into_string()
            .ok()
            .filter(|n| plain_name(n));
        match name {
            Some(n) if kind.is_file() => names.push(n),
            _ => return Err(StoreError::sealed(path, "not a regular file of an image")),
        }
    }
    names.sort();
    Ok(names)
}

/// A file name without directories, not `.`/`..`, not empty, at most 255 bytes.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains('/') && name != "." && name != ".."
}

/// Creates `path` for writing, mode 0600 (it holds process memory); must not exist.
pub fn create_private(path: &Path) -> Result<File, StoreError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("create", path))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    create_private(path)?
        .write_all(bytes)
        .map_err(StoreError::io("write", path))
}

/// A private directory under `$TMPDIR` (else `/tmp`), mode 0700, removed with everything
/// in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `stasis-<what>-<pid>-<n>`, made new (never an existing one).
    pub fn new(what: &str) -> Result<Self, StoreError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var_os("TMPDIR").map_or_else(|| "/tmp".into(), PathBuf::from);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("stasis-{what}-{}-{n}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create directory", &path)(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
