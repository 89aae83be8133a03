//! Prewarming: keeping the models users need warm before they ask.
//!
//! # Why
//!
//! The first request for a model should not be the one that discovers that a
//! seller is down or slow. The daemon therefore probes, ahead of requests,
//! the sellers of the models in its **focus set** and keeps what it learns in
//! a **prewarm cache** keyed by `(model, protocol, payment_method)`. The route
//! planner merges a warm entry's probe metrics into the registry candidates
//! (`source = "prewarm_cache"`, reason
//! `prewarm_metrics_merged_with_registry`) and otherwise uses the registry
//! alone (`registry_fallback`); prewarm never removes a candidate
//! (`routing.md`, "Prewarm" and "Route planner" step 2).
//!
//! The crate has three layers:
//!
//! - [`PrewarmCache`]: a pure state machine (`cold` → `warming` → `warm` →
//!   `stale`, or `failed` with a back-off of 1, 2, 4 … refresh periods
//!   capped at [`MAX_BACKOFF_PERIODS`]). Every transition takes `now_ms`.
//! - [`resolve_focus`]: pure; config, else `TB_WARMUP_MODELS`, else the
//!   ledger's five most used models, else nothing.
//! - [`Prewarmer::spawn`]: the async edge. A startup sweep after a random
//!   5–10 s jitter, then one every `prewarm.refresh_secs`; lazy warm-ups
//!   requested by the request path without waiting; each seller probed at
//!   most once per sweep, at most `max_concurrent_probes` at once, each
//!   within `probe_timeout_ms`; results go to the cache and to a
//!   [`ProbeSink`] (the daemon's seller pool). The daemon supplies the
//!   [`Targets`] (its routing table) and the [`Prober`] (`GET
//!   <url>/healthz`), so this crate does no network I/O itself.
//!
//! # Decisions
//!
//! - Back-off is counted from when the failed warm-up *began*, so after one
//!   failure the very next sweep (one period later) may retry; after `n`
//!   failures, `min(2^(n-1), 10)` periods.
//! - While a warm key is being re-warmed its previous result stays usable
//!   (within the TTL): a refresh never flips the planner to the fallback.
//! - A warm-up that never finished (lost task) stops blocking new ones after
//!   one TTL.
//! - The lazy path ([`PrewarmHandle::request_warmup`],
//!   [`PrewarmHandle::lookup`]) takes a short `std` mutex and a `try_send`;
//!   it never awaits. It schedules keys that are cold, stale, or failed with
//!   their back-off over, once per key until the scheduler takes it. A
//!   requested key that [`Targets`] does not list gets no candidate, fails
//!   and backs off.
//! - Lazy requests queued together are warmed as one batch (sellers
//!   deduplicated); the concurrency limit is shared by sweeps and lazy
//!   warm-ups. A sweep still running when the next is due delays it.
//! - The scheduler's clock is the wall clock at spawn plus tokio time
//!   elapsed, so tests with paused time are deterministic.
//! - Shutdown: the `shutdown` future, [`PrewarmHandle::stop`] or dropping
//!   every handle. `stop` returns once every probe future has been dropped.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tb_domain::{PaymentMethod, Protocol};
//! use tb_prewarm::{
//!     BoxFuture, PrewarmCache, PrewarmConfig, PrewarmKey, PrewarmState, Prewarmer,
//!     ProbeOutcome, ProbeSink, ProbeTarget, Prober, ProbedCandidate, Source, Targets,
//!     resolve_focus,
//! };
//!
//! // The pure cache.
//! let key = PrewarmKey::new("gpt-4o", Protocol::ChatCompletions, PaymentMethod::Mock);
//! let mut cache = PrewarmCache::new(120_000, 60_000);
//! assert!(cache.is_cold_or_stale(&key, 0));
//! assert!(cache.begin_warming(&key, 0));
//! let probed = ProbedCandidate { upstream_id: "s1".into(), latency_ms: Some(42), ok: true };
//! cache.finish_warming(&key, 50, vec![probed]);
//! assert_eq!(cache.source_for(&key, 1_000), Source::PrewarmCache);
//! assert_eq!(cache.state_at(&key, 120_050), PrewarmState::Stale);
//!
//! // The scheduler, with fakes for the daemon's parts.
//! struct OneSeller;
//! impl Targets for OneSeller {
//!     fn targets(&self, model: &str) -> Vec<(PrewarmKey, Vec<ProbeTarget>)> {
//!         let key = PrewarmKey::new(model, Protocol::ChatCompletions, PaymentMethod::Mock);
//!         vec![(key, vec![ProbeTarget { upstream_id: "s1".into(), url: "http://s1".into() }])]
//!     }
//! }
//! struct AlwaysUp;
//! impl Prober for AlwaysUp {
//!     fn probe<'a>(&'a self, _: &'a ProbeTarget, _: Duration) -> BoxFuture<'a, ProbeOutcome> {
//!         Box::pin(async { ProbeOutcome::healthy(12) })
//!     }
//! }
//! struct Ignore;
//! impl ProbeSink for Ignore {
//!     fn record(&self, _: &str, _: i64, _: ProbeOutcome) {}
//! }
//!
//! let rt = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .start_paused(true)
//!     .build()
//!     .unwrap();
//! rt.block_on(async {
//!     let focus = resolve_focus(&[], Some("gpt-4o"), &[]);
//!     let handle = Prewarmer::spawn(
//!         PrewarmConfig::default(),
//!         focus,
//!         Arc::new(OneSeller),
//!         Arc::new(AlwaysUp),
//!         Arc::new(Ignore),
//!         std::future::pending(),
//!     );
//!     // The startup sweep runs within 10 s.
//!     tokio::time::sleep(Duration::from_secs(11)).await;
//!     assert_eq!(handle.state(&key), PrewarmState::Warm);
//!     assert_eq!(handle.snapshot().stats.sweeps_run, 1);
//!     handle.stop().await;
//! });
//! ```

mod cache;
mod focus;
mod scheduler;

pub use cache::{
    EntrySnapshot, MAX_BACKOFF_PERIODS, PREWARM_MERGED_REASON, PrewarmCache, PrewarmEntry,
    PrewarmKey, PrewarmState, ProbedCandidate, Source, backoff_periods,
};
pub use focus::{LEDGER_FOCUS_MODELS, WARMUP_MODELS_ENV, resolve_focus};
pub use scheduler::{
    BoxFuture, LAZY_QUEUE_CAPACITY, PrewarmConfig, PrewarmHandle, PrewarmLookup, PrewarmSnapshot,
    Prewarmer, ProbeOutcome, ProbeSink, ProbeTarget, Prober, SchedulerStats, Targets,
};
