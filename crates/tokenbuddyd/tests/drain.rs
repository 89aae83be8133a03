//! End-to-end: a second SIGTERM during the drain-delay window. The first
//! turns `/readyz` 503 while new connections are still served for
//! `proxy.drain_delay_ms`; the second skips the rest of that window: the
//! listener closes at once, the stream in flight still finishes, every
//! call record is written and the process exits 0 long before the window
//! would have ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tb_test_support::StreamEnd;

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
/// Far longer than the test may take.
const WINDOW: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_second_sigterm_skips_the_drain_delay_and_loses_nothing() {
    let Setup {
        upstream,
        mut daemon,
    } = setup_with(&format!(
        "[proxy]\ndrain_delay_ms = {}\n",
        WINDOW.as_millis()
    ))
    .await;
    let port: u16 = daemon
        .proxy_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // A stream in flight, held after its first content event.
    let stream = held_stream(&upstream, &daemon).await;

    // The first SIGTERM: not ready, yet still serving new connections.
    daemon.sigterm().unwrap();
    let first = Instant::now();
    daemon
        .wait_for_log("still serving new connections so the load balancer notices")
        .await;
    let resp = daemon.request(http::Method::GET, "/readyz", &[], "").await;
    assert_eq!(resp.status(), 503);
    post_ok(&daemon, CHAT).await;

    // The second SIGTERM: the window ends now, not in two minutes.
    daemon.sigterm().unwrap();
    daemon.wait_for_log("drain delay cut short").await;
    daemon.wait_for_log("draining in-flight requests").await;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(
        refused.is_err(),
        "the proxy port still accepts after the second SIGTERM"
    );

    // The stream in flight finishes in full, then the process exits 0.
    stream.finish().await;
    assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon exits once the stream has finished")
        .unwrap();
    let took = first.elapsed();
    assert!(status.success(), "{status:?}; logs:\n{}", daemon.logs());
    assert!(
        took < WINDOW / 4,
        "exited {took:?} after the first SIGTERM (window {WINDOW:?})"
    );
    let logs = daemon.logs();
    assert!(
        logs.contains("second signal"),
        "the second signal is logged:\n{logs}"
    );

    // Both calls are in the ledger: the stream and the one in the window.
    let records = read_ledger(daemon.home()).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r["ok"] == true), "{records:?}");
    assert_no_secrets(&daemon, &records);
}
