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
//! let proxy = Proxy::new(&config, token, token_path, &|var| std::env::var(var).ok(), None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod body;
mod call;
mod error;
mod handler;
mod headers;
mod plan;
mod server;
mod stream;
mod tap;
mod token;
mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::json;
use tb_config::Config;
use tb_domain::{PaymentMethod, Protocol};
use tb_registry::{IndexedUpstream, ModelIndex};
use tokio::net::TcpListener;

pub use call::CallSink;
pub use error::{ErrorCode, ProxyError};
pub use plan::{Route, RoutePlan};
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
}

/// Everything a request handler needs, shared by all connections.
pub(crate) struct ProxyState {
    settings: Settings,
    token: AccessToken,
    token_path: PathBuf,
    index: ModelIndex,
    upstreams: Vec<Arc<Upstream>>,
    client: UpstreamClient,
    models_body: Bytes,
    recorder: Arc<call::Recorder>,
}

impl ProxyState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if !self.settings.require_auth {
            return true;
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|v| v[7..].trim_ascii());
        let api_key = headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii());
        bearer.is_some_and(|t| self.token.matches(t))
            || api_key.is_some_and(|k| self.token.matches(k))
    }

    fn plan(&self, model: &str, protocol: Protocol) -> RoutePlan {
        RoutePlan::from_lookup(
            self.index
                .lookup(model, protocol, &[PaymentMethod::ProviderKey]),
            &self.upstreams,
        )
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
    /// proxied request (`None`: records are only logged).
    pub fn new(
        config: &Config,
        token: AccessToken,
        token_path: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Option<Arc<dyn CallSink>>,
    ) -> Result<Proxy, BuildError> {
        let mut upstreams = Vec::with_capacity(config.providers.len());
        let mut indexed = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.iter().enumerate() {
            let upstream = Upstream::from_config(i, p, env)?;
            indexed.push(IndexedUpstream::manual(
                upstream.id.clone(),
                p.models.clone(),
                p.effective_protocols(),
            ));
            upstreams.push(Arc::new(upstream));
        }
        let index = ModelIndex::new(indexed, config.models.aliases.clone());
        let data: Vec<_> = index
            .models()
            .into_iter()
            .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "tokenbuddy"}))
            .collect();
        let models_body = Bytes::from(json!({"object": "list", "data": data}).to_string());
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
        };
        Ok(Proxy {
            state: Arc::new(ProxyState {
                settings,
                token,
                token_path,
                index,
                upstreams,
                client,
                models_body,
                recorder: Arc::new(call::Recorder::new(sink)),
            }),
        })
    }

    /// Call records the sink refused (queue full) since start.
    pub fn dropped_records(&self) -> u64 {
        self.state.recorder.dropped()
    }

    /// The upstreams, in preference order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.state.upstreams
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish within `proxy.shutdown_grace_ms`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> ShutdownOutcome {
        server::serve(Arc::clone(&self.state), listener, shutdown).await
    }
}
