//! `doctor`: checks with a verdict and a fix hint each. The running daemon
//! answers `/v1/doctor` with live state (circuits, budget, registry); the
//! CLI asks it, or runs the checks that need no daemon when none runs.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tb_control::api::{
    Budget, ExportSink, ExportState, InstallClient, LedgerStatus, RegistryStatus, Verdict,
};
pub(crate) use tb_control::api::{Check, DoctorReport};

/// `daemon.json`: how `status`, `doctor`, tests and tools find the running
/// daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DaemonFile {
    pub pid: u32,
    pub proxy_url: String,
    pub control_url: String,
    pub started_at: String,
}

/// The registry's verdict from the daemon's status.
pub(crate) fn registry_check(reg: &RegistryStatus) -> Check {
    let err = reg.last_error.as_deref().unwrap_or("");
    if reg.version.is_empty() && reg.sellers == 0 && !err.is_empty() {
        Check::fail(
            "registry",
            format!("down and no saved document: {err}"),
            "check registry.url and that the registry is reachable",
        )
    } else if reg.stale {
        Check::warn(
            "registry",
            format!("routing on the last good document ({err})"),
            "the registry is refetched every registry.refresh_secs",
        )
    } else {
        Check::pass(
            "registry",
            format!("version {}, {} sellers", reg.version, reg.sellers),
        )
    }
}

/// The purchase budget's verdict: spent means sellers needing credit are skipped.
pub(crate) fn budget_check(budget: &Budget) -> Check {
    if budget.left_usd_micros == 0 {
        Check::fail(
            "budget",
            "the session purchase budget is spent: sellers that need credit are skipped",
            "raise purchase.session_budget_usd_micros or restart the daemon",
        )
    } else {
        Check::pass(
            "budget",
            format!("{} USD micros left to buy credit", budget.left_usd_micros),
        )
    }
}

/// A detected client's verdict (`None` for a client that is not installed).
pub(crate) fn client_check(c: &InstallClient) -> Option<Check> {
    let name = format!("client {}", c.id);
    if c.configured {
        Some(Check::pass(name, "points at tokenbuddy"))
    } else if c.detected {
        Some(Check::warn(
            name,
            "installed but points elsewhere",
            format!("run `tokenbuddyd install {}`", c.id),
        ))
    } else {
        None
    }
}

/// The ledger writer's verdicts: failing commits, dropped records.
pub(crate) fn ledger_checks(ledger: &LedgerStatus) -> Vec<Check> {
    let mut checks = vec![match &ledger.error {
        Some(error) => Check::fail(
            "ledger",
            format!(
                "call records are not being stored: {error} (failing for {} s; {} records waiting in memory)",
                ledger.failing_for_ms.unwrap_or(0) / 1000,
                ledger.pending,
            ),
            format!(
                "free disk space or make the {} ledger writable; waiting records are written when it recovers (up to ledger.queue_capacity, then dropped)",
                ledger.backend
            ),
        ),
        None => Check::pass(
            "ledger",
            format!(
                "{} writable ({} records waiting)",
                ledger.backend, ledger.pending
            ),
        ),
    }];
    if ledger.dropped > 0 {
        checks.push(Check::warn(
            "ledger",
            format!("{} call records were dropped (queue full)", ledger.dropped),
            "raise ledger.queue_capacity or check the ledger's database",
        ));
    }
    checks
}

/// An export sink's verdict: healthy (or idle) passes, failing warns (the
/// records wait and are retried), dropping fails (records are lost).
pub(crate) fn export_check(sink: &ExportSink) -> Check {
    let name = format!("export {}", sink.sink);
    let counts = format!(
        "{} sent, {} dropped, {} rejected, queue {}/{}",
        sink.sent, sink.dropped, sink.rejected, sink.queue_depth, sink.queue_capacity
    );
    let error = sink.last_error.as_deref().unwrap_or("-");
    let since = sink.last_success_at_ms.map_or_else(
        || "never delivered".to_owned(),
        |at| format!("last success {} s ago", (unix_ms() - at).max(0) / 1000),
    );
    match sink.state {
        ExportState::Dropping => Check::fail(
            name,
            format!(
                "dropping: the queue is full and new records are lost ({counts}; {since}; last error: {error})"
            ),
            "check the receiver at the target; raise export.http.queue_capacity to ride out longer outages",
        ),
        ExportState::Failing => Check::warn(
            name,
            format!(
                "failing: {error} ({counts}; {since}); records wait and are retried with backoff"
            ),
            format!("check that {} is up and accepts the batches", sink.target),
        ),
        ExportState::Healthy if sink.dropped > 0 => Check::warn(
            name,
            format!(
                "healthy to {}, but {} records were dropped earlier ({counts}; {since})",
                sink.target, sink.dropped
            ),
            "raise export.http.queue_capacity if the receiver is down for long",
        ),
        ExportState::Healthy => Check::pass(
            name,
            format!("healthy: delivering to {} ({counts}; {since})", sink.target),
        ),
        ExportState::Idle => Check::pass(
            name,
            format!("configured: {} (nothing sent yet)", sink.target),
        ),
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The clock is plausible (certificates, token expiry and the ledger need it).
pub(crate) fn clock_check() -> Check {
    // 2024-01-01T00:00:00Z.
    let floor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    if SystemTime::now() > floor {
        Check::pass("clock", "system time is plausible")
    } else {
        Check::fail(
            "clock",
            "system time is before 2024",
            "set the system clock (NTP); token expiry and TLS depend on it",
        )
    }
}

/// Can a TCP connection be opened to the host of `url` (http/https)?
pub(crate) async fn reachable(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
        Err(_) => Err(format!("no answer from {host}:{port} within 3 s")),
    }
}

/// Is this address free to listen on?
pub(crate) fn port_check(name: &str, addr: SocketAddr, key: &str) -> Check {
    if addr.port() == 0 {
        return Check::pass(name, "an ephemeral port is picked at start");
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Check::pass(name, format!("{addr} is free")),
        Err(e) => Check::fail(
            name,
            format!("{addr} is in use ({e})"),
            format!("stop what listens there or set {key} to another port"),
        ),
    }
}

/// Prints the report; returns whether everything passed or only warned.
pub(crate) fn print(report: &DoctorReport) -> bool {
    for c in &report.checks {
        let mark = match c.verdict {
            Verdict::Pass => "✓",
            Verdict::Warn => "!",
            Verdict::Fail => "✗",
        };
        let hint = if c.hint.is_empty() {
            String::new()
        } else {
            format!(" — {}", c.hint)
        };
        println!("{mark} {}: {}{hint}", c.name, c.detail);
    }
    report.ok
}

/// GETs a control-plane document from the running daemon, as its type: a
/// document that does not match (another version, an error) is an error,
/// never a default.
pub(crate) async fn get<T: DeserializeOwned>(url: &str) -> anyhow::Result<T> {
    use http_body_util::BodyExt;
    // The local daemon: loopback, never proxied.
    let client = tb_proxy::build_client(None, &tb_proxy::ProxySettings::default())?;
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
    *req.uri_mut() = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .with_context(|| format!("no answer from {url} within 30 s"))??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let why = serde_json::from_slice::<tb_control::api::ErrorBody>(&body).map_or_else(
            |_| String::from_utf8_lossy(&body).into_owned(),
            |e| e.error.message,
        );
        bail!("{url} answered {status}: {why}");
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("{url} answered a document this version does not understand"))
}

/// The running daemon's control URL, from `daemon.json`.
pub(crate) fn running_control_url(data_dir: &std::path::Path) -> Option<String> {
    let file: DaemonFile =
        serde_json::from_slice(&std::fs::read(data_dir.join("daemon.json")).ok()?).ok()?;
    Some(file.control_url)
}

/// The `network proxy` check: which proxy outbound calls use (credentials
/// masked) or why the setting is unusable. Returns the text the registry
/// check appends (" via proxy http://proxy:3128/", credentials never
/// shown, or "") — the registry
/// fetch itself goes through the proxy, so it is the CONNECT test.
fn proxy_check(
    config: &tb_config::Config,
    env: &dyn Fn(&str) -> Option<String>,
    checks: &mut Vec<Check>,
) -> String {
    let settings = match tb_proxy::proxy_settings(config, env) {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::fail(
                "network proxy",
                e.to_string(),
                "fix network.proxy or HTTPS_PROXY / HTTP_PROXY: http://[user:pass@]host:port",
            ));
            return String::new();
        }
    };
    let https = settings.all.as_ref().or(settings.https.as_ref());
    let http = settings.all.as_ref().or(settings.http.as_ref());
    let show =
        |p: Option<&String>| p.map_or("direct".to_owned(), |p| tb_proxy::mask_credentials(p));
    let no_proxy = settings.no_proxy.as_deref().unwrap_or("");
    checks.push(Check::pass(
        "network proxy",
        if settings.is_empty() {
            "none (direct connections)".to_owned()
        } else {
            format!(
                "https: {}, http: {}, no_proxy: {:?} (loopback always direct)",
                show(https),
                show(http),
                no_proxy
            )
        },
    ));
    let registry_proxied = config.registry.url.as_ref().and_then(|u| {
        let uri: http::Uri = u.parse().ok()?;
        tb_proxy::route_of(&settings, &uri)
    });
    registry_proxied.map_or_else(String::new, |p| format!(" via proxy {p}"))
}

/// The checks that need no running daemon.
pub(crate) async fn offline_checks(loaded: &tb_config::LoadedConfig) -> Vec<Check> {
    let config = &loaded.config;
    let mut checks = vec![Check::pass(
        "config",
        if loaded.file_found {
            format!("valid ({})", loaded.paths.config_file.display())
        } else {
            "valid (defaults, no file)".into()
        },
    )];
    checks.push(port_check(
        "proxy port",
        SocketAddr::new(config.proxy.bind, config.proxy.port),
        "proxy.port",
    ));
    checks.push(port_check(
        "control port",
        SocketAddr::new(config.control.bind, config.control.port),
        "control.port",
    ));
    let env = |var: &str| std::env::var(var).ok();
    let via = proxy_check(config, &env, &mut checks);
    if let Some(url) = &config.registry.url {
        let fetched = match tb_proxy::outbound_client(config, &env) {
            Ok(client) => {
                tb_registry::RegistryFetcher::new(url.clone(), config.registry.max_bytes, client)
                    .fetch()
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match fetched {
            Ok(f) => checks.push(Check::pass(
                "registry",
                format!(
                    "version {}, {} sellers{via}",
                    f.doc.version,
                    f.doc.sellers.len()
                ),
            )),
            Err(e) => checks.push(Check::fail(
                "registry",
                format!("{url}{via}: {e}"),
                "check registry.url (and the network proxy); a daemon routes on its last saved document while it is down",
            )),
        }
    }
    for p in &config.providers {
        match reachable(&p.base_url).await {
            Ok(()) => checks.push(Check::pass(
                format!("provider {}", p.id),
                format!("{} reachable", p.base_url),
            )),
            Err(e) => checks.push(Check::fail(
                format!("provider {}", p.id),
                e,
                "check base_url and that the provider is up",
            )),
        }
    }
    for (name, target) in [
        ("export http", config.export.http.url.as_deref()),
        ("export otlp", config.export.otlp.endpoint.as_deref()),
    ] {
        if let Some(target) = target {
            checks.push(Check::pass(
                name,
                format!(
                    "configured: {} (the running daemon reports delivery)",
                    target.split('?').next().unwrap_or("")
                ),
            ));
        }
    }
    checks.push(clock_check());
    checks
}
