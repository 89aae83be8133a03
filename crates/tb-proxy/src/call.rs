//! One call record per proxied request: the tracker collects what happened
//! on the request path (attempts, winner, timings) and, when the answer has
//! been forwarded (or the client went away), prices the usage and hands the
//! record to the sink — off the request path, never blocking it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tb_billing::cost::{Costing, RoutePrice, cost_manual_call, cost_seller_call};
use tb_billing::image::{ImageFields, image_fields};
use tb_billing::record::{
    Attempt, BalanceSource, CallOutcome, CallRecord, endpoint_label, prompt_hash,
};
use tb_billing::settlement::Settlement;
use tb_billing::usage::{Usage, UsageReport};
use tb_domain::{Protocol, TraceParent};
use tb_router::Upstream;

/// Where call records go (the ledger writer, in the daemon). `submit` must
/// not block: when it cannot take the record it hands it back.
pub trait CallSink: Send + Sync + 'static {
    /// Queues a record; `Err(record)` when the queue is full.
    fn submit(&self, record: CallRecord) -> Result<(), Box<CallRecord>>;

    /// Whether records reach storage (for metrics, status and `doctor`).
    /// A sink that cannot fail keeps the default: healthy, nothing pending.
    fn health(&self) -> SinkHealth {
        SinkHealth::default()
    }
}

/// What a [`CallSink`] reports about its storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkHealth {
    /// Records accepted but not yet stored.
    pub pending: u64,
    /// Failed writes so far (each retried).
    pub failed_writes: u64,
    /// Set while storing fails: the records wait in memory meanwhile.
    pub failing: Option<SinkFailure>,
}

/// A storage failure in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFailure {
    /// The latest error (never contains secrets: no URLs with passwords).
    pub error: String,
    /// How long writes have been failing.
    pub for_ms: u64,
}

/// Turns finished calls into records and submits them.
pub(crate) struct Recorder {
    sink: Option<Arc<dyn CallSink>>,
    dropped: AtomicU64,
    metrics: Arc<crate::metrics::ProxyMetrics>,
}

impl Recorder {
    pub(crate) fn new(
        sink: Option<Arc<dyn CallSink>>,
        metrics: Arc<crate::metrics::ProxyMetrics>,
    ) -> Recorder {
        Recorder {
            sink,
            dropped: AtomicU64::new(0),
            metrics,
        }
    }

    pub(crate) fn submit(&self, record: CallRecord) {
        self.metrics.observe_call(&record);
        // The one-line form costs a few allocations: only when it is logged.
        if tracing::enabled!(target: "call.recorded", tracing::Level::INFO) {
            let line = record.one_line();
            tracing::info!(target: "call.recorded", request_id = %record.request_id, record_id = %record.id, "{line}");
        }
        let Some(sink) = &self.sink else { return };
        if let Err(record) = sink.submit(record) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.ledger_dropped.inc();
            let line = record.one_line();
            tracing::warn!(target: "ledger.dropped", request_id = %record.request_id, "ledger queue full, record not stored: {line}");
        }
    }

    /// Records the ledger queue refused.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The sink's storage health (healthy when there is no sink).
    pub(crate) fn health(&self) -> SinkHealth {
        self.sink.as_ref().map(|s| s.health()).unwrap_or_default()
    }
}

/// What is known when the request is planned.
pub(crate) struct CallStart {
    /// The record's id (a member's reservation has the same id).
    pub id: String,
    pub request_id: String,
    pub started: Instant,
    pub started_at_ms: i64,
    pub protocol: Protocol,
    pub requested_model: String,
    pub model: String,
    pub stream: bool,
    /// The client's body, for the prompt hash (computed at the end, not on
    /// the request path).
    pub request_body: Bytes,
    /// The planned chain, in order (for the savings baseline).
    pub plan: Vec<Arc<Upstream>>,
    /// The client's `traceparent`, when valid (for exported spans).
    pub trace_parent: Option<TraceParent>,
    /// The member whose key authenticated the request.
    pub member: Option<String>,
}

/// Records a request the daemon refused before any upstream saw it (a
/// malformed body) and returns the client's 400. The record has no
/// attempts, no winner and no cost: nothing here touches a breaker, a
/// purchase or an upstream's statistics, yet the call stays visible in the
/// ledger as `rejected`.
pub(crate) fn reject(
    recorder: &Arc<Recorder>,
    invalid: crate::validate::Invalid,
    protocol: Protocol,
    request_id: &str,
    started: (Instant, i64),
) -> crate::error::ProxyError {
    reject_as(
        recorder,
        &invalid,
        invalid.to_proxy_error(),
        protocol,
        (request_id, started),
    )
}

/// [`reject`] for any refused body: `problem` is logged, `error` answered.
pub(crate) fn reject_as(
    recorder: &Arc<Recorder>,
    problem: &dyn std::fmt::Display,
    error: crate::error::ProxyError,
    protocol: Protocol,
    (request_id, started): (&str, (Instant, i64)),
) -> crate::error::ProxyError {
    tracing::info!(target: "request.rejected", request_id = %request_id, problem = %problem, "malformed request body refused");
    let start = CallStart {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: request_id.to_string(),
        started: started.0,
        started_at_ms: started.1,
        protocol,
        requested_model: String::new(),
        model: String::new(),
        stream: false,
        // No prompt hash for a body that is not valid JSON.
        request_body: Bytes::new(),
        plan: Vec::new(),
        trace_parent: None,
        member: None,
    };
    CallTracker::new(Arc::clone(recorder), start).finish(CallOutcome::Rejected, None, None, None);
    error
}

/// Unix milliseconds now (the ledger's time unit).
pub(crate) fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Follows one call from planning to its record. Dropping an unfinished
/// tracker records the call as cancelled: the client went away.
pub(crate) struct CallTracker {
    inner: Option<Tracked>,
}

struct Tracked {
    recorder: Arc<Recorder>,
    start: CallStart,
    attempts: Vec<Attempt>,
    winner: Option<Arc<Upstream>>,
    /// The winner's protocol on a translated route.
    translated_to: Option<Protocol>,
}

impl CallTracker {
    pub(crate) fn new(recorder: Arc<Recorder>, start: CallStart) -> CallTracker {
        CallTracker {
            inner: Some(Tracked {
                recorder,
                start,
                attempts: Vec::new(),
                winner: None,
                translated_to: None,
            }),
        }
    }

    /// Records one upstream attempt.
    pub(crate) fn attempt(&mut self, attempt: Attempt) {
        if let Some(t) = &mut self.inner {
            t.attempts.push(attempt);
        }
    }

    /// The upstream whose answer goes to the client.
    /// The upstream whose answer the client gets, and the protocol it was
    /// spoken to in when that is not the client's.
    pub(crate) fn set_winner(&mut self, upstream: Arc<Upstream>, translated_to: Option<Protocol>) {
        if let Some(t) = &mut self.inner {
            t.winner = Some(upstream);
            t.translated_to = translated_to;
        }
    }

    /// Finishes the call: prices it and submits the record.
    pub(crate) fn finish(
        mut self,
        outcome: CallOutcome,
        report: Option<UsageReport>,
        ttft: Option<Duration>,
        settlement: Option<Settlement>,
    ) {
        if let Some(t) = self.inner.take() {
            let (record, recorder) = t.into_record(outcome, report, ttft, settlement);
            recorder.submit(record);
        }
    }
}

impl Drop for CallTracker {
    fn drop(&mut self) {
        if let Some(t) = self.inner.take() {
            let (record, recorder) = t.into_record(CallOutcome::Cancelled, None, None, None);
            recorder.submit(record);
        }
    }
}

/// What the call cost and who paid: a seller's settlement or estimate, a
/// manual provider's price with its savings baseline, or nothing for a
/// call that failed. A reported cost far off the estimate is logged.
fn price_call(
    start: &CallStart,
    winner: Option<&Upstream>,
    ok_report: Option<&UsageReport>,
    settlement: Option<&Settlement>,
) -> (Costing, BalanceSource) {
    let usage = ok_report.and_then(|r| r.usage.as_ref());
    let official = RoutePrice::official(&start.model);
    let plan = || -> Vec<RoutePrice> {
        start
            .plan
            .iter()
            .map(|u| u.price_of(&start.model))
            .collect()
    };
    let (costing, balance_source) = match winner {
        Some(w) if w.seller_url().is_some() => cost_seller_call(
            usage,
            &w.price_of(&start.model),
            &plan(),
            &official,
            settlement.and_then(|s| s.settled_usd_micros),
        ),
        Some(w) if ok_report.is_some() => cost_manual_call(
            usage,
            &w.price_of(&start.model),
            &plan(),
            &official,
            ok_report.and_then(|r| r.reported_cost_usd_micros),
        ),
        _ => (Costing::default(), BalanceSource::SelfFundedProvider),
    };
    warn_if_outlier(&start.request_id, &costing);
    (costing, balance_source)
}

/// Logs `billing.cost_outlier` when the upstream's bill is 25× off the
/// estimate (every kind of call, videos included).
pub(crate) fn warn_if_outlier(request_id: &str, costing: &Costing) {
    if costing.outlier {
        tracing::warn!(
            target: "billing.cost_outlier",
            request_id = %request_id,
            reported = ?costing.cost_usd_micros,
            estimate = ?costing.est_cost_usd_micros,
            "the upstream's reported cost is 25× off our estimate; check its units"
        );
    }
}

/// The record's image fields: the seller's breakdown first, then the
/// usage; image output tokens at the serving route's price.
fn image_of(
    start: &CallStart,
    winner: Option<&Upstream>,
    usage: Option<&Usage>,
    settlement: Option<&Settlement>,
    cost_usd_micros: Option<u64>,
) -> ImageFields {
    // Only an image call has image output tokens to price, so no other
    // call pays for the price lookup.
    let route = match winner {
        Some(w) if start.protocol.is_images() => w.price_of(&start.model),
        _ => RoutePrice::Unpriced,
    };
    image_fields(
        start.protocol,
        usage,
        settlement.and_then(|s| s.breakdown.as_ref()),
        cost_usd_micros,
        &route,
    )
}

/// A ledger amount (signed, saturating).
fn signed(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// `output × 1000 / (latency − ttft)` for streams with known usage.
fn tokens_per_second(latency_ms: u64, ttft_ms: Option<u64>, output: Option<u64>) -> Option<f64> {
    match (ttft_ms, output) {
        (Some(t), Some(out)) if latency_ms > t => {
            Some(out as f64 * 1000.0 / (latency_ms - t) as f64)
        }
        _ => None,
    }
}

impl Tracked {
    fn into_record(
        self,
        outcome: CallOutcome,
        report: Option<UsageReport>,
        ttft: Option<Duration>,
        settlement: Option<Settlement>,
    ) -> (CallRecord, Arc<Recorder>) {
        let Tracked {
            recorder,
            start,
            attempts,
            winner,
            translated_to,
        } = self;
        let seller_won = winner.as_ref().is_some_and(|w| w.seller_url().is_some());
        // Only marketplace sellers settle; a manual provider's is ignored.
        let settlement = settlement.filter(|_| seller_won);
        let latency = start.started.elapsed();
        let ok = outcome == CallOutcome::Ok;
        let report = report.filter(|_| ok).unwrap_or_default();
        let usage = report.usage.as_ref();

        let (costing, balance_source) = price_call(
            &start,
            winner.as_deref(),
            ok.then_some(&report),
            settlement.as_ref(),
        );

        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let latency_ms = ms(latency);
        let ttft_ms = if start.stream { ttft.map(ms) } else { None };
        let output = usage.and_then(|u| u.output_tokens);
        let tokens_per_second = tokens_per_second(latency_ms, ttft_ms, output);
        let image = image_of(
            &start,
            winner.as_deref(),
            usage,
            settlement.as_ref(),
            costing.cost_usd_micros,
        );
        let record = CallRecord {
            // `start` is consumed here: its strings move into the record.
            id: start.id,
            request_id: start.request_id,
            started_at_ms: start.started_at_ms,
            endpoint: endpoint_label(start.protocol).to_string(),
            protocol: start.protocol,
            upstream_protocol: translated_to,
            requested_model: start.requested_model,
            model: start.model,
            stream: start.stream,
            ok,
            outcome,
            winner: winner.as_ref().map(|w| w.id.to_string()),
            failed_over: attempts.len() > 1,
            attempts,
            latency_ms,
            ttft_ms,
            input_tokens: usage.and_then(|u| u.input_tokens),
            cached_input_tokens: usage.and_then(|u| u.cached_input_tokens),
            cache_write_tokens: usage.and_then(|u| u.cache_write_tokens),
            cache_write_1h_tokens: usage.and_then(|u| u.cache_write_1h_tokens),
            output_tokens: output,
            reasoning_tokens: usage.and_then(|u| u.reasoning_tokens),
            tokens_per_second,
            cost_usd_micros: signed(costing.cost_usd_micros),
            est_cost_usd_micros: signed(costing.est_cost_usd_micros),
            baseline_usd_micros: signed(costing.baseline_usd_micros),
            baseline_kind: costing.baseline_kind,
            saved_usd_micros: signed(costing.saved_usd_micros),
            cached_saving_usd_micros: signed(costing.cached_saving_usd_micros),
            settled_credit_micros: signed(settlement.as_ref().and_then(|s| s.settled_micros)),
            balance_source,
            remaining_credit_micros: signed(
                settlement.as_ref().and_then(|s| s.remaining_credit_micros),
            ),
            billing_unit: image.billing_unit,
            image_count: image.count,
            image_size: image.size,
            image_quality: image.quality,
            image_format: image.format,
            image_cost_per_image_usd_micros: signed(image.cost_per_image_usd_micros),
            image_output_tokens: image.output_tokens,
            image_output_cost_usd_micros: signed(image.output_cost_usd_micros),
            usage_missing: ok && report.usage_missing,
            empty_completion: ok && report.empty_completion,
            unpriced: ok && costing.unpriced,
            price_tier: costing.price_tier,
            price_drift_ppm: signed(costing.price_drift_ppm),
            prompt_hash: prompt_hash(start.protocol, &start.request_body),
            trace_parent: start.trace_parent,
            member: start.member,
        };
        (record, recorder)
    }
}
