//! The fetcher against a scripted HTTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tb_registry::{FetchError, RegistryFetcher};
use tb_test_support::{Chunk, MockUpstream, Reply, StreamEnd};

const CAP: u64 = 64 * 1024;

async fn setup() -> (MockUpstream, RegistryFetcher) {
    let mock = MockUpstream::start().await.unwrap();
    let url = format!("{}/registry.json", mock.root_url());
    let fetcher =
        RegistryFetcher::new(url, CAP, common::client()).with_timeout(Duration::from_secs(5));
    (mock, fetcher)
}

fn good_doc() -> String {
    common::doc("v1", &[common::seller("s-alpha"), common::seller("s-beta")])
}

#[tokio::test]
async fn ok_document() {
    let (mock, fetcher) = setup().await;
    let body = good_doc();
    mock.push_reply(Reply::json(200, body.clone()));
    let fetched = fetcher.fetch().await.unwrap();
    assert_eq!(fetched.doc.version, "v1");
    assert_eq!(fetched.doc.sellers.len(), 2);
    assert_eq!(fetched.raw, Bytes::from(body));
    assert!(fetched.warnings.is_empty());
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::GET);
    assert_eq!(seen[0].path(), "/registry.json");
    assert_eq!(seen[0].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn warnings_come_back_with_the_document() {
    let (mock, fetcher) = setup().await;
    let mut bad = common::seller("s-bad");
    bad["url"] = serde_json::json!("ftp://x");
    mock.push_reply(Reply::json(
        200,
        common::doc("v1", &[common::seller("s-alpha"), bad]),
    ));
    let fetched = fetcher.fetch().await.unwrap();
    assert_eq!(fetched.doc.sellers.len(), 1);
    assert_eq!(fetched.warnings.len(), 1, "{:?}", fetched.warnings);
}

#[tokio::test]
async fn a_document_exactly_at_the_cap_is_accepted() {
    let (mock, fetcher) = setup().await;
    let mut body = good_doc();
    body.push_str(&" ".repeat(CAP as usize - body.len()));
    assert_eq!(body.len() as u64, CAP);
    mock.push_reply(Reply::chunked(200, vec![Chunk::Data(body.clone().into())]));
    let fetched = fetcher.fetch().await.unwrap();
    assert_eq!(fetched.raw.len() as u64, CAP);
}

#[tokio::test]
async fn error_answers() {
    let too_large = || Err(FetchError::TooLarge);
    let cases: Vec<(&str, Reply, Result<(), FetchError>)> = vec![
        ("413", Reply::json(413, "{}"), too_large()),
        (
            "the too-large header on a 200",
            Reply::json(200, good_doc()).with_header("X-TokenBuddy-Registry-Too-Large", "1"),
            too_large(),
        ),
        (
            "the too-large header on a 503",
            Reply::json(503, "").with_header("x-tokenbuddy-registry-too-large", "1"),
            too_large(),
        ),
        (
            "the header with another value is not too-large",
            Reply::json(200, good_doc()).with_header("x-tokenbuddy-registry-too-large", "0"),
            Ok(()),
        ),
        ("500", Reply::json(500, "{}"), Err(FetchError::Status(500))),
        (
            "404",
            Reply::text(404, "nope"),
            Err(FetchError::Status(404)),
        ),
        (
            "302",
            Reply::text(302, "").with_header("location", "/elsewhere"),
            Err(FetchError::Status(302)),
        ),
        (
            "a content-length above the cap",
            Reply::json(200, " ".repeat(CAP as usize + 1)),
            too_large(),
        ),
    ];
    for (name, reply, want) in cases {
        let (mock, fetcher) = setup().await;
        mock.push_reply(reply);
        let got = fetcher.fetch().await.map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn garbage_is_invalid() {
    for body in [
        "<html>oops</html>",
        "[]",
        "{\"sellers\": 3}",
        "",
        "{\"sellers\": [tru",
    ] {
        let (mock, fetcher) = setup().await;
        mock.push_reply(Reply::json(200, body));
        match fetcher.fetch().await {
            Err(FetchError::Invalid(msg)) => {
                assert!(msg.contains("invalid registry document"), "{msg}")
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
}

/// A chunked body (no content-length) 64 times the cap, then a stream that
/// never ends: the fetcher must stop at the cap and hang up, not read on
/// (which would end in a timeout) nor buffer it all.
#[tokio::test]
async fn reading_stops_past_the_cap() {
    let (mock, fetcher) = setup().await;
    let chunk = Bytes::from(vec![b' '; 16 * 1024]);
    let mut chunks: Vec<Chunk> = (0..(64 * CAP as usize / chunk.len()))
        .map(|_| Chunk::Data(chunk.clone()))
        .collect();
    chunks.push(Chunk::Hang);
    mock.push_reply(Reply::chunked(200, chunks));
    let started = Instant::now();
    assert_eq!(fetcher.fetch().await.unwrap_err(), FetchError::TooLarge);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The server saw the client go away before the end of the body.
    let end = tokio::time::timeout(Duration::from_secs(5), mock.next_stream_end()).await;
    assert_eq!(end.unwrap(), StreamEnd::ClientGone);
}

#[tokio::test]
async fn a_slow_head_times_out() {
    let (mock, fetcher) = setup().await;
    let fetcher = fetcher.with_timeout(Duration::from_millis(200));
    mock.push_reply(Reply::json(200, good_doc()).with_head_delay(Duration::from_secs(3)));
    let started = Instant::now();
    assert_eq!(fetcher.fetch().await.unwrap_err(), FetchError::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let (mock, fetcher) = setup().await;
    let fetcher = fetcher.with_timeout(Duration::from_millis(200));
    mock.push_reply(Reply::chunked(
        200,
        vec![Chunk::Data("{\"sellers\": [".into()), Chunk::Hang],
    ));
    assert_eq!(fetcher.fetch().await.unwrap_err(), FetchError::Timeout);
}

#[tokio::test]
async fn unreachable_registry_is_a_network_error() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fetcher = RegistryFetcher::new(format!("http://127.0.0.1:{port}/r"), CAP, common::client());
    match fetcher.fetch().await {
        Err(FetchError::Network(msg)) => assert!(!msg.is_empty()),
        other => panic!("{other:?}"),
    }
    let fetcher = RegistryFetcher::new("not a url", CAP, common::client());
    match fetcher.fetch().await {
        Err(FetchError::Network(msg)) => assert!(msg.contains("not a valid URL"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_large_document_is_parsed_off_the_runtime() {
    // Above the inline-parse threshold: goes through the blocking pool.
    let sellers: Vec<_> = (0..1_000)
        .map(|i| common::seller(&format!("s-{i}")))
        .collect();
    let body = common::doc("v-large", &sellers);
    assert!(body.len() > 128 * 1024);
    let mock = MockUpstream::start().await.unwrap();
    let fetcher = RegistryFetcher::new(mock.root_url(), 4 * 1024 * 1024, common::client());
    mock.push_reply(Reply::json(200, body));
    let fetched = fetcher.fetch().await.unwrap();
    assert_eq!(fetched.doc.sellers.len(), 1_000);
}
