//! End-to-end auto mode: the real daemon buying credit from the simulated
//! marketplace, spending it, stripping settlements, and riding out a
//! misbehaving registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use tb_domain::Protocol;
use tb_test_support::canned;
use tb_test_support::daemon::{Daemon, body_bytes, body_json};
use tb_test_support::marketplace::{
    RegistryBehaviour, RegistryServer, SellerServer, SellerSpec, SettlementMode, registry_doc,
};

const MODELS: [&str; 3] = ["gpt-4o", "claude-sonnet-4-5", "gpt-image-1"];

fn model_of(p: Protocol) -> &'static str {
    match p {
        Protocol::Messages => "claude-sonnet-4-5",
        Protocol::ImagesGenerations => "gpt-image-1",
        _ => "gpt-4o",
    }
}

fn auto_config(registry_url: &str, extra: &str) -> String {
    format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{registry_url}\"\nrefresh_secs = 1\n{extra}\n"
    )
}

async fn seller(spec: SellerSpec) -> SellerServer {
    SellerServer::start(spec.models(MODELS)).await.unwrap()
}

async fn market_of(sellers: &[&SellerServer]) -> RegistryServer {
    RegistryServer::start(registry_doc(sellers, Some(&sellers[0].id())))
        .await
        .unwrap()
}

async fn chat(daemon: &Daemon) -> (u16, Value) {
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    let status = resp.status().as_u16();
    for (name, _) in resp.headers() {
        let n = name.as_str();
        assert!(
            !n.starts_with("x-tokenbuddy-")
                || [
                    "x-tokenbuddy-request-id",
                    "x-tokenbuddy-upstream",
                    "x-tokenbuddy-overhead-us",
                    "x-tokenbuddy-attempts"
                ]
                .contains(&n),
            "seller header {n} reached the client"
        );
    }
    (status, body_json(resp).await)
}

#[tokio::test]
async fn one_purchase_serves_many_requests_even_when_they_arrive_together() {
    let s = seller(SellerSpec::new("s-alpha")).await;
    let registry = market_of(&[&s]).await;
    let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = daemon.client();
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post_json(
                    "/v1/chat/completions",
                    r#"{"model":"gpt-4o","messages":[]}"#,
                )
                .await;
            let status = resp.status();
            body_bytes(resp).await;
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        s.purchase_count(),
        1,
        "50 concurrent first requests buy once"
    );
    let (status, _) = chat(&daemon).await;
    assert_eq!(status, 200);
    assert_eq!(s.purchase_count(), 1, "later requests reuse the token");
    let last = s.last_inference().unwrap();
    assert!(last.header("authorization").unwrap().starts_with("Bearer "));
    assert!(last.header("x-tokenbuddy-deadline-ms").is_some());
    assert!(
        !last
            .header("authorization")
            .unwrap()
            .contains(&daemon.token),
        "the access token never goes upstream"
    );

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 51);
    // The seller token is in no log, no record and nowhere in the ledger
    // files (it is stored encrypted).
    let token = s.tokens()[0].token.clone();
    assert!(!daemon.logs().contains(&token));
    assert!(!records.iter().any(|r| r.to_string().contains(&token)));
    for entry in std::fs::read_dir(daemon.data_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token found in a data file"
        );
    }
    let cost = s.spec().call_cost(Protocol::ChatCompletions, "gpt-4o");
    for r in &records {
        assert_eq!(r["balance_source"], "seller_authoritative", "{r}");
        assert_eq!(r["winner"], "s-alpha");
        assert_eq!(r["cost_usd_micros"], cost.settled_usd_micros, "{r}");
        assert_eq!(r["settled_credit_micros"], cost.settled_micros, "{r}");
        assert!(r["remaining_credit_micros"].is_i64(), "{r}");
        assert_eq!(r["baseline_kind"], "official");
    }
    let min_remaining = records
        .iter()
        .map(|r| r["remaining_credit_micros"].as_i64().unwrap())
        .min()
        .unwrap();
    assert_eq!(
        min_remaining,
        1_000_000 - 51 * cost.settled_micros as i64,
        "each settlement lowered the balance"
    );
}

#[tokio::test]
async fn dry_or_expiring_tokens_are_bought_again() {
    // 402 mid-session: one purchase, one retry, the client sees nothing.
    let s = seller(SellerSpec::new("s-alpha").insufficient_after(2)).await;
    let registry = market_of(&[&s]).await;
    let daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(chat(&daemon).await.0, 200);
    }
    assert_eq!(s.inference_status_count(402), 1);
    assert_eq!(
        s.purchase_count(),
        2,
        "the 402 bought once and retried once"
    );

    // A balance under purchase.rebuy_min_balance_micros buys again.
    let s = seller(SellerSpec::new("s-bravo")).await;
    let registry = market_of(&[&s]).await;
    let daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    assert_eq!(chat(&daemon).await.0, 200);
    let token = s.tokens()[0].token.clone();
    s.set_balance(&token, 5_400);
    assert_eq!(
        chat(&daemon).await.0,
        200,
        "the daemon still believes the old balance"
    );
    assert_eq!(s.purchase_count(), 1);
    assert_eq!(chat(&daemon).await.0, 200);
    assert_eq!(
        s.purchase_count(),
        2,
        "the settled remaining credit fell under the minimum"
    );

    // A token expiring inside purchase.token_expiry_margin_ms buys again,
    // also when it was restored from the ledger after a restart.
    let s =
        seller(SellerSpec::new("s-charlie").token_ttl(std::time::Duration::from_secs(1800))).await;
    let registry = market_of(&[&s]).await;
    let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    assert_eq!(chat(&daemon).await.0, 200);
    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    let home = daemon.into_home();
    std::fs::write(
        home.path().join("config.toml"),
        auto_config(
            &registry.url(),
            "[purchase]\ntoken_expiry_margin_ms = 3600000",
        ),
    )
    .unwrap();
    s.update(|spec| spec.token_ttl = std::time::Duration::from_secs(3 * 3600));
    let daemon = Daemon::start_in(bin(), home, &[]).await.unwrap();
    assert_eq!(chat(&daemon).await.0, 200);
    assert_eq!(
        s.purchase_count(),
        2,
        "the restored token expires inside the margin"
    );
    assert_eq!(chat(&daemon).await.0, 200);
    assert_eq!(s.purchase_count(), 2);
}

#[tokio::test]
async fn the_session_budget_stops_purchases() {
    let cheap = seller(SellerSpec::new("s-cheap").price_usd_micros(600_000)).await;
    let dear = seller(SellerSpec::new("s-dear").price_usd_micros(2_000_000)).await;
    let registry = RegistryServer::start(registry_doc(&[&dear, &cheap], Some("s-dear")))
        .await
        .unwrap();
    let daemon = Daemon::start(
        bin(),
        &auto_config(
            &registry.url(),
            "[purchase]\nsession_budget_usd_micros = 1000000",
        ),
        &[],
    )
    .await
    .unwrap();
    // The default seller's credit costs more than the budget: skipped
    // without buying, the request fails over to the one that fits.
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "s-cheap");
    assert!(
        resp.headers()["x-tokenbuddy-attempts"]
            .to_str()
            .unwrap()
            .starts_with("s-dear:-|purchase_failed")
    );
    body_bytes(resp).await;
    assert_eq!(
        (
            dear.quote_count(),
            dear.purchase_count(),
            cheap.purchase_count()
        ),
        (1, 0, 1)
    );

    // Once the cheap seller's credit runs dry, buying more would pass the
    // budget too: a clear 503.
    cheap.update(|spec| spec.insufficient_after = Some(0));
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 503, "{:?}", resp.headers());
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], "no_route");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("budget"),
        "{v}"
    );
}

#[tokio::test]
async fn settlements_never_reach_the_client_and_price_the_call() {
    for (chunk, crlf) in [(1, false), (7, true), (64, false), (3, true)] {
        let s = seller(
            SellerSpec::new("s-alpha")
                .settlement(SettlementMode::SseEvent)
                .chunk_every(chunk)
                .crlf(crlf),
        )
        .await;
        let registry = market_of(&[&s]).await;
        let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
            .await
            .unwrap();
        for protocol in STREAMING_PROTOCOLS {
            let body = format!(
                r#"{{"model":"{}","stream":true,"stream_options":{{"include_usage":true}},"messages":[],"input":"hi","prompt":"a dot"}}"#,
                model_of(protocol)
            );
            let resp = daemon.post_json(protocol.client_path(), body).await;
            assert_eq!(resp.status(), 200);
            let got = body_bytes(resp).await;
            let mut expected =
                String::from_utf8(canned::sse_body(protocol, model_of(protocol))).unwrap();
            if crlf {
                expected = expected.replace('\n', "\r\n");
            }
            assert_eq!(
                String::from_utf8(got.to_vec()).unwrap(),
                expected,
                "{protocol} chunk={chunk} crlf={crlf}"
            );
        }
        let records = stop_and_read_ledger(&mut daemon).await;
        for (r, protocol) in records.iter().zip(STREAMING_PROTOCOLS) {
            let cost = s.spec().call_cost(protocol, model_of(protocol));
            assert_eq!(r["balance_source"], "seller_authoritative", "{r}");
            assert_eq!(
                r["cost_usd_micros"], cost.settled_usd_micros,
                "{protocol}: {r}"
            );
            assert!(r["remaining_credit_micros"].as_i64().unwrap() < 1_000_000);
        }
    }
}

#[tokio::test]
async fn hostile_settlements_are_dropped_without_failing_the_request() {
    let long = "x".repeat(10 * 1024);
    let hostile = serde_json::json!({
        "requestId": long,
        "settledMicros": -5,
        "settledUsdMicros": "a lot",
        "remainingCreditMicros": 1e30,
        "billingBreakdown": {"billingUnit": "tokens", "inputPriceMicrosPer1m": 1, "outputPriceMicrosPer1m": 2, "serviceTier": "<script>alert(1)</script>"}
    });
    for mode in [
        SettlementMode::Custom(hostile.clone()),
        SettlementMode::Raw("%%% not base64 %%%".into()),
    ] {
        let s = seller(SellerSpec::new("s-alpha").settlement(mode)).await;
        let registry = market_of(&[&s]).await;
        let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
            .await
            .unwrap();
        let (status, v) = chat(&daemon).await;
        assert_eq!(status, 200, "{v}");
        let resp = daemon
            .post_json(
                "/v1/messages",
                r#"{"model":"claude-sonnet-4-5","stream":true,"max_tokens":5,"messages":[]}"#,
            )
            .await;
        assert_eq!(resp.status(), 200);
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        assert!(
            !text.contains("tokenbuddy.settlement") && !text.contains("xxxxxxxx"),
            "{text}"
        );
        let records = stop_and_read_ledger(&mut daemon).await;
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(r["ok"], true);
            assert_eq!(
                r["balance_source"], "estimated",
                "priced from the table instead: {r}"
            );
            assert!(r["cost_usd_micros"].is_i64(), "{r}");
            assert!(r["remaining_credit_micros"].is_null());
            assert!(r["settled_credit_micros"].is_null());
        }
        assert!(
            daemon.logs().contains("billing.settlement"),
            "the bad settlement is logged"
        );
    }
}

#[tokio::test]
async fn a_broken_registry_leaves_routing_on_the_last_good_document() {
    let s = seller(SellerSpec::new("s-alpha")).await;
    let registry = market_of(&[&s]).await;
    let config = auto_config(&registry.url(), "");
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    assert_eq!(chat(&daemon).await.0, 200);

    let mut seen = registry.request_count();
    for behaviour in [
        RegistryBehaviour::TooLarge,
        RegistryBehaviour::Status(500),
        RegistryBehaviour::Garbage,
        RegistryBehaviour::Oversized(2 * 1024 * 1024),
    ] {
        registry.set_behaviour(behaviour);
        // Two more fetches: at least one whole refresh saw the failure.
        seen = registry.wait_for_requests(seen + 2).await;
        assert_eq!(
            chat(&daemon).await.0,
            200,
            "still routing on the last good document"
        );
    }
    daemon.wait_for_log("registry.stale_fallback").await;

    // A restart with the registry still broken routes on the saved document.
    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    let daemon = Daemon::start_in(bin(), daemon.into_home(), &[])
        .await
        .unwrap();
    assert_eq!(chat(&daemon).await.0, 200);
    daemon.wait_for_log("registry.stale_fallback").await;
}

#[tokio::test]
async fn auto_mode_misconfigurations_answer_503_saying_how_to_fix_them() {
    let s = seller(SellerSpec::new("s-alpha")).await;
    let registry = market_of(&[&s]).await;
    // Each misconfiguration is logged as its own event with the settings
    // that cause it.
    let disabled = serde_json::json!({"mode": "auto", "enabled": false, "range": "recommended"});
    let custom_empty = serde_json::json!({"mode": "auto", "range": "custom", "seller_ids": 0, "selected_seller": "None"});
    for (extra, needle, event, fields) in [
        (
            "[provider.auto]\nenabled = false",
            "provider.auto.enabled",
            "route.auto_provider.disabled",
            disabled,
        ),
        (
            "[provider.auto]\nrange = \"custom\"",
            "seller_ids",
            "route.auto_provider.custom_empty",
            custom_empty,
        ),
    ] {
        let extra = format!("{extra}\n[log]\nformat = \"json\"");
        let daemon = Daemon::start(bin(), &auto_config(&registry.url(), &extra), &[])
            .await
            .unwrap();
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[]}"#,
            )
            .await;
        assert_eq!(resp.status(), 503);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], "no_route");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
        daemon.wait_for_log(&format!("\"{event}\"")).await;
        let logged = log_events(&daemon, event);
        for (key, value) in fields.as_object().unwrap() {
            assert_eq!(&logged[0][key], value, "{key} in {}", logged[0]);
        }
    }
    // A registry that never answered and no saved document: 503, not a hang.
    let dead = RegistryServer::start(serde_json::json!({})).await.unwrap();
    dead.set_behaviour(RegistryBehaviour::Status(500));
    let daemon = Daemon::start(bin(), &auto_config(&dead.url(), ""), &[])
        .await
        .unwrap();
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert!(
        body_json(resp).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("registry")
    );
}

#[tokio::test]
async fn a_ten_thousand_seller_registry_loads_and_requests_keep_flowing() {
    let s = seller(SellerSpec::new("s-real")).await;
    let mut doc = tb_test_support::marketplace::registry_doc_with_n_sellers(10_000, 5);
    doc["sellers"]
        .as_array_mut()
        .unwrap()
        .insert(0, s.registry_entry());
    doc["defaultSeller"] = Value::String("s-real".into());
    let registry = RegistryServer::start(doc).await.unwrap();
    // A 10,000-seller document is several MB: raise the cap.
    let config = format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\nrefresh_secs = 1\nmax_bytes = 16777216\n",
        registry.url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    daemon.wait_for_log("route.table_rebuilt").await;
    let before = registry.request_count();
    for _ in 0..20 {
        assert_eq!(chat(&daemon).await.0, 200);
    }
    // Refreshes happened while requests were served.
    registry.wait_for_requests(before + 2).await;
    assert_eq!(chat(&daemon).await.0, 200);
    assert!(
        daemon.logs().contains("sellers=10001"),
        "all sellers loaded"
    );
}

#[tokio::test]
async fn a_flapping_registry_under_load_fails_no_request() {
    let a = seller(SellerSpec::new("s-alpha")).await;
    let b = seller(SellerSpec::new("s-bravo")).await;
    let both = registry_doc(&[&a, &b], Some("s-alpha"));
    let only_b = registry_doc(&[&b], Some("s-bravo"));
    let registry = RegistryServer::start(both.clone()).await.unwrap();
    let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    assert_eq!(chat(&daemon).await.0, 200);

    // Load: four clients sending back to back while the registry flaps.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = daemon.client();
        let mut stopped = stopped.clone();
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !*stopped.borrow_and_update() {
                match client
                    .try_post_json(
                        "/v1/chat/completions",
                        r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
                    )
                    .await
                {
                    Ok((parts, _)) => statuses.push(parts.status.as_u16()),
                    Err(e) => panic!("no answer while the registry flapped: {e}"),
                }
            }
            statuses
        }));
    }
    // Each state lasts at least one whole refresh (two fetches).
    let mut seen = registry.request_count();
    for step in [
        "500",
        "garbage",
        "only s-bravo",
        "hang",
        "both",
        "too large",
        "only s-bravo",
        "both",
    ] {
        match step {
            "500" => registry.set_behaviour(RegistryBehaviour::Status(500)),
            "garbage" => registry.set_behaviour(RegistryBehaviour::Garbage),
            "hang" => registry.set_behaviour(RegistryBehaviour::Hang),
            "too large" => registry.set_behaviour(RegistryBehaviour::TooLarge),
            "only s-bravo" => {
                registry.set_document(only_b.clone());
                registry.set_behaviour(RegistryBehaviour::Serve);
            }
            _ => {
                registry.set_document(both.clone());
                registry.set_behaviour(RegistryBehaviour::Serve);
            }
        }
        if step == "hang" {
            // A hung fetch never completes; one request is all it takes.
            seen = registry.wait_for_requests(seen + 1).await;
        } else {
            seen = registry.wait_for_requests(seen + 2).await;
        }
    }
    stop.send(true).unwrap();
    let mut total = 0;
    for c in clients {
        let statuses = c.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        total += statuses.len();
    }
    assert!(total >= 20, "only {total} requests during the flapping");
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), total + 1);
    assert!(records.iter().all(|r| r["outcome"] == "ok"));
    let winners: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["winner"].as_str())
        .collect();
    assert!(winners.contains("s-alpha"), "{winners:?}");
}

#[tokio::test]
async fn a_sellers_image_breakdown_and_empty_answers_reach_the_record() {
    // 50 % off and a 2 % fee: the usage-based image output cost would be
    // 272 × $40 per 1M × 0.5 × 1.02 = 5_549 micros; the seller's breakdown
    // says its own figure, and the breakdown wins.
    let s = seller(
        SellerSpec::new("s-img")
            .discount_ratio(0.5)
            .service_fee_ratio(0.02)
            .image_price(41_001),
    )
    .await;
    let empty = seller(SellerSpec::new("s-empty").empty_completion(true)).await;
    let registry = market_of(&[&s]).await;
    let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"gpt-image-1","prompt":"a dot","size":"1536x1024","quality":"high","stream":{stream}}}"#
        );
        let resp = daemon.post_json("/v1/images/generations", body).await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let cost = s
        .spec()
        .call_cost(Protocol::ImagesGenerations, "gpt-image-1");
    // One image: 41_001 at list price, × 0.5 rounded up = 20_501, × 1.02
    // rounded up = 20_912 credit micros = USD micros at 1 USD per credit.
    assert_eq!(cost.settled_usd_micros, 20_912);
    for r in &records {
        assert_eq!(r["balance_source"], "seller_authoritative", "{r}");
        assert_eq!(r["billing_unit"], "images", "{r}");
        assert_eq!(r["cost_usd_micros"], 20_912, "{r}");
        assert_eq!(r["image_count"], 1, "{r}");
        assert_eq!(r["image_cost_per_image_usd_micros"], 20_912, "{r}");
        assert_eq!(
            r["image_size"], "1024x1024",
            "the seller's, not the request's: {r}"
        );
        assert_eq!(r["image_quality"], "low", "{r}");
        assert_eq!(r["image_format"], "png", "{r}");
        assert_eq!(r["image_output_tokens"], canned::IMAGE_OUTPUT_TOKENS, "{r}");
        assert_eq!(
            r["image_output_cost_usd_micros"], 41_001,
            "the breakdown's: {r}"
        );
        assert_eq!(r["empty_completion"], false, "{r}");
    }

    // A seller answering empty completions, and no other route: passed on,
    // flagged in the record and marked in `calls`.
    let registry = market_of(&[&empty]).await;
    let mut daemon = Daemon::start(bin(), &auto_config(&registry.url(), ""), &[])
        .await
        .unwrap();
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"gpt-4o","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let resp = daemon.post_json("/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(
            (r["ok"].as_bool(), r["empty_completion"].as_bool()),
            (Some(true), Some(true)),
            "{r}"
        );
        assert_eq!(r["output_tokens"], 0, "{r}");
    }
    let lines = cli_stdout(&daemon, ["calls"]).await;
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.starts_with("✓ chat gpt-4o  s-empty  ") && l.ends_with("⚠empty")),
        "{lines}"
    );
}

/// The credit figures a user can see, from every place they are shown:
/// `/v1/credit` (the dashboard's data), `tokenbuddyd status` and `/metrics`.
struct CreditView {
    api: Value,
    status: String,
    metrics: std::collections::BTreeMap<String, f64>,
}

async fn credit_view(daemon: &Daemon) -> CreditView {
    let api = get_json(daemon, "/v1/credit").await;
    let status = cli_stdout(daemon, ["status"]).await;
    let (_, text) = control(daemon, http::Method::GET, "/metrics", None, false, "").await;
    CreditView {
        api,
        status,
        metrics: parse_metrics(&text),
    }
}

fn seller_credit<'a>(api: &'a Value, id: &str) -> &'a Value {
    api["sellers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seller_id"] == id)
        .unwrap_or_else(|| panic!("no credit row for {id}: {api}"))
}

/// Issue 16's acceptance: a seller bought from and then failed over inside
/// the fresh-purchase window shows non-zero wasted credit in the API, the
/// dashboard's data, `status` and the metrics; the purchases are in the
/// ledger (never the token); the figures are identical after a restart.
async fn wasted_credit_is_shown_and_survives_a_restart(ledger: &str) {
    // `s-cheap` is tried first (cheapest scorer); its second call answers
    // 400, so the daemon fails over to `s-dear` seconds after buying.
    let cheap = seller(
        SellerSpec::new("s-cheap")
            .discount_ratio(0.5)
            .fail_every(2, 400),
    )
    .await;
    let dear = seller(SellerSpec::new("s-dear")).await;
    let registry = market_of(&[&cheap, &dear]).await;
    let config = auto_config(
        &registry.url(),
        &format!("{ledger}\n[routing]\nscorer = \"cheapest\"\n"),
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[]}"#,
            )
            .await;
        assert_eq!(resp.status(), 200);
        attempts.push(resp.headers()["x-tokenbuddy-attempts"].clone());
        body_bytes(resp).await;
    }
    assert_eq!(
        attempts,
        ["s-cheap:200|ok", "s-cheap:400|client_error,s-dear:200|ok"]
    );

    let cost = cheap.spec().call_cost(Protocol::ChatCompletions, "gpt-4o");
    let dear_cost = dear.spec().call_cost(Protocol::ChatCompletions, "gpt-4o");
    let wasted = 1_000_000 - cost.settled_micros;
    let before = credit_view(&daemon).await;
    let c = seller_credit(&before.api, "s-cheap");
    assert_eq!(c["purchases"], 1, "{c}");
    assert_eq!(c["credit_bought_micros"], 1_000_000);
    assert_eq!(c["credit_spent_micros"], cost.settled_micros, "{c}");
    assert_eq!(c["credit_remaining_micros"], 0, "{c}");
    assert_eq!(c["credit_wasted_micros"], wasted, "{c}");
    let d = seller_credit(&before.api, "s-dear");
    assert_eq!(d["credit_spent_micros"], dear_cost.settled_micros, "{d}");
    assert_eq!(
        d["credit_remaining_micros"],
        1_000_000 - dear_cost.settled_micros
    );
    assert_eq!(d["credit_wasted_micros"], 0);
    assert_eq!(before.api["totals"]["credit_wasted_micros"], wasted);
    assert_eq!(before.api["totals"]["purchases"], 2);
    assert!(
        before.status.contains(&format!(
            "  s-cheap: bought 1000000 spent {} remaining 0 wasted {wasted} ",
            cost.settled_micros
        )),
        "{}",
        before.status
    );
    assert!(
        before.status.contains(&format!(
            "  total: bought 2000000 spent {} remaining {} wasted {wasted} ",
            cost.settled_micros + dear_cost.settled_micros,
            1_000_000 - dear_cost.settled_micros
        )),
        "{}",
        before.status
    );
    let m = &before.metrics;
    assert_eq!(
        m[r#"tb_credit_wasted_micros{seller="s-cheap"}"#],
        wasted as f64
    );
    assert_eq!(m[r#"tb_credit_wasted_micros{seller="s-dear"}"#], 0.0);
    assert_eq!(m["tb_credit_wasted_total_micros"], wasted as f64);
    // The dashboard renders `/v1/credit` with a totals row.
    let (_, js) = control(&daemon, http::Method::GET, "/app.js", None, false, "").await;
    assert!(js.contains("'credit-total-'") && js.contains("credit_wasted_micros"));

    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success(), "{}", daemon.logs());
    let logs = daemon.logs();
    let token = cheap.tokens()[0].token.clone();
    assert!(!logs.contains(&token));
    let home = daemon.into_home();
    let daemon = Daemon::start_in(bin(), home, &[]).await.unwrap();
    let after = credit_view(&daemon).await;
    assert_eq!(after.api["sellers"], before.api["sellers"]);
    assert_eq!(after.api["totals"], before.api["totals"]);
    let credit_lines = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| !l.starts_with("seller credit"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(credit_lines(&after.status), credit_lines(&before.status));
    for key in [
        r#"tb_credit_wasted_micros{seller="s-cheap"}"#,
        r#"tb_credit_wasted_micros{seller="s-dear"}"#,
        r#"tb_credit_remaining_micros{seller="s-dear"}"#,
        "tb_credit_wasted_total_micros",
    ] {
        assert_eq!(after.metrics[key], before.metrics[key], "{key}");
    }
    // No purchase after the restart: the restored token serves.
    assert_eq!(cheap.purchase_count() + dear.purchase_count(), 2);
}

#[tokio::test]
async fn wasted_credit_is_shown_and_survives_a_restart_sqlite() {
    wasted_credit_is_shown_and_survives_a_restart("").await;
}

#[tokio::test]
async fn wasted_credit_is_shown_and_survives_a_restart_postgres() {
    let db = PgDatabase::create().await;
    wasted_credit_is_shown_and_survives_a_restart(&format!("[ledger]\nurl = \"{}\"\n", db.url()))
        .await;
}

// The OpenAPI checker of tb-control's tests (as in control.rs).
#[path = "../../tb-control/tests/support/schema.rs"]
mod schema;

/// The `purchases` rows of a stopped daemon's SQLite ledger: (status,
/// quote id, payment reference), oldest first.
async fn purchase_rows(daemon: &Daemon) -> Vec<(String, Option<String>, Option<String>)> {
    use sqlx::Connection;
    let path = daemon.data_dir().join("ledger.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT status, quote_id, payment_reference FROM purchases ORDER BY created_at_ms, id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// `tokenbuddyd pay` against the running daemon: its stdout.
async fn pay_output(daemon: &Daemon, svg_dir: &std::path::Path) -> String {
    cli_stdout(
        daemon,
        [
            std::ffi::OsStr::new("pay"),
            "--svg-dir".as_ref(),
            svg_dir.as_os_str(),
        ],
    )
    .await
}

/// The quote id at the end of a simulated seller's pay URL.
fn quote_of(pay_url: &str) -> String {
    pay_url.rsplit('/').next().unwrap().to_string()
}

/// A clawtip-only seller `s-claw`, its registry, and the daemon in auto
/// mode paying with clawtip (JSON logs).
async fn clawtip_market() -> (SellerServer, RegistryServer, Daemon) {
    let s = seller(SellerSpec::new("s-claw").payment_methods([tb_domain::PaymentMethod::Clawtip]))
        .await;
    let registry = market_of(&[&s]).await;
    let config = auto_config(
        &registry.url(),
        "[provider.auto]\npayment_method = \"clawtip\"\n[log]\nformat = \"json\"\n",
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    (s, registry, daemon)
}

/// Waits (bounded, polling the control plane) until no payment is pending.
async fn until_nothing_pending(daemon: &Daemon) {
    for _ in 0..400 {
        let pending = get_json(daemon, "/v1/purchases/pending").await;
        if pending["payments"].as_array().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a payment stayed pending; logs:\n{}", daemon.logs());
}

/// A clawtip-only seller (issue 16): the first request gets a 402 naming
/// the pay URL; `tokenbuddyd pay` shows it with its QR code; once the
/// simulated wallet confirms, the daemon's poll completes the purchase and
/// the same request succeeds; the purchase is in the ledger. A quote left
/// unpaid expires cleanly and the next request gets a fresh 402.
#[tokio::test]
async fn clawtip_payments_are_shown_polled_and_expire_cleanly() {
    let (s, _registry, mut daemon) = clawtip_market().await;

    // Chat and Messages clients both get their protocol's 402.
    let (status, body) = chat(&daemon).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "payment_required", "{body}");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    let pending = get_json(&daemon, "/v1/purchases/pending").await;
    let payments = pending["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "{pending}");
    let p = &payments[0];
    let pay_url = p["pay_url"].as_str().unwrap().to_owned();
    assert!(pay_url.starts_with(&s.url()), "{pay_url}");
    assert!(
        message.contains(&pay_url) && message.contains("s-claw") && message.contains("$1.000000"),
        "{message}"
    );
    assert_eq!(p["seller_id"], "s-claw");
    assert_eq!(p["payment_method"], "clawtip");
    assert_eq!(p["credit_micros"], 1_000_000);
    assert!(p["qr_svg"].as_str().unwrap().contains("<svg"), "{p}");
    schema::assert_valid(
        &schema::document(),
        &schema::response_pointer("GET", "/v1/purchases/pending"),
        &pending,
    );
    let resp = daemon
        .post_json(
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(resp.status(), 402);
    let anthropic = body_json(resp).await;
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "billing_error", "{anthropic}");
    // Both requests met the pending payment: counted as such in
    // tb_purchases_total (per attempt), never as a failed purchase.
    let (_, text) = control(&daemon, http::Method::GET, "/metrics", None, false, "").await;
    let metrics = parse_metrics(&text);
    let pending_count: f64 = metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with("tb_purchases_total{") && k.contains("result=\"payment_pending\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(pending_count, 2.0, "{text}");
    assert_eq!(
        s.quote_count(),
        2,
        "one quote per model while pending, not per request"
    );
    let (again, _) = chat(&daemon).await;
    assert_eq!(again, 402);
    assert_eq!(
        s.quote_count(),
        2,
        "a pending gpt-4o quote is not quoted again"
    );
    // A payment the user has not made is not the seller's failure.
    let upstreams = get_json(&daemon, "/v1/upstreams").await;
    assert_eq!(
        upstreams["upstreams"][0]["circuit"], "closed",
        "{upstreams}"
    );

    // `tokenbuddyd pay` shows both, each with a QR block and an SVG image.
    let svg_dir = tempfile::tempdir().unwrap();
    let shown = pay_output(&daemon, svg_dir.path()).await;
    assert!(shown.contains(&format!("pay at: {pay_url}")), "{shown}");
    assert!(shown.contains("seller s-claw asks $1.000000"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.chars().filter(|c| "▀▄█".contains(*c)).count() > 10),
        "{shown}"
    );
    assert_eq!(std::fs::read_dir(svg_dir.path()).unwrap().count(), 2);

    // The wallet pays the gpt-4o quote; the daemon's poll completes it.
    assert!(s.confirm_payment(&quote_of(&pay_url)));
    daemon.wait_for_log("purchase.completed").await;
    let (status, body) = chat(&daemon).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.tokens_issued(), 1);

    // The Messages quote is left unpaid: it expires, and a request then
    // gets a fresh 402 at once (no hang, no stale payment). The seller's
    // quotes now lapse in 1 s.
    s.update(|spec| spec.quote_ttl = std::time::Duration::from_secs(1));
    let other = get_json(&daemon, "/v1/purchases/pending").await["payments"][0].clone();
    assert!(s.cancel_payment(&quote_of(other["pay_url"].as_str().unwrap())));
    until_nothing_pending(&daemon).await;
    let started = std::time::Instant::now();
    let resp = daemon
        .post_json(
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    // The clawtip token bought for gpt-4o serves claude too (one token per
    // seller and payment method): 200, no new purchase.
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Running low: the recharge link and its QR code are shown.
    let token = s.tokens()[0].token.clone();
    assert_eq!(
        get_json(&daemon, "/v1/purchases/pending").await["recharges"],
        serde_json::json!([])
    );
    assert!(s.set_balance(&token, 150_000));
    let (status, _) = chat(&daemon).await;
    assert_eq!(status, 200);
    let pending = get_json(&daemon, "/v1/purchases/pending").await;
    let recharge = &pending["recharges"][0];
    assert_eq!(recharge["seller_id"], "s-claw", "{pending}");
    assert_eq!(recharge["recharge_url"], format!("{}/recharge", s.url()));
    assert!(
        recharge["balance_micros"].as_u64().unwrap() < 150_000,
        "{recharge}"
    );
    schema::assert_valid(
        &schema::document(),
        &schema::response_pointer("GET", "/v1/purchases/pending"),
        &pending,
    );
    let shown = pay_output(&daemon, svg_dir.path()).await;
    assert!(
        shown.contains(&format!("recharge at: {}/recharge", s.url())),
        "{shown}"
    );

    // A dry token needs a new wallet payment: this one is left to expire.
    assert!(s.set_balance(&token, 0));
    let (status, body) = chat(&daemon).await;
    assert_eq!(status, 402, "{body}");
    let lapsing = get_json(&daemon, "/v1/purchases/pending").await["payments"][0]["pay_url"]
        .as_str()
        .unwrap()
        .to_owned();
    until_nothing_pending(&daemon).await;
    assert!(
        !s.confirm_payment(&quote_of(&lapsing)),
        "expired at the seller too"
    );
    let (status, body) = chat(&daemon).await;
    assert_eq!(status, 402, "a fresh quote after the expiry: {body}");
    let fresh = get_json(&daemon, "/v1/purchases/pending").await["payments"][0]["pay_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, lapsing);

    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    let rows = purchase_rows(&daemon).await;
    let statuses: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        statuses,
        ["completed", "cancelled", "expired", "pending"],
        "{rows:?}"
    );
    // The completed row carries the seller's payment reference; a pending
    // one the pay URL.
    assert_eq!(rows[3].2.as_deref(), Some(fresh.as_str()));
    assert!(
        !daemon.logs().contains(&token),
        "the seller token is never logged"
    );
}

/// A wallet purchase pending when the daemon stops is polled again after
/// a restart: the user pays while the daemon is down, the restarted daemon
/// collects the credit and serves the request; one purchase row, completed.
#[tokio::test]
async fn a_pending_clawtip_payment_survives_a_restart() {
    let (s, _registry, mut daemon) = clawtip_market().await;
    let (status, _) = chat(&daemon).await;
    assert_eq!(status, 402);
    let pending = get_json(&daemon, "/v1/purchases/pending").await;
    let pay_url = pending["payments"][0]["pay_url"]
        .as_str()
        .unwrap()
        .to_owned();
    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    assert_eq!(purchase_rows(&daemon).await[0].0, "pending");

    // Paid while the daemon is down.
    assert!(s.confirm_payment(&quote_of(&pay_url)));
    let mut daemon = Daemon::start_in(bin(), daemon.into_home(), &[])
        .await
        .unwrap();
    daemon.wait_for_log("purchase.completed").await;
    let (status, body) = chat(&daemon).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.quote_count(), 1, "the restart quoted nothing new");
    assert_eq!(s.tokens_issued(), 1);
    let pending = get_json(&daemon, "/v1/purchases/pending").await;
    assert_eq!(pending["payments"], serde_json::json!([]));
    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    let rows = purchase_rows(&daemon).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "completed");
}
