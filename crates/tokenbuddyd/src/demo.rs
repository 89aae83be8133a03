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
use std::process::Stdio;
use std::time::Duration;
use tb_billing::record::usd;
use tb_domain::{PaymentMethod, Protocol};
use tb_sim_market::{
    Marketplace, ModelPrice, RegistryServer, SellerServer, SellerSpec, registry_doc,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long the daemon may take to print its URLs.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

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
    let daemon = DemoDaemon::start(&config)
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
    // The ledger writer commits within 50 ms; wait until all are in.
    let mut calls = Vec::new();
    for _ in 0..200 {
        let page: tb_control::api::Calls =
            crate::doctor::get(&format!("{control}/v1/calls?limit=100")).await?;
        calls = page.calls;
        if calls.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
async fn pay_in_the_wallet(daemon: &DemoDaemon) -> anyhow::Result<()> {
    let control = &daemon.control_url;
    let (status, body) = daemon
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"deepseek-chat","messages":[{"role":"user","content":"hello"}]}"#.into(),
        )
        .await?;
    let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "\nfirst request: HTTP {status}: {}",
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

/// This program's `serve` in a temporary `TB_HOME`, on ephemeral ports.
struct DemoDaemon {
    child: Child,
    proxy_url: String,
    control_url: String,
    token: String,
    client: tb_proxy::UpstreamClient,
    /// Deleted when the demo ends; the daemon is stopped first.
    _home: tempfile::TempDir,
}

impl DemoDaemon {
    /// Writes `config` into a fresh home and starts `serve` there, then
    /// reads the URLs it prints and the access token it writes.
    async fn start(config: &str) -> anyhow::Result<DemoDaemon> {
        let home = tempfile::tempdir().context("creating a temporary home")?;
        std::fs::write(home.path().join("config.toml"), config)
            .context("writing the demo's config")?;
        let mut child = serve_command(home.path())?
            .spawn()
            .context("running this program's `serve`")?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err(anyhow!("no output pipes from the daemon"));
        };
        let logs = tokio::spawn(head_of(stderr));
        let mut lines = BufReader::new(stdout).lines();
        let urls = tokio::time::timeout(STARTUP_LIMIT, read_urls(&mut lines)).await;
        let (control_url, proxy_url) = match urls {
            Ok(Some(urls)) => urls,
            Ok(None) => {
                let status = child.wait().await.ok();
                let logs = logs.await.unwrap_or_default();
                return Err(anyhow!(
                    "the daemon exited ({status:?}) before printing its URLs; it said:\n{logs}"
                ));
            }
            Err(_) => {
                return Err(anyhow!(
                    "the daemon printed no URL within {STARTUP_LIMIT:?}"
                ));
            }
        };
        tokio::spawn(drain(lines));
        let token_path = home.path().join("data").join("access-token");
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim()
            .to_string();
        Ok(DemoDaemon {
            child,
            proxy_url,
            control_url,
            token,
            client: tb_proxy::build_client(None, &tb_proxy::ProxySettings::default())?,
            _home: home,
        })
    }

    /// POSTs a JSON body to the proxy with the access token and reads the
    /// whole answer (whatever its status: the call lines show it).
    async fn post_json(&self, path: &str, body: String) -> anyhow::Result<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let req = http::Request::post(format!("{}{path}", self.proxy_url))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to POST {path}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// An empty `POST` to `url` (the simulated wallet's pay link).
    async fn post_to(&self, url: &str) -> anyhow::Result<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let req = http::Request::post(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .with_context(|| format!("{url} is not a URL"))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Stops the daemon. Its home is thrown away, so there is nothing to
    /// drain: it is killed (after Ctrl-C in a terminal it is already
    /// stopping, having had the same SIGINT).
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `<this program> serve --port 0 --control-port 0` with `TB_HOME=home`
/// and none of the caller's other `TB_*` settings (the demo's config is the
/// whole story); stdout piped for the URLs, stderr piped so its logs
/// (failovers are warnings) do not interleave with the demo's lines.
fn serve_command(home: &std::path::Path) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TB_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TB_HOME", home)
        .args(["serve", "--port", "0", "--control-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Reads `serve`'s start-up lines until `proxy: URL` (printed after
/// `control: URL`): `(control, proxy)`, or `None` if the output ended first.
async fn read_urls<R: AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> Option<(String, String)> {
    let mut control = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("control: ") {
            control = Some(url.trim().to_string());
        }
        if let Some(url) = line.strip_prefix("proxy: ") {
            return Some((control?, url.trim().to_string()));
        }
    }
    None
}

/// How much of the daemon's stderr is kept to explain a failed start.
const LOG_HEAD: usize = 16 * 1024;

/// Reads `out` to its end (so the daemon never blocks on a full pipe) and
/// returns its first [`LOG_HEAD`] bytes as text.
async fn head_of<R: AsyncRead + Unpin>(mut out: R) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = out.read(&mut buf).await {
        let room = LOG_HEAD.saturating_sub(head.len());
        head.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Keeps reading the daemon's stdout so it never blocks on a full pipe.
async fn drain(mut lines: Lines<BufReader<ChildStdout>>) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn urls_of(output: &str) -> Option<(String, String)> {
        read_urls(&mut BufReader::new(output.as_bytes()).lines()).await
    }

    #[tokio::test]
    async fn read_urls_takes_control_then_proxy() {
        let out = "control: http://127.0.0.1:1\nproxy: http://127.0.0.1:2 \naccess token: x\n";
        assert_eq!(
            urls_of(out).await,
            Some(("http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()))
        );
    }

    #[tokio::test]
    async fn read_urls_needs_both_lines() {
        assert_eq!(urls_of("proxy: http://127.0.0.1:2\n").await, None);
        assert_eq!(urls_of("control: http://127.0.0.1:1\n").await, None);
        assert_eq!(urls_of("").await, None);
    }

    #[tokio::test]
    async fn head_of_reads_to_the_end_and_keeps_the_head() {
        let long = "e".repeat(LOG_HEAD + 10_000);
        let head = head_of(long.as_bytes()).await;
        assert_eq!(head.len(), LOG_HEAD);
        assert_eq!(head_of(&b"config error"[..]).await, "config error");
    }

    #[test]
    fn serve_command_uses_only_the_demo_home() {
        let home = std::path::Path::new("/tmp/tb-demo-home");
        let Ok(cmd) = serve_command(home) else {
            panic!("no serve command");
        };
        for (key, value) in cmd.as_std().get_envs() {
            if key == "TB_HOME" {
                assert_eq!(value, Some(home.as_os_str()));
            } else if key.to_string_lossy().starts_with("TB_") {
                assert_eq!(value, None, "{key:?} is passed on");
            }
        }
        assert!(cmd.as_std().get_envs().any(|(k, _)| k == "TB_HOME"));
        let args: Vec<_> = cmd.as_std().get_args().collect();
        assert_eq!(args, ["serve", "--port", "0", "--control-port", "0"]);
    }
}
