//! Video jobs through the gateway (docs/video.md), against the real binary:
//! the submit fails over, the job is mapped to the upstream that accepted
//! it across a restart, the record is written once at the terminal state
//! and billed on the produced seconds, a ×100 bill is flagged, the content
//! streams from the accepting upstream, a malformed body reaches nobody;
//! a member's submit is checked against its key and the job's record is
//! the member's whoever polls it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, log_events, member_key, read_ledger};
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

/// A multipart submit (OpenAI's `input_reference` file plus the text
/// fields): routed by its `model` field, forwarded byte for byte with the
/// client's boundary, and the record's attempt chain holds the refused
/// submit before the accepting one.
#[tokio::test]
async fn a_multipart_submit_is_routed_by_its_form_and_keeps_its_attempt_chain() {
    const BOUNDARY: &str = "tb-video-form-42";
    let first = MockUpstream::start().await.unwrap();
    first.simulate_video(VideoSim {
        refuse_submit: Some(502),
        ..VideoSim::accepting("video_first_")
    });
    let second = MockUpstream::start().await.unwrap();
    second.simulate_video(VideoSim {
        polls_to_complete: 1,
        produced_seconds: Some(4),
        ..VideoSim::accepting("video_second_")
    });
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();
    let mut form = Vec::new();
    for (headers, value) in [
        (
            "name=\"input_reference\"; filename=\"ref.png\"\r\nContent-Type: image/png",
            &b"\x89PNG\r\n\x1a\n reference frame"[..],
        ),
        ("name=\"model\"", MODEL.as_bytes()),
        ("name=\"prompt\"", b"the reference, animated"),
        ("name=\"seconds\"", b"4"),
        ("name=\"size\"", b"720x1280"),
    ] {
        form.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; {headers}\r\n\r\n").as_bytes(),
        );
        form.extend_from_slice(value);
        form.extend_from_slice(b"\r\n");
    }
    form.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let auth = format!("Bearer {}", daemon.token);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let post = |body: Vec<u8>| {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", ct.as_str()),
        ];
        let daemon = &daemon;
        async move {
            daemon
                .request(Method::POST, "/v1/videos", &headers, body)
                .await
        }
    };
    let resp = post(form.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
    let id = body_json(resp).await["id"].as_str().unwrap().to_string();
    for up in [&first, &second] {
        let submits = up.requests_under("/v1/videos");
        assert_eq!(submits.len(), 1);
        assert_eq!(submits[0].body.as_ref(), form.as_slice());
        assert_eq!(submits[0].header("content-type"), Some(ct.as_str()));
    }
    // A form without `prompt`, or with a broken boundary, reaches nobody.
    let no_prompt = String::from_utf8_lossy(&form).replace("name=\"prompt\"", "name=\"note\"");
    let resp = post(no_prompt.into_bytes()).await;
    assert_eq!(resp.status(), 400);
    assert!(
        body_json(resp).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`prompt`")
    );
    let resp = post(form[..form.len() / 2].to_vec()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp).await["error"]["code"], "invalid_multipart");
    assert_eq!(
        first.requests_under("/v1/videos").len() + second.requests_under("/v1/videos").len(),
        2
    );

    let done = body_json(get(&daemon, &format!("/v1/videos/{id}")).await).await;
    assert_eq!(done["status"], "completed");
    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    let r = records.iter().find(|r| r["protocol"] == "videos").unwrap();
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["failed_over"], true);
    let chain: Vec<(&str, u64, &str)> = r["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["upstream"].as_str().unwrap(),
                a["status"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [("first", 502, "server_error"), ("second", 200, "ok")]
    );
    // 4 produced seconds at $0.10/s; sora-2's official price is $0.10/s too.
    assert_eq!(r["est_cost_usd_micros"], 400_000);
    assert_eq!(r["baseline_kind"], "official");
}

/// Submits feed the breakers like any other call: an upstream refusing
/// with 5xx opens its circuit and is then tried last; a client's 400
/// never counts against it. Refused submits are recorded at once.
#[tokio::test]
async fn failed_submits_feed_breakers_and_client_errors_do_not() {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    second.simulate_video(VideoSim::accepting("video_second_"));
    let breaker = "\n[breaker]\nmax_failures = 2\nwindow_ms = 60000\ncooldown_ms = 600000\n";
    let daemon = Daemon::start(bin(), &(config(&first, &second) + breaker), &[])
        .await
        .unwrap();
    let submit = || {
        daemon.post_json(
            "/v1/videos",
            format!(r#"{{"model":"{MODEL}","prompt":"p"}}"#),
        )
    };

    // The client's mistake, three times: answered as is, never failed over,
    // and the upstream stays first choice.
    first.simulate_video(VideoSim {
        refuse_submit: Some(400),
        ..VideoSim::accepting("video_first_")
    });
    for _ in 0..3 {
        let resp = submit().await;
        assert_eq!(resp.status(), 400);
        body_bytes(resp).await;
    }
    first.simulate_video(VideoSim::accepting("video_first_"));
    let resp = submit().await;
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "first");
    body_bytes(resp).await;
    assert_eq!(second.requests_under("/v1/videos").len(), 0);

    // Two 5xx refusals open its circuit: the next submit goes to `second`
    // first, without asking `first`.
    first.simulate_video(VideoSim {
        refuse_submit: Some(503),
        ..VideoSim::accepting("video_first_")
    });
    for _ in 0..2 {
        let resp = submit().await;
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
        body_bytes(resp).await;
    }
    first.simulate_video(VideoSim::accepting("video_first_"));
    let asked_first = first.requests_under("/v1/videos").len();
    let resp = submit().await;
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
    body_bytes(resp).await;
    assert_eq!(first.requests_under("/v1/videos").len(), asked_first);

    // Both down: one record at once with the whole chain.
    first.simulate_video(VideoSim {
        refuse_submit: Some(503),
        ..VideoSim::accepting("video_first_")
    });
    second.simulate_video(VideoSim {
        refuse_submit: Some(500),
        ..VideoSim::accepting("video_second_")
    });
    let resp = submit().await;
    assert_eq!(resp.status(), 502);
    body_bytes(resp).await;

    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["protocol"] == "videos" && r["outcome"] == "failed")
        .collect();
    // Three client errors (one attempt each) and the exhausted submit.
    assert_eq!(refused.len(), 4, "{records:#?}");
    let client = refused
        .iter()
        .filter(|r| r["attempts"][0]["status"] == 400)
        .count();
    assert_eq!(client, 3);
    let exhausted = refused
        .iter()
        .find(|r| r["attempts"].as_array().unwrap().len() == 2)
        .unwrap();
    assert_eq!(exhausted["attempts"][0]["upstream"], "second");
    assert_eq!(exhausted["attempts"][0]["outcome"], "server_error");
    assert_eq!(exhausted["attempts"][1]["upstream"], "first");
    assert!(exhausted["winner"].is_null());
    assert!(exhausted["cost_usd_micros"].is_null());
}

async fn submit_as(daemon: &Daemon, key: &str) -> http::Response<hyper::body::Incoming> {
    common::submit_video_as(daemon, key, MODEL, 8).await
}

#[tokio::test]
async fn a_members_job_is_checked_at_submit_and_recorded_as_theirs() {
    let first = MockUpstream::start().await.unwrap();
    first.simulate_video(VideoSim::accepting("video_first_"));
    let second = MockUpstream::start().await.unwrap();
    second.simulate_video(VideoSim::accepting("video_second_"));
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();

    // A key without the model is refused before any upstream.
    let narrow = member_key(&daemon, "wu", &["--models", "gpt-4o"]).await;
    let resp = submit_as(&daemon, &narrow).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(body_json(resp).await["error"]["code"], "model_not_allowed");
    assert!(first.requests_under("/v1/videos").is_empty());

    // A member with a $0.90 budget submits an 8-second job ($0.80 at the
    // priciest route: it fits whole, and is reserved).
    let key = member_key(&daemon, "vi", &["--budget-usd", "0.9"]).await;
    let resp = submit_as(&daemon, &key).await;
    assert_eq!(resp.status(), 200);
    let id = body_json(resp).await["id"].as_str().unwrap().to_string();

    // The terminal poll comes from the access token, after a restart: the
    // record is still the member's.
    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let daemon = Daemon::start_in(bin(), daemon.into_home(), &[])
        .await
        .unwrap();
    for _ in 0..2 {
        body_bytes(get(&daemon, &format!("/v1/videos/{id}")).await).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let record = loop {
        let calls = common::get_json(&daemon, "/v1/calls?protocol=videos").await;
        if let Some(c) = calls["calls"].as_array().unwrap().first() {
            break c.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no video record");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(record["member"], "vi", "{record}");
    assert_eq!(record["cost_usd_micros"], 800_000);

    // The record spent $0.80: the next job's $0.80 does not fit in the
    // $0.10 left, and is refused reaching no upstream.
    let reached = first.request_count() + second.request_count();
    let resp = submit_as(&daemon, &key).await;
    assert_eq!(resp.status(), 402);
    let err = body_json(resp).await;
    assert_eq!(err["error"]["code"], "member_budget_spent", "{err}");
    assert_eq!(first.request_count() + second.request_count(), reached);
}
