//! TLS for AMQPS listeners (rustls): the server certificate chain and key from PEM files,
//! and optionally client certificates verified against a CA (`verify_peer`, and
//! `fail_if_no_peer_cert` to require one), as RabbitMQ's `ssl_options` set them. TLS 1.2
//! and 1.3 are offered. [`Tls`] rereads the files on `reload` (new connections get the new
//! certificates; open ones keep theirs).

pub mod identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Where the certificates are and how clients are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify any they present.
    pub verify_peer: bool,
    /// Refuse clients without a certificate (needs `verify_peer`).
    pub fail_if_no_peer_cert: bool,
    /// The user name a certificate gives for SASL EXTERNAL (offered when `verify_peer`).
    pub login_from: identity::LoginFrom,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Config(String),
}

fn read_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Read {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_error(path, e))?;
    if certs.is_empty() {
        return Err(read_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

impl TlsSettings {
    /// Builds the acceptor: reads the files now, so a bad path or key fails at start (or at
    /// reload) with the reason, never at a client's handshake.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        if self.fail_if_no_peer_cert && !self.verify_peer {
            return Err(TlsError::Config(
                "tls_fail_if_no_peer_cert needs tls_verify_peer".into(),
            ));
        }
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| read_error(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.verify_peer {
            let ca = self.ca.as_ref().ok_or_else(|| {
                TlsError::Config(
                    "tls_verify_peer needs tls_ca (the CA of client certificates)".into(),
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| read_error(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if self.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("certificate and key do not match: {e}")))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The TLS state of the AMQPS listeners: the settings and the acceptor built from them,
/// replaced as a whole by `reload`.
#[derive(Clone)]
pub struct Tls {
    settings: TlsSettings,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl Tls {
    pub fn new(settings: TlsSettings) -> Result<Tls, TlsError> {
        let acceptor = settings.acceptor()?;
        Ok(Tls {
            settings,
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }

    /// SASL EXTERNAL is offered, as it can succeed: client certificates are verified.
    pub fn offers_external(&self) -> bool {
        self.settings.verify_peer
    }

    pub fn login_from(&self) -> identity::LoginFrom {
        self.settings.login_from
    }

    /// Rereads the certificate, key and CA files. On an error the old ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = self.settings.acceptor()?;
        *self.current.write() = acceptor;
        Ok(())
    }
}
