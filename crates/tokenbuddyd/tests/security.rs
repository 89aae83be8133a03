//! The secret scan (docs/reliability.md): one daemon with every kind of
//! secret — the local access token, a provider key from the environment,
//! a provider key inline in the config, and seller tokens bought from the
//! simulated marketplace — driven through successes, failovers, upstream
//! errors, client errors, a caught panic and the control plane. Then every
//! output is searched for every secret: response bodies and headers, debug
//! logs, `/metrics`, every control-plane read, the CLI's outputs, and the
//! raw bytes of every file the daemon keeps. None may contain one, even
//! when an upstream quotes the rejected key in its error body.
//!
//! (Every e2e suite that stops its daemon through `stop_and_read_ledger`
//! also checks its logs and records for the access token and provider
//! keys.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, command};
use tb_test_support::marketplace::{RegistryServer, SellerServer, SellerSpec, registry_doc};
use tb_test_support::{MockUpstream, Reply};

/// Everything the scan collected, labelled by where it came from.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn add(&mut self, place: impl Into<String>, bytes: impl AsRef<[u8]>) {
        self.0.push((place.into(), bytes.as_ref().to_vec()));
    }

    fn assert_free_of(&self, secrets: &[(&str, String)]) {
        let mut leaks = Vec::new();
        for (place, bytes) in &self.0 {
            for (name, secret) in secrets {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    leaks.push(format!("{name} in {place}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    }
}

async fn send(daemon: &Daemon, out: &mut Outputs, what: &str, path: &str, body: &str) {
    let (status, headers, bytes) = match daemon.client().try_post_json(path, body.to_string()).await
    {
        Ok((parts, bytes)) => (parts.status.as_u16(), format!("{:?}", parts.headers), bytes),
        Err(e) => panic!("{what}: no answer: {e}"),
    };
    out.add(format!("{what} ({status}) headers"), headers);
    out.add(format!("{what} ({status}) body"), bytes);
}

#[tokio::test]
async fn no_secret_reaches_any_output() {
    let upstream = MockUpstream::start().await.unwrap();
    let seller = SellerServer::start(SellerSpec::new("s-alpha").models(["gpt-4o"]))
        .await
        .unwrap();
    let registry = RegistryServer::start(registry_doc(&[&seller], Some("s-alpha")))
        .await
        .unwrap();
    let config = two_provider_config(
        &upstream.base_url(),
        &format!(
            "[provider]\nmode = \"both\"\n[registry]\nurl = \"{}\"\n",
            registry.url()
        ),
    )
    .replace("level = \"info,tb_proxy=debug\"", "level = \"debug\"");
    let mut daemon = Daemon::start(
        bin(),
        &config,
        &[("TEST_OPENAI_KEY", OPENAI_KEY), ("TB_TEST_FAULTS", "1")],
    )
    .await
    .unwrap();
    let mut out = Outputs::default();

    // Successes on all four protocols, JSON and streaming, manual and bought.
    for p in Protocol::ALL {
        let model = match p {
            Protocol::Messages => "claude-test",
            Protocol::ImagesGenerations => "gpt-image-1",
            _ => "gpt-test",
        };
        for stream in [false, true] {
            let body = format!(
                "{{\"model\":\"{model}\",\"stream\":{stream},\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"input\":\"hi\",\"prompt\":\"a dot\",\"max_tokens\":5}}"
            );
            send(
                &daemon,
                &mut out,
                &format!("{p} stream={stream}"),
                p.client_path(),
                &body,
            )
            .await;
        }
    }
    for stream in [false, true] {
        let body = format!("{{\"model\":\"gpt-4o\",\"stream\":{stream},\"messages\":[]}}");
        send(
            &daemon,
            &mut out,
            "seller chat",
            "/v1/chat/completions",
            &body,
        )
        .await;
    }
    assert!(!seller.tokens().is_empty(), "credit was bought");

    // Upstream failures: a rejected key, one that quotes the key back, a
    // server error, a reset.
    upstream.push_replies([
        Reply::openai_error(401, "authentication_error", "invalid_api_key", "bad key"),
        Reply::openai_error(
            401,
            "authentication_error",
            "invalid_api_key",
            &format!("Incorrect API key provided: {OPENAI_KEY}."),
        ),
        Reply::openai_error(500, "server_error", "boom", "exploded"),
        Reply::reset(),
    ]);
    for what in [
        "upstream 401",
        "upstream 401 quoting the key",
        "upstream 500",
        "upstream reset",
    ] {
        send(
            &daemon,
            &mut out,
            what,
            "/v1/chat/completions",
            r#"{"model":"gpt-test","messages":[]}"#,
        )
        .await;
    }
    // Client errors and a caught panic.
    send(
        &daemon,
        &mut out,
        "invalid JSON",
        "/v1/chat/completions",
        "{",
    )
    .await;
    send(
        &daemon,
        &mut out,
        "unknown model",
        "/v1/messages",
        r#"{"model":"nope","max_tokens":1,"messages":[]}"#,
    )
    .await;
    send(
        &daemon,
        &mut out,
        "panic",
        "/v1/chat/completions",
        r#"{"model":"tokenbuddy-test-panic","messages":[]}"#,
    )
    .await;
    // The control plane: every read, the install preview (authorized).
    for path in [
        "/healthz",
        "/v1/status",
        "/v1/upstreams",
        "/v1/prewarm",
        "/v1/calls?limit=1000",
        "/v1/usage?since=7d&by=upstream",
        "/v1/credit",
        "/v1/provider-mode",
        "/v1/install",
        "/v1/doctor",
        "/v1/openapi.json",
        "/metrics",
        "/",
    ] {
        let (status, text) = control(&daemon, http::Method::GET, path, None, false, "").await;
        assert_eq!(status, 200, "{path}: {text}");
        out.add(format!("control GET {path}"), text);
    }
    let (status, text) = control(
        &daemon,
        http::Method::POST,
        "/v1/install/preview",
        None,
        true,
        "{}",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    out.add("control POST /v1/install/preview", text);

    // The CLI, against the running daemon and offline.
    for args in [
        vec!["status"],
        vec!["doctor"],
        vec!["calls", "--json"],
        vec!["usage"],
        vec!["config", "show"],
    ] {
        let o = command(bin(), daemon.home())
            .args(&args)
            .env("TEST_OPENAI_KEY", OPENAI_KEY)
            .output()
            .await
            .unwrap();
        out.add(format!("`{}` stdout", args.join(" ")), &o.stdout);
        out.add(format!("`{}` stderr", args.join(" ")), &o.stderr);
    }

    let records = stop_and_read_ledger(&mut daemon).await;
    // One record per routed request, and the malformed body's `rejected`
    // record (refused before any upstream, still on the ledger).
    let rejected = records
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .count();
    assert_eq!((records.len(), rejected), (15, 1), "{records:#?}");
    out.add("ledger records", serde_json::to_vec(&records).unwrap());
    out.add("daemon logs", daemon.logs());
    // Every file the daemon keeps, raw (the access token's own file aside).
    let mut files = vec![daemon.data_dir()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.file_name().is_some_and(|n| n != "access-token") {
            out.add(path.display().to_string(), std::fs::read(&path).unwrap());
        }
    }
    // The upstreams saw only their own keys, never the access token.
    for r in upstream.requests() {
        out.add(
            format!("upstream request {}", r.path()),
            format!("{:?}", r.headers),
        );
    }

    let mut everywhere = vec![("access token", daemon.token.clone())];
    for t in seller.tokens() {
        everywhere.push(("seller token", t.token));
    }
    out.assert_free_of(&everywhere);
    // Provider keys go to their upstream and nowhere else.
    let not_upstream = Outputs(
        out.0
            .into_iter()
            .filter(|(place, _)| !place.starts_with("upstream request"))
            .collect(),
    );
    not_upstream.assert_free_of(&[
        ("environment provider key", OPENAI_KEY.to_string()),
        ("inline provider key", ANTHROPIC_KEY.to_string()),
    ]);
}

/// An upstream that quotes the rejected key back (as some providers do)
/// reaches the client with the key replaced by `[redacted]`, framed right
/// (the length is the new body's), for both key styles: a Bearer key from
/// the environment and an inline `x-api-key`.
#[tokio::test]
async fn a_key_quoted_in_an_upstream_error_is_redacted() {
    let Setup { upstream, daemon } = setup().await;
    let quoted = |key: &str| format!("Incorrect API key provided: {key}. Check {key} again.");
    upstream.push_replies([
        Reply::openai_error(
            401,
            "authentication_error",
            "invalid_api_key",
            &quoted(OPENAI_KEY),
        ),
        Reply::anthropic_error(401, "authentication_error", &quoted(ANTHROPIC_KEY)),
    ]);
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-test","messages":[]}"#,
            tb_test_support::canned::openai_error(
                "authentication_error",
                "invalid_api_key",
                &quoted("[redacted]"),
            ),
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-test","max_tokens":5,"messages":[]}"#,
            tb_test_support::canned::anthropic_error("authentication_error", &quoted("[redacted]")),
        ),
    ];
    for (path, body, expected) in cases {
        let (parts, bytes) = daemon
            .client()
            .try_post_json(path, body.to_string())
            .await
            .unwrap();
        assert_eq!(parts.status.as_u16(), 401, "{path}");
        assert_eq!(&bytes[..], &expected[..], "{path}");
        let length = parts
            .headers
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(length, bytes.len().to_string(), "{path}");
    }
    // The upstream did get the real keys (redaction is only on the way back).
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    let bearer = format!("Bearer {OPENAI_KEY}");
    assert_eq!(requests[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!(requests[1].header("x-api-key"), Some(ANTHROPIC_KEY));
}
