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
