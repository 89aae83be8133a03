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

fn path_of(p: Protocol) -> &'static str {
    match p {
        Protocol::ChatCompletions => "/v1/chat/completions",
        Protocol::Responses => "/v1/responses",
        Protocol::Messages => "/v1/messages",
        Protocol::ImagesGenerations => "/v1/images/generations",
    }
}

const MODEL: &str = "m";

fn error_event(p: Protocol) -> &'static str {
    match p {
        Protocol::ChatCompletions => {
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n"
        }
        Protocol::Messages => {
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"overloaded\"}}\n\n"
        }
        Protocol::Responses => {
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"overloaded\"}\n\n"
        }
        Protocol::ImagesGenerations => {
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"overloaded\"}}\n\n"
        }
    }
}

/// Two providers for every protocol: `first` (misbehaving) and `second`.
async fn two_upstreams() -> (MockUpstream, MockUpstream, Daemon) {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let provider = |id: &str, url: String| {
        format!(
            "[[providers]]\nid = \"{id}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key = \"k-{id}\"\nmodels = [\"{MODEL}\"]\nprotocols = [\"chat_completions\", \"responses\", \"messages\", \"images_generations\"]\n"
        )
    };
    let config = format!(
        "{}{}",
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
    for protocol in Protocol::ALL {
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
        ];
        for (what, reply) in failures {
            first.push_reply(reply);
            let resp = daemon
                .post_json(path_of(protocol), stream_body(protocol))
                .await;
            if what == "500" {
                // Plain HTTP errors are passed on until the failover table
                // covers them (routing).
                assert_eq!(resp.status(), 500, "{protocol} {what}");
                body_bytes(resp).await;
                expected_records += 1;
                continue;
            }
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
        expected_records - 4,
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
    for protocol in Protocol::ALL {
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
            .post_json(path_of(protocol), stream_body(protocol))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-tokenbuddy-upstream"],
            "first",
            "no failover after content"
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
