//! Prometheus metrics of the proxy plane (operations.md, "Metrics"). Per-call
//! series are derived from the call record in one place; the circuit gauge
//! is refreshed when `/metrics` is scraped. Other components' gauges
//! (credit, registry, prewarm, ledger, connections) are the binary's. Label values
//! are bounded: model and upstream ids come from config or the registry
//! (only planned requests have a record), never from free client input.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tb_billing::record::{CallRecord, endpoint_label};

/// Every metric the proxy exports, registered on one registry.
pub(crate) struct ProxyMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    attempts: IntCounterVec,
    translated: IntCounterVec,
    failovers: IntCounterVec,
    pub(crate) circuit_open: IntGaugeVec,
    tokens: IntCounterVec,
    cost: IntCounterVec,
    saved: IntCounter,
    pub(crate) purchases: IntCounterVec,
    pub(crate) ledger_dropped: IntCounter,
    pub(crate) overhead: Histogram,
}

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const OVERHEAD_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

/// Registers a collector. Registration of these fixed, valid names cannot
/// fail; a failure would be a programming error caught by the tests, so it
/// degrades to an unregistered metric.
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(target: "metrics.register_failed", error = %e, "metric not registered");
    }
    c
}

impl ProxyMetrics {
    /// Registers every metric on a fresh registry. Registration of these
    /// fixed, valid names cannot fail; a failure would be a programming
    /// error caught by the tests, so it degrades to an unregistered metric.
    pub(crate) fn new() -> ProxyMetrics {
        let registry = Registry::new();
        // These constructors fail only on invalid names or label sets,
        // which are constants here.
        #[allow(clippy::expect_used)]
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(&registry, c)
        };
        #[allow(clippy::expect_used)]
        let hist_vec = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            reg(
                &registry,
                HistogramVec::new(opts, labels).expect("valid metric"),
            )
        };
        // These constructors fail only on invalid names or label sets,
        // which are constants here.
        #[allow(clippy::expect_used)]
        let m = ProxyMetrics {
            requests: counter_vec(
                "tb_requests_total",
                "Proxied requests by endpoint, model and outcome.",
                &["endpoint", "model", "outcome"],
            ),
            duration: hist_vec(
                "tb_request_duration_seconds",
                "Time from request to last byte.",
                &["endpoint"],
            ),
            ttft: hist_vec(
                "tb_ttft_seconds",
                "Time to the first content byte of streams.",
                &["endpoint"],
            ),
            translated: counter_vec(
                "tb_translated_requests_total",
                "Calls answered over a translated route, by client and upstream protocol.",
                &["endpoint", "upstream_protocol"],
            ),
            attempts: counter_vec(
                "tb_upstream_attempts_total",
                "Upstream attempts by outcome.",
                &["upstream", "outcome"],
            ),
            failovers: counter_vec(
                "tb_failovers_total",
                "Failovers from one upstream to the next.",
                &["from", "to"],
            ),
            circuit_open: IntGaugeVec::new(
                Opts::new("tb_circuit_open", "1 when the upstream's circuit is open."),
                &["upstream"],
            )
            .map(|g| reg(&registry, g))
            .expect("valid metric"),
            tokens: counter_vec(
                "tb_tokens_total",
                "Tokens by model and kind (input, cached, output).",
                &["model", "kind"],
            ),
            cost: counter_vec(
                "tb_cost_usd_micros_total",
                "Spend in USD micros by upstream.",
                &["upstream"],
            ),
            saved: reg(
                &registry,
                IntCounter::new("tb_saved_usd_micros_total", "Savings in USD micros.")
                    .expect("valid metric"),
            ),
            purchases: counter_vec(
                "tb_purchases_total",
                "Credit purchases by seller and result.",
                &["seller", "result"],
            ),
            ledger_dropped: reg(
                &registry,
                IntCounter::new(
                    "tb_ledger_dropped_total",
                    "Call records the ledger queue refused.",
                )
                .expect("valid metric"),
            ),
            overhead: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tb_proxy_overhead_seconds",
                        "Time spent in the daemon, excluding upstream time.",
                    )
                    .buckets(OVERHEAD_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            registry,
        };
        m
    }

    /// Counts one finished call.
    pub(crate) fn observe_call(&self, r: &CallRecord) {
        self.requests
            .with_label_values(&[r.endpoint.as_str(), r.model.as_str(), r.outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[r.endpoint.as_str()])
            .observe(r.latency_ms as f64 / 1000.0);
        if let Some(up) = r.upstream_protocol {
            self.translated
                .with_label_values(&[r.endpoint.as_str(), endpoint_label(up)])
                .inc();
        }
        if let Some(t) = r.ttft_ms {
            self.ttft
                .with_label_values(&[r.endpoint.as_str()])
                .observe(t as f64 / 1000.0);
        }
        for a in &r.attempts {
            self.attempts
                .with_label_values(&[a.upstream.as_str(), a.outcome.as_str()])
                .inc();
        }
        for pair in r.attempts.windows(2) {
            if pair[0].upstream != pair[1].upstream {
                self.failovers
                    .with_label_values(&[pair[0].upstream.as_str(), pair[1].upstream.as_str()])
                    .inc();
            }
        }
        let fresh = r
            .input_tokens
            .map(|i| i.saturating_sub(r.cached_input_tokens.unwrap_or(0)));
        for (kind, v) in [
            ("input", fresh),
            ("cached", r.cached_input_tokens),
            ("output", r.output_tokens),
        ] {
            if let Some(v) = v {
                self.tokens
                    .with_label_values(&[r.model.as_str(), kind])
                    .inc_by(v);
            }
        }
        if let (Some(c), Some(w)) = (r.cost_usd_micros, &r.winner) {
            self.cost
                .with_label_values(&[w.as_str()])
                .inc_by(u64::try_from(c).unwrap_or(0));
        }
        if let Some(s) = r.saved_usd_micros {
            self.saved.inc_by(u64::try_from(s).unwrap_or(0));
        }
    }

    /// The text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(target: "metrics.encode_failed", error = %e, "metrics not encoded");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
