//! The routing table: every upstream a request may use (manual providers
//! and, in auto/both mode, the registry's sellers), indexed by model,
//! protocol and payment method. Rebuilt whenever the registry snapshot
//! changes and swapped in atomically: a request reads one immutable table
//! and never waits on a lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use tb_config::{AutoConfig, AutoRange, ProviderConfig, ProviderMode};
use tb_domain::{PaymentMethod, Protocol};
use tb_registry::{IndexedUpstream, ModelIndex, RegistryDoc};

use crate::manifests::Manifests;
use crate::plan::RoutePlan;
use crate::upstream::{Upstream, UpstreamError};

/// One immutable routing table.
pub struct RoutingTable {
    index: ModelIndex,
    upstreams: Vec<Arc<Upstream>>,
    payments: Vec<PaymentMethod>,
    /// How many sellers the table holds.
    sellers: usize,
}

/// The manual providers, built once from config.
pub(crate) struct ManualUpstreams {
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    pub(crate) indexed: Vec<IndexedUpstream>,
}

impl ManualUpstreams {
    /// One [`Upstream`] per `[[providers]]` entry, in order; `env` reads
    /// the variables named by `api_key_env`.
    pub(crate) fn from_config(
        providers: &[ProviderConfig],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ManualUpstreams, UpstreamError> {
        let mut upstreams = Vec::with_capacity(providers.len());
        let mut indexed = Vec::with_capacity(providers.len());
        for (i, p) in providers.iter().enumerate() {
            let upstream = Upstream::from_config(i, p, env)?;
            indexed.push(IndexedUpstream::manual(
                upstream.id.clone(),
                p.models.clone(),
                p.effective_protocols(),
            ));
            upstreams.push(Arc::new(upstream));
        }
        Ok(ManualUpstreams { upstreams, indexed })
    }
}

/// Which sellers auto mode may use, in order: the default seller first,
/// then registry order; `selected_seller` alone (mode `fixed`), or only
/// `seller_ids` with range `custom` (mode `fixedSet`).
pub(crate) fn selected_sellers<'a>(
    doc: &'a RegistryDoc,
    auto: &AutoConfig,
) -> Vec<&'a tb_registry::SellerEntry> {
    if !auto.enabled {
        return Vec::new();
    }
    doc.sellers_default_first()
        .filter(|s| match (&auto.selected_seller, auto.range) {
            (Some(only), _) => s.id.as_str() == only,
            (None, AutoRange::Custom) => auto.seller_ids.iter().any(|id| id == s.id.as_str()),
            (None, AutoRange::Recommended) => true,
        })
        .collect()
}

impl RoutingTable {
    /// Builds the table for `mode`: manual providers (manual, both) then
    /// sellers (auto, both).
    pub(crate) fn build(
        manual: &ManualUpstreams,
        doc: Option<&RegistryDoc>,
        mode: ProviderMode,
        auto: &AutoConfig,
        aliases: &BTreeMap<String, String>,
        manifests: &Manifests,
    ) -> RoutingTable {
        let mut upstreams = Vec::new();
        let mut indexed = Vec::new();
        let mut payments = Vec::new();
        if mode != ProviderMode::Auto {
            upstreams.extend(manual.upstreams.iter().cloned());
            indexed.extend(manual.indexed.iter().cloned());
            payments.push(PaymentMethod::ProviderKey);
        }
        let mut sellers = 0;
        if mode != ProviderMode::Manual {
            payments.push(auto.payment_method);
            if let Some(doc) = doc {
                for entry in selected_sellers(doc, auto) {
                    upstreams.push(Arc::new(Upstream::seller(entry, manifests.get(entry))));
                    indexed.push(IndexedUpstream::from_seller(entry));
                    sellers += 1;
                }
            }
        }
        RoutingTable {
            index: ModelIndex::new(indexed, aliases.clone()),
            upstreams,
            payments,
            sellers,
        }
    }

    /// The routes for `model` over `protocol`, in the index's order (the
    /// [`Router`](crate::Router) reorders them).
    pub fn plan(&self, model: &str, protocol: Protocol) -> RoutePlan {
        RoutePlan::from_lookup(
            self.index.lookup(model, protocol, &self.payments),
            &self.upstreams,
            protocol,
        )
    }

    /// The routes that reach `model` by translating from `protocol`: the
    /// upstreams serving it over the other text protocols that allow
    /// translation, one plan per protocol in [`Protocol::TRANSLATABLE`]
    /// order (empty for a protocol that is not translated at all).
    pub fn translated_plans(&self, model: &str, protocol: Protocol) -> Vec<RoutePlan> {
        if !protocol.is_translatable() {
            return Vec::new();
        }
        Protocol::TRANSLATABLE
            .into_iter()
            .filter(|p| *p != protocol)
            .map(|p| {
                let mut plan = self.plan(model, p);
                plan.routes.retain(|r| r.upstream.translate);
                plan
            })
            .filter(|plan| !plan.routes.is_empty())
            .collect()
    }

    /// The protocol a model is prewarmed on (the first that has a seller).
    pub(crate) fn prewarm_protocol(&self, model: &str) -> Option<Protocol> {
        self.index.prewarm_protocol(model)
    }

    /// Every upstream, in order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// Every model the table serves, whatever the protocol, sorted.
    pub fn models(&self) -> Vec<String> {
        self.index.models().into_iter().map(String::from).collect()
    }

    /// The models a caller speaking one of `callers` can reach (what
    /// `/v1/models` lists): served over one of them, or — with `translate`
    /// — over another text protocol by an upstream that allows
    /// translation, when the caller speaks a text protocol too. Sorted,
    /// de-duplicated.
    pub fn models_for(&self, callers: &[Protocol], translate: bool) -> Vec<String> {
        let text_caller = callers.iter().any(|c| c.is_translatable());
        let reachable = |indexed: &IndexedUpstream, upstream: &Upstream| {
            indexed.protocols.iter().any(|p| {
                callers.contains(p)
                    || (translate && upstream.translate && text_caller && p.is_translatable())
            })
        };
        let mut models = std::collections::BTreeSet::new();
        for (indexed, upstream) in self.index.upstreams().iter().zip(&self.upstreams) {
            if reachable(indexed, upstream) {
                models.extend(indexed.models.iter().map(String::as_str));
            }
        }
        models.into_iter().map(String::from).collect()
    }

    /// How many of the upstreams are marketplace sellers.
    pub fn sellers(&self) -> usize {
        self.sellers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> RegistryDoc {
        let raw = br#"{"version":"v1","defaultSeller":"s-c","sellers":[
            {"id":"s-a","url":"http://a","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]},
            {"id":"s-b","url":"http://b","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]},
            {"id":"s-c","url":"http://c","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]}]}"#;
        tb_registry::parse_registry(raw).unwrap().doc
    }

    fn ids(auto: &AutoConfig) -> Vec<String> {
        let d = doc();
        selected_sellers(&d, auto)
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    #[test]
    fn seller_selection_by_range() {
        let mut auto = AutoConfig::default();
        assert_eq!(
            ids(&auto),
            vec!["s-c", "s-a", "s-b"],
            "default seller first, then registry order"
        );
        auto.range = AutoRange::Custom;
        auto.seller_ids = vec!["s-b".into(), "s-a".into()];
        assert_eq!(
            ids(&auto),
            vec!["s-a", "s-b"],
            "registry order within the custom set"
        );
        auto.selected_seller = Some("s-b".into());
        assert_eq!(ids(&auto), vec!["s-b"]);
        auto.enabled = false;
        assert!(ids(&auto).is_empty());
    }

    #[test]
    fn modes_choose_the_upstreams() {
        let manual = ManualUpstreams {
            upstreams: Vec::new(),
            indexed: Vec::new(),
        };
        let d = doc();
        let auto = AutoConfig::default();
        let build = |registry: Option<&RegistryDoc>, mode| {
            RoutingTable::build(
                &manual,
                registry,
                mode,
                &auto,
                &BTreeMap::new(),
                &Manifests::default(),
            )
        };
        let t = build(Some(&d), ProviderMode::Auto);
        assert_eq!(t.sellers(), 3);
        assert_eq!(t.plan("m", Protocol::ChatCompletions).routes.len(), 3);
        assert!(t.plan("m", Protocol::Messages).routes.is_empty());
        let t = build(Some(&d), ProviderMode::Manual);
        assert!(t.plan("m", Protocol::ChatCompletions).routes.is_empty());
        let t = build(None, ProviderMode::Both);
        assert_eq!(t.sellers(), 0);
    }
}
