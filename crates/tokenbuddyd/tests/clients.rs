//! Hostile and careless clients against the real daemon: slow-loris heads,
//! more connections than `proxy.max_connections`, a client that never
//! reads a huge stream, and clients that go away mid-request. The daemon
//! must cut off what it must, answer what it can, keep its memory bounded,
//! record what happened, and keep serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes, body_json};
use tb_test_support::{Chunk, Reply, StreamEnd, canned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;

fn proxy_addr(daemon: &Daemon) -> SocketAddr {
    daemon
        .proxy_url
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// The daemon's resident memory, from `/proc`.
fn rss_kib(daemon: &Daemon) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens a connection and trickles a request head that never ends, one
/// header line every 100 ms; returns how long the daemon let it live.
async fn slow_loris(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // e.g. a 408; keep reading until closed
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return started.elapsed();
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a slow-loris head lived 20 s"
        );
    }
}

#[tokio::test]
async fn slow_loris_heads_are_cut_off_and_extra_connections_get_a_protocol_shaped_503() {
    let Setup { upstream, daemon } =
        setup_with("[proxy]\nmax_connections = 4\nheader_read_timeout_ms = 1000\n").await;
    let addr = proxy_addr(&daemon);
    // Four slow-loris clients take every slot.
    let lorises: Vec<_> = (0..4).map(|_| tokio::spawn(slow_loris(addr))).collect();
    let status = loop {
        let s = get_json(&daemon, "/v1/status").await;
        if s["connections"]["open"] == 4 {
            break s;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(status["connections"]["max"], 4);

    // A fifth connection is answered, in its protocol's shape, and closed.
    let resp = daemon
        .post_json(
            "/v1/messages",
            r#"{"model":"claude-test","max_tokens":5,"messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v = body_json(resp).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy.max_connections"),
        "{v}"
    );
    let resp = daemon.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(body_json(resp).await["error"]["code"], "overloaded");
    assert_eq!(
        upstream.request_count(),
        0,
        "refusals never reach upstreams"
    );

    // The heads never finish: each is cut off at the header-read timeout.
    for l in lorises {
        let lived = l.await.unwrap();
        assert!(
            lived < Duration::from_secs(5),
            "a slow head lived {lived:?}"
        );
    }
    let resp = daemon.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200, "slots come back");
    body_bytes(resp).await;

    let (_, text) = control(&daemon, http::Method::GET, "/metrics", None, false, "").await;
    let m = parse_metrics(&text);
    assert!(m["tb_connections_refused_total"] >= 2.0, "{m:?}");
}

/// A chat stream of `n` content deltas of `piece`, then usage and `[DONE]`.
fn chat_stream(pieces: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = |delta: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":delta,"finish_reason":null}]})
        )
    };
    out.extend_from_slice(chunk(serde_json::json!({"role":"assistant","content":""})).as_bytes());
    for p in pieces {
        out.extend_from_slice(chunk(serde_json::json!({"content": p})).as_bytes());
    }
    let usage = serde_json::json!({"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":pieces.len(),"total_tokens":5 + pieces.len()}});
    out.extend_from_slice(format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes());
    out
}

const STREAM_CHAT: &str = r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn a_megabyte_line_and_ten_thousand_tiny_events_pass_through_byte_for_byte() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    let cases = [
        ("one 1 MiB line", vec!["x".repeat(1024 * 1024)], 7_919),
        (
            "10,000 one-character events",
            vec!["y".to_string(); 10_000],
            61,
        ),
    ];
    let mut ids = Vec::new();
    for (what, pieces, cut) in &cases {
        let body = chat_stream(pieces);
        upstream.push_reply(Reply::sse(tb_test_support::chunking::split_every(
            &body, *cut,
        )));
        let resp = daemon.post_json("/v1/chat/completions", STREAM_CHAT).await;
        assert_eq!(resp.status(), 200, "{what}");
        ids.push((
            resp.headers()["x-tokenbuddy-request-id"]
                .to_str()
                .unwrap()
                .to_string(),
            pieces.len(),
        ));
        let got = body_bytes(resp).await;
        assert!(got == body, "{what}: the client got other bytes");
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    for (id, n) in ids {
        let r = records
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap();
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["output_tokens"], n as u64, "usage read from the stream");
    }
}

#[tokio::test]
async fn a_client_that_never_reads_costs_bounded_memory_and_is_recorded_cancelled() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    // 64 MiB of content in 16 KiB deltas, then a gate the test never opens.
    let events = canned::sse_events(Protocol::ChatCompletions, "gpt-test");
    let k = first_content(Protocol::ChatCompletions, &events);
    let delta = Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\"finish_reason\":null}}]}}\n\n",
        "z".repeat(16 * 1024)
    ));
    let mut chunks: Vec<Chunk> = events[..=k]
        .iter()
        .map(|e| Chunk::Data(Bytes::from(e.clone())))
        .collect();
    chunks.extend(std::iter::repeat_n(Chunk::Data(delta), 4 * 1024));
    chunks.push(Chunk::Hang);
    upstream.push_reply(Reply::sse(chunks));

    let before = rss_kib(&daemon);
    let mut reader = TcpStream::connect(proxy_addr(&daemon)).await.unwrap();
    reader
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAM_CHAT}",
                daemon.token,
                STREAM_CHAT.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The subject of this test is time passing while nobody reads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_kib(&daemon);
    assert!(
        during < before + 32 * 1024,
        "the daemon buffered a stream nobody reads: RSS {before} → {during} KiB"
    );
    assert_eq!(
        upstream.try_next_stream_end(),
        None,
        "backpressure reached the upstream: it could not finish sending"
    );

    // Everyone else is served meanwhile.
    let resp = daemon.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;

    drop(reader);
    assert_eq!(stream_end(&upstream).await, StreamEnd::ClientGone);
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["outcome"], "cancelled", "{:#}", records[0]);
    println!("RSS while a 64 MiB stream waited on a non-reader: {before} → {during} KiB");
}

/// How the upstream's current stream ended (bounded wait).
async fn stream_end(upstream: &tb_test_support::MockUpstream) -> StreamEnd {
    tokio::time::timeout(Duration::from_secs(20), upstream.next_stream_end())
        .await
        .expect("the upstream stream never ended: the daemon kept it open")
}

#[tokio::test]
async fn clients_that_go_away_are_recorded_cancelled_for_every_protocol() {
    let Setup {
        upstream,
        mut daemon,
    } = setup().await;
    let model = |p: Protocol| {
        if p == Protocol::Messages {
            "claude-test"
        } else if p == Protocol::ImagesGenerations {
            "gpt-image-1"
        } else {
            "gpt-test"
        }
    };
    let mut n = 0;
    for p in STREAMING_PROTOCOLS {
        // Before the answer: the upstream is slow, the client gives up.
        // (A chunked body reports how it ended; a whole one would not.)
        upstream.push_reply(
            Reply::chunked(
                200,
                vec![Chunk::Data(Bytes::from(canned::json(p, model(p))))],
            )
            .with_header("content-type", "application/json")
            .with_head_delay(Duration::from_secs(30)),
        );
        let body = format!(
            "{{\"model\":\"{}\",\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\",\"max_tokens\":5}}",
            model(p)
        );
        let gave_up = tokio::time::timeout(
            Duration::from_millis(300),
            daemon.post_json(p.client_path(), body),
        )
        .await;
        assert!(gave_up.is_err(), "{p}: the answer was held back");
        assert_eq!(stream_end(&upstream).await, StreamEnd::ClientGone, "{p}");
        n += 1;

        // Mid-stream: after the first content, the client hangs up.
        let events = canned::sse_events(p, model(p));
        upstream.push_reply(hang_after_first_content(p, &events).0);
        let body = format!(
            "{{\"model\":\"{}\",\"stream\":true,\"messages\":[],\"input\":\"hi\",\"prompt\":\"a dot\",\"max_tokens\":5}}",
            model(p)
        );
        let resp = daemon.post_json(p.client_path(), body).await;
        assert_eq!(resp.status(), 200, "{p}");
        let mut stream = resp.into_body();
        stream.frame().await.unwrap().unwrap();
        drop(stream);
        assert_eq!(stream_end(&upstream).await, StreamEnd::ClientGone, "{p}");
        n += 1;
    }
    // Still serving.
    let resp = daemon.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), n + 1);
    let cancelled = records
        .iter()
        .filter(|r| r["outcome"] == "cancelled")
        .count();
    assert_eq!(cancelled, n, "{records:#?}");
}
