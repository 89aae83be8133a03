//! Sellers' own prices and the seller audit, end to end: the real daemon
//! on the simulated marketplace fetches each seller's manifest and
//! estimates (and measures drift) with its prices; `tokenbuddyd sellers`,
//! `tokenbuddyd sellers audit`, `GET /v1/sellers` and `GET
//! /v1/sellers/audit` show a seller settling at ×100 for what it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../tb-control/tests/support/schema.rs"]
mod schema;

use common::*;
use serde_json::Value;
use tb_control::api::{FindingKind, SellerAudit, Sellers};
use tb_domain::Protocol;
use tb_test_support::canned;
use tb_test_support::daemon::{Daemon, body_bytes, command};
use tb_test_support::marketplace::{
    ModelPrice, RegistryServer, SellerServer, SellerSpec, registry_doc,
};

fn auto_config(registry_url: &str) -> String {
    format!("[provider]\nmode = \"auto\"\n[registry]\nurl = \"{registry_url}\"\n")
}

/// Starts a daemon on `sellers` and waits until their manifests are in
/// its routing table.
async fn daemon_on(sellers: &[&SellerServer]) -> (RegistryServer, Daemon) {
    let registry = RegistryServer::start(registry_doc(sellers, Some(&sellers[0].id())))
        .await
        .unwrap();
    let daemon = Daemon::start(bin(), &auto_config(&registry.url()), &[])
        .await
        .unwrap();
    daemon.wait_for_log("seller manifests applied").await;
    (registry, daemon)
}

async fn call(daemon: &Daemon, path: &str, model: &str) {
    let body = format!(
        r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let resp = daemon.post_json(path, body).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
}

/// `ceil(Σ tokens × price / 1M)`, prices in USD micros per 1M.
fn cost(fresh: u64, cached: u64, output: u64, (input, cache_read, out): (u64, u64, u64)) -> i64 {
    let n = u128::from(fresh) * u128::from(input)
        + u128::from(cached) * u128::from(cache_read)
        + u128::from(output) * u128::from(out);
    i64::try_from(n.div_ceil(1_000_000)).unwrap()
}

/// Runs `tokenbuddyd <args>` on the daemon's home: (exit code, stdout).
async fn cli(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    let out = command(bin(), daemon.home())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `GET /v1/sellers` once the ledger holds `calls` calls.
async fn sellers_after(daemon: &Daemon, calls: u64) -> Value {
    for _ in 0..200 {
        let doc = get_json(daemon, "/v1/sellers").await;
        let seen: u64 = doc["sellers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["won"].as_u64().unwrap())
            .sum();
        if seen == calls {
            return doc;
        }
        // The ledger writer commits within 50 ms.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the ledger never held {calls} calls");
}

#[tokio::test]
async fn a_seller_with_its_own_prices_is_estimated_and_audited_with_them() {
    // Its own gpt-4o price, far from the table's ($2.50 / $10 / $1.25),
    // 20 % off and a 2 % fee: the manifest publishes what it charges.
    let list = ModelPrice::new(1_000_000, 4_000_000, 100_000);
    let own = SellerServer::start(
        SellerSpec::new("s-own")
            .models(["gpt-4o"])
            .price("gpt-4o", list)
            .discount_ratio(0.2)
            .service_fee_ratio(0.02)
            .with_generated_manifest(),
    )
    .await
    .unwrap();
    let (_registry, mut daemon) = daemon_on(&[&own]).await;
    assert_eq!(own.manifest_count(), 1, "once per registry generation");
    let upstreams = get_json(&daemon, "/v1/upstreams").await;
    assert_eq!(upstreams["upstreams"][0]["own_prices"], 1, "{upstreams}");

    for _ in 0..3 {
        call(&daemon, "/v1/chat/completions", "gpt-4o").await;
    }
    let doc = sellers_after(&daemon, 3).await;
    let fresh = canned::INPUT_TOKENS - canned::CACHED_INPUT_TOKENS;
    let (cached, output) = (canned::CACHED_INPUT_TOKENS, canned::OUTPUT_TOKENS);
    // × 0.8 × 1.02 = × 0.816, per 1M.
    let charged = |p: u64| p * 816 / 1000;
    let own_estimate = cost(
        fresh,
        cached,
        output,
        (
            charged(list.input),
            charged(list.cache_read),
            charged(list.output),
        ),
    );
    let table_estimate = cost(
        fresh,
        cached,
        output,
        (charged(2_500_000), charged(1_250_000), charged(10_000_000)),
    );
    assert_ne!(own_estimate, table_estimate);
    let settled = own
        .spec()
        .call_cost(Protocol::ChatCompletions, "gpt-4o")
        .settled_usd_micros as i64;
    let row = &doc["sellers"][0];
    assert_eq!(row["seller_id"], "s-own");
    assert_eq!(row["estimated_usd_micros"], 3 * own_estimate, "{doc}");
    assert_eq!(row["settled_usd_micros"], 3 * settled, "{doc}");
    assert_eq!(row["failure_share_ppm"], 0);
    assert!(row["last_purchase_ms"].is_i64(), "{doc}");
    let drift = (settled - own_estimate) * 1_000_000 / own_estimate;
    assert_eq!(row["median_drift_ppm"], drift, "{doc}");
    assert!(drift.abs() < 200_000, "rounding only: {drift}");

    let (code, out) = cli(&daemon, &["sellers", "audit"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok: 1 seller(s) checked"), "{out}");

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r["winner"], "s-own");
        assert_eq!(r["balance_source"], "seller_authoritative", "{r}");
        assert_eq!(r["cost_usd_micros"], settled, "{r}");
        assert_eq!(r["est_cost_usd_micros"], own_estimate, "{r}");
        assert_eq!(r["price_drift_ppm"], drift.abs(), "{r}");
    }
    assert_eq!(own.manifest_count(), 1, "never fetched per request");
}

#[tokio::test]
async fn a_seller_settling_at_100x_is_flagged() {
    // Settles 100 USD micros per credit micro; its quotes stay in budget.
    let hundred = SellerServer::start(
        SellerSpec::new("s-hundred")
            .models(["gpt-4o"])
            .usd_per_credit(100.0)
            .price_usd_micros(10_000)
            .with_generated_manifest(),
    )
    .await
    .unwrap();
    let fair = SellerServer::start(
        SellerSpec::new("s-fair")
            .models(["claude-sonnet-4-5"])
            .with_generated_manifest(),
    )
    .await
    .unwrap();
    let (_registry, daemon) = daemon_on(&[&hundred, &fair]).await;
    for _ in 0..3 {
        call(&daemon, "/v1/chat/completions", "gpt-4o").await;
    }
    for _ in 0..2 {
        call(&daemon, "/v1/messages", "claude-sonnet-4-5").await;
    }
    let live = sellers_after(&daemon, 5).await;
    let served = get_json(&daemon, "/v1/openapi.json").await;
    schema::assert_valid(
        &served,
        &schema::response_pointer("GET", "/v1/sellers"),
        &live,
    );
    let sellers: Sellers = serde_json::from_value(live).unwrap();
    let ids: Vec<&str> = sellers
        .sellers
        .iter()
        .map(|s| s.seller_id.as_str())
        .collect();
    assert_eq!(ids, ["s-fair", "s-hundred"]);
    assert_eq!(sellers.sellers[1].median_drift_ppm, Some(99_000_000));
    assert_eq!(sellers.sellers[1].wasted_credit_micros, 0);

    let live = get_json(&daemon, "/v1/sellers/audit").await;
    schema::assert_valid(
        &served,
        &schema::response_pointer("GET", "/v1/sellers/audit"),
        &live,
    );
    let audit: SellerAudit = serde_json::from_value(live).unwrap();
    assert_eq!(audit.sellers_checked, 2);
    assert_eq!(audit.flagged.len(), 1, "{audit:?}");
    let flagged = &audit.flagged[0];
    assert_eq!(flagged.seller_id, "s-hundred");
    assert_eq!(flagged.kind, FindingKind::Times100);
    assert_eq!(flagged.median_ratio_ppm, 100_000_000);
    assert_eq!((flagged.settled_calls, flagged.evidence_calls), (3, 3));
    let records = read_ledger(daemon.home()).await;
    let mut hundred_calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["winner"] == "s-hundred")
        .collect();
    hundred_calls.sort_by_key(|r| std::cmp::Reverse(r["started_at_ms"].as_i64()));
    let shown: Vec<&str> = flagged.calls.iter().map(|c| c.call_id.as_str()).collect();
    let newest_first: Vec<&str> = hundred_calls
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 3);
    assert_eq!(
        shown.iter().collect::<std::collections::BTreeSet<_>>(),
        newest_first
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
    );

    // The CLI: the same audit, exit 1, naming the seller and its calls.
    let (code, out) = cli(&daemon, &["sellers", "audit"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FLAGGED s-hundred (times_100): median ×100.00 of the estimate"),
        "{out}"
    );
    for id in &newest_first {
        assert!(out.contains(id), "call {id} missing from:\n{out}");
    }
    assert!(!out.contains("FLAGGED s-fair"), "{out}");
    let (code, out) = cli(&daemon, &["sellers", "audit", "--json"]).await;
    assert_eq!(code, Some(1));
    let from_cli: SellerAudit = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(from_cli.flagged, audit.flagged);

    let (code, out) = cli(&daemon, &["sellers"]).await;
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("seller") && lines[0].ends_with("last purchase"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("s-fair ") && lines[1].contains("+0.0%"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("s-hundred ") && lines[2].contains("+9900.0%"),
        "{out}"
    );
    let (_, out) = cli(&daemon, &["sellers", "--since", "1h", "--json"]).await;
    let from_cli: Sellers = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(from_cli.sellers, sellers.sellers);
    let (code, _) = cli(&daemon, &["sellers", "--since", "yesterday"]).await;
    assert_eq!(code, Some(2), "a bad window is a usage error");
}
