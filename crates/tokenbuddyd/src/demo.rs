//! `tokenbuddyd demo`: a newcomer's "see it work". A simulated marketplace
//! (a registry and three sellers with different prices and latencies, one
//! of them failing) on loopback, this daemon in auto mode in a temporary
//! home, a burst of mixed requests, the call lines and a savings summary —
//! then the dashboard stays up until Ctrl-C.
//!
//! Everything here is product code: the marketplace is `tb-sim-market`, and
//! the daemon is this very program's `serve`, run as a child process in the
//! temporary home (so it is exactly what a user runs, with its own runtime
//! and signal handling).

use anyhow::{Context, anyhow};
use std::time::Duration;
use tb_billing::record::usd;
use tb_domain::{PaymentMethod, Protocol};
use tb_sim_market::{
    Marketplace, ModelPrice, RegistryServer, SellerServer, SellerSpec, registry_doc,
};

use crate::child::{ChildConfig, ChildDaemon};

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

pub(crate) fn run(wait: bool, clawtip: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(wait, clawtip))
}

/// Three sellers of the same models: `s-alpha` is the cheapest (30 % off
/// list) but flaky (every third call answers 503, so failover shows),
/// `s-bravo` is 15 % off and a little slower, `s-charlie` sells at list
/// price and is the slowest.
///
/// With `clawtip`, the sellers also take wallet payments.
fn seller_specs(clawtip: bool) -> Vec<SellerSpec> {
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
            .payment_methods(if clawtip {
                vec![PaymentMethod::Mock, PaymentMethod::Clawtip]
            } else {
                vec![PaymentMethod::Mock]
            })
            .with_generated_manifest()
    };
    vec![
        base("s-alpha", 0.30, 2).fail_every(3, 503),
        base("s-bravo", 0.15, 15),
        base("s-charlie", 0.0, 30),
    ]
}

async fn start_marketplace(clawtip: bool) -> anyhow::Result<Marketplace> {
    let mut sellers = Vec::new();
    for spec in seller_specs(clawtip) {
        sellers.push(SellerServer::start(spec).await?);
    }
    let refs: Vec<&SellerServer> = sellers.iter().collect();
    let registry = RegistryServer::start(registry_doc(&refs, Some("s-charlie"))).await?;
    Ok(Marketplace { registry, sellers })
}

async fn demo(wait: bool, clawtip: bool) -> anyhow::Result<()> {
    let market = start_marketplace(clawtip)
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
    let payment = if clawtip {
        "[provider.auto]\npayment_method = \"clawtip\"\n"
    } else {
        ""
    };
    let config = format!(
        "[provider]\nmode = \"auto\"\n{payment}[registry]\nurl = \"{}\"\n[routing]\nscorer = \"cheapest\"\nretry_same_on_5xx = false\nfocus_models = [\"deepseek-chat\", \"claude-sonnet-4-5\"]\n[prewarm]\nstartup_jitter_ms = [0, 0]\n[log]\nlevel = \"warn\"\n",
        market.registry_url()
    );
    let daemon = ChildDaemon::start(ChildConfig::Text(&config))
        .await
        .context("starting the daemon")?;
    let control = daemon.control_url.clone();
    println!("daemon: proxy {} · dashboard {control}/", daemon.proxy_url);

    let mut n = 0;
    if clawtip {
        pay_in_the_wallet(&daemon).await?;
        // The request that got the 402 is a call too.
        n += 1;
    }
    let requests = burst();
    n += requests.len();
    for (path, body) in requests {
        daemon.post_json(path, body).await?;
    }
    let mut calls = daemon.recent_calls(n).await?;
    calls.reverse();
    println!();
    for r in &calls {
        println!("{}", r.one_line());
    }
    let usage: tb_control::api::Usage =
        crate::doctor::get(&format!("{control}/v1/usage?since=1h&by=upstream")).await?;
    let t = &usage.totals;
    println!();
    println!(
        "{} calls · spend {} · saved {} vs list prices",
        t.calls,
        usd(t.cost_usd_micros),
        usd(t.saved_usd_micros)
    );
    for row in &usage.rows {
        let key = if row.key.is_empty() {
            "(no answer)"
        } else {
            row.key.as_str()
        };
        println!(
            "  {key:<10} {:>3} calls  spend {}",
            row.calls,
            usd(row.cost_usd_micros)
        );
    }
    if wait {
        println!("\ndashboard: {control}/  (Ctrl-C to stop)");
        tokio::signal::ctrl_c().await.ok();
    }
    daemon.stop().await;
    drop(market);
    Ok(())
}

/// The clawtip walk-through: a first request gets the daemon's 402 naming
/// the pay link; the pending payments are shown as `tokenbuddyd pay` shows
/// them (QR code included); the demo then pays each in the simulated
/// wallet (a `POST` to the pay URL, as the user's wallet app would) and
/// waits until the daemon's poll has collected the credit.
async fn pay_in_the_wallet(daemon: &ChildDaemon) -> anyhow::Result<()> {
    let control = &daemon.control_url;
    let answer = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"deepseek-chat","messages":[{"role":"user","content":"hello"}]}"#.into(),
        )
        .await?;
    let said: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    println!(
        "\nfirst request: HTTP {}: {}",
        answer.status,
        said["error"]["message"].as_str().unwrap_or("(no message)")
    );
    let pending: tb_control::api::PendingPurchases =
        crate::doctor::get(&format!("{control}/v1/purchases/pending")).await?;
    if pending.payments.is_empty() {
        return Err(anyhow!("clawtip: the daemon shows no pending payment"));
    }
    println!("\n$ tokenbuddyd pay");
    for p in &pending.payments {
        println!("{}", crate::pay::payment_text(p));
    }
    for p in &pending.payments {
        println!(
            "paying {} in the simulated wallet: POST {}",
            p.seller_id, p.pay_url
        );
        let (status, _) = daemon.post_to(&p.pay_url).await?;
        if status != 200 {
            return Err(anyhow!(
                "the simulated wallet refused {}: HTTP {status}",
                p.pay_url
            ));
        }
    }
    // The daemon polls every 2 s at first.
    for _ in 0..300 {
        let left: tb_control::api::PendingPurchases =
            crate::doctor::get(&format!("{control}/v1/purchases/pending")).await?;
        if left.payments.is_empty() {
            println!("the daemon collected the credit; the requests below use it");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!(
        "clawtip: the daemon did not collect the paid credit within 30 s"
    ))
}
