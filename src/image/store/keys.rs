//! Key files: a secret key is 32 random bytes written as 64 hex digits in a file of mode
//! 0600 (`stasis keygen FILE`), its ed25519 public key 64 hex digits in `FILE.pub`. Keys
//! are only ever read from files (never from the command line, where `ps` shows them),
//! and never written into an image or a message. The purposes are kept apart by deriving
//! a key per use with BLAKE3's `derive_key` from the secret (the secret itself is the
//! ed25519 seed of `--sign`).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::error::StoreError;

/// A 32-byte secret (an encryption key or a signing seed). Its `Debug` shows nothing of it
/// and it is overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

impl SecretKey {
    /// Reads a secret key file: 64 hex digits (surrounding white space ignored), in a
    /// regular file that neither group nor others may read.
    pub fn read(path: &Path) -> Result<Self, StoreError> {
        let meta = fs::metadata(path).map_err(StoreError::io("stat", path))?;
        if !meta.is_file() {
            return Err(key_error(path, "not a regular file"));
        }
        if meta.mode() & 0o077 != 0 {
            let what = format!(
                "mode {:o} lets others read the key; chmod 600 it",
                meta.mode() & 0o7777
            );
            return Err(key_error(path, what));
        }
        let mut text = String::new();
        let file = fs::File::open(path).map_err(StoreError::io("open", path))?;
        file.take(256)
            .read_to_string(&mut text)
            .map_err(StoreError::io("read", path))?;
        parse_hex(text.trim(), path).map(SecretKey)
    }

    /// The key of these 32 bytes (an unwrapped `--encrypt-to` secret).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// The secret's bytes (to wrap it for `--encrypt-to` recipients).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A new random key.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0; 32];
        random_bytes(&mut bytes)?;
        Ok(SecretKey(bytes))
    }

    /// A key derived from this one for `purpose` (BLAKE3 `derive_key` context).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }

    /// The ed25519 key whose seed this secret is.
    pub fn signing(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&self.0)
    }

    /// Writes the key to `path` (created, mode 0600) and its ed25519 public key to
    /// `path.pub`; neither may exist.
    pub fn write_pair(&self, path: &Path) -> Result<(), StoreError> {
        let public = public_path(path);
        write_new(path, &hex(&self.0), 0o600)?;
        let verifying = self.signing().verifying_key();
        write_new(&public, &hex(verifying.as_bytes()), 0o644)
    }
}

/// Where `stasis keygen FILE` puts the public key: `FILE.pub`.
pub fn public_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".pub");
    name.into()
}

/// Reads a public key file (64 hex digits, as `stasis keygen` writes `FILE.pub`).
pub fn read_public(path: &Path) -> Result<ed25519_dalek::VerifyingKey, StoreError> {
    let text = fs::read_to_string(path).map_err(StoreError::io("read", path))?;
    let bytes = parse_hex(text.trim(), path)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| key_error(path, "not an ed25519 public key"))
}

/// Fills `out` from the kernel's random source.
pub fn random_bytes(out: &mut [u8]) -> Result<(), StoreError> {
    let path = Path::new("/dev/urandom");
    let mut file = fs::File::open(path).map_err(StoreError::io("open", path))?;
    file.read_exact(out).map_err(StoreError::io("read", path))
}

pub(super) fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(StoreError::io("create", path))?;
    writeln!(file, "{text}").map_err(StoreError::io("write", path))
}

pub(super) fn key_error(path: &Path, what: impl Into<String>) -> StoreError {
    StoreError::KeyFile {
        path: path.into(),
        what: what.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str, path: &Path) -> Result<[u8; 32], StoreError> {
    let bad = || key_error(path, "expected 64 hex digits (as `stasis keygen` writes)");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keygen_round_trip_and_mode_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SecretKey::generate().unwrap();
        key.write_pair(&path).unwrap();
        assert_eq!(SecretKey::read(&path).unwrap(), key);
        let public = read_public(&public_path(&path)).unwrap();
        assert_eq!(public, key.signing().verifying_key());
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = SecretKey::read(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(key.write_pair(&path).is_err(), "never overwrites a key");
        assert!(!format!("{key:?}").contains(&hex(&key.0)));
    }

    #[test]
    fn refuses_malformed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new(&path, "abc", 0o600).unwrap();
        assert!(SecretKey::read(&path).is_err());
    }
}
