//! Serving HTTPS: the certificate chain and private key, read from PEM
//! files once at start, checked against each other, and turned into the
//! acceptor every accepted connection is wrapped in.
//!
//! rustls always uses the `ring` provider explicitly (as the outbound
//! client does), so nothing depends on a process-wide default provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key cannot be served: what, where and how to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A file cannot be read.
    #[error(
        "{setting} {path}: cannot read it ({source}); check the path and that the daemon's user may read the file"
    )]
    Unreadable {
        /// The config key naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error(
        "{setting} {path}: no PEM certificate in it ({detail}); give the certificate chain, leaf first, as -----BEGIN CERTIFICATE----- blocks"
    )]
    NoCertificate {
        /// The config key naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{setting} {path}: no PEM private key in it ({detail}); give the certificate's key as a -----BEGIN PRIVATE KEY----- (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY block"
    )]
    NoKey {
        /// The config key naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key is not the certificate's.
    #[error(
        "proxy.tls.key_file {key} is not the private key of the certificate in proxy.tls.cert_file {cert}; give the key the certificate was issued for (the leaf certificate comes first in cert_file)"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair for another reason (an unsupported key type…).
    #[error("proxy.tls: the certificate in {cert} and key in {key} cannot be served: {detail}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
}

/// The server side of TLS for a listener: one certificate, HTTP/1.1.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, ServerTlsError> {
    std::fs::read(path).map_err(|source| ServerTlsError::Unreadable {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

impl ServerTls {
    /// Reads the certificate chain (`proxy.tls.cert_file`) and its private
    /// key (`proxy.tls.key_file`) and checks that they belong together.
    ///
    /// # Errors
    ///
    /// [`ServerTlsError`], naming the file and the fix.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, ServerTlsError> {
        let cert_pem = read("proxy.tls.cert_file", cert)?;
        let key_pem = read("proxy.tls.key_file", key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
            .and_then(|chain| {
                if chain.is_empty() {
                    Err("the file has no CERTIFICATE block".to_owned())
                } else {
                    Ok(chain)
                }
            })
            .map_err(|detail| ServerTlsError::NoCertificate {
                setting: "proxy.tls.cert_file",
                path: cert.to_path_buf(),
                detail,
            })?;
        let private =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ServerTlsError::NoKey {
                setting: "proxy.tls.key_file",
                path: key.to_path_buf(),
                detail: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let built = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private));
        let mut config = built.map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => ServerTlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            other => ServerTlsError::Rejected {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                detail: other.to_string(),
            },
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
