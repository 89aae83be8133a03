//! The pool: one [`PoolEntry`] per upstream and the events that move it.

use std::collections::{HashMap, HashSet};

use crate::config::PoolConfig;
use crate::entry::{
    CallMetrics, CircuitState, INITIAL_HEALTH, PROBE_FAILURE_CLASS, PoolEntry, ProbeResult,
    UpstreamStatus,
};

/// The answer of [`SellerPool::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed circuit, not capacity-blocked: go ahead.
    Go,
    /// The one half-open trial: go ahead, and end the attempt with exactly
    /// one of [`SellerPool::record_success`], [`SellerPool::record_failure`]
    /// or [`SellerPool::release_trial`] (cancelled, client error, 429…).
    GoHalfOpenTrial,
    /// Open circuit, capacity block, or a half-open trial already in
    /// flight. Advice, not a ban: the planner reorders benched upstreams to
    /// the back and still tries them when nothing else is left; such an
    /// attempt records its outcome as usual but is not a trial.
    Benched {
        /// The soonest the upstream may recover (ms since the epoch).
        until_ms: i64,
    },
}

/// What the scorers and the planner need of one upstream, as plain values
/// (`tb-routing` does not depend on this crate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolView {
    /// 0–100.
    pub health_score: u8,
    /// Live time to first token (EWMA).
    pub ttft_ms: Option<f64>,
    /// Latency of the newest applied successful probe.
    pub health_probe_latency_ms: Option<f64>,
    /// Live whole-call latency (EWMA).
    pub avg_latency_ms: Option<f64>,
    /// Live inference time (EWMA).
    pub avg_inference_ms: Option<f64>,
    /// Mean tokens/s of successful calls within the throughput window of
    /// `now`.
    pub avg_tokens_per_second: Option<f64>,
    /// When a real call last updated the live metrics.
    pub runtime_metrics_observed_at_ms: Option<i64>,
    /// When the newest applied probe was observed.
    pub probe_observed_at_ms: Option<i64>,
    /// The circuit as of `now` (an `Open` past its end shows `HalfOpen`).
    pub circuit: CircuitState,
    /// See [`UpstreamStatus`], as of `now`.
    pub upstream_status: UpstreamStatus,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// A capacity block still running at `now`.
    pub capacity_blocked_until_ms: Option<i64>,
    /// `Some(recover_at)` when benched at `now` (see
    /// [`SellerPool::is_benched`]).
    pub benched_until_ms: Option<i64>,
}

impl PoolView {
    /// The view of an upstream the pool knows nothing about: health 70, no
    /// metrics, closed, `unknown`, not benched.
    pub fn fresh() -> Self {
        Self {
            health_score: INITIAL_HEALTH,
            ttft_ms: None,
            health_probe_latency_ms: None,
            avg_latency_ms: None,
            avg_inference_ms: None,
            avg_tokens_per_second: None,
            runtime_metrics_observed_at_ms: None,
            probe_observed_at_ms: None,
            circuit: CircuitState::Closed,
            upstream_status: UpstreamStatus::Unknown,
            consecutive_failures: 0,
            capacity_blocked_until_ms: None,
            benched_until_ms: None,
        }
    }

    /// Benched at the time of the snapshot.
    pub fn is_benched(&self) -> bool {
        self.benched_until_ms.is_some()
    }
}

impl Default for PoolView {
    fn default() -> Self {
        Self::fresh()
    }
}

/// Every upstream's [`PoolEntry`], keyed by upstream id.
///
/// A pure state machine: every event takes the caller's `now_ms`; nothing
/// reads a clock. Events on an id the pool does not hold are ignored and
/// return `false`.
#[derive(Debug, Clone, Default)]
pub struct SellerPool {
    config: PoolConfig,
    entries: HashMap<String, PoolEntry>,
}

impl SellerPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Makes the pool hold exactly `ids`: missing ones start fresh, ones no
    /// longer present are dropped, the others keep their state.
    pub fn sync<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let wanted: HashSet<&str> = ids.into_iter().collect();
        self.entries.retain(|id, _| wanted.contains(id.as_str()));
        for id in wanted {
            if !self.entries.contains_key(id) {
                self.entries
                    .insert(id.to_owned(), PoolEntry::new(&self.config));
            }
        }
    }

    /// One upstream's record.
    pub fn entry(&self, id: &str) -> Option<&PoolEntry> {
        self.entries.get(id)
    }

    /// Every record, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &PoolEntry)> {
        self.entries.iter().map(|(id, e)| (id.as_str(), e))
    }

    /// Number of upstreams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No upstream held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pool holds `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    fn live_entry(&mut self, id: &str, now_ms: i64) -> Option<&mut PoolEntry> {
        let entry = self.entries.get_mut(id)?;
        entry.advance(now_ms);
        Some(entry)
    }

    /// A call succeeded: `consecutive_failures = 0`, window cleared, circuit
    /// closed (from any state), cooldown reset, `health = max(60, min(100,
    /// health + 10))`, capacity block lifted (the seller just served), live
    /// metrics updated.
    pub fn record_success(&mut self, id: &str, now_ms: i64, metrics: CallMetrics) -> bool {
        let config = self.config;
        let Some(entry) = self.live_entry(id, now_ms) else {
            return false;
        };
        entry.capacity_blocked_until_ms = None;
        entry.apply_call_metrics(now_ms, &metrics, &config);
        entry.on_success(now_ms, &config);
        true
    }

    /// A call failed (server error, deadline, auth, purchase, empty
    /// completion…). `health −= 25` (floor 0); the failure joins the
    /// window, and `max_failures` of them within `window_ms` open a closed
    /// circuit for `cooldown_ms`; in half-open the circuit re-opens with the
    /// cooldown doubled (capped at `max_cooldown_ms`).
    ///
    /// Caller cancellations and the caller's own bad requests
    /// (`client_error`) are **not** failures: do not call this for them; end
    /// a trial with [`release_trial`](Self::release_trial) instead. A `429`
    /// is [`record_capacity_block`](Self::record_capacity_block), not a
    /// failure.
    pub fn record_failure(&mut self, id: &str, now_ms: i64, error_class: &str) -> bool {
        let config = self.config;
        let Some(entry) = self.live_entry(id, now_ms) else {
            return false;
        };
        entry.last_live_at_ms = Some(now_ms);
        entry.on_failure(now_ms, error_class, &config);
        true
    }

    /// A capacity block until `until_ms` (a `429` with `Retry-After`, see
    /// [`parse_retry_after`](crate::parse_retry_after), or a seller's
    /// `capacityBlockedUntil`). Blocks only extend: the later of a running
    /// block and the new one wins; a block ends when its time passes or a
    /// call succeeds. Health and circuit are untouched, and a half-open
    /// trial is not released (call [`release_trial`](Self::release_trial)
    /// for the attempt that got the 429).
    pub fn record_capacity_block(&mut self, id: &str, now_ms: i64, until_ms: i64) -> bool {
        let Some(entry) = self.live_entry(id, now_ms) else {
            return false;
        };
        let running = entry
            .capacity_blocked_until_ms
            .filter(|&until| until > now_ms);
        entry.capacity_blocked_until_ms = match running {
            Some(current) => Some(current.max(until_ms)),
            None => (until_ms > now_ms).then_some(until_ms),
        };
        true
    }

    /// A health probe observed at `now_ms`. Health and breaker effects are
    /// those of a call success or failure (the failure class is
    /// [`PROBE_FAILURE_CLASS`]); a success sets `health_probe_latency_ms`.
    /// Live metrics beat probes: a probe observed before the last call
    /// outcome (or before the newest applied probe) is superseded and
    /// ignored entirely. Returns `true` when the probe was applied.
    pub fn record_probe(&mut self, id: &str, now_ms: i64, probe: ProbeResult) -> bool {
        let config = self.config;
        let Some(entry) = self.entries.get_mut(id) else {
            return false;
        };
        if entry.probe_superseded(now_ms) {
            return false;
        }
        entry.advance(now_ms);
        entry.probe_observed_at_ms = Some(now_ms);
        if probe.ok {
            if let Some(latency) = probe.latency_ms {
                #[allow(clippy::cast_precision_loss)]
                let latency = latency as f64;
                entry.health_probe_latency_ms = Some(latency);
            }
            entry.on_success(now_ms, &config);
        } else {
            entry.on_failure(now_ms, PROBE_FAILURE_CLASS, &config);
        }
        true
    }

    /// Asks to send a request to `id` now. Moves an `Open` circuit past its
    /// end to `HalfOpen`, then: benched ⇒ [`Admission::Benched`]; half-open
    /// with no trial in flight ⇒ marks the trial and answers
    /// [`Admission::GoHalfOpenTrial`]; else [`Admission::Go`]. An id the pool
    /// does not hold gets `Go` (nothing is known against it).
    pub fn try_acquire(&mut self, id: &str, now_ms: i64) -> Admission {
        let config = self.config;
        let Some(entry) = self.live_entry(id, now_ms) else {
            return Admission::Go;
        };
        if let Some(until_ms) = entry.benched_until(now_ms, &config) {
            return Admission::Benched { until_ms };
        }
        if entry.circuit.state() == CircuitState::HalfOpen {
            entry.start_trial(now_ms);
            return Admission::GoHalfOpenTrial;
        }
        Admission::Go
    }

    /// Ends a half-open trial without a verdict (cancelled, client error,
    /// 429) so the next request may try. Returns `false` for an unknown id.
    pub fn release_trial(&mut self, id: &str) -> bool {
        let Some(entry) = self.entries.get_mut(id) else {
            return false;
        };
        entry.release_trial();
        true
    }

    /// `Some(recover_at)` when `id` is benched at `now_ms`: open circuit
    /// (its end), capacity-blocked (the block's end), or half-open with a
    /// trial in flight (`now_ms`: it may end any moment); with several, the
    /// latest. The planner sorts benched upstreams to the back, soonest
    /// `recover_at` first, and never drops them. `None` for unknown ids.
    pub fn is_benched(&self, id: &str, now_ms: i64) -> Option<i64> {
        self.entries.get(id)?.benched_until(now_ms, &self.config)
    }

    /// The plain values the scorers need, as of `now_ms`;
    /// [`PoolView::fresh`] for an id the pool does not hold.
    pub fn snapshot(&self, id: &str, now_ms: i64) -> PoolView {
        let Some(entry) = self.entries.get(id) else {
            return PoolView::fresh();
        };
        PoolView {
            health_score: entry.health_score,
            ttft_ms: entry.ttft_ms,
            health_probe_latency_ms: entry.health_probe_latency_ms,
            avg_latency_ms: entry.avg_latency_ms,
            avg_inference_ms: entry.avg_inference_ms,
            avg_tokens_per_second: entry.tps_mean(now_ms, &self.config),
            runtime_metrics_observed_at_ms: entry.runtime_metrics_observed_at_ms,
            probe_observed_at_ms: entry.probe_observed_at_ms,
            circuit: entry.effective_circuit(now_ms).state(),
            upstream_status: entry.status_at(now_ms),
            consecutive_failures: entry.consecutive_failures,
            capacity_blocked_until_ms: entry
                .capacity_blocked_until_ms
                .filter(|&until| until > now_ms),
            benched_until_ms: entry.benched_until(now_ms, &self.config),
        }
    }
}
