//! Records per second through [`LedgerWriter`] into a SQLite ledger (the
//! default backend) in a temporary directory: 50,000 realistic records are
//! queued at once (the default 65,536 queue holds them, so none may be
//! dropped) and the clock stops when shutdown reports every one committed.
//! The target is ≥ 20,000 records/s on the 2-core reference machine.
//!
//! Each iteration opens a fresh ledger so the table size, and so the index
//! cost, is the same for every sample; opening and building the records
//! are not timed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use tb_billing::record::{
    Attempt, BalanceSource, BaselineKind, BilledTier, BillingUnit, CallOutcome, CallRecord,
};
use tb_domain::{Outcome, Protocol};
use tb_store::{Ledger, LedgerTarget, LedgerWriter};

const RECORDS: u64 = 50_000;
const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "deepseek-chat",
    "claude-sonnet-4-5",
    "gemini-2.5-flash",
];
const UPSTREAMS: [&str; 3] = ["alpha", "beta", "gamma"];

fn record(i: u64, base_ms: i64) -> CallRecord {
    let i_usize = usize::try_from(i).unwrap();
    let failed_over = i.is_multiple_of(10);
    let mut attempts = Vec::new();
    if failed_over {
        attempts.push(Attempt {
            upstream: UPSTREAMS[(i_usize + 1) % 3].into(),
            status: Some(502),
            outcome: Outcome::ServerError,
            error_class: Some(Outcome::ServerError),
            latency_ms: 40,
        });
    }
    attempts.push(Attempt {
        upstream: UPSTREAMS[i_usize % 3].into(),
        status: Some(200),
        outcome: Outcome::Ok,
        error_class: None,
        latency_ms: 180,
    });
    let priced = !i.is_multiple_of(7);
    CallRecord {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: format!("req-{i:016x}"),
        started_at_ms: base_ms + i64::try_from(i).unwrap(),
        endpoint: "chat".into(),
        protocol: Protocol::ChatCompletions,
        upstream_protocol: None,
        requested_model: MODELS[i_usize % 4].into(),
        model: MODELS[i_usize % 4].into(),
        stream: i.is_multiple_of(2),
        ok: true,
        outcome: CallOutcome::Ok,
        winner: Some(UPSTREAMS[i_usize % 3].into()),
        failed_over,
        attempts,
        latency_ms: 412 + i % 300,
        ttft_ms: i.is_multiple_of(2).then_some(120),
        input_tokens: Some(1_200 + i % 500),
        cached_input_tokens: Some(256),
        cache_write_tokens: None,
        cache_write_1h_tokens: None,
        output_tokens: Some(300 + i % 200),
        reasoning_tokens: None,
        tokens_per_second: i.is_multiple_of(2).then_some(87.5),
        cost_usd_micros: priced.then_some(300 + i64::try_from(i % 100).unwrap()),
        est_cost_usd_micros: priced.then_some(310),
        baseline_usd_micros: priced.then_some(400),
        baseline_kind: priced.then_some(BaselineKind::Official),
        saved_usd_micros: priced.then_some(100),
        cached_saving_usd_micros: Some(12),
        settled_credit_micros: None,
        balance_source: BalanceSource::SelfFundedProvider,
        remaining_credit_micros: None,
        billing_unit: BillingUnit::Tokens,
        image_count: None,
        image_size: None,
        image_quality: None,
        image_format: None,
        image_cost_per_image_usd_micros: None,
        image_output_tokens: None,
        image_output_cost_usd_micros: None,
        usage_missing: false,
        empty_completion: false,
        unpriced: !priced,
        price_tier: priced.then_some(BilledTier::STANDARD),
        price_drift_ppm: priced.then_some(32_258),
        prompt_hash: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        trace_parent: None,
        member: None,
    }
}

fn writer_into_sqlite(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ledger_writer");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("sqlite_50k_records", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let ledger = runtime
                    .block_on(Ledger::open(&LedgerTarget::Sqlite(
                        dir.path().join("ledger.db"),
                    )))
                    .unwrap();
                let records: Vec<CallRecord> =
                    (0..RECORDS).map(|i| record(i, 1_760_000_000_000)).collect();
                let start = Instant::now();
                let report = runtime.block_on(async {
                    let (sender, writer) = LedgerWriter::spawn(ledger.clone(), 65_536);
                    for r in records {
                        sender.record(r).unwrap();
                    }
                    writer.shutdown(Duration::from_secs(120)).await
                });
                timed += start.elapsed();
                assert_eq!(report.written, RECORDS);
                assert_eq!((report.unwritten, report.dropped), (0, 0));
                runtime.block_on(ledger.close());
            }
            timed
        });
    });
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, minus the
// undocumented `pub fn` the lints would reject.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    writer_into_sqlite(&mut criterion);
    criterion.final_summary();
}
