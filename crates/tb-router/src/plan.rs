//! What routing hands the proxy: a [`RoutePlan`] is the ordered list of
//! routes one request's attempt loop walks. The routing table fills it in
//! the model index's order ([`RoutingTable::plan`](crate::RoutingTable::plan));
//! the [`Router`](crate::Router) reorders it with the pool's live state.

use std::sync::Arc;

use std::fmt;

use tb_domain::Protocol;
use tb_registry::Lookup;
use tb_routing::{PlanDiagnostics, PlanMode, Ranking};

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

/// How the router ordered one group of a plan (the manual providers or
/// the sellers, over one protocol): what `route.decision` says as its
/// reason.
#[derive(Debug, Clone)]
pub struct GroupDecision {
    /// Marketplace sellers (else manual providers).
    pub sellers: bool,
    /// The protocol the group is spoken over.
    pub protocol: Protocol,
    /// The planner's mode (manual policy, or the marketplace range).
    pub mode: PlanMode,
    /// What the planner saw and did.
    pub diagnostics: PlanDiagnostics,
    /// The upstreams probe findings pushed back for this request, and why
    /// (group order).
    pub demotions: Vec<(String, tb_routing::Demotion)>,
}

impl fmt::Display for GroupDecision {
    /// `manual/chat_completions: config_order, policy fallback, sticky
    /// no_hint, 0 of 2 benched`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.sellers { "sellers" } else { "manual" };
        let d = &self.diagnostics;
        write!(f, "{group}/{}: ", self.protocol)?;
        match d.ranking {
            Ranking::ConfigOrder => f.write_str("config_order")?,
            Ranking::CheapestFirst => f.write_str("cheapest_first")?,
            Ranking::Locked => f.write_str("locked")?,
            Ranking::Scorer(s) => write!(f, "scorer {s}")?,
        }
        match self.mode {
            PlanMode::Manual { policy, .. } => write!(f, ", policy {}", policy.as_str())?,
            PlanMode::FullAuto => f.write_str(", range recommended")?,
            PlanMode::FixedSet => f.write_str(", range custom")?,
            PlanMode::Fixed => f.write_str(", selected seller")?,
        }
        write!(f, ", sticky {}", d.sticky.as_str())?;
        write!(f, ", {} of {} benched", d.benched, d.considered)?;
        if !self.demotions.is_empty() {
            f.write_str(", demoted by probe:")?;
            for (i, (id, why)) in self.demotions.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                write!(f, "{sep}{id} ({why})")?;
            }
        }
        if d.all_benched {
            f.write_str(" (all benched: tried anyway)")?;
        }
        if d.left_out > 0 {
            write!(f, ", {} left out", d.left_out)?;
        }
        Ok(())
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
    /// How each group was ordered (empty until the router orders it).
    pub decisions: Vec<GroupDecision>,
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
            decisions: Vec::new(),
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
            decisions: Vec::new(),
        }
    }

    /// The reason `route.decision` gives: each group's ordering, `; `
    /// between groups.
    pub fn reason(&self) -> String {
        let groups: Vec<String> = self.decisions.iter().map(ToString::to_string).collect();
        if groups.is_empty() {
            "no candidates".to_string()
        } else {
            groups.join("; ")
        }
    }

    /// Whether every upstream of `other` is in this plan already (so
    /// [`RoutePlan::append_translated`] would add none of them).
    pub fn has_all_of(&self, other: &RoutePlan) -> bool {
        other
            .routes
            .iter()
            .all(|o| self.routes.iter().any(|r| r.upstream.id == o.upstream.id))
    }

    /// Appends `translated`'s routes after this plan's (native first),
    /// skipping upstreams already in the plan, up to `max_routes` in all.
    /// When this plan has no route, the model id sent is `translated`'s.
    pub fn append_translated(&mut self, translated: RoutePlan, max_routes: usize) {
        if self.routes.is_empty() && !translated.routes.is_empty() {
            self.model = translated.model;
        }
        let before = self.routes.len();
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
        // A group's ordering is part of the reason only if it added a route.
        if self.routes.len() > before {
            self.decisions.extend(translated.decisions);
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
            upstream: Arc::new(Upstream::seller(
                &tb_registry::SellerEntry {
                    id: UpstreamId::new(id),
                    name: id.into(),
                    url: format!("http://{id}.test"),
                    models: vec!["m".into()],
                    protocols: vec![Protocol::ChatCompletions],
                    payment_methods: vec![PaymentMethod::Mock],
                    discount_ratio: tb_prices::Ppm::ZERO,
                    service_fee_ratio: tb_prices::Ppm::ZERO,
                },
                None,
            )),
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

    #[test]
    fn a_translated_group_adds_only_upstreams_not_in_the_plan() {
        let mut plan = RoutePlan::from_routes("m", vec![seller("a"), seller("b")]);
        let same = RoutePlan::from_routes("m", vec![seller("b"), seller("a")]);
        let more = RoutePlan::from_routes("m", vec![seller("b"), seller("c")]);
        assert!(plan.has_all_of(&same));
        assert!(!plan.has_all_of(&more));
        assert!(!RoutePlan::from_routes("m", Vec::new()).has_all_of(&same));
        plan.append_translated(same, 5);
        assert_eq!(plan.routes.len(), 2);
        plan.append_translated(more, 5);
        let ids: Vec<&str> = plan.routes.iter().map(|r| r.upstream.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn a_group_decision_reads_as_its_reason() {
        let diagnostics = PlanDiagnostics {
            ranking: Ranking::Scorer(tb_routing::Scorer::Cheapest),
            considered: 3,
            benched: 3,
            benched_in_plan: vec![0, 1, 2],
            demoted: 0,
            all_benched: true,
            sticky: tb_routing::StickyStatus::Applied,
            left_out: 1,
        };
        let d = GroupDecision {
            sellers: true,
            protocol: Protocol::Messages,
            mode: PlanMode::Fixed,
            diagnostics,
            demotions: Vec::new(),
        };
        assert_eq!(
            d.to_string(),
            "sellers/messages: scorer cheapest, selected seller, sticky applied, 3 of 3 benched (all benched: tried anyway), 1 left out"
        );
        let demoted = GroupDecision {
            demotions: vec![
                ("bad".into(), tb_routing::Demotion::ToolCallFailed),
                (
                    "liar".into(),
                    tb_routing::Demotion::OvercountsPrompt { percent: 30 },
                ),
            ],
            ..d.clone()
        };
        assert!(
            demoted.to_string().ends_with(
                "3 of 3 benched, demoted by probe: bad (tool call failed), liar (prompt tokens +30 %) (all benched: tried anyway), 1 left out"
            ),
            "{demoted}"
        );
        let mut plan = RoutePlan::from_routes("m", vec![seller("a")]);
        assert_eq!(plan.reason(), "no candidates");
        plan.decisions.push(d.clone());
        plan.decisions.push(d);
        assert_eq!(plan.reason().matches("; ").count(), 1);
    }
}
