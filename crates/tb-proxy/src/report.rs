//! What the proxy tells the control plane, the dashboard and `doctor`
//! about itself, as JSON documents (shapes in `docs/control-plane.md`).

use serde_json::{Value, json};
use tb_config::{AutoConfig, ProviderMode};

use crate::{ModeSetting, Proxy, call};

impl Proxy {
    /// `GET /v1/upstreams`.
    pub fn upstreams_report(&self) -> Value {
        let table = self.state.table.load();
        let now = call::unix_ms_now();
        json!({
            "scorer": self.state.router.scorer_name(),
            "upstreams": self.state.router.report(table.upstreams(), "", now),
        })
    }

    /// The routing part of `GET /v1/status`.
    pub fn status_report(&self) -> Value {
        let table = self.state.table.load();
        let now = call::unix_ms_now();
        let views = self.state.router.views(now);
        let open = views
            .values()
            .filter(|v| v.circuit == tb_pool::CircuitState::Open)
            .count();
        let sellers = table
            .upstreams()
            .iter()
            .filter(|u| u.seller_url().is_some())
            .count();
        let registry = self.state.market.as_ref().map(|m| {
            let snap = m.registry.current();
            json!({
                "url": m.registry.fetcher().url(),
                "version": snap.doc.version,
                "sellers": snap.doc.sellers.len(),
                "stale": snap.stale,
                "age_ms": snap.has_document().then(|| snap.age_ms(now)),
                "last_error": snap.last_error,
            })
        });
        let budget = self.state.market.as_ref().map(|m| {
            let c = m.broker.credit_summary();
            json!({
                "session_usd_micros": c.budget_usd_micros,
                "spent_usd_micros": c.budget_spent_usd_micros,
                "left_usd_micros": m.broker.budget_left(),
            })
        });
        let mode = self.state.modes.load();
        let ledger = self.state.recorder.health();
        json!({
            "mode": mode_name(mode.mode),
            "upstreams": {
                "total": table.upstreams().len(),
                "manual": table.upstreams().len() - sellers,
                "sellers": sellers,
                "open_circuits": open,
            },
            "registry": registry,
            "budget": budget,
            "ledger_dropped": self.state.recorder.dropped(),
            "ledger_health": {
                "pending": ledger.pending,
                "failed_writes": ledger.failed_writes,
                "error": ledger.failing.as_ref().map(|f| f.error.as_str()),
                "failing_for_ms": ledger.failing.as_ref().map(|f| f.for_ms),
            },
            "connections": {
                "open": self.state.connections.open(),
                "refused": self.state.connections.refused(),
                "max": self.state.settings.max_connections,
            },
        })
    }

    /// `GET /v1/credit` (`null` without a marketplace).
    pub fn credit_report(&self) -> Value {
        let Some(m) = &self.state.market else {
            return Value::Null;
        };
        let c = m.broker.credit_summary();
        let sellers: Vec<Value> = c
            .sellers
            .iter()
            .map(|s| {
                json!({
                    "seller_id": s.seller_id,
                    "purchases": s.purchases,
                    "failed_purchases": s.purchase_failures,
                    "credit_bought_micros": s.purchased_credit_micros,
                    "usd_paid_micros": s.paid_usd_micros,
                    "credit_spent_micros": s.spent_credit_micros,
                    "credit_remaining_micros": s.remaining_credit_micros,
                    "credit_wasted_micros": s.wasted_credit_micros,
                })
            })
            .collect();
        json!({
            "sellers": sellers,
            "totals": {
                "purchases": c.purchases,
                "failed_purchases": c.purchase_failures,
                "credit_bought_micros": c.purchased_credit_micros,
                "usd_paid_micros": c.paid_usd_micros,
                "credit_spent_micros": c.spent_credit_micros,
                "credit_remaining_micros": c.remaining_credit_micros,
                "credit_wasted_micros": c.wasted_credit_micros,
            },
            "budget_usd_micros": c.budget_usd_micros,
            "budget_left_usd_micros": m.broker.budget_left(),
        })
    }

    /// `GET /v1/prewarm` (`null` without a marketplace).
    pub fn prewarm_report(&self) -> Value {
        match self.state.prewarm.get() {
            Some(p) => serde_json::to_value(p.snapshot()).unwrap_or(Value::Null),
            None => Value::Null,
        }
    }

    /// `GET /v1/provider-mode`.
    pub fn provider_mode(&self) -> Value {
        let m = self.state.modes.load();
        json!({ "mode": mode_name(m.mode), "auto": m.auto })
    }

    /// Applies a new provider mode at once. Marketplace modes need the
    /// marketplace the daemon started with (`registry.url`).
    pub fn set_provider_mode(&self, mode: ProviderMode, auto: AutoConfig) -> Result<(), String> {
        if mode != ProviderMode::Manual && self.state.market.is_none() {
            return Err("the marketplace is not running: set registry.url and restart the daemon to use auto or both".into());
        }
        self.state
            .modes
            .store(std::sync::Arc::new(ModeSetting { mode, auto }));
        self.state.rebuild();
        Ok(())
    }

    /// Upstreams whose circuit is open now (doctor).
    pub fn open_circuits(&self) -> Vec<String> {
        let now = call::unix_ms_now();
        let mut open: Vec<String> = self
            .state
            .router
            .views(now)
            .into_iter()
            .filter(|(_, v)| v.circuit == tb_pool::CircuitState::Open)
            .map(|(id, _)| id)
            .collect();
        open.sort();
        open
    }

    /// Every model the routing table serves.
    pub fn served_models(&self) -> Vec<String> {
        let body = self.state.table.load().models_body.clone();
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v["data"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|m| m["id"].as_str().map(String::from))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

fn mode_name(mode: ProviderMode) -> &'static str {
    match mode {
        ProviderMode::Manual => "manual",
        ProviderMode::Auto => "auto",
        ProviderMode::Both => "both",
    }
}
