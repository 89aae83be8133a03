//! [`Routing`]: the routing table, the provider mode and the router held
//! together, kept current (a new registry generation or mode swaps in a new
//! table) and asked once per request for a plan.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tb_config::{AutoConfig, AutoRange, Config, ProviderMode};
use tb_domain::{PaymentMethod, Protocol};
use tb_http::HttpClient;
use tb_prewarm::{PrewarmHandle, PrewarmKey};
use tb_registry::Registry;
use tb_seller::SellerClient;

use crate::manifests::{self, Manifests};
use crate::plan::RoutePlan;
use crate::report::UpstreamsReport;
use crate::router::{Router, auto_plan_mode};
use crate::table::{ManualUpstreams, RoutingTable};
use crate::upstream::UpstreamError;
use crate::warm::Warm;

/// Where marketplace sellers come from and how they are paid.
#[derive(Clone)]
pub struct Sellers {
    /// The seller list: its snapshots feed the routing table.
    pub registry: Arc<Registry>,
    /// How purchases are paid (the payment method sellers are warmed on).
    pub payment: PaymentMethod,
    /// The pooled client sellers' manifests are fetched over.
    pub client: HttpClient,
}

/// The provider mode in force: `provider.mode` and `[provider.auto]`,
/// switchable at run time (`PUT /v1/provider-mode`).
#[derive(Debug, Clone)]
pub struct ModeSetting {
    /// `provider.mode`.
    pub mode: ProviderMode,
    /// `[provider.auto]`.
    pub auto: AutoConfig,
}

/// Why the provider mode cannot route any request right now (the proxy
/// answers `503 no_route` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// Auto mode with marketplace routing switched off.
    #[error(
        "marketplace routing is disabled (provider.auto.enabled = false) and provider.mode is \"auto\"; set provider.auto.enabled = true, or use provider.mode = \"manual\" or \"both\""
    )]
    AutoDisabled,
    /// Range `custom` without a seller to use.
    #[error(
        "provider.auto.range is \"custom\" but provider.auto.seller_ids is empty; list the sellers to use, or set range = \"recommended\""
    )]
    NoCustomSellers,
    /// Auto mode before the first registry document.
    #[error(
        "the marketplace registry has not been loaded ({why}); check registry.url and that the registry is reachable"
    )]
    RegistryNotLoaded {
        /// The last fetch error, or that there was no fetch.
        why: String,
    },
}

/// Why a provider mode cannot be switched to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// A marketplace mode on a daemon started without the marketplace.
    #[error(
        "the marketplace is not running: set registry.url and restart the daemon to use auto or both"
    )]
    NoMarketplace,
}

/// The routing runtime: the current [`RoutingTable`] (swapped atomically,
/// never locked by a request), the provider mode, the [`Router`] with the
/// pool and stickiness, and the prewarmer once started.
pub struct Routing {
    manual: ManualUpstreams,
    aliases: BTreeMap<String, String>,
    sellers: Option<Sellers>,
    modes: ArcSwap<ModeSetting>,
    /// The sellers' manifests of the latest registry generation fetched.
    manifests: ArcSwap<Manifests>,
    table: ArcSwap<RoutingTable>,
    router: Arc<Router>,
    prewarm: OnceLock<PrewarmHandle>,
    /// `routing.translate`: plans add translated routes after native ones.
    translate: bool,
}

impl Routing {
    /// Builds the runtime: one upstream per `[[providers]]` entry (`env`
    /// reads the variables named by `api_key_env`), the router from
    /// `[routing]` and `[breaker]`, and the first table. Without `sellers`
    /// the mode is `manual` whatever the config says.
    pub fn new(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        sellers: Option<Sellers>,
    ) -> Result<Routing, UpstreamError> {
        let manual = ManualUpstreams::from_config(&config.providers, env)?;
        let mode = if sellers.is_some() {
            config.provider.mode
        } else {
            ProviderMode::Manual
        };
        let empty = RoutingTable::build(
            &manual,
            None,
            mode,
            &config.provider.auto,
            &config.models.aliases,
            &Manifests::default(),
        );
        let routing = Routing {
            manual,
            aliases: config.models.aliases.clone(),
            sellers,
            modes: ArcSwap::from_pointee(ModeSetting {
                mode,
                auto: config.provider.auto.clone(),
            }),
            manifests: ArcSwap::from_pointee(Manifests::default()),
            table: ArcSwap::from_pointee(empty),
            router: Arc::new(
                Router::new(&config.routing, &config.breaker).with_trust_policy(&config.probe),
            ),
            prewarm: OnceLock::new(),
            translate: config.routing.translate,
        };
        routing.rebuild();
        Ok(routing)
    }

    /// The ordered routes for `model` over `protocol`: the table's
    /// candidates, ordered by the router (empty when nothing serves it),
    /// for a request without tools.
    pub fn plan(&self, model: &str, protocol: Protocol, now_ms: i64) -> RoutePlan {
        self.plan_for(model, protocol, now_ms, false)
    }

    /// [`plan`](Self::plan) for a request that does (`has_tools`) or does
    /// not carry tools: an upstream whose tool-call probe failed is not
    /// first choice for one that does.
    pub fn plan_for(
        &self,
        model: &str,
        protocol: Protocol,
        now_ms: i64,
        has_tools: bool,
    ) -> RoutePlan {
        let table = self.table.load();
        let auto_mode = auto_plan_mode(&self.modes.load().auto);
        let mut plan = self.router.order(
            table.plan(model, protocol),
            model,
            now_ms,
            auto_mode,
            has_tools,
        );
        if self.translate {
            for other in table.translated_plans(model, protocol) {
                // Ordering a group costs a pool snapshot per upstream; skip
                // it when appending could add nothing (the plan is full, or
                // every upstream of the group is in it already).
                let full = plan.routes.len() >= self.router.max_attempts();
                if !plan.routes.is_empty() && (full || plan.has_all_of(&other)) {
                    continue;
                }
                let other = self
                    .router
                    .order(other, model, now_ms, auto_mode, has_tools);
                plan.append_translated(other, self.router.max_attempts());
            }
        }
        plan
    }

    /// Whether the provider mode can route at all right now; the error
    /// says how to fix it.
    pub fn can_route(&self) -> Result<(), NoRoute> {
        let m = self.modes.load();
        if m.mode != ProviderMode::Auto {
            return Ok(());
        }
        if !m.auto.enabled {
            tracing::warn!(
                target: "route.auto_provider.disabled",
                mode = m.mode.as_str(),
                enabled = m.auto.enabled,
                range = m.auto.range.as_str(),
                "auto mode with marketplace routing disabled: set provider.auto.enabled = true or provider.mode = \"manual\" or \"both\""
            );
            return Err(NoRoute::AutoDisabled);
        }
        if m.auto.selected_seller.is_none()
            && m.auto.range == AutoRange::Custom
            && m.auto.seller_ids.is_empty()
        {
            tracing::warn!(
                target: "route.auto_provider.custom_empty",
                mode = m.mode.as_str(),
                range = m.auto.range.as_str(),
                seller_ids = m.auto.seller_ids.len(),
                selected_seller = ?m.auto.selected_seller,
                "range custom with no seller ids: list sellers in provider.auto.seller_ids or set range = \"recommended\""
            );
            return Err(NoRoute::NoCustomSellers);
        }
        let Some(snapshot) = self.sellers.as_ref().map(|s| s.registry.current()) else {
            return Ok(());
        };
        if !snapshot.has_document() {
            let why = snapshot
                .last_error
                .clone()
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(NoRoute::RegistryNotLoaded { why });
        }
        Ok(())
    }

    /// The current table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// What `/v1/models` lists to a caller speaking one of `callers`: the
    /// models it can reach, natively or (with `routing.translate`) by
    /// translation.
    pub fn models_for(&self, callers: &[Protocol]) -> Vec<String> {
        self.table.load().models_for(callers, self.translate)
    }

    /// The router: what the attempt loop reports to, and the pool's views.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The provider mode alone (no copy of the auto settings).
    pub fn mode(&self) -> ProviderMode {
        self.modes.load().mode
    }

    /// The provider mode in force.
    pub fn provider_mode(&self) -> ModeSetting {
        ModeSetting::clone(&self.modes.load())
    }

    /// Applies a new provider mode at once (the table is rebuilt).
    /// Marketplace modes need the sellers the runtime was built with.
    pub fn set_provider_mode(&self, mode: ProviderMode, auto: AutoConfig) -> Result<(), ModeError> {
        if mode != ProviderMode::Manual && self.sellers.is_none() {
            return Err(ModeError::NoMarketplace);
        }
        self.modes.store(Arc::new(ModeSetting { mode, auto }));
        self.rebuild();
        Ok(())
    }

    /// `GET /v1/upstreams`: every upstream of the table, in order, with its
    /// pool state and score under the active scorer.
    pub fn upstreams_report(&self, now_ms: i64) -> UpstreamsReport {
        let table = self.table.load();
        UpstreamsReport {
            scorer: self.router.scorer(),
            upstreams: self.router.report(table.upstreams(), "", now_ms),
        }
    }

    /// The upstreams whose circuit is open at `now_ms`, sorted.
    pub fn open_circuits(&self, now_ms: i64) -> Vec<String> {
        let mut open: Vec<String> = self
            .router
            .views(now_ms)
            .into_iter()
            .filter(|(_, v)| v.circuit == tb_pool::CircuitState::Open)
            .map(|(id, _)| id)
            .collect();
        open.sort();
        open
    }

    /// Follows the registry, off the request path: each new generation
    /// rebuilds the table at once (new sellers become routable with the
    /// manifests already known), then every seller's manifest is fetched
    /// once for that generation and the table is rebuilt with their
    /// prices. `None` without sellers; abort the task to stop. Call it
    /// inside a Tokio runtime.
    pub fn watch_registry(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let sellers = self.sellers.as_ref()?;
        let mut generations = sellers.registry.subscribe();
        let client = SellerClient::new(sellers.client.clone(), manifests::MANIFEST_TIMEOUT);
        let routing = Arc::clone(self);
        Some(tokio::spawn(async move {
            loop {
                let generation = *generations.borrow_and_update();
                routing.refresh_manifests(&client, generation).await;
                if generations.changed().await.is_err() {
                    return;
                }
                Arc::clone(&routing).rebuild_off_thread().await;
            }
        }))
    }

    /// Fetches the sellers' manifests for the current snapshot (unless
    /// they were fetched for `generation` already) and rebuilds the table
    /// with them.
    async fn refresh_manifests(self: &Arc<Self>, client: &SellerClient, generation: u64) {
        let Some(snapshot) = self.sellers.as_ref().map(|s| s.registry.current()) else {
            return;
        };
        if !snapshot.has_document() || self.manifests.load().generation == snapshot.generation {
            return;
        }
        let fetched = Arc::new(manifests::fetch(client, &snapshot.doc, snapshot.generation).await);
        self.manifests.store(Arc::clone(&fetched));
        Arc::clone(self).rebuild_off_thread().await;
        // After the rebuild: from here on requests are priced with them.
        tracing::info!(target: "registry.manifests", generation, published = fetched.len(), absent = fetched.absent, failed = fetched.failed, "seller manifests applied");
    }

    /// [`rebuild`](Self::rebuild) on a blocking thread: tens of ms for a
    /// 10k-seller registry, so a one-thread runtime keeps serving.
    async fn rebuild_off_thread(self: Arc<Self>) {
        if let Err(e) = tokio::task::spawn_blocking(move || self.rebuild()).await {
            tracing::error!(target: "route.table_rebuilt", error = %e, "rebuilding the routing table failed; the previous table stays");
        }
    }

    /// Starts keeping `focus` warm (sellers only; `None` without them):
    /// periodic health probes over `client` of the sellers serving those
    /// models feed the pool, and [`warm_up`](Self::warm_up) schedules a
    /// cold key without waiting. Call it inside a Tokio runtime.
    pub fn start_prewarm(
        self: &Arc<Self>,
        client: HttpClient,
        config: &tb_config::PrewarmConfig,
        focus: Vec<String>,
    ) -> Option<PrewarmHandle> {
        self.sellers.as_ref()?;
        let warm = Arc::new(Warm {
            routing: Arc::clone(self),
            client,
        });
        let handle = tb_prewarm::Prewarmer::spawn(
            tb_prewarm::PrewarmConfig {
                refresh_secs: config.refresh_secs,
                probe_timeout_ms: config.probe_timeout_ms,
                max_concurrent_probes: config.max_concurrent_probes,
                ttl_ms: config.ttl_ms,
                startup_jitter_ms: (config.startup_jitter_ms[0], config.startup_jitter_ms[1]),
            },
            focus,
            Arc::clone(&warm) as Arc<dyn tb_prewarm::Targets>,
            Arc::clone(&warm) as Arc<dyn tb_prewarm::Prober>,
            warm as Arc<dyn tb_prewarm::ProbeSink>,
            std::future::pending::<()>(),
        );
        let _ = self.prewarm.set(handle.clone());
        Some(handle)
    }

    /// The prewarmer, once started.
    pub fn prewarm(&self) -> Option<&PrewarmHandle> {
        self.prewarm.get()
    }

    /// Asks the prewarmer to warm the plan's key in the background when the
    /// plan goes to sellers and the key is cold or stale; never waits.
    pub fn warm_up(&self, plan: &RoutePlan, protocol: Protocol) {
        if let (Some(prewarm), Some(key)) =
            (self.prewarm.get(), self.prewarm_key(&plan.model, protocol))
            && plan
                .routes
                .iter()
                .any(|r| r.upstream.seller_url().is_some())
        {
            prewarm.request_warmup(key);
        }
    }

    /// The prewarm key of a request, when it goes to sellers.
    fn prewarm_key(&self, model: &str, protocol: Protocol) -> Option<PrewarmKey> {
        let payment = self.seller_payment()?;
        if payment == PaymentMethod::ProviderKey {
            return None;
        }
        Some(PrewarmKey::new(model, protocol, payment))
    }

    /// How sellers are paid, when there are sellers.
    pub(crate) fn seller_payment(&self) -> Option<PaymentMethod> {
        self.sellers.as_ref().map(|s| s.payment)
    }

    /// Rebuilds the table from the current registry snapshot and mode.
    fn rebuild(&self) {
        let snapshot = self.sellers.as_ref().map(|s| s.registry.current());
        let doc = snapshot
            .as_ref()
            .filter(|s| s.has_document())
            .map(|s| s.doc.as_ref());
        let table = {
            let m = self.modes.load();
            let manifests = self.manifests.load();
            RoutingTable::build(
                &self.manual,
                doc,
                m.mode,
                &m.auto,
                &self.aliases,
                &manifests,
            )
        };
        tracing::info!(target: "route.table_rebuilt", sellers = table.sellers(), upstreams = table.upstreams().len(), "routing table ready");
        self.router.sync(table.upstreams());
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tb_registry::{MemoryStore, RegistryFetcher, StoredSnapshot};

    const REGISTRY: &str = r#"{"version":"v1","sellers":[
        {"id":"s-a","url":"http://a","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]},
        {"id":"s-b","url":"http://b","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]}]}"#;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap()
    }

    /// Sellers from a registry that never fetches: with `doc` persisted,
    /// or with no document at all.
    async fn sellers(doc: Option<&str>) -> Sellers {
        let client = tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap();
        let fetcher = RegistryFetcher::new("http://127.0.0.1:9/registry.json", 1 << 20, client);
        let store = match doc {
            Some(raw) => MemoryStore::with(StoredSnapshot {
                raw: raw.as_bytes().to_vec(),
                fetched_at_ms: 0,
            }),
            None => MemoryStore::default(),
        };
        Sellers {
            registry: Registry::load(fetcher, store).await,
            payment: PaymentMethod::Mock,
            client: tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap(),
        }
    }

    fn ids(plan: &RoutePlan) -> Vec<&str> {
        plan.routes.iter().map(|r| r.upstream.id.as_str()).collect()
    }

    #[test]
    fn without_sellers_the_mode_is_manual_and_stays_so() {
        let routing =
            Routing::new(&config("[provider]\nmode = \"auto\""), &|_| None, None).unwrap();
        assert_eq!(routing.provider_mode().mode, ProviderMode::Manual);
        assert_eq!(routing.can_route(), Ok(()));
        let auto = AutoConfig::default();
        assert_eq!(
            routing.set_provider_mode(ProviderMode::Both, auto.clone()),
            Err(ModeError::NoMarketplace)
        );
        assert_eq!(
            routing.set_provider_mode(ProviderMode::Manual, auto),
            Ok(())
        );
    }

    #[test]
    fn models_are_listed_to_the_callers_that_can_reach_them() {
        let providers = r#"
[[providers]]
id = "chat"
kind = "openai"
base_url = "http://c/v1"
api_key = "k"
models = ["c"]
protocols = ["chat_completions"]

[[providers]]
id = "private"
kind = "openai"
base_url = "http://p/v1"
api_key = "k"
models = ["p"]
protocols = ["chat_completions"]
translate = false

[[providers]]
id = "an"
kind = "anthropic"
base_url = "http://a"
api_key = "k"
models = ["a"]
protocols = ["messages"]

[[providers]]
id = "emb"
kind = "openai"
base_url = "http://e/v1"
api_key = "k"
models = ["e"]
protocols = ["embeddings"]
"#;
        let messages = [Protocol::Messages];
        let openai = [Protocol::ChatCompletions, Protocol::Embeddings];
        let routing = Routing::new(&config(providers), &|_| None, None).unwrap();
        // Translation reaches the other text protocols' models, not a
        // provider that opts out, and never embeddings from Messages.
        assert_eq!(routing.models_for(&messages), ["a", "c"]);
        assert_eq!(routing.models_for(&openai), ["a", "c", "e", "p"]);
        assert_eq!(routing.models_for(&[Protocol::Embeddings]), ["e"]);
        let native = config(&format!("[routing]\ntranslate = false\n{providers}"));
        let routing = Routing::new(&native, &|_| None, None).unwrap();
        assert_eq!(routing.models_for(&messages), ["a"]);
        assert_eq!(routing.models_for(&openai), ["c", "e", "p"]);
    }

    #[test]
    fn probe_findings_push_back_per_request_and_expire() {
        use tb_domain::{ProbeCheck, Verdict};
        use tb_routing::{CheckFinding, ProbeFindings};
        let toml = r#"
[probe]
expiry_secs = 60
[models.aliases]
fast = "m"
[[providers]]
id = "cheap"
kind = "openai"
base_url = "http://cheap/v1"
api_key = "k"
models = ["m"]
[[providers]]
id = "honest"
kind = "openai"
base_url = "http://honest/v1"
api_key = "k"
models = ["m"]
"#;
        let routing = Routing::new(&config(toml), &|_| None, None).unwrap();
        let failed = |check, measured| ProbeFindings {
            probed_at_ms: 1_000,
            checks: vec![CheckFinding {
                check,
                verdict: Verdict::Fail,
                measured,
            }],
        };
        let plan = |model: &str, now: i64, tools: bool| {
            let p = routing.plan_for(model, Protocol::ChatCompletions, now, tools);
            (ids(&p).join(","), p.reason())
        };
        // A broken tool call: pushed back for requests with tools only;
        // looked up by the upstream model id (an alias resolves first).
        routing.router().set_trust(vec![(
            "cheap".into(),
            "m".into(),
            failed(ProbeCheck::ToolCall, None),
        )]);
        assert_eq!(plan("m", 2_000, false).0, "cheap,honest");
        let (order, reason) = plan("fast", 2_000, true);
        assert_eq!(order, "honest,cheap");
        assert!(
            reason.ends_with("demoted by probe: cheap (tool call failed)"),
            "{reason}"
        );
        // Findings for another model say nothing about this one.
        routing.router().set_trust(vec![(
            "cheap".into(),
            "other".into(),
            failed(ProbeCheck::MaxTokens, Some(200)),
        )]);
        assert_eq!(plan("m", 2_000, false).0, "cheap,honest");
        // An over-count beyond 25 %: pushed back for every request, until
        // the findings are 60 s old.
        routing.router().set_trust(vec![(
            "cheap".into(),
            "m".into(),
            failed(ProbeCheck::PromptTokens, Some(30)),
        )]);
        assert_eq!(plan("m", 2_000, false).0, "honest,cheap");
        assert_eq!(plan("m", 60_999, false).0, "honest,cheap");
        assert_eq!(plan("m", 61_000, false).0, "cheap,honest");
        let report = routing.router().trust_report(61_000);
        assert_eq!(report.len(), 1);
        assert!(report[0].expired);
        assert_eq!(
            routing.router().trust_report(2_000)[0].demoted_for_all,
            Some(tb_routing::Demotion::OvercountsPrompt { percent: 30 })
        );
    }

    #[test]
    fn a_missing_provider_key_is_a_typed_error() {
        let toml = "[[providers]]\nid = \"p\"\nkind = \"openai\"\nbase_url = \"http://p/v1\"\napi_key_env = \"NOPE\"\nmodels = [\"m\"]";
        let err = Routing::new(&config(toml), &|_| None, None).err().unwrap();
        assert!(
            matches!(err, UpstreamError::MissingKeyEnv { index: 0, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn auto_mode_routes_to_the_registry_sellers() {
        let cfg = config("[provider]\nmode = \"auto\"");
        let routing = Routing::new(&cfg, &|_| None, Some(sellers(Some(REGISTRY)).await)).unwrap();
        assert_eq!(routing.can_route(), Ok(()));
        assert_eq!(routing.table().sellers(), 2);
        let plan = routing.plan("m", Protocol::ChatCompletions, 0);
        assert_eq!(ids(&plan), ["s-a", "s-b"]);
        assert_eq!(routing.upstreams_report(0).upstreams.len(), 2);

        // Manual mode drops the sellers from the table at once.
        let auto = routing.provider_mode().auto;
        routing
            .set_provider_mode(ProviderMode::Manual, auto)
            .unwrap();
        assert!(
            routing
                .plan("m", Protocol::ChatCompletions, 0)
                .routes
                .is_empty()
        );
        assert_eq!(routing.table().sellers(), 0);
    }

    #[tokio::test]
    async fn manifests_price_sellers_and_a_bad_one_falls_back_to_the_table() {
        use tb_test_support::marketplace::{ModelPrice, SellerServer, SellerSpec, registry_doc};
        let priced = SellerServer::start(
            SellerSpec::new("s-priced")
                .models(["gpt-4o"])
                .price("gpt-4o", ModelPrice::new(1_000_000, 2_000_000, 0))
                .with_generated_manifest(),
        )
        .await
        .unwrap();
        let garbled = SellerServer::start(
            SellerSpec::new("s-garbled")
                .models(["gpt-4o"])
                .manifest("not a manifest".into()),
        )
        .await
        .unwrap();
        let none = SellerServer::start(SellerSpec::new("s-none").models(["gpt-4o"]))
            .await
            .unwrap();
        let doc = registry_doc(&[&priced, &garbled, &none], None).to_string();
        let cfg = config("[provider]\nmode = \"auto\"");
        let routing =
            Arc::new(Routing::new(&cfg, &|_| None, Some(sellers(Some(&doc)).await)).unwrap());
        let prices = |routing: &Routing| -> Vec<(String, Option<u64>)> {
            routing
                .table()
                .upstreams()
                .iter()
                .map(|u| (u.id.to_string(), u.price_of("gpt-4o").list_price_per_1m()))
                .collect()
        };
        // gpt-4o from the table: $2.50 + $10 per 1M.
        let table = Some(12_500_000);
        assert_eq!(
            prices(&routing),
            [
                ("s-priced".into(), table),
                ("s-garbled".into(), table),
                ("s-none".into(), table)
            ]
        );
        let client = SellerClient::new(
            tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap(),
            manifests::MANIFEST_TIMEOUT,
        );
        let generation = routing
            .sellers
            .as_ref()
            .unwrap()
            .registry
            .current()
            .generation;
        routing.refresh_manifests(&client, generation).await;
        assert_eq!(
            prices(&routing),
            [
                ("s-priced".into(), Some(3_000_000)),
                ("s-garbled".into(), table),
                ("s-none".into(), table)
            ]
        );
        let m = routing.manifests.load();
        assert_eq!((m.len(), m.absent, m.failed), (1, 1, 1));
        // Once per generation: asking again fetches nothing.
        routing.refresh_manifests(&client, generation).await;
        for s in [&priced, &garbled, &none] {
            assert_eq!(s.manifest_count(), 1, "{}", s.id());
        }
    }

    #[tokio::test]
    async fn auto_mode_says_why_it_cannot_route() {
        let cfg = config("[provider]\nmode = \"auto\"");
        let routing = Routing::new(&cfg, &|_| None, Some(sellers(None).await)).unwrap();
        let why = routing.can_route().unwrap_err();
        assert_eq!(
            why,
            NoRoute::RegistryNotLoaded {
                why: "not fetched yet".into()
            }
        );
        assert!(why.to_string().contains("check registry.url"), "{why}");

        let mut auto = AutoConfig {
            range: AutoRange::Custom,
            ..AutoConfig::default()
        };
        routing
            .set_provider_mode(ProviderMode::Auto, auto.clone())
            .unwrap();
        assert_eq!(routing.can_route(), Err(NoRoute::NoCustomSellers));

        auto.enabled = false;
        routing
            .set_provider_mode(ProviderMode::Auto, auto.clone())
            .unwrap();
        assert_eq!(routing.can_route(), Err(NoRoute::AutoDisabled));

        // Both mode still has the manual providers to route to.
        routing.set_provider_mode(ProviderMode::Both, auto).unwrap();
        assert_eq!(routing.can_route(), Ok(()));
    }
}
