//! TLS for the mock upstream: a throwaway private CA, generated per server
//! with `rcgen`, and a loopback server certificate it signs.
//!
//! rustls always uses the `ring` provider explicitly, so nothing depends on
//! a process-wide default crypto provider being installed.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// What [`MockUpstream::start_tls`](crate::MockUpstream::start_tls) needs:
/// the acceptor to wrap accepted connections in, and the CA certificate
/// (PEM) that clients must trust.
pub(crate) struct ServerTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) ca_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(e)
}

/// A certificate for serving TLS in tests, as PEM text: a fresh private
/// CA ("tokenbuddy test CA") and a server certificate it signs for
/// `127.0.0.1` (IP SAN), `localhost` and `upstream.test` (DNS SANs).
pub struct TestCertificate {
    /// The CA certificate clients must trust.
    pub ca_pem: String,
    /// The server's chain: leaf, then the CA.
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate").finish_non_exhaustive()
    }
}

/// Generates a new [`TestCertificate`] (a new CA each call).
pub fn loopback_certificate() -> std::io::Result<TestCertificate> {
    // The CA.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tokenbuddy test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(other)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(other)?;
    let issuer = Issuer::new(ca_params, ca_key);

    // The server (leaf) certificate.
    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "upstream.test".to_owned(),
    ])
    .map_err(other)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "tokenbuddy mock upstream");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(other)?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(other)?;

    Ok(TestCertificate {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: leaf_key.serialize_pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key_der: leaf_key.serialize_der(),
    })
}

/// What [`https_client`] returns.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client (HTTP/1.1) trusting exactly the roots in `ca_pem`.
///
/// # Panics
///
/// When `ca_pem` holds a malformed certificate (a test bug).
pub fn https_client(ca_pem: &str) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        #[allow(clippy::unwrap_used)]
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(clippy::unwrap_used)]
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// A [`loopback_certificate`] served by an acceptor (HTTP/1.1), with the
/// CA certificate (PEM) that clients must trust.
pub(crate) fn loopback_server_tls() -> std::io::Result<ServerTls> {
    let cert = loopback_certificate()?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), key)
        .map_err(other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        ca_pem: cert.ca_pem,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Full};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tb_domain::Protocol;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::https_client;
    use crate::{MockUpstream, Reply, canned};

    /// A client config trusting exactly the roots in `ca_pem` (none if
    /// empty).
    fn client_config(ca_pem: &str) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    #[tokio::test]
    async fn answers_over_https_when_the_ca_is_trusted() {
        let upstream = MockUpstream::start_tls().await.unwrap();
        let port = upstream.addr().port();
        assert_eq!(upstream.base_url(), format!("https://127.0.0.1:{port}/v1"));
        assert_eq!(upstream.root_url(), format!("https://127.0.0.1:{port}"));
        let ca_pem = upstream.ca_pem().expect("a TLS mock has a CA").to_owned();
        assert!(
            ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{ca_pem}"
        );

        let client = https_client(&ca_pem);
        // The canned default, exactly as over plain HTTP.
        let req = Request::post(format!("{}/chat/completions", upstream.base_url()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"model":"gpt-test","stream":true}"#,
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            Bytes::from(canned::sse_body(Protocol::ChatCompletions, "gpt-test"))
        );
        // Scripted replies and recording work the same too.
        upstream.push_reply(Reply::text(418, "teapot"));
        let req = Request::get(format!("{}/healthz", upstream.root_url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
        let seen = upstream.wait_for_requests(2).await;
        assert_eq!(seen[0].path(), "/v1/chat/completions");
        assert_eq!(seen[0].json()["model"], "gpt-test");
        assert_eq!(seen[1].path(), "/healthz");
    }

    #[tokio::test]
    async fn the_certificate_also_names_localhost() {
        let upstream = MockUpstream::start_tls().await.unwrap();
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_config(upstream.ca_pem().unwrap())));
        let tcp = tokio::net::TcpStream::connect(upstream.addr())
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
    }

    #[tokio::test]
    async fn an_untrusted_ca_is_refused_and_nothing_is_recorded() {
        let upstream = MockUpstream::start_tls().await.unwrap();
        // Another mock's CA: a valid CA, just not this server's.
        let other = MockUpstream::start_tls().await.unwrap();
        let client = https_client(other.ca_pem().unwrap());
        let req = Request::get(format!("{}/healthz", upstream.root_url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client.request(req).await.unwrap_err();
        let chain = {
            let mut s = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                s.push_str(": ");
                s.push_str(&e.to_string());
                source = e.source();
            }
            s
        };
        assert!(chain.contains("certificate"), "{chain}");
        assert_eq!(upstream.request_count(), 0);
    }

    #[tokio::test]
    async fn a_plain_mock_has_no_ca() {
        let upstream = MockUpstream::start().await.unwrap();
        assert!(upstream.ca_pem().is_none());
        assert!(upstream.base_url().starts_with("http://127.0.0.1:"));
    }
}
