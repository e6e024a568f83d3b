//! age X25519 recipients (`dump --encrypt-to age1…`, `restore --decrypt-key IDENTITY`):
//! the dump encrypts the image with a fresh random secret, exactly as `--encrypt-key`
//! does, and keeps that secret in the manifest only wrapped for the recipients by the
//! `age` crate (the reference Rust implementation of age, format age-encryption.org/v1);
//! the restore unwraps it with an identity file (`AGE-SECRET-KEY-1…` lines, as
//! `age-keygen` or `stasis keygen --age` write). It owns the wrapping and the identity
//! and recipient files, not the cipher of the files (`sealed`) nor the manifest (`store`).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519::{Identity, Recipient};

use super::error::StoreError;
use super::keys::{key_error, SecretKey};

/// The identities of an identity file. `Debug` shows only how many.
#[derive(Clone, Default)]
pub struct Identities(Vec<Identity>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} redacted)", self.0.len())
    }
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// True when the key file at `path` is an age identity file rather than a `stasis keygen`
/// key (it reads the file's first bytes only).
pub fn is_identity_file(path: &Path) -> Result<bool, StoreError> {
    let mut head = Vec::new();
    let file = fs::File::open(path).map_err(StoreError::io("open", path))?;
    file.take(4096)
        .read_to_end(&mut head)
        .map_err(StoreError::io("read", path))?;
    let text = String::from_utf8_lossy(&head);
    Ok(text
        .lines()
        .any(|l| l.trim().starts_with("AGE-SECRET-KEY-")))
}

/// Reads an age identity file: one `AGE-SECRET-KEY-1…` per line, `#` comments and blank
/// lines ignored; a regular file that neither group nor others may read.
pub fn read_identities(path: &Path) -> Result<Identities, StoreError> {
    let meta = fs::metadata(path).map_err(StoreError::io("stat", path))?;
    if !meta.is_file() || meta.mode() & 0o077 != 0 {
        return Err(key_error(path, "not a regular file of mode 0600"));
    }
    let text = fs::read_to_string(path).map_err(StoreError::io("read", path))?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = Identity::from_str(line)
            .map_err(|_| key_error(path, "a line is not an age X25519 identity"))?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(key_error(path, "no AGE-SECRET-KEY-1 identity in the file"));
    }
    Ok(Identities(out))
}

/// Parses `--encrypt-to` recipients (`age1…`, public keys).
pub fn parse_recipients(texts: &[String]) -> Result<Vec<Recipient>, StoreError> {
    texts
        .iter()
        .map(|t| {
            Recipient::from_str(t.trim()).map_err(|_| StoreError::Recipient { text: t.clone() })
        })
        .collect()
}

/// The secret wrapped for `recipients` (a binary age file).
pub fn wrap(secret: &SecretKey, recipients: &[Recipient]) -> Result<Vec<u8>, StoreError> {
    let fail = |what: String| StoreError::Wrap { what };
    let list = recipients.iter().map(|r| r as &dyn age::Recipient);
    let enc = age::Encryptor::with_recipients(list).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).map_err(|e| fail(e.to_string()))?;
    w.write_all(secret.bytes())
        .map_err(|e| fail(e.to_string()))?;
    w.finish().map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

/// The secret `wrapped` holds, unwrapped with one of `ids`; `WrongKey` when none of them
/// is a recipient (or the wrapped key was altered).
pub fn unwrap(dir: &Path, wrapped: &[u8], ids: &Identities) -> Result<SecretKey, StoreError> {
    let wrong = || StoreError::WrongKey { dir: dir.into() };
    let dec = age::Decryptor::new(wrapped).map_err(|_| wrong())?;
    let list = ids.0.iter().map(|i| i as &dyn age::Identity);
    let mut r = dec.decrypt(list).map_err(|_| wrong())?;
    let mut bytes = [0u8; 32];
    r.read_exact(&mut bytes).map_err(|_| wrong())?;
    let mut rest = [0u8; 1];
    if !matches!(r.read(&mut rest), Ok(0)) {
        return Err(wrong());
    }
    let key = SecretKey::from_bytes(bytes);
    bytes.fill(0);
    Ok(key)
}

/// `stasis keygen --age FILE`: a new identity in FILE (mode 0600, with its public key in
/// a comment, as age-keygen writes) and its recipient in `FILE.pub`; returns the recipient.
pub fn write_identity(path: &Path) -> Result<String, StoreError> {
    let id = Identity::generate();
    let public = id.to_public().to_string();
    let secret = id.to_string();
    let text = format!("# public key: {public}\n{}", secret.expose_secret());
    super::keys::write_new(path, &text, 0o600)?;
    super::keys::write_new(&super::keys::public_path(path), &public, 0o644)?;
    Ok(public)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wraps_for_a_recipient_and_refuses_another_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let public = write_identity(&path).unwrap();
        assert!(is_identity_file(&path).unwrap());
        let ids = read_identities(&path).unwrap();
        assert!(!format!("{ids:?}").contains("AGE-SECRET"));
        let secret = SecretKey::generate().unwrap();
        let wrapped = wrap(&secret, &parse_recipients(&[public]).unwrap()).unwrap();
        assert_eq!(unwrap(dir.path(), &wrapped, &ids).unwrap(), secret);
        let other = dir.path().join("other");
        write_identity(&other).unwrap();
        let other = read_identities(&other).unwrap();
        let err = unwrap(dir.path(), &wrapped, &other).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
        assert!(parse_recipients(&["age1nope".into()]).is_err());
    }
}
