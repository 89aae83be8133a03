//! `POST /v1/images/edits` through the real binary: a multipart form is
//! routed by its `model` field, fails over before the first byte, reaches
//! the upstream byte for byte (only an alias in `model` is rewritten), is
//! billed per image, and a broken form never reaches an upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, read_ledger};
use http::Method;
use tb_test_support::daemon::{Daemon, body_json};
use tb_test_support::{MockUpstream, Reply};

const MODEL: &str = "gpt-image-1";
const BOUNDARY: &str = "tb-edit-boundary-7c1";

/// `first` is listed first; both serve image edits only.
fn config(first: &MockUpstream, second: &MockUpstream) -> String {
    format!(
        r#"
[models]
aliases = {{ "house-editor" = "{MODEL}" }}

[[providers]]
id = "first"
kind = "openai"
base_url = "{first}"
api_key = "k-first"
models = ["{MODEL}"]
protocols = ["images_edits"]

[[providers]]
id = "second"
kind = "openai"
base_url = "{second}"
api_key = "k-second"
models = ["{MODEL}"]
protocols = ["images_edits"]
"#,
        first = first.base_url(),
        second = second.base_url(),
    )
}

/// A form with an image file (bytes that look like a boundary and a
/// `model` field inside), then `model` and the other text fields.
fn form(model: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut part = |headers: &str, value: &[u8]| {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let image: &[u8] =
        b"\x89PNG\r\n\x1a\n\x00\xff--tb-edit-boundary\r\nname=\"model\"\r\n\r\nnot-this\r\n";
    part(
        "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png",
        image,
    );
    part(
        "Content-Disposition: form-data; name=\"model\"",
        model.as_bytes(),
    );
    part(
        "Content-Disposition: form-data; name=\"prompt\"",
        b"add a hat",
    );
    part("Content-Disposition: form-data; name=\"n\"", b"1");
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn post_form(
    daemon: &Daemon,
    boundary: &str,
    body: Vec<u8>,
) -> http::Response<hyper::body::Incoming> {
    let auth = format!("Bearer {}", daemon.token);
    let ct = format!("multipart/form-data; boundary={boundary}");
    daemon
        .request(
            Method::POST,
            "/v1/images/edits",
            &[("authorization", &auth), ("content-type", &ct)],
            body,
        )
        .await
}

#[tokio::test]
async fn an_image_edit_fails_over_and_reaches_the_upstream_unchanged() {
    let first = MockUpstream::start().await.unwrap();
    // Overloaded for good (a 5xx may be retried on the same upstream first).
    first.push_replies(
        (0..4).map(|_| Reply::openai_error(503, "server_error", "overloaded", "busy")),
    );
    let second = MockUpstream::start().await.unwrap();
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();

    let sent = form(MODEL);
    let resp = post_form(&daemon, BOUNDARY, sent.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "second");
    let answer = body_json(resp).await;
    assert!(answer["data"][0]["b64_json"].is_string(), "{answer}");
    // Both attempts carried the client's form byte for byte, with its
    // boundary and each upstream's own key.
    let to_first = first.requests_under("/v1/images/edits").len();
    assert!(to_first >= 1);
    for (up, key) in [(&first, "k-first"), (&second, "k-second")] {
        for req in up.requests_under("/v1/images/edits") {
            assert_eq!(req.body.as_ref(), sent.as_slice());
            assert_eq!(
                req.header("content-type"),
                Some(format!("multipart/form-data; boundary={BOUNDARY}").as_str())
            );
            assert_eq!(
                req.header("authorization"),
                Some(format!("Bearer {key}").as_str())
            );
        }
    }
    assert_eq!(second.requests_under("/v1/images/edits").len(), 1);

    // An alias is resolved in the form: only the `model` value changes.
    let resp = post_form(&daemon, BOUNDARY, form("house-editor")).await;
    assert_eq!(resp.status(), 200);
    // The form forwarded is the one sent with the resolved model.
    let forwarded = second.requests_under("/v1/images/edits").pop().unwrap();
    assert_eq!(forwarded.body.as_ref(), sent.as_slice());

    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    let records = read_ledger(daemon.home()).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let r = records
        .iter()
        .find(|r| r["requested_model"] == MODEL)
        .unwrap();
    assert_eq!(r["protocol"], "images_edits");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["winner"], "second");
    assert_eq!(r["failed_over"], true);
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), to_first + 1, "{r}");
    assert_eq!(attempts[0]["upstream"], "first");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[to_first]["upstream"], "second");
    assert_eq!(r["billing_unit"], "images");
    assert_eq!(r["image_count"], 1);
    let aliased = records
        .iter()
        .find(|r| r["requested_model"] == "house-editor")
        .unwrap();
    assert_eq!(aliased["model"], MODEL);
}

#[tokio::test]
async fn a_broken_form_is_refused_before_any_upstream() {
    let first = MockUpstream::start().await.unwrap();
    let second = MockUpstream::start().await.unwrap();
    let daemon = Daemon::start(bin(), &config(&first, &second), &[])
        .await
        .unwrap();
    let no_model = {
        let mut body = form(MODEL);
        let text = String::from_utf8_lossy(&body)
            .replace("name=\"model\"\r\n\r\n", "name=\"other\"\r\n\r\n");
        body = text.into_bytes();
        body
    };
    let mut truncated = form(MODEL);
    truncated.truncate(truncated.len() / 2);
    let cases: [(&str, Vec<u8>, &str, &str); 4] = [
        // The header's boundary is not the body's.
        (
            "other-boundary",
            form(MODEL),
            "invalid_multipart",
            "boundary",
        ),
        (BOUNDARY, truncated, "invalid_multipart", "malformed"),
        (BOUNDARY, no_model, "missing_model", "`model`"),
        (BOUNDARY, form(" "), "missing_model", "`model`"),
    ];
    for (boundary, body, code, needle) in cases {
        let resp = post_form(&daemon, boundary, body).await;
        assert_eq!(resp.status(), 400, "{code}");
        let err = body_json(resp).await;
        assert_eq!(err["error"]["code"], code, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    // No boundary at all.
    let auth = format!("Bearer {}", daemon.token);
    let resp = daemon
        .request(
            Method::POST,
            "/v1/images/edits",
            &[
                ("authorization", &auth),
                ("content-type", "multipart/form-data"),
            ],
            form(MODEL),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp).await["error"]["code"], "invalid_multipart");
    assert_eq!(first.request_count() + second.request_count(), 0);
}
