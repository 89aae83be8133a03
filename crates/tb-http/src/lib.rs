//! The one outbound HTTP(S) client of tokenbuddy.
//!
//! The proxy's upstream calls, the registry fetcher and the seller wire
//! client all go through the same [`HttpClient`]: one connection pool, one
//! TLS setup (rustls with the `ring` provider, the system roots plus
//! `tls.extra_ca_file`), one set of connect and pool timeouts. Keeping the
//! builder here, and only here, means a private CA configured once is
//! trusted by every call the daemon makes, and `hyper-rustls` /
//! `rustls-native-certs` stay out of every other crate (deny.toml enforces
//! it).
//!
//! It also holds the small helpers those callers used to write three times:
//! [`error_chain`] (hyper's own messages are terse; the causes say what
//! failed), [`duration_ms`] and the [`USER_AGENT`].
//!
//! ```no_run
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // System roots plus a private CA (`tls.extra_ca_file`).
//! let proxy = tb_http::ProxySettings::default();
//! let client = tb_http::build_client(Some(std::path::Path::new("/etc/corp-ca.pem")), &proxy)?;
//! let request = http::Request::get("https://registry.example/v1/sellers.json")
//!     .header(http::header::USER_AGENT, tb_http::USER_AGENT)
//!     .body(Full::new(Bytes::new()))?;
//! match client.request(request).await {
//!     Ok(response) => println!("HTTP {}", response.status()),
//!     Err(e) => println!("failed: {}", tb_http::error_chain(&e)),
//! }
//! # Ok(()) }
//! ```

mod proxy;

pub use proxy::{
    ConnectError, ProxyConfigError, ProxyConnector, ProxySettings, is_loopback_host,
    mask_credentials, route,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use rustls::RootCertStore;

/// The pooled HTTP(S) client every outbound call goes through. Cheap to
/// clone: clones share the pool.
pub type HttpClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// The `User-Agent` tokenbuddy sends (`tokenbuddy/<version>`).
pub const USER_AGENT: &str = concat!("tokenbuddy/", env!("CARGO_PKG_VERSION"));

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most idle connections kept per host.
pub const POOL_MAX_IDLE_PER_HOST: usize = 64;

/// Why the TLS client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The extra CA file could not be read.
    #[error("tls.extra_ca_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable certificate.
    #[error(
        "tls.extra_ca_file {path}: {problem}; it must contain PEM \"BEGIN CERTIFICATE\" blocks"
    )]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the pooled client: HTTP/1.1 over TCP or TLS (rustls with the
/// system roots plus `extra_ca_file`), keep-alive, no Nagle delay, through
/// the HTTP CONNECT proxy `proxy` selects per destination (loopback always
/// direct; see [`ProxyConnector`]).
///
/// # Errors
///
/// [`TlsSetupError`] when `extra_ca_file` cannot be read or holds no
/// certificate, or rustls refuses the configuration. A broken system store
/// is not an error (see [`system_roots`]).
pub fn build_client(
    extra_ca_file: Option<&Path>,
    proxy: &ProxySettings,
) -> Result<HttpClient, TlsSetupError> {
    Ok(ClientFactory::system(extra_ca_file, proxy)?.client())
}

/// The same client, trusting exactly `roots` (tests pass an empty store and
/// speak plain HTTP to loopback, or a test CA).
///
/// # Errors
///
/// [`TlsSetupError::Rustls`] when rustls refuses the configuration.
pub fn client_with_roots(roots: RootCertStore) -> Result<HttpClient, TlsSetupError> {
    client_with_roots_and_proxy(roots, &ProxySettings::default())
}

/// The client trusting exactly `roots`, through `proxy`.
///
/// # Errors
///
/// [`TlsSetupError::Rustls`] when rustls refuses the configuration.
pub fn client_with_roots_and_proxy(
    roots: RootCertStore,
    proxy: &ProxySettings,
) -> Result<HttpClient, TlsSetupError> {
    Ok(ClientFactory::new(roots, proxy)?.client())
}

/// Clients with one TLS and proxy setup and a connection pool each: an
/// event loop of the proxy plane keeps its upstream connections to itself,
/// so a request never waits on a connection another thread drives.
#[derive(Clone)]
pub struct ClientFactory {
    connector: HttpsConnector<ProxyConnector>,
}

impl ClientFactory {
    /// The setup trusting exactly `roots`, through `proxy`.
    ///
    /// # Errors
    ///
    /// [`TlsSetupError::Rustls`] when rustls refuses the configuration.
    pub fn new(roots: RootCertStore, proxy: &ProxySettings) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        // https:// URLs reach the TLS layer; the connector itself takes both.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector::new(http, proxy));
        Ok(ClientFactory { connector })
    }

    /// The system roots plus `extra_ca_file`, through `proxy`.
    ///
    /// # Errors
    ///
    /// As [`build_client`].
    pub fn system(
        extra_ca_file: Option<&Path>,
        proxy: &ProxySettings,
    ) -> Result<Self, TlsSetupError> {
        let mut roots = system_roots();
        if let Some(path) = extra_ca_file {
            add_pem_file(&mut roots, path)?;
        }
        ClientFactory::new(roots, proxy)
    }

    /// A client with a pool of its own (its clones share it).
    pub fn client(&self) -> HttpClient {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(self.connector.clone())
    }
}

/// The system's trusted roots. Unusable ones, or a store that cannot be
/// read at all, are skipped: a broken system store must not stop a daemon
/// that only talks to loopback or to a private CA.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// Adds every PEM certificate in `path` to `roots`.
///
/// # Errors
///
/// [`TlsSetupError::Read`] when the file cannot be read,
/// [`TlsSetupError::BadPem`] when a block is malformed or none is found.
pub fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, TlsSetupError> {
    let bad = |problem: String| TlsSetupError::BadPem {
        path: path.to_path_buf(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no certificate found".into()));
    }
    Ok(added)
}

/// An error and its causes, `: `-separated, each cause once (hyper's own
/// messages are terse), e.g. "client error (Connect): tcp connect error:
/// Connection refused (os error 111)".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// `d` in whole milliseconds, saturating at `u64::MAX` (for messages,
/// logs and latencies).
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct Layer {
        msg: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(msg: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            msg,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn error_chain_joins_causes_once() {
        let e = layer(
            "client error (Connect)",
            Some(layer(
                "tcp connect error",
                Some(layer("Connection refused", None)),
            )),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): tcp connect error: Connection refused"
        );
        // A cause already quoted by its parent is not repeated.
        let e = layer("read failed: timed out", Some(layer("timed out", None)));
        assert_eq!(error_chain(&e), "read failed: timed out");
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }

    #[test]
    fn duration_ms_saturates() {
        assert_eq!(duration_ms(Duration::from_micros(2_999)), 2);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn user_agent_names_the_version() {
        assert_eq!(
            USER_AGENT,
            format!("tokenbuddy/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn extra_ca_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let err = build_client(Some(&missing), &ProxySettings::default()).unwrap_err();
        assert!(matches!(err, TlsSetupError::Read { .. }), "{err}");
        assert!(err.to_string().contains("none.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        let err = build_client(Some(&empty), &ProxySettings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no certificate"), "{err}");
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = build_client(Some(&broken), &ProxySettings::default()).unwrap_err();
        assert!(matches!(err, TlsSetupError::BadPem { .. }), "{err}");
    }
}
