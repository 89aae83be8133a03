//! Strict request validation end to end: a malformed body — invalid UTF-8
//! inside a string, 100,000-deep nesting, a `model` that is not a string —
//! gets a protocol-shaped 400 from the daemon itself for every protocol,
//! never reaches the upstream, leaves breakers and pool health as they were,
//! and is recorded in the ledger as `rejected` (outside the usage figures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use tb_domain::{ApiFamily, Protocol};
use tb_test_support::MockUpstream;
use tb_test_support::daemon::{Daemon, body_bytes, command};

const MODEL: &str = "m";

/// The three malformed bodies, each with the words its 400 must contain.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>, String)> {
    let mut utf8 = br#"{"model":"m","messages":[{"role":"user","content":"caf"#.to_vec();
    let at = utf8.len();
    utf8.extend_from_slice(b"\xff\xfe\"}]}");
    let mut deep = br#"{"model":"m","messages":"#.to_vec();
    // The top-level object is depth 1: the 128th `[` is the 129th level.
    let too_deep_at = deep.len() + 127;
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    let model = br#"{"model":42,"messages":[]}"#.to_vec();
    vec![
        (
            "invalid UTF-8 in a string",
            utf8,
            format!("invalid UTF-8 at byte {at}"),
        ),
        (
            "100,000-deep nesting",
            deep,
            format!("nesting deeper than 128 at byte {too_deep_at}"),
        ),
        (
            "model not a string",
            model,
            "`model` must be a non-empty string (byte 9)".to_string(),
        ),
    ]
}

/// What the control plane says about the upstream's health and breaker.
async fn upstream_state(daemon: &Daemon) -> Value {
    let all = get_json(daemon, "/v1/upstreams").await;
    let mut up = all["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "up")
        .unwrap_or_else(|| panic!("no upstream `up` in {all}"))
        .clone();
    assert_eq!(up["circuit"], "closed", "{up}");
    // Only what requests can change: the breaker, health and the score.
    up.as_object_mut().unwrap().retain(|k, _| {
        matches!(
            k.as_str(),
            "circuit" | "health" | "score" | "breaker" | "failures" | "metrics"
        )
    });
    up
}

#[tokio::test]
async fn malformed_requests_are_refused_before_any_upstream() {
    let upstream = MockUpstream::start().await.unwrap();
    // A breaker that opens on the first failure: any leak would show.
    let config = format!(
        "[breaker]\nmax_failures = 1\n{}",
        all_protocols_provider("up", &upstream.base_url(), MODEL)
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let before = upstream_state(&daemon).await;

    let mut rejected_ids = Vec::new();
    for protocol in Protocol::ALL {
        for (what, body, needle) in bad_bodies() {
            let resp = daemon.post_json(protocol.client_path(), body).await;
            assert_eq!(resp.status(), 400, "{protocol} {what}");
            rejected_ids.push(
                resp.headers()["x-tokenbuddy-request-id"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            let got: Value = serde_json::from_slice(&body_bytes(resp).await).unwrap();
            let message = match protocol.family() {
                ApiFamily::OpenAi => {
                    assert_eq!(got["error"]["type"], "invalid_request_error", "{got}");
                    got["error"]["message"].as_str().unwrap().to_string()
                }
                ApiFamily::Anthropic => {
                    assert_eq!(got["type"], "error", "{got}");
                    assert_eq!(got["error"]["type"], "invalid_request_error", "{got}");
                    got["error"]["message"].as_str().unwrap().to_string()
                }
            };
            assert!(message.contains(&needle), "{protocol} {what}: {message}");
        }
    }

    assert_eq!(
        upstream.request_count(),
        0,
        "the upstream saw a malformed request"
    );
    assert_eq!(
        upstream_state(&daemon).await,
        before,
        "breaker or health changed"
    );

    // The upstream is still routed to as before.
    let good = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let resp = daemon.post_json("/v1/chat/completions", good).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    assert_eq!(upstream.request_count(), 1);

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), rejected_ids.len() + 1, "{records:#?}");
    for id in &rejected_ids {
        let r = records
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no record for {id}"));
        assert_eq!(r["outcome"], "rejected", "{r:#}");
        assert_eq!(r["ok"], false, "{r:#}");
        assert!(r["winner"].is_null(), "{r:#}");
        assert_eq!(r["attempts"].as_array().map(Vec::len), Some(0), "{r:#}");
    }

    // The usage view counts the one call that went upstream, not the
    // rejected ones (and so no failures).
    let out = command(bin(), daemon.home())
        .args(["usage", "--since", "1h", "--by", "upstream", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(usage["totals"]["calls"], 1, "{usage}");
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(
        (rows[0]["key"].as_str(), rows[0]["ok_calls"].as_u64()),
        (Some("up"), Some(1))
    );
}
