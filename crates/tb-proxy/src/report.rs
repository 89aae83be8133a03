//! What the proxy tells the control plane, the dashboard and `doctor`
//! about itself, as plain data: the daemon maps it into the control
//! plane's API types (tb-proxy does not know the wire format). The
//! upstreams' own report comes from the routing runtime
//! ([`tb_router::Routing::upstreams_report`]).

use tb_config::ProviderMode;
use tb_seller::CreditSummary;

use crate::{Proxy, SinkHealth, call};

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

impl Proxy {
    /// The routing part of `GET /v1/status`.
    pub fn status_report(&self) -> StatusReport {
        let routing = &self.state.routing;
        let table = routing.table();
        let now = call::unix_ms_now();
        let open_circuits = routing.open_circuits(now).len();
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
            mode: routing.provider_mode().mode,
            upstreams_total: table.upstreams().len(),
            sellers: table.sellers(),
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

    /// `GET /v1/purchases/pending`: the wallet purchases waiting for the
    /// user (none without a marketplace).
    pub fn pending_payments(&self) -> Vec<tb_seller::PendingPayment> {
        self.state
            .market
            .as_ref()
            .map(|m| m.broker.pending_payments())
            .unwrap_or_default()
    }

    /// The wallet tokens running low, with where to recharge them (none
    /// without a marketplace).
    pub fn recharges(&self) -> Vec<tb_seller::RechargePrompt> {
        self.state
            .market
            .as_ref()
            .map(|m| m.broker.recharges())
            .unwrap_or_default()
    }

    /// `GET /v1/credit` (`None` without a marketplace); the budget left is
    /// the broker's live figure.
    pub fn credit_report(&self) -> Option<CreditSummary> {
        let m = self.state.market.as_ref()?;
        let mut c = m.broker.credit_summary();
        c.budget_left_usd_micros = m.broker.budget_left();
        Some(c)
    }
}
