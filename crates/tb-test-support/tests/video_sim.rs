//! The simulated video provider: refuses, accepts, completes after N polls,
//! bills and serves content as scripted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tb_test_support::{MockUpstream, VideoSim};

async fn send(method: &str, url: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let method = if method == "POST" {
        Method::POST
    } else {
        Method::GET
    };
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn a_job_goes_queued_in_progress_completed_and_bills_as_scripted() {
    let mock = MockUpstream::start().await.unwrap();
    mock.simulate_video(VideoSim {
        polls_to_complete: 3,
        produced_seconds: Some(6),
        bill_multiplier: 100,
        ..VideoSim::accepting("video_b_")
    });
    let base = mock.base_url();
    let (status, body) = send(
        "POST",
        &format!("{base}/videos"),
        Some(r#"{"model":"sora-2","prompt":"a cat","seconds":"8"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let job = json(&body);
    assert_eq!(job["id"], "video_b_1");
    assert_eq!(job["status"], "queued");
    let poll = format!("{base}/videos/video_b_1");
    let (early, _) = send("GET", &format!("{poll}/content"), None).await;
    assert_eq!(early, 409, "no content before the job completes");
    let statuses: Vec<Value> = [
        send("GET", &poll, None).await,
        send("GET", &poll, None).await,
        send("GET", &poll, None).await,
    ]
    .iter()
    .map(|(_, b)| json(b))
    .collect();
    assert_eq!(statuses[0]["status"], "queued");
    assert_eq!(statuses[1]["status"], "in_progress");
    assert_eq!(statuses[2]["status"], "completed");
    assert_eq!(statuses[2]["seconds"], "6");
    // 6 s × $0.10 × 100.
    assert_eq!(statuses[2]["usage"]["cost"].as_f64(), Some(60.0));
    let (status, bytes) = send("GET", &format!("{poll}/content"), None).await;
    assert_eq!(status, 200);
    assert!(bytes.starts_with(b"\x00\x00\x00\x18ftyp"));
    assert_eq!(mock.requests_under("/v1/videos").len(), 6);
}

#[tokio::test]
async fn a_refusing_provider_refuses_every_submit() {
    let mock = MockUpstream::start().await.unwrap();
    mock.simulate_video(VideoSim {
        refuse_submit: Some(503),
        ..VideoSim::accepting("video_a_")
    });
    let url = format!("{}/videos", mock.base_url());
    let (status, _) = send("POST", &url, Some(r#"{"model":"m","prompt":"p"}"#)).await;
    assert_eq!(status, 503);
    let (status, _) = send("GET", &format!("{url}/video_a_1"), None).await;
    assert_eq!(status, 404);
}
