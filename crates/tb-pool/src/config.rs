//! Breaker and metric-window settings.

/// Settings of the seller pool; [`Default`] gives the defaults of
/// `routing.md` (`breaker.*`).
///
/// Durations are milliseconds. Out-of-range values never panic: a
/// `max_failures` of 0 behaves like 1, negative durations like 0, and a
/// `max_cooldown_ms` below `cooldown_ms` like `cooldown_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Failures within [`window_ms`](Self::window_ms) that open the circuit
    /// (`breaker.max_failures`, default 3).
    pub max_failures: u32,
    /// Width of the failure window (`breaker.window_ms`, default 60,000).
    /// A failure counts while `now − at < window_ms`.
    pub window_ms: i64,
    /// How long the circuit stays open the first time
    /// (`breaker.cooldown_ms`, default 60,000).
    pub cooldown_ms: i64,
    /// Cap of the cooldown, which doubles on every re-open from half-open
    /// (`breaker.max_cooldown_ms`, default 600,000).
    pub max_cooldown_ms: i64,
    /// Window of the `avg_tokens_per_second` mean (default 600,000: the last
    /// 10 minutes of successful calls).
    pub throughput_window_ms: i64,
    /// Safety lease of a half-open trial (default 300,000). A trial whose
    /// result was never recorded (a caller bug: every trial must end in
    /// `record_success`, `record_failure` or `release_trial`) stops blocking
    /// the next trial after this long, so a lost result cannot bench an
    /// upstream forever.
    pub trial_lease_ms: i64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_failures: 3,
            window_ms: 60_000,
            cooldown_ms: 60_000,
            max_cooldown_ms: 600_000,
            throughput_window_ms: 600_000,
            trial_lease_ms: 300_000,
        }
    }
}

impl PoolConfig {
    /// Failures needed to open the circuit (at least 1).
    pub(crate) fn threshold(&self) -> usize {
        usize::try_from(self.max_failures.max(1)).unwrap_or(usize::MAX)
    }

    /// The first cooldown, never negative.
    pub(crate) fn base_cooldown(&self) -> i64 {
        self.cooldown_ms.max(0)
    }

    /// The cooldown cap, never below the first cooldown.
    pub(crate) fn cooldown_cap(&self) -> i64 {
        self.max_cooldown_ms.max(self.base_cooldown())
    }
}
