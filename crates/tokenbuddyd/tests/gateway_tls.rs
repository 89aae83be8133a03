//! End-to-end: a network-facing gateway (issue 19, part 3). Beyond
//! loopback the proxy port serves HTTPS only (`[proxy.tls]`, PEM files)
//! and accepts member keys only, never the local access token; `/livez`
//! and `/readyz` answer a load balancer without a token; SIGTERM turns
//! readiness 503 at once while new connections are still served for
//! `proxy.drain_delay_ms` and a running stream finishes. The certificates
//! come from a private CA generated per test; the client trusts only it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, command, home_with_config};
use tb_test_support::tls::{
    HttpsClient as Https, TestCertificate, https_client, loopback_certificate,
};
use tb_test_support::{MockUpstream, StreamEnd, canned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;

/// Writes the certificate chain and key into `dir`; returns their paths.
fn write_pem(dir: &Path, cert: &TestCertificate) -> (PathBuf, PathBuf) {
    let chain = dir.join("gateway.pem");
    let key = dir.join("gateway-key.pem");
    std::fs::write(&chain, &cert.chain_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    (chain, key)
}

/// `[proxy]` with `bind` (and `allow_remote` beyond loopback), `proxy`
/// lines verbatim, and `[proxy.tls]` naming `files` when given.
fn proxy_section(bind: &str, proxy: &str, files: Option<(&Path, &Path)>) -> String {
    let mut s = format!("[proxy]\nbind = \"{bind}\"\n{proxy}\n");
    if bind != "127.0.0.1" {
        s.push_str("allow_remote = true\n");
    }
    if let Some((cert, key)) = files {
        s.push_str(&format!(
            "[proxy.tls]\ncert_file = '{}'\nkey_file = '{}'\n",
            cert.display(),
            key.display()
        ));
    }
    s
}

/// A home whose config serves `upstream` with `proxy` (see [`proxy_section`]).
fn home_for(upstream: &MockUpstream, proxy: &str) -> tempfile::TempDir {
    home_with_config(&two_provider_config(&upstream.base_url(), proxy)).unwrap()
}

async fn start(home: tempfile::TempDir) -> Daemon {
    Daemon::start_in(bin(), home, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap()
}

/// The daemon's printed `https://HOST:PORT`, reached over 127.0.0.1.
fn loopback_url(daemon: &Daemon) -> String {
    let port = daemon.proxy_url.rsplit(':').next().unwrap();
    assert!(
        daemon.proxy_url.starts_with("https://"),
        "{}",
        daemon.proxy_url
    );
    format!("https://127.0.0.1:{port}")
}

async fn send(
    client: &Https,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(client: &Https, url: &str) -> (StatusCode, serde_json::Value) {
    let (status, body) = send(client, Method::GET, url, &[], "").await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn create_key(home: &Path, member: &str) -> String {
    let out = home_stdout(home, ["keys", "create", "--member", member]).await;
    out.lines().last().unwrap().to_owned()
}

#[tokio::test]
async fn beyond_loopback_only_member_keys_open_the_https_gateway() {
    let upstream = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = loopback_certificate().unwrap();
    let (chain, key) = write_pem(dir.path(), &cert);
    let home = home_for(
        &upstream,
        &proxy_section("0.0.0.0", "", Some((&chain, &key))),
    );
    let member = create_key(home.path(), "ana").await;
    let mut daemon = start(home).await;
    assert!(
        daemon.proxy_url.starts_with("https://0.0.0.0:"),
        "{}",
        daemon.proxy_url
    );
    let url = loopback_url(&daemon);
    let client = https_client(&cert.ca_pem);

    // The load balancer's probes need no token.
    let (status, live) = get(&client, &format!("{url}/livez")).await;
    assert_eq!(
        (status, live),
        (StatusCode::OK, serde_json::json!({"live": true}))
    );
    let (status, ready) = get(&client, &format!("{url}/readyz")).await;
    assert_eq!(
        (status, ready),
        (StatusCode::OK, serde_json::json!({"ready": true}))
    );

    // A member key, as Bearer or x-api-key.
    let chat = format!("{url}/v1/chat/completions");
    let bearer = format!("Bearer {member}");
    let (status, body) = send(
        &client,
        Method::POST,
        &chat,
        &[("authorization", &bearer)],
        CHAT,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &client,
        Method::POST,
        &chat,
        &[("x-api-key", &member)],
        CHAT,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The daemon's own access token does not open a network-facing gateway.
    let token = format!("Bearer {}", daemon.token);
    let (status, body) = send(
        &client,
        Method::POST,
        &chat,
        &[("authorization", &token)],
        CHAT,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("accepts only member keys"), "{body}");
    let (status, _) = send(&client, Method::POST, &chat, &[], CHAT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        &client,
        Method::GET,
        &format!("{url}/v1/models"),
        &[("authorization", &token)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Plain HTTP on the port gets no HTTP answer.
    let port = url.rsplit(':').next().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    tcp.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Only the two member calls reached the upstream, both recorded as ana's.
    assert_eq!(upstream.request_count(), 2);
    let records = stop_and_read_ledger(&mut daemon).await;
    let members: Vec<&str> = records
        .iter()
        .map(|r| r["member"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(members, ["ana", "ana"], "{records:?}");
}

#[tokio::test]
async fn sigterm_turns_readiness_503_while_new_requests_and_a_stream_are_served() {
    let upstream = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = loopback_certificate().unwrap();
    let (chain, key) = write_pem(dir.path(), &cert);
    // TLS on loopback: the access token is accepted there.
    let proxy = proxy_section("127.0.0.1", "drain_delay_ms = 2000", Some((&chain, &key)));
    let mut daemon = start(home_for(&upstream, &proxy)).await;
    let url = loopback_url(&daemon);
    let token = format!("Bearer {}", daemon.token);
    let client = https_client(&cert.ca_pem);
    let (status, _) = get(&client, &format!("{url}/readyz")).await;
    assert_eq!(status, StatusCode::OK);

    // A stream in flight, held after its first content event.
    let events = canned::sse_events(Protocol::ChatCompletions, "gpt-test");
    let (reply, gate, k) = gated_after_first_content(Protocol::ChatCompletions, &events);
    upstream.push_reply(reply);
    let req = Request::post(format!("{url}/v1/chat/completions"))
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true}}"#,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();

    daemon.sigterm().unwrap();
    // Readiness turns 503 at once, on new connections (a fresh client each time).
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        let (status, ready) = get(&https_client(&cert.ca_pem), &format!("{url}/readyz")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ready["ready"], false);
            break ready["reason"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "readiness stayed {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.starts_with("draining"), "{reason}");
    // Within the drain window a new connection is still served in full.
    let fresh = https_client(&cert.ca_pem);
    let (status, live) = get(&fresh, &format!("{url}/livez")).await;
    assert_eq!(
        (status, live["live"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, body_text) = send(
        &fresh,
        Method::POST,
        &format!("{url}/v1/chat/completions"),
        &[("authorization", &token)],
        CHAT,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body_text}");

    // Then the listener closes and the stream in flight finishes.
    daemon.wait_for_log("draining in-flight requests").await;
    gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, Bytes::from(events[k + 1..].concat()));
    assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
    // Exit 0 with both calls flushed to the ledger.
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2, "{records:?}");
}

#[tokio::test]
async fn readiness_names_an_unreachable_postgresql_ledger() {
    let db = PgDatabase::create().await;
    let relay = tb_test_support::relay::TcpRelay::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = loopback_certificate().unwrap();
    let (chain, key) = write_pem(dir.path(), &cert);
    let ledger = format!(
        "[ledger]\nurl = \"{}\"\n",
        db.url_via(&relay.addr().to_string())
    );
    let proxy = proxy_section("0.0.0.0", "", Some((&chain, &key)));
    let daemon = start(home_for(&upstream, &format!("{ledger}{proxy}"))).await;
    let url = loopback_url(&daemon);
    let client = https_client(&cert.ca_pem);
    let (status, _) = get(&client, &format!("{url}/readyz")).await;
    assert_eq!(status, StatusCode::OK);

    relay.cut();
    let (status, ready) = get(&client, &format!("{url}/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let reason = ready["reason"].as_str().unwrap();
    assert!(reason.starts_with("ledger unreachable"), "{reason}");
    assert!(
        !reason.contains(&db.name),
        "no connection details: {reason}"
    );
    // Alive all the same: the balancer must not restart it for this.
    let (status, _) = get(&client, &format!("{url}/livez")).await;
    assert_eq!(status, StatusCode::OK);

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ready) = get(&client, &format!("{url}/readyz")).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `serve` with `config`: must exit 2 before listening; returns stderr.
async fn refused_at_start(config: &str) -> String {
    let home = home_with_config(config).unwrap();
    let out = command(bin(), home.path())
        .args(["serve", "--port", "0", "--control-port", "0"])
        .env("TEST_OPENAI_KEY", OPENAI_KEY)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("proxy: "),
        "never listened"
    );
    stderr
}

#[tokio::test]
async fn a_gateway_without_a_usable_certificate_refuses_to_start() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = |proxy: String| two_provider_config(&upstream.base_url(), &proxy);
    let dir = tempfile::tempdir().unwrap();

    // Beyond loopback without TLS.
    let err = refused_at_start(&config(proxy_section("0.0.0.0", "", None))).await;
    assert!(
        err.contains("proxy.tls") && err.contains("needs TLS"),
        "{err}"
    );

    // A certificate file that is not there.
    let missing = dir.path().join("nope.pem");
    let cert = loopback_certificate().unwrap();
    let (chain, key) = write_pem(dir.path(), &cert);
    let err = refused_at_start(&config(proxy_section(
        "0.0.0.0",
        "",
        Some((&missing, &key)),
    )))
    .await;
    assert!(
        err.contains("proxy.tls.cert_file")
            && err.contains("nope.pem")
            && err.contains("cannot read"),
        "{err}"
    );

    // A key from another certificate.
    let other = loopback_certificate().unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let err = refused_at_start(&config(proxy_section(
        "127.0.0.1",
        "",
        Some((&chain, &other_key)),
    )))
    .await;
    assert!(
        err.contains("is not the private key of the certificate"),
        "{err}"
    );

    // A key file that holds a certificate, and a certificate file that holds a key.
    let err = refused_at_start(&config(proxy_section(
        "0.0.0.0",
        "",
        Some((&chain, &chain)),
    )))
    .await;
    assert!(
        err.contains("proxy.tls.key_file") && err.contains("no PEM private key"),
        "{err}"
    );
    let err = refused_at_start(&config(proxy_section("0.0.0.0", "", Some((&key, &key))))).await;
    assert!(
        err.contains("proxy.tls.cert_file") && err.contains("no PEM certificate"),
        "{err}"
    );
}
