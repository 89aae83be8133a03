//! The ledger test suite. Every test is written once, as an `async fn`
//! taking a [`Fixture`], and runs against both backends: `sqlite::<name>`
//! in a temporary directory and `postgres::<name>` in a schema of its own
//! on the machine's server (failing, not skipping, when it is absent).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fixture, full_record, minimal_record, priced, zero_record};
use tb_billing::record::CallRecord;
use tb_store::{
    BatchSink, CallCursor, DropReason, GroupBy, Ledger, LedgerWriter, StoreError, UsageRow,
    WriterOptions,
};

both_backends!(
    round_trip_full_record,
    round_trip_minimal_and_zero_records,
    unusual_values_never_fail_a_batch,
    duplicate_ids_are_skipped,
    large_batch_is_split_and_committed,
    paging_is_newest_first_with_equal_timestamps,
    calls_since_is_oldest_first_and_exclusive,
    seq_follows_write_order,
    usage_by_model_excludes_unknown_costs,
    usage_by_upstream_groups_no_winner_under_empty_key,
    usage_by_day_uses_utc_dates,
    models_used_since_is_most_used_first,
    totals_sum_known_costs_only,
    retention_deletes_old_calls,
    config_kv_round_trip,
    reopen_keeps_data,
    writer_batches_and_commits,
    writer_drains_10000_on_shutdown,
    writer_full_queue_drops_without_blocking,
    writer_retries_the_same_batch_until_it_commits,
    writer_retry_after_ambiguous_commit_does_not_duplicate,
    shutdown_deadline_reports_unwritten,
);

const DAY_MS: i64 = 86_400_000;
/// 2024-03-02T00:00:00Z.
const MARCH_2: i64 = 1_709_337_600_000;

async fn round_trip_full_record(fx: Fixture) {
    let rec = full_record(MARCH_2 + 1);
    assert_eq!(
        fx.ledger
            .insert_batch(std::slice::from_ref(&rec))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fx.ledger.recent_calls(10, None).await.unwrap(),
        vec![rec.clone()]
    );
    assert_eq!(
        fx.ledger.calls_since(MARCH_2, 10).await.unwrap(),
        vec![rec.clone()]
    );
    let tail = fx.ledger.calls_after_seq(0, 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert!(tail[0].0 > 0);
    assert_eq!(tail[0].1, rec);
}

async fn round_trip_minimal_and_zero_records(fx: Fixture) {
    let minimal = minimal_record(MARCH_2);
    let zero = zero_record(MARCH_2 + 1);
    fx.ledger
        .insert_batch(&[minimal.clone(), zero.clone()])
        .await
        .unwrap();
    let got = fx.ledger.recent_calls(10, None).await.unwrap();
    // Newest first; unknown (None) and known zero (Some(0)) stay distinct.
    assert_eq!(got, vec![zero, minimal]);
    assert_eq!(got[0].cost_usd_micros, Some(0));
    assert_eq!(got[1].cost_usd_micros, None);
    assert_eq!(got[0].tokens_per_second, Some(0.0));
    assert_eq!(got[1].tokens_per_second, None);
}

async fn unusual_values_never_fail_a_batch(fx: Fixture) {
    // Client-chosen text with NUL (PostgreSQL text refuses it), counts
    // beyond i64, a non-finite rate: stored, never a poisoned batch.
    let mut odd = minimal_record(MARCH_2);
    odd.requested_model = "evil\0model".into();
    odd.latency_ms = u64::MAX;
    odd.tokens_per_second = Some(f64::NAN);
    let mut inf = minimal_record(MARCH_2 - 1);
    inf.tokens_per_second = Some(f64::INFINITY);
    inf.cost_usd_micros = Some(i64::MIN);
    fx.ledger
        .insert_batch(&[odd.clone(), inf.clone()])
        .await
        .unwrap();
    let got = fx.ledger.recent_calls(10, None).await.unwrap();
    assert_eq!(got[0].id, odd.id);
    assert_eq!(got[0].requested_model, "evil\u{FFFD}model");
    assert_eq!(got[0].latency_ms, i64::MAX as u64);
    assert_eq!(got[0].tokens_per_second, None);
    assert_eq!(got[1].tokens_per_second, None);
    assert_eq!(got[1].cost_usd_micros, Some(i64::MIN));
}

async fn duplicate_ids_are_skipped(fx: Fixture) {
    let a = minimal_record(1);
    let b = minimal_record(2);
    let c = minimal_record(3);
    assert_eq!(
        fx.ledger
            .insert_batch(&[a.clone(), b.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        fx.ledger.insert_batch(&[a, b, c.clone(), c]).await.unwrap(),
        1
    );
    assert_eq!(fx.count().await, 3);
    assert_eq!(fx.ledger.insert_batch(&[]).await.unwrap(), 0);
}

async fn large_batch_is_split_and_committed(fx: Fixture) {
    // 1,000 = 7×128 + 64 + 32 + 8: every chunk size but the smallest.
    let records: Vec<CallRecord> = (0..1000).map(|i| full_record(MARCH_2 + i)).collect();
    assert_eq!(fx.ledger.insert_batch(&records).await.unwrap(), 1000);
    assert_eq!(fx.count().await, 1000);
    let newest = fx.ledger.recent_calls(3, None).await.unwrap();
    assert_eq!(
        newest,
        vec![
            records[999].clone(),
            records[998].clone(),
            records[997].clone()
        ]
    );
    let oldest = fx.ledger.calls_since(i64::MIN, 2).await.unwrap();
    assert_eq!(oldest, vec![records[0].clone(), records[1].clone()]);
}

async fn paging_is_newest_first_with_equal_timestamps(fx: Fixture) {
    let mut records = Vec::new();
    for (t, n) in [(1_000, 10), (2_000, 5), (500, 5)] {
        for i in 0..n {
            let mut r = minimal_record(t);
            r.id = format!("id-{t:05}-{i:02}");
            records.push(r);
        }
    }
    fx.ledger.insert_batch(&records).await.unwrap();

    let mut expected = records.clone();
    expected.sort_by(|a, b| (b.started_at_ms, &b.id).cmp(&(a.started_at_ms, &a.id)));

    let mut pages = Vec::new();
    let mut cursor: Option<CallCursor> = None;
    loop {
        let page = fx.ledger.recent_calls(4, cursor.as_ref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        cursor = page.last().map(CallCursor::from);
        pages.extend(page);
    }
    let ids = |v: &[CallRecord]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&pages), ids(&expected));
    assert_eq!(pages.len(), 20);
}

async fn calls_since_is_oldest_first_and_exclusive(fx: Fixture) {
    let records: Vec<CallRecord> = [5, 1, 3, 3, 4].into_iter().map(minimal_record).collect();
    fx.ledger.insert_batch(&records).await.unwrap();
    let got = fx.ledger.calls_since(3, 10).await.unwrap();
    let times: Vec<i64> = got.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(times, vec![4, 5]);
    let got = fx.ledger.calls_since(1, 3).await.unwrap();
    let times: Vec<i64> = got.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(times, vec![3, 3, 4]);
    assert!(got[0].id < got[1].id);
}

async fn seq_follows_write_order(fx: Fixture) {
    assert_eq!(fx.ledger.last_seq().await.unwrap(), 0);
    fx.ledger.insert_batch(&[minimal_record(10)]).await.unwrap();
    let start = fx.ledger.last_seq().await.unwrap();
    assert!(start > 0);
    // A long call that started earlier is written after a later short one.
    let short = minimal_record(5_000);
    let long = minimal_record(1_000);
    fx.ledger
        .insert_batch(std::slice::from_ref(&short))
        .await
        .unwrap();
    fx.ledger
        .insert_batch(std::slice::from_ref(&long))
        .await
        .unwrap();
    let tail = fx.ledger.calls_after_seq(start, 10).await.unwrap();
    let ids: Vec<&str> = tail.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, vec![short.id.as_str(), long.id.as_str()]);
    assert!(tail[0].0 < tail[1].0);
    assert_eq!(fx.ledger.last_seq().await.unwrap(), tail[1].0);
    assert!(
        fx.ledger
            .calls_after_seq(tail[1].0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The time-based view misses the long call that way.
    let since = fx.ledger.calls_since(1_500, 10).await.unwrap();
    assert_eq!(since.len(), 1);
}

fn row(key: &str, calls: u64, ok: u64, cost: i64, saved: i64, unpriced: u64) -> UsageRow {
    UsageRow {
        key: key.into(),
        calls,
        ok_calls: ok,
        input_tokens: 100 * ok,
        cached_input_tokens: 10 * ok,
        output_tokens: 20 * ok,
        cost_usd_micros: cost,
        saved_usd_micros: saved,
        unpriced_calls: unpriced,
    }
}

/// Model `a`: three successful calls (one unpriced) and one failure with no
/// usage; model `b`: one unpriced call; plus an older call outside the
/// window.
fn usage_fixture() -> Vec<CallRecord> {
    let t = MARCH_2;
    vec![
        priced(t, "a", Some("alpha"), Some(100), Some(10)),
        priced(t + 1, "a", Some("beta"), None, None),
        priced(t + 2, "a", Some("alpha"), Some(50), Some(5)),
        CallRecord {
            model: "a".into(),
            ..minimal_record(t + 3)
        },
        priced(t + 4, "b", Some("beta"), None, Some(7)),
        priced(t - DAY_MS, "old", Some("alpha"), Some(1_000_000), Some(1)),
    ]
}

async fn usage_by_model_excludes_unknown_costs(fx: Fixture) {
    fx.ledger.insert_batch(&usage_fixture()).await.unwrap();
    let rows = fx
        .ledger
        .usage_summary(MARCH_2, GroupBy::Model)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![row("a", 4, 3, 150, 15, 2), row("b", 1, 1, 0, 7, 1)]
    );
    // Nothing in the window: no rows, not a row of zeros.
    let none = fx
        .ledger
        .usage_summary(MARCH_2 + DAY_MS, GroupBy::Model)
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn usage_by_upstream_groups_no_winner_under_empty_key(fx: Fixture) {
    fx.ledger.insert_batch(&usage_fixture()).await.unwrap();
    let rows = fx
        .ledger
        .usage_summary(MARCH_2, GroupBy::Upstream)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            row("", 1, 0, 0, 0, 1),
            row("alpha", 2, 2, 150, 15, 0),
            row("beta", 2, 2, 0, 7, 2),
        ]
    );
}

async fn usage_by_day_uses_utc_dates(fx: Fixture) {
    let records = vec![
        priced(MARCH_2 - 1, "a", Some("alpha"), Some(1), Some(1)),
        priced(MARCH_2, "a", Some("alpha"), Some(2), None),
        priced(MARCH_2 + DAY_MS - 1, "b", Some("alpha"), Some(3), Some(3)),
        priced(MARCH_2 + DAY_MS, "b", Some("alpha"), None, None),
        priced(MARCH_2 - 40 * DAY_MS, "b", Some("alpha"), Some(99), None),
    ];
    fx.ledger.insert_batch(&records).await.unwrap();
    let rows = fx
        .ledger
        .usage_summary(MARCH_2 - DAY_MS, GroupBy::Day)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            row("2024-03-01", 1, 1, 1, 1, 0),
            row("2024-03-02", 2, 2, 5, 3, 0),
            row("2024-03-03", 1, 1, 0, 0, 1),
        ]
    );
    let all = fx
        .ledger
        .usage_summary(i64::MIN, GroupBy::Day)
        .await
        .unwrap();
    assert_eq!(all[0].key, "2024-01-22");
}

async fn models_used_since_is_most_used_first(fx: Fixture) {
    let mut records = Vec::new();
    for (model, n) in [("b", 2), ("c", 3), ("a", 2)] {
        for i in 0..n {
            records.push(priced(MARCH_2 + i, model, None, None, None));
        }
    }
    for i in 0..5 {
        records.push(priced(MARCH_2 - DAY_MS + i, "old", None, None, None));
    }
    fx.ledger.insert_batch(&records).await.unwrap();
    assert_eq!(
        fx.ledger.models_used_since(MARCH_2, 10).await.unwrap(),
        vec!["c", "a", "b"]
    );
    assert_eq!(
        fx.ledger.models_used_since(MARCH_2, 2).await.unwrap(),
        vec!["c", "a"]
    );
    assert_eq!(
        fx.ledger.models_used_since(i64::MIN, 1).await.unwrap(),
        vec!["old"]
    );
    assert!(
        fx.ledger
            .models_used_since(MARCH_2 + DAY_MS, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn totals_sum_known_costs_only(fx: Fixture) {
    let empty = fx.ledger.totals(i64::MIN).await.unwrap();
    assert_eq!(
        (empty.calls, empty.cost_usd_micros, empty.saved_usd_micros),
        (0, 0, 0)
    );
    fx.ledger.insert_batch(&usage_fixture()).await.unwrap();
    let t = fx.ledger.totals(MARCH_2).await.unwrap();
    assert_eq!(t.calls, 5);
    assert_eq!(t.cost_usd_micros, 150);
    assert_eq!(t.saved_usd_micros, 22);
    assert_eq!(t.unpriced_calls, 3);
    let all = fx.ledger.totals(i64::MIN).await.unwrap();
    assert_eq!(all.calls, 6);
    assert_eq!(all.cost_usd_micros, 1_000_150);
}

async fn retention_deletes_old_calls(fx: Fixture) {
    fx.ledger.insert_batch(&usage_fixture()).await.unwrap();
    assert_eq!(fx.ledger.delete_calls_before(MARCH_2).await.unwrap(), 1);
    assert_eq!(fx.count().await, 5);
    assert_eq!(fx.ledger.delete_calls_before(MARCH_2).await.unwrap(), 0);
}

async fn config_kv_round_trip(fx: Fixture) {
    let l = &fx.ledger;
    assert_eq!(l.config_get("provider.mode").await.unwrap(), None);
    l.config_put("provider.mode", "auto").await.unwrap();
    l.config_put("registry.snapshot", r#"{"sellers":[{"id":"s1"}],"ü":"✓"}"#)
        .await
        .unwrap();
    assert_eq!(
        l.config_get("provider.mode").await.unwrap().as_deref(),
        Some("auto")
    );
    l.config_put("provider.mode", "both").await.unwrap();
    assert_eq!(
        l.config_get("provider.mode").await.unwrap().as_deref(),
        Some("both")
    );
    assert_eq!(
        l.config_get("registry.snapshot").await.unwrap().as_deref(),
        Some(r#"{"sellers":[{"id":"s1"}],"ü":"✓"}"#)
    );
    assert!(l.config_delete("provider.mode").await.unwrap());
    assert!(!l.config_delete("provider.mode").await.unwrap());
    assert_eq!(l.config_get("provider.mode").await.unwrap(), None);
}

async fn reopen_keeps_data(fx: Fixture) {
    let rec = full_record(MARCH_2);
    fx.ledger
        .insert_batch(std::slice::from_ref(&rec))
        .await
        .unwrap();
    fx.ledger.config_put("k", "v").await.unwrap();
    // Opening again runs the migrations again: a no-op.
    let again = fx.reopen().await;
    assert_eq!(again.backend(), fx.ledger.backend());
    assert_eq!(again.recent_calls(5, None).await.unwrap(), vec![rec]);
    assert_eq!(again.config_get("k").await.unwrap().as_deref(), Some("v"));
    again.close().await;
}

/// Waits until the ledger holds `n` calls, or fails after 20 s.
async fn wait_for_count(fx: &Fixture, n: u64) {
    let start = Instant::now();
    loop {
        let count = fx.count().await;
        if count == n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ledger holds {count} calls, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Remembers the ids of every batch it is asked to write; fails the first
/// `fail_before` writes, and the first `fail_after` writes after
/// committing them (an ambiguous commit: stored, but reported as failed).
struct TestSink {
    inner: Ledger,
    fail_before: AtomicU32,
    fail_after: AtomicU32,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl TestSink {
    fn new(inner: Ledger) -> TestSink {
        TestSink {
            inner,
            fail_before: AtomicU32::new(0),
            fail_after: AtomicU32::new(0),
            gate: None,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn injected() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol("injected failure".into()))
}

impl BatchSink for TestSink {
    type Item = CallRecord;

    async fn write_batch(&self, batch: &[CallRecord]) -> Result<(), StoreError> {
        self.calls
            .lock()
            .unwrap()
            .push(batch.iter().map(|r| r.id.clone()).collect());
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.unwrap();
        }
        if take_one(&self.fail_before) {
            return Err(injected());
        }
        self.inner.insert_batch(batch).await?;
        if take_one(&self.fail_after) {
            return Err(injected());
        }
        Ok(())
    }
}

async fn writer_batches_and_commits(fx: Fixture) {
    let sink = Arc::new(TestSink::new(fx.ledger.clone()));
    let (sender, writer) = LedgerWriter::spawn(Arc::clone(&sink), 4096);
    let records: Vec<CallRecord> = (0..1000).map(|i| minimal_record(MARCH_2 + i)).collect();
    for r in &records {
        sender.record(r.clone()).unwrap();
    }
    // Committed while the writer runs, not only at shutdown. The rows are
    // visible as soon as a batch commits, a moment before the writer counts
    // it: wait for both.
    wait_for_count(&fx, 1000).await;
    let start = Instant::now();
    while sender.written() < 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "written: {}",
            sender.written()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sender.written(), 1000);
    // Everything was queued before the writer first ran (one thread), so
    // it took full batches of 256.
    let sizes: Vec<usize> = sink.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![256, 256, 256, 232]);

    // A lone record is committed within the batching window, not held.
    let lone = minimal_record(MARCH_2 + 5_000);
    sender.record(lone.clone()).unwrap();
    wait_for_count(&fx, 1001).await;
    assert_eq!(sink.calls().last().unwrap(), &vec![lone.id.clone()]);

    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_complete());
    assert_eq!(
        (report.written, report.unwritten, report.dropped),
        (1001, 0, 0)
    );
    assert_eq!(sender.dropped(), 0);
}

async fn writer_drains_10000_on_shutdown(fx: Fixture) {
    let (sender, writer) = LedgerWriter::spawn(fx.ledger.clone(), 65_536);
    let records: Vec<CallRecord> = (0..10_000).map(|i| minimal_record(MARCH_2 + i)).collect();
    for r in records {
        sender.record(r).unwrap();
    }
    let report = writer.shutdown(Duration::from_secs(120)).await;
    assert_eq!(
        (report.written, report.unwritten, report.dropped),
        (10_000, 0, 0)
    );
    assert_eq!(fx.count().await, 10_000);
    // After shutdown the queue is closed: records come back.
    let late = sender.record(minimal_record(1)).unwrap_err();
    assert_eq!(late.reason, DropReason::WriterClosed);
    assert_eq!(sender.dropped(), 1);
}

async fn writer_full_queue_drops_without_blocking(fx: Fixture) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink = Arc::new(TestSink {
        gate: Some(Arc::clone(&gate)),
        ..TestSink::new(fx.ledger.clone())
    });
    let (sender, writer) = LedgerWriter::spawn(Arc::clone(&sink), 4);

    // The writer has not run yet (one thread): four fit, the fifth does not.
    let queued: Vec<CallRecord> = (0..4).map(|i| minimal_record(MARCH_2 + i)).collect();
    for r in &queued {
        sender.record(r.clone()).unwrap();
    }
    assert_eq!(sender.queued(), 4);
    let start = Instant::now();
    let extra = minimal_record(MARCH_2 + 10);
    let dropped = sender.record(extra.clone()).unwrap_err();
    assert_eq!(dropped.reason, DropReason::QueueFull);
    assert_eq!(
        dropped.record.id, extra.id,
        "the record comes back to be logged"
    );
    assert!(dropped.to_string().contains(&extra.id));
    for _ in 0..999 {
        assert!(sender.record(minimal_record(MARCH_2 + 11)).is_err());
    }
    assert!(start.elapsed() < Duration::from_secs(1), "record() blocked");
    assert_eq!(sender.dropped(), 1000);

    // The writer takes the four and blocks on the database: the queue has
    // room again while that batch waits.
    while sink.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(sender.queued(), 0);
    let more: Vec<CallRecord> = (0..4).map(|i| minimal_record(MARCH_2 + 20 + i)).collect();
    for r in &more {
        sender.record(r.clone()).unwrap();
    }
    assert!(sender.record(minimal_record(MARCH_2 + 30)).is_err());
    assert_eq!(writer.dropped(), 1001);

    gate.add_permits(1);
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (report.written, report.unwritten, report.dropped),
        (8, 0, 1001)
    );
    assert_eq!(fx.count().await, 8);
}

async fn writer_retries_the_same_batch_until_it_commits(fx: Fixture) {
    let sink = Arc::new(TestSink::new(fx.ledger.clone()));
    sink.fail_before.store(3, Ordering::SeqCst);
    let (sender, writer) = LedgerWriter::spawn(Arc::clone(&sink), 1024);
    let healthy = sender.health();
    assert_eq!((healthy.pending, healthy.failing), (0, None));
    let start = Instant::now();
    for i in 0..10 {
        sender.record(minimal_record(MARCH_2 + i)).unwrap();
    }
    // While commits fail, the health says so: the error, and what waits.
    let failing = loop {
        let h = sender.health();
        if let Some(f) = h.failing {
            break (h.pending, h.failed_writes, f.error);
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(failing.0, 10);
    assert!(failing.1 >= 1);
    assert!(failing.2.contains("injected failure"), "{}", failing.2);
    wait_for_count(&fx, 10).await;
    let recovered = loop {
        let h = sender.health();
        if h.written == 10 {
            break h;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        (recovered.pending, recovered.written, recovered.failing),
        (0, 10, None),
        "a successful commit ends the failure"
    );
    // Backoff 100 + 200 + 400 ms before the fourth try.
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(writer.failed_writes(), 3);
    let calls = sink.calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].len(), 10);
    assert!(
        calls.iter().all(|c| c == &calls[0]),
        "the same batch every time"
    );

    // Records queued while a batch is being retried are written after it.
    sink.fail_before.store(2, Ordering::SeqCst);
    for i in 0..5 {
        sender.record(minimal_record(MARCH_2 + 100 + i)).unwrap();
    }
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written, report.unwritten), (15, 0));
    assert_eq!(fx.count().await, 15);
}

async fn writer_retry_after_ambiguous_commit_does_not_duplicate(fx: Fixture) {
    let sink = Arc::new(TestSink::new(fx.ledger.clone()));
    sink.fail_after.store(2, Ordering::SeqCst);
    let options = WriterOptions {
        backoff_initial: Duration::from_millis(5),
        ..WriterOptions::default()
    };
    let (sender, writer) = LedgerWriter::spawn_with(Arc::clone(&sink), options);
    for i in 0..20 {
        sender.record(minimal_record(MARCH_2 + i)).unwrap();
    }
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written, report.unwritten), (20, 0));
    assert_eq!(sink.calls().len(), 3);
    assert_eq!(fx.count().await, 20);
}

async fn shutdown_deadline_reports_unwritten(fx: Fixture) {
    let sink = Arc::new(TestSink::new(fx.ledger.clone()));
    sink.fail_before.store(u32::MAX, Ordering::SeqCst);
    let (sender, writer) = LedgerWriter::spawn(Arc::clone(&sink), 64);
    for i in 0..7 {
        sender.record(minimal_record(MARCH_2 + i)).unwrap();
    }
    let start = Instant::now();
    let report = writer.shutdown(Duration::from_millis(400)).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!report.is_complete());
    assert_eq!((report.written, report.unwritten), (0, 7));
    assert!(sink.calls().len() >= 2, "retried before the deadline");
    assert_eq!(fx.count().await, 0);
}

// Backend-specific checks.

#[tokio::test]
async fn sqlite_file_uses_wal_and_creates_directories() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/ledger.db");
    let ledger = Ledger::open(&tb_store::LedgerTarget::Sqlite(path.clone()))
        .await
        .unwrap();
    ledger.insert_batch(&[minimal_record(1)]).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    ledger.close().await;
}

#[tokio::test]
async fn postgres_rejects_unsafe_schema_names() {
    let target = tb_store::LedgerTarget::Postgres {
        url: common::POSTGRES_URL.into(),
        schema: Some("x\"; DROP TABLE calls; --".into()),
    };
    let err = Ledger::open(&target).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTarget(_)), "{err}");
}

#[tokio::test]
async fn postgres_schemas_are_isolated() {
    let a = Fixture::postgres().await;
    let b = Fixture::postgres().await;
    a.ledger.insert_batch(&[minimal_record(1)]).await.unwrap();
    assert_eq!(a.count().await, 1);
    assert_eq!(b.count().await, 0);
}
