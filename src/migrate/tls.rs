//! Certificate TLS of the page stream (`--tls --tls-cacert F --tls-cert F --tls-key F`,
//! CRIU's option names): mutual authentication with rustls, each side presenting its
//! certificate and checking the other's against the CA file; `--tls-no-cn-verify` keeps
//! the chain check and skips the check that the server's certificate names the address
//! dialled. rustls is a well-kept pure-Rust TLS library; it is built with its `ring`
//! provider (no cmake build of aws-lc) and TLS 1.2 and 1.3.
//!
//! The TLS handshake runs on the socket right after the plain stasis hellos (which say
//! that both sides want certificates), then the server, its check of the client done,
//! sends [`CONFIRM`]: a client whose certificate was refused learns it from that read,
//! before it sends any frame. It owns the configurations and the encrypted link
//! ([`Link`]), not the frames (`wire.rs`).

use std::io::{IoSlice, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use super::error::MigrateError;

/// What the server sends once it accepted the client's certificate.
const CONFIRM: &[u8; 8] = b"STASISOK";

/// The files of `--tls-cacert`, `--tls-cert`, `--tls-key` and `--tls-no-cn-verify`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub no_cn_verify: bool,
}

/// Both ends' configurations, built from [`TlsFiles`] (each side uses its own).
#[derive(Debug)]
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn setup_error(path: &Path, what: impl std::fmt::Display) -> MigrateError {
    MigrateError::TlsSetup {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// ring's provider (deprecated for lacking post-quantum key exchange, which only the
/// aws-lc provider has, and that one needs cmake and a C build of aws-lc).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Reads the CA, the certificate and its key, and builds both configurations.
    pub fn load(files: &TlsFiles) -> Result<TlsConfig, MigrateError> {
        let roots = Arc::new(roots(&files.cacert)?);
        let certs = certs(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| setup_error(&files.key, format!("no private key read: {e}")))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| setup_error(&files.cacert, e))?;
        let verifier: Arc<dyn ServerCertVerifier> = match files.no_cn_verify {
            true => Arc::new(AnyName(server_verifier)),
            false => server_verifier,
        };
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(&files.cert, e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(|e| setup_error(&files.key, e))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| setup_error(&files.cacert, e))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(&files.cert, e))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(certs, key)
            .map_err(|e| setup_error(&files.key, e))?;
        Ok(TlsConfig {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, MigrateError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setup_error(path, format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(setup_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<RootCertStore, MigrateError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store
            .add(c)
            .map_err(|e| setup_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

/// The server's certificate checked against the CA, whatever name it carries
/// (`--tls-no-cn-verify`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain is verified.
        match (self.0).verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The page stream's socket, plain or inside TLS.
pub enum Link {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Link {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Client(s) => &s.sock,
            Link::Server(s) => &s.sock,
        }
    }

    /// Sends what TLS holds buffered (a plain socket holds nothing).
    pub fn flush_tls(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(_) => Ok(()),
            Link::Client(s) => s.flush(),
            Link::Server(s) => s.flush(),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Client(s) => s.read(buf),
            Link::Server(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write_vectored(bufs),
            Link::Client(s) => s.write_vectored(bufs),
            Link::Server(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_tls()
    }
}

/// The host part of `ADDR:PORT` (`[V6]:PORT` too), the name the server's certificate
/// must carry.
fn host_of(peer: &str) -> &str {
    let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// TLS as the client on `tcp`: the handshake, then the server's word that it accepted
/// this side's certificate. The error says what was refused, by whom.
pub fn client(cfg: &TlsConfig, tcp: TcpStream, peer: &str) -> Result<Link, String> {
    let name = ServerName::try_from(host_of(peer).to_string())
        .map_err(|e| format!("{peer} is no name a certificate can carry: {e}"))?;
    let conn = ClientConnection::new(cfg.client.clone(), name)
        .map_err(|e| format!("cannot start TLS: {e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| say(&e, "the page server"))?;
    }
    let mut got = [0u8; CONFIRM.len()];
    s.read_exact(&mut got)
        .map_err(|e| say(&e, "the page server"))?;
    if &got != CONFIRM {
        return Err("the page server sent no TLS confirmation".into());
    }
    Ok(Link::Client(Box::new(s)))
}

/// TLS as the server on `tcp`: the handshake (the client's certificate checked), then
/// [`CONFIRM`].
pub fn server(cfg: &TlsConfig, tcp: TcpStream) -> Result<Link, String> {
    let conn =
        ServerConnection::new(cfg.server.clone()).map_err(|e| format!("cannot start TLS: {e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            // Our alert (why the client's certificate was refused) goes out first.
            while s.conn.wants_write() && s.conn.write_tls(&mut s.sock).is_ok_and(|n| n > 0) {}
            return Err(say(&e, "the client"));
        }
    }
    s.write_all(CONFIRM)
        .and_then(|()| s.flush())
        .map_err(|e| say(&e, "the client"))?;
    Ok(Link::Server(Box::new(s)))
}

/// A failed TLS step said as what it means: our check of `other`'s certificate, or
/// `other` refusing ours.
fn say(e: &std::io::Error, other: &str) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "{other}'s certificate is refused: {} (checked against --tls-cacert)",
            rustls::Error::InvalidCertificate(c.clone())
        ),
        Some(rustls::Error::NoCertificatesPresented) => {
            format!("{other} presented no certificate (it needs --tls-cert and --tls-key)")
        }
        Some(rustls::Error::AlertReceived(a)) => format!(
            "{other} refused the TLS handshake (alert {a:?}): it does not trust this side's certificate, or this side is not the peer it expects"
        ),
        Some(other_err) => format!("TLS handshake with {other} failed: {other_err}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => format!(
            "{other} closed the connection during the TLS handshake (it refused this side's certificate, or does not speak TLS)"
        ),
        None => format!("TLS handshake with {other} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{host_of, TlsConfig, TlsFiles};

    #[test]
    fn unreadable_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let files = TlsFiles {
            cacert: ca.clone(),
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("missing.key"),
            no_cn_verify: false,
        };
        let e = TlsConfig::load(&files).expect_err("no certificate in the CA file");
        let line = crate::error_line(&e);
        assert!(
            line.contains("ca.pem") && line.contains("no PEM certificate"),
            "{line}"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("10.0.0.1:7000"), "10.0.0.1");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("page.example:1"), "page.example");
    }
}
