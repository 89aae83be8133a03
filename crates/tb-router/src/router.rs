//! The router: turns the model index's candidates into an ordered plan
//! with the pool's live state and the configured scorer (tb-routing), and
//! feeds attempt results back into the pool (tb-pool) and stickiness. The
//! pure decisions live in those crates; this module only holds their state
//! and converts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tb_config::{
    AutoConfig, AutoRange, BreakerConfig, ManualPolicyConfig, RoutingConfig, ScorerConfig,
};
use tb_pool::{Admission, CallMetrics, PoolConfig, SellerPool};
use tb_routing::{
    Candidate, Demotion, FailoverConfig, ManualPolicy, PlanInput, PlanMode, ProbeFindings, Scorer,
    Stickiness, StickyHint, TrustPolicy,
};

use crate::plan::{GroupDecision, RoutePlan};
use crate::report::UpstreamReport;
use crate::upstream::Upstream;

/// How long a 429 without `Retry-After` benches an upstream.
const DEFAULT_CAPACITY_BLOCK_MS: i64 = 10_000;

/// How sellers are planned for the `[provider.auto]` selection: one seller
/// (`fixed`), a custom set (`fixedSet`) or all (`fullAuto`).
pub(crate) fn auto_plan_mode(auto: &AutoConfig) -> PlanMode {
    match (&auto.selected_seller, auto.range) {
        (Some(_), _) => PlanMode::Fixed,
        (None, AutoRange::Custom) => PlanMode::FixedSet,
        (None, AutoRange::Recommended) => PlanMode::FullAuto,
    }
}

/// Probe findings by upstream id, then upstream model id (two maps so a
/// request looks them up by `&str` without allocating).
#[derive(Debug, Default)]
struct TrustTable {
    by_upstream: HashMap<String, HashMap<String, ProbeFindings>>,
}

/// Pool, stickiness and the routing settings: the live state that orders
/// a plan and learns from every attempt. Shared by all requests; each call
/// holds a lock only for its own bookkeeping, never across an `.await`.
pub struct Router {
    pool: Mutex<SellerPool>,
    sticky: Mutex<Stickiness>,
    /// The latest probe findings (`tokenbuddyd probe`), swapped whole.
    trust: arc_swap::ArcSwap<TrustTable>,
    trust_policy: TrustPolicy,
    scorer: Scorer,
    manual_mode: PlanMode,
    max_attempts: usize,
    failover: FailoverConfig,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not stop routing: the pool data is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    /// A router with an empty pool, from `[routing]` and `[breaker]`.
    pub fn new(routing: &RoutingConfig, breaker: &BreakerConfig) -> Router {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let pool = SellerPool::new(PoolConfig {
            max_failures: breaker.max_failures,
            window_ms: ms(breaker.window_ms),
            cooldown_ms: ms(breaker.cooldown_ms),
            max_cooldown_ms: ms(breaker.max_cooldown_ms),
            ..PoolConfig::default()
        });
        let scorer = match routing.scorer {
            ScorerConfig::Speed => Scorer::Speed,
            ScorerConfig::Discount => Scorer::Discount,
            ScorerConfig::Balanced => Scorer::Balanced,
            ScorerConfig::Cheapest => Scorer::Cheapest,
        };
        let manual_mode = PlanMode::Manual {
            policy: match routing.manual_policy {
                ManualPolicyConfig::Fallback => ManualPolicy::Fallback,
                ManualPolicyConfig::Locked => ManualPolicy::Locked,
            },
            auto_sort: routing.auto_sort,
        };
        Router {
            pool: Mutex::new(pool),
            sticky: Mutex::new(Stickiness::new(routing.sticky_reset_ms)),
            trust: arc_swap::ArcSwap::from_pointee(TrustTable::default()),
            // Until `with_trust_policy`: findings never count.
            trust_policy: TrustPolicy {
                expiry_ms: 0,
                overcount_threshold_pct: u32::MAX,
            },
            scorer,
            manual_mode,
            max_attempts: routing.max_attempts.max(1),
            failover: FailoverConfig {
                failover_on_client_error: routing.failover_on_client_error,
                retry_same_on_5xx: routing.retry_same_on_5xx,
            },
        }
    }

    /// The router with `[probe]`'s trust policy: how long probe findings
    /// count and the prompt over-count tolerated.
    pub fn with_trust_policy(mut self, probe: &tb_config::ProbeConfig) -> Router {
        self.trust_policy = TrustPolicy {
            expiry_ms: probe.expiry_secs.saturating_mul(1_000),
            overcount_threshold_pct: probe.overcount_threshold,
        };
        self
    }

    /// Replaces the probe findings routing reads (the latest per upstream ×
    /// model, from the ledger). Requests planned after this see them.
    pub fn set_trust(&self, findings: Vec<(String, String, ProbeFindings)>) {
        let mut table = TrustTable::default();
        for (upstream, model, f) in findings {
            table
                .by_upstream
                .entry(upstream)
                .or_default()
                .insert(model, f);
        }
        self.trust.store(Arc::new(table));
    }

    /// Every upstream × model with findings: what they mean at `now_ms`
    /// (control plane), sorted by upstream then model.
    pub fn trust_report(&self, now_ms: i64) -> Vec<crate::report::TrustReport> {
        let table = self.trust.load();
        let mut out: Vec<_> = table
            .by_upstream
            .iter()
            .flat_map(|(upstream, models)| {
                models.iter().map(|(model, f)| {
                    let trust = tb_routing::assess(f, self.trust_policy, now_ms);
                    crate::report::TrustReport {
                        upstream_id: upstream.clone(),
                        model: model.clone(),
                        probed_at_ms: f.probed_at_ms,
                        expired: trust.expired,
                        demoted_for_tools: trust.demotion(true),
                        demoted_for_all: trust.demotion(false),
                        findings: f.checks.clone(),
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.upstream_id, &a.model).cmp(&(&b.upstream_id, &b.model)));
        out
    }

    /// Why `id` serving `model` is pushed back for a request, if it is.
    fn demotion(
        &self,
        table: &TrustTable,
        id: &str,
        model: &str,
        now_ms: i64,
        has_tools: bool,
    ) -> Option<Demotion> {
        let findings = table.by_upstream.get(id)?.get(model)?;
        tb_routing::assess(findings, self.trust_policy, now_ms).demotion(has_tools)
    }

    /// Keeps one pool entry per upstream of the current table.
    pub fn sync(&self, upstreams: &[Arc<Upstream>]) {
        lock(&self.pool).sync(upstreams.iter().map(|u| u.id.as_str()));
    }

    fn candidates(
        &self,
        routes: &[&Arc<Upstream>],
        model: &str,
        now_ms: i64,
        sellers: bool,
        demotions: &[Option<Demotion>],
    ) -> Vec<Candidate> {
        let pool = lock(&self.pool);
        routes
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let view = pool.snapshot(u.id.as_str(), now_ms);
                let ms = |v: Option<f64>| {
                    v.filter(|v| v.is_finite() && *v >= 0.0)
                        .map(|v| v.round() as u64)
                };
                Candidate {
                    id: Arc::from(u.id.as_str()),
                    registry_order: i,
                    is_default_seller: sellers && i == 0,
                    health_score: view.health_score,
                    ttft_ms: ms(view.ttft_ms),
                    probe_latency_ms: ms(view.health_probe_latency_ms),
                    avg_latency_ms: ms(view.avg_latency_ms),
                    tokens_per_second: view.avg_tokens_per_second,
                    discount_ppm: Some(u.discount_ppm()),
                    price_usd_micros_per_1m: u.price_of(model).list_price_per_1m(),
                    // The pool reports a half-open trial in flight as benched
                    // "until now" (it may end any moment); for ordering it is
                    // benched: one trial at a time.
                    benched_until_ms: view.benched_until_ms.map(|t| t.max(now_ms + 1)),
                    half_open: view.circuit == tb_pool::CircuitState::HalfOpen,
                    demoted: demotions.get(i).is_some_and(Option::is_some),
                }
            })
            .collect()
    }

    /// Orders the plan: manual providers by their policy, then sellers by
    /// the scorer; upstreams the probe findings demote for this request
    /// (`has_tools`: it carries tools) after the trusted ones, benched
    /// upstreams last (never dropped); stickiness; at most `max_attempts`
    /// upstreams.
    pub fn order(
        &self,
        mut plan: RoutePlan,
        model: &str,
        now_ms: i64,
        auto_mode: PlanMode,
        has_tools: bool,
    ) -> RoutePlan {
        let trust = self.trust.load();
        let (manual, sellers): (Vec<_>, Vec<_>) = plan
            .routes
            .iter()
            .partition(|r| r.upstream.seller_url().is_none());
        let hint: Option<StickyHint> = lock(&self.sticky).hint(model, now_ms);
        let mut ordered = Vec::with_capacity(plan.routes.len().min(self.max_attempts));
        for (group, mode, is_sellers) in [
            (manual, self.manual_mode, false),
            (sellers, auto_mode, true),
        ] {
            if group.is_empty() {
                continue;
            }
            let ups: Vec<&Arc<Upstream>> = group.iter().map(|r| &r.upstream).collect();
            // Findings are per upstream model id (what the probe asked for).
            let demotions: Vec<Option<Demotion>> = if trust.by_upstream.is_empty() {
                Vec::new()
            } else {
                ups.iter()
                    .map(|u| self.demotion(&trust, u.id.as_str(), &plan.model, now_ms, has_tools))
                    .collect()
            };
            let candidates = self.candidates(&ups, model, now_ms, is_sellers, &demotions);
            let mut input = PlanInput::new(&candidates, mode, now_ms);
            input.scorer = self.scorer;
            input.max_attempts = self.max_attempts;
            input.sticky = hint.clone();
            let planned = tb_routing::plan(input);
            plan.decisions.push(GroupDecision {
                sellers: is_sellers,
                protocol: group[0].protocol,
                mode,
                diagnostics: planned.diagnostics.clone(),
                demotions: ups
                    .iter()
                    .zip(&demotions)
                    .filter_map(|(u, d)| d.map(|d| (u.id.as_str().to_string(), d)))
                    .collect(),
            });
            ordered.extend(
                planned
                    .order
                    .iter()
                    .filter_map(|&i| group.get(i).map(|r| (*r).clone())),
            );
        }
        ordered.truncate(self.max_attempts);
        plan.routes = ordered;
        plan
    }

    /// Distinct upstreams tried per request (`routing.max_attempts`).
    pub fn max_attempts(&self) -> usize {
        self.max_attempts
    }

    /// Half-open admission (the planner already put benched ones last).
    pub fn admit(&self, id: &str, now_ms: i64) -> Admission {
        lock(&self.pool).try_acquire(id, now_ms)
    }

    /// A successful answer.
    pub fn success(&self, id: &str, now_ms: i64, metrics: CallMetrics) {
        lock(&self.pool).record_success(id, now_ms, metrics);
    }

    /// A failure that says something about the upstream.
    pub fn failure(&self, id: &str, now_ms: i64, outcome: tb_domain::Outcome) {
        lock(&self.pool).record_failure(id, now_ms, outcome.as_str());
    }

    /// An attempt that ended without judging the upstream (client's fault,
    /// cancelled, our credit): frees a half-open trial.
    pub fn neutral(&self, id: &str) {
        lock(&self.pool).release_trial(id);
    }

    /// A health probe's result (probe metrics never overwrite newer live ones).
    pub fn probe(&self, id: &str, now_ms: i64, ok: bool, latency_ms: Option<u64>) {
        lock(&self.pool).record_probe(id, now_ms, tb_pool::ProbeResult { ok, latency_ms });
    }

    /// A 429: bench the upstream until `Retry-After` (or a short default).
    pub fn rate_limited(&self, id: &str, now_ms: i64, retry_after: Option<&str>) {
        let until = retry_after
            .and_then(|v| tb_pool::parse_retry_after(v, now_ms))
            .unwrap_or(now_ms + DEFAULT_CAPACITY_BLOCK_MS);
        lock(&self.pool).record_capacity_block(id, now_ms, until);
    }

    /// A failover was served by `id`: start there for a while.
    pub fn served_after_failover(&self, model: &str, id: &str, now_ms: i64) {
        lock(&self.sticky).on_failover_served(model, Arc::from(id), now_ms);
    }

    /// One report per upstream: pool state and the score breakdown under
    /// the active scorer (control plane, dashboard, doctor).
    pub fn report(
        &self,
        upstreams: &[Arc<Upstream>],
        model_hint: &str,
        now_ms: i64,
    ) -> Vec<UpstreamReport> {
        let refs: Vec<&Arc<Upstream>> = upstreams.iter().collect();
        let candidates = self.candidates(&refs, model_hint, now_ms, true, &[]);
        let pool = lock(&self.pool);
        upstreams
            .iter()
            .zip(&candidates)
            .map(|(u, c)| UpstreamReport {
                id: u.id.as_str().to_string(),
                seller: u.seller_url().is_some(),
                base_url: u.base_url().to_string(),
                view: pool.snapshot(u.id.as_str(), now_ms),
                last_error_class: pool
                    .entry(u.id.as_str())
                    .and_then(|e| e.last_error_class.clone()),
                discount_ppm: u.discount_ppm(),
                own_prices: u.own_prices(),
                score: tb_routing::score_breakdown(c, self.scorer),
            })
            .collect()
    }

    /// The active scorer.
    pub fn scorer(&self) -> tb_routing::Scorer {
        self.scorer
    }

    /// The failover settings the attempt loop decides with.
    pub fn failover(&self) -> FailoverConfig {
        self.failover
    }

    /// Pool views by upstream id (metrics, control plane, doctor).
    pub fn views(&self, now_ms: i64) -> HashMap<String, tb_pool::PoolView> {
        let pool = lock(&self.pool);
        pool.entries()
            .map(|(id, _)| (id.to_string(), pool.snapshot(id, now_ms)))
            .collect()
    }
}
