//! The dashboard in a real browser: headless Chromium (Debian's package)
//! driven by playwright-core (npm), both installed by this test when
//! missing, against a daemon that served marketplace traffic. The browser
//! checks calls, costs, savings, circuit states and credit, clicks Install
//! and Undo for a client in a temporary home, follows the trends, filters,
//! a call's attempt chain and a live update, and saves screenshots under
//! `target/dashboard-screenshots/` for a person to look at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;
use tb_test_support::daemon::{Daemon, body_bytes};
use tb_test_support::marketplace::{RegistryServer, SellerServer, SellerSpec, registry_doc};

const PLAYWRIGHT: &str = "playwright-core@1.65.1";

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Chromium from Debian and playwright-core from npm, installed once.
fn browser_setup() -> (PathBuf, PathBuf) {
    // The browser tests run in parallel: one installs, the others wait
    // (two concurrent `npm install`s into one prefix fail with ENOTEMPTY).
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SETUP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        run(Command::new("apt-get").arg("update"), "apt-get update");
        run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install chromium",
        );
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("playwright");
    if !dir.join("node_modules/playwright-core").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(PLAYWRIGHT),
            "npm install playwright-core",
        );
    }
    // ESM resolves packages next to the script: run a copy from there.
    let script = dir.join("dashboard_check.mjs");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard_check.mjs"),
        &script,
    )
    .unwrap();
    (chromium, script)
}

/// `target/dashboard-screenshots/`, where every browser test saves what it saw.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two sellers of gpt-4o in auto mode: `s-bad` (the biggest discount, so
/// the `discount` scorer tries it first until its circuit opens) answers
/// every request 503, `s-good` serves `good_models`. Returns the servers
/// (kept alive by the caller) and the daemon's config.
async fn failover_market(
    good_models: &[&str],
) -> ((SellerServer, SellerServer, RegistryServer), String) {
    let bad = SellerServer::start(
        SellerSpec::new("s-bad")
            .models(["gpt-4o"])
            .discount_ratio(0.5)
            .fail_every(1, 503),
    )
    .await
    .unwrap();
    let good = SellerServer::start(SellerSpec::new("s-good").models(good_models.iter().copied()))
        .await
        .unwrap();
    let registry = RegistryServer::start(registry_doc(&[&bad, &good], Some("s-bad")))
        .await
        .unwrap();
    let config = format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\n[routing]\nretry_same_on_5xx = false\nsticky_reset_ms = 0\nscorer = \"discount\"\n",
        registry.url()
    );
    ((bad, good, registry), config)
}

/// Runs the browser check (`tests/browser/dashboard_check.mjs`) against the
/// daemon's dashboard with `expect`; saves the full page as `<shot>.png` in
/// [`screenshot_dir`], and one PNG per step there too when `steps`.
async fn check_in_browser(
    (chromium, script): &(PathBuf, PathBuf),
    daemon: &Daemon,
    expect: &serde_json::Value,
    shot: &str,
    steps: bool,
) {
    let dir = screenshot_dir();
    let png = dir.join(format!("{shot}.png"));
    let mut node = tokio::process::Command::new("node");
    node.arg(script)
        .current_dir(script.parent().unwrap())
        .env(
            "DASHBOARD_URL",
            format!("{}/", daemon.control_url.clone().unwrap()),
        )
        .env("ACCESS_TOKEN", &daemon.token)
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOT", &png)
        .env("CHROMIUM", chromium);
    if steps {
        node.env("SCREENSHOT_DIR", &dir);
    }
    let out = node.output().await.unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "the screenshot is saved at {}",
        png.display()
    );
}

fn usd(micros: i64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[tokio::test]
async fn the_dashboard_shows_the_daemon_and_installs_a_client() {
    let browser = tokio::task::spawn_blocking(browser_setup).await.unwrap();

    let (_market, config) = failover_market(&["gpt-4o"]).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".codex")).unwrap();
    let home_str = home.path().to_str().unwrap().to_string();
    let daemon = Daemon::start(bin(), &config, &[("HOME", &home_str)])
        .await
        .unwrap();
    for _ in 0..4 {
        let resp = daemon
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[]}"#,
            )
            .await;
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    // The ledger writer commits within 50 ms; wait until it has.
    let mut usage = serde_json::Value::Null;
    for _ in 0..100 {
        let out = tb_test_support::daemon::command(bin(), daemon.home())
            .args(["calls", "--json"])
            .output()
            .await
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).lines().count() == 4 {
            let out = tb_test_support::daemon::command(bin(), daemon.home())
                .args(["usage", "--since", "7d", "--json"])
                .output()
                .await
                .unwrap();
            usage = serde_json::from_slice(&out.stdout).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let totals = &usage["totals"];
    assert_eq!(totals["calls"], 4, "{usage}");
    let credit = get_json(&daemon, "/v1/credit").await;
    let bad = credit["sellers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seller_id"] == "s-bad")
        .unwrap();
    let wasted = bad["credit_wasted_micros"].as_i64().unwrap();
    assert_eq!(
        wasted,
        bad["credit_bought_micros"].as_i64().unwrap(),
        "{credit}"
    );
    assert!(wasted > 0, "{credit}");
    let wasted_bad = format!("{}.{:06}", wasted / 1_000_000, wasted % 1_000_000);
    // s-good publishes no manifest and bills its own list price (the
    // simulator's $10 / $30 per 1M), about 3× the table's gpt-4o price
    // the daemon estimates with: the audit flags it; s-bad never settled.
    let audit = get_json(&daemon, "/v1/sellers/audit").await;
    assert_eq!(audit["flagged"][0]["seller_id"], "s-good", "{audit}");
    assert_eq!(audit["flagged"][0]["kind"], "over_billing", "{audit}");
    assert_eq!(audit["flagged"].as_array().unwrap().len(), 1, "{audit}");
    let sellers = get_json(&daemon, "/v1/sellers").await;
    assert_eq!(sellers["sellers"][0]["seller_id"], "s-bad", "{sellers}");
    assert_eq!(
        sellers["sellers"][0]["wasted_credit_micros"], wasted,
        "{sellers}"
    );
    assert_eq!(
        sellers["sellers"][0]["failure_share_ppm"], 1_000_000,
        "{sellers}"
    );
    let expect = json!({
        "calls": 4,
        "spend": usd(totals["cost_usd_micros"].as_i64().unwrap()),
        "saved": usd(totals["saved_usd_micros"].as_i64().unwrap()),
        "circuits": {"s-bad": "open", "s-good": "closed"},
        "chain": "s-bad→s-good",
        "model": "gpt-4o",
        "sellers": ["s-good"],
        // s-bad was bought from, then failed over at once: all its credit
        // is wasted.
        "wasted": {"s-bad": wasted_bad, "s-good": "0.000000", "*": wasted_bad},
        "audited": {"s-good": "over_billing", "s-bad": null},
        "audit_wasted": {"s-bad": wasted_bad, "s-good": "0.000000"},
        "client": "codex",
        "doctor": true,
    });
    check_in_browser(&browser, &daemon, &expect, "dashboard", false).await;
    // The Install click wrote Codex's config, and Undo took it back out.
    let codex = home.path().join(".codex/config.toml");
    assert!(
        !codex.exists()
            || !std::fs::read_to_string(&codex)
                .unwrap()
                .contains("tokenbuddy")
    );
}

/// A pending clawtip payment is shown on the dashboard: the seller, the pay
/// link and its QR code drawn from the module rows (no markup parsed; the
/// page's CSP holds).
#[tokio::test]
async fn the_dashboard_shows_a_pending_wallet_payment_with_its_qr_code() {
    let browser = tokio::task::spawn_blocking(browser_setup).await.unwrap();
    let claw = SellerServer::start(
        SellerSpec::new("s-claw")
            .models(["gpt-4o"])
            .payment_methods([tb_domain::PaymentMethod::Clawtip]),
    )
    .await
    .unwrap();
    let registry = RegistryServer::start(registry_doc(&[&claw], Some("s-claw")))
        .await
        .unwrap();
    let config = format!(
        "[provider]\nmode = \"auto\"\n[provider.auto]\npayment_method = \"clawtip\"\n[registry]\nurl = \"{}\"\n",
        registry.url()
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
    assert_eq!(resp.status(), 402);
    body_bytes(resp).await;
    let pending = get_json(&daemon, "/v1/purchases/pending").await;
    let pay_url = pending["payments"][0]["pay_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let expect = json!({"payments": {"s-claw": pay_url}});
    check_in_browser(&browser, &daemon, &expect, "dashboard-payment", false).await;
}

/// The dashboard views of issue 17: per-upstream trends for real traffic
/// (a failover from a failing seller to a good one), a filter that narrows
/// the calls table and the trends, the attempt chain of the failed-over
/// call opened from its row with the keyboard, and a new call shown live
/// without a reload. Screenshots of each step are saved.
#[tokio::test]
async fn the_dashboard_charts_filters_and_opens_a_failed_over_call_live() {
    let browser = tokio::task::spawn_blocking(browser_setup).await.unwrap();
    let (_market, config) = failover_market(&["gpt-4o", "gpt-4o-mini"]).await;
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let bodies = [
        r#"{"model":"gpt-4o","messages":[]}"#,
        r#"{"model":"gpt-4o","messages":[]}"#,
        r#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#,
    ];
    for body in bodies {
        post_ok(&daemon, body).await;
    }
    let calls = wait_for_calls(&daemon, bodies.len()).await;
    let recorded = calls["calls"].as_array().unwrap();
    let chains: Vec<Vec<&str>> = recorded
        .iter()
        .map(|c| {
            c["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["upstream"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert!(chains.contains(&vec!["s-bad", "s-good"]), "{chains:?}");
    let dir = screenshot_dir();
    let expect = json!({
        "calls": bodies.len(),
        "trends": {"upstreams": ["s-bad", "s-good"], "answered": ["s-good"], "failover": "s-bad"},
        "filter": {"name": "model", "value": "gpt-4o-mini", "rows": 1},
        "detail": {"chain": ["s-bad", "s-good"], "outcomes": ["server_error", "ok"]},
        "live": {
            "proxy_url": daemon.proxy_url,
            "token": daemon.token,
            "body": {"model": "gpt-4o-mini", "messages": []},
        },
    });
    check_in_browser(&browser, &daemon, &expect, "dashboard-trends", true).await;
    for step in ["overview", "filtered", "detail", "live"] {
        let png = dir.join(format!("{step}.png"));
        assert!(
            std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 10_000,
            "the {step} screenshot is saved at {}",
            png.display()
        );
    }
    // The live call reached the ledger and the trends.
    assert_eq!(series_calls(&daemon, "").await, bodies.len() as u64 + 1);
}

/// The calls of the last hour's trends, with `filter` (`&name=value…`).
async fn series_calls(daemon: &Daemon, filter: &str) -> u64 {
    let path = format!("/v1/series?since=1h&bucket=minute{filter}");
    let series = get_json(daemon, &path).await;
    series["spend"]
        .as_array()
        .unwrap_or_else(|| panic!("{series}"))
        .iter()
        .map(|p| p["calls"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_dashboard_shows_what_the_probe_found_and_why_routing_pushes_back() {
    use tb_test_support::{MockUpstream, ProviderSim};
    let browser = tokio::task::spawn_blocking(browser_setup).await.unwrap();
    // `liar` ignores max_tokens and over-counts prompt tokens by 30 %.
    let liar = MockUpstream::start().await.unwrap();
    liar.simulate(ProviderSim {
        honours_max_tokens: false,
        prompt_tokens_pct: 130,
        calls_tools: true,
    });
    let honest = MockUpstream::start().await.unwrap();
    honest.simulate(ProviderSim::honest());
    let provider = |id: &str, mock: &MockUpstream| {
        format!(
            "[[providers]]\nid = \"{id}\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-{id}\"\nmodels = [\"gpt-4o-mini\"]\nprotocols = [\"chat_completions\"]\n",
            mock.base_url()
        )
    };
    let config = format!(
        "{}\n{}",
        provider("liar", &liar),
        provider("honest", &honest)
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    // The probe tells the running daemon (POST /v1/probe/reload).
    let out = tb_test_support::daemon::command(bin(), daemon.home())
        .args(["probe", "--yes"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expect = json!({
        "trust": {
            "upstream": "liar",
            "verdicts": {"plain": "pass", "tool_call": "pass", "max_tokens": "fail", "prompt_tokens": "fail"},
            "texts": {"prompt_tokens": "✗ +30 %"},
            "routing": "pushed back",
            "trusted": "honest",
        },
    });
    check_in_browser(&browser, &daemon, &expect, "dashboard-trust", true).await;
}

#[tokio::test]
async fn the_dashboard_shows_spend_per_member_and_filters_by_member() {
    let browser = tokio::task::spawn_blocking(browser_setup).await.unwrap();
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let config = format!(
        "{}prices = {{ gpt-test = {{ input = 1000.0, output = 1000.0 }} }}\n",
        all_protocols_provider("oa", &upstream.base_url(), "gpt-test")
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let chat = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
    for (member, calls) in [("ana", 2), ("bo", 1)] {
        let auth = format!("Bearer {}", member_key(&daemon, member, &[]).await);
        for _ in 0..calls {
            let resp = daemon
                .request(
                    http::Method::POST,
                    "/v1/chat/completions",
                    &[("authorization", &auth)],
                    chat,
                )
                .await;
            assert_eq!(resp.status(), 200);
            body_bytes(resp).await;
        }
    }
    post_ok(&daemon, chat).await;
    wait_for_calls(&daemon, 4).await;
    let usage = get_json(&daemon, "/v1/usage?by=member&since=7d").await;
    let row = |key: &str| {
        usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no usage row {key:?}: {usage}"))
    };
    let mut members = serde_json::Map::new();
    for (key, shown, calls) in [("ana", "ana", 2), ("bo", "bo", 1), ("", "-", 1)] {
        let r = row(key);
        assert_eq!(r["calls"], calls);
        let spend = r["cost_usd_micros"].as_i64().unwrap();
        assert!(spend > 0, "{r}");
        members.insert(
            shown.to_string(),
            json!({"calls": calls, "spend": usd(spend)}),
        );
    }
    // The API filters by member, the access token's calls as `-`.
    let ana = get_json(&daemon, "/v1/calls?member=ana").await;
    assert_eq!(ana["calls"].as_array().unwrap().len(), 2);
    let token = get_json(&daemon, "/v1/calls?member=-").await;
    assert_eq!(token["calls"].as_array().unwrap().len(), 1);
    assert_eq!(series_calls(&daemon, "&member=bo").await, 1);

    // The recent calls carry the member, shown in their own column.
    let calls = get_json(&daemon, "/v1/calls").await;
    let of = |m: Option<&str>| {
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["member"].as_str() == m)
            .count()
    };
    assert_eq!((of(Some("ana")), of(Some("bo")), of(None)), (2, 1, 1));

    let expect = json!({
        "calls": 4,
        "members": members,
        "call_members": {
            "ana": {"rows": 2, "text": "ana"},
            "bo": {"rows": 1, "text": "bo"},
            "-": {"rows": 1, "text": "Access token"},
        },
        "filter": {"name": "member", "value": "ana", "rows": 2},
    });
    check_in_browser(&browser, &daemon, &expect, "dashboard-members", false).await;
}
