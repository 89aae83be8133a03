//! The dashboard's queries on both backends: filtered listings (with the
//! paging cursor), one call by id, spend per bucket summed in SQL and the
//! per-call samples of the per-upstream series.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Fixture, minimal_record, priced};
use tb_billing::record::{Attempt, CallOutcome, CallRecord};
use tb_billing::series::{Bucket, CallFilter, upstream_series};
use tb_domain::{Outcome, Protocol};
use tb_store::CallCursor;

both_backends!(
    filters_narrow_the_listing_and_page_with_the_cursor,
    a_call_is_found_by_id,
    spend_is_summed_per_utc_bucket_with_filters,
    samples_feed_the_per_upstream_series,
);

/// 2024-03-02T00:00:00Z.
const MARCH_2: i64 = 1_709_337_600_000;
const HOUR: i64 = 3_600_000;

fn attempt(upstream: &str, outcome: Outcome, latency_ms: u64) -> Attempt {
    Attempt {
        upstream: upstream.into(),
        status: Some(if outcome == Outcome::Ok { 200 } else { 503 }),
        outcome,
        error_class: (outcome != Outcome::Ok).then_some(outcome),
        latency_ms,
    }
}

/// bad fails, good answers.
fn failed_over(at: i64, latency: u64, ttft: Option<u64>) -> CallRecord {
    CallRecord {
        failed_over: true,
        attempts: vec![
            attempt("bad", Outcome::ServerError, 3),
            attempt("good", Outcome::Ok, 7),
        ],
        latency_ms: latency,
        ttft_ms: ttft,
        tokens_per_second: Some(50.0),
        ..priced(at, "gpt-4o", Some("good"), Some(1_000), Some(250))
    }
}

fn direct(at: i64, upstream: &str, model: &str, latency: u64) -> CallRecord {
    CallRecord {
        attempts: vec![attempt(upstream, Outcome::Ok, 5)],
        latency_ms: latency,
        ..priced(at, model, Some(upstream), Some(2_000), None)
    }
}

fn failed(at: i64) -> CallRecord {
    CallRecord {
        protocol: Protocol::Messages,
        attempts: vec![attempt("bad", Outcome::ServerError, 4)],
        ..minimal_record(at)
    }
}

fn rejected(at: i64) -> CallRecord {
    CallRecord {
        outcome: CallOutcome::Rejected,
        ..minimal_record(at)
    }
}

async fn filters_narrow_the_listing_and_page_with_the_cursor(fx: Fixture) {
    let records = vec![
        failed_over(MARCH_2 + 1, 100, None),
        direct(MARCH_2 + 2, "good", "gpt-4o", 50),
        direct(MARCH_2 + 3, "good", "claude", 60),
        failed(MARCH_2 + 4),
        rejected(MARCH_2 + 5),
    ];
    fx.ledger.insert_batch(&records).await.unwrap();
    let ids = |calls: Vec<CallRecord>| calls.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let list = |f: CallFilter| {
        let ledger = fx.ledger.clone();
        async move { ids(ledger.recent_calls_matching(10, None, &f).await.unwrap()) }
    };
    assert_eq!(list(CallFilter::default()).await.len(), 5);
    let gpt = CallFilter {
        model: Some("gpt-4o".into()),
        ..CallFilter::default()
    };
    assert_eq!(
        list(gpt.clone()).await,
        vec![records[1].id.clone(), records[0].id.clone()]
    );
    let by_good_claude = CallFilter {
        model: Some("claude".into()),
        upstream: Some("good".into()),
        ..CallFilter::default()
    };
    assert_eq!(list(by_good_claude).await, vec![records[2].id.clone()]);
    let messages = CallFilter {
        protocol: Some(Protocol::Messages),
        ..CallFilter::default()
    };
    assert_eq!(list(messages).await, vec![records[3].id.clone()]);
    let rejected_only = CallFilter {
        outcome: Some(CallOutcome::Rejected),
        ..CallFilter::default()
    };
    assert_eq!(list(rejected_only).await, vec![records[4].id.clone()]);
    let nobody = CallFilter {
        upstream: Some("nobody".into()),
        ..CallFilter::default()
    };
    assert!(list(nobody).await.is_empty());
    // A filter value is bound, never spliced into SQL.
    let injected = CallFilter {
        model: Some("x' OR '1'='1".into()),
        ..CallFilter::default()
    };
    assert!(list(injected).await.is_empty());
    // The cursor pages within the filter.
    let page = fx
        .ledger
        .recent_calls_matching(1, None, &gpt)
        .await
        .unwrap();
    assert_eq!(page[0].id, records[1].id);
    let next = fx
        .ledger
        .recent_calls_matching(1, Some(&CallCursor::from(&page[0])), &gpt)
        .await
        .unwrap();
    assert_eq!(ids(next), vec![records[0].id.clone()]);
    // The unfiltered listing is the same query.
    assert_eq!(
        ids(fx.ledger.recent_calls(10, None).await.unwrap()),
        list(CallFilter::default()).await
    );
}

async fn a_call_is_found_by_id(fx: Fixture) {
    let rec = failed_over(MARCH_2, 100, Some(20));
    fx.ledger
        .insert_batch(&[rec.clone(), failed(MARCH_2 + 1)])
        .await
        .unwrap();
    assert_eq!(fx.ledger.call_by_id(&rec.id).await.unwrap(), Some(rec));
    assert_eq!(fx.ledger.call_by_id("no-such-id").await.unwrap(), None);
}

async fn spend_is_summed_per_utc_bucket_with_filters(fx: Fixture) {
    fx.ledger
        .insert_batch(&[
            failed_over(MARCH_2 + 10, 100, None),
            direct(MARCH_2 + HOUR - 1, "good", "gpt-4o", 50),
            CallRecord {
                cost_usd_micros: None,
                ..direct(MARCH_2 + HOUR, "good", "claude", 60)
            },
            failed(MARCH_2 + 2 * HOUR + 5),
            rejected(MARCH_2 + 2 * HOUR + 6),
            // Before the window.
            direct(MARCH_2 - 1, "good", "gpt-4o", 50),
        ])
        .await
        .unwrap();
    let all = fx
        .ledger
        .spend_series(MARCH_2, Bucket::Hour, &CallFilter::default())
        .await
        .unwrap();
    let starts: Vec<i64> = all.iter().map(|p| p.bucket_start_ms).collect();
    assert_eq!(starts, vec![MARCH_2, MARCH_2 + HOUR, MARCH_2 + 2 * HOUR]);
    let p = all[0];
    assert_eq!((p.calls, p.ok_calls, p.failed_over_calls), (2, 2, 1));
    assert_eq!(
        (p.cost_usd_micros, p.saved_usd_micros, p.unpriced_calls),
        (3_000, 250, 0)
    );
    assert_eq!((p.input_tokens, p.output_tokens), (200, 40));
    let p = all[1];
    assert_eq!((p.calls, p.cost_usd_micros, p.unpriced_calls), (1, 0, 1));
    // The failed call counts; the rejected one does not.
    let p = all[2];
    assert_eq!((p.calls, p.ok_calls, p.unpriced_calls), (1, 0, 1));
    let day = fx
        .ledger
        .spend_series(MARCH_2, Bucket::Day, &CallFilter::default())
        .await
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!((day[0].bucket_start_ms, day[0].calls), (MARCH_2, 4));
    let gpt = CallFilter {
        model: Some("gpt-4o".into()),
        outcome: Some(CallOutcome::Ok),
        ..CallFilter::default()
    };
    let minute = fx
        .ledger
        .spend_series(MARCH_2 - 60_000, Bucket::Minute, &gpt)
        .await
        .unwrap();
    let starts: Vec<(i64, u64)> = minute
        .iter()
        .map(|p| (p.bucket_start_ms, p.calls))
        .collect();
    assert_eq!(
        starts,
        vec![
            (MARCH_2 - 60_000, 1),
            (MARCH_2, 1),
            (MARCH_2 + HOUR - 60_000, 1)
        ]
    );
}

async fn samples_feed_the_per_upstream_series(fx: Fixture) {
    fx.ledger
        .insert_batch(&[
            failed_over(MARCH_2 + 1, 100, Some(10)),
            failed_over(MARCH_2 + 2, 300, Some(30)),
            direct(MARCH_2 + 3, "good", "claude", 200),
            failed(MARCH_2 + 4),
            rejected(MARCH_2 + 5),
        ])
        .await
        .unwrap();
    let s = fx
        .ledger
        .series_samples(MARCH_2, &CallFilter::default())
        .await
        .unwrap();
    assert!(!s.truncated);
    assert_eq!(s.samples.len(), 4, "rejected calls are left out");
    assert_eq!(s.samples[0].started_at_ms, MARCH_2 + 4, "newest first");
    let series = upstream_series(&s.samples, Bucket::Hour);
    let bad = &series[0].points[0];
    assert_eq!(series[0].upstream, "bad");
    assert_eq!((bad.attempts, bad.ok_attempts, bad.failovers), (3, 0, 2));
    let good = &series[1].points[0];
    assert_eq!((good.attempts, good.calls_answered), (3, 3));
    assert_eq!(
        (good.latency_p50_ms, good.latency_p95_ms),
        (Some(200), Some(300))
    );
    assert_eq!((good.ttft_p50_ms, good.ttft_p95_ms), (Some(10), Some(30)));
    assert_eq!(good.tokens_per_second_p50, Some(50.0));
    let claude = CallFilter {
        model: Some("claude".into()),
        ..CallFilter::default()
    };
    let only = fx.ledger.series_samples(MARCH_2, &claude).await.unwrap();
    assert_eq!(only.samples.len(), 1);
    assert_eq!(only.samples[0].latency_ms, 200);
}

/// The series queries on a ledger of 100,000 calls over 7 days (a third of
/// them failed over), timed: the numbers in `docs/performance.md`. Run by
/// hand: `cargo test -p tb-store --test series -- --ignored --nocapture`.
mod at_scale {
    use std::time::Instant;

    use super::*;

    const N: i64 = 100_000;
    const WEEK: i64 = 7 * 86_400_000;

    async fn measure(fx: Fixture, backend: &str) {
        let start = MARCH_2;
        let records: Vec<CallRecord> = (0..N)
            .map(|i| {
                let at = start + i * WEEK / N;
                let latency = 50 + (i * 7919 % 900) as u64;
                match i % 3 {
                    0 => failed_over(at, latency, Some(latency / 4)),
                    1 => direct(at, "good", "gpt-4o", latency),
                    _ => direct(at, "other", "claude", latency),
                }
            })
            .collect();
        for chunk in records.chunks(5_000) {
            fx.ledger.insert_batch(chunk).await.unwrap();
        }
        let all = CallFilter::default();
        let gpt = CallFilter {
            model: Some("gpt-4o".into()),
            ..CallFilter::default()
        };
        for (what, since, bucket, filter) in [
            ("7d by hour", start, Bucket::Hour, &all),
            ("7d by day", start, Bucket::Day, &all),
            (
                "24h by minute",
                start + WEEK - 86_400_000,
                Bucket::Minute,
                &all,
            ),
            ("7d by hour, model=gpt-4o", start, Bucket::Hour, &gpt),
        ] {
            let t = Instant::now();
            let spend = fx.ledger.spend_series(since, bucket, filter).await.unwrap();
            let sql = t.elapsed();
            let t = Instant::now();
            let samples = fx.ledger.series_samples(since, filter).await.unwrap();
            let read = t.elapsed();
            let t = Instant::now();
            let series = upstream_series(&samples.samples, bucket);
            let pure = t.elapsed();
            println!(
                "{backend} {what}: spend_series {sql:?} ({} buckets), series_samples {read:?} ({} rows), upstream_series {pure:?} ({} upstreams)",
                spend.len(),
                samples.samples.len(),
                series.len()
            );
            assert_eq!(
                spend.iter().map(|p| p.calls).sum::<u64>(),
                samples.samples.len() as u64
            );
        }
    }

    #[tokio::test]
    #[ignore = "a measurement: run by hand"]
    async fn sqlite() {
        measure(Fixture::sqlite().await, "sqlite").await;
    }

    #[tokio::test]
    #[ignore = "a measurement: run by hand"]
    async fn postgres() {
        measure(Fixture::postgres().await, "postgres").await;
    }
}
