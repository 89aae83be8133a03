//! `doctor`: checks with a verdict and a fix hint each. The running daemon
//! answers `/v1/doctor` with live state (circuits, budget, registry); the
//! CLI asks it, or runs the checks that need no daemon when none runs.
//! `setup` holds the checks that find a broken setup (nothing to serve,
//! missing keys, stale clients, a stopped daemon, a failing service).

mod setup;

pub(crate) use setup::{daemon_down_check, focus_check, key_checks, serving_check};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tb_control::api::{
    Budget, ExportSink, ExportState, LedgerStatus, RegistryStatus, TeamStatus, Verdict,
};
pub(crate) use tb_control::api::{Check, DoctorReport};
use tb_installer::{Installer, StatusRow};

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

/// Team mode: where the key came from and the team's shared purchase
/// budget — a failure when it is spent (no seller credit is bought for
/// anyone), a warning when its figures could not be read.
pub(crate) fn team_check(team: &TeamStatus) -> Check {
    let on = format!(
        "team mode on: seller credit and the purchase budget shared through PostgreSQL (key from {}, purchase lease {} ms)",
        team.key_source, team.lease_ms
    );
    match (&team.budget, &team.budget_error) {
        (Some(b), _) if b.left_usd_micros == 0 => Check::fail(
            "team",
            format!(
                "{on}; the team budget is spent: {}",
                crate::team_budget::figures_text(b)
            ),
            "start a new budget period with `tokenbuddyd team budget reset --yes`, or raise purchase.session_budget_usd_micros",
        ),
        (Some(b), _) => Check::pass(
            "team",
            format!("{on}; team budget: {}", crate::team_budget::figures_text(b)),
        ),
        (None, error) => Check::warn(
            "team",
            format!(
                "{on}; the team budget could not be read: {}",
                error.as_deref().unwrap_or("no answer")
            ),
            "check that PostgreSQL (ledger.url) answers; `tokenbuddyd team budget show` reads it directly",
        ),
    }
}

/// The clients' verdicts: where each configured client points compared
/// with the daemon at `proxy_url` (`None`: the port is picked at start, so
/// only the token is compared) and the current access token; a detected
/// client that does not point at tokenbuddy is a warning.
pub(crate) fn client_checks(
    installer: &Installer,
    proxy_url: &str,
    compare_url: bool,
    token: Option<&str>,
) -> Vec<Check> {
    let pointers = installer.pointers();
    let url_of = |c: &tb_installer::ClientPointer| {
        if compare_url {
            proxy_url.to_owned()
        } else {
            c.pointer.base_url.clone()
        }
    };
    let mut checks: Vec<Check> = pointers
        .iter()
        .flat_map(|c| setup::pointer_checks(std::slice::from_ref(c), &url_of(c), token))
        .collect();
    for row in installer.status(proxy_url) {
        let named = format!("client {}", row.client);
        if !checks.iter().any(|c| c.name == named) {
            checks.extend(client_check(&row));
        }
    }
    checks
}

/// A detected client that points elsewhere (`None` for one that is not
/// installed, or that is configured).
fn client_check(c: &StatusRow) -> Option<Check> {
    (c.detected && !c.configured).then(|| {
        Check::warn(
            format!("client {}", c.client),
            "installed but points elsewhere",
            format!("run `tokenbuddyd install {}`", c.client),
        )
    })
}

/// The service's verdict, when one is installed: failing is a failure,
/// stopped a warning.
pub(crate) fn service_check(data_dir: &std::path::Path) -> Option<Check> {
    use crate::service::Activity;
    let (unit, judged) = crate::service::installed_state(data_dir)?;
    let unit = unit.display();
    Some(match judged.activity {
        Activity::Running => {
            Check::pass("service", format!("{unit}: running ({})", judged.summary))
        }
        Activity::Stopped => Check::warn(
            "service",
            format!(
                "{unit} is installed but the daemon is stopped ({})",
                judged.summary
            ),
            "start it: `systemctl --user start tokenbuddyd` (launchd: `launchctl kickstart gui/$(id -u)/dev.tokenbuddy.tokenbuddyd`)",
        ),
        Activity::Failed => Check::fail(
            "service",
            format!("{unit} is installed but failing: {}", judged.summary),
            "read `tokenbuddyd service logs`, fix the cause, then `tokenbuddyd service install` starts it again",
        ),
    })
}

/// Why the daemon is not running (`None`: it runs and its proxy answers).
pub(crate) fn daemon_down(data_dir: &std::path::Path) -> Option<String> {
    use crate::service::DaemonSeen;
    match crate::service::daemon_seen(data_dir) {
        DaemonSeen::NoFile => Some(format!("no {}", data_dir.join("daemon.json").display())),
        DaemonSeen::Dead { pid } => Some(format!("daemon.json names pid {pid}, which is gone")),
        DaemonSeen::Alive {
            proxy_url,
            answering: false,
            ..
        } => Some(format!("{proxy_url} does not answer")),
        DaemonSeen::Alive { .. } => None,
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

/// Whether each manual provider's `base_url` accepts a connection.
pub(crate) async fn provider_checks(providers: &[tb_config::ProviderConfig]) -> Vec<Check> {
    let mut checks = Vec::with_capacity(providers.len());
    for p in providers {
        let name = format!("provider {}", p.id);
        checks.push(match reachable(&p.base_url).await {
            Ok(()) => Check::pass(name, format!("{} reachable", p.base_url)),
            Err(e) => Check::fail(name, e, "check base_url and that the provider is up"),
        });
    }
    checks
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

/// Prints the report (one line per check, or the JSON document with
/// `json`); returns whether everything passed or only warned.
pub(crate) fn print(report: &DoctorReport, json: bool) -> bool {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("tokenbuddyd: encoding the report: {e}"),
        }
        return report.ok;
    }
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

/// POSTs `{}` to a mutating control-plane endpoint of the running daemon
/// with the access token of `data_dir`; any 2xx is success.
pub(crate) async fn post_authorized(data_dir: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let (token, _) =
        tb_proxy::AccessToken::load_or_create(data_dir).context("reading the access token")?;
    let client = tb_proxy::build_client(None, &tb_proxy::ProxySettings::default())?;
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .context("the access token is not a header value")?;
    auth.set_sensitive(true);
    req.headers_mut().insert(http::header::AUTHORIZATION, auth);
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .with_context(|| format!("no answer from {url} within 30 s"))??;
    let status = resp.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
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

/// The registry's verdict with no daemon (a fetch, through the network
/// proxy when one applies) and the models its sellers offer.
async fn fetch_registry(
    config: &tb_config::Config,
    env: &dyn Fn(&str) -> Option<String>,
    url: &str,
    via: &str,
) -> (Check, Option<Vec<String>>) {
    let fetched = match tb_proxy::outbound_client(config, env) {
        Ok(client) => {
            tb_registry::RegistryFetcher::new(url.to_owned(), config.registry.max_bytes, client)
                .fetch()
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match fetched {
        Ok(f) => (
            Check::pass(
                "registry",
                format!(
                    "version {}, {} sellers{via}",
                    f.doc.version,
                    f.doc.sellers.len()
                ),
            ),
            Some(
                f.doc
                    .sellers
                    .iter()
                    .flat_map(|s| s.models.clone())
                    .collect(),
            ),
        ),
        Err(e) => (
            Check::fail(
                "registry",
                format!("{url}{via}: {e}"),
                "check registry.url (and the network proxy); a daemon routes on its last saved document while it is down",
            ),
            None,
        ),
    }
}

/// The checks that need no running daemon.
pub(crate) async fn offline_checks(loaded: &tb_config::LoadedConfig) -> Vec<Check> {
    let config = &loaded.config;
    let data_dir = &loaded.paths.data_dir;
    let mut checks = vec![Check::pass(
        "config",
        if loaded.file_found {
            format!("valid ({})", loaded.paths.config_file.display())
        } else {
            "valid (defaults, no file)".into()
        },
    )];
    checks.push(serving_check(config));
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
    let service = crate::service::env_file_if_installed(data_dir);
    checks.extend(key_checks(config, &env, service.as_deref()));
    let via = proxy_check(config, &env, &mut checks);
    let market = config.provider.mode != tb_config::ProviderMode::Manual;
    let mut served: Option<Vec<String>> = match config.provider.mode {
        tb_config::ProviderMode::Auto => Some(Vec::new()),
        _ => Some(
            config
                .providers
                .iter()
                .flat_map(|p| p.models.clone())
                .collect(),
        ),
    };
    match &config.registry.url {
        Some(url) => {
            let (check, models) = fetch_registry(config, &env, url, &via).await;
            checks.push(check);
            match (market, models, served.as_mut()) {
                (false, _, _) => {}
                (true, Some(models), Some(s)) => s.extend(models),
                (true, _, _) => served = None,
            }
        }
        None if market => served = None,
        None => {}
    }
    checks.extend(provider_checks(&config.providers).await);
    checks.extend(focus_check(config, served.as_deref()));
    checks.extend(offline_client_checks(loaded));
    checks.extend(service_check(data_dir));
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

/// The client checks with no daemon answering: clients are compared with
/// the configured port (a daemon started now would listen there) and the
/// token file, and clients configured to a daemon that is not running
/// fail.
fn offline_client_checks(loaded: &tb_config::LoadedConfig) -> Vec<Check> {
    let data_dir = &loaded.paths.data_dir;
    let installer = match tb_installer::InstallEnv::from_process() {
        Ok(env) => Installer::new(data_dir, env),
        Err(e) => return vec![Check::warn("clients", e.to_string(), "set HOME")],
    };
    let token = std::fs::read_to_string(data_dir.join(tb_proxy::ACCESS_TOKEN_FILE)).ok();
    let proxy_url = crate::install::proxy_url_for(data_dir, loaded.config.proxy.port);
    let mut checks = client_checks(
        &installer,
        &proxy_url,
        loaded.config.proxy.port != 0,
        token.as_deref().map(str::trim),
    );
    checks.extend(daemon_down_check(
        &installer.pointers(),
        daemon_down(data_dir).as_deref(),
    ));
    checks
}
