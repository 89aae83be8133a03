//! The simulated marketplace driven by a plain hyper client over loopback
//! TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tb_domain::{PaymentMethod, Protocol};
use tb_sim_market::canned;
use tb_sim_market::{
    BALANCE_HEADER, Marketplace, ModelPrice, RegistryBehaviour, RegistryServer, SELLER_ID_HEADER,
    SELLER_REQUEST_ID_HEADER, SETTLEMENT_EVENT, SETTLEMENT_HEADER, ScriptedFailure, SellerServer,
    SellerSpec, SettlementMode, TOO_LARGE_HEADER, registry_doc, registry_doc_with_n_sellers,
};

/// Generous upper bound for things that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

const MODEL: &str = "m-test";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    tokio::time::timeout(PATIENCE, client().request(req))
        .await
        .expect("response head in time")
        .unwrap()
}

async fn get(url: &str) -> Response<Incoming> {
    send(Method::GET, url, &[], Bytes::new()).await
}

async fn post(url: &str, body: &Value) -> Response<Incoming> {
    send(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    tokio::time::timeout(PATIENCE, resp.into_body().collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes()
}

async fn body_json(resp: Response<Incoming>) -> Value {
    serde_json::from_slice(&body_bytes(resp).await).unwrap()
}

/// Every data frame of a body, and whether it ended with an error.
async fn collect_frames(resp: Response<Incoming>) -> (Vec<Bytes>, bool) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("frame in time");
        match frame {
            None => return (out, false),
            Some(Err(_)) => return (out, true),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.push(data);
                }
            }
        }
    }
}

fn spec() -> SellerSpec {
    SellerSpec::new("s-test").models([MODEL])
}

/// Quote and complete a `mock` purchase; returns the `complete` answer.
async fn buy_with(seller: &SellerServer, credit: u64) -> Value {
    let quote = post(
        &format!("{}/purchase/quote", seller.url()),
        &json!({ "modelId": MODEL, "paymentMethod": "mock", "creditMicros": credit }),
    )
    .await;
    assert_eq!(quote.status(), StatusCode::OK);
    let quote = body_json(quote).await;
    let done = post(
        &format!("{}/purchase/complete", seller.url()),
        &json!({ "quoteId": quote["quoteId"], "paymentMethod": "mock" }),
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    body_json(done).await
}

async fn buy(seller: &SellerServer) -> String {
    buy_with(seller, 1_000_000).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn infer(
    seller: &SellerServer,
    protocol: Protocol,
    token: Option<&str>,
    stream: bool,
) -> Response<Incoming> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-request-id", "req-42"),
    ];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    let body = json!({ "model": MODEL, "stream": stream, "input": "hi" });
    send(
        Method::POST,
        &format!("{}/v1{}", seller.url(), protocol.upstream_suffix()),
        &headers,
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

fn header_settlement(headers: &HeaderMap) -> Option<Value> {
    let value = headers.get(SETTLEMENT_HEADER)?.to_str().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .unwrap();
    Some(serde_json::from_slice(&json).unwrap())
}

/// Splits an (LF) SSE body into the settlement events' data and the rest,
/// byte for byte.
fn split_settlement(body: &[u8]) -> (Vec<String>, Vec<u8>) {
    let text = std::str::from_utf8(body).unwrap();
    let mut settlements = Vec::new();
    let mut rest = String::new();
    for event in text.split_inclusive("\n\n") {
        if let Some(after) = event.strip_prefix(&format!("event: {SETTLEMENT_EVENT}\n")) {
            let data = after.strip_prefix("data: ").unwrap();
            settlements.push(data.trim_end_matches('\n').to_owned());
        } else {
            rest.push_str(event);
        }
    }
    (settlements, rest.into_bytes())
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap()
}

// ------------------------------------------------------------ registry ----

#[tokio::test]
async fn registry_serves_the_document_and_counts_requests() {
    let doc = json!({ "version": "v1", "sellers": [] });
    let registry = RegistryServer::start(doc.clone()).await.unwrap();
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert!(registry.url().ends_with("/registry.json"));

    let resp = get(&registry.url()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(body_json(resp).await, doc);
    assert_eq!(registry.request_count(), 1);

    let new_doc = json!({ "version": "v2", "sellers": [] });
    registry.set_document(new_doc.clone());
    assert_eq!(registry.document(), new_doc);
    let url = registry.url();
    let fetch = tokio::spawn(async move { body_json(get(&url).await).await });
    assert!(
        tokio::time::timeout(PATIENCE, registry.wait_for_requests(2))
            .await
            .unwrap()
            >= 2
    );
    assert_eq!(fetch.await.unwrap(), new_doc);

    // Other paths: 404, not counted.
    let root = registry.url().replace("/registry.json", "/other");
    assert_eq!(get(&root).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(registry.request_count(), 2);
}

#[tokio::test]
async fn registry_misbehaves_as_told() {
    let registry = RegistryServer::start(json!({ "version": "v1", "sellers": [] }))
        .await
        .unwrap();

    registry.set_behaviour(RegistryBehaviour::TooLarge);
    assert_eq!(registry.behaviour(), RegistryBehaviour::TooLarge);
    let resp = get(&registry.url()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()[TOO_LARGE_HEADER], "1");
    assert_eq!(resp.headers()["X-TokenBuddy-Registry-Too-Large"], "1");

    for status in [500, 502, 503, 404] {
        registry.set_behaviour(RegistryBehaviour::Status(status));
        let resp = get(&registry.url()).await;
        assert_eq!(resp.status().as_u16(), status);
        let _ = body_bytes(resp).await;
    }

    registry.set_behaviour(RegistryBehaviour::Garbage);
    let resp = get(&registry.url()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_bytes(resp).await;
    assert!(!body.is_empty());
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    registry.set_behaviour(RegistryBehaviour::Serve);
    let resp = get(&registry.url()).await;
    assert_eq!(body_json(resp).await["version"], "v1");
    assert_eq!(registry.request_count(), 7);
}

#[tokio::test]
async fn registry_oversized_body_is_really_that_big() {
    const SIZE: usize = 2 * 1024 * 1024;
    let registry = RegistryServer::start(registry_doc_with_n_sellers(3, 2))
        .await
        .unwrap();
    registry.set_behaviour(RegistryBehaviour::Oversized(SIZE));
    let resp = get(&registry.url()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-length").is_none());
    let (frames, failed) = collect_frames(resp).await;
    assert!(!failed);
    assert!(frames.len() > 1, "sent in chunks");
    let body: Vec<u8> = frames.concat();
    assert_eq!(body.len(), SIZE);
    // Valid JSON as a whole, a registry document with padding...
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["sellers"].as_array().unwrap().len(), 3);
    assert!(value["padding"].as_str().unwrap().len() > SIZE / 2);
    // ...but any prefix a capped reader keeps is not.
    assert!(serde_json::from_slice::<Value>(&body[..1024 * 1024]).is_err());
}

#[tokio::test]
async fn registry_hang_never_answers() {
    let registry = RegistryServer::start(json!({ "version": "v1", "sellers": [] }))
        .await
        .unwrap();
    registry.set_behaviour(RegistryBehaviour::Hang);
    let req = Request::get(registry.url())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let client = client();
    let pending = client.request(req);
    tokio::pin!(pending);
    // The request arrives...
    tokio::select! {
        _ = &mut pending => panic!("a hanging registry answered"),
        n = registry.wait_for_requests(1) => assert_eq!(n, 1),
    }
    // ...and no answer comes (a bounded negative check).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut pending)
            .await
            .is_err()
    );
    // Other requests are still served.
    registry.set_behaviour(RegistryBehaviour::Serve);
    assert_eq!(get(&registry.url()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn registry_doc_lists_running_sellers() {
    let a = SellerServer::start(
        SellerSpec::new("s-a")
            .name("Alpha")
            .models(["m1", "m2"])
            .protocols([Protocol::ChatCompletions, Protocol::Messages])
            .payment_methods([PaymentMethod::Mock, PaymentMethod::Clawtip])
            .discount_ratio(0.2)
            .service_fee_ratio(0.02),
    )
    .await
    .unwrap();
    let b = SellerServer::start(SellerSpec::new("s-b")).await.unwrap();
    let doc = registry_doc(&[&a, &b], Some("s-a"));
    assert_eq!(doc["defaultSeller"], "s-a");
    assert!(doc["version"].as_str().unwrap().starts_with("20"));
    let first = &doc["sellers"][0];
    assert_eq!(
        *first,
        json!({
            "id": "s-a", "name": "Alpha", "url": a.url(),
            "models": ["m1", "m2"],
            "protocols": ["chat_completions", "messages"],
            "paymentMethods": ["mock", "clawtip"],
            "discountRatio": 0.2, "serviceFeeRatio": 0.02,
            "status": "active",
        })
    );
    assert_eq!(doc["sellers"][1]["id"], "s-b");
    assert_eq!(doc["sellers"][1]["url"], b.url());
    assert!(!b.url().ends_with('/'));
    assert_eq!(
        doc["sellers"][1]["protocols"],
        json!([
            "chat_completions",
            "responses",
            "messages",
            "images_generations"
        ])
    );
    assert!(registry_doc(&[&a], None).get("defaultSeller").is_none());
}

#[test]
fn scale_document_has_ten_thousand_distinct_sellers() {
    let doc = registry_doc_with_n_sellers(10_000, 5);
    let sellers = doc["sellers"].as_array().unwrap();
    assert_eq!(sellers.len(), 10_000);
    let ids: HashSet<&str> = sellers.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(
        sellers
            .iter()
            .all(|s| s["models"].as_array().unwrap().len() == 5 && s["status"] == "active")
    );
    assert_eq!(doc["defaultSeller"], "s-00000");
    // Past the default 1 MiB cap.
    assert!(serde_json::to_vec(&doc).unwrap().len() > 1024 * 1024);
}

// -------------------------------------------------------------- seller ----

#[tokio::test]
async fn health_and_manifest() {
    let seller = SellerServer::start(spec()).await.unwrap();
    let resp = get(&format!("{}/healthz", seller.url())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, "ok");

    let manifest_url = format!("{}/manifest", seller.url());
    assert_eq!(get(&manifest_url).await.status(), StatusCode::NOT_FOUND);

    seller.update(|s| {
        s.prices.insert(
            MODEL.into(),
            ModelPrice::new(2_500_000, 10_000_000, 250_000),
        );
        s.manifest = Some(s.generated_manifest());
    });
    let manifest = body_json(get(&manifest_url).await).await;
    assert_eq!(manifest["models"], json!([MODEL]));
    assert_eq!(manifest["paymentMethods"], json!(["mock"]));
    assert_eq!(manifest["selection"]["discountRatio"], 0.0);
    assert_eq!(manifest["prices"][MODEL]["inputUsdPer1m"], 2.5);
    assert_eq!(manifest["prices"][MODEL]["outputUsdPer1m"], 10.0);
    assert_eq!(manifest["prices"][MODEL]["cacheReadUsdPer1m"], 0.25);

    // The published prices are what it charges: list × (1 − discount) × (1 + fee).
    seller.update(|s| {
        s.discount_ratio = 0.2;
        s.service_fee_ratio = 0.02;
        s.manifest = Some(s.generated_manifest());
    });
    let manifest = body_json(get(&manifest_url).await).await;
    assert_eq!(manifest["selection"]["discountRatio"], 0.2);
    assert_eq!(manifest["prices"][MODEL]["inputUsdPer1m"], 2.04);
    assert_eq!(manifest["prices"][MODEL]["outputUsdPer1m"], 8.16);
    assert_eq!(manifest["prices"][MODEL]["cacheReadUsdPer1m"], 0.204);

    assert_eq!(seller.healthz_count(), 1);
    assert_eq!(seller.manifest_count(), 3);
    assert_eq!(seller.inference_count(), 0);
}

#[tokio::test]
async fn purchase_then_inference_settles_in_a_header() {
    for protocol in tb_sim_market::SOLD_PROTOCOLS {
        let seller = SellerServer::start(
            spec()
                .discount_ratio(0.2)
                .service_fee_ratio(0.02)
                .price(MODEL, ModelPrice::new(2_400_000, 12_000_000, 240_000)),
        )
        .await
        .unwrap();
        let done = buy_with(&seller, 5_000_000).await;
        assert_eq!(done["creditMicros"], 5_000_000);
        assert_eq!(done["balanceMicros"], 5_000_000);
        assert!(
            done["paymentReference"]
                .as_str()
                .unwrap()
                .starts_with("mock-")
        );
        let expires = humantime::parse_rfc3339(done["expiresAt"].as_str().unwrap()).unwrap();
        assert!(expires > SystemTime::now() + Duration::from_secs(3000));
        let token = done["accessToken"].as_str().unwrap().to_owned();
        assert_eq!(seller.balance(&token), Some(5_000_000));

        let cost = seller.spec().call_cost(protocol, MODEL);
        assert!(cost.settled_micros > 0);
        let mut expected_balance = 5_000_000;
        for _ in 0..2 {
            let resp = infer(&seller, protocol, Some(&token), false).await;
            assert_eq!(resp.status(), StatusCode::OK, "{protocol}");
            assert_eq!(resp.headers()[SELLER_ID_HEADER], "s-test");
            assert!(resp.headers().contains_key(SELLER_REQUEST_ID_HEADER));
            expected_balance -= cost.settled_micros;
            assert_eq!(
                resp.headers()[BALANCE_HEADER],
                expected_balance.to_string().as_str()
            );
            let settlement = header_settlement(resp.headers()).expect("settlement header");
            assert_eq!(body_bytes(resp).await, canned::json(protocol, MODEL));

            assert_eq!(settlement["requestId"], "req-42");
            assert_eq!(settlement["settledMicros"], cost.settled_micros);
            assert_eq!(settlement["settledUsdMicros"], cost.settled_micros);
            assert_eq!(settlement["remainingCreditMicros"], expected_balance);
            assert_eq!(seller.balance(&token), Some(expected_balance));
            let breakdown = &settlement["billingBreakdown"];
            assert_eq!(breakdown["serviceTier"], "default");
            assert_eq!(breakdown["originalUsdMicros"], cost.original_usd_micros);
            if protocol == Protocol::ImagesGenerations {
                assert_eq!(breakdown["billingUnit"], "images");
                assert_eq!(breakdown["imageCount"], 1);
                assert_eq!(breakdown["imageCostMicrosPerImage"], 40_000);
            } else {
                assert_eq!(breakdown["billingUnit"], "tokens");
                assert_eq!(breakdown["inputPriceMicrosPer1m"], 2_400_000);
                assert_eq!(breakdown["outputPriceMicrosPer1m"], 12_000_000);
                assert_eq!(breakdown["cacheReadPriceMicrosPer1m"], 240_000);
                // 9 output tokens at 12 USD/M.
                assert_eq!(breakdown["outputCostMicros"], 108);
                assert_eq!(breakdown["cacheReadCostMicros"], 1);
            }
        }
        assert_eq!(seller.settlements().len(), 2);
    }
}

#[test]
fn settled_amounts_follow_the_documented_formula() {
    let spec = spec()
        .price(MODEL, ModelPrice::new(2_400_000, 12_000_000, 240_000))
        .discount_ratio(0.2)
        .service_fee_ratio(0.02);
    let chat = spec.call_cost(Protocol::ChatCompletions, MODEL);
    // 9 × 2.4 + 3 × 0.24 + 9 × 12 = 130.32 → 131; × 0.8 → 104.8 → 105;
    // × 1.02 → 107.1 → 108.
    assert_eq!(
        (
            chat.input_cost_micros,
            chat.cache_read_cost_micros,
            chat.output_cost_micros
        ),
        (22, 1, 108)
    );
    assert_eq!(chat.original_usd_micros, 131);
    assert_eq!(chat.settled_micros, 108);
    // Messages: 14 input (12 + 2 cache writes) × 2.4 = 33.6.
    let messages = spec.call_cost(Protocol::Messages, MODEL);
    assert_eq!(messages.input_cost_micros, 34);
}

#[tokio::test]
async fn quotes_and_completes_follow_the_rules() {
    let seller = SellerServer::start(spec().payment_methods([PaymentMethod::Mock]))
        .await
        .unwrap();
    let quote_url = format!("{}/purchase/quote", seller.url());
    let complete_url = format!("{}/purchase/complete", seller.url());

    for method in ["clawtip", "bitcoin", ""] {
        let resp = post(
            &quote_url,
            &json!({ "modelId": MODEL, "paymentMethod": method, "creditMicros": 1000 }),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method}");
        assert!(error_message(&body_json(resp).await).contains("payment method"));
    }
    let resp = post(
        &quote_url,
        &json!({ "modelId": "other", "paymentMethod": "mock" }),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // snake_case is accepted; no amount asks for the default.
    let quote = body_json(
        post(
            &quote_url,
            &json!({ "model_id": MODEL, "payment_method": "mock" }),
        )
        .await,
    )
    .await;
    assert_eq!(quote["creditMicros"], 1_000_000);
    assert_eq!(quote["priceUsdMicros"], 1_000_000);
    assert!(humantime::parse_rfc3339(quote["expiresAt"].as_str().unwrap()).is_ok());

    let complete = json!({ "quoteId": quote["quoteId"], "paymentMethod": "mock", "paymentReference": "ref-1" });
    let first = body_json(post(&complete_url, &complete).await).await;
    assert_eq!(first["paymentReference"], "ref-1");
    // Completing again is idempotent: same token, none issued.
    let again = body_json(post(&complete_url, &complete).await).await;
    assert_eq!(again, first);
    assert_eq!(seller.tokens_issued(), 1);
    let resp = post(
        &complete_url,
        &json!({ "quoteId": "q-nope", "paymentMethod": "mock" }),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Overrides: credit per purchase and price per quote.
    seller.update(|s| {
        s.credit_per_purchase = Some(250_000);
        s.price_usd_micros = Some(199_000);
    });
    let quote = body_json(
        post(
            &quote_url,
            &json!({ "modelId": MODEL, "paymentMethod": "mock", "creditMicros": 5 }),
        )
        .await,
    )
    .await;
    assert_eq!(quote["creditMicros"], 250_000);
    assert_eq!(quote["priceUsdMicros"], 199_000);
    let done = body_json(
        post(
            &complete_url,
            &json!({ "quoteId": quote["quoteId"], "paymentMethod": "mock" }),
        )
        .await,
    )
    .await;
    assert_eq!(done["balanceMicros"], 250_000);
    assert_ne!(done["accessToken"], first["accessToken"]);

    // A rate: USD per credit.
    seller.update(|s| {
        s.credit_per_purchase = None;
        s.price_usd_micros = None;
        s.usd_per_credit = 0.5;
    });
    let quote = body_json(
        post(
            &quote_url,
            &json!({ "modelId": MODEL, "paymentMethod": "mock", "creditMicros": 1000 }),
        )
        .await,
    )
    .await;
    assert_eq!(quote["priceUsdMicros"], 500);

    assert_eq!(seller.quote_count(), 7);
    assert_eq!(seller.purchase_count(), 4);
    assert_eq!(seller.tokens_issued(), 2);
    assert_eq!(seller.tokens().len(), 2);
}

#[tokio::test]
async fn clawtip_purchases_wait_for_the_wallet() {
    let seller =
        SellerServer::start(spec().payment_methods([PaymentMethod::Mock, PaymentMethod::Clawtip]))
            .await
            .unwrap();
    let quote_for = || async {
        body_json(
            post(
                &format!("{}/purchase/quote", seller.url()),
                &json!({ "modelId": MODEL, "paymentMethod": "clawtip", "creditMicros": 1000 }),
            )
            .await,
        )
        .await
    };
    let quote = quote_for().await;
    let pay_url = quote["payment"]["payUrl"].as_str().unwrap().to_owned();
    assert!(pay_url.starts_with(&seller.url()), "{pay_url}");
    assert_eq!(quote["payment"]["qrPayload"], pay_url.as_str());
    let quote_id = quote["quoteId"].as_str().unwrap().to_owned();
    assert_eq!(seller.unpaid_quotes(), std::slice::from_ref(&quote_id));
    let complete = json!({ "quoteId": quote_id, "paymentMethod": "clawtip" });
    for _ in 0..2 {
        let resp = post(&format!("{}/purchase/complete", seller.url()), &complete).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(body_json(resp).await["status"], "pending");
    }
    // Completing with another method than quoted is refused.
    let resp = post(
        &format!("{}/purchase/complete", seller.url()),
        &json!({ "quoteId": quote_id, "paymentMethod": "mock" }),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(seller.tokens_issued(), 0);
    // The wallet pays (POST to the pay URL); complete then sells the token.
    let resp = post(&pay_url, &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(seller.unpaid_quotes().is_empty());
    let resp = post(&format!("{}/purchase/complete", seller.url()), &complete).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body_json(resp).await["accessToken"].is_string());
    assert_eq!(seller.tokens_issued(), 1);
    assert!(
        !seller.cancel_payment(&quote_id),
        "a paid quote cannot be cancelled"
    );

    // Cancelled in the wallet: 409.
    let cancelled = quote_for().await["quoteId"].as_str().unwrap().to_owned();
    assert!(seller.cancel_payment(&cancelled));
    assert!(!seller.confirm_payment(&cancelled));
    let resp = post(
        &format!("{}/purchase/complete", seller.url()),
        &json!({ "quoteId": cancelled, "paymentMethod": "clawtip" }),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(body_json(resp).await["status"], "cancelled");

    // Past expiresAt unpaid: 410, and it can no longer be paid.
    seller.update(|s| s.quote_ttl = std::time::Duration::ZERO);
    let lapsed = quote_for().await["quoteId"].as_str().unwrap().to_owned();
    assert!(!seller.confirm_payment(&lapsed));
    let resp = post(
        &format!("{}/purchase/complete", seller.url()),
        &json!({ "quoteId": lapsed, "paymentMethod": "clawtip" }),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::GONE);
    assert_eq!(body_json(resp).await["status"], "expired");
    assert_eq!(seller.tokens_issued(), 1);
}

#[tokio::test]
async fn streamed_settlement_event_appears_once_and_the_rest_is_canned() {
    for protocol in tb_sim_market::SOLD_PROTOCOLS {
        let seller = SellerServer::start(spec()).await.unwrap();
        let token = buy(&seller).await;
        let resp = infer(&seller, protocol, Some(&token), true).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers().get(SETTLEMENT_HEADER).is_none());
        let body = body_bytes(resp).await;
        let (settlements, rest) = split_settlement(&body);
        assert_eq!(settlements.len(), 1, "{protocol}");
        assert_eq!(rest, canned::sse_body(protocol, MODEL), "{protocol}");
        let settlement: Value = serde_json::from_str(&settlements[0]).unwrap();
        let cost = seller.spec().call_cost(protocol, MODEL);
        assert_eq!(settlement["settledMicros"], cost.settled_micros);
        assert_eq!(
            settlement["remainingCreditMicros"],
            1_000_000 - cost.settled_micros
        );
        assert_eq!(settlement, seller.settlements()[0]);

        // Where: before `[DONE]` for chat, last otherwise.
        let text = std::str::from_utf8(&body).unwrap();
        let event = format!("event: {SETTLEMENT_EVENT}\ndata: {}\n\n", settlements[0]);
        if protocol == Protocol::ChatCompletions {
            assert!(text.ends_with(&format!("{event}data: [DONE]\n\n")));
        } else {
            assert!(text.ends_with(&event), "{protocol}");
        }
    }
}

#[tokio::test]
async fn crlf_and_chunked_streams_reassemble() {
    let seller = SellerServer::start(spec()).await.unwrap();
    let token = buy(&seller).await;
    let reference = body_bytes(infer(&seller, Protocol::Messages, Some(&token), true).await).await;
    let (_, reference_rest) = split_settlement(&reference);

    seller.update(|s| {
        s.crlf = true;
        s.chunk_every = Some(7);
    });
    let resp = infer(&seller, Protocol::Messages, Some(&token), true).await;
    let (frames, failed) = collect_frames(resp).await;
    assert!(!failed);
    assert!(frames.len() > 10);
    assert!(frames.iter().all(|f| f.len() <= 7));
    let body = frames.concat();
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("\r\n\r\n"));
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    let lf = text.replace("\r\n", "\n");
    let (settlements, rest) = split_settlement(lf.as_bytes());
    assert_eq!(settlements.len(), 1);
    assert_eq!(rest, reference_rest);
    assert_eq!(rest, canned::sse_body(Protocol::Messages, MODEL));
}

#[tokio::test]
async fn settlement_modes_place_the_settlement() {
    let seller = SellerServer::start(spec()).await.unwrap();
    let token = buy(&seller).await;
    let p = Protocol::Responses;

    seller.update(|s| s.settlement = SettlementMode::Header);
    let resp = infer(&seller, p, Some(&token), true).await;
    assert!(header_settlement(resp.headers()).is_some());
    let (events, _) = split_settlement(&body_bytes(resp).await);
    assert!(events.is_empty());

    seller.update(|s| s.settlement = SettlementMode::SseEvent);
    let resp = infer(&seller, p, Some(&token), false).await;
    assert!(resp.headers().get(SETTLEMENT_HEADER).is_none());
    let resp = infer(&seller, p, Some(&token), true).await;
    assert!(resp.headers().get(SETTLEMENT_HEADER).is_none());
    assert_eq!(split_settlement(&body_bytes(resp).await).0.len(), 1);

    seller.update(|s| s.settlement = SettlementMode::Both);
    let resp = infer(&seller, p, Some(&token), true).await;
    let header = header_settlement(resp.headers()).unwrap();
    let (events, _) = split_settlement(&body_bytes(resp).await);
    assert_eq!(events.len(), 1);
    assert_eq!(serde_json::from_str::<Value>(&events[0]).unwrap(), header);

    seller.update(|s| s.settlement = SettlementMode::None);
    let resp = infer(&seller, p, Some(&token), false).await;
    assert!(resp.headers().get(SETTLEMENT_HEADER).is_none());
    let resp = infer(&seller, p, Some(&token), true).await;
    assert!(resp.headers().get(SETTLEMENT_HEADER).is_none());
    let body = body_bytes(resp).await;
    assert_eq!(body, canned::sse_body(p, MODEL));
    // Charged all the same.
    let cost = seller.spec().call_cost(p, MODEL).settled_micros;
    assert_eq!(seller.balance(&token), Some(1_000_000 - 6 * cost));
}

#[tokio::test]
async fn custom_and_raw_settlements_are_sent_verbatim() {
    let hostile = json!({
        "requestId": "x", "settledMicros": -5, "remainingCreditMicros": 1e300,
        "billingBreakdown": { "billingUnit": "bananas", "serviceTier": "<script>" },
    });
    let seller = SellerServer::start(spec().settlement(SettlementMode::Custom(hostile.clone())))
        .await
        .unwrap();
    let token = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(header_settlement(resp.headers()).unwrap(), hostile);
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), true).await;
    let (events, rest) = split_settlement(&body_bytes(resp).await);
    assert_eq!(events, vec![hostile.to_string()]);
    assert_eq!(rest, canned::sse_body(Protocol::ChatCompletions, MODEL));

    seller.update(|s| s.settlement = SettlementMode::Raw("not base64 at all!".into()));
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.headers()[SETTLEMENT_HEADER], "not base64 at all!");
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), true).await;
    let (events, _) = split_settlement(&body_bytes(resp).await);
    assert_eq!(events, vec!["not base64 at all!".to_owned()]);
}

#[tokio::test]
async fn insufficient_after_n_calls_until_a_new_token() {
    let seller = SellerServer::start(spec().insufficient_after(2))
        .await
        .unwrap();
    let token = buy(&seller).await;
    for _ in 0..2 {
        let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    for protocol in [Protocol::ChatCompletions, Protocol::Messages] {
        let resp = infer(&seller, protocol, Some(&token), false).await;
        assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
        let body = body_json(resp).await;
        assert!(error_message(&body).contains("insufficient balance"));
    }
    let fresh = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&fresh), false).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(seller.inference_status_count(200), 3);
    assert_eq!(seller.inference_status_count(402), 2);
}

#[tokio::test]
async fn zero_balance_answers_402() {
    // 100 credit micros cannot pay for a 363-micro call: that call is
    // served and drains the token; the next is refused.
    let seller = SellerServer::start(spec().credit_per_purchase(100))
        .await
        .unwrap();
    let token = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_settlement(resp.headers()).unwrap()["remainingCreditMicros"],
        0
    );
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(error_message(&body_json(resp).await).contains("insufficient balance"));

    let other = buy(&seller).await;
    assert!(seller.set_balance(&other, 0));
    let resp = infer(&seller, Protocol::Messages, Some(&other), true).await;
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test]
async fn expired_unknown_and_missing_tokens_are_401() {
    let seller = SellerServer::start(spec().token_ttl(Duration::ZERO))
        .await
        .unwrap();
    let done = buy_with(&seller, 1000).await;
    let expires = humantime::parse_rfc3339(done["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires <= SystemTime::now());
    let token = done["accessToken"].as_str().unwrap();
    let resp = infer(&seller, Protocol::ChatCompletions, Some(token), false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(&body_json(resp).await).contains("expired"));

    let resp = infer(
        &seller,
        Protocol::ChatCompletions,
        Some("tbsim_unknown"),
        false,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = infer(&seller, Protocol::Messages, None, false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()[SELLER_ID_HEADER], "s-test");
    assert_eq!(seller.inference_status_count(401), 3);

    // Revoked tokens too.
    seller.update(|s| s.token_ttl = Duration::from_secs(60));
    let token = buy(&seller).await;
    seller.revoke_tokens();
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn scripted_failures_come_in_order() {
    let seller = SellerServer::start(spec().fail_next([503])).await.unwrap();
    let token = buy(&seller).await;
    seller.fail_next([ScriptedFailure::new(429).retry_after(2)]);
    seller.unauthorized_next();
    assert_eq!(seller.spec().scripted_failures.len(), 3);

    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("retry-after").is_none());
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2");
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Failures were not charged.
    let cost = seller.spec().call_cost(Protocol::ChatCompletions, MODEL);
    assert_eq!(
        seller.balance(&token),
        Some(1_000_000 - cost.settled_micros)
    );

    // A deterministic rate: every third call.
    seller.update(|s| {
        s.fail_every = Some(tb_sim_market::FailEvery {
            every: 3,
            status: 500,
        })
    });
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500]);
}

#[tokio::test]
async fn mid_stream_drop_cuts_the_connection() {
    let seller = SellerServer::start(spec().mid_stream_drop(3))
        .await
        .unwrap();
    let token = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (frames, failed) = collect_frames(resp).await;
    assert!(failed, "the body must end with an error");
    let received = frames.concat();
    let events = canned::sse_events(Protocol::ChatCompletions, MODEL);
    assert_eq!(received, events[..3].concat());
    assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));

    // Whole bodies are cut too.
    let resp = infer(&seller, Protocol::Messages, Some(&token), false).await;
    let (frames, failed) = collect_frames(resp).await;
    assert!(failed);
    let full = canned::json(Protocol::Messages, MODEL);
    assert_eq!(frames.concat(), full[..full.len() / 2]);

    // Not charged, no settlement.
    assert_eq!(seller.balance(&token), Some(1_000_000));
    assert!(seller.settlements().is_empty());
    assert_eq!(seller.inference_status_count(200), 2);
}

#[tokio::test]
async fn empty_completions_have_no_content_and_bill_input_only() {
    let seller = SellerServer::start(spec().empty_completion(true))
        .await
        .unwrap();
    let token = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    let settlement = header_settlement(resp.headers()).unwrap();
    let body = body_json(resp).await;
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["usage"]["completion_tokens"], 0);
    assert_eq!(body["usage"]["prompt_tokens"], canned::INPUT_TOKENS);
    assert_eq!(body["usage"]["total_tokens"], canned::INPUT_TOKENS);
    // 9 × 10 + 3 × 1 at the default prices.
    assert_eq!(settlement["settledMicros"], 93);
    assert_eq!(settlement["billingBreakdown"]["outputCostMicros"], 0);

    let resp = infer(&seller, Protocol::Messages, Some(&token), true).await;
    let (events, rest) = split_settlement(&body_bytes(resp).await);
    assert_eq!(events.len(), 1);
    let rest = String::from_utf8(rest).unwrap();
    assert!(!rest.contains("content_block_delta"));
    assert!(!rest.contains(canned::DELTAS[0]));
    assert!(rest.contains("\"output_tokens\":0"));
    assert!(rest.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    let resp = infer(&seller, Protocol::Responses, Some(&token), false).await;
    let body = body_json(resp).await;
    assert_eq!(body["output"][0]["content"], json!([]));
    assert_eq!(body["usage"]["output_tokens"], 0);
}

#[tokio::test]
async fn inference_rejects_what_the_seller_does_not_sell() {
    let seller = SellerServer::start(spec().protocols([Protocol::Messages]))
        .await
        .unwrap();
    let token = buy(&seller).await;
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), false).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let auth = format!("Bearer {token}");
    let resp = send(
        Method::POST,
        &format!("{}/v1/messages", seller.url()),
        &[("authorization", auth.as_str())],
        r#"{"model":"unknown"}"#,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(
        Method::POST,
        &format!("{}/v1/messages", seller.url()),
        &[("authorization", auth.as_str())],
        "not json",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(
        Method::POST,
        &format!("{}/v1/audio/speech", seller.url()),
        &[("authorization", auth.as_str())],
        "{}",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(seller.inference_count(), 4);
    assert_eq!(seller.balance(&token), Some(1_000_000));
}

#[tokio::test]
async fn counters_and_recorded_requests() {
    let seller = SellerServer::start(spec()).await.unwrap();
    let _ = get(&format!("{}/healthz", seller.url())).await;
    let _ = get(&format!("{}/manifest", seller.url())).await;
    let token = buy(&seller).await;
    assert_eq!(seller.wait_for_purchases(1).await, 1);

    // A request in flight is seen by `wait_for_inference`.
    let url = seller.url();
    let auth = format!("Bearer {token}");
    let call = tokio::spawn(async move {
        send(
            Method::POST,
            &format!("{url}/v1/chat/completions?trace=1"),
            &[("authorization", auth.as_str()), ("x-request-id", "r-1")],
            r#"{"model":"m-test","messages":[]}"#,
        )
        .await
        .status()
    });
    let seen = tokio::time::timeout(PATIENCE, seller.wait_for_inference(1))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(call.await.unwrap(), StatusCode::OK);
    let _ = infer(&seller, Protocol::Messages, Some("bad"), false).await;

    let last = seller.last_inference().unwrap();
    assert_eq!(last.method, Method::POST);
    assert_eq!(last.path(), "/v1/messages");
    assert_eq!(last.header("authorization"), Some("Bearer bad"));
    assert_eq!(last.json()["model"], MODEL);
    let first = &seller.inference_requests()[0];
    assert_eq!(first.path_and_query, "/v1/chat/completions?trace=1");
    assert_eq!(first.header("x-request-id"), Some("r-1"));
    assert_eq!(seller.settlements()[0]["requestId"], "r-1");

    let counters = seller.counters();
    assert_eq!(counters.healthz, 1);
    assert_eq!(counters.manifest, 1);
    assert_eq!(counters.quotes, 1);
    assert_eq!(counters.purchases, 1);
    assert_eq!(counters.tokens_issued, 1);
    assert_eq!(counters.inference, 2);
    assert_eq!(
        counters.inference_by_status,
        [(200, 1), (401, 1)].into_iter().collect()
    );
    assert_eq!(seller.inference_statuses(), counters.inference_by_status);
    let tokens = seller.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].token, token);
    assert_eq!(tokens[0].successful_calls, 1);
    assert_eq!(tokens[0].payment_method, PaymentMethod::Mock);
}

#[tokio::test]
async fn latency_and_ttft_delay_the_answer() {
    let seller = SellerServer::start(spec()).await.unwrap();
    let token = buy(&seller).await;
    seller.update(|s| {
        s.latency = Duration::from_millis(100);
        s.ttft = Duration::from_millis(150);
        s.tokens_per_sec = Some(100.0);
    });
    let started = Instant::now();
    let resp = get(&format!("{}/healthz", seller.url())).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    let _ = body_bytes(resp).await;

    let started = Instant::now();
    let resp = infer(&seller, Protocol::ChatCompletions, Some(&token), true).await;
    let head = started.elapsed();
    assert!(head >= Duration::from_millis(100));
    let mut body = resp.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame()).await.unwrap();
    assert!(first.is_some());
    assert!(started.elapsed() >= head + Duration::from_millis(150));
    let rest = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .unwrap();
    assert!(rest.is_ok());
    // 9 more events at 10 ms each.
    assert!(started.elapsed() >= head + Duration::from_millis(150 + 90));
}

#[tokio::test]
async fn a_marketplace_of_three() {
    let market = Marketplace::start(3).await.unwrap();
    let doc = market.registry.document();
    assert_eq!(doc["defaultSeller"], "s-alpha");
    let ids: Vec<&str> = doc["sellers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-alpha", "s-bravo", "s-charlie"]);
    let fetched = body_json(get(&market.registry_url()).await).await;
    assert_eq!(fetched, doc);

    let costs: HashSet<u64> = market
        .sellers
        .iter()
        .map(|s| {
            s.spec()
                .call_cost(Protocol::ChatCompletions, Marketplace::MODELS[0])
                .settled_micros
        })
        .collect();
    assert_eq!(costs.len(), 3, "distinct prices");

    let alpha = market.seller("s-alpha").unwrap();
    assert_eq!(
        get(&format!("{}/manifest", alpha.url())).await.status(),
        StatusCode::OK
    );
    for (seller, expected) in [
        (alpha, StatusCode::OK),
        (
            market.seller("s-charlie").unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let quote = body_json(
            post(
                &format!("{}/purchase/quote", seller.url()),
                &json!({ "modelId": "deepseek-chat", "paymentMethod": "mock" }),
            )
            .await,
        )
        .await;
        let done = body_json(
            post(
                &format!("{}/purchase/complete", seller.url()),
                &json!({ "quoteId": quote["quoteId"], "paymentMethod": "mock" }),
            )
            .await,
        )
        .await;
        let auth = format!("Bearer {}", done["accessToken"].as_str().unwrap());
        for _ in 0..2 {
            let resp = send(
                Method::POST,
                &format!("{}/v1/chat/completions", seller.url()),
                &[("authorization", auth.as_str())],
                r#"{"model":"deepseek-chat"}"#,
            )
            .await;
            assert_eq!(resp.status(), expected);
        }
    }
    assert!(market.seller("s-nope").is_none());

    market.sellers[1].update(|s| s.models.push("extra".into()));
    market.refresh_registry();
    let doc = market.registry.document();
    assert_eq!(doc["defaultSeller"], "s-alpha");
    assert_eq!(doc["sellers"][1]["models"].as_array().unwrap().len(), 4);
}
