//! `tokenbuddyd demo`: a newcomer's "see it work". A simulated marketplace
//! (a registry and three sellers with different prices and latencies, one
//! of them failing) on loopback, this daemon in auto mode in a temporary
//! home, a burst of mixed requests, the call lines and a savings summary —
//! then the dashboard stays up until Ctrl-C.

use anyhow::{Context, anyhow};
use std::time::Duration;
use tb_billing::record::usd;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::marketplace::{
    Marketplace, ModelPrice, RegistryServer, SellerServer, SellerSpec, registry_doc,
};

/// The requests of the burst: (path, body).
fn burst() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for i in 0..4 {
        for stream in [false, true] {
            out.push(("/v1/chat/completions", format!(r#"{{"model":"deepseek-chat","stream":{stream},"messages":[{{"role":"user","content":"hello {i}"}}]}}"#)));
            out.push(("/v1/messages", format!(r#"{{"model":"claude-sonnet-4-5","stream":{stream},"max_tokens":64,"messages":[{{"role":"user","content":"hi {i}"}}]}}"#)));
            out.push((
                "/v1/responses",
                format!(r#"{{"model":"deepseek-chat","stream":{stream},"input":"hey {i}"}}"#),
            ));
        }
    }
    out.push((
        "/v1/images/generations",
        r#"{"model":"gpt-image-1","prompt":"a small dot"}"#.to_string(),
    ));
    out
}

pub(crate) fn run(wait: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(wait))
}

/// Three sellers of the same models: `s-alpha` is the cheapest (30 % off
/// list) but flaky (every third call answers 503, so failover shows),
/// `s-bravo` is 15 % off and a little slower, `s-charlie` sells at list
/// price and is the slowest.
fn seller_specs() -> Vec<SellerSpec> {
    // List prices equal to the first-party ones (USD micros per 1M tokens),
    // so a seller's discount shows up as savings.
    let base = |id: &str, discount: f64, latency_ms: u64| {
        SellerSpec::new(id)
            .price("deepseek-chat", ModelPrice::new(280_000, 420_000, 28_000))
            .price(
                "claude-sonnet-4-5",
                ModelPrice::new(3_000_000, 15_000_000, 300_000),
            )
            .image_price(167_000)
            .name(format!("Demo seller {}", id.trim_start_matches("s-")))
            .models(Marketplace::MODELS)
            .protocols(Protocol::ALL)
            .discount_ratio(discount)
            .service_fee_ratio(0.02)
            .latency(Duration::from_millis(latency_ms))
            .with_generated_manifest()
    };
    vec![
        base("s-alpha", 0.30, 2).fail_every(3, 503),
        base("s-bravo", 0.15, 15),
        base("s-charlie", 0.0, 30),
    ]
}

async fn start_marketplace() -> anyhow::Result<Marketplace> {
    let mut sellers = Vec::new();
    for spec in seller_specs() {
        sellers.push(SellerServer::start(spec).await?);
    }
    let refs: Vec<&SellerServer> = sellers.iter().collect();
    let registry = RegistryServer::start(registry_doc(&refs, Some("s-charlie"))).await?;
    Ok(Marketplace { registry, sellers })
}

async fn demo(wait: bool) -> anyhow::Result<()> {
    let market = start_marketplace()
        .await
        .context("starting the simulated marketplace")?;
    println!(
        "marketplace: registry {} with sellers {}",
        market.registry_url(),
        market
            .sellers
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\n[routing]\nscorer = \"cheapest\"\nretry_same_on_5xx = false\nfocus_models = [\"deepseek-chat\", \"claude-sonnet-4-5\"]\n[prewarm]\nstartup_jitter_ms = [0, 0]\n[log]\nlevel = \"warn\"\n",
        market.registry_url()
    );
    let exe = std::env::current_exe().context("finding this program")?;
    let mut daemon = Daemon::start(&exe, &config, &[])
        .await
        .map_err(|e| anyhow!("starting the daemon: {e}"))?;
    let control = daemon
        .control_url
        .clone()
        .ok_or_else(|| anyhow!("the daemon printed no control URL"))?;
    println!("daemon: proxy {} · dashboard {control}/", daemon.proxy_url);

    let requests = burst();
    let n = requests.len();
    for (path, body) in requests {
        let resp = daemon.post_json(path, body).await;
        body_bytes(resp).await;
    }
    // The ledger writer commits within 50 ms; wait until all are in.
    let mut calls = Vec::new();
    for _ in 0..200 {
        let v = crate::doctor::get_json(&format!("{control}/v1/calls?limit=100")).await?;
        calls = v["calls"].as_array().cloned().unwrap_or_default();
        if calls.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    calls.reverse();
    println!();
    for c in &calls {
        match serde_json::from_value::<tb_billing::record::CallRecord>(c.clone()) {
            Ok(r) => println!("{}", r.one_line()),
            Err(_) => println!("{c}"),
        }
    }
    let usage =
        crate::doctor::get_json(&format!("{control}/v1/usage?since=1h&by=upstream")).await?;
    let t = &usage["totals"];
    let spend = t["cost_usd_micros"].as_i64().unwrap_or(0);
    let saved = t["saved_usd_micros"].as_i64().unwrap_or(0);
    println!();
    println!(
        "{} calls · spend {} · saved {} vs list prices",
        t["calls"],
        usd(spend),
        usd(saved)
    );
    for row in usage["rows"].as_array().into_iter().flatten() {
        let key = row["key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .unwrap_or("(no answer)");
        println!(
            "  {key:<10} {:>3} calls  spend {}",
            row["calls"],
            usd(row["cost_usd_micros"].as_i64().unwrap_or(0))
        );
    }
    if wait {
        println!("\ndashboard: {control}/  (Ctrl-C to stop)");
        tokio::signal::ctrl_c().await.ok();
    }
    daemon.sigterm().ok();
    daemon.wait().await.ok();
    drop(market);
    Ok(())
}
