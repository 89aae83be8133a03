//! The prewarm cache: a pure state machine over `(model, protocol,
//! payment_method)` keys. No clock, no I/O, no locks: every transition takes
//! the caller's `now_ms` (Unix milliseconds).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tb_domain::{PaymentMethod, Protocol};

/// The longest back-off after consecutive warming failures, in refresh
/// periods (`routing.md`: "1, 2, 4 … refresh periods, capped at 10").
pub const MAX_BACKOFF_PERIODS: u32 = 10;

/// The planner's reason when a warm entry's probe metrics are merged into the
/// registry candidates (`routing.md`, "Route planner" step 2).
pub const PREWARM_MERGED_REASON: &str = "prewarm_metrics_merged_with_registry";

/// What the cache is keyed by: the same triple the model index uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrewarmKey {
    /// The upstream model id.
    pub model: String,
    /// The protocol the model is warmed (and requested) over.
    pub protocol: Protocol,
    /// How the route is paid for.
    pub payment: PaymentMethod,
}

impl PrewarmKey {
    /// Builds a key.
    pub fn new(model: impl Into<String>, protocol: Protocol, payment: PaymentMethod) -> PrewarmKey {
        PrewarmKey {
            model: model.into(),
            protocol,
            payment,
        }
    }
}

impl fmt::Display for PrewarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.model, self.protocol, self.payment)
    }
}

/// The state of one cache entry, as seen at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrewarmState {
    /// Never warmed (or unknown to the cache).
    Cold,
    /// A warm-up is in progress.
    Warming,
    /// The last warm-up had at least one healthy candidate and is younger
    /// than the entry's TTL.
    Warm,
    /// Was warm, but the TTL has passed since.
    Stale,
    /// The last warm-up found no healthy candidate; the key is backing off.
    Failed,
}

impl PrewarmState {
    /// Every state, in a stable order (metrics label `tb_prewarm_entries{state}`).
    pub const ALL: [PrewarmState; 5] = [
        PrewarmState::Cold,
        PrewarmState::Warming,
        PrewarmState::Warm,
        PrewarmState::Stale,
        PrewarmState::Failed,
    ];

    /// The wire / metrics name (`cold`, `warming`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PrewarmState::Cold => "cold",
            PrewarmState::Warming => "warming",
            PrewarmState::Warm => "warm",
            PrewarmState::Stale => "stale",
            PrewarmState::Failed => "failed",
        }
    }
}

impl fmt::Display for PrewarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One seller's probe result, as remembered for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbedCandidate {
    /// The upstream (seller) id.
    pub upstream_id: String,
    /// The probe latency, when the probe got an answer.
    pub latency_ms: Option<u64>,
    /// Whether the probe succeeded.
    pub ok: bool,
}

/// One cache entry. `state` is the *stored* state: `Stale` is never stored,
/// it is derived from `warmed_at_ms` + `ttl_ms` by [`PrewarmEntry::state_at`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrewarmEntry {
    /// See [`PrewarmState`]; use [`state_at`](PrewarmEntry::state_at) for the
    /// state at a given time.
    pub state: PrewarmState,
    /// The candidates of the last finished warm-up (kept while re-warming).
    pub candidates: Vec<ProbedCandidate>,
    /// When the key was last successfully warmed.
    pub warmed_at_ms: Option<i64>,
    /// How long a successful warm-up stays warm.
    pub ttl_ms: u64,
    /// Warm-ups in a row that found no healthy candidate.
    pub consecutive_warming_failures: u32,
    /// While backing off: no warm-up may begin before this instant.
    pub next_attempt_at_ms: Option<i64>,
    /// When the warm-up in progress began (`None` when not warming).
    pub warming_started_at_ms: Option<i64>,
}

impl PrewarmEntry {
    /// A cold entry with the given TTL.
    pub fn cold(ttl_ms: u64) -> PrewarmEntry {
        PrewarmEntry {
            state: PrewarmState::Cold,
            candidates: Vec::new(),
            warmed_at_ms: None,
            ttl_ms,
            consecutive_warming_failures: 0,
            next_attempt_at_ms: None,
            warming_started_at_ms: None,
        }
    }

    /// The state at `now_ms`: a `Warm` entry older than its TTL is `Stale`.
    pub fn state_at(&self, now_ms: i64) -> PrewarmState {
        match self.state {
            PrewarmState::Warm if !self.is_fresh(now_ms) => PrewarmState::Stale,
            state => state,
        }
    }

    /// Whether the last successful warm-up is younger than the TTL.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        self.warmed_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < ttl_as_i64(self.ttl_ms))
    }

    /// Whether the key is backing off at `now_ms`.
    pub fn is_backing_off(&self, now_ms: i64) -> bool {
        self.next_attempt_at_ms.is_some_and(|at| now_ms < at)
    }

    /// Whether the planner may merge this entry's candidates: it is warm, or
    /// it is being re-warmed while its previous (healthy) result is still
    /// within the TTL. A refresh therefore never flips a warm key to the
    /// registry fallback for the duration of its probes.
    fn is_usable(&self, now_ms: i64) -> bool {
        match self.state {
            PrewarmState::Warm => self.is_fresh(now_ms),
            PrewarmState::Warming => self.is_fresh(now_ms) && self.candidates.iter().any(|c| c.ok),
            _ => false,
        }
    }

    /// A warm-up that began a whole TTL ago and never finished (its task was
    /// lost) no longer blocks new ones.
    fn is_abandoned_warming(&self, now_ms: i64) -> bool {
        self.warming_started_at_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= ttl_as_i64(self.ttl_ms))
    }
}

/// Where the planner takes its candidates' metrics from
/// (`routing.md`, "Route planner" step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A warm entry's probe metrics are merged into the registry candidates.
    PrewarmCache,
    /// The registry candidates alone.
    RegistryFallback,
}

impl Source {
    /// The diagnostics name (`prewarm_cache`, `registry_fallback`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::PrewarmCache => "prewarm_cache",
            Source::RegistryFallback => "registry_fallback",
        }
    }

    /// The diagnostics reason: [`PREWARM_MERGED_REASON`] for the prewarm
    /// cache, none for the fallback.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Source::PrewarmCache => Some(PREWARM_MERGED_REASON),
            Source::RegistryFallback => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of [`PrewarmCache::snapshot`]: the key and the entry, with
/// `state` already evaluated at the snapshot's instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySnapshot {
    /// The key.
    pub key: PrewarmKey,
    /// The entry (its `state` is the state at the snapshot's `now_ms`).
    pub entry: PrewarmEntry,
}

/// Back-off length, in refresh periods, after `failures` consecutive
/// warming failures: 0 → 0, then 1, 2, 4, 8, capped at
/// [`MAX_BACKOFF_PERIODS`].
pub fn backoff_periods(failures: u32) -> u32 {
    match failures {
        0 => 0,
        n if n - 1 < 4 => (1u32 << (n - 1)).min(MAX_BACKOFF_PERIODS),
        _ => MAX_BACKOFF_PERIODS,
    }
}

/// The prewarm cache (`routing.md`, "Prewarm").
///
/// Pure: the scheduler wraps it in a lock and passes the time in.
#[derive(Debug, Clone)]
pub struct PrewarmCache {
    ttl_ms: u64,
    refresh_ms: u64,
    entries: HashMap<PrewarmKey, PrewarmEntry>,
}

impl PrewarmCache {
    /// An empty cache. `ttl_ms` is the TTL of new entries; `refresh_ms` is
    /// the refresh period the back-off is counted in.
    pub fn new(ttl_ms: u64, refresh_ms: u64) -> PrewarmCache {
        PrewarmCache {
            ttl_ms,
            refresh_ms,
            entries: HashMap::new(),
        }
    }

    /// The TTL given to new entries.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// The refresh period the back-off is counted in.
    pub fn refresh_ms(&self) -> u64 {
        self.refresh_ms
    }

    /// How many keys the cache knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache knows no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored entry of a key.
    pub fn entry(&self, key: &PrewarmKey) -> Option<&PrewarmEntry> {
        self.entries.get(key)
    }

    /// Makes the key known (cold) so snapshots list it; no-op when known.
    pub fn ensure(&mut self, key: &PrewarmKey) {
        self.entry_mut(key);
    }

    /// The state of a key at `now_ms` (`Cold` when unknown).
    pub fn state_at(&self, key: &PrewarmKey, now_ms: i64) -> PrewarmState {
        self.entries
            .get(key)
            .map_or(PrewarmState::Cold, |e| e.state_at(now_ms))
    }

    /// Whether the key is cold or stale at `now_ms`.
    pub fn is_cold_or_stale(&self, key: &PrewarmKey, now_ms: i64) -> bool {
        matches!(
            self.state_at(key, now_ms),
            PrewarmState::Cold | PrewarmState::Stale
        )
    }

    /// Whether a lazy warm-up of the key is worth scheduling: it is cold or
    /// stale, or it failed and its back-off is over.
    pub fn needs_warmup(&self, key: &PrewarmKey, now_ms: i64) -> bool {
        match self.entries.get(key) {
            None => true,
            Some(e) => match e.state_at(now_ms) {
                PrewarmState::Cold | PrewarmState::Stale | PrewarmState::Failed => {
                    !e.is_backing_off(now_ms)
                }
                PrewarmState::Warming | PrewarmState::Warm => false,
            },
        }
    }

    /// Starts a warm-up of the key. `false` (and no change) when the key is
    /// already warming or backing off; otherwise the entry (created cold when
    /// unknown) becomes `Warming` and the caller must call
    /// [`finish_warming`](PrewarmCache::finish_warming) later.
    pub fn begin_warming(&mut self, key: &PrewarmKey, now_ms: i64) -> bool {
        let entry = self.entry_mut(key);
        if entry.state == PrewarmState::Warming && !entry.is_abandoned_warming(now_ms) {
            return false;
        }
        if entry.is_backing_off(now_ms) {
            return false;
        }
        entry.state = PrewarmState::Warming;
        entry.warming_started_at_ms = Some(now_ms);
        true
    }

    /// Ends a warm-up with the probe results of the key's candidates.
    ///
    /// Any healthy candidate ⇒ `Warm` (failures reset, `warmed_at = now`).
    /// None (or no candidate at all) ⇒ `Failed`, one more consecutive
    /// failure, and no new warm-up before
    /// [`backoff_periods`]`(failures)` refresh periods after the failed
    /// warm-up *began* (so the sweep exactly that many periods later may
    /// try again). Returns the new state.
    pub fn finish_warming(
        &mut self,
        key: &PrewarmKey,
        now_ms: i64,
        results: Vec<ProbedCandidate>,
    ) -> PrewarmState {
        let refresh_ms = self.refresh_ms;
        let entry = self.entry_mut(key);
        let began = entry.warming_started_at_ms.take().unwrap_or(now_ms);
        if results.iter().any(|c| c.ok) {
            entry.state = PrewarmState::Warm;
            entry.warmed_at_ms = Some(now_ms);
            entry.consecutive_warming_failures = 0;
            entry.next_attempt_at_ms = None;
        } else {
            entry.state = PrewarmState::Failed;
            entry.consecutive_warming_failures =
                entry.consecutive_warming_failures.saturating_add(1);
            let periods = u64::from(backoff_periods(entry.consecutive_warming_failures));
            let wait = ttl_as_i64(refresh_ms.saturating_mul(periods));
            entry.next_attempt_at_ms = Some(began.saturating_add(wait));
        }
        entry.candidates = results;
        entry.state
    }

    /// Where the planner should take its metrics from for the key.
    pub fn source_for(&self, key: &PrewarmKey, now_ms: i64) -> Source {
        if self.warm_candidates(key, now_ms).is_some() {
            Source::PrewarmCache
        } else {
            Source::RegistryFallback
        }
    }

    /// The candidates to merge when [`source_for`](PrewarmCache::source_for)
    /// is [`Source::PrewarmCache`]; `None` otherwise. Unhealthy candidates
    /// are included (with `ok = false`); the planner never drops a registry
    /// candidate because of them.
    pub fn warm_candidates(&self, key: &PrewarmKey, now_ms: i64) -> Option<&[ProbedCandidate]> {
        self.entries
            .get(key)
            .filter(|e| e.is_usable(now_ms))
            .map(|e| e.candidates.as_slice())
    }

    /// Every entry sorted by key, with states evaluated at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Vec<EntrySnapshot> {
        let mut out: Vec<EntrySnapshot> = self
            .entries
            .iter()
            .map(|(key, e)| {
                let mut entry = e.clone();
                entry.state = e.state_at(now_ms);
                EntrySnapshot {
                    key: key.clone(),
                    entry,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// How many entries are in each state at `now_ms`, in
    /// [`PrewarmState::ALL`] order (for `tb_prewarm_entries{state}`).
    pub fn state_counts(&self, now_ms: i64) -> [(PrewarmState, usize); 5] {
        let mut counts = PrewarmState::ALL.map(|s| (s, 0usize));
        for e in self.entries.values() {
            let s = e.state_at(now_ms);
            if let Some(slot) = counts.iter_mut().find(|(state, _)| *state == s) {
                slot.1 += 1;
            }
        }
        counts
    }

    fn entry_mut(&mut self, key: &PrewarmKey) -> &mut PrewarmEntry {
        let ttl_ms = self.ttl_ms;
        self.entries
            .entry(key.clone())
            .or_insert_with(|| PrewarmEntry::cold(ttl_ms))
    }
}

fn ttl_as_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TTL: u64 = 120_000;
    const REFRESH: u64 = 60_000;

    fn key(model: &str) -> PrewarmKey {
        PrewarmKey::new(model, Protocol::ChatCompletions, PaymentMethod::Mock)
    }

    fn ok(id: &str, ms: u64) -> ProbedCandidate {
        ProbedCandidate {
            upstream_id: id.into(),
            latency_ms: Some(ms),
            ok: true,
        }
    }

    fn bad(id: &str) -> ProbedCandidate {
        ProbedCandidate {
            upstream_id: id.into(),
            latency_ms: None,
            ok: false,
        }
    }

    /// One step of a scenario: an operation at a time, and what the key
    /// looks like afterwards.
    enum Op {
        Begin(bool),
        Finish(Vec<ProbedCandidate>),
        Look,
    }

    struct Step {
        at: i64,
        op: Op,
        state: PrewarmState,
        source: Source,
        cold_or_stale: bool,
    }

    fn step(at: i64, op: Op, state: PrewarmState, source: Source, cold_or_stale: bool) -> Step {
        Step {
            at,
            op,
            state,
            source,
            cold_or_stale,
        }
    }

    fn run(name: &str, steps: Vec<Step>) {
        let mut cache = PrewarmCache::new(TTL, REFRESH);
        let k = key("m");
        for (i, s) in steps.into_iter().enumerate() {
            match s.op {
                Op::Begin(want) => {
                    assert_eq!(
                        cache.begin_warming(&k, s.at),
                        want,
                        "{name} step {i}: begin"
                    )
                }
                Op::Finish(results) => {
                    cache.finish_warming(&k, s.at, results);
                }
                Op::Look => {}
            }
            assert_eq!(cache.state_at(&k, s.at), s.state, "{name} step {i}: state");
            assert_eq!(
                cache.source_for(&k, s.at),
                s.source,
                "{name} step {i}: source"
            );
            assert_eq!(
                cache.is_cold_or_stale(&k, s.at),
                s.cold_or_stale,
                "{name} step {i}: cold_or_stale"
            );
        }
    }

    use PrewarmState::{Cold, Failed, Stale, Warm, Warming};
    use Source::{PrewarmCache as Cache, RegistryFallback as Fallback};

    #[test]
    fn transitions() {
        let scenarios: Vec<(&str, Vec<Step>)> = vec![
            (
                "unknown key is cold",
                vec![step(0, Op::Look, Cold, Fallback, true)],
            ),
            (
                "warm then stale after ttl",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(0, Op::Begin(false), Warming, Fallback, false),
                    step(
                        500,
                        Op::Finish(vec![ok("a", 40), bad("b")]),
                        Warm,
                        Cache,
                        false,
                    ),
                    step(120_499, Op::Look, Warm, Cache, false),
                    step(120_500, Op::Look, Stale, Fallback, true),
                ],
            ),
            (
                "re-warming keeps a fresh result usable",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(10, Op::Finish(vec![ok("a", 40)]), Warm, Cache, false),
                    step(60_000, Op::Begin(true), Warming, Cache, false),
                    step(60_010, Op::Finish(vec![ok("a", 50)]), Warm, Cache, false),
                    step(180_009, Op::Look, Warm, Cache, false),
                    step(180_010, Op::Look, Stale, Fallback, true),
                    // Re-warming a stale entry: the old data is too old.
                    step(180_010, Op::Begin(true), Warming, Fallback, false),
                ],
            ),
            (
                "all candidates down fails and backs off",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(
                        3_000,
                        Op::Finish(vec![bad("a"), bad("b")]),
                        Failed,
                        Fallback,
                        false,
                    ),
                    step(59_999, Op::Begin(false), Failed, Fallback, false),
                    step(60_000, Op::Begin(true), Warming, Fallback, false),
                    step(60_100, Op::Finish(vec![ok("a", 10)]), Warm, Cache, false),
                ],
            ),
            (
                "no candidate at all is a failure",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(0, Op::Finish(vec![]), Failed, Fallback, false),
                ],
            ),
            (
                "failure after warm drops to fallback",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(0, Op::Finish(vec![ok("a", 10)]), Warm, Cache, false),
                    step(60_000, Op::Begin(true), Warming, Cache, false),
                    step(63_000, Op::Finish(vec![bad("a")]), Failed, Fallback, false),
                ],
            ),
            (
                "an abandoned warm-up stops blocking after a ttl",
                vec![
                    step(0, Op::Begin(true), Warming, Fallback, false),
                    step(119_999, Op::Begin(false), Warming, Fallback, false),
                    step(120_000, Op::Begin(true), Warming, Fallback, false),
                ],
            ),
        ];
        for (name, steps) in scenarios {
            run(name, steps);
        }
    }

    #[test]
    fn backoff_periods_double_and_cap() {
        let table = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (5, 10),
            (6, 10),
            (40, 10),
            (u32::MAX, 10),
        ];
        for (failures, periods) in table {
            assert_eq!(backoff_periods(failures), periods, "failures = {failures}");
        }
    }

    #[test]
    fn backoff_is_counted_from_the_failed_warmup_start() {
        let mut cache = PrewarmCache::new(TTL, REFRESH);
        let k = key("m");
        // (begin at, expected next attempt after the failure, failures)
        let table = [
            (0, 60_000, 1),
            (60_000, 180_000, 2),
            (180_000, 420_000, 3),
            (420_000, 900_000, 4),
            (900_000, 1_500_000, 5),
            (1_500_000, 2_100_000, 6),
        ];
        for (begin, next, failures) in table {
            if begin > 0 {
                assert!(
                    !cache.begin_warming(&k, begin - 1),
                    "backing off before {begin}"
                );
            }
            assert!(cache.begin_warming(&k, begin), "begin at {begin}");
            cache.finish_warming(&k, begin + 3_000, vec![bad("a")]);
            let e = cache.entry(&k).unwrap();
            assert_eq!(e.next_attempt_at_ms, Some(next), "after begin at {begin}");
            assert_eq!(e.consecutive_warming_failures, failures);
            assert!(!cache.needs_warmup(&k, next - 1));
            assert!(cache.needs_warmup(&k, next));
        }
        // Success resets the count and the back-off.
        assert!(cache.begin_warming(&k, 2_100_000));
        cache.finish_warming(&k, 2_100_010, vec![ok("a", 5)]);
        let e = cache.entry(&k).unwrap();
        assert_eq!(e.consecutive_warming_failures, 0);
        assert_eq!(e.next_attempt_at_ms, None);
        assert_eq!(e.warmed_at_ms, Some(2_100_010));
    }

    #[test]
    fn needs_warmup_table() {
        let mut cache = PrewarmCache::new(TTL, REFRESH);
        let (cold, warming, warm, stale, failed) = (
            key("cold"),
            key("warming"),
            key("warm"),
            key("stale"),
            key("failed"),
        );
        cache.ensure(&cold);
        assert!(cache.begin_warming(&warming, 0));
        assert!(cache.begin_warming(&warm, 0));
        cache.finish_warming(&warm, 100_000, vec![ok("a", 1)]);
        assert!(cache.begin_warming(&stale, 0));
        cache.finish_warming(&stale, 0, vec![ok("a", 1)]);
        assert!(cache.begin_warming(&failed, 100_000));
        cache.finish_warming(&failed, 100_000, vec![bad("a")]);
        let now = 150_000;
        let table = [
            (&cold, Cold, true, true),
            (&warming, Warming, false, false),
            (&warm, Warm, false, false),
            (&stale, Stale, true, true),
            (&failed, Failed, false, false),
        ];
        for (k, state, cold_or_stale, needs) in table {
            assert_eq!(cache.state_at(k, now), state, "{k}");
            assert_eq!(cache.is_cold_or_stale(k, now), cold_or_stale, "{k}");
            assert_eq!(cache.needs_warmup(k, now), needs, "{k}");
        }
        // The failed key may be warmed again once its back-off is over.
        assert!(cache.needs_warmup(&failed, 160_000));
        assert_eq!(
            cache.state_counts(now),
            [(Cold, 1), (Warming, 1), (Warm, 1), (Stale, 1), (Failed, 1)]
        );
        let snap = cache.snapshot(now);
        let states: Vec<_> = snap
            .iter()
            .map(|s| (s.key.model.as_str(), s.entry.state))
            .collect();
        assert_eq!(
            states,
            [
                ("cold", Cold),
                ("failed", Failed),
                ("stale", Stale),
                ("warm", Warm),
                ("warming", Warming)
            ]
        );
    }

    #[test]
    fn source_names_and_reasons() {
        let table = [
            (
                Source::PrewarmCache,
                "prewarm_cache",
                Some(PREWARM_MERGED_REASON),
            ),
            (Source::RegistryFallback, "registry_fallback", None),
        ];
        for (source, name, reason) in table {
            assert_eq!(source.as_str(), name);
            assert_eq!(source.to_string(), name);
            assert_eq!(source.reason(), reason);
        }
        assert_eq!(
            PREWARM_MERGED_REASON,
            "prewarm_metrics_merged_with_registry"
        );
    }

    #[test]
    fn warm_candidates_are_the_last_results() {
        let mut cache = PrewarmCache::new(TTL, REFRESH);
        let k = key("m");
        assert_eq!(cache.warm_candidates(&k, 0), None);
        assert!(cache.begin_warming(&k, 0));
        cache.finish_warming(&k, 10, vec![ok("a", 40), bad("b")]);
        assert_eq!(
            cache.warm_candidates(&k, 20),
            Some(&[ok("a", 40), bad("b")][..])
        );
        assert_eq!(cache.warm_candidates(&k, 120_010), None);
    }

    #[test]
    fn state_names() {
        let names: Vec<_> = PrewarmState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["cold", "warming", "warm", "stale", "failed"]);
        assert_eq!(
            key("gpt").to_string(),
            "gpt/chat_completions/mock",
            "key display"
        );
    }
}
