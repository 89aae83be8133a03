//! The seller wire client against a scripted mock seller: request shapes,
//! answer parsing, and hostile answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{complete_reply, http_client, quote_reply, seller_client};
use serde_json::json;
use tb_domain::{PaymentMethod, Protocol};
use tb_prices::{Ppm, TokenPrices};
use tb_seller::{MAX_BODY_BYTES, SellerClient, SellerError};
use tb_test_support::{Chunk, MockUpstream, Reply};

const TOKEN: &str = "tok-SECRET-abcdef-123456";

#[tokio::test]
async fn healthz_reports_latency_and_status() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    mock.push_reply(Reply::text(200, "ok").with_head_delay(Duration::from_millis(30)));
    let latency = client.healthz(&mock.root_url()).await.unwrap();
    assert!(latency >= Duration::from_millis(30), "{latency:?}");
    assert!(latency < Duration::from_secs(5));
    let req = &mock.requests()[0];
    assert_eq!((req.method.as_str(), req.path()), ("GET", "/healthz"));

    mock.push_reply(Reply::text(503, "draining"));
    let err = client.healthz(&mock.root_url()).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    let msg = err.to_string();
    assert!(
        msg.contains("GET /healthz") && msg.contains("503") && msg.contains("draining"),
        "{msg}"
    );
}

#[tokio::test]
async fn trailing_slash_in_the_url_is_ignored() {
    let mock = MockUpstream::start().await.unwrap();
    seller_client()
        .healthz(&format!("{}/", mock.root_url()))
        .await
        .unwrap();
    assert_eq!(mock.requests()[0].path(), "/healthz");
}

#[tokio::test]
async fn manifest_absent_present_and_broken() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    // The mock answers 404 for unscripted unknown paths.
    assert_eq!(client.manifest(&mock.root_url()).await.unwrap(), None);

    mock.push_reply(Reply::json(
        200,
        json!({
            "models": ["deepseek-chat"],
            "protocols": ["chat_completions", "nope"],
            "paymentMethods": ["mock", "clawtip"],
            "selection": {"discount_ratio": 0.2, "serviceFeeRatio": 0.02},
            "prices": {"deepseek-chat": {"input_usd_per_1m": 0.27, "outputUsdPer1m": 1.1}}
        })
        .to_string(),
    ));
    let m = client.manifest(&mock.root_url()).await.unwrap().unwrap();
    assert_eq!(m.models, Some(vec!["deepseek-chat".to_owned()]));
    assert_eq!(m.protocols, Some(vec![Protocol::ChatCompletions]));
    assert_eq!(
        m.payment_methods,
        Some(vec![PaymentMethod::Mock, PaymentMethod::Clawtip])
    );
    assert_eq!(m.discount_ratio, Some(Ppm::new(200_000)));
    assert_eq!(m.service_fee_ratio, Some(Ppm::new(20_000)));
    assert_eq!(
        m.prices["deepseek-chat"],
        TokenPrices {
            input: Some(270_000),
            output: Some(1_100_000),
            cache_read: None,
            cache_write: None,
            cache_write_1h: None,
        }
    );

    mock.push_reply(Reply::json(200, "{not json"));
    let err = client.manifest(&mock.root_url()).await.unwrap_err();
    assert!(matches!(err, SellerError::NotJson { .. }), "{err}");
    mock.push_reply(Reply::json(500, "{}"));
    assert_eq!(
        client
            .manifest(&mock.root_url())
            .await
            .unwrap_err()
            .status(),
        Some(500)
    );
}

#[tokio::test]
async fn quote_request_and_answer() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(quote_reply(800_000));
    let q = seller_client()
        .quote(
            &mock.root_url(),
            "deepseek-chat",
            PaymentMethod::Mock,
            1_000_000,
        )
        .await
        .unwrap();
    assert_eq!(q.quote_id, "q-800000");
    assert_eq!(q.credit_micros, 1_000_000);
    assert_eq!(q.price_usd_micros, 800_000);
    assert_eq!(q.expires_at_ms, common::NOW + 300_000);
    let req = &mock.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path()),
        ("POST", "/purchase/quote")
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({"modelId": "deepseek-chat", "paymentMethod": "mock", "creditMicros": 1_000_000})
    );
}

#[tokio::test]
async fn snake_case_fields_and_time_forms_are_accepted() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    mock.push_reply(Reply::json(
        200,
        json!({"quote_id": "q1", "credit_micros": 5, "price_usd_micros": 4.0,
               "expires_at": "2027-01-15T16:05:00.5+08:00"})
        .to_string(),
    ));
    let q = client
        .quote(&mock.root_url(), "m", PaymentMethod::Mock, 5)
        .await
        .unwrap();
    assert_eq!(
        (q.quote_id.as_str(), q.credit_micros, q.price_usd_micros),
        ("q1", 5, 4)
    );
    assert_eq!(q.expires_at_ms, common::NOW + 300_500);

    mock.push_reply(Reply::json(
        200,
        json!({"access_token": TOKEN, "credit_micros": 7, "balance_micros": 6,
               "expires_at": "2027-01-15T09:00:00Z", "payment_reference": "ref-9"})
        .to_string(),
    ));
    let p = client
        .complete(&mock.root_url(), "q1", PaymentMethod::Mock, Some("ref-9"))
        .await
        .unwrap();
    assert_eq!(p.access_token.expose(), TOKEN);
    assert_eq!((p.credit_micros, p.balance_micros), (7, 6));
    assert_eq!(p.expires_at_ms, common::NOW + common::HOUR);
    assert_eq!(p.payment_reference.as_deref(), Some("ref-9"));
    assert_eq!(
        mock.requests()[1].json(),
        json!({"quoteId": "q1", "paymentMethod": "mock", "paymentReference": "ref-9"})
    );
    // Debug of the answer masks the token.
    assert!(!format!("{p:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_field_in_both_spellings_is_refused_by_name() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    // Which one would count is a guess: the answer is refused instead.
    mock.push_reply(Reply::json(
        200,
        json!({"accessToken": TOKEN, "access_token": "tok-other", "creditMicros": 7,
               "balanceMicros": 6, "expiresAt": "2027-01-15T09:00:00Z"})
        .to_string(),
    ));
    let err = client
        .complete(&mock.root_url(), "q1", PaymentMethod::Mock, None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SellerError::Invalid { .. }), "{msg}");
    assert!(msg.contains("POST /purchase/complete"), "{msg}");
    assert!(msg.contains("accessToken"), "{msg}");
    assert!(!msg.contains(TOKEN) && !msg.contains("tok-other"), "{msg}");

    // `null` still counts as missing.
    mock.push_reply(Reply::json(
        200,
        json!({"quoteId": null, "creditMicros": 5, "priceUsdMicros": 4,
               "expiresAt": 1_800_000_000_000u64})
        .to_string(),
    ));
    let err = client
        .quote(&mock.root_url(), "m", PaymentMethod::Mock, 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("required field quoteId is missing"), "{err}");
}

#[tokio::test]
async fn complete_without_reference_and_with_a_bad_optional_one() {
    let mock = MockUpstream::start().await.unwrap();
    let mut body = json!({"accessToken": TOKEN, "creditMicros": 1, "balanceMicros": 1,
                          "expiresAt": common::NOW, "paymentReference": "bad\u{0}ref"});
    mock.push_reply(Reply::json(200, body.to_string()));
    let p = seller_client()
        .complete(&mock.root_url(), "q", PaymentMethod::Mock, None)
        .await
        .unwrap();
    // An invalid optional field is ignored, not fatal.
    assert_eq!(p.payment_reference, None);
    assert_eq!(
        mock.requests()[0].json(),
        json!({"quoteId": "q", "paymentMethod": "mock"})
    );
    body["paymentReference"] = json!(null);
    mock.push_reply(Reply::json(200, body.to_string()));
    let p = seller_client()
        .complete(&mock.root_url(), "q", PaymentMethod::Mock, None)
        .await
        .unwrap();
    assert_eq!(p.payment_reference, None);
}

/// A hostile or broken answer to `quote` / `complete`, and words its error
/// must contain.
fn hostile_quotes() -> Vec<(&'static str, Reply, Vec<&'static str>)> {
    let q = |v: serde_json::Value| Reply::json(200, v.to_string());
    vec![
        (
            "negative price",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": -5, "expiresAt": 1})),
            vec!["priceUsdMicros", "-5", "0 to 10^15"],
        ),
        (
            "huge credit",
            q(
                json!({"quoteId": "q", "creditMicros": 10_000_000_000_000_000u64,
                     "priceUsdMicros": 1, "expiresAt": 1}),
            ),
            vec!["creditMicros", "10^15"],
        ),
        (
            "fractional price",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": 0.5, "expiresAt": 1})),
            vec!["priceUsdMicros"],
        ),
        (
            "price as text",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": "1", "expiresAt": 1})),
            vec!["priceUsdMicros", "string"],
        ),
        (
            "missing quote id",
            q(json!({"creditMicros": 1, "priceUsdMicros": 1, "expiresAt": 1})),
            vec!["quoteId", "missing"],
        ),
        (
            "null price",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": null, "expiresAt": 1})),
            vec!["priceUsdMicros", "missing"],
        ),
        (
            "empty quote id",
            q(json!({"quoteId": "", "creditMicros": 1, "priceUsdMicros": 1, "expiresAt": 1})),
            vec!["quoteId"],
        ),
        (
            "bad time",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": 1, "expiresAt": "soon"})),
            vec!["expiresAt", "RFC 3339"],
        ),
        (
            "negative time",
            q(json!({"quoteId": "q", "creditMicros": 1, "priceUsdMicros": 1, "expiresAt": -1})),
            vec!["expiresAt"],
        ),
        (
            "array",
            q(json!([1, 2])),
            vec!["array", "expected an object"],
        ),
        (
            "not JSON",
            Reply::text(200, "<html>hi</html>"),
            vec!["not JSON"],
        ),
        ("empty body", Reply::json(200, ""), vec!["not JSON"]),
        (
            "huge number literal",
            Reply::json(200, "{\"priceUsdMicros\": 1e999}"),
            vec!["not JSON"],
        ),
        (
            "server error",
            Reply::json(500, "{\"error\":\"boom\"}"),
            vec!["HTTP 500", "boom"],
        ),
        (
            "oversized",
            Reply::json(
                200,
                format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES)),
            ),
            vec!["larger than 65536"],
        ),
    ]
}

#[tokio::test]
async fn hostile_quote_answers_are_clear_errors() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    for (name, reply, words) in hostile_quotes() {
        mock.push_reply(reply);
        let err = client
            .quote(&mock.root_url(), "m", PaymentMethod::Mock, 1)
            .await
            .expect_err(name);
        let msg = err.to_string();
        assert!(msg.contains("POST /purchase/quote"), "{name}: {msg}");
        assert!(msg.contains(&mock.root_url()), "{name}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
        }
    }
}

#[tokio::test]
async fn hostile_complete_answers_never_leak_the_token() {
    let mock = MockUpstream::start().await.unwrap();
    let client = seller_client();
    let c = |v: serde_json::Value| Reply::json(200, v.to_string());
    let good = json!({"accessToken": TOKEN, "creditMicros": 1, "balanceMicros": 1, "expiresAt": 1});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = good.clone();
        b[k] = v;
        c(b)
    };
    let cases = vec![
        (
            "negative balance",
            with("balanceMicros", json!(-1)),
            vec!["balanceMicros", "-1"],
        ),
        (
            "huge balance",
            with("balanceMicros", json!(1e300)),
            vec!["balanceMicros"],
        ),
        (
            "token a number",
            with("accessToken", json!(12345)),
            vec!["accessToken", "number"],
        ),
        (
            "token empty",
            with("accessToken", json!("")),
            vec!["accessToken", "0 bytes"],
        ),
        (
            "token with a space",
            with("accessToken", json!(format!("{TOKEN} x"))),
            vec!["accessToken", "visible ASCII"],
        ),
        (
            "token with a newline",
            with("accessToken", json!(format!("{TOKEN}\r\nX-Evil: 1"))),
            vec!["accessToken"],
        ),
        (
            "token too long",
            with("accessToken", json!(TOKEN.repeat(400))),
            vec!["accessToken"],
        ),
        (
            "bad expiry",
            with("expiresAt", json!({"at": 1})),
            vec!["expiresAt", "object"],
        ),
        (
            "missing token",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("accessToken");
                c(b)
            },
            vec!["accessToken", "missing"],
        ),
        (
            "missing balance",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("balanceMicros");
                c(b)
            },
            vec!["balanceMicros", "missing"],
        ),
    ];
    for (name, reply, words) in cases {
        mock.push_reply(reply);
        let err = client
            .complete(&mock.root_url(), "q", PaymentMethod::Mock, None)
            .await
            .expect_err(name);
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains(TOKEN), "{name} leaks the token: {msg}");
        assert!(msg.contains("POST /purchase/complete"), "{name}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
        }
    }
}

#[tokio::test]
async fn oversized_streamed_answer_is_cut_off() {
    let mock = MockUpstream::start().await.unwrap();
    // Chunked, no Content-Length: the cap applies while reading.
    let chunks = (0..8)
        .map(|_| Chunk::Data(bytes::Bytes::from(vec![b' '; 16 * 1024])))
        .collect();
    mock.push_reply(Reply::chunked(200, chunks));
    let err = seller_client()
        .quote(&mock.root_url(), "m", PaymentMethod::Mock, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SellerError::TooLarge { limit, .. } if limit == MAX_BODY_BYTES),
        "{err}"
    );
}

#[tokio::test]
async fn slow_seller_times_out() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(quote_reply(1).with_head_delay(Duration::from_secs(3)));
    let client = SellerClient::new(http_client(), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = client
        .quote(&mock.root_url(), "m", PaymentMethod::Mock, 1)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            err,
            SellerError::Timeout {
                timeout_ms: 200,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("within 200 ms"));
}

#[tokio::test]
async fn unreachable_and_invalid_urls() {
    let client = seller_client();
    // Bind then drop a listener: nothing listens on the port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client
        .healthz(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, SellerError::Request { .. }), "{err}");
    assert!(err.to_string().contains("request failed"), "{err}");

    for url in ["ftp://x.example", "not a url", "", "https://user:pw@"] {
        let err = client.healthz(url).await.unwrap_err();
        assert!(
            matches!(err, SellerError::InvalidUrl { .. }),
            "{url}: {err}"
        );
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

#[tokio::test]
async fn complete_answer_reply_helper_round_trips() {
    // The fixture helpers themselves produce answers the client accepts.
    let mock = MockUpstream::start().await.unwrap();
    mock.push_reply(complete_reply(TOKEN, 9, common::NOW));
    let p = seller_client()
        .complete(&mock.root_url(), "q", PaymentMethod::Mock, None)
        .await
        .unwrap();
    assert_eq!((p.balance_micros, p.expires_at_ms), (9, common::NOW));
}
