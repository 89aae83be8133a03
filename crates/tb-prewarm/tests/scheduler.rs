//! The scheduler with paused tokio time and fake targets, prober and sink.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tb_domain::{PaymentMethod, Protocol};
use tb_prewarm::{
    BoxFuture, PrewarmConfig, PrewarmHandle, PrewarmKey, PrewarmState, Prewarmer, ProbeOutcome,
    ProbeSink, ProbeTarget, ProbedCandidate, Prober, Source, Targets,
};
use tokio::time::{Instant, sleep, sleep_until};

fn key(model: &str) -> PrewarmKey {
    PrewarmKey::new(model, Protocol::ChatCompletions, PaymentMethod::Mock)
}

fn target(id: &str) -> ProbeTarget {
    ProbeTarget {
        upstream_id: id.into(),
        url: format!("http://{id}.test"),
    }
}

/// model → sellers; counts calls.
#[derive(Default)]
struct FakeTargets {
    models: HashMap<String, Vec<&'static str>>,
    calls: AtomicUsize,
}

impl FakeTargets {
    fn new(models: &[(&str, &[&'static str])]) -> Arc<FakeTargets> {
        Arc::new(FakeTargets {
            models: models
                .iter()
                .map(|(m, s)| (m.to_string(), s.to_vec()))
                .collect(),
            calls: AtomicUsize::new(0),
        })
    }
}

impl Targets for FakeTargets {
    fn targets(&self, model: &str) -> Vec<(PrewarmKey, Vec<ProbeTarget>)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.models.get(model) {
            Some(sellers) => vec![(key(model), sellers.iter().map(|s| target(s)).collect())],
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Behave {
    /// Healthy after this many ms.
    Up(u64),
    /// Unhealthy after this many ms.
    Down(u64),
    /// Never answers.
    Hang,
}

/// Records every call (seller, ms since the test start) and the in-flight
/// high-water mark.
struct FakeProber {
    start: Instant,
    default: Behave,
    behave: Mutex<HashMap<String, Behave>>,
    calls: Mutex<Vec<(String, u64)>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: AtomicUsize,
}

impl FakeProber {
    fn new(default: Behave) -> Arc<FakeProber> {
        Arc::new(FakeProber {
            start: Instant::now(),
            default,
            behave: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn set(&self, seller: &str, behave: Behave) {
        self.behave.lock().unwrap().insert(seller.into(), behave);
    }

    fn calls(&self) -> Vec<(String, u64)> {
        self.calls.lock().unwrap().clone()
    }

    fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Seconds (since the start) at which `seller` was probed.
    fn call_secs(&self, seller: &str) -> Vec<u64> {
        self.calls()
            .into_iter()
            .filter(|(s, _)| s == seller)
            .map(|(_, ms)| ms / 1000)
            .collect()
    }

    fn calls_per_seller(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (s, _) in self.calls() {
            *out.entry(s).or_insert(0) += 1;
        }
        out
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Prober for FakeProber {
    fn probe<'a>(
        &'a self,
        target: &'a ProbeTarget,
        _timeout: Duration,
    ) -> BoxFuture<'a, ProbeOutcome> {
        Box::pin(async move {
            let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap();
            self.calls
                .lock()
                .unwrap()
                .push((target.upstream_id.clone(), elapsed));
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _guard = InFlight(Arc::clone(&self.in_flight));
            let behave = self
                .behave
                .lock()
                .unwrap()
                .get(&target.upstream_id)
                .copied()
                .unwrap_or(self.default);
            match behave {
                Behave::Up(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    ProbeOutcome::healthy(ms)
                }
                Behave::Down(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    ProbeOutcome::failed(Some(ms))
                }
                Behave::Hang => std::future::pending().await,
            }
        })
    }
}

#[derive(Default)]
struct FakeSink {
    records: Mutex<Vec<(String, i64, ProbeOutcome)>>,
}

impl ProbeSink for FakeSink {
    fn record(&self, upstream_id: &str, now_ms: i64, outcome: ProbeOutcome) {
        self.records
            .lock()
            .unwrap()
            .push((upstream_id.into(), now_ms, outcome));
    }
}

impl FakeSink {
    fn records(&self) -> Vec<(String, i64, ProbeOutcome)> {
        self.records.lock().unwrap().clone()
    }
}

fn config(jitter: (u64, u64)) -> PrewarmConfig {
    PrewarmConfig {
        startup_jitter_ms: jitter,
        ..PrewarmConfig::default()
    }
}

struct Rig {
    start: Instant,
    start_ms: i64,
    handle: PrewarmHandle,
    targets: Arc<FakeTargets>,
    prober: Arc<FakeProber>,
    sink: Arc<FakeSink>,
}

impl Rig {
    fn spawn(
        config: PrewarmConfig,
        focus: &[&str],
        targets: Arc<FakeTargets>,
        prober: Arc<FakeProber>,
    ) -> Rig {
        let sink = Arc::new(FakeSink::default());
        let handle = Prewarmer::spawn(
            config,
            focus.iter().map(|s| s.to_string()).collect(),
            targets.clone(),
            prober.clone(),
            sink.clone(),
            std::future::pending(),
        );
        Rig {
            start: prober.start,
            start_ms: handle.now_ms(),
            handle,
            targets,
            prober,
            sink,
        }
    }

    async fn at_ms(&self, ms: u64) {
        sleep_until(self.start + Duration::from_millis(ms)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn startup_sweep_runs_after_the_jitter() {
    let rig = Rig::spawn(
        config((5_000, 10_000)),
        &["m"],
        FakeTargets::new(&[("m", &["s1"])]),
        FakeProber::new(Behave::Up(20)),
    );
    rig.at_ms(4_999).await;
    assert_eq!(
        rig.prober.call_count(),
        0,
        "nothing before the jitter's low bound"
    );
    assert_eq!(rig.handle.snapshot().stats.sweeps_run, 0);
    assert_eq!(rig.handle.state(&key("m")), PrewarmState::Cold);

    rig.at_ms(10_100).await;
    let calls = rig.prober.calls();
    assert_eq!(calls.len(), 1, "one startup sweep by the high bound");
    assert!(
        (5_000..=10_000).contains(&calls[0].1),
        "sweep at {} ms",
        calls[0].1
    );
    let snap = rig.handle.snapshot();
    assert_eq!(snap.stats.sweeps_run, 1);
    assert_eq!(snap.stats.probes_sent, 1);
    assert_eq!(snap.focus, ["m"]);
    assert_eq!(
        snap.stats.last_sweep_at_ms,
        Some(rig.start_ms + i64::try_from(calls[0].1).unwrap())
    );
    assert_eq!(rig.handle.state(&key("m")), PrewarmState::Warm);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn zero_jitter_sweeps_at_once_then_every_refresh_period() {
    let rig = Rig::spawn(
        config((0, 0)),
        &["m"],
        FakeTargets::new(&[("m", &["s1"])]),
        FakeProber::new(Behave::Up(20)),
    );
    rig.at_ms(180_500).await;
    assert_eq!(rig.prober.call_secs("s1"), [0, 60, 120, 180]);
    let snap = rig.handle.snapshot();
    assert_eq!(snap.stats.sweeps_run, 4);
    assert_eq!(snap.stats.last_sweep_at_ms, Some(rig.start_ms + 180_000));
    // Refreshed every 60 s with a 120 s TTL: never stale.
    assert_eq!(rig.handle.state(&key("m")), PrewarmState::Warm);
    assert_eq!(rig.handle.source_for(&key("m")), Source::PrewarmCache);
    assert_eq!(rig.sink.records().len(), 4);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_seller_is_probed_once_per_sweep_whatever_it_serves() {
    let rig = Rig::spawn(
        config((0, 0)),
        &["m1", "m2", "m3"],
        FakeTargets::new(&[
            ("m1", &["s1"]),
            ("m2", &["s1", "s2"]),
            ("m3", &["s1", "s2", "s3"]),
        ]),
        FakeProber::new(Behave::Up(30)),
    );
    rig.at_ms(1_000).await;
    let per_seller = rig.prober.calls_per_seller();
    assert_eq!(per_seller.len(), 3);
    assert!(per_seller.values().all(|n| *n == 1), "{per_seller:?}");
    assert_eq!(
        rig.targets.calls.load(Ordering::SeqCst),
        3,
        "one lookup per focus model"
    );
    assert_eq!(rig.sink.records().len(), 3);
    for m in ["m1", "m2", "m3"] {
        assert_eq!(rig.handle.state(&key(m)), PrewarmState::Warm, "{m}");
    }
    let lookup = rig.handle.lookup(&key("m3"));
    assert_eq!(lookup.source, Source::PrewarmCache);
    assert!(!lookup.warmup_scheduled);
    let ids: Vec<_> = lookup
        .candidates
        .iter()
        .map(|c| c.upstream_id.as_str())
        .collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    assert!(
        lookup
            .candidates
            .iter()
            .all(|c| c.ok && c.latency_ms == Some(30))
    );

    rig.at_ms(61_000).await;
    assert!(rig.prober.calls_per_seller().values().all(|n| *n == 2));
    assert_eq!(rig.handle.snapshot().stats.probes_sent, 6);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_limit() {
    let sellers: Vec<&'static str> = (0..20)
        .map(|i| &*Box::leak(format!("s{i:02}").into_boxed_str()))
        .collect();
    let rig = Rig::spawn(
        PrewarmConfig {
            max_concurrent_probes: 3,
            ..config((0, 0))
        },
        &["m"],
        FakeTargets::new(&[("m", &sellers)]),
        FakeProber::new(Behave::Up(100)),
    );
    rig.at_ms(5_000).await;
    assert_eq!(rig.prober.call_count(), 20);
    assert_eq!(rig.prober.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(rig.prober.in_flight(), 0);
    // 20 probes of 100 ms, 3 at a time: the last starts at 600 ms.
    let last_start = rig.prober.calls().iter().map(|(_, ms)| *ms).max().unwrap();
    assert_eq!(last_start, 600);
    assert_eq!(rig.handle.snapshot().stats.probes_sent, 20);
    assert_eq!(rig.handle.state(&key("m")), PrewarmState::Warm);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_failures() {
    let prober = FakeProber::new(Behave::Up(10));
    prober.set("slow", Behave::Hang);
    let rig = Rig::spawn(
        config((0, 0)),
        &["only-slow", "mixed"],
        FakeTargets::new(&[("only-slow", &["slow"]), ("mixed", &["slow", "fast"])]),
        prober,
    );
    rig.at_ms(2_999).await;
    assert_eq!(rig.prober.in_flight(), 1, "the slow probe is still running");
    rig.at_ms(3_500).await;
    assert_eq!(rig.prober.in_flight(), 0, "the timed-out probe was dropped");

    let records = rig.sink.records();
    assert_eq!(records.len(), 2);
    let slow = records.iter().find(|(id, _, _)| id == "slow").unwrap();
    assert_eq!(slow.1, rig.start_ms + 3_000, "recorded at the timeout");
    assert_eq!(slow.2, ProbeOutcome::failed(None));
    let fast = records.iter().find(|(id, _, _)| id == "fast").unwrap();
    assert_eq!(fast.2, ProbeOutcome::healthy(10));

    let snap = rig.handle.snapshot();
    assert_eq!(snap.stats.probes_sent, 2);
    assert_eq!(snap.stats.probes_failed, 1);
    assert_eq!(rig.handle.state(&key("only-slow")), PrewarmState::Failed);
    assert_eq!(rig.handle.state(&key("mixed")), PrewarmState::Warm);
    let mixed = rig.handle.lookup(&key("mixed")).candidates;
    assert_eq!(
        mixed,
        [
            ProbedCandidate {
                upstream_id: "slow".into(),
                latency_ms: None,
                ok: false
            },
            ProbedCandidate {
                upstream_id: "fast".into(),
                latency_ms: Some(10),
                ok: true
            },
        ]
    );
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn lazy_warmup_happens_without_the_caller_waiting() {
    let rig = Rig::spawn(
        config((0, 0)),
        &[],
        FakeTargets::new(&[("m", &["s1", "s2"])]),
        FakeProber::new(Behave::Up(50)),
    );
    rig.at_ms(1).await; // the (empty) startup sweep is done
    let k = key("m");

    // The request path: a plain function call, nothing awaited.
    let lookup = rig.handle.lookup(&k);
    assert_eq!(lookup.source, Source::RegistryFallback);
    assert!(lookup.warmup_scheduled);
    assert!(lookup.candidates.is_empty());
    assert_eq!(
        rig.prober.call_count(),
        0,
        "the caller did not wait for the warm-up"
    );
    assert_eq!(rig.handle.state(&k), PrewarmState::Cold);
    // Already queued: not scheduled twice.
    assert!(!rig.handle.request_warmup(k.clone()));

    rig.at_ms(20).await;
    assert_eq!(
        rig.prober.call_count(),
        2,
        "the warm-up runs in the background"
    );
    assert_eq!(rig.handle.state(&k), PrewarmState::Warming);
    assert!(
        !rig.handle.request_warmup(k.clone()),
        "warming: nothing to schedule"
    );

    rig.at_ms(100).await;
    assert_eq!(rig.handle.state(&k), PrewarmState::Warm);
    let lookup = rig.handle.lookup(&k);
    assert_eq!(lookup.source, Source::PrewarmCache);
    assert!(!lookup.warmup_scheduled);
    assert_eq!(rig.handle.snapshot().stats.lazy_warmups_run, 1);
    assert_eq!(rig.sink.records().len(), 2);

    // Not a focus model: no sweep refreshes it, so it goes stale.
    rig.at_ms(121_000).await;
    assert_eq!(rig.handle.state(&k), PrewarmState::Stale);
    assert!(rig.handle.request_warmup(k.clone()));
    rig.at_ms(122_000).await;
    assert_eq!(rig.handle.state(&k), PrewarmState::Warm);
    assert_eq!(rig.prober.call_count(), 4);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn lazy_warmup_of_an_unserved_key_fails_and_backs_off() {
    let rig = Rig::spawn(
        config((0, 0)),
        &[],
        FakeTargets::new(&[("m", &["s1"])]),
        FakeProber::new(Behave::Up(5)),
    );
    // A protocol the model is not warmed over.
    let k = PrewarmKey::new("m", Protocol::Messages, PaymentMethod::Mock);
    assert!(rig.handle.request_warmup(k.clone()));
    rig.at_ms(100).await;
    assert_eq!(rig.prober.call_count(), 0);
    assert_eq!(rig.handle.state(&k), PrewarmState::Failed);
    assert!(!rig.handle.request_warmup(k.clone()), "backing off");
    rig.at_ms(60_100).await;
    assert!(rig.handle.request_warmup(k.clone()), "back-off over");
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_caps_while_other_keys_keep_refreshing() {
    let prober = FakeProber::new(Behave::Up(5));
    prober.set("bad", Behave::Down(5));
    let rig = Rig::spawn(
        config((0, 0)),
        &["down", "up"],
        FakeTargets::new(&[("down", &["bad"]), ("up", &["good"])]),
        prober,
    );
    rig.at_ms(2_750_000).await;
    // Failures at 0, then 1, 2, 4, 8, 10, 10, 10 periods later.
    assert_eq!(
        rig.prober.call_secs("bad"),
        [0, 60, 180, 420, 900, 1_500, 2_100, 2_700]
    );
    assert_eq!(
        rig.prober.call_secs("good").len(),
        46,
        "every sweep from 0 to 2,700 s"
    );
    let snap = rig.handle.snapshot();
    let down = snap.entries.iter().find(|e| e.key == key("down")).unwrap();
    assert_eq!(down.entry.state, PrewarmState::Failed);
    assert_eq!(down.entry.consecutive_warming_failures, 8);
    assert_eq!(
        down.entry.next_attempt_at_ms,
        Some(rig.start_ms + 2_700_000 + 600_000)
    );
    assert!(
        !rig.handle.request_warmup(key("down")),
        "the lazy path respects the back-off too"
    );

    // The seller recovers: the next allowed sweep warms the key and resets.
    rig.prober.set("bad", Behave::Up(5));
    rig.at_ms(3_300_500).await;
    assert_eq!(rig.prober.call_secs("bad").last(), Some(&3_300));
    assert_eq!(rig.handle.state(&key("down")), PrewarmState::Warm);
    rig.at_ms(3_360_500).await;
    assert_eq!(rig.prober.call_secs("bad").last(), Some(&3_360));
    let snap = rig.handle.snapshot();
    let down = snap.entries.iter().find(|e| e.key == key("down")).unwrap();
    assert_eq!(down.entry.consecutive_warming_failures, 0);
    assert_eq!(down.entry.next_attempt_at_ms, None);
    rig.handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_leaves_no_probe_running() {
    let rig = Rig::spawn(
        PrewarmConfig {
            max_concurrent_probes: 1,
            probe_timeout_ms: 60_000,
            ..config((0, 0))
        },
        &["m"],
        FakeTargets::new(&[("m", &["s1", "s2"])]),
        FakeProber::new(Behave::Up(30_000)),
    );
    rig.at_ms(1_000).await;
    assert_eq!(rig.prober.in_flight(), 1);
    assert_eq!(
        rig.prober.call_count(),
        1,
        "the second probe waits for a permit"
    );

    rig.handle.stop().await;
    assert_eq!(rig.prober.in_flight(), 0, "the in-flight probe was dropped");
    rig.handle.stop().await; // idempotent

    rig.at_ms(600_000).await;
    assert_eq!(rig.prober.call_count(), 1, "no probe after stop");
    assert!(
        rig.sink.records().is_empty(),
        "the aborted probe recorded nothing"
    );
    assert!(
        !rig.handle.request_warmup(key("other")),
        "nothing runs lazy warm-ups now"
    );
    assert_eq!(rig.handle.snapshot().stats.sweeps_run, 0);
    // Once the handle goes too, nothing holds the fakes but the test.
    let Rig {
        handle,
        prober,
        targets,
        sink,
        ..
    } = rig;
    drop(handle);
    assert_eq!(Arc::strong_count(&prober), 1);
    assert_eq!(Arc::strong_count(&targets), 1);
    assert_eq!(Arc::strong_count(&sink), 1);
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_future_stops_the_scheduler() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let prober = FakeProber::new(Behave::Up(30_000));
    let sink = Arc::new(FakeSink::default());
    let handle = Prewarmer::spawn(
        PrewarmConfig {
            probe_timeout_ms: 60_000,
            ..config((0, 0))
        },
        vec!["m".into()],
        FakeTargets::new(&[("m", &["s1"])]),
        prober.clone(),
        sink.clone(),
        async {
            let _ = rx.await;
        },
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(prober.in_flight(), 1);
    tx.send(()).unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(prober.in_flight(), 0);
    sleep(Duration::from_secs(600)).await;
    assert_eq!(prober.call_count(), 1);
    handle.stop().await;
    drop(handle);
    assert_eq!(Arc::strong_count(&prober), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_scheduler() {
    let prober = FakeProber::new(Behave::Up(10));
    let handle = Prewarmer::spawn(
        config((0, 0)),
        vec!["m".into()],
        FakeTargets::new(&[("m", &["s1"])]),
        prober.clone(),
        Arc::new(FakeSink::default()),
        std::future::pending(),
    );
    let clone = handle.clone();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(prober.call_count(), 1);
    drop(handle);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(prober.call_count(), 2, "a clone keeps it running");
    drop(clone);
    sleep(Duration::from_secs(600)).await;
    assert_eq!(prober.call_count(), 2);
    assert_eq!(Arc::strong_count(&prober), 1);
}
