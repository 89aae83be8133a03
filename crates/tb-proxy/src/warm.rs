//! Prewarm wiring: which sellers serve a focus model (from the routing
//! table), how a seller is probed (`GET <url>/healthz` on the pooled
//! client), and where the results go (the seller pool).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tb_domain::PaymentMethod;
use tb_prewarm::{BoxFuture, PrewarmKey, ProbeOutcome, ProbeSink, ProbeTarget, Prober, Targets};

use crate::ProxyState;

/// Implements the prewarm traits over the proxy's state.
pub(crate) struct Warm(pub(crate) Arc<ProxyState>);

impl Targets for Warm {
    fn targets(&self, model: &str) -> Vec<(PrewarmKey, Vec<ProbeTarget>)> {
        let Some(market) = &self.0.market else {
            return Vec::new();
        };
        let table = self.0.table.load();
        let Some(protocol) = table.prewarm_protocol(model) else {
            return Vec::new();
        };
        let plan = table.plan(model, protocol);
        let targets: Vec<ProbeTarget> = plan
            .routes
            .iter()
            .filter_map(|r| {
                r.upstream.seller_url().map(|url| ProbeTarget {
                    upstream_id: r.upstream.id.to_string(),
                    url: url.to_string(),
                })
            })
            .collect();
        if targets.is_empty() {
            return Vec::new();
        }
        vec![(
            PrewarmKey::new(plan.model, protocol, market.payment),
            targets,
        )]
    }
}

impl Prober for Warm {
    fn probe<'a>(
        &'a self,
        target: &'a ProbeTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeOutcome> {
        Box::pin(async move {
            let Ok(uri) = format!("{}/healthz", target.url).parse::<http::Uri>() else {
                return ProbeOutcome::failed(None);
            };
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.method_mut() = Method::GET;
            *req.uri_mut() = uri;
            let started = Instant::now();
            match tokio::time::timeout(timeout, self.0.client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => ProbeOutcome::healthy(
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ),
                _ => ProbeOutcome::failed(None),
            }
        })
    }
}

impl ProbeSink for Warm {
    fn record(&self, upstream_id: &str, now_ms: i64, outcome: ProbeOutcome) {
        self.0
            .router
            .probe(upstream_id, now_ms, outcome.ok, outcome.latency_ms);
    }
}

/// The prewarm key of a request, when it goes to sellers.
pub(crate) fn key_for(
    state: &ProxyState,
    model: &str,
    protocol: tb_domain::Protocol,
) -> Option<PrewarmKey> {
    let market = state.market.as_ref()?;
    if market.payment == PaymentMethod::ProviderKey {
        return None;
    }
    Some(PrewarmKey::new(model, protocol, market.payment))
}
