//! The client against a real loopback server: plain HTTP, and HTTPS through
//! a throwaway CA that is trusted only when given as `extra_ca_file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tb_http::{
    HttpClient, RootCertStore, USER_AGENT, build_client, client_with_roots, error_chain,
};
use tb_test_support::{MockUpstream, Reply};

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn status(client: &HttpClient, url: &str) -> Result<u16, String> {
    client
        .request(get(url))
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| error_chain(&e))
}

#[tokio::test]
async fn plain_http_needs_no_roots() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(Reply::text(204, ""));
    let client = client_with_roots(RootCertStore::empty()).unwrap();
    let url = format!("{}/healthz", mock.root_url());
    assert_eq!(status(&client, &url).await, Ok(204));
    let req = &mock.requests()[0];
    assert_eq!(req.path(), "/healthz");
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_extra_ca_file() {
    let mock = MockUpstream::start_tls().await.unwrap();
    let url = format!("{}/healthz", mock.root_url());
    assert!(url.starts_with("https://"), "{url}");

    // System roots only: the test CA is unknown, and the chain says so.
    let err = status(
        &build_client(None, &tb_http::ProxySettings::default()).unwrap(),
        &url,
    )
    .await
    .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(mock.request_count(), 0);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem().unwrap()).unwrap();
    mock.push_reply(Reply::text(200, "ok"));
    let client = build_client(Some(&ca), &tb_http::ProxySettings::default()).unwrap();
    assert_eq!(status(&client, &url).await, Ok(200));
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn a_refused_connection_names_its_cause() {
    // Bind then drop a listener: the port is free and nothing answers.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = client_with_roots(RootCertStore::empty()).unwrap();
    let err = status(&client, &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    // hyper alone says "client error (Connect)"; the chain adds why.
    assert!(err.starts_with("client error (Connect): "), "{err}");
    assert!(err.len() > "client error (Connect): ".len(), "{err}");
}
