//! The fault matrix (docs/reliability.md): every outcome of routing.md's
//! table, for each of the four protocols, streaming and not, against the
//! real daemon over real sockets.
//!
//! Each row is played twice:
//! - **failover**: the first upstream has the fault, the second is healthy.
//!   The client must get the second's answer byte for byte, the
//!   `x-tokenbuddy-attempts` header must name the fault's class, and the
//!   ledger record must say `ok`, failed over, with both attempts;
//! - **exhausted**: both upstreams have the fault. The client must get what
//!   proxy.md promises (the first non-transient answer, else the last one,
//!   passed through; the daemon's own 502/504 when nobody answered), and
//!   the record must say `failed` (or `ok` for an empty completion, which
//!   is a success when no route is left).
//!
//! After every group the daemon must still serve, and stop cleanly.
//!
//! `TB_FAULT_MATRIX=full` plays every row 10 times (the quick variant, once,
//! runs in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tb_domain::{ApiFamily, Protocol};
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::{Chunk, MockUpstream, Reply, canned};

const MODEL: &str = "m";

fn repetitions() -> usize {
    match std::env::var("TB_FAULT_MATRIX").as_deref() {
        Ok("full") => 10,
        _ => 1,
    }
}

fn request_body(p: Protocol, stream: bool) -> String {
    if !stream {
        return format!(
            "{{\"model\":\"{MODEL}\",\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\",\"max_tokens\":5}}"
        );
    }
    let usage = if p == Protocol::ChatCompletions {
        ",\"stream_options\":{\"include_usage\":true}"
    } else {
        ""
    };
    format!(
        "{{\"model\":\"{MODEL}\",\"stream\":true,\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\"{usage}}}"
    )
}

/// The healthy answer the second upstream gives.
fn good_body(p: Protocol, stream: bool) -> Bytes {
    if stream {
        Bytes::from(canned::sse_body(p, MODEL))
    } else {
        Bytes::from(canned::json(p, MODEL))
    }
}

/// What the client must get when every upstream has the fault.
#[derive(Debug, Clone, Copy)]
enum Exhausted {
    /// The upstream's own answer, passed through with this status.
    PassThrough(u16),
    /// The daemon's own protocol-shaped error.
    Own(u16, &'static str),
}

struct Row {
    name: &'static str,
    reply: Reply,
    /// The first attempt as `x-tokenbuddy-attempts` shows it.
    attempt: &'static str,
    exhausted: Exhausted,
    /// The record's outcome when exhausted.
    exhausted_outcome: &'static str,
}

fn error_reply(p: Protocol, status: u16, kind: &str, message: &str) -> Reply {
    match p.family() {
        ApiFamily::Anthropic => Reply::anthropic_error(status, kind, message),
        ApiFamily::OpenAi => Reply::openai_error(status, kind, kind, message),
    }
}

fn empty_json(p: Protocol) -> &'static str {
    match p {
        Protocol::ChatCompletions => {
            r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#
        }
        Protocol::Responses => {
            r#"{"id":"resp_x","object":"response","model":"m","status":"completed","output":[],"usage":{"input_tokens":12,"output_tokens":0,"total_tokens":12}}"#
        }
        Protocol::Messages => {
            r#"{"id":"msg_x","type":"message","role":"assistant","model":"m","content":[],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":0}}"#
        }
        Protocol::ImagesGenerations | Protocol::ImagesEdits => {
            r#"{"created":1,"data":[],"usage":{"input_tokens":12,"output_tokens":0,"total_tokens":12}}"#
        }
        Protocol::Embeddings => {
            r#"{"object":"list","data":[],"model":"m","usage":{"prompt_tokens":12,"total_tokens":12}}"#
        }
        Protocol::Videos => r#"{"id":"video_x","object":"video","status":"failed"}"#,
    }
}

/// Everything of the canned stream before its first content event.
fn preamble(p: Protocol) -> Vec<Chunk> {
    let events = canned::sse_events(p, MODEL);
    let k = first_content(p, &events);
    events[..k]
        .iter()
        .map(|e| Chunk::Data(Bytes::from(e.clone())))
        .collect()
}

fn rows(p: Protocol, stream: bool) -> Vec<Row> {
    let http = |status: u16, kind: &str, attempt: &'static str, name: &'static str| Row {
        name,
        reply: error_reply(p, status, kind, name),
        attempt,
        exhausted: Exhausted::PassThrough(status),
        exhausted_outcome: "failed",
    };
    let mut rows = vec![
        Row {
            // Lack of credit everywhere is the daemon's own 503 naming the
            // budget (docs/decisions.md), not the seller's 402.
            reply: error_reply(p, 402, "billing_error", "insufficient balance"),
            exhausted: Exhausted::Own(503, "no_route"),
            ..http(
                402,
                "billing_error",
                "first:402|insufficient_funds",
                "402 insufficient funds",
            )
        },
        http(
            401,
            "authentication_error",
            "first:401|auth_invalid",
            "401 bad key",
        ),
        http(
            403,
            "permission_error",
            "first:403|auth_invalid",
            "403 forbidden",
        ),
        http(
            400,
            "invalid_request_error",
            "first:400|client_error",
            "400 bad request",
        ),
        http(
            404,
            "not_found_error",
            "first:404|client_error",
            "404 not found",
        ),
        http(
            413,
            "request_too_large",
            "first:413|client_error",
            "413 too large",
        ),
        http(
            422,
            "invalid_request_error",
            "first:422|client_error",
            "422 unprocessable",
        ),
        http(500, "api_error", "first:500|server_error", "500 internal"),
        http(
            502,
            "api_error",
            "first:502|server_error",
            "502 bad gateway",
        ),
        http(
            503,
            "overloaded_error",
            "first:503|server_error",
            "503 unavailable",
        ),
        http(408, "api_error", "first:408|server_error", "408 timeout"),
        http(409, "api_error", "first:409|server_error", "409 conflict"),
        Row {
            // Retry-After: 0 blocks nothing, so later rows still start at `first`.
            reply: error_reply(p, 429, "rate_limit_error", "slow down")
                .with_header("retry-after", "0"),
            ..http(
                429,
                "rate_limit_error",
                "first:429|rate_limited",
                "429 rate limited",
            )
        },
        Row {
            name: "reset before the response head",
            reply: Reply::reset(),
            attempt: "first:-|server_error",
            exhausted: Exhausted::Own(502, "upstream_unreachable"),
            exhausted_outcome: "failed",
        },
        Row {
            name: "no response head within the deadline",
            reply: Reply::canned(p, MODEL, stream).with_head_delay(Duration::from_secs(3)),
            attempt: "first:-|deadline",
            exhausted: Exhausted::Own(504, "upstream_timeout"),
            exhausted_outcome: "failed",
        },
    ];
    if stream {
        rows.extend([
            Row {
                name: "error event before content",
                reply: Reply::sse(
                    [
                        preamble(p),
                        vec![Chunk::Data(Bytes::from_static(error_event(p).as_bytes()))],
                    ]
                    .concat(),
                ),
                attempt: "first:200|server_error",
                exhausted: Exhausted::Own(502, "upstream_unreachable"),
                exhausted_outcome: "failed",
            },
            Row {
                // The drop may beat the head to the daemon: `-` or `200`.
                name: "connection dropped before content",
                reply: Reply::sse([preamble(p), vec![Chunk::Abort]].concat()),
                attempt: "first:?|server_error",
                exhausted: Exhausted::Own(502, "upstream_unreachable"),
                exhausted_outcome: "failed",
            },
            Row {
                name: "headers, then silence",
                reply: Reply::sse(vec![Chunk::Hang]),
                attempt: "first:200|deadline",
                exhausted: Exhausted::Own(504, "upstream_timeout"),
                exhausted_outcome: "failed",
            },
            Row {
                name: "stream ends without content",
                reply: Reply::sse(preamble(p)),
                attempt: "first:200|empty_completion",
                exhausted: Exhausted::PassThrough(200),
                exhausted_outcome: "ok",
            },
        ]);
    } else {
        rows.extend([Row {
            name: "headers, then a stalled body",
            reply: Reply::chunked(
                200,
                vec![Chunk::Data(Bytes::from_static(b"{\"id\":")), Chunk::Hang],
            )
            .with_header("content-type", "application/json"),
            attempt: "first:200|deadline",
            exhausted: Exhausted::Own(504, "upstream_timeout"),
            exhausted_outcome: "failed",
        }]);
        if p != Protocol::ImagesGenerations {
            rows.push(Row {
                name: "empty completion",
                reply: Reply::json(200, empty_json(p)),
                attempt: "first:200|empty_completion",
                exhausted: Exhausted::PassThrough(200),
                exhausted_outcome: "ok",
            });
        }
    }
    rows
}

async fn two_upstreams() -> (MockUpstream, MockUpstream, Daemon) {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let provider = |id: &str, url: String| all_protocols_provider(id, &url, MODEL);
    // Short deadlines so the deadline rows take a second; no stickiness,
    // no same-upstream retry and a breaker that never trips, so every row
    // starts at `first`.
    let config = format!(
        "[routing]\nsticky_reset_ms = 0\nretry_same_on_5xx = false\n\
         request_deadline_ms = 1000\nstream_head_deadline_ms = 1000\nstream_idle_timeout_ms = 1000\n\
         [breaker]\nmax_failures = 100000\n{}{}",
        provider("first", first.base_url()),
        provider("second", second.base_url())
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    (first, second, daemon)
}

/// `pattern` is an attempts header where `?` stands for any status.
fn attempts_match(got: &str, pattern: &str) -> bool {
    let (g, p): (Vec<&str>, Vec<&str>) = (got.split(',').collect(), pattern.split(',').collect());
    g.len() == p.len()
        && g.iter().zip(&p).all(|(g, p)| {
            g == p
                || p.split_once(":?|").is_some_and(|(up, class)| {
                    g.split_once(':').is_some_and(|(gu, rest)| {
                        gu == up && rest.split_once('|').is_some_and(|(_, c)| c == class)
                    })
                })
        })
}

struct Expectation {
    row: String,
    outcome: &'static str,
    failed_over: bool,
    first_attempt: String,
}

fn header(resp: &hyper::Response<hyper::body::Incoming>, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn check_own_error(family: ApiFamily, body: &[u8], code: &str, what: &str) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(body)));
    match family {
        ApiFamily::OpenAi => assert_eq!(v["error"]["code"], code, "{what}: {v}"),
        ApiFamily::Anthropic => {
            assert_eq!(v["type"], "error", "{what}: {v}");
            assert!(v["error"]["message"].is_string(), "{what}: {v}");
        }
    }
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("first") && message.contains("second"),
        "{what}: the message names the upstreams tried: {message}"
    );
}

async fn matrix(protocol: Protocol, stream: bool) {
    let (first, second, mut daemon) = two_upstreams().await;
    let path = protocol.client_path();
    let body = request_body(protocol, stream);
    let mut expected: HashMap<String, Expectation> = HashMap::new();
    for _ in 0..repetitions() {
        for row in rows(protocol, stream) {
            let what = format!("{protocol} stream={stream} {}", row.name);

            // Failover: `first` has the fault, `second` answers.
            first.push_reply(row.reply.clone());
            let resp = daemon.post_json(path, body.clone()).await;
            let attempts = header(&resp, "x-tokenbuddy-attempts");
            let id = header(&resp, "x-tokenbuddy-request-id");
            assert_eq!(resp.status(), 200, "{what}: {attempts}");
            assert!(
                attempts_match(&attempts, &format!("{},second:200|ok", row.attempt)),
                "{what} (failover): {attempts}"
            );
            assert_eq!(
                body_bytes(resp).await,
                good_body(protocol, stream),
                "{what}: the client sees only the good answer"
            );
            expected.insert(
                id,
                Expectation {
                    row: format!("{what} (failover)"),
                    outcome: "ok",
                    failed_over: true,
                    first_attempt: row.attempt.to_string(),
                },
            );

            // Exhausted: both have it.
            first.push_reply(row.reply.clone());
            second.push_reply(row.reply.clone());
            let resp = daemon.post_json(path, body.clone()).await;
            let attempts = header(&resp, "x-tokenbuddy-attempts");
            let id = header(&resp, "x-tokenbuddy-request-id");
            let status = resp.status().as_u16();
            let got = body_bytes(resp).await;
            // An empty answer from the last route is an answer: passed on.
            let second_attempt = if row.exhausted_outcome == "ok" {
                "second:200|ok".to_string()
            } else {
                row.attempt.replacen("first:", "second:", 1)
            };
            assert!(
                attempts_match(&attempts, &format!("{},{second_attempt}", row.attempt)),
                "{what} (exhausted): {attempts}"
            );
            match row.exhausted {
                Exhausted::PassThrough(want) => {
                    assert_eq!(status, want, "{what} (exhausted): {got:?}");
                }
                Exhausted::Own(want, code) => {
                    assert_eq!(status, want, "{what} (exhausted): {got:?}");
                    check_own_error(protocol.family(), &got, code, &what);
                }
            }
            expected.insert(
                id,
                Expectation {
                    row: format!("{what} (exhausted)"),
                    outcome: row.exhausted_outcome,
                    failed_over: true,
                    first_attempt: row.attempt.to_string(),
                },
            );
        }
    }
    // Still serving, normally.
    let resp = daemon.post_json(path, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tokenbuddy-attempts"), "first:200|ok");
    assert_eq!(body_bytes(resp).await, good_body(protocol, stream));

    // One record per request, each saying what happened.
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), expected.len() + 1, "one record per request");
    for r in &records {
        let id = r["request_id"].as_str().unwrap();
        let Some(e) = expected.get(id) else {
            continue; // the final healthy request
        };
        assert_eq!(r["outcome"], e.outcome, "{}: {r:#}", e.row);
        assert_eq!(r["failed_over"], e.failed_over, "{}: {r:#}", e.row);
        let attempts = r["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{}: {r:#}", e.row);
        let (status, class) = e.first_attempt["first:".len()..].split_once('|').unwrap();
        assert_eq!(attempts[0]["upstream"], "first", "{}", e.row);
        assert_eq!(attempts[0]["outcome"], class, "{}: {r:#}", e.row);
        match status {
            "?" => {}
            "-" => assert!(attempts[0]["status"].is_null(), "{}: {r:#}", e.row),
            s => assert_eq!(
                attempts[0]["status"].as_u64(),
                s.parse::<u64>().ok(),
                "{}",
                e.row
            ),
        }
    }
}

#[tokio::test]
async fn chat_completions_json() {
    matrix(Protocol::ChatCompletions, false).await;
}

#[tokio::test]
async fn chat_completions_stream() {
    matrix(Protocol::ChatCompletions, true).await;
}

#[tokio::test]
async fn responses_json() {
    matrix(Protocol::Responses, false).await;
}

#[tokio::test]
async fn responses_stream() {
    matrix(Protocol::Responses, true).await;
}

#[tokio::test]
async fn messages_json() {
    matrix(Protocol::Messages, false).await;
}

#[tokio::test]
async fn messages_stream() {
    matrix(Protocol::Messages, true).await;
}

#[tokio::test]
async fn images_json() {
    matrix(Protocol::ImagesGenerations, false).await;
}

#[tokio::test]
async fn images_stream() {
    matrix(Protocol::ImagesGenerations, true).await;
}
