//! What routing hands the proxy: a [`RoutePlan`] is the ordered list of
//! routes one request's attempt loop walks. The routing table fills it in
//! the model index's order ([`RoutingTable::plan`](crate::RoutingTable::plan));
//! the [`Router`](crate::Router) reorders it with the pool's live state.

use std::sync::Arc;

use tb_domain::Protocol;
use tb_registry::Lookup;

use crate::upstream::Upstream;

/// One place the request can go, and the protocol it is spoken there.
#[derive(Debug, Clone)]
pub struct Route {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The protocol the upstream is called with: the client's own on a
    /// native route, another one on a translated route.
    pub protocol: Protocol,
}

impl Route {
    /// A route to `upstream` over `protocol`.
    pub fn new(upstream: Arc<Upstream>, protocol: Protocol) -> Route {
        Route { upstream, protocol }
    }
}

/// The ordered routes for one request, plus what the error message needs
/// when there are none.
#[derive(Debug)]
pub struct RoutePlan {
    /// The model id sent upstream (after alias/prefix resolution).
    pub model: String,
    /// Routes in the order they are tried.
    pub routes: Vec<Route>,
    lookup: Lookup,
}

impl RoutePlan {
    /// Builds the plan from an index lookup over `protocol` and the
    /// upstream table (same order).
    pub fn from_lookup(
        lookup: Lookup,
        upstreams: &[Arc<Upstream>],
        protocol: Protocol,
    ) -> RoutePlan {
        let routes = lookup
            .upstreams
            .iter()
            .filter_map(|&i| upstreams.get(i))
            .map(|u| Route::new(Arc::clone(u), protocol))
            .collect();
        RoutePlan {
            model: lookup.model.clone(),
            routes,
            lookup,
        }
    }

    /// A plan over routes the caller chose, tried in the given order,
    /// without the model index: `model` is sent as it is (an exact match)
    /// and every route counts as considered. For callers that pick their
    /// upstreams themselves, such as a test that scripts them.
    pub fn from_routes(model: &str, routes: Vec<Route>) -> RoutePlan {
        RoutePlan {
            model: model.to_string(),
            lookup: Lookup {
                model: model.to_string(),
                rule: tb_registry::ResolutionRule::Exact,
                upstreams: (0..routes.len()).collect(),
                considered: routes.len(),
                other_protocols: Vec::new(),
                other_payment_methods: Vec::new(),
            },
            routes,
        }
    }

    /// Appends `translated`'s routes after this plan's (native first),
    /// skipping upstreams already in the plan, up to `max_routes` in all.
    /// When this plan has no route, the model id sent is `translated`'s.
    pub fn append_translated(&mut self, translated: RoutePlan, max_routes: usize) {
        if self.routes.is_empty() && !translated.routes.is_empty() {
            self.model = translated.model;
        }
        for route in translated.routes {
            if self.routes.len() >= max_routes {
                break;
            }
            // An upstream already tried (natively or over another
            // protocol) would fail the same way again.
            let id = &route.upstream.id;
            if !self.routes.iter().any(|r| r.upstream.id == *id) {
                self.routes.push(route);
            }
        }
    }

    /// The `model_not_found` message: model, protocol, how many upstreams
    /// were considered, and what to do.
    pub fn not_found_message(&self, requested: &str, protocol: Protocol) -> String {
        let mut msg = format!(
            "model {requested:?} is not served over {protocol} by any of the {} upstream(s) considered",
            self.lookup.considered
        );
        if requested != self.lookup.model {
            msg.push_str(&format!(" (resolved to {:?})", self.lookup.model));
        }
        if self.lookup.other_protocols.is_empty() {
            msg.push_str("; add it to the `models` of a [[providers]] entry that speaks this protocol, or check the spelling (GET /v1/models lists what is served)");
        } else {
            let others: Vec<&str> = self
                .lookup
                .other_protocols
                .iter()
                .map(|p| p.as_str())
                .collect();
            msg.push_str(&format!(
                "; it is served over {}: use that endpoint, or add {protocol} to the provider's `protocols`",
                others.join(", ")
            ));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_domain::{PaymentMethod, UpstreamId};

    fn seller(id: &str) -> Route {
        Route {
            protocol: Protocol::ChatCompletions,
            upstream: Arc::new(Upstream::seller(&tb_registry::SellerEntry {
                id: UpstreamId::new(id),
                name: id.into(),
                url: format!("http://{id}.test"),
                models: vec!["m".into()],
                protocols: vec![Protocol::ChatCompletions],
                payment_methods: vec![PaymentMethod::Mock],
                discount_ratio: tb_prices::Ppm::ZERO,
                service_fee_ratio: tb_prices::Ppm::ZERO,
            })),
        }
    }

    #[test]
    fn a_plan_from_chosen_routes_keeps_their_order() {
        let plan = RoutePlan::from_routes("m", vec![seller("b"), seller("a")]);
        let ids: Vec<&str> = plan.routes.iter().map(|r| r.upstream.id.as_str()).collect();
        assert_eq!((plan.model.as_str(), ids), ("m", vec!["b", "a"]));
        let msg = plan.not_found_message("m", Protocol::ChatCompletions);
        assert!(msg.contains("any of the 2 upstream(s) considered"), "{msg}");
        assert!(!msg.contains("resolved to"), "{msg}");
    }
}
