//! End-to-end: the real `tokenbuddyd` binary reaching an HTTPS upstream
//! through rustls. The mock upstream's certificate comes from a private CA
//! generated per test; the daemon trusts it only when `tls.extra_ca_file`
//! names a PEM file holding it, and refuses the connection otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes, body_json, command, home_with_config};
use tb_test_support::{MockUpstream, canned};

/// One OpenAI provider `tls-up` at `base_url`, and `tls_section` verbatim.
fn config(base_url: &str, tls_section: &str) -> String {
    format!(
        r#"
[log]
level = "info,tb_proxy=debug"
{tls_section}
[[providers]]
id = "tls-up"
kind = "openai"
base_url = "{base_url}"
api_key = "k"
models = ["gpt-test"]
"#
    )
}

/// `[tls]` with `extra_ca_file` set to `path`.
fn tls_section(path: &Path) -> String {
    // A TOML literal string: no escapes to worry about in a temp path.
    format!("[tls]\nextra_ca_file = '{}'\n", path.display())
}

/// Writes `contents` to `name` in `dir` and returns the path.
fn write_file(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn chat_body(stream: bool) -> String {
    format!(
        r#"{{"model":"gpt-test","stream":{stream},"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

#[tokio::test]
async fn a_private_ca_in_extra_ca_file_is_trusted_for_json_and_streams() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let base_url = upstream.base_url();
    assert!(base_url.starts_with("https://127.0.0.1:"), "{base_url}");
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "private-ca.pem", upstream.ca_pem().unwrap());
    let daemon = Daemon::start(bin(), &config(&base_url, &tls_section(&ca)), &[])
        .await
        .unwrap();

    for (n, stream) in [(1, false), (2, true)] {
        let sent = chat_body(stream);
        let resp = daemon.post_json("/v1/chat/completions", sent.clone()).await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "tls-up");
        let expected = if stream {
            canned::sse_body(Protocol::ChatCompletions, "gpt-test")
        } else {
            canned::json(Protocol::ChatCompletions, "gpt-test")
        };
        assert_eq!(
            body_bytes(resp).await,
            Bytes::from(expected),
            "stream={stream}: client bytes differ"
        );

        let seen = upstream.wait_for_requests(n).await;
        assert_eq!(seen.len(), n);
        let req = &seen[n - 1];
        assert_eq!(req.path(), "/v1/chat/completions");
        assert_eq!(req.body, Bytes::from(sent));
        assert_eq!(req.header("authorization"), Some("Bearer k"));
    }
}

#[tokio::test]
async fn without_the_private_ca_the_upstream_is_refused_with_a_clear_502() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let daemon = Daemon::start(bin(), &config(&upstream.base_url(), ""), &[])
        .await
        .unwrap();

    for stream in [false, true] {
        let resp = daemon
            .post_json("/v1/chat/completions", chat_body(stream))
            .await;
        assert_eq!(resp.status(), 502, "stream={stream}");
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "tls-up");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("tls-up"), "{message}");
        assert!(message.contains(&upstream.base_url()), "{message}");
        // rustls: "invalid peer certificate: UnknownIssuer".
        assert!(
            message.contains("invalid peer certificate"),
            "the message says why: {message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");
    }
    // The handshake failed, so no HTTP request ever reached the upstream.
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn an_extra_ca_file_that_is_not_pem_stops_the_daemon_with_a_config_error() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (
            "not-pem.pem",
            "this is not a certificate\n",
            "no certificate found",
        ),
        (
            "broken-pem.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
            // The parser's own wording varies; the hint after it does not.
            "must contain PEM",
        ),
    ];
    for (name, contents, problem) in bad {
        let path = write_file(dir.path(), name, contents);
        let config = config(&upstream.base_url(), &tls_section(&path));

        // Through the harness: start fails and carries the daemon's stderr.
        let err = match Daemon::start(bin(), &config, &[]).await {
            Ok(_) => panic!("{name}: the daemon started with a bad extra_ca_file"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("tls.extra_ca_file"), "{name}: {err}");
        assert!(err.contains(name), "{name}: the file is named: {err}");
        assert!(err.contains(problem), "{name}: {err}");

        // Directly: a configuration error exits 2.
        let home = home_with_config(&config).unwrap();
        let mut cmd = command(bin(), home.path());
        cmd.args(["serve", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("the daemon exits promptly")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("configuration error") && stderr.contains("tls.extra_ca_file"),
            "{name}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("proxy: "),
            "{name}: never listened"
        );
    }
    assert_eq!(upstream.request_count(), 0);
}

/// What the test's CONNECT proxy saw: one entry per tunnel asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tunnelled {
    /// The CONNECT target, `host:port`.
    target: String,
    /// The `Proxy-Authorization` header, if any.
    auth: Option<String>,
}

/// A tiny HTTP CONNECT proxy on loopback. It resolves names itself, as a
/// real proxy does: `upstream.test:PORT` is mapped to `127.0.0.1:PORT` (the
/// daemon cannot resolve `upstream.test`, so a success proves the tunnel).
struct ConnectProxy {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Tunnelled>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(tunnel(client, s.clone()));
            }
        });
        ConnectProxy {
            addr,
            seen,
            connections,
        }
    }

    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}{}", self.addr)
    }

    fn seen(&self) -> Vec<Tunnelled> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One proxied connection: read the CONNECT head, record it, dial the
/// target, answer 200, then copy bytes both ways.
async fn tunnel(
    mut client: tokio::net::TcpStream,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Tunnelled>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0 && head.len() < 16 * 1024, "bad CONNECT head");
        head.extend_from_slice(&buf[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let text = String::from_utf8(head[..end].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap();
    let mut parts = request_line.split(' ');
    assert_eq!(parts.next(), Some("CONNECT"), "{request_line}");
    let target = parts.next().unwrap().to_owned();
    let auth = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_owned())
    });
    seen.lock().unwrap().push(Tunnelled {
        target: target.clone(),
        auth,
    });
    let dial = match target.strip_prefix("upstream.test:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => target,
    };
    let Ok(mut upstream) = tokio::net::TcpStream::connect(&dial).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .unwrap();
    upstream.write_all(&head[end..]).await.unwrap();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// The mock's base URL under the name only the proxy can resolve.
fn upstream_test_url(upstream: &MockUpstream) -> String {
    format!("https://upstream.test:{}/v1", upstream.addr().port())
}

#[tokio::test]
async fn https_proxy_tunnels_to_an_https_upstream_with_credentials() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let proxy = ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "private-ca.pem", upstream.ca_pem().unwrap());
    let url = upstream_test_url(&upstream);
    let proxy_url = proxy.url("alice:s3cret@");
    let daemon = Daemon::start(
        bin(),
        &config(&url, &tls_section(&ca)),
        &[("HTTPS_PROXY", proxy_url.as_str())],
    )
    .await
    .unwrap();

    for (n, stream) in [(1, false), (2, true)] {
        let resp = daemon
            .post_json("/v1/chat/completions", chat_body(stream))
            .await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "tls-up");
        body_bytes(resp).await;
        let seen = upstream.wait_for_requests(n).await;
        assert_eq!(seen[n - 1].header("authorization"), Some("Bearer k"));
        // The proxy never sees the upstream key: it is inside the TLS tunnel.
    }
    let tunnels = proxy.seen();
    assert!(!tunnels.is_empty());
    for t in &tunnels {
        assert_eq!(
            t.target,
            format!("upstream.test:{}", upstream.addr().port())
        );
        // base64("alice:s3cret")
        assert_eq!(t.auth.as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
    }
    // Pooled: both requests rode one tunnel.
    assert_eq!(proxy.connections(), 1);
    // The proxy credentials never reach the logs (debug level for tb_proxy).
    let logs = daemon.logs();
    assert!(!logs.is_empty());
    assert!(
        !logs.contains("s3cret") && !logs.contains("YWxpY2U6czNjcmV0"),
        "{logs}"
    );
}

#[tokio::test]
async fn network_proxy_in_config_wins_over_the_env_and_is_masked_in_config_show() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let proxy = ConnectProxy::start().await;
    let decoy = ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "private-ca.pem", upstream.ca_pem().unwrap());
    let section = format!(
        "{}[network]\nproxy = \"{}\"\n",
        tls_section(&ca),
        proxy.url("bob:hunter2@")
    );
    let toml = config(&upstream_test_url(&upstream), &section);
    let decoy_url = decoy.url("");
    let env = [("HTTPS_PROXY", decoy_url.as_str())];
    let daemon = Daemon::start(bin(), &toml, &env).await.unwrap();

    let resp = daemon
        .post_json("/v1/chat/completions", chat_body(false))
        .await;
    assert_eq!(resp.status(), 200);
    let tunnels = proxy.seen();
    assert_eq!(tunnels.len(), 1);
    assert_eq!(tunnels[0].auth.as_deref(), Some("Basic Ym9iOmh1bnRlcjI="));
    assert_eq!(decoy.connections(), 0, "config wins over HTTPS_PROXY");
    assert!(!daemon.logs().contains("hunter2"));

    let home = home_with_config(&toml).unwrap();
    let out = command(bin(), home.path())
        .args(["config", "show"])
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("network.proxy"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("bob"),
        "{shown}"
    );
}

#[tokio::test]
async fn no_proxy_and_loopback_upstreams_go_direct() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let proxy = ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "private-ca.pem", upstream.ca_pem().unwrap());
    let proxy_url = proxy.url("");

    // upstream.test in NO_PROXY (env) or network.no_proxy (config): the
    // daemon dials it itself, and since only the proxy can resolve
    // `upstream.test`, the attempt fails on name resolution — proof it went
    // direct — and the proxy sees no connection at all.
    let by_config = format!(
        "{}[network]\nproxy = \"{proxy_url}\"\nno_proxy = [\"upstream.test\"]\n",
        tls_section(&ca)
    );
    let cases = [
        ("env", tls_section(&ca), vec![("NO_PROXY", "upstream.test")]),
        ("config", by_config, vec![]),
    ];
    for (name, section, extra_env) in cases {
        let mut env = vec![("HTTPS_PROXY", proxy_url.as_str())];
        env.extend(extra_env);
        let toml = config(&upstream_test_url(&upstream), &section);
        let daemon = Daemon::start(bin(), &toml, &env).await.unwrap();
        let resp = daemon
            .post_json("/v1/chat/completions", chat_body(false))
            .await;
        assert_eq!(resp.status(), 502, "{name}");
        let body = body_json(resp).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("dns error"), "{name}: {message}");
    }
    assert_eq!(proxy.connections(), 0);

    // A loopback upstream is direct even with HTTPS_PROXY set.
    let env = [("HTTPS_PROXY", proxy_url.as_str())];
    let daemon = Daemon::start(
        bin(),
        &config(&upstream.base_url(), &tls_section(&ca)),
        &env,
    )
    .await
    .unwrap();
    let resp = daemon
        .post_json("/v1/chat/completions", chat_body(false))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.connections(), 0);
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn an_unusable_proxy_setting_stops_the_daemon_with_a_clear_error() {
    for (env, toml_extra, expect) in [
        (
            vec![("HTTPS_PROXY", "socks5://u:proxy-pass-7f3a@proxy:1080")],
            "",
            "HTTPS_PROXY",
        ),
        (
            vec![],
            "[network]\nproxy = \"https://u:proxy-pass-7f3a@proxy:443\"\n",
            "network.proxy",
        ),
    ] {
        let err = Daemon::start(
            bin(),
            &config("https://api.example.com/v1", toml_extra),
            &env,
        )
        .await
        .err()
        .expect("the daemon must refuse the proxy setting");
        let text = err.to_string();
        assert!(text.contains(expect), "{text}");
        assert!(text.contains("only http://"), "{text}");
        // A distinctive password: a short one like "pw" can occur in the
        // temporary directory's random name the message shows.
        assert!(
            !text.contains("proxy-pass-7f3a"),
            "credentials never shown: {text}"
        );
    }
}

#[tokio::test]
async fn doctor_names_the_proxy_masked_and_fetches_the_registry_through_it() {
    let upstream = MockUpstream::start_tls().await.unwrap();
    let proxy = ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "private-ca.pem", upstream.ca_pem().unwrap());
    let port = upstream.addr().port();
    let toml = format!(
        "{}[network]\nproxy = \"{}\"\nno_proxy = [\"internal.corp\"]\n[registry]\nurl = \"https://upstream.test:{port}/registry.json\"\n",
        tls_section(&ca),
        proxy.url("carol:pa55@")
    );
    let home = home_with_config(&toml).unwrap();
    let out = command(bin(), home.path())
        .args(["doctor"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let masked = format!("http://***@{}", proxy.addr);
    assert!(
        stdout.contains(&format!("✓ network proxy: https: {masked}"))
            && stdout.contains("internal.corp"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("pa55") && !stdout.contains("carol"),
        "{stdout}"
    );
    // The registry check went through the proxy: the mock's answer is not a
    // registry document, but it was reached (only the proxy resolves
    // upstream.test), and the check says which proxy it used.
    assert!(
        stdout.contains(&format!("via proxy http://{}/", proxy.addr)),
        "{stdout}"
    );
    let tunnels = proxy.seen();
    assert_eq!(tunnels.len(), 1, "{stdout}");
    assert_eq!(tunnels[0].target, format!("upstream.test:{port}"));
    assert!(upstream.request_count() >= 1, "{stdout}");
}
