//! End-to-end: the real `tokenbuddyd` binary forwarding to a mock upstream
//! over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::BodyExt;
use tb_domain::Protocol;
use tb_test_support::chunking::split_every;
use tb_test_support::daemon::{body_bytes, body_json};
use tb_test_support::{Reply, StreamEnd, canned};

fn model_of(p: Protocol) -> &'static str {
    match p {
        Protocol::Messages => "claude-test",
        Protocol::ImagesGenerations => "gpt-image-1",
        _ => "gpt-test",
    }
}

/// A body with odd formatting that must arrive upstream byte for byte.
/// Chat streams ask for usage themselves, so the daemon has nothing to add.
fn request_body(p: Protocol, stream: bool) -> String {
    let usage = if p == Protocol::ChatCompletions && stream {
        ", \"stream_options\": {\"include_usage\": true}"
    } else {
        ""
    };
    format!(
        "{{ \"model\" : \"{}\",\n  \"stream\": {stream}, \"temperature\": 0.70000000000000001, \"messages\": [{{\"role\":\"user\",\"content\":\"h\\u00e9 ✓\"}}], \"max_tokens\": 1e2{usage} }}",
        model_of(p)
    )
}

#[tokio::test]
async fn every_endpoint_json_and_stream_is_byte_faithful() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    let mut n = 0;
    for protocol in STREAMING_PROTOCOLS {
        for stream in [false, true] {
            let model = model_of(protocol);
            let expected: Vec<u8> = if stream {
                let body = canned::sse_body(protocol, model);
                // Cut every 7 bytes: lines, CRLF pairs and UTF-8 characters split.
                upstream.push_reply(Reply::sse(split_every(&body, 7)));
                body
            } else {
                let body = canned::json(protocol, model);
                upstream.push_reply(Reply::json(200, body.clone()));
                body
            };
            let sent = request_body(protocol, stream);
            let resp = daemon.post_json(protocol.client_path(), sent.clone()).await;
            assert_eq!(resp.status(), 200, "{protocol} stream={stream}");
            let upstream_id = if protocol == Protocol::Messages {
                "an"
            } else {
                "oa"
            };
            assert_eq!(resp.headers()["x-tokenbuddy-upstream"], upstream_id);
            assert!(!resp.headers()["x-tokenbuddy-request-id"].is_empty());
            let overhead: u64 = resp.headers()["x-tokenbuddy-overhead-us"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                overhead < 10_000_000,
                "overhead is the daemon's own time: {overhead} µs"
            );
            let got = body_bytes(resp).await;
            assert_eq!(
                got,
                Bytes::from(expected),
                "{protocol} stream={stream}: client bytes differ"
            );

            n += 1;
            let seen = upstream.wait_for_requests(n).await;
            let req = &seen[n - 1];
            assert_eq!(
                req.path(),
                protocol.client_path(),
                "the protocol path is appended to base_url"
            );
            assert_eq!(
                req.body,
                Bytes::from(sent),
                "{protocol}: upstream body changed"
            );
            for (name, value) in &req.headers {
                let v = String::from_utf8_lossy(value.as_bytes());
                assert!(
                    !v.contains(&daemon.token),
                    "access token leaked upstream in {name}"
                );
            }
            assert_eq!(req.header("accept-encoding"), Some("identity"));
            assert!(req.header("x-request-id").is_some());
            assert!(req.header("idempotency-key").is_some());
            if protocol == Protocol::Messages {
                assert_eq!(req.header("x-api-key"), Some(ANTHROPIC_KEY));
                assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(req.header("authorization"), None);
            } else {
                assert_eq!(
                    req.header("authorization"),
                    Some(format!("Bearer {OPENAI_KEY}").as_str())
                );
                assert_eq!(req.header("x-api-key"), None);
            }
        }
    }
    let logs = daemon.logs();
    for secret in [daemon.token.as_str(), OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }

    // Every proxied request left one correct call record.
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 8);
    for (r, (protocol, stream)) in records.iter().zip(
        STREAMING_PROTOCOLS
            .iter()
            .flat_map(|p| [(*p, false), (*p, true)]),
    ) {
        assert_eq!(r["protocol"], protocol.as_str(), "{r}");
        assert_eq!(r["stream"], stream, "{r}");
        assert_eq!(
            (r["ok"].as_bool(), r["outcome"].as_str()),
            (Some(true), Some("ok")),
            "{r}"
        );
        assert_eq!(r["model"], model_of(protocol));
        assert_eq!(
            r["winner"],
            if protocol == Protocol::Messages {
                "an"
            } else {
                "oa"
            }
        );
        let images = protocol == Protocol::ImagesGenerations;
        let output = if images {
            canned::IMAGE_OUTPUT_TOKENS
        } else {
            canned::OUTPUT_TOKENS
        };
        assert_eq!(r["output_tokens"], output, "{r}");
        assert_eq!(r["usage_missing"], false, "{r}");
        // gpt-image-1 is in the price table; the other test models are not:
        // unknown, never zero.
        assert_eq!(r["unpriced"], !images, "{r}");
        assert_eq!(r["cost_usd_micros"].is_null(), !images, "{r}");
        let text = r.to_string();
        assert!(
            !text.contains(&daemon.token)
                && !text.contains(OPENAI_KEY)
                && !text.contains(ANTHROPIC_KEY)
        );
    }
}

#[tokio::test]
async fn streams_are_not_buffered() {
    let Setup { upstream, daemon } = setup().await;
    for protocol in STREAMING_PROTOCOLS {
        let events = canned::sse_events(protocol, model_of(protocol));
        let (reply, gate, k) = gated_after_first_content(protocol, &events);
        upstream.push_reply(reply);

        let resp = daemon
            .post_json(protocol.client_path(), request_body(protocol, true))
            .await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        // The upstream is parked after its first content event: if the
        // daemon buffered, this read would never complete. The preamble
        // before it was held back and comes with it.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], &events[..=k].concat()[..], "{protocol}");
        gate.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, Bytes::from(events[k + 1..].concat()));
        assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
    }
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    let events = canned::sse_events(Protocol::Messages, "claude-test");
    upstream.push_reply(hang_after_first_content(Protocol::Messages, &events).0);
    let resp = daemon
        .post_json("/v1/messages", request_body(Protocol::Messages, true))
        .await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(upstream.next_stream_end().await, StreamEnd::ClientGone);
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "cancelled");
    assert_eq!(records[0]["ok"], false);
}

/// Asserts an OpenAI-shaped daemon error and returns its body.
async fn openai_error(
    resp: http::Response<hyper::body::Incoming>,
    status: u16,
    ty: &str,
    code: &str,
) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["type"], ty, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["param"].is_null(), "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    v
}

/// Asserts an Anthropic-shaped daemon error and returns its body.
async fn anthropic_error(
    resp: http::Response<hyper::body::Incoming>,
    status: u16,
    ty: &str,
) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let v = body_json(resp).await;
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some(ty)),
        "{v}"
    );
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    v
}

#[tokio::test]
async fn authentication() {
    let Setup { upstream, daemon } = setup().await;
    let body = request_body(Protocol::ChatCompletions, false);
    // No token.
    let resp = daemon
        .request(Method::POST, "/v1/chat/completions", &[], body.clone())
        .await;
    openai_error(resp, 401, "authentication_error", "invalid_access_token").await;
    // Wrong token, Bearer and x-api-key; Anthropic shape on /v1/messages.
    let resp = daemon
        .request(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer nope")],
            body.clone(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let resp = daemon
        .request(
            Method::POST,
            "/v1/messages",
            &[("x-api-key", "nope")],
            body.clone(),
        )
        .await;
    anthropic_error(resp, 401, "authentication_error").await;
    // The right token as x-api-key (Anthropic clients).
    upstream.push_reply(Reply::json(
        200,
        canned::json(Protocol::Messages, "claude-test"),
    ));
    let resp = daemon
        .request(
            Method::POST,
            "/v1/messages",
            &[("x-api-key", &daemon.token)],
            request_body(Protocol::Messages, false),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // Bare /messages is the same endpoint.
    let resp = daemon
        .post_json("/messages", request_body(Protocol::Messages, false))
        .await;
    assert_eq!(resp.status(), 200);
    // Open endpoints.
    let resp = daemon.request(Method::GET, "/healthz", &[], "").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_bytes(resp).await, "ok");
    let resp = daemon
        .request(Method::GET, "/managed-settings", &[], "")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await, serde_json::json!({}));
    // /v1/models needs the token.
    let resp = daemon.request(Method::GET, "/v1/models", &[], "").await;
    assert_eq!(resp.status(), 401);
    let auth = format!("Bearer {}", daemon.token);
    let resp = daemon
        .request(Method::GET, "/v1/models", &[("authorization", &auth)], "")
        .await;
    assert_eq!(resp.status(), 200);
    let v = body_json(resp).await;
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["claude-test", "gpt-image-1", "gpt-test"]);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["owned_by"] == "tokenbuddy")
    );
}

#[tokio::test]
async fn bad_requests_get_protocol_shaped_errors() {
    let Setup { upstream, daemon } = setup().await;

    let resp = daemon
        .post_json("/v1/chat/completions", "this is not json")
        .await;
    openai_error(resp, 400, "invalid_request_error", "invalid_json").await;

    let resp = daemon
        .post_json("/v1/chat/completions", r#"{"messages": []}"#)
        .await;
    openai_error(resp, 400, "invalid_request_error", "missing_model").await;

    let resp = daemon.post_json("/v1/messages", r#"{"model": 7}"#).await;
    anthropic_error(resp, 400, "invalid_request_error").await;

    let resp = daemon
        .post_json("/v1/chat/completions", r#"{"model": "nobody-serves-this"}"#)
        .await;
    let v = openai_error(resp, 404, "invalid_request_error", "model_not_found").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("nobody-serves-this")
            && msg.contains("chat_completions")
            && msg.contains("2 upstream"),
        "{msg}"
    );

    // A model served only over a protocol this endpoint cannot be
    // translated to says so (text protocols translate to each other).
    let resp = daemon
        .post_json(
            "/v1/embeddings",
            r#"{"model": "claude-test", "input": "hi"}"#,
        )
        .await;
    let v = openai_error(resp, 404, "invalid_request_error", "model_not_found").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );

    let resp = daemon
        .request(
            Method::GET,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {}", daemon.token))],
            "",
        )
        .await;
    assert_eq!(resp.headers()["allow"], "POST");
    openai_error(resp, 405, "invalid_request_error", "method_not_allowed").await;

    let resp = daemon.post_json("/v1/nope", "{}").await;
    openai_error(resp, 404, "invalid_request_error", "unknown_route").await;

    // Over 10 MiB: refused from Content-Length, without reading the body.
    let big = vec![b' '; 10 * 1024 * 1024 + 1];
    let resp = daemon.post_json("/v1/chat/completions", big).await;
    openai_error(resp, 413, "invalid_request_error", "body_too_large").await;
    let resp = daemon
        .post_json("/v1/messages", vec![b' '; 10 * 1024 * 1024 + 1])
        .await;
    anthropic_error(resp, 413, "request_too_large").await;

    // None of these reached the upstream.
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let Setup { upstream, daemon } = setup().await;
    let err = canned::openai_error("rate_limit_error", "rate_limited", "slow down");
    upstream.push_reply(
        Reply::json(429, err.clone())
            .with_header("retry-after", "3")
            .with_header("x-tokenbuddy-secret", "internal"),
    );
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            request_body(Protocol::ChatCompletions, false),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert!(resp.headers().get("x-tokenbuddy-secret").is_none());
    assert_eq!(body_bytes(resp).await, Bytes::from(err));
}

#[tokio::test]
async fn refused_upstream_is_a_502_naming_it() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[providers]]\nid = \"gone\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k\"\nmodels = [\"m\"]\n"
    );
    let mut daemon = tb_test_support::daemon::Daemon::start(bin(), &config, &[])
        .await
        .unwrap();
    let resp = daemon
        .post_json("/v1/chat/completions", r#"{"model":"m"}"#)
        .await;
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "gone:-|connect_failed"
    );
    let v = openai_error(resp, 502, "api_error", "upstream_unreachable").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("gone") && msg.contains(&port.to_string()),
        "{msg}"
    );
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r["outcome"].as_str(), r["ok"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert!(r["winner"].is_null());
    assert_eq!(r["attempts"][0]["upstream"], "gone");
    assert_eq!(r["attempts"][0]["error_class"], "connect_failed");
    assert!(r["attempts"][0]["status"].is_null());
}

#[tokio::test]
async fn aliases_and_prefixes_rewrite_only_the_model() {
    let Setup { upstream, daemon } =
        setup_with("[models.aliases]\n\"fast\" = \"gpt-test\"\n").await;
    let sent = r#"{"temperature":1.50,"model":"tokenbuddy/fast","stream":false,"messages":[ {"role":"user","content":"x"} ]}"#;
    upstream.push_reply(Reply::json(
        200,
        canned::json(Protocol::ChatCompletions, "gpt-test"),
    ));
    let resp = daemon.post_json("/v1/chat/completions", sent).await;
    assert_eq!(resp.status(), 200);
    let req = &upstream.wait_for_requests(1).await[0];
    assert_eq!(
        std::str::from_utf8(&req.body).unwrap(),
        r#"{"temperature":1.50,"model":"gpt-test","stream":false,"messages":[ {"role":"user","content":"x"} ]}"#
    );
    // `an/claude-test` pins the request to provider `an`.
    upstream.push_reply(Reply::json(
        200,
        canned::json(Protocol::Messages, "claude-test"),
    ));
    let resp = daemon
        .post_json(
            "/v1/messages?beta=true",
            r#"{"model":"an/claude-test","max_tokens":5}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "an");
    let req = &upstream.wait_for_requests(2).await[1];
    assert_eq!(req.path_and_query, "/v1/messages?beta=true");
    assert_eq!(req.json()["model"], "claude-test");
}

#[tokio::test]
async fn deadlines_and_idle_timeouts() {
    let Setup { upstream, daemon } =
        setup_with("[routing]\nrequest_deadline_ms = 1000\nstream_idle_timeout_ms = 1000\n").await;

    // No response head within the deadline: 504 in the protocol's shape.
    upstream.push_reply(
        Reply::json(200, canned::json(Protocol::Messages, "claude-test"))
            .with_head_delay(std::time::Duration::from_secs(30)),
    );
    let resp = daemon
        .post_json("/v1/messages", request_body(Protocol::Messages, false))
        .await;
    assert_eq!(resp.headers()["x-tokenbuddy-attempts"], "an:-|deadline");
    anthropic_error(resp, 504, "api_error").await;

    // A stream that goes silent after content ends with an error event.
    for (protocol, marker) in [
        (Protocol::ChatCompletions, "data: {\"error\":"),
        (Protocol::Messages, "event: error\ndata: {\"error\":"),
        (
            Protocol::Responses,
            "event: error\ndata: {\"code\":\"upstream_timeout\"",
        ),
    ] {
        let events = canned::sse_events(protocol, model_of(protocol));
        let (reply, k) = hang_after_first_content(protocol, &events);
        upstream.push_reply(reply);
        let resp = daemon
            .post_json(protocol.client_path(), request_body(protocol, true))
            .await;
        assert_eq!(resp.status(), 200);
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        let head = String::from_utf8(events[..=k].concat()).unwrap();
        assert!(text.starts_with(&head), "{protocol}: {text}");
        let tail = &text[head.len()..];
        assert!(tail.starts_with(marker), "{protocol}: {tail}");
        assert!(
            tail.contains("stream_idle_timeout_ms") && tail.ends_with("\n\n"),
            "{protocol}: {tail}"
        );
        assert_eq!(
            upstream.next_stream_end().await,
            StreamEnd::ClientGone,
            "the silent upstream is hung up on"
        );
    }
}

#[tokio::test]
async fn unreachable_first_provider_fails_over_to_the_next() {
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[providers]]\nid = \"dead\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k1\"\nmodels = [\"gpt-test\"]\n\
         [[providers]]\nid = \"live\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k2\"\nmodels = [\"gpt-test\"]\n",
        upstream.base_url()
    );
    let daemon = tb_test_support::daemon::Daemon::start(bin(), &config, &[])
        .await
        .unwrap();
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            request_body(Protocol::ChatCompletions, false),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "live");
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "dead:-|connect_failed,live:200|ok"
    );
    assert_eq!(
        upstream.wait_for_requests(1).await[0].header("authorization"),
        Some("Bearer k2")
    );
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Setup { upstream, daemon } = setup_with("[proxy]\nmax_body_bytes = 1000\n").await;
    let addr = daemon.proxy_url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let payload = format!(
        "{{\"model\":\"gpt-test\",\"pad\":\"{}\"}}",
        "x".repeat(2000)
    );
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        daemon.token
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for piece in payload.as_bytes().chunks(300) {
        conn.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        conn.write_all(piece).await.unwrap();
        conn.write_all(b"\r\n").await.unwrap();
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("body_too_large") && answer.contains("1000 bytes"),
        "{answer}"
    );
    assert_eq!(upstream.request_count(), 0);
}

/// A panic inside one request (injected: debug builds with
/// `TB_TEST_FAULTS=1` panic on the model `tokenbuddy-test-panic`) is
/// answered with a protocol-shaped 500 and logged as `proxy.panic`; the
/// connection's other requests and the daemon keep working.
#[tokio::test]
async fn a_panic_costs_one_request_not_the_daemon() {
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), "");
    let daemon = tb_test_support::daemon::Daemon::start(
        bin(),
        &config,
        &[("TEST_OPENAI_KEY", OPENAI_KEY), ("TB_TEST_FAULTS", "1")],
    )
    .await
    .unwrap();

    for (path, shape_key) in [("/v1/chat/completions", "code"), ("/v1/messages", "type")] {
        let resp = daemon
            .post_json(
                path,
                r#"{"model":"tokenbuddy-test-panic","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await;
        assert_eq!(resp.status().as_u16(), 500, "{path}");
        assert!(
            resp.headers().contains_key("x-tokenbuddy-request-id"),
            "{path}"
        );
        let v = body_json(resp).await;
        let error = &v["error"];
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("internal error"),
            "{path}: {v}"
        );
        match shape_key {
            "code" => assert_eq!(error["code"], "internal_error", "{v}"),
            _ => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(error["type"], "api_error", "{v}");
            }
        }
    }
    daemon.wait_for_log("proxy.panic").await;

    // Still serving, and the upstream never saw the panicked requests.
    assert_still_serves(&daemon).await;
    assert_eq!(upstream.requests().len(), 1);
}

/// A plain chat request still gets its 200.
async fn assert_still_serves(daemon: &tb_test_support::daemon::Daemon) {
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    body_bytes(resp).await;
}

/// Raw bytes to the proxy port; everything the daemon answers until it
/// closes the connection.
async fn raw_exchange(proxy_url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    // The daemon must close these connections itself; the timeout only
    // turns a hang into a failure.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("the daemon closed the connection")
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Request smuggling and header injection: ambiguous framing (both
/// `Content-Length` and `Transfer-Encoding`, two different lengths, an
/// unknown transfer coding) and malformed header lines (bare CR, obs-fold)
/// are refused or answered once with the connection closed — a request
/// hidden behind them is never served.
#[tokio::test]
async fn smuggling_and_header_injection_are_refused() {
    let Setup { daemon, upstream } = setup().await;
    let url = daemon.proxy_url.clone();
    let smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    // CL + TE: framed as chunked (TE wins), answered once, then closed.
    let out = raw_exchange(
        &url,
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(
        !out.contains("\r\n\r\nok"),
        "the smuggled request was served: {out}"
    );

    for (what, head) in [
        ("two lengths", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("bare CR in a header", "X-A: a\rb\r\nContent-Length: 2\r\n"),
        ("obs-fold", "X-A: a\r\n b\r\nContent-Length: 2\r\n"),
        ("unknown transfer coding", "Transfer-Encoding: gzip\r\n"),
    ] {
        let out = raw_exchange(
            &url,
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{head}\r\n{{}}{smuggled}")
                .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{what}: {out}");
    }
    assert!(upstream.requests().is_empty());

    assert_still_serves(&daemon).await;
}

/// `proxy.worker_threads`: the default 0 runs one event loop per core,
/// 1 one loop on the main thread, 3 three loops (the daemon logs how many;
/// `event_loops.rs` checks how connections spread). Every shape serves
/// concurrent JSON calls and streams.
#[tokio::test]
async fn worker_threads_choose_the_event_loops_and_every_shape_serves() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (setting, runtime) in [
        ("", format!("event_loops={cores}")),
        ("worker_threads = 1", "event_loops=1".to_owned()),
        ("worker_threads = 3", "event_loops=3".to_owned()),
    ] {
        let Setup { upstream, daemon } = setup_with(&format!("[proxy]\n{setting}\n")).await;
        let chat = || {
            daemon.post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#,
            )
        };
        let (a, b, c, d) = tokio::join!(chat(), chat(), chat(), chat());
        for resp in [a, b, c, d] {
            assert_eq!(resp.status(), 200, "{setting:?}");
            assert_eq!(
                body_bytes(resp).await,
                Bytes::from(canned::json(Protocol::ChatCompletions, "gpt-test"))
            );
        }
        let resp = daemon
            .post_json(
                Protocol::Messages.client_path(),
                request_body(Protocol::Messages, true),
            )
            .await;
        assert_eq!(resp.status(), 200, "{setting:?}");
        assert_eq!(
            body_bytes(resp).await,
            Bytes::from(canned::sse_body(Protocol::Messages, "claude-test"))
        );
        assert_eq!(upstream.requests().len(), 5);
        daemon.wait_for_log(&runtime).await;
    }
}

/// `proxy.require_auth = false`: the access token is no longer asked for
/// (the default asks for it: `security.rs`).
#[tokio::test]
async fn without_require_auth_no_token_is_needed() {
    let Setup { upstream, daemon } = setup_with("[proxy]\nrequire_auth = false").await;
    let resp = daemon
        .request(
            Method::POST,
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            r#"{"model":"gpt-test","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    assert_eq!(upstream.request_count(), 1);
}

/// `[[providers]] headers`: sent upstream with every request of that
/// provider, and only to it.
#[tokio::test]
async fn a_providers_extra_headers_reach_it() {
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let other = tb_test_support::MockUpstream::start().await.unwrap();
    let config = format!(
        "[[providers]]\nid = \"org\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k-org\"\nmodels = [\"m\"]\nheaders = {{ \"OpenAI-Organization\" = \"org-acme\", \"x-team\" = \"blue\" }}\n\n[[providers]]\nid = \"plain\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k-plain\"\nmodels = [\"n\"]\n",
        upstream.base_url(),
        other.base_url()
    );
    let daemon = tb_test_support::daemon::Daemon::start(bin(), &config, &[])
        .await
        .unwrap();
    for model in ["m", "n"] {
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                format!(r#"{{"model":"{model}","messages":[]}}"#),
            )
            .await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("openai-organization"), Some("org-acme"));
    assert_eq!(seen.header("x-team"), Some("blue"));
    assert_eq!(seen.header("authorization"), Some("Bearer k-org"));
    let plain = &other.requests()[0];
    assert_eq!(plain.header("x-team"), None);
}
