//! End-to-end routing: circuit breakers bench a failing upstream and let one
//! half-open trial through after the cooldown; when everything is benched,
//! requests are still tried; scorers pick the seller they promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::marketplace::{RegistryServer, SellerServer, SellerSpec, registry_doc};
use tb_test_support::{MockUpstream, Reply};

const BODY: &str = r#"{"model":"m","messages":[]}"#;

fn manual(ids_urls: &[(&str, String)], extra: &str) -> String {
    let mut config = format!(
        "[routing]\nretry_same_on_5xx = false\nsticky_reset_ms = 0\n[breaker]\ncooldown_ms = 1000\nmax_cooldown_ms = 2000\n{extra}\n"
    );
    for (id, url) in ids_urls {
        config.push_str(&format!(
            "[[providers]]\nid = \"{id}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key = \"k\"\nmodels = [\"m\"]\n"
        ));
    }
    config
}

async fn attempts_of(daemon: &Daemon) -> String {
    let resp = daemon.post_json("/v1/chat/completions", BODY).await;
    assert_eq!(resp.status(), 200);
    let attempts = resp.headers()["x-tokenbuddy-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    body_bytes(resp).await;
    attempts
}

#[tokio::test]
async fn a_failing_upstream_is_benched_then_given_one_trial() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let daemon = Daemon::start(
        bin(),
        &manual(&[("a", a.base_url()), ("b", b.base_url())], ""),
        &[],
    )
    .await
    .unwrap();

    for _ in 0..3 {
        a.push_reply(Reply::openai_error(503, "server_error", "down", "down"));
        assert_eq!(attempts_of(&daemon).await, "a:503|server_error,b:200|ok");
    }
    // Three failures within the window: `a` is open and goes last.
    assert_eq!(attempts_of(&daemon).await, "b:200|ok");
    assert_eq!(a.request_count(), 3);

    // After the cooldown, exactly one half-open trial: a slow one, so a
    // second request arriving meanwhile sees the trial in flight.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.push_reply(
        Reply::json(
            200,
            tb_test_support::canned::json(tb_domain::Protocol::ChatCompletions, "m"),
        )
        .with_head_delay(Duration::from_millis(500)),
    );
    let client = daemon.client();
    let trial = tokio::spawn(async move {
        let resp = client.post_json("/v1/chat/completions", BODY).await;
        let attempts = resp.headers()["x-tokenbuddy-attempts"]
            .to_str()
            .unwrap()
            .to_string();
        body_bytes(resp).await;
        attempts
    });
    a.wait_for_requests(4).await;
    assert_eq!(
        attempts_of(&daemon).await,
        "b:200|ok",
        "the trial is in flight: no second trial"
    );
    assert_eq!(trial.await.unwrap(), "a:200|ok");
    assert_eq!(a.request_count(), 4, "exactly one trial");
    // The trial succeeded: `a` is first again.
    assert_eq!(attempts_of(&daemon).await, "a:200|ok");
}

#[tokio::test]
async fn when_everything_is_benched_requests_are_still_tried() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let daemon = Daemon::start(
        bin(),
        &manual(&[("a", a.base_url()), ("b", b.base_url())], "")
            .replace("cooldown_ms = 1000", "cooldown_ms = 600000")
            .replace("max_cooldown_ms = 2000", "max_cooldown_ms = 600000"),
        &[],
    )
    .await
    .unwrap();
    for _ in 0..3 {
        a.push_reply(Reply::openai_error(503, "server_error", "down", "down"));
        b.push_reply(Reply::openai_error(503, "server_error", "down", "down"));
        let resp = daemon.post_json("/v1/chat/completions", BODY).await;
        assert_eq!(resp.status(), 503);
        body_bytes(resp).await;
    }
    // Both open for ten minutes; both recovered meanwhile. The request is
    // still tried, in order, and succeeds.
    assert_eq!(attempts_of(&daemon).await, "a:200|ok");
}

async fn seller(id: &str, discount: f64) -> SellerServer {
    SellerServer::start(
        SellerSpec::new(id)
            .models(["gpt-4o"])
            .discount_ratio(discount),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn discount_and_cheapest_scorers_pick_the_cheapest_seller() {
    let plain = seller("s-plain", 0.0).await;
    let cheap = seller("s-cheap", 0.5).await;
    let mid = seller("s-mid", 0.2).await;
    let registry = RegistryServer::start(registry_doc(&[&plain, &mid, &cheap], Some("s-plain")))
        .await
        .unwrap();
    for scorer in ["discount", "cheapest"] {
        let config = format!(
            "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\n[routing]\nscorer = \"{scorer}\"\n",
            registry.url()
        );
        let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
        for _ in 0..5 {
            let resp = daemon
                .post_json(
                    "/v1/chat/completions",
                    r#"{"model":"gpt-4o","messages":[]}"#,
                )
                .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(
                resp.headers()["x-tokenbuddy-upstream"],
                "s-cheap",
                "{scorer}"
            );
            body_bytes(resp).await;
        }
    }
    assert_eq!(plain.inference_count() + mid.inference_count(), 0);
}

#[tokio::test]
async fn the_speed_scorer_prefers_the_fastest_seller_once_probed() {
    let slow = SellerServer::start(
        SellerSpec::new("s-slow")
            .models(["gpt-4o"])
            .latency(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let fast = SellerServer::start(SellerSpec::new("s-fast").models(["gpt-4o"]))
        .await
        .unwrap();
    let registry = RegistryServer::start(registry_doc(&[&slow, &fast], Some("s-slow")))
        .await
        .unwrap();
    let config = format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\n[routing]\nscorer = \"speed\"\nfocus_models = [\"gpt-4o\"]\n[prewarm]\nstartup_jitter_ms = [0, 0]\n[purchase]\namount_credit_micros = 2500000\n",
        registry.url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    // The startup sweep probes both sellers' /healthz.
    daemon.wait_for_log("prewarm.sweep").await;
    assert!(slow.healthz_count() >= 1 && fast.healthz_count() >= 1);
    let mut served_fast = 0;
    for _ in 0..10 {
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[]}"#,
            )
            .await;
        assert_eq!(resp.status(), 200);
        if resp.headers()["x-tokenbuddy-upstream"] == "s-fast" {
            served_fast += 1;
        }
        body_bytes(resp).await;
    }
    assert!(
        served_fast >= 9,
        "the fastest seller serves most requests: {served_fast}/10"
    );
    // The prewarm snapshot carries the pool and the credit it served from.
    let prewarm = get_json(&daemon, "/v1/prewarm").await;
    assert_eq!(prewarm["focus"], serde_json::json!(["gpt-4o"]), "{prewarm}");
    assert_eq!(
        prewarm["pool"],
        serde_json::json!({"upstreams": 2, "sellers": 2, "closed": 2, "open": 0, "half_open": 0, "capacity_blocked": 0})
    );
    let credit = &prewarm["credit"];
    assert_eq!(credit, &get_json(&daemon, "/v1/credit").await);
    let bought = credit["totals"]["purchases"].as_u64().unwrap();
    assert!(bought >= 1, "{credit}");
    // Each purchase asks for `purchase.amount_credit_micros` of credit.
    assert_eq!(
        credit["totals"]["credit_bought_micros"].as_u64().unwrap(),
        bought * 2_500_000,
        "{credit}"
    );
    let fast_row = credit["sellers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seller_id"] == "s-fast")
        .unwrap();
    assert!(
        fast_row["credit_spent_micros"].as_u64().unwrap() > 0,
        "{credit}"
    );
}

#[tokio::test]
async fn after_a_failover_the_model_sticks_to_the_upstream_that_served() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let config = manual(&[("a", a.base_url()), ("b", b.base_url())], "")
        .replace("sticky_reset_ms = 0", "sticky_reset_ms = 600000");
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    a.push_reply(Reply::openai_error(503, "server_error", "down", "down"));
    assert_eq!(attempts_of(&daemon).await, "a:503|server_error,b:200|ok");
    // `a` is healthy again (one failure does not open it), but the model
    // sticks to `b` until the reset interval passes.
    assert_eq!(attempts_of(&daemon).await, "b:200|ok");
    assert_eq!(attempts_of(&daemon).await, "b:200|ok");
    assert_eq!(a.request_count(), 1);
}

#[tokio::test]
async fn route_decision_names_the_mode_the_chosen_upstream_the_candidates_and_why() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let mut config = manual(
        &[("a", a.base_url()), ("b", b.base_url())],
        "[log]\nlevel = \"info\"\nformat = \"json\"",
    );
    config.push_str(&format!(
        "[[providers]]\nid = \"an\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m\"]\nprotocols = [\"messages\"]\n",
        an.base_url()
    ));
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    assert_eq!(attempts_of(&daemon).await, "a:200|ok");
    daemon.wait_for_log("\"route.decision\"").await;
    let events = log_events(&daemon, "route.decision");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["mode"], "manual", "{e}");
    assert_eq!(e["model"], "m");
    assert_eq!(e["protocol"], "chat_completions");
    assert_eq!(e["chosen"], "a");
    assert_eq!(e["candidates"], r#"["a", "b"]"#);
    assert_eq!(e["translated"], r#"["an"]"#);
    assert_eq!(
        e["reason"],
        "manual/chat_completions: config_order, policy fallback, sticky no_hint, 0 of 2 benched; \
         manual/messages: config_order, policy fallback, sticky no_hint, 0 of 1 benched"
    );
}
