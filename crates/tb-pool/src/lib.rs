//! The seller pool: per-upstream health, live metrics and circuit breakers.
//!
//! # Why
//!
//! The route planner orders upstreams by score and pushes broken ones to the
//! back (`routing.md`, "Seller pool" and "Route planner" step 4). Something
//! has to remember, per upstream, how its recent calls and probes went: a
//! breaker that opens after repeated failures and lets one trial through
//! after a cooldown, a 0–100 health score, live latency and throughput, and
//! capacity blocks from `429`s. This crate is that memory, and nothing
//! else.
//!
//! It is a **pure state machine**: no clock, no I/O, no async, no locks.
//! Every event takes the caller's `now_ms`, so tests drive time explicitly
//! and the daemon wraps a [`SellerPool`] in whatever lock it likes. The
//! planner in `tb-routing` (which does not depend on this crate) is fed the
//! plain [`PoolView`] values of [`SellerPool::snapshot`].
//!
//! # Decisions
//!
//! - Latency metrics (`avg_latency_ms`, `ttft_ms`, `avg_inference_ms`) are
//!   EWMAs with weight [`EWMA_ALPHA`] (0.3) for the new sample, seeded by
//!   the first one. `avg_tokens_per_second` is the plain mean of the
//!   successful calls of the last `throughput_window_ms` (10 minutes), kept
//!   in a ring of at most [`MAX_TPS_SAMPLES`] samples.
//! - [`UpstreamStatus`] is derived from observation, circuit and health;
//!   see its documentation.
//! - Probes affect health and the breaker like calls, but a probe observed
//!   before the last call outcome is ignored (live beats probe).
//! - Cancellations, client errors and `429`s are not failures; a trial they
//!   end is given back with [`SellerPool::release_trial`].
//!
//! # Example
//!
//! ```
//! use tb_pool::{Admission, CallMetrics, CircuitState, PoolConfig, SellerPool};
//!
//! let mut pool = SellerPool::new(PoolConfig::default());
//! pool.sync(["seller-a", "seller-b"]);
//!
//! // Three failures within a minute open the circuit for 60 s.
//! for t in [0, 10_000, 20_000] {
//!     pool.record_failure("seller-a", t, "server_error");
//! }
//! assert_eq!(pool.is_benched("seller-a", 20_000), Some(80_000));
//! assert_eq!(
//!     pool.try_acquire("seller-a", 30_000),
//!     Admission::Benched { until_ms: 80_000 }
//! );
//!
//! // After the cooldown exactly one trial goes through.
//! assert_eq!(pool.try_acquire("seller-a", 80_000), Admission::GoHalfOpenTrial);
//! assert!(matches!(pool.try_acquire("seller-a", 80_001), Admission::Benched { .. }));
//!
//! // Its success closes the circuit; health never ends below 60.
//! pool.record_success("seller-a", 81_000, CallMetrics::latency(900));
//! let view = pool.snapshot("seller-a", 81_000);
//! assert_eq!(view.circuit, CircuitState::Closed);
//! assert_eq!(view.health_score, 60);
//! assert_eq!(view.avg_latency_ms, Some(900.0));
//! assert_eq!(pool.try_acquire("seller-b", 81_000), Admission::Go);
//! ```

mod config;
mod entry;
mod pool;
mod retry_after;

pub use config::PoolConfig;
pub use entry::{
    CallMetrics, Circuit, CircuitState, EWMA_ALPHA, FAILURE_HEALTH_PENALTY, INITIAL_HEALTH,
    MAX_TPS_SAMPLES, PROBE_FAILURE_CLASS, PoolEntry, ProbeResult, SUCCESS_HEALTH_FLOOR,
    SUCCESS_HEALTH_GAIN, UNHEALTHY_BELOW, UpstreamStatus,
};
pub use pool::{Admission, PoolView, SellerPool};
pub use retry_after::{parse_http_date, parse_retry_after};
