//! What the router tells the control plane, the dashboard and `doctor`
//! about the upstreams, as plain data: the daemon maps it into the control
//! plane's API types (this crate does not know the wire format).

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
    /// How many models it prices itself (manifest or configured prices).
    pub own_prices: usize,
    /// The score under the active scorer.
    pub score: tb_routing::ScoreBreakdown,
}

/// One upstream × model's probe findings and what routing makes of them
/// now (`GET /v1/trust`).
#[derive(Debug, Clone)]
pub struct TrustReport {
    /// Provider id or seller id.
    pub upstream_id: String,
    /// The upstream model id probed.
    pub model: String,
    /// When it was probed, unix ms.
    pub probed_at_ms: i64,
    /// Older than `probe.expiry_secs`: routing ignores it.
    pub expired: bool,
    /// Why it is pushed back for requests with tools (`None`: trusted).
    pub demoted_for_tools: Option<tb_routing::Demotion>,
    /// Why it is pushed back for requests without tools.
    pub demoted_for_all: Option<tb_routing::Demotion>,
    /// What each check found.
    pub findings: Vec<tb_routing::CheckFinding>,
}
