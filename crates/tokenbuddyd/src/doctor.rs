//! `doctor`: checks with a verdict and a fix hint each. The running daemon
//! answers `/v1/doctor` with live state (circuits, budget, registry); the
//! CLI asks it, or runs the checks that need no daemon when none runs.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub verdict: &'static str,
    pub detail: String,
    pub hint: String,
}

impl Check {
    pub(crate) fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: "pass",
            detail: detail.into(),
            hint: String::new(),
        }
    }
    pub(crate) fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            verdict: "warn",
            detail: detail.into(),
            hint: hint.into(),
        }
    }
    pub(crate) fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            verdict: "fail",
            detail: detail.into(),
            hint: hint.into(),
        }
    }
}

/// The report: `ok` unless a check failed (warnings do not fail it).
pub(crate) fn report(checks: &[Check]) -> Value {
    serde_json::json!({
        "ok": checks.iter().all(|c| c.verdict != "fail"),
        "checks": checks,
    })
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
pub(crate) fn print(report: &Value) -> bool {
    for c in report["checks"].as_array().into_iter().flatten() {
        let mark = match c["verdict"].as_str() {
            Some("pass") => "✓",
            Some("warn") => "!",
            _ => "✗",
        };
        let hint = c["hint"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(|h| format!(" — {h}"))
            .unwrap_or_default();
        println!(
            "{mark} {}: {}{hint}",
            c["name"].as_str().unwrap_or("?"),
            c["detail"].as_str().unwrap_or("")
        );
    }
    report["ok"] == true
}

/// GETs a JSON document from the running daemon's control plane.
pub(crate) async fn get_json(url: &str) -> anyhow::Result<Value> {
    use http_body_util::BodyExt;
    let client = tb_proxy::build_client(None)?;
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
    *req.uri_mut() = url.parse()?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await??;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// The running daemon's control URL, from `daemon.json`.
pub(crate) fn running_control_url(data_dir: &std::path::Path) -> Option<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("daemon.json")).ok()?).ok()?;
    v["control_url"].as_str().map(String::from)
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
    if let Some(url) = &config.registry.url {
        let fetched = match tb_proxy::build_client(config.tls.extra_ca_file.as_deref()) {
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
                format!("version {}, {} sellers", f.doc.version, f.doc.sellers.len()),
            )),
            Err(e) => checks.push(Check::fail(
                "registry",
                format!("{url}: {e}"),
                "check registry.url; a daemon routes on its last saved document while it is down",
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
    checks.push(clock_check());
    checks
}
