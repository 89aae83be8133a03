//! tokenbuddy's proxy plane: an OpenAI- and Anthropic-compatible HTTP server
//! on loopback that authenticates a request with the local access token,
//! resolves its model, plans routes and forwards it to an upstream —
//! streaming the answer back frame by frame, without buffering.
//!
//! The crate owns the wire: HTTP, headers, protocol-shaped errors. It does
//! not decide *where* a request goes beyond asking the model index (the
//! [`RoutePlan`] seam is where the routing crate plugs in), and it never logs
//! or forwards the access token or provider keys.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tb_config::Config;
//! use tb_proxy::{AccessToken, Proxy};
//!
//! let config = Config::from_toml_str("[proxy]\nport = 0")?;
//! let (token, token_path) = AccessToken::load_or_create(std::path::Path::new("/tmp/tb-data"))?;
//! let proxy = Proxy::new(&config, token, token_path, &|var| std::env::var(var).ok(), None, None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod attempt;
mod body;
mod call;
mod commit;
mod credit;
mod error;
mod handler;
mod headers;
mod hold;
mod metrics;
mod plan;
mod report;
mod route;
mod server;
mod stream;
mod table;
mod tap;
mod token;
mod upstream;
pub mod validate;
mod warm;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::combinators::UnsyncBoxBody;
use std::collections::BTreeMap;
use tb_config::Config;
use tb_domain::{PaymentMethod, Protocol};

use arc_swap::ArcSwap;
use tb_config::{AutoConfig, AutoRange, ProviderMode};
use tb_registry::{IndexedUpstream, Registry};
use tokio::net::TcpListener;

pub use call::{CallSink, SinkFailure, SinkHealth};
pub use error::{ErrorCode, ProxyError};
pub use plan::{Route, RoutePlan};
pub use report::{
    BudgetReport, ModeReport, RegistryReport, StatusReport, UpstreamReport, UpstreamsReport,
};
pub use server::ShutdownOutcome;
pub use token::{ACCESS_TOKEN_FILE, AccessToken, TokenError};
pub use upstream::{TlsSetupError, Upstream, UpstreamClient, UpstreamError, build_client};

/// Errors of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the proxy sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why the proxy could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A provider could not be set up.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The TLS client could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// The settings the request path reads, taken from config once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    require_auth: bool,
    max_body_bytes: u64,
    max_response_bytes: u64,
    request_deadline: Duration,
    stream_head_deadline: Duration,
    stream_idle_timeout: Duration,
    shutdown_grace: Duration,
    max_connections: usize,
    header_read_timeout: Duration,
}

/// Everything a request handler needs, shared by all connections.
pub(crate) struct ProxyState {
    settings: Settings,
    token: AccessToken,
    token_path: PathBuf,
    manual: table::ManualUpstreams,
    table: ArcSwap<table::RoutingTable>,
    /// `provider.mode` and `[provider.auto]`, switchable at run time
    /// (`PUT /v1/provider-mode`).
    modes: ArcSwap<ModeSetting>,
    aliases: BTreeMap<String, String>,
    client: UpstreamClient,
    recorder: Arc<call::Recorder>,
    market: Option<Market>,
    /// Seller credit for the attempt loop (from `market`).
    credit: Option<Arc<dyn attempt::Credit>>,
    router: Arc<route::Router>,
    prewarm: std::sync::OnceLock<tb_prewarm::PrewarmHandle>,
    metrics: Arc<metrics::ProxyMetrics>,
    /// Open and refused client connections (`tb_connections_*`).
    connections: Arc<tb_listener::ConnectionStats>,
}

/// The provider mode in force.
#[derive(Debug, Clone)]
pub(crate) struct ModeSetting {
    mode: ProviderMode,
    auto: AutoConfig,
}

/// What marketplace routing needs: the registry (its snapshots feed the
/// routing table) and the credit broker (tokens, purchases, budget).
#[derive(Clone)]
pub struct Market {
    /// The seller list.
    pub registry: Arc<Registry>,
    /// Buys and tracks seller credit.
    pub broker: tb_seller::CreditBroker,
    /// How purchases are paid.
    pub payment: PaymentMethod,
}

impl ProxyState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if !self.settings.require_auth {
            return true;
        }
        self.token.authorizes(headers)
    }

    fn plan(&self, model: &str, protocol: Protocol) -> RoutePlan {
        let plan = self.table.load().plan(model, protocol);
        let auto_mode = route::auto_plan_mode(&self.modes.load().auto);
        self.router
            .order(plan, model, call::unix_ms_now(), auto_mode)
    }

    /// Rebuilds the routing table from the current registry snapshot.
    fn rebuild(&self) {
        let snapshot = self.market.as_ref().map(|m| m.registry.current());
        let doc = snapshot
            .as_ref()
            .filter(|s| s.has_document())
            .map(|s| s.doc.as_ref());
        let table = {
            let m = self.modes.load();
            table::RoutingTable::build(&self.manual, doc, m.mode, &m.auto, &self.aliases)
        };
        tracing::info!(target: "route.table_rebuilt", sellers = table.sellers, upstreams = table.upstreams().len(), "routing table ready");
        self.router.sync(table.upstreams());
        self.table.store(Arc::new(table));
    }

    /// Why auto mode cannot route at all right now, if it cannot: a
    /// `503 no_route` message saying how to fix it.
    fn auto_mode_problem(&self) -> Option<String> {
        let m = self.modes.load();
        if m.mode != ProviderMode::Auto {
            return None;
        }
        if !m.auto.enabled {
            tracing::warn!(target: "route.auto_provider.disabled", "auto mode with marketplace routing disabled");
            return Some("marketplace routing is disabled (provider.auto.enabled = false) and provider.mode is \"auto\"; set provider.auto.enabled = true, or use provider.mode = \"manual\" or \"both\"".into());
        }
        if m.auto.selected_seller.is_none()
            && m.auto.range == AutoRange::Custom
            && m.auto.seller_ids.is_empty()
        {
            tracing::warn!(target: "route.auto_provider.custom_empty", "range custom with no seller ids");
            return Some("provider.auto.range is \"custom\" but provider.auto.seller_ids is empty; list the sellers to use, or set range = \"recommended\"".into());
        }
        let snapshot = self.market.as_ref().map(|m| m.registry.current())?;
        if !snapshot.has_document() {
            let why = snapshot
                .last_error
                .clone()
                .unwrap_or_else(|| "not fetched yet".into());
            return Some(format!(
                "the marketplace registry has not been loaded ({why}); check registry.url and that the registry is reachable"
            ));
        }
        None
    }
}

/// The proxy plane, built from config and ready to serve.
pub struct Proxy {
    state: Arc<ProxyState>,
}

impl Proxy {
    /// Builds the proxy: one [`Upstream`] per `[[providers]]` entry, the
    /// model index over them, and the pooled HTTPS client. `env` reads the
    /// variables named by `api_key_env`; `sink` receives one call record per
    /// proxied request (`None`: records are only logged); `market` enables
    /// marketplace sellers (`provider.mode` auto or both).
    pub fn new(
        config: &Config,
        token: AccessToken,
        token_path: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Option<Arc<dyn CallSink>>,
        market: Option<Market>,
    ) -> Result<Proxy, BuildError> {
        let mut upstreams = Vec::with_capacity(config.providers.len());
        let mut indexed: Vec<IndexedUpstream> = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.iter().enumerate() {
            let upstream = Upstream::from_config(i, p, env)?;
            indexed.push(IndexedUpstream::manual(
                upstream.id.clone(),
                p.models.clone(),
                p.effective_protocols(),
            ));
            upstreams.push(Arc::new(upstream));
        }
        let manual = table::ManualUpstreams { upstreams, indexed };
        let client = build_client(config.tls.extra_ca_file.as_deref())?;
        let ms = Duration::from_millis;
        let settings = Settings {
            require_auth: config.proxy.require_auth,
            max_body_bytes: config.proxy.max_body_bytes,
            max_response_bytes: config.proxy.max_response_bytes,
            request_deadline: ms(config.routing.request_deadline_ms),
            stream_head_deadline: ms(config.routing.stream_head_deadline_ms),
            stream_idle_timeout: ms(config.routing.stream_idle_timeout_ms),
            shutdown_grace: ms(config.proxy.shutdown_grace_ms),
            max_connections: config.proxy.max_connections,
            header_read_timeout: ms(config.proxy.header_read_timeout_ms),
        };
        let metrics = Arc::new(metrics::ProxyMetrics::new());
        let mode = if market.is_some() {
            config.provider.mode
        } else {
            ProviderMode::Manual
        };
        let empty = table::RoutingTable::build(
            &manual,
            None,
            mode,
            &config.provider.auto,
            &config.models.aliases,
        );
        let state = ProxyState {
            settings,
            token,
            token_path,
            manual,
            table: ArcSwap::from_pointee(empty),
            modes: ArcSwap::from_pointee(ModeSetting {
                mode,
                auto: config.provider.auto.clone(),
            }),
            aliases: config.models.aliases.clone(),
            client,
            recorder: Arc::new(call::Recorder::new(sink, Arc::clone(&metrics))),
            credit: market.as_ref().map(|m| {
                Arc::new(credit::MarketCredit {
                    broker: m.broker.clone(),
                    payment: m.payment,
                    metrics: Arc::clone(&metrics),
                }) as Arc<dyn attempt::Credit>
            }),
            market,
            router: Arc::new(route::Router::new(&config.routing, &config.breaker)),
            prewarm: std::sync::OnceLock::new(),
            metrics,
            connections: Arc::default(),
        };
        state.rebuild();
        Ok(Proxy {
            state: Arc::new(state),
        })
    }

    /// Starts keeping `focus` warm (marketplace modes only): periodic
    /// health probes of the sellers serving those models feed the pool, and
    /// a request for a cold model schedules a warm-up without waiting.
    pub fn start_prewarm(
        &self,
        config: &tb_config::PrewarmConfig,
        focus: Vec<String>,
    ) -> Option<tb_prewarm::PrewarmHandle> {
        self.state.market.as_ref()?;
        let warm = Arc::new(warm::Warm(Arc::clone(&self.state)));
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
        let _ = self.state.prewarm.set(handle.clone());
        Some(handle)
    }

    /// The Prometheus text exposition of the proxy plane: call series and
    /// the circuits, refreshed now. The binary appends the other
    /// components' gauges.
    pub fn metrics_text(&self) -> String {
        let state = &self.state;
        let m = &state.metrics;
        let now = call::unix_ms_now();
        for (id, view) in state.router.views(now) {
            m.circuit_open
                .with_label_values(&[id.as_str()])
                .set(i64::from(view.circuit == tb_pool::CircuitState::Open));
        }
        m.encode()
    }

    /// The marketplace (registry and credit broker), when routing to sellers.
    pub fn market(&self) -> Option<&Market> {
        self.state.market.as_ref()
    }

    /// The prewarmer, once started.
    pub fn prewarm(&self) -> Option<&tb_prewarm::PrewarmHandle> {
        self.state.prewarm.get()
    }

    /// Whether call records reach storage.
    pub fn sink_health(&self) -> SinkHealth {
        self.state.recorder.health()
    }

    /// Open and refused client connections.
    pub fn connections(&self) -> &tb_listener::ConnectionStats {
        &self.state.connections
    }

    /// Call records the sink refused (queue full) since start.
    pub fn dropped_records(&self) -> u64 {
        self.state.recorder.dropped()
    }

    /// The upstreams of the current routing table, in preference order.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.state.table.load().upstreams().to_vec()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish within `proxy.shutdown_grace_ms`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> ShutdownOutcome {
        // A new registry generation rebuilds the routing table, off the request path.
        let watcher = self.state.market.as_ref().map(|m| {
            let mut generations = m.registry.subscribe();
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                while generations.changed().await.is_ok() {
                    // Tens of ms for a 10k-seller registry: on a blocking
                    // thread, so a one-thread runtime keeps serving.
                    let state = Arc::clone(&state);
                    if let Err(e) = tokio::task::spawn_blocking(move || state.rebuild()).await {
                        tracing::error!(target: "route.table_rebuilt", error = %e, "rebuilding the routing table failed; the previous table stays");
                    }
                }
            })
        });
        let outcome = server::serve(Arc::clone(&self.state), listener, shutdown).await;
        if let Some(w) = watcher {
            w.abort();
        }
        outcome
    }
}
