//! Property tests: no event sequence panics, health stays in 0..=100 and
//! admission never leaves an expired open circuit behind.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use tb_pool::{
    Admission, CallMetrics, Circuit, PoolConfig, ProbeResult, SellerPool, parse_http_date,
    parse_retry_after,
};

const IDS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Success(usize, CallMetrics),
    Failure(usize),
    Capacity(usize, i64),
    Probe(usize, bool, Option<u64>),
    Acquire(usize),
    Release(usize),
    Sync(Vec<usize>),
}

fn metrics() -> impl Strategy<Value = CallMetrics> {
    (
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            0.0..500.0_f64
        ]),
    )
        .prop_map(
            |(latency_ms, ttft_ms, inference_ms, tokens_per_second)| CallMetrics {
                latency_ms,
                ttft_ms,
                inference_ms,
                tokens_per_second,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    prop_oneof![
        1 => (id.clone(), metrics()).prop_map(|(i, m)| Op::Success(i, m)),
        3 => id.clone().prop_map(Op::Failure),
        1 => (id.clone(), -100_000..1_000_000_i64).prop_map(|(i, d)| Op::Capacity(i, d)),
        1 => (id.clone(), any::<bool>(), proptest::option::of(0..10_000_u64))
            .prop_map(|(i, ok, l)| Op::Probe(i, ok, l)),
        3 => id.clone().prop_map(Op::Acquire),
        1 => id.clone().prop_map(Op::Release),
        1 => proptest::collection::vec(id, 0..=3).prop_map(Op::Sync),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    prop_oneof![
        Just(PoolConfig::default()),
        (
            0..6_u32,
            -10..200_000_i64,
            -10..200_000_i64,
            -10..2_000_000_i64,
            -10..1_000_000_i64,
            -10..1_000_000_i64
        )
            .prop_map(
                |(max_failures, window_ms, cooldown_ms, max_cooldown_ms, tw, lease)| {
                    PoolConfig {
                        max_failures,
                        window_ms,
                        cooldown_ms,
                        max_cooldown_ms,
                        throughput_window_ms: tw,
                        trial_lease_ms: lease,
                    }
                }
            ),
        Just(PoolConfig {
            max_failures: u32::MAX,
            window_ms: i64::MAX,
            cooldown_ms: i64::MAX,
            max_cooldown_ms: i64::MAX,
            throughput_window_ms: i64::MAX,
            trial_lease_ms: i64::MAX,
        }),
    ]
}

/// Time steps: mostly forward, sometimes backwards (clock skew, late
/// reports), sometimes huge.
fn step() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0..120_000_i64,
        1 => -60_000..0_i64,
        1 => Just(i64::MAX / 4),
    ]
}

fn check(pool: &SellerPool, now: i64) {
    for (_, e) in pool.entries() {
        assert!(e.health_score <= 100);
        assert!(e.failure_times.len() <= pool.config().max_failures.max(1) as usize);
        assert!(e.tps_samples.len() <= tb_pool::MAX_TPS_SAMPLES);
        if let Some(v) = e.avg_tokens_per_second {
            assert!(v.is_finite() && v >= 0.0);
        }
        assert!(e.cooldown_ms >= 0);
    }
    for id in IDS {
        let v = pool.snapshot(id, now);
        assert!(v.health_score <= 100);
        assert_eq!(v.benched_until_ms, pool.is_benched(id, now));
        if let Some(until) = v.benched_until_ms {
            assert!(until >= now, "benched until the past");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_breaks_the_invariants(
        cfg in config(),
        start in -1_000_000_000_000..2_000_000_000_000_i64,
        ops in proptest::collection::vec((step(), op()), 0..120),
    ) {
        let mut pool = SellerPool::new(cfg);
        pool.sync(IDS);
        let mut now = start;
        for (dt, op) in ops {
            now = now.saturating_add(dt);
            match op {
                Op::Success(i, m) => { pool.record_success(IDS[i], now, m); }
                Op::Failure(i) => { pool.record_failure(IDS[i], now, "server_error"); }
                Op::Capacity(i, d) => {
                    pool.record_capacity_block(IDS[i], now, now.saturating_add(d));
                }
                Op::Probe(i, ok, latency_ms) => {
                    pool.record_probe(IDS[i], now, ProbeResult { ok, latency_ms });
                }
                Op::Acquire(i) => {
                    let admission = pool.try_acquire(IDS[i], now);
                    if let Some(e) = pool.entry(IDS[i]) {
                        if let Circuit::Open { until_ms } = e.circuit {
                            prop_assert!(until_ms > now, "open with until in the past");
                        }
                        match admission {
                            Admission::GoHalfOpenTrial => prop_assert_eq!(
                                e.circuit,
                                Circuit::HalfOpen { trial_in_flight: true }
                            ),
                            Admission::Go => prop_assert_eq!(e.circuit, Circuit::Closed),
                            Admission::Benched { until_ms } => {
                                prop_assert!(until_ms >= now);
                            }
                        }
                    }
                }
                Op::Release(i) => { pool.release_trial(IDS[i]); }
                Op::Sync(keep) => {
                    pool.sync(keep.iter().map(|&i| IDS[i]));
                    // bring everyone back so later events land
                    pool.sync(IDS);
                }
            }
            check(&pool, now);
        }
    }

    #[test]
    fn second_trial_is_never_admitted_while_one_is_in_flight(
        gaps in proptest::collection::vec(0..1_000_i64, 1..20),
    ) {
        let mut pool = SellerPool::default();
        pool.sync(["a"]);
        for t in 0..3 {
            pool.record_failure("a", t, "x");
        }
        let mut now = 60_002;
        prop_assert_eq!(pool.try_acquire("a", now), Admission::GoHalfOpenTrial);
        for gap in gaps {
            now += gap;
            prop_assert!(
                matches!(pool.try_acquire("a", now), Admission::Benched { .. }),
                "only one trial at a time"
            );
        }
    }

    #[test]
    fn retry_after_never_panics(s in "\\PC{0,40}", now in any::<i64>()) {
        let _ = parse_retry_after(&s, now);
        let _ = parse_http_date(&s, now);
    }

    #[test]
    fn delta_seconds_round_trip(secs in 0..1_000_000_000_i64, now in -1_000_000_000_000..1_000_000_000_000_i64) {
        prop_assert_eq!(parse_retry_after(&secs.to_string(), now), Some(now + secs * 1000));
    }
}
