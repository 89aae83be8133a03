//! The daemon's `ControlApi`: the control plane's data, from the proxy,
//! the ledger, the installer and the doctor.

use std::sync::Arc;
use std::time::Instant;

use tb_config::{AutoConfig, AutoRange, Config, ProviderMode};
use tb_control::api::{self as wire, Check, DoctorReport, UsageBy};
use tb_control::{ApiError, ControlApi, Fut};
use tb_proxy::{AccessToken, Proxy};
use tb_store::{CallCursor, Ledger};

use crate::doctor;
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
    /// Gauges of the components the binary wires (rendered at each scrape).
    pub gauges: crate::metrics::DaemonGauges,
    /// The `[export]` sinks, when configured.
    pub export: Option<Arc<tb_export::Exporters>>,
    /// Team mode: the team's shared figures for `status` (a store of its
    /// own, so these reads are not counted with the shared credit's).
    pub team_store: Option<tb_store::TeamStore>,
}

/// How long `status` waits for the team's figures from PostgreSQL.
const TEAM_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

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
            self.proxy.routing().table().models(),
        )
        .map_err(|e| ApiError::internal(e.to_string()))
    }

    fn export_statuses(&self) -> Vec<tb_export::SinkStatus> {
        self.export
            .as_ref()
            .map(|e| e.statuses())
            .unwrap_or_default()
    }

    async fn checks(&self) -> Vec<Check> {
        let mut checks = vec![
            Check::pass("config", format!("valid ({})", self.config_file)),
            doctor::serving_check(&self.config),
        ];
        let env = |var: &str| std::env::var(var).ok();
        let data_dir = self.data_dir.clone();
        let service = tokio::task::spawn_blocking(move || {
            (
                crate::service::env_file_if_installed(&data_dir),
                doctor::service_check(&data_dir),
            )
        })
        .await
        .unwrap_or_default();
        checks.extend(doctor::key_checks(&self.config, &env, service.0.as_deref()));
        checks.push(Check::pass(
            "ports",
            format!(
                "proxy on {}, control on {}",
                self.proxy_url, self.control_url
            ),
        ));
        let status = self.status().await;
        checks.extend(status.registry.as_ref().map(doctor::registry_check));
        for id in self.proxy.routing().open_circuits(unix_ms_now()) {
            checks.push(Check::fail(
                format!("upstream {id}"),
                "circuit open: benched after repeated failures",
                "check the upstream; one trial request is let through after breaker.cooldown_ms",
            ));
        }
        checks.extend(doctor::provider_checks(&self.config.providers).await);
        checks.extend(status.budget.as_ref().map(doctor::budget_check));
        checks.extend(status.team.as_ref().map(doctor::team_check));
        // With no registry document yet, what sellers serve is unknown.
        let known = status
            .registry
            .as_ref()
            .is_none_or(|r| !r.version.is_empty());
        let served = known.then(|| self.proxy.routing().table().models());
        checks.extend(doctor::focus_check(&self.config, served.as_deref()));
        if let Ok(ops) = self.installer() {
            checks.extend(doctor::client_checks(
                ops.installer(),
                &self.proxy_url,
                true,
                Some(self.token.expose()),
            ));
        }
        checks.extend(service.1);
        checks.extend(doctor::ledger_checks(&status.ledger));
        checks.extend(status.export.iter().map(doctor::export_check));
        checks.push(doctor::clock_check());
        checks
    }
}

impl DaemonApi {
    /// The team's shared figures, read from PostgreSQL within
    /// [`TEAM_READ_LIMIT`]: `(figures, why not)`.
    async fn team_budget(&self) -> (Option<wire::TeamBudgetStatus>, Option<String>) {
        let Some(store) = &self.team_store else {
            return (None, None);
        };
        match tokio::time::timeout(TEAM_READ_LIMIT, store.summary()).await {
            Ok(Ok(s)) => (
                Some(crate::team_budget::figures(
                    self.config.purchase.session_budget_usd_micros,
                    &s,
                )),
                None,
            ),
            Ok(Err(e)) => (None, Some(format!("reading PostgreSQL: {e}"))),
            Err(_) => (
                None,
                Some(format!(
                    "PostgreSQL did not answer within {} ms",
                    TEAM_READ_LIMIT.as_millis()
                )),
            ),
        }
    }

    /// Everything `status` answers but the team's shared figures.
    fn local_status(&self) -> wire::Status {
        let r = self.proxy.status_report();
        wire::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            mode: mode_to_wire(r.mode),
            proxy_url: self.proxy_url.clone(),
            control_url: self.control_url.clone(),
            upstreams: wire::UpstreamCounts {
                total: r.upstreams_total as u64,
                manual: r.upstreams_total.saturating_sub(r.sellers) as u64,
                sellers: r.sellers as u64,
                open_circuits: r.open_circuits as u64,
            },
            registry: r.registry.map(registry_to_wire),
            ledger: wire::LedgerStatus {
                backend: self.ledger.backend().as_str().to_string(),
                dropped: r.ledger_dropped,
                pending: r.ledger.pending,
                failed_writes: r.ledger.failed_writes,
                error: r.ledger.failing.as_ref().map(|f| f.error.clone()),
                failing_for_ms: r.ledger.failing.as_ref().map(|f| f.for_ms),
            },
            connections: wire::Connections {
                open: r.connections_open,
                refused: r.connections_refused,
                max: r.max_connections as u64,
            },
            budget: r.budget.map(|b| wire::Budget {
                session_usd_micros: b.session_usd_micros,
                spent_usd_micros: b.spent_usd_micros,
                left_usd_micros: b.left_usd_micros,
            }),
            export: self
                .export_statuses()
                .into_iter()
                .map(export_to_wire)
                .collect(),
            team: self
                .proxy
                .market()
                .and_then(|m| m.broker.team())
                .map(|t| wire::TeamStatus {
                    key_source: t.source().to_owned(),
                    lease_ms: t.lease_ttl_ms(),
                    pg_round_trips: t.round_trips(),
                    budget: None,
                    budget_error: None,
                }),
        }
    }
}

impl ControlApi for DaemonApi {
    fn status(&self) -> Fut<'_, wire::Status> {
        Box::pin(async move {
            let mut status = self.local_status();
            if let Some(team) = status.team.as_mut() {
                (team.budget, team.budget_error) = self.team_budget().await;
            }
            status
        })
    }

    fn upstreams(&self) -> wire::Upstreams {
        let r = self.proxy.routing().upstreams_report(unix_ms_now());
        wire::Upstreams {
            scorer: r.scorer.as_str().to_string(),
            upstreams: r.upstreams.into_iter().map(upstream_to_wire).collect(),
        }
    }

    fn prewarm(&self) -> wire::Prewarm {
        let snapshot = self.proxy.routing().prewarm()?.snapshot();
        let report = self.proxy.routing().upstreams_report(snapshot.now_ms);
        let pool = pool_summary(&report.upstreams, snapshot.now_ms);
        let credit = self.proxy.credit_report().map(credit_to_wire);
        Some(wire::PrewarmReport::new(snapshot, pool, credit))
    }

    fn credit(&self) -> wire::Credit {
        self.proxy.credit_report().map(credit_to_wire)
    }

    fn pending_purchases(&self) -> wire::PendingPurchases {
        let payments = self
            .proxy
            .pending_payments()
            .into_iter()
            .map(crate::pay::to_wire)
            .collect();
        let recharges = self
            .proxy
            .recharges()
            .into_iter()
            .map(crate::pay::recharge_to_wire)
            .collect();
        wire::PendingPurchases {
            payments,
            recharges,
        }
    }

    fn calls(
        &self,
        limit: u32,
        before: Option<String>,
        filter: wire::CallFilter,
    ) -> Fut<'_, Result<wire::Calls, ApiError>> {
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
                .recent_calls_matching(limit, cursor.as_ref(), &filter)
                .await
                .map_err(store_err)?;
            let next = (calls.len() == limit as usize)
                .then(|| {
                    calls
                        .last()
                        .map(|c| format!("{}:{}", c.started_at_ms, c.id))
                })
                .flatten();
            Ok(wire::Calls {
                calls,
                next_before: next,
            })
        })
    }

    fn call(&self, id: String) -> Fut<'_, Result<wire::CallRecord, ApiError>> {
        Box::pin(async move { crate::series::call_doc(&self.ledger, &id).await })
    }

    fn series(&self, request: wire::SeriesRequest) -> Fut<'_, Result<wire::Series, ApiError>> {
        Box::pin(
            async move { crate::series::series_doc(&self.ledger, request, unix_ms_now()).await },
        )
    }

    fn usage(&self, since: String, by: UsageBy) -> Fut<'_, Result<wire::Usage, ApiError>> {
        Box::pin(async move {
            let since_ms = crate::history::parse_since(&since, unix_ms_now())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            crate::history::usage_doc(&self.ledger, since_ms, by)
                .await
                .map_err(store_err)
        })
    }

    fn sellers(&self, since: String) -> Fut<'_, Result<wire::Sellers, ApiError>> {
        Box::pin(async move {
            let since_ms = crate::history::parse_since(&since, unix_ms_now())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let manual = crate::sellers::manual_ids(&self.config);
            crate::sellers::sellers_doc(&self.ledger, since_ms, &manual)
                .await
                .map_err(store_err)
        })
    }

    fn seller_audit(&self, since: String) -> Fut<'_, Result<wire::SellerAudit, ApiError>> {
        Box::pin(async move {
            let since_ms = crate::history::parse_since(&since, unix_ms_now())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let manual = crate::sellers::manual_ids(&self.config);
            crate::sellers::audit_doc(&self.ledger, since_ms, &manual)
                .await
                .map_err(store_err)
        })
    }

    fn provider_mode(&self) -> wire::ProviderMode {
        let m = self.proxy.routing().provider_mode();
        provider_mode_to_wire(m.mode, &m.auto)
    }

    fn set_provider_mode(
        &self,
        body: wire::ProviderModeUpdate,
    ) -> Fut<'_, Result<wire::ProviderMode, ApiError>> {
        Box::pin(async move {
            let mode = mode_from_wire(body.mode);
            let auto = match body.auto {
                None => self.config.provider.auto.clone(),
                Some(a) => auto_from_wire(a),
            };
            let mut candidate = self.config.clone();
            candidate.provider.mode = mode;
            candidate.provider.auto = auto.clone();
            if let Err(errors) = candidate.validate() {
                let msg: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(ApiError::bad_request(msg.join("; ")));
            }
            self.proxy
                .routing()
                .set_provider_mode(mode, auto)
                .map_err(|e| ApiError::new(409, "restart_required", e.to_string()))?;
            let saved = self.provider_mode();
            let text = serde_json::to_string(&saved)
                .map_err(|e| ApiError::internal(format!("encoding the provider mode: {e}")))?;
            self.ledger
                .config_put(PROVIDER_MODE_KEY, &text)
                .await
                .map_err(|e| ApiError::internal(format!("saving the provider mode: {e}")))?;
            Ok(saved)
        })
    }

    fn install_status(&self) -> Fut<'_, Result<wire::InstallStatus, ApiError>> {
        Box::pin(async move { Ok(self.installer()?.status()) })
    }

    fn install_preview(
        &self,
        body: wire::InstallRequest,
    ) -> Fut<'_, Result<wire::InstallPreview, ApiError>> {
        Box::pin(async move {
            let p = self
                .installer()?
                .preview(&body.clients, body.model.as_deref(), false, body.force)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(install::preview_doc(&p))
        })
    }

    fn install_apply(
        &self,
        body: wire::InstallRequest,
    ) -> Fut<'_, Result<wire::InstallChanged, ApiError>> {
        Box::pin(async move {
            let ops = self.installer()?;
            let p = ops
                .preview(&body.clients, body.model.as_deref(), false, body.force)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let applied = ops
                .apply(&p)
                .map_err(|e| ApiError::new(409, "install_failed", e.to_string()))?;
            Ok(install::applied_doc(&applied))
        })
    }

    fn install_undo(
        &self,
        body: wire::UndoRequest,
    ) -> Fut<'_, Result<wire::InstallChanged, ApiError>> {
        Box::pin(async move {
            let ops = self.installer()?;
            let p = ops
                .preview(&body.clients, None, true, false)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let applied = ops
                .apply(&p)
                .map_err(|e| ApiError::new(409, "undo_failed", e.to_string()))?;
            Ok(install::applied_doc(&applied))
        })
    }

    fn doctor(&self) -> Fut<'_, DoctorReport> {
        Box::pin(async move { DoctorReport::new(self.checks().await) })
    }

    fn trust(&self) -> wire::Trust {
        let router = self.proxy.routing().router();
        wire::Trust {
            expiry_secs: self.config.probe.expiry_secs,
            overcount_threshold: self.config.probe.overcount_threshold,
            entries: router
                .trust_report(unix_ms_now())
                .into_iter()
                .map(|r| wire::TrustEntry {
                    upstream_id: r.upstream_id,
                    model: r.model,
                    probed_at_ms: r.probed_at_ms,
                    expired: r.expired,
                    demoted_for_tools: r.demoted_for_tools.map(|d| d.to_string()),
                    demoted_for_all: r.demoted_for_all.map(|d| d.to_string()),
                    checks: r
                        .findings
                        .iter()
                        .map(|f| wire::TrustCheck {
                            check: f.check,
                            verdict: f.verdict,
                            measured: f.measured,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn reload_probes(&self) -> Fut<'_, Result<wire::ProbeReload, ApiError>> {
        Box::pin(async move {
            let entries = crate::ledger::load_trust(&self.ledger, self.proxy.routing().router())
                .await
                .map_err(|e| {
                    ApiError::new(
                        503,
                        "ledger_unavailable",
                        format!("reading the probe results: {e}"),
                    )
                })?;
            tracing::info!(target: "probe.loaded", pairs = entries, "probe results reloaded for routing");
            Ok(wire::ProbeReload {
                entries: entries as u64,
            })
        })
    }

    fn metrics(&self) -> String {
        self.gauges.render(&self.proxy, &self.export_statuses())
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        self.token.authorizes(headers)
    }
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// The proxy's reports as the API's types. The mapping is exhaustive on
// purpose: a new variant on either side fails to compile here.

fn export_to_wire(s: tb_export::SinkStatus) -> wire::ExportSink {
    use tb_export::SinkState;
    wire::ExportSink {
        sink: s.sink.to_owned(),
        target: s.target,
        state: match s.state {
            SinkState::Dropping => wire::ExportState::Dropping,
            SinkState::Failing => wire::ExportState::Failing,
            SinkState::Healthy => wire::ExportState::Healthy,
            SinkState::Idle => wire::ExportState::Idle,
        },
        queue_depth: s.queue_depth,
        queue_capacity: s.queue_capacity,
        sent: s.sent,
        failed_posts: s.failed_posts,
        dropped: s.dropped,
        rejected: s.rejected,
        last_success_at_ms: s.last_success_at_ms,
        last_error: s.last_error,
    }
}

fn mode_to_wire(mode: ProviderMode) -> wire::Mode {
    match mode {
        ProviderMode::Manual => wire::Mode::Manual,
        ProviderMode::Auto => wire::Mode::Auto,
        ProviderMode::Both => wire::Mode::Both,
    }
}

fn mode_from_wire(mode: wire::Mode) -> ProviderMode {
    match mode {
        wire::Mode::Manual => ProviderMode::Manual,
        wire::Mode::Auto => ProviderMode::Auto,
        wire::Mode::Both => ProviderMode::Both,
    }
}

fn range_to_wire(range: AutoRange) -> wire::SellerRange {
    match range {
        AutoRange::Recommended => wire::SellerRange::Recommended,
        AutoRange::Custom => wire::SellerRange::Custom,
    }
}

fn range_from_wire(range: wire::SellerRange) -> AutoRange {
    match range {
        wire::SellerRange::Recommended => AutoRange::Recommended,
        wire::SellerRange::Custom => AutoRange::Custom,
    }
}

/// The provider mode document (also what is saved in `config_kv`).
pub(crate) fn provider_mode_to_wire(mode: ProviderMode, auto: &AutoConfig) -> wire::ProviderMode {
    wire::ProviderMode {
        mode: mode_to_wire(mode),
        auto: wire::AutoSettings {
            enabled: auto.enabled,
            range: range_to_wire(auto.range),
            seller_ids: auto.seller_ids.clone(),
            selected_seller: auto.selected_seller.clone(),
            payment_method: auto.payment_method,
        },
    }
}

/// A requested `[provider.auto]`: absent fields take the configuration
/// defaults, as in the config file.
pub(crate) fn auto_from_wire(a: wire::AutoUpdate) -> AutoConfig {
    let d = AutoConfig::default();
    AutoConfig {
        enabled: a.enabled.unwrap_or(d.enabled),
        range: a.range.map_or(d.range, range_from_wire),
        seller_ids: a.seller_ids.unwrap_or(d.seller_ids),
        selected_seller: a.selected_seller.or(d.selected_seller),
        payment_method: a.payment_method.unwrap_or(d.payment_method),
    }
}

/// A saved provider mode document as config values.
pub(crate) fn provider_mode_from_wire(saved: wire::ProviderMode) -> (ProviderMode, AutoConfig) {
    let a = saved.auto;
    let auto = AutoConfig {
        enabled: a.enabled,
        range: range_from_wire(a.range),
        seller_ids: a.seller_ids,
        selected_seller: a.selected_seller,
        payment_method: a.payment_method,
    };
    (mode_from_wire(saved.mode), auto)
}

fn registry_to_wire(r: tb_proxy::RegistryReport) -> wire::RegistryStatus {
    wire::RegistryStatus {
        url: r.url,
        version: r.version,
        sellers: r.sellers as u64,
        stale: r.stale,
        age_ms: r.age_ms,
        last_error: r.last_error,
    }
}

fn circuit_to_wire(c: tb_pool::CircuitState) -> wire::Circuit {
    match c {
        tb_pool::CircuitState::Closed => wire::Circuit::Closed,
        tb_pool::CircuitState::Open => wire::Circuit::Open,
        tb_pool::CircuitState::HalfOpen => wire::Circuit::HalfOpen,
    }
}

fn health_to_wire(s: tb_pool::UpstreamStatus) -> wire::UpstreamHealth {
    match s {
        tb_pool::UpstreamStatus::Healthy => wire::UpstreamHealth::Healthy,
        tb_pool::UpstreamStatus::Degraded => wire::UpstreamHealth::Degraded,
        tb_pool::UpstreamStatus::Unhealthy => wire::UpstreamHealth::Unhealthy,
        tb_pool::UpstreamStatus::Unknown => wire::UpstreamHealth::Unknown,
    }
}

fn upstream_to_wire(u: tb_router::UpstreamReport) -> wire::Upstream {
    let s = u.score;
    wire::Upstream {
        id: u.id,
        kind: if u.seller {
            wire::UpstreamKind::Seller
        } else {
            wire::UpstreamKind::Manual
        },
        base_url: u.base_url,
        circuit: circuit_to_wire(u.view.circuit),
        upstream_status: health_to_wire(u.view.upstream_status),
        health_score: u.view.health_score,
        benched_until_ms: u.view.benched_until_ms,
        ttft_ms: u.view.ttft_ms,
        avg_latency_ms: u.view.avg_latency_ms,
        tokens_per_second: u.view.avg_tokens_per_second,
        consecutive_failures: u.view.consecutive_failures,
        last_error_class: u.last_error_class,
        discount_ppm: u.discount_ppm,
        own_prices: u32::try_from(u.own_prices).unwrap_or(u32::MAX),
        score: wire::Score {
            scorer: s.scorer.as_str().to_string(),
            latency: s.latency,
            throughput: s.throughput,
            discount: s.discount,
            health: s.health,
            total: s.total,
            effective_ttft_ms: s.effective_ttft_ms,
            price_usd_micros_per_1m: s.price_usd_micros_per_1m,
            missing_inputs: s.missing_inputs.iter().map(|m| m.to_string()).collect(),
        },
    }
}

/// The pool in counts at `now_ms`.
fn pool_summary(upstreams: &[tb_router::UpstreamReport], now_ms: i64) -> wire::PoolSummary {
    let mut pool = wire::PoolSummary::default();
    for u in upstreams {
        pool.upstreams += 1;
        pool.sellers += u64::from(u.seller);
        match u.view.circuit {
            tb_pool::CircuitState::Closed => pool.closed += 1,
            tb_pool::CircuitState::Open => pool.open += 1,
            tb_pool::CircuitState::HalfOpen => pool.half_open += 1,
        }
        let blocked = u.view.capacity_blocked_until_ms.is_some_and(|t| t > now_ms);
        pool.capacity_blocked += u64::from(blocked);
    }
    pool
}

fn credit_to_wire(c: tb_seller::CreditSummary) -> wire::CreditReport {
    let sellers = c
        .sellers
        .iter()
        .map(|s| wire::SellerCredit {
            seller_id: s.seller_id.clone(),
            purchases: s.purchases,
            failed_purchases: s.purchase_failures,
            credit_bought_micros: s.purchased_credit_micros,
            usd_paid_micros: s.paid_usd_micros,
            credit_spent_micros: s.spent_credit_micros,
            credit_remaining_micros: s.remaining_credit_micros,
            credit_wasted_micros: s.wasted_credit_micros,
        })
        .collect();
    wire::CreditReport {
        sellers,
        totals: wire::CreditCounters {
            purchases: c.purchases,
            failed_purchases: c.purchase_failures,
            credit_bought_micros: c.purchased_credit_micros,
            usd_paid_micros: c.paid_usd_micros,
            credit_spent_micros: c.spent_credit_micros,
            credit_remaining_micros: c.remaining_credit_micros,
            credit_wasted_micros: c.wasted_credit_micros,
        },
        budget_usd_micros: c.budget_usd_micros,
        budget_left_usd_micros: c.budget_left_usd_micros,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_mode_round_trips_through_the_wire_type() {
        let auto = AutoConfig {
            enabled: false,
            range: AutoRange::Custom,
            seller_ids: vec!["s-1".into()],
            selected_seller: Some("s-1".into()),
            payment_method: tb_domain::PaymentMethod::Clawtip,
        };
        for mode in [ProviderMode::Manual, ProviderMode::Auto, ProviderMode::Both] {
            let doc = provider_mode_to_wire(mode, &auto);
            let text = serde_json::to_string(&doc).unwrap();
            let back: wire::ProviderMode = serde_json::from_str(&text).unwrap();
            let (m, a) = provider_mode_from_wire(back);
            assert_eq!(m, mode);
            assert_eq!(
                serde_json::to_value(&a).unwrap(),
                serde_json::to_value(&auto).unwrap()
            );
        }
    }

    #[test]
    fn an_absent_auto_field_takes_the_config_default() {
        let d = AutoConfig::default();
        let a = auto_from_wire(wire::AutoUpdate {
            range: Some(wire::SellerRange::Custom),
            ..wire::AutoUpdate::default()
        });
        assert_eq!(a.range, AutoRange::Custom);
        assert_eq!(a.enabled, d.enabled);
        assert_eq!(a.payment_method, d.payment_method);
        assert!(a.seller_ids.is_empty() && a.selected_seller.is_none());
    }
}
