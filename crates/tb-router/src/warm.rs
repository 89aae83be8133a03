//! Prewarm wiring: which sellers serve a focus model (from the routing
//! table), how a seller is probed ([`SellerClient::healthz`] on the pooled
//! client), and where the results go (the router's seller pool).

use std::sync::Arc;
use std::time::Duration;

use tb_http::{HttpClient, duration_ms};
use tb_prewarm::{BoxFuture, PrewarmKey, ProbeOutcome, ProbeSink, ProbeTarget, Prober, Targets};
use tb_seller::SellerClient;

use crate::Routing;

/// Implements the prewarm traits over the routing runtime (its current
/// table, its router, how sellers are paid) and a pooled client to probe
/// with.
pub(crate) struct Warm {
    pub(crate) routing: Arc<Routing>,
    pub(crate) client: HttpClient,
}

impl Targets for Warm {
    fn targets(&self, model: &str) -> Vec<(PrewarmKey, Vec<ProbeTarget>)> {
        let Some(payment) = self.routing.seller_payment() else {
            return Vec::new();
        };
        let table = self.routing.table();
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
        vec![(PrewarmKey::new(plan.model, protocol, payment), targets)]
    }
}

impl Prober for Warm {
    fn probe<'a>(
        &'a self,
        target: &'a ProbeTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeOutcome> {
        // A clone of the pooled client: cheap, and the probe's timeout.
        let sellers = SellerClient::new(self.client.clone(), timeout);
        Box::pin(async move { probe_seller(&sellers, &target.url).await })
    }
}

/// `GET <url>/healthz` within the client's timeout: healthy, with the time
/// until the answer's head, on a 2xx; anything else is a failed probe.
async fn probe_seller(sellers: &SellerClient, url: &str) -> ProbeOutcome {
    match sellers.healthz(url).await {
        Ok(latency) => ProbeOutcome::healthy(duration_ms(latency)),
        Err(e) => {
            tracing::debug!(target: "prewarm.probe", error = %e, "seller probe failed");
            ProbeOutcome::failed(None)
        }
    }
}

impl ProbeSink for Warm {
    fn record(&self, upstream_id: &str, now_ms: i64, outcome: ProbeOutcome) {
        self.routing
            .router()
            .probe(upstream_id, now_ms, outcome.ok, outcome.latency_ms);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tb_test_support::{MockUpstream, Reply};

    fn sellers(timeout: Duration) -> SellerClient {
        let client = tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap();
        SellerClient::new(client, timeout)
    }

    #[tokio::test]
    async fn a_2xx_healthz_is_healthy_with_its_latency() {
        let mock = MockUpstream::start().await.unwrap();
        mock.push_reply(Reply::text(200, "ok").with_head_delay(Duration::from_millis(20)));
        let outcome = probe_seller(&sellers(Duration::from_secs(5)), &mock.root_url()).await;
        assert!(outcome.ok);
        assert!(outcome.latency_ms.unwrap() >= 20, "{outcome:?}");
        assert_eq!(mock.requests()[0].path(), "/healthz");
    }

    #[tokio::test]
    async fn an_error_status_a_timeout_or_a_bad_url_fails() {
        let mock = MockUpstream::start().await.unwrap();
        mock.push_reply(Reply::text(503, "draining"));
        let outcome = probe_seller(&sellers(Duration::from_secs(5)), &mock.root_url()).await;
        assert_eq!((outcome.ok, outcome.latency_ms), (false, None));

        mock.push_reply(Reply::text(200, "ok").with_head_delay(Duration::from_secs(30)));
        let outcome = probe_seller(&sellers(Duration::from_millis(50)), &mock.root_url()).await;
        assert!(!outcome.ok);

        let outcome = probe_seller(&sellers(Duration::from_secs(5)), "not a url").await;
        assert!(!outcome.ok);
    }
}
