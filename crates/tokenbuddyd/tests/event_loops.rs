//! End-to-end: `proxy.worker_threads` spreads client connections over
//! event loops. A lone client is served by loop 0 (the main thread); a
//! second connection open at the same time goes to the idle loop 1; each
//! keeps its loop until it closes. On shutdown every loop drains: a stream
//! in flight on loop 1 finishes, its record is written and the process
//! exits 0. With `worker_threads = 1` there is one loop only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tb_test_support::StreamEnd;
use tb_test_support::daemon::Daemon;

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;

/// A keep-alive connection of its own to the proxy.
async fn connection(daemon: &Daemon) -> SendRequest<Full<Bytes>> {
    let addr = daemon.proxy_url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn chat_on(sender: &mut SendRequest<Full<Bytes>>, daemon: &Daemon) {
    let req = http::Request::post("/v1/chat/completions")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {}", daemon.token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
}

/// `tb_event_loop_connections`, loop by loop.
async fn per_loop(daemon: &Daemon) -> Vec<f64> {
    let (status, text) = control(daemon, http::Method::GET, "/metrics", None, false, "").await;
    assert_eq!(status, 200);
    let m = parse_metrics(&text);
    (0..)
        .map_while(|i| {
            m.get(&format!(r#"tb_event_loop_connections{{event_loop="{i}"}}"#))
                .copied()
        })
        .collect()
}

/// Polls the metric until it reads `want` (a closed connection is noticed
/// by the daemon a moment after the client drops it).
async fn wait_per_loop(daemon: &Daemon, want: &[f64]) {
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = per_loop(daemon).await;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("event loops held {seen:?} connections, expected {want:?}");
}

#[tokio::test]
async fn connections_spread_over_event_loops_and_all_of_them_drain() {
    let Setup {
        upstream,
        mut daemon,
    } = setup_with("[proxy]\nworker_threads = 2\n").await;
    // daemon.started names the loops.
    daemon.wait_for_log("event_loops=2").await;

    // A lone client is served by loop 0.
    let mut first = connection(&daemon).await;
    chat_on(&mut first, &daemon).await;
    wait_per_loop(&daemon, &[1.0, 0.0]).await;

    // A second connection at the same time goes to the idle loop 1.
    let mut second = connection(&daemon).await;
    chat_on(&mut second, &daemon).await;
    wait_per_loop(&daemon, &[1.0, 1.0]).await;
    // Each connection keeps its loop.
    chat_on(&mut first, &daemon).await;
    chat_on(&mut second, &daemon).await;
    wait_per_loop(&daemon, &[1.0, 1.0]).await;

    // Loop 0 frees up when its client leaves; the next one is served there.
    drop(first);
    wait_per_loop(&daemon, &[0.0, 1.0]).await;
    let mut third = connection(&daemon).await;
    chat_on(&mut third, &daemon).await;
    wait_per_loop(&daemon, &[1.0, 1.0]).await;
    drop((second, third));
    wait_per_loop(&daemon, &[0.0, 0.0]).await;

    // A stream in flight on loop 1 when the daemon is stopped.
    let mut keep = connection(&daemon).await;
    chat_on(&mut keep, &daemon).await;
    let stream = held_stream(&upstream, &daemon).await;
    wait_per_loop(&daemon, &[1.0, 1.0]).await;
    daemon.sigterm().unwrap();
    daemon.wait_for_log("draining in-flight requests").await;
    stream.finish().await;
    assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
    drop(keep);
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon exits once every loop has drained")
        .unwrap();
    assert!(status.success(), "{status:?}; logs:\n{}", daemon.logs());
    let records = read_ledger(daemon.home()).await;
    assert_eq!(records.len(), 7, "every call recorded once");
}

#[tokio::test]
async fn one_worker_thread_is_one_loop() {
    let Setup {
        upstream: _upstream,
        daemon,
    } = setup_with("[proxy]\nworker_threads = 1\n").await;
    let mut first = connection(&daemon).await;
    let mut second = connection(&daemon).await;
    chat_on(&mut first, &daemon).await;
    chat_on(&mut second, &daemon).await;
    wait_per_loop(&daemon, &[2.0]).await;
}
