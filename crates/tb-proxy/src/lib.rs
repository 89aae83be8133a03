//! tokenbuddy's proxy plane: an OpenAI- and Anthropic-compatible HTTP server
//! on loopback that authenticates a request with the local access token,
//! resolves its model, plans routes and forwards it to an upstream —
//! streaming the answer back frame by frame, without buffering.
//!
//! The crate owns the wire: HTTP, headers, protocol-shaped errors, and the
//! attempt loop that walks a plan. It does not decide *where* a request
//! goes: it asks the routing runtime (`tb-router`) for a
//! [`RoutePlan`](tb_router::RoutePlan) and reports every attempt back to
//! its [`Router`](tb_router::Router). It never logs or forwards the access
//! token or provider keys.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tb_config::Config;
//! use tb_proxy::{AccessToken, EventLoops, Proxy};
//!
//! let config = Config::from_toml_str("[proxy]\nport = 0")?;
//! let (token, token_path) = AccessToken::load_or_create(std::path::Path::new("/tmp/tb-data"))?;
//! let proxy = Proxy::new(&config, token, token_path, &|var| std::env::var(var).ok(), None, None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! // This thread's runtime, and one more event loop on a thread of its own.
//! let loops = EventLoops::start(2)?;
//! proxy.serve(listener, &loops, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod attempt;
mod body;
mod call;
mod commit;
mod credit;
mod error;
mod foreign;
mod form;
mod gateway;
mod handler;
mod headers;
mod hold;
mod member;
mod metrics;
mod readiness;
mod report;
mod server;
mod stream;
mod tap;
mod token;
mod translation;
pub mod validate;
mod video;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::combinators::UnsyncBoxBody;
use tb_config::Config;
use tb_domain::{PaymentMethod, Protocol};
use tb_registry::Registry;
use tb_router::{RoutePlan, Routing, UpstreamError};
use tokio::net::TcpListener;

pub use call::{CallSink, SinkFailure, SinkHealth};
pub use error::{ErrorCode, ProxyError};
pub use member::{
    CallEstimate, DEFAULT_OUTPUT_TOKENS, LimitRefusal, MEMBER_KEY_PREFIX, Member, MemberKey,
    MemberKeys, MemberLimits, MemberUsage, Reservation, ReservationKind, UsageFuture, check_limits,
    key_hash, refusal,
};
pub use readiness::Readiness;
pub use report::{BudgetReport, RegistryReport, StatusReport};
pub use server::ShutdownOutcome;
pub use tb_http::{
    ClientFactory, ProxyConfigError, ProxySettings, TlsSetupError, build_client, error_chain,
    mask_credentials,
};
pub use tb_listener::{EventLoops, EventLoopsError, ServerTls, ServerTlsError};
pub use token::{ACCESS_TOKEN_FILE, AccessToken, TokenError};
pub use video::{VideoJobRow, VideoJobs};

/// The pooled client used for every upstream call (tb-http's one client).
pub type UpstreamClient = tb_http::HttpClient;

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
    /// The outbound proxy setting is unusable.
    #[error(transparent)]
    Proxy(#[from] ProxyConfigError),
}

/// The outbound proxy settings: `[network]` over the environment (`env`
/// reads it; `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or
/// lower case), checked.
///
/// # Errors
///
/// [`ProxyConfigError`] naming the setting when a proxy URL is unusable.
pub fn proxy_settings(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProxySettings, ProxyConfigError> {
    let settings = ProxySettings::from_env(
        env,
        config.network.proxy.as_ref().map(|p| p.expose()),
        &config.network.no_proxy,
    );
    settings.validate()?;
    Ok(settings)
}

/// The proxy (credentials masked) a connection to `dst` goes through, or
/// `None` when it goes direct.
pub fn route_of(settings: &ProxySettings, dst: &http::Uri) -> Option<String> {
    tb_http::route(&settings.matcher(), dst).map(|i| mask_credentials(&i.uri().to_string()))
}

/// The one outbound client for `config`: system roots plus
/// `tls.extra_ca_file`, through the proxy [`proxy_settings`] selects.
///
/// # Errors
///
/// [`BuildError::Tls`] or [`BuildError::Proxy`].
pub fn outbound_client(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<UpstreamClient, BuildError> {
    Ok(outbound_clients(config, env)?.client())
}

/// What [`outbound_client`] builds, for as many connection pools as
/// needed (one per event loop of the proxy plane).
///
/// # Errors
///
/// [`BuildError::Tls`] or [`BuildError::Proxy`].
pub fn outbound_clients(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientFactory, BuildError> {
    let proxy = proxy_settings(config, env)?;
    Ok(ClientFactory::system(
        config.tls.extra_ca_file.as_deref(),
        &proxy,
    )?)
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
    /// The proxy listens beyond loopback: only member keys authenticate,
    /// never the local access token (decisions.md, "A network-facing gateway").
    members_only: bool,
    /// After the shutdown signal, how long new connections are still served.
    drain_delay: Duration,
}

/// Everything a request handler needs, shared by all connections.
pub(crate) struct ProxyState {
    settings: Settings,
    token: AccessToken,
    token_path: PathBuf,
    /// Where requests go: the routing table, the provider mode, the router.
    routing: Arc<Routing>,
    /// The shared pool: loop 0's upstream calls, the prewarmer, videos,
    /// token counts.
    client: UpstreamClient,
    /// Builds the pools of event loops 1 and up.
    clients: ClientFactory,
    recorder: Arc<call::Recorder>,
    market: Option<Market>,
    /// Seller credit for the attempt loop (from `market`).
    credit: Option<Arc<dyn attempt::Credit>>,
    metrics: Arc<metrics::ProxyMetrics>,
    /// Open and refused client connections (`tb_connections_*`).
    connections: Arc<tb_listener::ConnectionStats>,
    /// The team's member keys, when the daemon serves members.
    members: std::sync::OnceLock<Arc<dyn MemberKeys>>,
    /// Where video jobs are mapped to their upstream (set once, by the
    /// daemon, when it has a ledger).
    video_jobs: std::sync::OnceLock<Arc<dyn VideoJobs>>,
    /// The certificate served when HTTPS is configured (set once, by the daemon).
    tls: std::sync::OnceLock<tb_listener::ServerTls>,
    /// What `/readyz` checks besides draining (set once, by the daemon).
    readiness: std::sync::OnceLock<Arc<dyn Readiness>>,
    /// Set when the shutdown signal arrives: `/readyz` answers 503.
    draining: std::sync::atomic::AtomicBool,
    /// Notified by [`Proxy::end_drain_delay`]: the rest of the drain-delay
    /// window is skipped (a permit is kept when it comes first).
    end_drain_delay: tokio::sync::Notify,
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
    /// Who the request authenticated as: a member key names its member;
    /// else the access token (or `require_auth = false`) is the local
    /// user; else `None` (refused).
    fn caller(&self, headers: &HeaderMap) -> Option<member::Caller> {
        if let Some(members) = self.members.get()
            && let Some(found) = token::presented(headers)
                .filter(|k| k.starts_with(MEMBER_KEY_PREFIX.as_bytes()))
                .find_map(|k| members.member_for(&key_hash(k)))
        {
            return Some(member::Caller::Member(found));
        }
        let token_ok = !self.settings.members_only && self.token.authorizes(headers);
        (!self.settings.require_auth || token_ok).then_some(member::Caller::Local)
    }

    fn plan(&self, model: &str, protocol: Protocol, has_tools: bool) -> RoutePlan {
        self.routing
            .plan_for(model, protocol, call::unix_ms_now(), has_tools)
    }
}

/// The proxy plane, built from config and ready to serve.
pub struct Proxy {
    state: Arc<ProxyState>,
}

impl Proxy {
    /// Builds the proxy: the routing runtime (one upstream per
    /// `[[providers]]` entry, the model index over them, the router) and
    /// the pooled HTTPS client. `env` reads the variables named by
    /// `api_key_env`; `sink` receives one call record per proxied request
    /// (`None`: records are only logged); `market` enables marketplace
    /// sellers (`provider.mode` auto or both).
    pub fn new(
        config: &Config,
        token: AccessToken,
        token_path: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Option<Arc<dyn CallSink>>,
        market: Option<Market>,
    ) -> Result<Proxy, BuildError> {
        let clients = outbound_clients(config, env)?;
        let client = clients.client();
        let sellers = market.as_ref().map(|m| tb_router::Sellers {
            registry: Arc::clone(&m.registry),
            payment: m.payment,
            client: client.clone(),
        });
        let routing = Arc::new(Routing::new(config, env, sellers)?);
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
            members_only: !config.proxy.bind.is_loopback(),
            drain_delay: ms(config.proxy.drain_delay_ms),
        };
        let metrics = Arc::new(metrics::ProxyMetrics::new());
        let state = ProxyState {
            settings,
            token,
            token_path,
            routing,
            client,
            clients,
            recorder: Arc::new(call::Recorder::new(sink, Arc::clone(&metrics))),
            credit: market.as_ref().map(|m| {
                Arc::new(credit::MarketCredit {
                    broker: m.broker.clone(),
                    payment: m.payment,
                    metrics: Arc::clone(&metrics),
                }) as Arc<dyn attempt::Credit>
            }),
            market,
            metrics,
            connections: Arc::default(),
            members: std::sync::OnceLock::new(),
            video_jobs: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
            readiness: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            end_drain_delay: tokio::sync::Notify::new(),
        };
        Ok(Proxy {
            state: Arc::new(state),
        })
    }

    /// Accepts the keys of `members` besides the access token, and records
    /// the member on each call. Set once, before serving; a second call
    /// is ignored (returns `false`).
    pub fn serve_members(&self, members: Arc<dyn MemberKeys>) -> bool {
        self.state.members.set(members).is_ok()
    }

    /// Starts keeping `focus` warm (marketplace modes only): periodic
    /// health probes of the sellers serving those models, over the proxy's
    /// pooled client, feed the pool, and a request for a cold model
    /// schedules a warm-up without waiting.
    pub fn start_prewarm(
        &self,
        config: &tb_config::PrewarmConfig,
        focus: Vec<String>,
    ) -> Option<tb_prewarm::PrewarmHandle> {
        self.state
            .routing
            .start_prewarm(self.state.client.clone(), config, focus)
    }

    /// Where video jobs are kept (the ledger). Without it, the video
    /// endpoints answer 503. Set once; a second call changes nothing.
    pub fn set_video_jobs(&self, jobs: Arc<dyn VideoJobs>) {
        let _ = self.state.video_jobs.set(jobs);
    }

    /// Serves HTTPS with `tls`. Set once, before serving; a second call
    /// changes nothing.
    pub fn serve_tls(&self, tls: tb_listener::ServerTls) {
        let _ = self.state.tls.set(tls);
    }

    /// What `GET /readyz` checks besides draining (without it: draining
    /// only). Set once; a second call changes nothing.
    pub fn set_readiness(&self, readiness: Arc<dyn Readiness>) {
        let _ = self.state.readiness.set(readiness);
    }

    /// Whether the shutdown signal has arrived (`/readyz` answers 503).
    pub fn is_draining(&self) -> bool {
        self.state
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Skips what is left of the drain-delay window (a second SIGTERM or
    /// SIGINT): the listener stops accepting at once and in-flight requests
    /// get `proxy.shutdown_grace_ms` as usual. Called before the shutdown
    /// signal, the window is skipped when it comes.
    pub fn end_drain_delay(&self) {
        self.state.end_drain_delay.notify_one();
    }

    /// The routing runtime: the table, the provider mode, the router and
    /// the prewarmer (control plane, doctor, metrics).
    pub fn routing(&self) -> &Routing {
        &self.state.routing
    }

    /// The Prometheus text exposition of the proxy plane: call series and
    /// the circuits, refreshed now. The binary appends the other
    /// components' gauges.
    pub fn metrics_text(&self) -> String {
        let state = &self.state;
        let m = &state.metrics;
        let now = call::unix_ms_now();
        for (id, view) in state.routing.router().views(now) {
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

    /// Serves until `shutdown` resolves; then `/readyz` answers 503 at
    /// once, new connections are still served for `proxy.drain_delay_ms`,
    /// and then the listener stops accepting and lets in-flight requests
    /// finish within `proxy.shutdown_grace_ms`.
    /// Connections are spread over `loops`, each with its own pool of
    /// upstream connections.
    pub async fn serve(
        &self,
        listener: TcpListener,
        loops: &EventLoops,
        shutdown: impl Future<Output = ()>,
    ) -> ShutdownOutcome {
        // A new registry generation rebuilds the routing table, off the request path.
        let watcher = self.state.routing.watch_registry();
        let outcome = server::serve(Arc::clone(&self.state), listener, loops, shutdown).await;
        if let Some(w) = watcher {
            w.abort();
        }
        outcome
    }
}
