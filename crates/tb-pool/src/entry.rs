//! One upstream's state: circuit, health, live and probe metrics.

use std::collections::VecDeque;
use std::fmt;

use crate::config::PoolConfig;

/// Health of an upstream nobody has observed yet.
pub const INITIAL_HEALTH: u8 = 70;
/// A success never leaves the health below this.
pub const SUCCESS_HEALTH_FLOOR: u8 = 60;
/// Health gained by a success (capped at 100).
pub const SUCCESS_HEALTH_GAIN: u8 = 10;
/// Health lost by a failure (floored at 0).
pub const FAILURE_HEALTH_PENALTY: u8 = 25;
/// Weight of a new sample in the latency moving averages
/// (`avg_latency_ms`, `ttft_ms`, `avg_inference_ms`).
pub const EWMA_ALPHA: f64 = 0.3;
/// Most tokens/s samples kept per upstream. Under heavy traffic the
/// throughput mean covers the last this-many calls of the window.
pub const MAX_TPS_SAMPLES: usize = 128;
/// `last_error_class` of a failed health probe.
pub const PROBE_FAILURE_CLASS: &str = "probe_failed";

/// The circuit breaker of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// Benched until `until_ms`; the first admission at or after it moves
    /// the circuit to [`HalfOpen`](Self::HalfOpen).
    Open {
        /// When the cooldown ends (ms since the epoch).
        until_ms: i64,
    },
    /// Cooling down is over: exactly one request at a time may try it.
    HalfOpen {
        /// A trial was admitted and its result is not recorded yet.
        trial_in_flight: bool,
    },
}

impl Circuit {
    /// The state without its data.
    pub fn state(&self) -> CircuitState {
        match self {
            Circuit::Closed => CircuitState::Closed,
            Circuit::Open { .. } => CircuitState::Open,
            Circuit::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// The name of a circuit state, as the control plane and `doctor` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// `closed`
    Closed,
    /// `open`
    Open,
    /// `half_open`
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A coarse verdict on an upstream, derived from its circuit and health.
///
/// Derivation (first rule that matches):
/// 1. `Unknown`: nothing observed yet (no call outcome, no probe).
/// 2. `Unhealthy`: the circuit is open, or `health_score < 30`.
/// 3. `Degraded`: the circuit is half-open, or `health_score < 60`, or the
///    last outcome was a failure (`consecutive_failures > 0`).
/// 4. `Healthy`: otherwise (closed, health ≥ 60, last outcome a success).
///
/// A capacity block does not change the status: a full seller is not a
/// broken one (the block shows as `benched_until_ms` instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamStatus {
    /// `healthy`
    Healthy,
    /// `degraded`
    Degraded,
    /// `unhealthy`
    Unhealthy,
    /// `unknown`
    Unknown,
}

/// Below this health an observed upstream is [`UpstreamStatus::Unhealthy`].
pub const UNHEALTHY_BELOW: u8 = 30;

impl UpstreamStatus {
    /// `healthy`, `degraded`, `unhealthy` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamStatus::Healthy => "healthy",
            UpstreamStatus::Degraded => "degraded",
            UpstreamStatus::Unhealthy => "unhealthy",
            UpstreamStatus::Unknown => "unknown",
        }
    }

    /// The derivation documented on the type.
    pub fn derive(
        observed: bool,
        circuit: CircuitState,
        health_score: u8,
        consecutive_failures: u32,
    ) -> Self {
        if !observed {
            UpstreamStatus::Unknown
        } else if circuit == CircuitState::Open || health_score < UNHEALTHY_BELOW {
            UpstreamStatus::Unhealthy
        } else if circuit == CircuitState::HalfOpen
            || health_score < SUCCESS_HEALTH_FLOOR
            || consecutive_failures > 0
        {
            UpstreamStatus::Degraded
        } else {
            UpstreamStatus::Healthy
        }
    }
}

impl fmt::Display for UpstreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful call measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallMetrics {
    /// Whole-call latency.
    pub latency_ms: u64,
    /// Time to the first content token (streaming calls).
    pub ttft_ms: Option<u64>,
    /// Time spent generating (first token to end).
    pub inference_ms: Option<u64>,
    /// Output tokens per second. Negative or non-finite values are ignored.
    pub tokens_per_second: Option<f64>,
}

impl CallMetrics {
    /// Metrics with only the whole-call latency.
    pub fn latency(latency_ms: u64) -> Self {
        Self {
            latency_ms,
            ..Self::default()
        }
    }
}

/// The result of one health probe (`GET <seller>/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probe got a healthy answer in time.
    pub ok: bool,
    /// Round-trip time; only used when `ok`.
    pub latency_ms: Option<u64>,
}

/// The pool's record of one upstream.
///
/// Fields are public to read (the control plane shows them); they change
/// only through the events of [`SellerPool`](crate::SellerPool). Times are
/// ms since the Unix epoch, as the caller's clock gave them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolEntry {
    /// The breaker as of the last event or admission. An `Open` whose
    /// `until_ms` has passed turns `HalfOpen` at the next event or
    /// admission; [`SellerPool::snapshot`](crate::SellerPool::snapshot)
    /// already reports it as `half_open`.
    pub circuit: Circuit,
    /// The cooldown of the current (or last) open period; the next re-open
    /// from half-open doubles it (capped), a success resets it.
    pub cooldown_ms: i64,
    /// Re-opens from half-open since the last success.
    pub reopen_count: u32,
    /// When the in-flight half-open trial was admitted.
    pub trial_started_at_ms: Option<i64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Recent failure times, oldest first: at most `max_failures` entries,
    /// none older than `window_ms` as of the last failure.
    pub failure_times: VecDeque<i64>,
    /// Last success (call or probe).
    pub last_success_at_ms: Option<i64>,
    /// Last failure (call or probe).
    pub last_fail_at_ms: Option<i64>,
    /// Last call outcome (success or failure, not probes): probes observed
    /// before it are superseded.
    pub last_live_at_ms: Option<i64>,
    /// 0–100, starts at [`INITIAL_HEALTH`].
    pub health_score: u8,
    /// Latency of the newest applied successful probe.
    pub health_probe_latency_ms: Option<f64>,
    /// Observation time of the newest applied probe.
    pub probe_observed_at_ms: Option<i64>,
    /// EWMA ([`EWMA_ALPHA`]) of successful calls' whole latency.
    pub avg_latency_ms: Option<f64>,
    /// EWMA of successful calls' time to first token.
    pub ttft_ms: Option<f64>,
    /// EWMA of successful calls' inference time.
    pub avg_inference_ms: Option<f64>,
    /// Mean of `tps_samples` within `throughput_window_ms`, as of the last
    /// success (use [`SellerPool::snapshot`](crate::SellerPool::snapshot)
    /// for the value as of now).
    pub avg_tokens_per_second: Option<f64>,
    /// `(observed_at_ms, tokens_per_second)` of recent successful calls,
    /// oldest first, at most [`MAX_TPS_SAMPLES`].
    pub tps_samples: VecDeque<(i64, f64)>,
    /// When a real call last updated the live metrics.
    pub runtime_metrics_observed_at_ms: Option<i64>,
    /// Capacity block (429 Retry-After, seller `capacityBlockedUntil`).
    pub capacity_blocked_until_ms: Option<i64>,
    /// Derived verdict, see [`UpstreamStatus`].
    pub upstream_status: UpstreamStatus,
    /// Class of the last failure (`server_error`, `deadline`, …).
    pub last_error_class: Option<String>,
}

fn ewma(prev: Option<f64>, sample: f64) -> f64 {
    match prev {
        None => sample,
        Some(p) => p + EWMA_ALPHA * (sample - p),
    }
}

/// Integer ms to `f64` for the averages (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn ms(v: u64) -> f64 {
    v as f64
}

impl PoolEntry {
    pub(crate) fn new(config: &PoolConfig) -> Self {
        Self {
            circuit: Circuit::Closed,
            cooldown_ms: config.base_cooldown(),
            reopen_count: 0,
            trial_started_at_ms: None,
            consecutive_failures: 0,
            failure_times: VecDeque::new(),
            last_success_at_ms: None,
            last_fail_at_ms: None,
            last_live_at_ms: None,
            health_score: INITIAL_HEALTH,
            health_probe_latency_ms: None,
            probe_observed_at_ms: None,
            avg_latency_ms: None,
            ttft_ms: None,
            avg_inference_ms: None,
            avg_tokens_per_second: None,
            tps_samples: VecDeque::new(),
            runtime_metrics_observed_at_ms: None,
            capacity_blocked_until_ms: None,
            upstream_status: UpstreamStatus::Unknown,
            last_error_class: None,
        }
    }

    fn observed(&self) -> bool {
        self.last_success_at_ms.is_some() || self.last_fail_at_ms.is_some()
    }

    /// The circuit as of `now`: an expired `Open` is `HalfOpen`.
    pub(crate) fn effective_circuit(&self, now_ms: i64) -> Circuit {
        match self.circuit {
            Circuit::Open { until_ms } if now_ms >= until_ms => Circuit::HalfOpen {
                trial_in_flight: false,
            },
            c => c,
        }
    }

    /// Moves an expired `Open` to `HalfOpen`.
    pub(crate) fn advance(&mut self, now_ms: i64) {
        let effective = self.effective_circuit(now_ms);
        if effective != self.circuit {
            self.circuit = effective;
            self.trial_started_at_ms = None;
            self.refresh_status();
        }
    }

    fn trial_lease_expired(&self, now_ms: i64, config: &PoolConfig) -> bool {
        match self.trial_started_at_ms {
            Some(started) => now_ms.saturating_sub(started) >= config.trial_lease_ms.max(0),
            None => true,
        }
    }

    /// When the upstream may recover, when it is benched at `now`: an open
    /// circuit (its end), a half-open trial in flight (`now`: the trial may
    /// end any moment), a capacity block (its end). With several, the
    /// latest.
    pub(crate) fn benched_until(&self, now_ms: i64, config: &PoolConfig) -> Option<i64> {
        let circuit = match self.effective_circuit(now_ms) {
            Circuit::Open { until_ms } => Some(until_ms),
            Circuit::HalfOpen {
                trial_in_flight: true,
            } if !self.trial_lease_expired(now_ms, config) => Some(now_ms),
            _ => None,
        };
        let capacity = self
            .capacity_blocked_until_ms
            .filter(|&until| until > now_ms);
        match (circuit, capacity) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Admits a half-open trial (the caller checked it is not benched).
    pub(crate) fn start_trial(&mut self, now_ms: i64) {
        self.circuit = Circuit::HalfOpen {
            trial_in_flight: true,
        };
        self.trial_started_at_ms = Some(now_ms);
    }

    pub(crate) fn release_trial(&mut self) {
        if let Circuit::HalfOpen {
            trial_in_flight: true,
        } = self.circuit
        {
            self.circuit = Circuit::HalfOpen {
                trial_in_flight: false,
            };
        }
        self.trial_started_at_ms = None;
    }

    /// Health and breaker effects of a success (call or probe).
    pub(crate) fn on_success(&mut self, now_ms: i64, config: &PoolConfig) {
        self.consecutive_failures = 0;
        self.failure_times.clear();
        self.circuit = Circuit::Closed;
        self.trial_started_at_ms = None;
        self.cooldown_ms = config.base_cooldown();
        self.reopen_count = 0;
        self.health_score = self
            .health_score
            .saturating_add(SUCCESS_HEALTH_GAIN)
            .clamp(SUCCESS_HEALTH_FLOOR, 100);
        self.last_success_at_ms = Some(now_ms);
        self.refresh_status();
    }

    /// Health and breaker effects of a failure (call or probe).
    pub(crate) fn on_failure(&mut self, now_ms: i64, error_class: &str, config: &PoolConfig) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.health_score = self.health_score.saturating_sub(FAILURE_HEALTH_PENALTY);
        self.last_fail_at_ms = Some(now_ms);
        self.last_error_class = Some(error_class.to_owned());

        let window = config.window_ms.max(0);
        self.failure_times.push_back(now_ms);
        self.failure_times
            .retain(|&at| now_ms.saturating_sub(at) < window);
        let threshold = config.threshold();
        while self.failure_times.len() > threshold {
            self.failure_times.pop_front();
        }

        match self.circuit {
            Circuit::Closed => {
                if self.failure_times.len() >= threshold {
                    self.cooldown_ms = config.base_cooldown();
                    self.circuit = Circuit::Open {
                        until_ms: now_ms.saturating_add(self.cooldown_ms),
                    };
                }
            }
            Circuit::HalfOpen { .. } => {
                self.cooldown_ms = self
                    .cooldown_ms
                    .max(config.base_cooldown())
                    .saturating_mul(2)
                    .min(config.cooldown_cap());
                self.reopen_count = self.reopen_count.saturating_add(1);
                self.circuit = Circuit::Open {
                    until_ms: now_ms.saturating_add(self.cooldown_ms),
                };
                self.trial_started_at_ms = None;
            }
            // A forced attempt on a benched upstream failed: the cooldown
            // keeps its end.
            Circuit::Open { .. } => {}
        }
        self.refresh_status();
    }

    /// Live metrics of a successful call.
    pub(crate) fn apply_call_metrics(
        &mut self,
        now_ms: i64,
        metrics: &CallMetrics,
        config: &PoolConfig,
    ) {
        self.avg_latency_ms = Some(ewma(self.avg_latency_ms, ms(metrics.latency_ms)));
        if let Some(t) = metrics.ttft_ms {
            self.ttft_ms = Some(ewma(self.ttft_ms, ms(t)));
        }
        if let Some(t) = metrics.inference_ms {
            self.avg_inference_ms = Some(ewma(self.avg_inference_ms, ms(t)));
        }
        if let Some(tps) = metrics
            .tokens_per_second
            .filter(|v| v.is_finite() && *v >= 0.0)
        {
            self.tps_samples.push_back((now_ms, tps));
            while self.tps_samples.len() > MAX_TPS_SAMPLES {
                self.tps_samples.pop_front();
            }
        }
        let window = config.throughput_window_ms.max(0);
        self.tps_samples
            .retain(|&(at, _)| now_ms.saturating_sub(at) < window);
        self.avg_tokens_per_second = self.tps_mean(now_ms, config);
        self.runtime_metrics_observed_at_ms = Some(now_ms);
        self.last_live_at_ms = Some(now_ms);
    }

    /// Mean tokens/s of the samples within the throughput window of `now`.
    pub(crate) fn tps_mean(&self, now_ms: i64, config: &PoolConfig) -> Option<f64> {
        let window = config.throughput_window_ms.max(0);
        let (sum, n) = self
            .tps_samples
            .iter()
            .filter(|&&(at, _)| now_ms.saturating_sub(at) < window)
            .fold((0.0_f64, 0_u32), |(s, n), &(_, v)| (s + v, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    /// True when a probe observed at `now` is older than what the entry
    /// already knows (a later call outcome or a later probe).
    pub(crate) fn probe_superseded(&self, now_ms: i64) -> bool {
        self.last_live_at_ms.is_some_and(|live| now_ms < live)
            || self
                .probe_observed_at_ms
                .is_some_and(|probe| now_ms < probe)
    }

    pub(crate) fn refresh_status(&mut self) {
        self.upstream_status = UpstreamStatus::derive(
            self.observed(),
            self.circuit.state(),
            self.health_score,
            self.consecutive_failures,
        );
    }

    /// Status as of `now` (an expired `Open` counts as half-open).
    pub(crate) fn status_at(&self, now_ms: i64) -> UpstreamStatus {
        UpstreamStatus::derive(
            self.observed(),
            self.effective_circuit(now_ms).state(),
            self.health_score,
            self.consecutive_failures,
        )
    }
}
