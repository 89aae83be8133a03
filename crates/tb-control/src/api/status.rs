//! `GET /v1/status` and `GET /v1/upstreams`: what the daemon says about
//! itself and its upstreams.

use serde::{Deserialize, Serialize};

/// Which upstreams the daemon routes to (`provider.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only the configured providers.
    Manual,
    /// Only marketplace sellers.
    Auto,
    /// Providers first, then sellers.
    Both,
}

impl Mode {
    /// The wire and config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Manual => "manual",
            Mode::Auto => "auto",
            Mode::Both => "both",
        }
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The provider mode in force.
    pub mode: Mode,
    /// Where clients send model requests.
    pub proxy_url: String,
    /// This API's base URL.
    pub control_url: String,
    /// Upstream counts.
    pub upstreams: UpstreamCounts,
    /// The marketplace registry (`None` without a marketplace).
    pub registry: Option<RegistryStatus>,
    /// The call ledger's writer.
    pub ledger: LedgerStatus,
    /// Proxy connections.
    pub connections: Connections,
    /// The session's purchase budget (`None` without a marketplace).
    pub budget: Option<Budget>,
    /// The call-record export sinks (`[export.http]`, `[export.otlp]`);
    /// empty when none is configured.
    #[serde(default)]
    pub export: Vec<ExportSink>,
    /// Team mode (`[team] enabled`); absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamStatus>,
}

/// Team mode as `status` shows it: where the key came from (never the
/// key), the purchase lease and PostgreSQL round trips so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamStatus {
    /// `TB_TEAM_KEY` or `key_file <path>`.
    pub key_source: String,
    /// How long a purchase lease runs, ms.
    pub lease_ms: u64,
    /// PostgreSQL round trips made for the shared credit.
    pub pg_round_trips: u64,
    /// The team's shared purchase budget and figures, read from
    /// PostgreSQL when asked; `None` when they could not be read.
    #[serde(default)]
    pub budget: Option<TeamBudgetStatus>,
    /// Why [`budget`](Self::budget) could not be read.
    #[serde(default)]
    pub budget_error: Option<String>,
}

/// The team's purchase budget as every daemon of the team shares it
/// (`team_state`, `team_locks`, `member_keys` in PostgreSQL), USD micros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamBudgetStatus {
    /// The budget (`purchase.session_budget_usd_micros` of this daemon).
    pub budget_usd_micros: u64,
    /// Paid by the team since the team's first daemon or the last reset.
    pub spent_usd_micros: u64,
    /// Held by purchases in flight.
    pub reserved_usd_micros: u64,
    /// Left for purchases: budget − spent − reserved, at least 0.
    pub left_usd_micros: u64,
    /// Purchase leases not expired (purchases in flight across the team).
    pub live_leases: u64,
    /// Members with a key that has a budget, rpm or tpm limit.
    pub members_with_limits: u64,
}

/// A call-record export sink's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    /// The queue is full: new records are dropped (and counted).
    Dropping,
    /// The latest POST failed; records wait and are retried.
    Failing,
    /// The latest POST succeeded.
    Healthy,
    /// Nothing sent yet.
    Idle,
}

impl ExportState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Dropping => "dropping",
            ExportState::Failing => "failing",
            ExportState::Healthy => "healthy",
            ExportState::Idle => "idle",
        }
    }
}

/// One export sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSink {
    /// `http` or `otlp`.
    pub sink: String,
    /// Where it sends (no credentials, no query string).
    pub target: String,
    /// The state now.
    pub state: ExportState,
    /// Records waiting, a batch being retried included.
    pub queue_depth: u64,
    /// The queue's bound.
    pub queue_capacity: u64,
    /// Records delivered.
    pub sent: u64,
    /// POSTs that failed.
    pub failed_posts: u64,
    /// Records dropped because the queue was full.
    pub dropped: u64,
    /// Records the receiver refused for good.
    pub rejected: u64,
    /// Unix ms of the last delivered batch.
    pub last_success_at_ms: Option<i64>,
    /// The latest failure.
    pub last_error: Option<String>,
}

/// How many upstreams the routing table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCounts {
    /// Every upstream.
    pub total: u64,
    /// Configured providers.
    pub manual: u64,
    /// Marketplace sellers.
    pub sellers: u64,
    /// Upstreams whose circuit is open now.
    pub open_circuits: u64,
}

/// The registry document the daemon routes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryStatus {
    /// Where it is fetched from.
    pub url: String,
    /// The document's version (empty before the first document).
    pub version: String,
    /// Sellers in the document.
    pub sellers: u64,
    /// Whether the last refresh failed and an older document is in use.
    pub stale: bool,
    /// Age of the document in use (`None` before the first one).
    pub age_ms: Option<i64>,
    /// The last refresh error.
    pub last_error: Option<String>,
}

/// The ledger writer's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerStatus {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Records dropped because the queue was full.
    pub dropped: u64,
    /// Records accepted but not yet committed.
    pub pending: u64,
    /// Commits that failed since start.
    pub failed_writes: u64,
    /// Set while commits fail (full disk, read-only file, database down).
    pub error: Option<String>,
    /// How long commits have been failing.
    pub failing_for_ms: Option<u64>,
}

/// Proxy connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// Open now.
    pub open: u64,
    /// Refused since start (over `max`).
    pub refused: u64,
    /// `proxy.max_connections`.
    pub max: u64,
}

/// The session's purchase budget, in USD micros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The budget.
    pub session_usd_micros: u64,
    /// Spent on purchases.
    pub spent_usd_micros: u64,
    /// Left to spend.
    pub left_usd_micros: u64,
}

/// `GET /v1/upstreams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    /// The active scorer (`routing.scorer`).
    pub scorer: String,
    /// Every upstream, in routing-table order.
    pub upstreams: Vec<Upstream>,
}

/// Where an upstream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// A configured provider.
    Manual,
    /// A marketplace seller.
    Seller,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// Benched after repeated failures.
    Open,
    /// One trial request is let through.
    HalfOpen,
}

/// What the pool makes of an upstream's recent answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamHealth {
    /// Answering well.
    Healthy,
    /// Some failures.
    Degraded,
    /// Failing.
    Unhealthy,
    /// Not enough data.
    Unknown,
}

/// One upstream: pool state and the score under the active scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Provider id or seller id.
    pub id: String,
    /// Provider or seller.
    pub kind: UpstreamKind,
    /// Where requests go.
    pub base_url: String,
    /// The circuit breaker.
    pub circuit: Circuit,
    /// The pool's verdict.
    pub upstream_status: UpstreamHealth,
    /// 0–100.
    pub health_score: u8,
    /// Not routed to before this instant (capacity block or open circuit).
    pub benched_until_ms: Option<i64>,
    /// Time to first token, moving average.
    pub ttft_ms: Option<f64>,
    /// Whole-request latency, moving average.
    pub avg_latency_ms: Option<f64>,
    /// Output tokens per second, moving average.
    pub tokens_per_second: Option<f64>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The class of the last failure.
    pub last_error_class: Option<String>,
    /// The seller's discount in parts per million (0 for providers).
    pub discount_ppm: u32,
    /// How many models it prices itself (a seller's manifest prices, a
    /// provider's configured `prices`); the others come from the table.
    pub own_prices: u32,
    /// The score breakdown.
    pub score: Score,
}

/// Every component of an upstream's score under the active scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    /// The scorer the total is for.
    pub scorer: String,
    /// Latency sub-score, 0–100.
    pub latency: f64,
    /// Throughput sub-score, 0–100.
    pub throughput: f64,
    /// Discount sub-score, 0–100.
    pub discount: f64,
    /// Health sub-score, 0–100.
    pub health: f64,
    /// The weighted total, 0–100 (`None` for `cheapest`, which orders by
    /// price).
    pub total: Option<f64>,
    /// The TTFT the latency sub-score used.
    pub effective_ttft_ms: Option<u64>,
    /// The effective price (what `cheapest` sorts by), USD micros per 1M tokens.
    pub price_usd_micros_per_1m: Option<u64>,
    /// Inputs this scorer uses that were unknown.
    pub missing_inputs: Vec<String>,
}
