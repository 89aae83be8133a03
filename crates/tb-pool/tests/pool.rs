//! Table-driven tests of the seller pool with explicit `now` values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    missing_docs
)]

use tb_pool::{
    Admission, CallMetrics, Circuit, CircuitState, PoolConfig, PoolView, ProbeResult, SellerPool,
    UpstreamStatus, parse_http_date, parse_retry_after,
};

const ID: &str = "up";

fn pool() -> SellerPool {
    let mut p = SellerPool::new(PoolConfig::default());
    p.sync([ID]);
    p
}

fn circuit(p: &SellerPool) -> Circuit {
    p.entry(ID).unwrap().circuit
}

fn health(p: &SellerPool) -> u8 {
    p.entry(ID).unwrap().health_score
}

/// Opens the circuit with three failures at `t`, `t+1`, `t+2`; it stays
/// open until `t + 2 + cooldown`.
fn open_at(p: &mut SellerPool, t: i64) {
    for dt in 0..3 {
        p.record_failure(ID, t + dt, "server_error");
    }
}

fn ok_probe(latency: u64) -> ProbeResult {
    ProbeResult {
        ok: true,
        latency_ms: Some(latency),
    }
}

// ---------------------------------------------------------------- window

#[test]
fn failure_window_table() {
    // (failure times, circuit open after them?)
    let cases: &[(&[i64], bool)] = &[
        (&[0, 30_000, 59_999], true),
        (&[0, 30_000, 60_000], false),
        (&[0, 1, 2], true),
        (&[0, 1], false),
        (&[0, 40_000, 80_000, 99_999], true),
        (&[0, 40_000, 80_000, 100_000], false),
        (&[0, 61_000, 122_000, 183_000], false),
        (&[0, 70_000, 80_000], false),
        (&[0, 70_000, 80_000, 90_000], true),
    ];
    for &(times, want_open) in cases {
        let mut p = pool();
        for &t in times {
            p.record_failure(ID, t, "server_error");
        }
        let last = *times.last().unwrap();
        let open = matches!(circuit(&p), Circuit::Open { .. });
        assert_eq!(open, want_open, "times {times:?}");
        if want_open {
            assert_eq!(
                circuit(&p),
                Circuit::Open {
                    until_ms: last + 60_000
                }
            );
        }
        let e = p.entry(ID).unwrap();
        assert!(e.failure_times.len() <= 3, "times {times:?}");
        assert_eq!(e.consecutive_failures as usize, times.len());
        assert_eq!(e.last_fail_at_ms, Some(last));
        assert_eq!(e.last_error_class.as_deref(), Some("server_error"));
    }
}

#[test]
fn window_keeps_only_recent_and_at_most_max_failures() {
    let mut p = pool();
    for t in [0, 61_000, 62_000] {
        p.record_failure(ID, t, "deadline");
    }
    assert_eq!(
        p.entry(ID).unwrap().failure_times,
        [61_000, 62_000],
        "0 fell out of the window"
    );
    let cfg = PoolConfig {
        max_failures: 5,
        ..PoolConfig::default()
    };
    let mut p = SellerPool::new(cfg);
    p.sync([ID]);
    for t in 0..4 {
        p.record_failure(ID, t, "x");
    }
    assert_eq!(circuit(&p), Circuit::Closed, "4 < 5");
    p.record_failure(ID, 4, "x");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_004 });
    assert_eq!(p.entry(ID).unwrap().failure_times.len(), 5);
}

#[test]
fn max_failures_zero_behaves_like_one() {
    let mut p = SellerPool::new(PoolConfig {
        max_failures: 0,
        ..PoolConfig::default()
    });
    p.sync([ID]);
    p.record_failure(ID, 5, "x");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_005 });
}

// ------------------------------------------------------- open → half-open

#[test]
fn open_then_half_open_at_cooldown_end() {
    let mut p = pool();
    open_at(&mut p, 0); // open until 60_002
    // (now, expected admission)
    let cases = [
        (10_000, Admission::Benched { until_ms: 60_002 }),
        (60_001, Admission::Benched { until_ms: 60_002 }),
        (60_002, Admission::GoHalfOpenTrial),
        (60_003, Admission::Benched { until_ms: 60_003 }),
        (70_000, Admission::Benched { until_ms: 70_000 }),
    ];
    for (now, want) in cases {
        assert_eq!(p.try_acquire(ID, now), want, "now {now}");
    }
    assert_eq!(
        circuit(&p),
        Circuit::HalfOpen {
            trial_in_flight: true
        }
    );
}

#[test]
fn exactly_one_trial_until_released_or_recorded() {
    let mut p = pool();
    open_at(&mut p, 0);
    assert_eq!(p.try_acquire(ID, 61_000), Admission::GoHalfOpenTrial);
    for now in [61_000, 61_001, 100_000] {
        assert!(matches!(p.try_acquire(ID, now), Admission::Benched { .. }));
        assert_eq!(p.is_benched(ID, now), Some(now));
    }
    // A cancelled trial hands the slot back.
    assert!(p.release_trial(ID));
    assert_eq!(p.is_benched(ID, 100_001), None);
    assert_eq!(p.try_acquire(ID, 100_001), Admission::GoHalfOpenTrial);
    assert!(matches!(
        p.try_acquire(ID, 100_002),
        Admission::Benched { .. }
    ));
    // Its success closes the circuit; everyone goes.
    p.record_success(ID, 100_500, CallMetrics::latency(10));
    assert_eq!(circuit(&p), Circuit::Closed);
    for now in [100_501, 100_502] {
        assert_eq!(p.try_acquire(ID, now), Admission::Go);
    }
}

#[test]
fn trial_lease_expiry_lets_a_new_trial_through() {
    let mut p = pool();
    open_at(&mut p, 0);
    assert_eq!(p.try_acquire(ID, 61_000), Admission::GoHalfOpenTrial);
    let lease_end = 61_000 + PoolConfig::default().trial_lease_ms;
    assert!(matches!(
        p.try_acquire(ID, lease_end - 1),
        Admission::Benched { .. }
    ));
    assert_eq!(p.is_benched(ID, lease_end), None);
    assert_eq!(p.try_acquire(ID, lease_end), Admission::GoHalfOpenTrial);
}

#[test]
fn release_trial_is_harmless_outside_half_open() {
    let mut p = pool();
    assert!(p.release_trial(ID));
    assert_eq!(circuit(&p), Circuit::Closed);
    open_at(&mut p, 0);
    assert!(p.release_trial(ID));
    assert!(matches!(circuit(&p), Circuit::Open { .. }));
    assert!(!p.release_trial("nobody"));
}

// ------------------------------------------------------------ re-opening

#[test]
fn half_open_failure_reopens_with_doubled_cooldown_up_to_cap() {
    let mut p = pool();
    open_at(&mut p, 0);
    let mut now = 60_002;
    assert_eq!(p.entry(ID).unwrap().cooldown_ms, 60_000);
    // Expected cooldown after each half-open failure.
    for (i, want) in [120_000, 240_000, 480_000, 600_000, 600_000, 600_000]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            p.try_acquire(ID, now),
            Admission::GoHalfOpenTrial,
            "round {i}"
        );
        p.record_failure(ID, now + 5, "server_error");
        let e = p.entry(ID).unwrap();
        assert_eq!(e.cooldown_ms, want, "round {i}");
        assert_eq!(e.reopen_count as usize, i + 1);
        assert_eq!(
            e.circuit,
            Circuit::Open {
                until_ms: now + 5 + want
            }
        );
        assert_eq!(e.upstream_status, UpstreamStatus::Unhealthy);
        now += 5 + want;
    }
}

#[test]
fn failure_after_cooldown_without_acquire_still_counts_as_half_open() {
    let mut p = pool();
    open_at(&mut p, 0);
    p.record_failure(ID, 70_000, "deadline");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 190_000 });
}

#[test]
fn failure_while_open_keeps_the_cooldown_end() {
    let mut p = pool();
    open_at(&mut p, 0);
    p.record_failure(ID, 30_000, "server_error");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_002 });
    assert_eq!(p.entry(ID).unwrap().consecutive_failures, 4);
}

#[test]
fn success_resets_cooldown() {
    let mut p = pool();
    open_at(&mut p, 0);
    assert_eq!(p.try_acquire(ID, 60_002), Admission::GoHalfOpenTrial);
    p.record_failure(ID, 60_002, "x"); // cooldown 120_000
    assert_eq!(p.try_acquire(ID, 180_002), Admission::GoHalfOpenTrial);
    p.record_success(ID, 180_100, CallMetrics::latency(5));
    let e = p.entry(ID).unwrap();
    assert_eq!((e.cooldown_ms, e.reopen_count), (60_000, 0));
    // The next open starts from the base cooldown again.
    open_at(&mut p, 200_000);
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 260_002 });
    assert_eq!(p.try_acquire(ID, 260_002), Admission::GoHalfOpenTrial);
    p.record_failure(ID, 260_002, "x");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 380_002 });
}

#[test]
fn success_closes_from_every_state() {
    for setup in 0..4 {
        let mut p = pool();
        match setup {
            0 => {}
            1 => open_at(&mut p, 0),
            2 => {
                open_at(&mut p, 0);
                p.try_acquire(ID, 60_002);
            }
            _ => {
                open_at(&mut p, 0);
                p.try_acquire(ID, 60_002);
                p.release_trial(ID);
            }
        }
        p.record_success(ID, 60_010, CallMetrics::latency(1));
        let e = p.entry(ID).unwrap();
        assert_eq!(e.circuit, Circuit::Closed, "setup {setup}");
        assert_eq!(e.consecutive_failures, 0);
        assert!(e.failure_times.is_empty());
        assert_eq!(e.last_success_at_ms, Some(60_010));
        assert_eq!(e.trial_started_at_ms, None);
    }
}

#[test]
fn a_success_between_failures_clears_the_window() {
    let mut p = pool();
    p.record_failure(ID, 0, "x");
    p.record_failure(ID, 1, "x");
    p.record_success(ID, 2, CallMetrics::latency(1));
    p.record_failure(ID, 3, "x");
    p.record_failure(ID, 4, "x");
    assert_eq!(circuit(&p), Circuit::Closed);
    p.record_failure(ID, 5, "x");
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_005 });
}

// ---------------------------------------------------------------- health

#[test]
fn health_table() {
    // (events: true = success, false = failure; expected health after each)
    let cases: &[(&[bool], &[u8])] = &[
        (&[true], &[80]),
        (&[true, true, true, true], &[80, 90, 100, 100]),
        (&[false], &[45]),
        (&[false, false, false, false], &[45, 20, 0, 0]),
        (&[false, true], &[45, 60]),
        (&[false, false, true], &[45, 20, 60]),
        (&[false, false, false, true, true], &[45, 20, 0, 60, 70]),
        (&[true, true, true, false, true], &[80, 90, 100, 75, 85]),
    ];
    for &(events, want) in cases {
        let mut p = pool();
        assert_eq!(health(&p), 70);
        for (i, (&ok, &h)) in events.iter().zip(want).enumerate() {
            let now = i64::try_from(i).unwrap() * 1_000;
            if ok {
                p.record_success(ID, now, CallMetrics::latency(1));
            } else {
                p.record_failure(ID, now, "x");
            }
            assert_eq!(health(&p), h, "events {events:?} step {i}");
        }
    }
}

#[test]
fn probes_move_health_like_calls() {
    let mut p = pool();
    p.record_probe(
        ID,
        0,
        ProbeResult {
            ok: false,
            latency_ms: None,
        },
    );
    assert_eq!(health(&p), 45);
    assert_eq!(
        p.entry(ID).unwrap().last_error_class.as_deref(),
        Some(tb_pool::PROBE_FAILURE_CLASS)
    );
    p.record_probe(ID, 1, ok_probe(50));
    assert_eq!(health(&p), 60);
    assert_eq!(circuit(&p), Circuit::Closed);
}

#[test]
fn probe_failures_open_and_probe_success_closes() {
    let mut p = pool();
    for t in [0, 1, 2] {
        p.record_probe(
            ID,
            t,
            ProbeResult {
                ok: false,
                latency_ms: Some(3_000),
            },
        );
    }
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_002 });
    assert_eq!(p.entry(ID).unwrap().health_probe_latency_ms, None);
    p.record_probe(ID, 70_000, ok_probe(40));
    assert_eq!(circuit(&p), Circuit::Closed);
}

// ---------------------------------------------------------------- status

#[test]
fn upstream_status_table() {
    type Setup = fn(&mut SellerPool);
    let cases: &[(&str, Setup, i64, UpstreamStatus)] = &[
        ("fresh", |_| {}, 0, UpstreamStatus::Unknown),
        (
            "one success",
            |p| {
                p.record_success(ID, 0, CallMetrics::latency(1));
            },
            0,
            UpstreamStatus::Healthy,
        ),
        (
            "one failure",
            |p| {
                p.record_failure(ID, 0, "x");
            },
            0,
            UpstreamStatus::Degraded,
        ),
        (
            "health 75 after a failure",
            |p| {
                for t in 0..3 {
                    p.record_success(ID, t, CallMetrics::latency(1));
                }
                p.record_failure(ID, 3, "x");
            },
            3,
            UpstreamStatus::Degraded,
        ),
        (
            "two failures, health 20",
            |p| {
                p.record_failure(ID, 0, "x");
                p.record_failure(ID, 1, "x");
            },
            1,
            UpstreamStatus::Unhealthy,
        ),
        ("open", |p| open_at(p, 0), 10, UpstreamStatus::Unhealthy),
        (
            "open past cooldown is half-open",
            |p| open_at(p, 0),
            60_002,
            // health 0 still makes it unhealthy
            UpstreamStatus::Unhealthy,
        ),
        (
            "half-open with decent health",
            |p| {
                let mut cfg_p = SellerPool::new(PoolConfig {
                    max_failures: 1,
                    ..PoolConfig::default()
                });
                cfg_p.sync([ID]);
                *p = cfg_p;
                p.record_failure(ID, 0, "x"); // health 45, open
                p.try_acquire(ID, 60_000);
            },
            60_000,
            UpstreamStatus::Degraded,
        ),
        (
            "capacity block alone",
            |p| {
                p.record_success(ID, 0, CallMetrics::latency(1));
                p.record_capacity_block(ID, 0, 10_000);
            },
            5,
            UpstreamStatus::Healthy,
        ),
    ];
    for &(name, setup, now, want) in cases {
        let mut p = pool();
        setup(&mut p);
        assert_eq!(p.snapshot(ID, now).upstream_status, want, "{name}");
    }
}

#[test]
fn stored_status_follows_events() {
    let mut p = pool();
    assert_eq!(
        p.entry(ID).unwrap().upstream_status,
        UpstreamStatus::Unknown
    );
    open_at(&mut p, 0);
    assert_eq!(
        p.entry(ID).unwrap().upstream_status,
        UpstreamStatus::Unhealthy
    );
    p.record_success(ID, 70_000, CallMetrics::latency(1));
    assert_eq!(
        p.entry(ID).unwrap().upstream_status,
        UpstreamStatus::Healthy
    );
}

// -------------------------------------------------------- capacity blocks

#[test]
fn capacity_block_table() {
    // (blocks as (now, until), query now, expected benched_until)
    let cases: &[(&[(i64, i64)], i64, Option<i64>)] = &[
        (&[(0, 10_000)], 0, Some(10_000)),
        (&[(0, 10_000)], 9_999, Some(10_000)),
        (&[(0, 10_000)], 10_000, None),
        (&[(0, 10_000), (1_000, 5_000)], 6_000, Some(10_000)),
        (&[(0, 10_000), (1_000, 20_000)], 15_000, Some(20_000)),
        (&[(0, 10_000), (11_000, 12_000)], 11_500, Some(12_000)),
        (&[(5_000, 4_000)], 0, None),
        (&[(0, 0)], 0, None),
    ];
    for &(blocks, now, want) in cases {
        let mut p = pool();
        for &(at, until) in blocks {
            assert!(p.record_capacity_block(ID, at, until));
        }
        assert_eq!(p.is_benched(ID, now), want, "blocks {blocks:?} at {now}");
        let admission = p.try_acquire(ID, now);
        match want {
            Some(until_ms) => assert_eq!(admission, Admission::Benched { until_ms }),
            None => assert_eq!(admission, Admission::Go),
        }
        assert_eq!(health(&p), 70, "capacity blocks do not touch health");
        assert_eq!(circuit(&p), Circuit::Closed);
    }
}

#[test]
fn success_lifts_a_capacity_block() {
    let mut p = pool();
    p.record_capacity_block(ID, 0, 100_000);
    p.record_success(ID, 10, CallMetrics::latency(1));
    assert_eq!(p.is_benched(ID, 11), None);
    assert_eq!(p.entry(ID).unwrap().capacity_blocked_until_ms, None);
}

#[test]
fn capacity_block_in_half_open_keeps_the_trial_slot() {
    let mut p = pool();
    open_at(&mut p, 0);
    p.record_capacity_block(ID, 61_000, 90_000);
    assert_eq!(
        p.try_acquire(ID, 61_000),
        Admission::Benched { until_ms: 90_000 }
    );
    assert_eq!(
        circuit(&p),
        Circuit::HalfOpen {
            trial_in_flight: false
        },
        "no trial was consumed"
    );
    assert_eq!(p.try_acquire(ID, 90_000), Admission::GoHalfOpenTrial);
}

#[test]
fn benched_until_is_the_later_of_circuit_and_capacity() {
    let mut p = pool();
    open_at(&mut p, 0); // until 60_002
    p.record_capacity_block(ID, 10, 30_000);
    assert_eq!(p.is_benched(ID, 20), Some(60_002));
    p.record_capacity_block(ID, 20, 90_000);
    assert_eq!(p.is_benched(ID, 20), Some(90_000));
    assert_eq!(p.is_benched(ID, 70_000), Some(90_000));
    assert_eq!(p.is_benched(ID, 90_000), None);
}

#[test]
fn benched_ordering_soonest_first() {
    let mut p = SellerPool::default();
    p.sync(["a", "b", "c", "d", "e"]);
    for t in [50_000, 50_001, 50_002] {
        p.record_failure("a", t, "x"); // open until 110_002
    }
    p.record_capacity_block("b", 0, 80_000);
    for t in [0, 1, 2] {
        p.record_failure("c", t, "x");
    }
    assert_eq!(p.try_acquire("c", 60_002), Admission::GoHalfOpenTrial);
    p.record_capacity_block("d", 0, 200_000);
    let now = 70_000;
    let mut benched: Vec<(i64, &str)> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .filter_map(|id| p.is_benched(id, now).map(|t| (t, id)))
        .collect();
    benched.sort_unstable();
    // The trial in flight may end any moment: it recovers "now".
    assert_eq!(
        benched,
        [(70_000, "c"), (80_000, "b"), (110_002, "a"), (200_000, "d")]
    );
    assert_eq!(p.is_benched("e", now), None);
}

// ---------------------------------------------------------- Retry-After

#[test]
fn retry_after_table() {
    let now = 1_000_000;
    // 1994-11-06T08:49:37Z
    let rfc_example = 784_111_777_000;
    let cases: &[(&str, Option<i64>)] = &[
        ("0", Some(now)),
        ("120", Some(now + 120_000)),
        ("  7 ", Some(now + 7_000)),
        ("007", Some(now + 7_000)),
        ("Sun, 06 Nov 1994 08:49:37 GMT", Some(rfc_example)),
        ("Sunday, 06-Nov-94 08:49:37 GMT", Some(rfc_example)),
        ("Sun Nov  6 08:49:37 1994", Some(rfc_example)),
        ("Sun Nov 06 08:49:37 1994", Some(rfc_example)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", Some(1_445_412_480_000)),
        ("Tue, 29 Feb 2000 23:59:59 GMT", Some(951_868_799_000)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(253_402_300_799_000)),
        ("Sat, 30 Jun 2012 23:59:60 GMT", Some(1_341_100_800_000)),
        // garbage
        ("", None),
        ("   ", None),
        ("-5", None),
        ("+5", None),
        ("1.5", None),
        ("5s", None),
        ("soon", None),
        ("99999999999999999999", None),
        ("9223372036854775807", None),
        ("Mon, 06 Nov 1994 08:49:37 GMT", None), // wrong weekday
        ("sun, 06 Nov 1994 08:49:37 GMT", None), // case-sensitive
        ("Sun, 06 nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 UTC", None),
        ("Sun, 06 Nov 1994 08:49:37 +0000", None),
        ("Sun, 6 Nov 1994 08:49:37 GMT", None),
        ("Sun,  06 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 24:00:00 GMT", None),
        ("Sun, 06 Nov 1994 08:60:00 GMT", None),
        ("Sun, 06 Nov 1994 08:49:61 GMT", None),
        ("Thu, 31 Nov 1994 08:49:37 GMT", None), // no 31 November
        ("Tue, 29 Feb 2100 00:00:00 GMT", None), // 2100 is not leap
        ("Sun, 00 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT trailing", None),
        ("Sun, 06 Nov 1994 08:4a:37 GMT", None),
        ("Sun, 06 Nov 19x4 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT\u{e9}", None),
        ("Sünday, 06 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06-Nov-94 08:49:37 GMT", None),
        ("Sunday, 06 Nov 1994 08:49:37 GMT", None),
        ("Sun Nov  6 08:49:37 94", None),
        ("2015-10-21T07:28:00Z", None),
    ];
    for &(value, want) in cases {
        assert_eq!(parse_retry_after(value, now), want, "{value:?}");
    }
}

#[test]
fn rfc850_two_digit_years_resolve_relative_to_now() {
    // now = 2026-01-01T00:00:00Z
    let now = 1_767_225_600_000;
    let cases: &[(&str, Option<i64>)] = &[
        // 2070 is within 50 years: 2070.
        ("Wednesday, 01-Jan-70 00:00:00 GMT", Some(3_155_760_000_000)),
        // 2077 would be > 50 years ahead: 1977.
        ("Saturday, 01-Jan-77 00:00:00 GMT", Some(220_924_800_000)),
        ("Thursday, 01-Jan-26 00:00:10 GMT", Some(now + 10_000)),
        ("Thursday, 01-Jan-70 00:00:00 GMT", None), // 2070-01-01 is a Wednesday
    ];
    for &(value, want) in cases {
        assert_eq!(parse_http_date(value, now), want, "{value:?}");
    }
}

#[test]
fn retry_after_feeds_a_capacity_block() {
    let mut p = pool();
    let now = 5_000;
    let until = parse_retry_after("30", now).unwrap();
    p.record_capacity_block(ID, now, until);
    assert_eq!(p.is_benched(ID, now), Some(35_000));
    // An HTTP-date in the past blocks nothing.
    let past = parse_retry_after("Thu, 01 Jan 1970 00:00:01 GMT", now).unwrap();
    let mut q = pool();
    q.record_capacity_block(ID, now, past);
    assert_eq!(q.is_benched(ID, now), None);
}

// ------------------------------------------------------ metrics ordering

#[test]
fn live_metrics_ewma() {
    let mut p = pool();
    let steps: &[(CallMetrics, Option<f64>, Option<f64>, Option<f64>)] = &[
        (CallMetrics::latency(1_000), Some(1_000.0), None, None),
        (
            CallMetrics {
                latency_ms: 2_000,
                ttft_ms: Some(100),
                inference_ms: Some(1_500),
                tokens_per_second: None,
            },
            Some(1_300.0),
            Some(100.0),
            Some(1_500.0),
        ),
        (
            CallMetrics {
                latency_ms: 300,
                ttft_ms: Some(200),
                inference_ms: None,
                tokens_per_second: None,
            },
            Some(1_000.0),
            Some(130.0),
            Some(1_500.0),
        ),
    ];
    for (i, (m, lat, ttft, inf)) in steps.iter().enumerate() {
        let now = i64::try_from(i).unwrap() * 100;
        p.record_success(ID, now, *m);
        let e = p.entry(ID).unwrap();
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            (a, b) => a == b,
        };
        assert!(
            close(e.avg_latency_ms, *lat),
            "step {i}: {:?}",
            e.avg_latency_ms
        );
        assert!(close(e.ttft_ms, *ttft), "step {i}: {:?}", e.ttft_ms);
        assert!(close(e.avg_inference_ms, *inf), "step {i}");
        assert_eq!(e.runtime_metrics_observed_at_ms, Some(now));
    }
}

#[test]
fn probe_vs_live_metric_ordering() {
    // (events in arrival order: ("live"|"probe", observed at, latency),
    //  expected probe latency, expected avg latency, probe applied flags)
    type Ev = (&'static str, i64, u64);
    let cases: &[(&[Ev], Option<f64>, Option<f64>, &[bool])] = &[
        // probe then a later live call: both kept.
        (
            &[("probe", 10, 50), ("live", 20, 900)],
            Some(50.0),
            Some(900.0),
            &[true],
        ),
        // live then a later probe: the probe applies.
        (
            &[("live", 10, 900), ("probe", 20, 50)],
            Some(50.0),
            Some(900.0),
            &[true],
        ),
        // a probe observed before the live call arrives late: ignored.
        (
            &[("live", 20, 900), ("probe", 10, 50)],
            None,
            Some(900.0),
            &[false],
        ),
        // same instant: the probe applies.
        (
            &[("live", 20, 900), ("probe", 20, 50)],
            Some(50.0),
            Some(900.0),
            &[true],
        ),
        // an older probe never overwrites a newer one.
        (
            &[("probe", 30, 40), ("probe", 25, 99)],
            Some(40.0),
            None,
            &[true, false],
        ),
        (
            &[
                ("probe", 30, 40),
                ("live", 40, 800),
                ("probe", 35, 99),
                ("probe", 50, 60),
            ],
            Some(60.0),
            Some(800.0),
            &[true, false, true],
        ),
    ];
    for &(events, want_probe, want_live, want_applied) in cases {
        let mut p = pool();
        let mut applied = Vec::new();
        for &(kind, at, latency) in events {
            if kind == "live" {
                p.record_success(ID, at, CallMetrics::latency(latency));
            } else {
                applied.push(p.record_probe(ID, at, ok_probe(latency)));
            }
        }
        let e = p.entry(ID).unwrap();
        assert_eq!(e.health_probe_latency_ms, want_probe, "{events:?}");
        assert_eq!(e.avg_latency_ms, want_live, "{events:?}");
        assert_eq!(applied, want_applied, "{events:?}");
    }
}

#[test]
fn superseded_probe_failure_does_not_reopen() {
    let mut p = pool();
    open_at(&mut p, 0);
    p.record_success(ID, 70_000, CallMetrics::latency(5));
    // A failed probe observed before that success arrives late.
    assert!(!p.record_probe(
        ID,
        65_000,
        ProbeResult {
            ok: false,
            latency_ms: None
        }
    ));
    assert_eq!(circuit(&p), Circuit::Closed);
    assert_eq!(health(&p), 60);
}

#[test]
fn superseded_probe_after_live_failure_is_ignored() {
    let mut p = pool();
    p.record_failure(ID, 100, "server_error");
    assert!(!p.record_probe(ID, 50, ok_probe(10)));
    assert_eq!(health(&p), 45);
    assert_eq!(p.entry(ID).unwrap().consecutive_failures, 1);
}

// ------------------------------------------------------------ tokens/s

fn tps(v: f64) -> CallMetrics {
    CallMetrics {
        tokens_per_second: Some(v),
        ..CallMetrics::latency(1)
    }
}

#[test]
fn tokens_per_second_window_mean() {
    // (samples as (at, tps), snapshot now, expected mean)
    let cases: &[(&[(i64, f64)], i64, Option<f64>)] = &[
        (&[], 0, None),
        (&[(0, 10.0)], 0, Some(10.0)),
        (&[(0, 10.0), (1_000, 20.0)], 1_000, Some(15.0)),
        (&[(0, 10.0), (1_000, 20.0)], 599_999, Some(15.0)),
        (&[(0, 10.0), (1_000, 20.0)], 600_000, Some(20.0)),
        (&[(0, 10.0), (1_000, 20.0)], 601_000, None),
        (
            &[(0, 10.0), (300_000, 20.0), (650_000, 60.0)],
            650_000,
            Some(40.0),
        ),
        (
            &[(0, -5.0), (1, f64::NAN), (2, f64::INFINITY), (3, 8.0)],
            3,
            Some(8.0),
        ),
    ];
    for &(samples, now, want) in cases {
        let mut p = pool();
        for &(at, v) in samples {
            p.record_success(ID, at, tps(v));
        }
        assert_eq!(
            p.snapshot(ID, now).avg_tokens_per_second,
            want,
            "{samples:?} @ {now}"
        );
    }
}

#[test]
fn tokens_per_second_field_drops_old_samples_on_success() {
    let mut p = pool();
    p.record_success(ID, 0, tps(100.0));
    p.record_success(ID, 100_000, tps(50.0));
    assert_eq!(p.entry(ID).unwrap().avg_tokens_per_second, Some(75.0));
    // A success without a tokens/s sample still ages the window.
    p.record_success(ID, 650_000, CallMetrics::latency(1));
    let e = p.entry(ID).unwrap();
    assert_eq!(e.avg_tokens_per_second, Some(50.0));
    assert_eq!(e.tps_samples.len(), 1);
    p.record_success(ID, 700_000, CallMetrics::latency(1));
    assert_eq!(p.entry(ID).unwrap().avg_tokens_per_second, None);
}

#[test]
fn tokens_per_second_ring_is_bounded() {
    let mut p = pool();
    for i in 0..1_000_i32 {
        p.record_success(ID, i64::from(i), tps(f64::from(i)));
    }
    let e = p.entry(ID).unwrap();
    assert_eq!(e.tps_samples.len(), tb_pool::MAX_TPS_SAMPLES);
    // Mean of the last 128 values 872..=999.
    assert_eq!(e.avg_tokens_per_second, Some(935.5));
}

// ---------------------------------------------------------------- sync

#[test]
fn sync_keeps_survivors_and_drops_the_rest() {
    let mut p = SellerPool::default();
    p.sync(["a", "b", "c"]);
    assert_eq!(p.len(), 3);
    p.record_failure("a", 0, "x");
    p.record_failure("b", 0, "x");
    p.sync(["b", "c", "d", "d"]);
    let mut ids: Vec<&str> = p.entries().map(|(id, _)| id).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["b", "c", "d"]);
    assert!(!p.contains("a"));
    assert_eq!(p.entry("b").unwrap().health_score, 45, "b kept its state");
    assert_eq!(p.entry("d").unwrap().health_score, 70, "d is fresh");
    // An id that comes back starts over.
    p.sync(["a"]);
    assert_eq!(p.entry("a").unwrap().health_score, 70);
    p.sync(std::iter::empty());
    assert!(p.is_empty());
}

#[test]
fn unknown_ids_are_ignored() {
    let mut p = pool();
    assert!(!p.record_success("x", 0, CallMetrics::latency(1)));
    assert!(!p.record_failure("x", 0, "x"));
    assert!(!p.record_capacity_block("x", 0, 10));
    assert!(!p.record_probe("x", 0, ok_probe(1)));
    assert_eq!(p.try_acquire("x", 0), Admission::Go);
    assert_eq!(p.is_benched("x", 0), None);
    assert_eq!(p.snapshot("x", 0), PoolView::fresh());
    assert!(p.entry("x").is_none());
    assert_eq!(p.len(), 1);
}

// ------------------------------------------------------------ snapshot

#[test]
fn snapshot_carries_plain_values() {
    let mut p = pool();
    p.record_probe(ID, 0, ok_probe(40));
    p.record_success(
        ID,
        10,
        CallMetrics {
            latency_ms: 1_200,
            ttft_ms: Some(150),
            inference_ms: Some(1_000),
            tokens_per_second: Some(42.0),
        },
    );
    p.record_capacity_block(ID, 10, 5_000);
    let v = p.snapshot(ID, 20);
    assert_eq!(
        v,
        PoolView {
            health_score: 90,
            ttft_ms: Some(150.0),
            health_probe_latency_ms: Some(40.0),
            avg_latency_ms: Some(1_200.0),
            avg_inference_ms: Some(1_000.0),
            avg_tokens_per_second: Some(42.0),
            runtime_metrics_observed_at_ms: Some(10),
            probe_observed_at_ms: Some(0),
            circuit: CircuitState::Closed,
            upstream_status: UpstreamStatus::Healthy,
            consecutive_failures: 0,
            capacity_blocked_until_ms: Some(5_000),
            benched_until_ms: Some(5_000),
        }
    );
    assert!(v.is_benched());
    let later = p.snapshot(ID, 5_000);
    assert_eq!(later.capacity_blocked_until_ms, None);
    assert!(!later.is_benched());
}

#[test]
fn snapshot_reports_expired_open_as_half_open_without_mutating() {
    let mut p = pool();
    open_at(&mut p, 0);
    assert_eq!(p.snapshot(ID, 60_001).circuit, CircuitState::Open);
    assert_eq!(p.snapshot(ID, 60_002).circuit, CircuitState::HalfOpen);
    assert_eq!(p.snapshot(ID, 60_002).benched_until_ms, None);
    assert_eq!(circuit(&p), Circuit::Open { until_ms: 60_002 });
    assert_eq!(CircuitState::HalfOpen.to_string(), "half_open");
    assert_eq!(UpstreamStatus::Degraded.to_string(), "degraded");
}
