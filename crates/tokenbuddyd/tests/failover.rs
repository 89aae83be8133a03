//! End-to-end streaming-safe failover with manual providers: an upstream
//! that fails before the first content byte is failed over and the client
//! sees a normal answer from the next one; after content the stream ends
//! with a protocol-shaped error and a `failed_mid_stream` record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::{Chunk, MockUpstream, Reply, canned};

const MODEL: &str = "m";

/// Two providers for every protocol: `first` (misbehaving) and `second`.
async fn two_upstreams() -> (MockUpstream, MockUpstream, Daemon) {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let provider = |id: &str, url: String| all_protocols_provider(id, &url, MODEL);
    // These tests are about failover mechanics: no stickiness, and a
    // breaker that does not bench `first` after a few deliberate failures.
    let config = format!(
        "[routing]\nsticky_reset_ms = 0\nretry_same_on_5xx = false\n[breaker]\nmax_failures = 1000\n{}{}",
        provider("first", first.base_url()),
        provider("second", second.base_url())
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    (first, second, daemon)
}

fn stream_body(p: Protocol) -> String {
    let usage = if p == Protocol::ChatCompletions {
        ",\"stream_options\":{\"include_usage\":true}"
    } else {
        ""
    };
    format!(
        "{{\"model\":\"{MODEL}\",\"stream\":true,\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\"{usage}}}"
    )
}

#[tokio::test]
async fn failures_before_content_fail_over_invisibly() {
    let (first, second, mut daemon) = two_upstreams().await;
    let mut expected_records = 0;
    for protocol in STREAMING_PROTOCOLS {
        let events = canned::sse_events(protocol, MODEL);
        let k = first_content(protocol, &events);
        let preamble: Vec<Chunk> = events[..k]
            .iter()
            .map(|e| Chunk::Data(Bytes::from(e.clone())))
            .collect();
        let failures: Vec<(&str, Reply)> = vec![
            (
                "error event",
                Reply::sse(
                    [
                        preamble.clone(),
                        vec![Chunk::Data(Bytes::from_static(
                            error_event(protocol).as_bytes(),
                        ))],
                    ]
                    .concat(),
                ),
            ),
            (
                "dropped",
                Reply::sse([preamble.clone(), vec![Chunk::Abort]].concat()),
            ),
            ("empty", Reply::sse(preamble.clone())),
            (
                "500",
                Reply::openai_error(500, "server_error", "boom", "upstream exploded"),
            ),
            (
                "401",
                Reply::openai_error(401, "authentication_error", "invalid_api_key", "bad key"),
            ),
            (
                "400",
                Reply::openai_error(400, "invalid_request_error", "bad", "bad request"),
            ),
            (
                "402",
                Reply::openai_error(
                    402,
                    "billing_error",
                    "insufficient_quota",
                    "insufficient balance",
                ),
            ),
        ];
        for (what, reply) in failures {
            first.push_reply(reply);
            let resp = daemon
                .post_json(protocol.client_path(), stream_body(protocol))
                .await;
            assert_eq!(resp.status(), 200, "{protocol} {what}");
            assert_eq!(
                resp.headers()["x-tokenbuddy-upstream"],
                "second",
                "{protocol} {what}"
            );
            let attempts = resp.headers()["x-tokenbuddy-attempts"]
                .to_str()
                .unwrap()
                .to_string();
            // A drop may come before or after the head: either way it is the
            // first upstream's failure, not the client's.
            assert!(
                attempts.starts_with("first:") && attempts.ends_with(",second:200|ok"),
                "{protocol} {what}: {attempts}"
            );
            let got = body_bytes(resp).await;
            assert_eq!(
                got,
                Bytes::from(canned::sse_body(protocol, MODEL)),
                "{protocol} {what}: the client sees only the good answer"
            );
            expected_records += 1;
        }
    }

    // Non-streaming: an empty completion fails over too.
    first.push_reply(Reply::json(
        200,
        r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#,
    ));
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            format!("{{\"model\":\"{MODEL}\",\"messages\":[]}}"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "first:200|empty_completion,second:200|ok"
    );
    assert_eq!(
        body_bytes(resp).await,
        Bytes::from(canned::json(Protocol::ChatCompletions, MODEL))
    );
    expected_records += 1;

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), expected_records);
    let failed_over: Vec<_> = records
        .iter()
        .filter(|r| r["failed_over"] == true)
        .collect();
    assert_eq!(
        failed_over.len(),
        expected_records,
        "every failover is in the record"
    );
    for r in failed_over {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["winner"], "second");
        assert_eq!(r["attempts"].as_array().unwrap().len(), 2);
    }
    let _ = second;
}

#[tokio::test]
async fn failures_after_content_end_the_stream_with_an_error_event() {
    let (first, _second, mut daemon) = two_upstreams().await;
    for protocol in STREAMING_PROTOCOLS {
        let events = canned::sse_events(protocol, MODEL);
        let k = first_content(protocol, &events);
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut chunks: Vec<Chunk> = events[..=k]
            .iter()
            .map(|e| Chunk::Data(Bytes::from(e.clone())))
            .collect();
        chunks.push(Chunk::WaitFor(std::sync::Arc::clone(&gate)));
        chunks.push(Chunk::Abort);
        first.push_reply(Reply::sse(chunks));
        let resp = daemon
            .post_json(protocol.client_path(), stream_body(protocol))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-tokenbuddy-upstream"],
            "first",
            "{protocol}: no failover after content: {:?}",
            resp.headers()
        );
        let mut body = resp.into_body();
        let first_frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let mut text = String::from_utf8(first_frame.to_vec()).unwrap();
        // Content has reached the client: now the upstream drops.
        gate.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        text.push_str(std::str::from_utf8(&rest).unwrap());
        let head = String::from_utf8(events[..=k].concat()).unwrap();
        assert!(text.starts_with(&head), "{protocol}: {text}");
        let tail = &text[head.len()..];
        assert!(
            tail.contains("error") && tail.contains("upstream_unreachable")
                || tail.contains("api_error"),
            "{protocol}: {tail}"
        );
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 4);
    assert!(
        records.iter().all(|r| r["outcome"] == "failed_mid_stream"),
        "{records:#?}"
    );
}

#[tokio::test]
async fn rate_limits_bench_the_upstream_until_retry_after() {
    let (first, second, daemon) = two_upstreams().await;
    let body = format!("{{\"model\":\"{MODEL}\",\"messages\":[]}}");
    first.push_reply(
        Reply::openai_error(429, "rate_limit_error", "rate_limited", "slow down")
            .with_header("retry-after", "3600"),
    );
    let resp = daemon.post_json("/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "first:429|rate_limited,second:200|ok"
    );
    body_bytes(resp).await;
    // Benched for an hour: the next request starts at `second` (`first` is
    // still planned, last: reorder, never drop).
    let resp = daemon.post_json("/v1/chat/completions", body).await;
    assert_eq!(resp.headers()["x-tokenbuddy-attempts"], "second:200|ok");
    body_bytes(resp).await;
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 2);
}

/// The 429 rule (docs/decisions.md) with the default breaker (3 failures
/// in 60 s open it): a 429 benches the upstream only until `Retry-After`
/// and never counts toward the breaker, so after five 429s in a row the
/// upstream is first in line again as soon as its `Retry-After` passed.
#[tokio::test]
async fn rate_limits_never_open_the_breaker_with_the_default_config() {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let provider = |id: &str, url: String| all_protocols_provider(id, &url, MODEL);
    let config = format!(
        "[routing]\nsticky_reset_ms = 0\n{}{}",
        provider("first", first.base_url()),
        provider("second", second.base_url())
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let body = format!("{{\"model\":\"{MODEL}\",\"messages\":[]}}");
    for i in 0..5 {
        first.push_reply(
            Reply::openai_error(429, "rate_limit_error", "rate_limited", "slow down")
                .with_header("retry-after", "0"),
        );
        let resp = daemon.post_json("/v1/chat/completions", body.clone()).await;
        assert_eq!(
            resp.headers()["x-tokenbuddy-attempts"],
            "first:429|rate_limited,second:200|ok",
            "request {i}"
        );
        body_bytes(resp).await;
    }
    // Five "failures" would have opened a breaker counting them (`first`
    // would go last); the rule keeps it closed and first in line.
    let resp = daemon.post_json("/v1/chat/completions", body).await;
    assert_eq!(resp.headers()["x-tokenbuddy-attempts"], "first:200|ok");
    body_bytes(resp).await;
    assert_eq!(first.request_count(), 6);
}

#[tokio::test]
async fn refused_and_silent_upstreams_are_failed_over() {
    let second = MockUpstream::start().await.unwrap();
    let silent = MockUpstream::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[routing]\nstream_head_deadline_ms = 1000\nsticky_reset_ms = 0\n\
         [[providers]]\nid = \"refused\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k\"\nmodels = [\"{MODEL}\"]\n\
         [[providers]]\nid = \"silent\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"{MODEL}\"]\n\
         [[providers]]\nid = \"second\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"{MODEL}\"]\n",
        silent.base_url(),
        second.base_url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    silent.push_reply(
        Reply::sse(
            canned::sse_events(Protocol::ChatCompletions, MODEL)
                .into_iter()
                .map(|e| Chunk::Data(Bytes::from(e)))
                .collect(),
        )
        .with_head_delay(std::time::Duration::from_secs(30)),
    );
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            stream_body(Protocol::ChatCompletions),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "refused:-|connect_failed,silent:-|deadline,second:200|ok"
    );
    assert_eq!(
        body_bytes(resp).await,
        Bytes::from(canned::sse_body(Protocol::ChatCompletions, MODEL))
    );
}

#[tokio::test]
async fn non_streaming_http_errors_fail_over_for_every_protocol() {
    let (first, second, mut daemon) = two_upstreams().await;
    let mut n = 0;
    for protocol in STREAMING_PROTOCOLS {
        for (status, reply) in [
            (
                500,
                Reply::openai_error(500, "server_error", "boom", "upstream exploded"),
            ),
            (
                401,
                Reply::openai_error(401, "authentication_error", "invalid_api_key", "bad key"),
            ),
            (
                400,
                Reply::openai_error(400, "invalid_request_error", "bad", "bad request"),
            ),
            (
                402,
                Reply::openai_error(
                    402,
                    "billing_error",
                    "insufficient_quota",
                    "insufficient balance",
                ),
            ),
        ] {
            first.push_reply(reply);
            let body = format!(
                "{{\"model\":\"{MODEL}\",\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\",\"max_tokens\":5}}"
            );
            let resp = daemon.post_json(protocol.client_path(), body).await;
            assert_eq!(resp.status(), 200, "{protocol} {status}");
            let attempts = resp.headers()["x-tokenbuddy-attempts"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(
                attempts.starts_with(&format!("first:{status}|"))
                    && attempts.ends_with(",second:200|ok"),
                "{protocol}: {attempts}"
            );
            assert_eq!(
                body_bytes(resp).await,
                Bytes::from(canned::json(protocol, MODEL)),
                "{protocol} {status}"
            );
            n += 1;
        }
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), n);
    assert!(
        records
            .iter()
            .all(|r| r["ok"] == true && r["winner"] == "second" && r["failed_over"] == true)
    );
    let _ = second;
}

#[tokio::test]
async fn a_client_that_goes_away_is_not_the_upstreams_failure() {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let config = format!(
        "[routing]\nsticky_reset_ms = 0\n[breaker]\nmax_failures = 1\n\
         [[providers]]\nid = \"first\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"{MODEL}\"]\n\
         [[providers]]\nid = \"second\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"{MODEL}\"]\n",
        first.base_url(),
        second.base_url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let events = canned::sse_events(Protocol::ChatCompletions, MODEL);
    first.push_reply(hang_after_first_content(Protocol::ChatCompletions, &events).0);
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            stream_body(Protocol::ChatCompletions),
        )
        .await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(
        first.next_stream_end().await,
        tb_test_support::StreamEnd::ClientGone
    );
    // One failure would open `first` (max_failures = 1); a cancellation is
    // not one, so it still comes first.
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            format!("{{\"model\":\"{MODEL}\",\"messages\":[]}}"),
        )
        .await;
    assert_eq!(resp.headers()["x-tokenbuddy-attempts"], "first:200|ok");
    body_bytes(resp).await;
    assert_eq!(second.request_count(), 0);
}
