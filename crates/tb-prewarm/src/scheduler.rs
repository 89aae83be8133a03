//! The async edge: the sweep scheduler, lazy warm-ups and the handle the
//! daemon keeps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::cache::{
    EntrySnapshot, PrewarmCache, PrewarmKey, PrewarmState, ProbedCandidate, Source,
};

/// A boxed, sendable future (what the object-safe traits return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many lazy warm-up requests may wait for the scheduler; more are
/// dropped (the next request for the key asks again).
pub const LAZY_QUEUE_CAPACITY: usize = 256;

/// One seller to probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProbeTarget {
    /// The upstream (seller) id; probes are deduplicated by it.
    pub upstream_id: String,
    /// The seller's base URL; the daemon probes `GET <url>/healthz`.
    pub url: String,
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// Whether the seller answered healthy.
    pub ok: bool,
    /// The probe latency, when there was an answer.
    pub latency_ms: Option<u64>,
}

impl ProbeOutcome {
    /// A healthy answer after `latency_ms`.
    pub fn healthy(latency_ms: u64) -> ProbeOutcome {
        ProbeOutcome {
            ok: true,
            latency_ms: Some(latency_ms),
        }
    }

    /// A failed probe (error, unhealthy answer, timeout).
    pub fn failed(latency_ms: Option<u64>) -> ProbeOutcome {
        ProbeOutcome {
            ok: false,
            latency_ms,
        }
    }
}

/// Which sellers serve a model, resolved by the daemon from its routing
/// table. Called once per focus model per sweep, and per model of a lazy
/// warm-up; must be quick (no I/O).
pub trait Targets: Send + Sync {
    /// The keys the model is warmed under (the protocol is the model's
    /// prewarm protocol), each with the sellers serving it.
    fn targets(&self, model: &str) -> Vec<(PrewarmKey, Vec<ProbeTarget>)>;
}

/// Probes one seller (the daemon: `GET <url>/healthz`).
pub trait Prober: Send + Sync {
    /// Probes `target`. The scheduler also enforces `timeout` (a probe still
    /// running then is dropped and counts as a failure), so implementations
    /// may use it for their own connect/read limits or ignore it.
    fn probe<'a>(
        &'a self,
        target: &'a ProbeTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeOutcome>;
}

/// Where probe results go (the daemon: the seller pool, where live metrics
/// observed later win over these).
pub trait ProbeSink: Send + Sync {
    /// Records one probe result, observed at `now_ms` (Unix milliseconds).
    fn record(&self, upstream_id: &str, now_ms: i64, outcome: ProbeOutcome);
}

/// The `prewarm.*` settings (`operations.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrewarmConfig {
    /// Seconds between sweeps (also the back-off unit); 0 is taken as 1.
    pub refresh_secs: u64,
    /// How long one probe may take.
    pub probe_timeout_ms: u64,
    /// How many probes may run at once; 0 is taken as 1.
    pub max_concurrent_probes: usize,
    /// How long a warm entry stays warm.
    pub ttl_ms: u64,
    /// The startup sweep runs after a random delay in this inclusive range
    /// (bounds in either order); `(0, 0)` sweeps at once.
    pub startup_jitter_ms: (u64, u64),
}

impl Default for PrewarmConfig {
    fn default() -> PrewarmConfig {
        PrewarmConfig {
            refresh_secs: 60,
            probe_timeout_ms: 3_000,
            max_concurrent_probes: 8,
            ttl_ms: 120_000,
            startup_jitter_ms: (5_000, 10_000),
        }
    }
}

impl PrewarmConfig {
    fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh_secs.max(1))
    }

    /// A uniformly random startup delay in the jitter range (the low bound
    /// when the system RNG fails).
    fn startup_jitter(&self) -> Duration {
        let (a, b) = self.startup_jitter_ms;
        let (lo, hi) = (a.min(b), a.max(b));
        let span = hi - lo;
        let offset = match span {
            0 => 0,
            _ => getrandom::u64().map_or(0, |r| r % (span.saturating_add(1)).max(1)),
        };
        Duration::from_millis(lo + offset)
    }
}

/// Counters of the scheduler, for the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerStats {
    /// Sweeps completed.
    pub sweeps_run: u64,
    /// Lazy warm-up batches completed.
    pub lazy_warmups_run: u64,
    /// Probes started (sweeps and lazy warm-ups).
    pub probes_sent: u64,
    /// Probes that failed or timed out.
    pub probes_failed: u64,
    /// When the last completed sweep began (Unix milliseconds).
    pub last_sweep_at_ms: Option<i64>,
}

/// What `GET /v1/prewarm` shows of the prewarmer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrewarmSnapshot {
    /// The instant the states were evaluated at (Unix milliseconds).
    pub now_ms: i64,
    /// The focus set.
    pub focus: Vec<String>,
    /// Every known key, sorted.
    pub entries: Vec<EntrySnapshot>,
    /// Scheduler counters.
    pub stats: SchedulerStats,
}

/// What the request path learns about a key from [`PrewarmHandle::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrewarmLookup {
    /// Where the planner takes its metrics from.
    pub source: Source,
    /// The candidates to merge (empty with [`Source::RegistryFallback`]).
    pub candidates: Vec<ProbedCandidate>,
    /// Whether this lookup scheduled a lazy warm-up.
    pub warmup_scheduled: bool,
}

/// Starts the prewarm scheduler.
#[derive(Debug)]
pub struct Prewarmer;

impl Prewarmer {
    /// Spawns the scheduler on the current tokio runtime and returns its
    /// handle.
    ///
    /// The startup sweep runs after a random delay in
    /// `config.startup_jitter_ms`, then one every `config.refresh_secs`
    /// (a sweep still running when the next is due delays it). A sweep warms
    /// every key [`Targets`] lists for the `focus` models, except keys
    /// already warming or backing off, probing each seller once however
    /// many keys it serves.
    ///
    /// The scheduler stops when `shutdown` completes, when
    /// [`PrewarmHandle::stop`] is called, or when every handle is dropped;
    /// in-flight probes are dropped then.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn<F>(
        config: PrewarmConfig,
        focus: Vec<String>,
        targets: Arc<dyn Targets>,
        prober: Arc<dyn Prober>,
        sink: Arc<dyn ProbeSink>,
        shutdown: F,
    ) -> PrewarmHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let refresh = config.refresh();
        let first_sweep = Instant::now() + config.startup_jitter();
        let refresh_ms = u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cache: PrewarmCache::new(config.ttl_ms, refresh_ms),
                stats: SchedulerStats::default(),
                pending: HashSet::new(),
            }),
            clock: Clock::start(),
            focus,
            targets,
            prober,
            sink,
            probe_timeout: Duration::from_millis(config.probe_timeout_ms),
            permits: Arc::new(Semaphore::new(config.max_concurrent_probes.max(1))),
        });
        let (lazy_tx, lazy_rx) = mpsc::channel(LAZY_QUEUE_CAPACITY);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_scheduler(
            Arc::clone(&shared),
            lazy_rx,
            stop_rx,
            shutdown,
            first_sweep,
            refresh,
        ));
        PrewarmHandle {
            inner: Arc::new(HandleInner {
                shared,
                lazy_tx,
                stop_tx,
                task: tokio::sync::Mutex::new(Some(task)),
            }),
        }
    }
}

/// The daemon's handle on the prewarmer: the request path
/// ([`lookup`](PrewarmHandle::lookup),
/// [`request_warmup`](PrewarmHandle::request_warmup); neither awaits), the
/// control plane ([`snapshot`](PrewarmHandle::snapshot)) and shutdown
/// ([`stop`](PrewarmHandle::stop)). Clones share one prewarmer; dropping
/// every clone stops it.
#[derive(Clone)]
#[must_use = "dropping every PrewarmHandle stops the prewarmer"]
pub struct PrewarmHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for PrewarmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrewarmHandle")
            .field("focus", &self.inner.shared.focus)
            .finish_non_exhaustive()
    }
}

impl PrewarmHandle {
    /// The prewarmer's clock (Unix milliseconds): the wall clock read at
    /// spawn plus the tokio time elapsed since, so paused-time tests see it
    /// advance with `tokio::time`.
    pub fn now_ms(&self) -> i64 {
        self.inner.shared.clock.now_ms()
    }

    /// The focus set.
    pub fn focus(&self) -> &[String] {
        &self.inner.shared.focus
    }

    /// The key's state now.
    pub fn state(&self, key: &PrewarmKey) -> PrewarmState {
        let now = self.now_ms();
        self.inner.shared.lock().cache.state_at(key, now)
    }

    /// Where the planner takes its metrics from for the key, now.
    pub fn source_for(&self, key: &PrewarmKey) -> Source {
        let now = self.now_ms();
        self.inner.shared.lock().cache.source_for(key, now)
    }

    /// Schedules a warm-up of the key when it needs one (cold, stale, or
    /// failed with its back-off over) and none is queued yet. Never waits:
    /// the key is handed to the scheduler through a bounded queue (dropped
    /// when full or when the prewarmer has stopped). Returns whether a
    /// warm-up was scheduled.
    pub fn request_warmup(&self, key: PrewarmKey) -> bool {
        let now = self.now_ms();
        let mut state = self.inner.shared.lock();
        if !state.cache.needs_warmup(&key, now) || state.pending.contains(&key) {
            return false;
        }
        match self.inner.lazy_tx.try_send(key.clone()) {
            Ok(()) => {
                state.pending.insert(key);
                true
            }
            Err(e) => {
                tracing::debug!(target: "prewarm.lazy", key = %key, error = %e, "lazy warm-up not scheduled");
                false
            }
        }
    }

    /// The request path's one call: the source and candidates for the key
    /// and, when the key needs it, a lazy warm-up scheduled without waiting
    /// (the request itself then uses the registry fallback).
    pub fn lookup(&self, key: &PrewarmKey) -> PrewarmLookup {
        let now = self.now_ms();
        let (source, candidates) = {
            let state = self.inner.shared.lock();
            match state.cache.warm_candidates(key, now) {
                Some(c) => (Source::PrewarmCache, c.to_vec()),
                None => (Source::RegistryFallback, Vec::new()),
            }
        };
        let warmup_scheduled =
            source == Source::RegistryFallback && self.request_warmup(key.clone());
        PrewarmLookup {
            source,
            candidates,
            warmup_scheduled,
        }
    }

    /// Entries, focus set and scheduler counters, for the control plane.
    pub fn snapshot(&self) -> PrewarmSnapshot {
        let now = self.now_ms();
        let state = self.inner.shared.lock();
        PrewarmSnapshot {
            now_ms: now,
            focus: self.inner.shared.focus.clone(),
            entries: state.cache.snapshot(now),
            stats: state.stats.clone(),
        }
    }

    /// How many entries are in each state now (`tb_prewarm_entries{state}`).
    pub fn state_counts(&self) -> [(PrewarmState, usize); 5] {
        let now = self.now_ms();
        self.inner.shared.lock().cache.state_counts(now)
    }

    /// Stops the scheduler and waits until it and every probe it started
    /// have ended: no probe outlives this call. Idempotent; concurrent
    /// callers all return once the scheduler is gone.
    pub async fn stop(&self) {
        let _ = self.inner.stop_tx.send(true);
        let mut task = self.inner.task.lock().await;
        if let Some(handle) = task.take()
            && let Err(e) = handle.await
        {
            tracing::warn!(target: "prewarm.stopped", error = %e, "prewarm scheduler ended abnormally");
        }
    }
}

struct HandleInner {
    shared: Arc<Shared>,
    lazy_tx: mpsc::Sender<PrewarmKey>,
    stop_tx: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// What the scheduler and the handle share.
struct Shared {
    state: Mutex<State>,
    clock: Clock,
    focus: Vec<String>,
    targets: Arc<dyn Targets>,
    prober: Arc<dyn Prober>,
    sink: Arc<dyn ProbeSink>,
    probe_timeout: Duration,
    permits: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    cache: PrewarmCache,
    stats: SchedulerStats,
    /// Keys queued for a lazy warm-up and not yet taken by the scheduler.
    pending: HashSet<PrewarmKey>,
}

/// Unix milliseconds that follow tokio time.
struct Clock {
    base_ms: i64,
    start: Instant,
}

impl Clock {
    fn start() -> Clock {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Clock {
            base_ms,
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// Resolves when the receiver's value is `true` or its sender is gone.
async fn cancelled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn run_scheduler<F>(
    shared: Arc<Shared>,
    mut lazy_rx: mpsc::Receiver<PrewarmKey>,
    mut stop_rx: watch::Receiver<bool>,
    shutdown: F,
    first_sweep: Instant,
    refresh: Duration,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    // Jobs watch this; the scheduler flips it before draining them, so every
    // job drops (and waits for) its probes before the scheduler returns.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut jobs: JoinSet<()> = JoinSet::new();
    let mut sweep_task: Option<tokio::task::Id> = None;
    let mut next_sweep = first_sweep;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = cancelled(&mut stop_rx) => break,
            Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => {
                        tracing::warn!(target: "prewarm.sweep", error = %e, "prewarm job ended abnormally");
                        e.id()
                    }
                };
                if sweep_task == Some(id) {
                    sweep_task = None;
                }
            }
            () = tokio::time::sleep_until(next_sweep), if sweep_task.is_none() => {
                let now = Instant::now();
                next_sweep += refresh;
                if next_sweep <= now {
                    next_sweep = now + refresh;
                }
                let job = sweep(Arc::clone(&shared), cancel_rx.clone());
                sweep_task = Some(jobs.spawn(job).id());
            }
            key = lazy_rx.recv() => {
                let Some(key) = key else { break };
                let mut keys = vec![key];
                while let Ok(more) = lazy_rx.try_recv() {
                    keys.push(more);
                }
                {
                    let mut state = shared.lock();
                    for k in &keys {
                        state.pending.remove(k);
                    }
                }
                jobs.spawn(lazy_warmup(Arc::clone(&shared), keys, cancel_rx.clone()));
            }
        }
    }
    let _ = cancel_tx.send(true);
    while jobs.join_next().await.is_some() {}
    tracing::debug!(target: "prewarm.stopped", "prewarm scheduler stopped");
}

/// One sweep over the focus set.
async fn sweep(shared: Arc<Shared>, cancel: watch::Receiver<bool>) {
    let began = shared.clock.now_ms();
    let mut planned: BTreeMap<PrewarmKey, Vec<ProbeTarget>> = BTreeMap::new();
    for model in &shared.focus {
        for (key, targets) in shared.targets.targets(model) {
            planned.entry(key).or_default().extend(targets);
        }
    }
    let Some(report) = warm_keys(&shared, planned, cancel).await else {
        return;
    };
    {
        let mut state = shared.lock();
        state.stats.sweeps_run += 1;
        state.stats.last_sweep_at_ms = Some(began);
    }
    tracing::info!(
        target: "prewarm.sweep",
        keys = report.keys_warmed,
        skipped = report.keys_skipped,
        warm = report.keys_warm,
        probes = report.probes,
        failed = report.probes_failed,
        duration_ms = shared.clock.now_ms().saturating_sub(began),
        "prewarm sweep done"
    );
}

/// Warms the keys requested by the request path.
async fn lazy_warmup(shared: Arc<Shared>, keys: Vec<PrewarmKey>, cancel: watch::Receiver<bool>) {
    // A sweep may have warmed some of them since they were requested.
    let wanted: HashSet<PrewarmKey> = {
        let now = shared.clock.now_ms();
        let state = shared.lock();
        keys.into_iter()
            .filter(|k| state.cache.needs_warmup(k, now))
            .collect()
    };
    if wanted.is_empty() {
        return;
    }
    let models: HashSet<&str> = wanted.iter().map(|k| k.model.as_str()).collect();
    let mut planned: BTreeMap<PrewarmKey, Vec<ProbeTarget>> = BTreeMap::new();
    for model in models {
        for (key, targets) in shared.targets.targets(model) {
            if wanted.contains(&key) {
                planned.entry(key).or_default().extend(targets);
            }
        }
    }
    // A key no seller serves (e.g. a protocol that is not the model's
    // prewarm protocol) is warmed with no candidate: it fails and backs off,
    // so requests for it stop asking.
    for key in wanted {
        planned.entry(key).or_default();
    }
    if let Some(report) = warm_keys(&shared, planned, cancel).await {
        shared.lock().stats.lazy_warmups_run += 1;
        tracing::debug!(
            target: "prewarm.lazy",
            keys = report.keys_warmed,
            warm = report.keys_warm,
            probes = report.probes,
            failed = report.probes_failed,
            "lazy warm-up done"
        );
    }
}

struct WarmReport {
    keys_warmed: usize,
    keys_skipped: usize,
    keys_warm: usize,
    probes: usize,
    probes_failed: usize,
}

/// Begins warming every planned key that may be (not warming, not backing
/// off), probes each of their sellers once, and finishes the keys. `None`
/// when cancelled (every probe has been dropped by then).
async fn warm_keys(
    shared: &Arc<Shared>,
    planned: BTreeMap<PrewarmKey, Vec<ProbeTarget>>,
    mut cancel: watch::Receiver<bool>,
) -> Option<WarmReport> {
    if *cancel.borrow() {
        return None;
    }
    let planned_len = planned.len();
    let keys: Vec<(PrewarmKey, Vec<ProbeTarget>)> = {
        let now = shared.clock.now_ms();
        let mut state = shared.lock();
        planned
            .into_iter()
            .filter(|(key, _)| state.cache.begin_warming(key, now))
            .collect()
    };

    // Each seller once, however many keys it serves.
    let mut sellers: BTreeMap<&str, &ProbeTarget> = BTreeMap::new();
    for target in keys.iter().flat_map(|(_, targets)| targets) {
        sellers.entry(target.upstream_id.as_str()).or_insert(target);
    }
    let mut probes: JoinSet<ProbeOutcome> = JoinSet::new();
    let mut task_upstream: HashMap<tokio::task::Id, String> = HashMap::new();
    for target in sellers.into_values() {
        let id = probes
            .spawn(probe_one(Arc::clone(shared), target.clone()))
            .id();
        task_upstream.insert(id, target.upstream_id.clone());
    }

    let mut outcomes: HashMap<String, ProbeOutcome> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            () = cancelled(&mut cancel) => {
                probes.shutdown().await;
                return None;
            }
            done = probes.join_next_with_id() => match done {
                None => break,
                Some(Ok((id, outcome))) => {
                    if let Some(upstream) = task_upstream.remove(&id) {
                        outcomes.insert(upstream, outcome);
                    }
                }
                Some(Err(e)) => {
                    // A panicking prober counts as a failed probe.
                    tracing::warn!(target: "prewarm.sweep", error = %e, "probe task ended abnormally");
                    if let Some(upstream) = task_upstream.remove(&e.id()) {
                        outcomes.insert(upstream, ProbeOutcome::failed(None));
                    }
                }
            }
        }
    }

    let now = shared.clock.now_ms();
    let mut state = shared.lock();
    let mut keys_warm = 0;
    for (key, targets) in &keys {
        let mut seen: HashSet<&str> = HashSet::new();
        let results: Vec<ProbedCandidate> = targets
            .iter()
            .filter(|t| seen.insert(t.upstream_id.as_str()))
            .map(|t| {
                let outcome = outcomes
                    .get(&t.upstream_id)
                    .copied()
                    .unwrap_or(ProbeOutcome::failed(None));
                ProbedCandidate {
                    upstream_id: t.upstream_id.clone(),
                    latency_ms: outcome.latency_ms,
                    ok: outcome.ok,
                }
            })
            .collect();
        if state.cache.finish_warming(key, now, results) == PrewarmState::Warm {
            keys_warm += 1;
        }
    }
    Some(WarmReport {
        keys_warmed: keys.len(),
        keys_skipped: planned_len - keys.len(),
        keys_warm,
        probes: outcomes.len(),
        probes_failed: outcomes.values().filter(|o| !o.ok).count(),
    })
}

/// Probes one seller under the concurrency limit and the timeout, and feeds
/// the sink.
async fn probe_one(shared: Arc<Shared>, target: ProbeTarget) -> ProbeOutcome {
    let Ok(_permit) = Arc::clone(&shared.permits).acquire_owned().await else {
        return ProbeOutcome::failed(None);
    };
    shared.lock().stats.probes_sent += 1;
    let timeout = shared.probe_timeout;
    let outcome = tokio::time::timeout(timeout, shared.prober.probe(&target, timeout))
        .await
        .unwrap_or(ProbeOutcome::failed(None));
    if !outcome.ok {
        shared.lock().stats.probes_failed += 1;
    }
    shared
        .sink
        .record(&target.upstream_id, shared.clock.now_ms(), outcome);
    outcome
}
