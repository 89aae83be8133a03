//! What the proxy tells the control plane, the dashboard and `doctor`
//! about itself, as plain data: the daemon maps it into the control
//! plane's API types (tb-proxy does not know the wire format).

use tb_config::{AutoConfig, ProviderMode};
use tb_prewarm::PrewarmSnapshot;
use tb_seller::CreditSummary;

use crate::{ModeSetting, Proxy, SinkHealth, call};

/// The routing part of `GET /v1/status`.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The provider mode in force.
    pub mode: ProviderMode,
    /// Every upstream of the routing table.
    pub upstreams_total: usize,
    /// Of which marketplace sellers.
    pub sellers: usize,
    /// Upstreams whose circuit is open now.
    pub open_circuits: usize,
    /// The registry (`None` without a marketplace).
    pub registry: Option<RegistryReport>,
    /// The purchase budget (`None` without a marketplace).
    pub budget: Option<BudgetReport>,
    /// Call records dropped because the ledger queue was full.
    pub ledger_dropped: u64,
    /// The ledger writer's health.
    pub ledger: SinkHealth,
    /// Proxy connections open now.
    pub connections_open: u64,
    /// Proxy connections refused since start.
    pub connections_refused: u64,
    /// `proxy.max_connections`.
    pub max_connections: usize,
}

/// The registry document the proxy routes on.
#[derive(Debug, Clone)]
pub struct RegistryReport {
    /// Where it is fetched from.
    pub url: String,
    /// The document's version.
    pub version: String,
    /// Sellers in the document.
    pub sellers: usize,
    /// Whether an older document is in use after a failed refresh.
    pub stale: bool,
    /// Age of the document (`None` before the first one).
    pub age_ms: Option<i64>,
    /// The last refresh error.
    pub last_error: Option<String>,
}

/// The session's purchase budget, USD micros.
#[derive(Debug, Clone, Copy)]
pub struct BudgetReport {
    /// The budget.
    pub session_usd_micros: u64,
    /// Spent.
    pub spent_usd_micros: u64,
    /// Left.
    pub left_usd_micros: u64,
}

/// `GET /v1/upstreams`.
#[derive(Debug, Clone)]
pub struct UpstreamsReport {
    /// The active scorer.
    pub scorer: tb_routing::Scorer,
    /// Every upstream, in routing-table order.
    pub upstreams: Vec<UpstreamReport>,
}

/// One upstream: pool state and the score breakdown.
#[derive(Debug, Clone)]
pub struct UpstreamReport {
    /// Provider id or seller id.
    pub id: String,
    /// Whether it is a marketplace seller.
    pub seller: bool,
    /// Where requests go.
    pub base_url: String,
    /// The pool's view of it now.
    pub view: tb_pool::PoolView,
    /// The class of the last failure.
    pub last_error_class: Option<String>,
    /// The seller's discount, parts per million.
    pub discount_ppm: u32,
    /// The score under the active scorer.
    pub score: tb_routing::ScoreBreakdown,
}

/// The provider mode in force.
#[derive(Debug, Clone)]
pub struct ModeReport {
    /// `provider.mode`.
    pub mode: ProviderMode,
    /// `[provider.auto]`.
    pub auto: AutoConfig,
}

impl Proxy {
    /// `GET /v1/upstreams`.
    pub fn upstreams_report(&self) -> UpstreamsReport {
        let table = self.state.table.load();
        let now = call::unix_ms_now();
        UpstreamsReport {
            scorer: self.state.router.scorer(),
            upstreams: self.state.router.report(table.upstreams(), "", now),
        }
    }

    /// The routing part of `GET /v1/status`.
    pub fn status_report(&self) -> StatusReport {
        let table = self.state.table.load();
        let now = call::unix_ms_now();
        let open_circuits = self
            .state
            .router
            .views(now)
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
            RegistryReport {
                url: m.registry.fetcher().url().to_string(),
                version: snap.doc.version.clone(),
                sellers: snap.doc.sellers.len(),
                stale: snap.stale,
                age_ms: snap.has_document().then(|| snap.age_ms(now)),
                last_error: snap.last_error.clone(),
            }
        });
        let budget = self.state.market.as_ref().map(|m| {
            let c = m.broker.credit_summary();
            BudgetReport {
                session_usd_micros: c.budget_usd_micros,
                spent_usd_micros: c.budget_spent_usd_micros,
                left_usd_micros: m.broker.budget_left(),
            }
        });
        StatusReport {
            mode: self.state.modes.load().mode,
            upstreams_total: table.upstreams().len(),
            sellers,
            open_circuits,
            registry,
            budget,
            ledger_dropped: self.state.recorder.dropped(),
            ledger: self.state.recorder.health(),
            connections_open: self.state.connections.open(),
            connections_refused: self.state.connections.refused(),
            max_connections: self.state.settings.max_connections,
        }
    }

    /// `GET /v1/credit` (`None` without a marketplace); the budget left is
    /// the broker's live figure.
    pub fn credit_report(&self) -> Option<CreditSummary> {
        let m = self.state.market.as_ref()?;
        let mut c = m.broker.credit_summary();
        c.budget_left_usd_micros = m.broker.budget_left();
        Some(c)
    }

    /// `GET /v1/prewarm` (`None` without a marketplace).
    pub fn prewarm_report(&self) -> Option<PrewarmSnapshot> {
        self.state.prewarm.get().map(|p| p.snapshot())
    }

    /// `GET /v1/provider-mode`.
    pub fn provider_mode(&self) -> ModeReport {
        let m = self.state.modes.load();
        ModeReport {
            mode: m.mode,
            auto: m.auto.clone(),
        }
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
        self.state.table.load().models()
    }
}
