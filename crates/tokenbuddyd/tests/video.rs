//! Video jobs through the gateway (docs/video.md), against the real binary:
//! the submit fails over, the job is mapped to the upstream that accepted
//! it across a restart, the record is written once at the terminal state
//! and billed on the produced seconds, a ×100 bill is flagged, the content
//! streams from the accepting upstream, a malformed body reaches nobody.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, log_events, read_ledger};
use http::Method;
use serde_json::Value;
use tb_test_support::daemon::{Daemon, body_bytes, body_json};
use tb_test_support::{MockUpstream, VideoSim};

const MODEL: &str = "sora-2";

/// `first` (cheaper: $0.05/s, listed second) refuses; `second` ($0.10/s).
fn config(first: &MockUpstream, second: &MockUpstream) -> String {
    format!(
        r#"
[log]
level = "info"
format = "json"

[[providers]]
id = "second"
kind = "openai"
base_url = "{second}"
api_key = "k-second"
models = ["{MODEL}"]
protocols = ["videos"]
video_prices = {{ "{MODEL}" = 0.10 }}

[[providers]]
id = "first"
kind = "openai"
base_url = "{first}"
api_key = "k-first"
models = ["{MODEL}"]
protocols = ["videos"]
video_prices = {{ "{MODEL}" = 0.05 }}
"#,
        first = first.base_url(),
        second = second.base_url(),
    )
}

async fn get(daemon: &Daemon, path: &str) -> http::Response<hyper::body::Incoming> {
    let auth = format!("Bearer {}", daemon.token);
    daemon
        .request(Method::GET, path, &[("authorization", &auth)], "")
        .await
}

#[tokio::test]
async fn a_refused_submit_fails_over_and_the_job_is_billed_once_on_produced_seconds() {
    let first = MockUpstream::start().await.unwrap();
    first.simulate_video(VideoSim {
        refuse_submit: Some(503),
        ..VideoSim::accepting("video_first_")
    });
    let second = MockUpstream::start().await.unwrap();
    second.simulate_video(VideoSim {
        polls_to_complete: 2,
        produced_seconds: Some(6),
        // The provider bills ×100 its own price: flagged as an outlier.
        bill_multiplier: 100,
        ..VideoSim::accepting("video_second_")
    });
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();

    let resp = daemon
        .post_json(
            "/v1/videos",
            format!(r#"{{"model":"{MODEL}","prompt":"a cat on a skateboard","seconds":"8"}}"#),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
    let job = body_json(resp).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        id, "video_second_1",
        "the client sees the upstream's job id"
    );
    assert_eq!(job["status"], "queued");
    // The cheaper route (`video_prices`: $0.05/s) was tried first: routes
    // are ordered by the cost of an 8-second clip.
    assert_eq!(first.requests_under("/v1/videos").len(), 1);
    assert_eq!(
        first.requests()[0].headers["authorization"],
        "Bearer k-first"
    );

    // The first poll: still queued, nothing recorded.
    let poll = body_json(get(&daemon, &format!("/v1/videos/{id}")).await).await;
    assert_eq!(poll["status"], "queued");

    // Restart on the same TB_HOME: the job still reaches `second`.
    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let home = daemon.into_home();
    let daemon = Daemon::start_in(bin(), home, &[]).await.unwrap();
    let done = body_json(get(&daemon, &format!("/v1/videos/{id}")).await).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["seconds"], "6");
    // A second poll of the finished job records nothing more.
    let again = get(&daemon, &format!("/v1/videos/{id}")).await;
    assert_eq!(again.status(), 200);
    body_bytes(again).await;
    assert_eq!(first.requests_under("/v1/videos").len(), 1);
    assert_eq!(second.requests_under(&format!("/v1/videos/{id}")).len(), 3);

    // The content streams from the accepting upstream.
    let content = get(&daemon, &format!("/v1/videos/{id}/content")).await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.headers()["content-type"], "video/mp4");
    let bytes = body_bytes(content).await;
    assert!(bytes.starts_with(b"\x00\x00\x00\x18ftypmp42"), "{bytes:?}");
    let outliers = log_events(&daemon, "billing.cost_outlier");

    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    let videos: Vec<&Value> = records
        .iter()
        .filter(|r| r["protocol"] == "videos")
        .collect();
    assert_eq!(videos.len(), 1, "one record per job: {records:?}");
    let r = videos[0];
    assert_eq!(r["winner"], "second");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["billing_unit"], "seconds");
    // Estimated on the 6 produced seconds (not the 8 asked) at the
    // accepting route's `video_prices` ($0.10/s) …
    assert_eq!(r["est_cost_usd_micros"], 600_000);
    // … and the provider's ×100 bill is what it cost, flagged.
    assert_eq!(r["cost_usd_micros"], 60_000_000);
    // sora-2 has a LiteLLM row ($0.10/s, `output_cost_per_video_per_second`):
    // the baseline is the official price of the 6 produced seconds.
    assert_eq!(r["baseline_kind"], "official");
    assert_eq!(r["baseline_usd_micros"], 600_000);
    assert_eq!(outliers.len(), 1, "{}", daemon.logs());
    let logs = daemon.logs();
    assert!(!logs.contains("k-second") && !logs.contains("k-first"));
}

#[tokio::test]
async fn a_malformed_video_body_is_refused_before_any_upstream() {
    let first = MockUpstream::start().await.unwrap();
    first.simulate_video(VideoSim::accepting("video_a_"));
    let second = MockUpstream::start().await.unwrap();
    second.simulate_video(VideoSim::accepting("video_b_"));
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();
    for (body, needle) in [
        ("not json", "not a JSON object"),
        (r#"{"prompt":"p"}"#, "`model`"),
        (r#"{"model":"sora-2"}"#, "`prompt`"),
        (
            r#"{"model":"sora-2","prompt":"p","seconds":"eight"}"#,
            "`seconds`",
        ),
    ] {
        let resp = daemon.post_json("/v1/videos", body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err = body_json(resp).await;
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // An unknown job id is a 404 that names the way to submit one.
    let resp = get(&daemon, "/v1/videos/video_nope").await;
    assert_eq!(resp.status(), 404);
    let err = body_json(resp).await;
    assert_eq!(err["error"]["code"], "video_not_found");
    assert_eq!(first.request_count() + second.request_count(), 0);
}
