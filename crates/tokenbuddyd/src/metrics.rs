//! The daemon's gauges of components other than the proxy plane — seller
//! credit, the registry snapshot, the prewarm cache, the ledger writer, the
//! connection limit — read from each component when `/metrics` is scraped
//! and appended to the proxy's own call series. The proxy renders only
//! what it observes itself (calls, attempts, circuits, purchases,
//! overhead); the binary owns the wiring, so it renders the rest.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tb_proxy::Proxy;

/// Gauges refreshed from the components at each scrape.
pub(crate) struct DaemonGauges {
    registry: Registry,
    credit_remaining: IntGaugeVec,
    credit_wasted: IntGaugeVec,
    credit_wasted_total: IntGauge,
    prewarm_entries: IntGaugeVec,
    registry_sellers: IntGauge,
    registry_stale: IntGauge,
    ledger_pending: IntGauge,
    ledger_failing: IntGauge,
    ledger_write_failures: IntCounter,
    connections_open: IntGauge,
    event_loop_connections: IntGaugeVec,
    connections_refused: IntCounter,
    member_pg_round_trips: IntCounter,
    team_pg_round_trips: IntCounter,
    export_sent: IntCounterVec,
    export_failed: IntCounterVec,
    export_dropped: IntCounterVec,
    export_rejected: IntCounterVec,
    export_queue_depth: IntGaugeVec,
}

/// Registers a collector; these fixed, valid names cannot clash, so a
/// failure is logged rather than fatal.
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(target: "metrics.register_failed", error = %e, "metric not registered");
    }
    c
}

impl Default for DaemonGauges {
    // The constructors fail only on invalid names or label sets, which
    // are constants here.
    #[allow(clippy::expect_used)]
    fn default() -> DaemonGauges {
        let r = Registry::new();
        let gauge =
            |name: &str, help: &str| reg(&r, IntGauge::new(name, help).expect("valid metric"));
        let counter =
            |name: &str, help: &str| reg(&r, IntCounter::new(name, help).expect("valid metric"));
        let counters = |name: &str, help: &str| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), &["sink"]).expect("valid metric"),
            )
        };
        let vec = |name: &str, help: &str, label: &str| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
            )
        };
        DaemonGauges {
            credit_remaining: vec(
                "tb_credit_remaining_micros",
                "Seller credit left.",
                "seller",
            ),
            credit_wasted: vec(
                "tb_credit_wasted_micros",
                "Seller credit wasted: left on a seller failed over within the fresh-purchase window, on an expired token, or on a seller that left the registry.",
                "seller",
            ),
            credit_wasted_total: gauge(
                "tb_credit_wasted_total_micros",
                "Seller credit wasted, over all sellers.",
            ),
            prewarm_entries: vec(
                "tb_prewarm_entries",
                "Prewarm cache entries by state.",
                "state",
            ),
            registry_sellers: gauge("tb_registry_sellers", "Sellers in the registry snapshot."),
            registry_stale: gauge(
                "tb_registry_stale",
                "1 when routing on a stale registry snapshot.",
            ),
            ledger_pending: gauge(
                "tb_ledger_pending_records",
                "Call records accepted but not yet committed to the ledger.",
            ),
            ledger_failing: gauge(
                "tb_ledger_write_failing",
                "1 while ledger commits fail (records wait in memory).",
            ),
            ledger_write_failures: counter(
                "tb_ledger_write_failures_total",
                "Failed ledger commits (each retried).",
            ),
            export_sent: counters(
                "tb_export_sent_total",
                "Call records delivered by an export sink (http, otlp).",
            ),
            export_failed: counters(
                "tb_export_failed_total",
                "Export POSTs that failed (retried with backoff, or the batch rejected).",
            ),
            export_dropped: counters(
                "tb_export_dropped_total",
                "Call records an export sink dropped because its queue was full.",
            ),
            export_rejected: counters(
                "tb_export_rejected_total",
                "Call records an export receiver refused for good (a 4xx other than 408/429).",
            ),
            export_queue_depth: vec(
                "tb_export_queue_depth",
                "Call records waiting in an export sink's queue.",
                "sink",
            ),
            connections_open: gauge("tb_connections_open", "Client connections being served."),
            event_loop_connections: vec(
                "tb_event_loop_connections",
                "Client connections each event loop of the proxy plane holds (proxy.worker_threads).",
                "event_loop",
            ),
            connections_refused: counter(
                "tb_connections_refused_total",
                "Client connections refused at proxy.max_connections.",
            ),
            member_pg_round_trips: counter(
                "tb_member_pg_round_trips_total",
                "Round trips to PostgreSQL for member limits: admissions, reservations settled by the ledger writer, lapsed ones given back (0 on SQLite).",
            ),
            team_pg_round_trips: counter(
                "tb_team_pg_round_trips_total",
                "PostgreSQL round trips for team mode's shared credit (purchase leases, the team budget, shared tokens, settlement batches); 0 outside team mode.",
            ),
            registry: r,
        }
    }
}

impl DaemonGauges {
    /// The whole exposition: the proxy's series, then these gauges read now.
    pub(crate) fn render(&self, proxy: &Proxy, export: &[tb_export::SinkStatus]) -> String {
        let mut text = proxy.metrics_text();
        self.refresh(proxy);
        self.refresh_export(export);
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            Ok(()) => text.push_str(&String::from_utf8_lossy(&buf)),
            Err(e) => {
                tracing::error!(target: "metrics.encode_failed", error = %e, "daemon gauges not encoded");
            }
        }
        text
    }

    fn refresh(&self, proxy: &Proxy) {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(market) = proxy.market() {
            let credit = market.broker.credit_summary();
            for seller in &credit.sellers {
                let label = [seller.seller_id.as_str()];
                self.credit_remaining
                    .with_label_values(&label)
                    .set(to_i64(seller.remaining_credit_micros));
                self.credit_wasted
                    .with_label_values(&label)
                    .set(to_i64(seller.wasted_credit_micros));
            }
            self.credit_wasted_total
                .set(to_i64(credit.wasted_credit_micros));
            if let Some(team) = market.broker.team() {
                advance_to(&self.team_pg_round_trips, team.round_trips());
            }
            let snapshot = market.registry.current();
            self.registry_sellers
                .set(i64::try_from(snapshot.doc.sellers.len()).unwrap_or(i64::MAX));
            self.registry_stale.set(i64::from(snapshot.stale));
        }
        if let Some(prewarm) = proxy.routing().prewarm() {
            for (state, n) in prewarm.state_counts() {
                self.prewarm_entries
                    .with_label_values(&[state.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let ledger = proxy.sink_health();
        self.ledger_pending.set(to_i64(ledger.pending));
        self.ledger_failing.set(i64::from(ledger.failing.is_some()));
        advance_to(&self.ledger_write_failures, ledger.failed_writes);
        let connections = proxy.connections();
        self.connections_open.set(to_i64(connections.open()));
        for (i, n) in connections.per_loop().into_iter().enumerate() {
            self.event_loop_connections
                .with_label_values(&[i.to_string().as_str()])
                .set(to_i64(n));
        }
        advance_to(&self.connections_refused, connections.refused());
        advance_to(
            &self.member_pg_round_trips,
            tb_store::member_pg_round_trips(),
        );
    }
}

impl DaemonGauges {
    fn refresh_export(&self, export: &[tb_export::SinkStatus]) {
        for s in export {
            let label = [s.sink];
            advance_to(&self.export_sent.with_label_values(&label), s.sent);
            advance_to(
                &self.export_failed.with_label_values(&label),
                s.failed_posts,
            );
            advance_to(&self.export_dropped.with_label_values(&label), s.dropped);
            advance_to(&self.export_rejected.with_label_values(&label), s.rejected);
            self.export_queue_depth
                .with_label_values(&label)
                .set(i64::try_from(s.queue_depth).unwrap_or(i64::MAX));
        }
    }
}

/// Moves a counter fed from an external total up to that total (counters
/// only go up; a smaller total leaves it alone).
fn advance_to(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_external_totals_upwards_only() {
        let c = IntCounter::new("t", "t").unwrap();
        advance_to(&c, 5);
        advance_to(&c, 3);
        assert_eq!(c.get(), 5);
    }
}
