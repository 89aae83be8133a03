//! The daemon's `ControlApi`: the control plane's data, from the proxy,
//! the ledger, the installer and the doctor.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tb_config::{AutoConfig, Config, ProviderMode};
use tb_control::{ApiError, ControlApi, Fut};
use tb_proxy::{AccessToken, Proxy};
use tb_store::{CallCursor, GroupBy, Ledger};

use crate::doctor::{self, Check};
use crate::install::{self, InstallOps};

/// Key of the provider mode saved through the control plane.
pub(crate) const PROVIDER_MODE_KEY: &str = "provider_mode";

pub(crate) struct DaemonApi {
    pub proxy: Arc<Proxy>,
    pub ledger: Ledger,
    pub config: Config,
    pub token: AccessToken,
    pub started: Instant,
    pub proxy_url: String,
    pub control_url: String,
    pub data_dir: std::path::PathBuf,
    pub config_file: String,
}

fn store_err(e: tb_store::StoreError) -> ApiError {
    ApiError::internal(format!("reading the ledger: {e}"))
}

impl DaemonApi {
    fn installer(&self) -> Result<InstallOps, ApiError> {
        InstallOps::new(
            &self.data_dir,
            self.proxy_url.clone(),
            self.token.expose().to_string(),
            self.config.routing.focus_models.clone(),
            self.proxy.served_models(),
        )
        .map_err(|e| ApiError::internal(e.to_string()))
    }

    fn install_request(body: &Value) -> (Vec<String>, Option<String>, bool) {
        let clients = body["clients"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let model = body["model"].as_str().map(String::from);
        let force = body["force"] == true;
        (clients, model, force)
    }

    async fn checks(&self) -> Vec<Check> {
        let mut checks = vec![Check::pass(
            "config",
            format!("valid ({})", self.config_file),
        )];
        checks.push(Check::pass(
            "ports",
            format!(
                "proxy on {}, control on {}",
                self.proxy_url, self.control_url
            ),
        ));
        let status = self.proxy.status_report();
        if let Some(reg) = status["registry"].as_object() {
            let version = reg.get("version").and_then(Value::as_str).unwrap_or("");
            let err = reg.get("last_error").and_then(Value::as_str).unwrap_or("");
            if version.is_empty()
                && reg.get("sellers").and_then(Value::as_u64) == Some(0)
                && !err.is_empty()
            {
                checks.push(Check::fail(
                    "registry",
                    format!("down and no saved document: {err}"),
                    "check registry.url and that the registry is reachable",
                ));
            } else if reg.get("stale") == Some(&Value::Bool(true)) {
                checks.push(Check::warn(
                    "registry",
                    format!("routing on the last good document ({err})"),
                    "the registry is refetched every registry.refresh_secs",
                ));
            } else {
                checks.push(Check::pass(
                    "registry",
                    format!(
                        "version {version}, {} sellers",
                        reg.get("sellers").and_then(Value::as_u64).unwrap_or(0)
                    ),
                ));
            }
        }
        for id in self.proxy.open_circuits() {
            checks.push(Check::fail(
                format!("upstream {id}"),
                "circuit open: benched after repeated failures",
                "check the upstream; one trial request is let through after breaker.cooldown_ms",
            ));
        }
        for p in &self.config.providers {
            match doctor::reachable(&p.base_url).await {
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
        if let Some(b) = status["budget"].as_object() {
            let left = b
                .get("left_usd_micros")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if left == 0 {
                checks.push(Check::fail(
                    "budget",
                    "the session purchase budget is spent: sellers that need credit are skipped",
                    "raise purchase.session_budget_usd_micros or restart the daemon",
                ));
            } else {
                checks.push(Check::pass(
                    "budget",
                    format!("{left} USD micros left to buy credit"),
                ));
            }
        }
        if let Ok(ops) = self.installer() {
            for c in ops.status()["clients"].as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap_or("?");
                if c["configured"] == true {
                    checks.push(Check::pass(format!("client {id}"), "points at tokenbuddy"));
                } else if c["detected"] == true {
                    checks.push(Check::warn(
                        format!("client {id}"),
                        "installed but points elsewhere",
                        format!("run `tokenbuddyd install {id}`"),
                    ));
                }
            }
        }
        let health = &status["ledger_health"];
        if let Some(error) = health["error"].as_str() {
            checks.push(Check::fail(
                "ledger",
                format!(
                    "call records are not being stored: {error} (failing for {} s; {} records waiting in memory)",
                    health["failing_for_ms"].as_u64().unwrap_or(0) / 1000,
                    health["pending"].as_u64().unwrap_or(0),
                ),
                format!(
                    "free disk space or make the {} ledger writable; waiting records are written when it recovers (up to ledger.queue_capacity, then dropped)",
                    self.ledger.backend().as_str()
                ),
            ));
        } else {
            checks.push(Check::pass(
                "ledger",
                format!(
                    "{} writable ({} records waiting)",
                    self.ledger.backend().as_str(),
                    health["pending"].as_u64().unwrap_or(0)
                ),
            ));
        }
        let dropped = status["ledger_dropped"].as_u64().unwrap_or(0);
        if dropped > 0 {
            checks.push(Check::warn(
                "ledger",
                format!("{dropped} call records were dropped (queue full)"),
                "raise ledger.queue_capacity or check the ledger's database",
            ));
        }
        checks.push(doctor::clock_check());
        checks
    }
}

impl ControlApi for DaemonApi {
    fn status(&self) -> Value {
        let mut s = self.proxy.status_report();
        s["version"] = json!(env!("CARGO_PKG_VERSION"));
        s["uptime_s"] = json!(self.started.elapsed().as_secs());
        s["proxy_url"] = json!(self.proxy_url);
        s["control_url"] = json!(self.control_url);
        s["ledger"] = json!({
            "backend": self.ledger.backend().as_str(),
            "dropped": s["ledger_dropped"].clone(),
            "pending": s["ledger_health"]["pending"].clone(),
            "error": s["ledger_health"]["error"].clone(),
        });
        s
    }

    fn upstreams(&self) -> Value {
        self.proxy.upstreams_report()
    }

    fn prewarm(&self) -> Value {
        self.proxy.prewarm_report()
    }

    fn credit(&self) -> Value {
        self.proxy.credit_report()
    }

    fn calls(&self, limit: u32, before: Option<String>) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let cursor = before
                .as_deref()
                .and_then(|b| b.split_once(':'))
                .and_then(|(t, id)| {
                    t.parse().ok().map(|started_at_ms| CallCursor {
                        started_at_ms,
                        id: id.to_string(),
                    })
                });
            let calls = self
                .ledger
                .recent_calls(limit, cursor.as_ref())
                .await
                .map_err(store_err)?;
            let next = (calls.len() == limit as usize)
                .then(|| {
                    calls
                        .last()
                        .map(|c| format!("{}:{}", c.started_at_ms, c.id))
                })
                .flatten();
            Ok(json!({"calls": calls, "next_before": next}))
        })
    }

    fn usage(&self, since: String, by: String) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let now = tb_proxy_now_ms();
            let since_ms = crate::history::parse_since(&since, now)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let group = match by.as_str() {
                "upstream" => GroupBy::Upstream,
                "day" => GroupBy::Day,
                _ => GroupBy::Model,
            };
            let rows = self
                .ledger
                .usage_summary(since_ms, group)
                .await
                .map_err(store_err)?;
            let totals = self.ledger.totals(since_ms).await.map_err(store_err)?;
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| json!({"key": r.key, "calls": r.calls, "ok_calls": r.ok_calls, "input_tokens": r.input_tokens,
                    "cached_input_tokens": r.cached_input_tokens, "output_tokens": r.output_tokens,
                    "cost_usd_micros": r.cost_usd_micros, "saved_usd_micros": r.saved_usd_micros, "unpriced_calls": r.unpriced_calls}))
                .collect();
            Ok(
                json!({"since_ms": since_ms, "by": by, "rows": rows, "totals": {"calls": totals.calls,
                "cost_usd_micros": totals.cost_usd_micros, "saved_usd_micros": totals.saved_usd_micros, "unpriced_calls": totals.unpriced_calls}}),
            )
        })
    }

    fn provider_mode(&self) -> Value {
        self.proxy.provider_mode()
    }

    fn set_provider_mode(&self, body: Value) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let mode: ProviderMode = serde_json::from_value(body["mode"].clone()).map_err(|e| {
                ApiError::bad_request(format!("mode: {e}; use \"manual\", \"auto\" or \"both\""))
            })?;
            let auto: AutoConfig = match body.get("auto") {
                None | Some(Value::Null) => self.config.provider.auto.clone(),
                Some(a) => serde_json::from_value(a.clone())
                    .map_err(|e| ApiError::bad_request(format!("auto: {e}")))?,
            };
            let mut candidate = self.config.clone();
            candidate.provider.mode = mode;
            candidate.provider.auto = auto.clone();
            if let Err(errors) = candidate.validate() {
                let msg: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(ApiError::bad_request(msg.join("; ")));
            }
            self.proxy
                .set_provider_mode(mode, auto)
                .map_err(|e| ApiError::new(409, "restart_required", e))?;
            let saved = self.proxy.provider_mode();
            self.ledger
                .config_put(PROVIDER_MODE_KEY, &saved.to_string())
                .await
                .map_err(|e| ApiError::internal(format!("saving the provider mode: {e}")))?;
            Ok(saved)
        })
    }

    fn install_status(&self) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move { Ok(self.installer()?.status()) })
    }

    fn install_preview(&self, body: Value) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let (clients, model, force) = Self::install_request(&body);
            let p = self
                .installer()?
                .preview(&clients, model.as_deref(), false, force)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(install::preview_json(&p))
        })
    }

    fn install_apply(&self, body: Value) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let (clients, model, force) = Self::install_request(&body);
            let ops = self.installer()?;
            let p = ops
                .preview(&clients, model.as_deref(), false, force)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let applied = ops
                .apply(&p)
                .map_err(|e| ApiError::new(409, "install_failed", e.to_string()))?;
            Ok(install::applied_json(&applied))
        })
    }

    fn install_undo(&self, body: Value) -> Fut<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let (clients, _, _) = Self::install_request(&body);
            let ops = self.installer()?;
            let p = ops
                .preview(&clients, None, true, false)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let applied = ops
                .apply(&p)
                .map_err(|e| ApiError::new(409, "undo_failed", e.to_string()))?;
            Ok(install::applied_json(&applied))
        })
    }

    fn doctor(&self) -> Fut<'_, Value> {
        Box::pin(async move { doctor::report(&self.checks().await) })
    }

    fn metrics(&self) -> String {
        self.proxy.metrics_text()
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        bearer.is_some_and(|t| self.token.matches(t.trim().as_bytes()))
            || key.is_some_and(|k| self.token.matches(k.trim().as_bytes()))
    }
}

fn tb_proxy_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
