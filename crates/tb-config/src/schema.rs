//! The configuration schema. Field names are a public contract: other tools
//! (the installer, users' dotfiles) write them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};
use tb_domain::{PaymentMethod, Protocol, ProviderKind};

/// The whole effective configuration of the daemon.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The client-facing proxy plane.
    pub proxy: ProxyConfig,
    /// The control plane (API, metrics, dashboard).
    pub control: ControlConfig,
    /// Outbound TLS.
    pub tls: TlsConfig,
    /// Outbound network: the corporate HTTP proxy.
    pub network: NetworkConfig,
    /// Manual ("bring your own key") providers, in preference order.
    pub providers: Vec<ProviderConfig>,
    /// Deadlines and, later, route ordering.
    pub routing: RoutingConfig,
    /// Model name resolution.
    pub models: ModelsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The call-record ledger.
    pub ledger: LedgerConfig,
    /// The marketplace registry (auto mode).
    pub registry: RegistryConfig,
    /// Which upstreams to use: manual providers, marketplace sellers, or both.
    pub provider: ProviderModeConfig,
    /// Buying seller credit.
    pub purchase: PurchaseConfig,
    /// Circuit breakers.
    pub breaker: BreakerConfig,
    /// Keeping the focus set warm.
    pub prewarm: PrewarmConfig,
    /// `tokenbuddyd probe` and what routing makes of its findings.
    pub probe: ProbeConfig,
    /// Shipping call records elsewhere (HTTP sink, OpenTelemetry).
    pub export: ExportConfig,
    /// Team mode: several daemons sharing seller credit and the purchase
    /// budget through a PostgreSQL ledger.
    pub team: TeamConfig,
}

/// `[team]`: team mode (docs/team.md, "Shared seller credit").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamConfig {
    /// Share seller tokens, purchase leases and the purchase budget with
    /// every daemon on the same PostgreSQL ledger (`ledger.url`).
    pub enabled: bool,
    /// A file holding the team key (`TB_TEAM_KEY` wins when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// How long a purchase lease runs, ms: a daemon that dies while buying
    /// blocks the team's purchases from that seller at most this long.
    pub lease_ms: u64,
}

impl Default for TeamConfig {
    fn default() -> Self {
        TeamConfig {
            enabled: false,
            key_file: None,
            lease_ms: 90_000,
        }
    }
}

/// `[probe]`: vetting providers (`tokenbuddyd probe`, docs/probe.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Seconds a probe's findings count for routing (0: never).
    pub expiry_secs: u64,
    /// Percent by which reported prompt tokens may exceed the local count
    /// before the upstream is pushed back.
    pub overcount_threshold: u32,
    /// The most a probe run may cost (estimated from the price table),
    /// USD micros; a plan above it is refused.
    pub max_cost_usd_micros: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            expiry_secs: 7 * 24 * 3_600,
            overcount_threshold: 25,
            max_cost_usd_micros: 100_000,
        }
    }
}

/// `[prewarm]`: probing sellers of the focus models ahead of requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrewarmConfig {
    /// Seconds between sweeps.
    pub refresh_secs: u64,
    /// Deadline of one probe.
    pub probe_timeout_ms: u64,
    /// Probes in flight at once.
    pub max_concurrent_probes: usize,
    /// How long a warm entry stays warm.
    pub ttl_ms: u64,
    /// The first sweep starts after a random delay in this range.
    pub startup_jitter_ms: [u64; 2],
}

impl Default for PrewarmConfig {
    fn default() -> Self {
        PrewarmConfig {
            refresh_secs: 60,
            probe_timeout_ms: 3_000,
            max_concurrent_probes: 8,
            ttl_ms: 120_000,
            startup_jitter_ms: [5_000, 10_000],
        }
    }
}

/// `[registry]`: where the seller list comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// The registry document URL (auto mode needs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Background refresh period.
    pub refresh_secs: u64,
    /// Largest registry document accepted.
    pub max_bytes: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: None,
            refresh_secs: 60,
            max_bytes: 1024 * 1024,
        }
    }
}

/// `provider.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderMode {
    /// Only `[[providers]]`.
    Manual,
    /// Only marketplace sellers.
    Auto,
    /// Manual providers first, then sellers.
    Both,
}

impl ProviderMode {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderMode::Manual => "manual",
            ProviderMode::Auto => "auto",
            ProviderMode::Both => "both",
        }
    }
}

/// `[provider]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderModeConfig {
    /// Which upstreams to use.
    pub mode: ProviderMode,
    /// Marketplace settings.
    pub auto: AutoConfig,
}

impl Default for ProviderModeConfig {
    fn default() -> Self {
        ProviderModeConfig {
            mode: ProviderMode::Manual,
            auto: AutoConfig::default(),
        }
    }
}

/// `provider.auto.range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoRange {
    /// Every registry seller.
    Recommended,
    /// Only `seller_ids`.
    Custom,
}

impl AutoRange {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoRange::Recommended => "recommended",
            AutoRange::Custom => "custom",
        }
    }
}

/// `[provider.auto]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoConfig {
    /// Marketplace routing on or off.
    pub enabled: bool,
    /// Which sellers.
    pub range: AutoRange,
    /// The sellers of range `custom`.
    pub seller_ids: Vec<String>,
    /// One seller only (mode `fixed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_seller: Option<String>,
    /// How purchases are paid.
    pub payment_method: PaymentMethod,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            enabled: true,
            range: AutoRange::Recommended,
            seller_ids: Vec::new(),
            selected_seller: None,
            payment_method: PaymentMethod::Mock,
        }
    }
}

/// `[purchase]`: buying seller credit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurchaseConfig {
    /// Credit asked for in each purchase.
    pub amount_credit_micros: u64,
    /// What the daemon may spend buying credit per run (USD micros).
    pub session_budget_usd_micros: u64,
    /// A token with a balance at or under this is replaced.
    pub rebuy_min_balance_micros: u64,
    /// A token expiring within this is replaced.
    pub token_expiry_margin_ms: u64,
    /// Credit abandoned within this of buying it counts as wasted.
    pub fresh_window_ms: u64,
}

impl Default for PurchaseConfig {
    fn default() -> Self {
        PurchaseConfig {
            amount_credit_micros: 1_000_000,
            session_budget_usd_micros: 5_000_000,
            rebuy_min_balance_micros: 10_000,
            token_expiry_margin_ms: 60_000,
            fresh_window_ms: 300_000,
        }
    }
}

/// `[ledger]`: where call records go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `postgres://…` for a shared PostgreSQL ledger, `sqlite://PATH` or a
    /// plain path for SQLite; unset = `<data_dir>/ledger.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Days of call records to keep (0 = keep forever).
    pub retention_days: u32,
    /// Records that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            url: None,
            retention_days: 90,
            queue_capacity: 65_536,
        }
    }
}

/// `[control]`: where the control plane listens (loopback only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// TCP port; `0` asks the OS for an ephemeral one (tests).
    pub port: u16,
    /// Address to bind; must be loopback.
    pub bind: IpAddr,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            port: 7879,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// The most `proxy.worker_threads` accepted.
pub(crate) const MAX_WORKER_THREADS: usize = 256;

/// `[proxy]`: where the proxy plane listens and what it accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// TCP port; `0` asks the OS for an ephemeral one (tests).
    pub port: u16,
    /// Address to bind; anything but loopback needs `allow_remote`.
    pub bind: IpAddr,
    /// Whether the local access token is required (only loopback may turn it off).
    pub require_auth: bool,
    /// Permit binding a non-loopback address.
    pub allow_remote: bool,
    /// Largest accepted request body; larger gets `413`.
    pub max_body_bytes: u64,
    /// Largest non-streaming answer kept in memory to read its usage; a
    /// larger one passes through with `usage_missing`.
    pub max_response_bytes: u64,
    /// How long in-flight requests may run after SIGINT/SIGTERM.
    pub shutdown_grace_ms: u64,
    /// Client connections served at once; past it a new connection gets
    /// `503 overloaded` and is closed.
    pub max_connections: usize,
    /// How long a client may take to send a request head (slow-loris
    /// defence; also how long an idle keep-alive connection is kept).
    pub header_read_timeout_ms: u64,
    /// Event loops serving the proxy plane, each a thread of its own that
    /// keeps the connections handed to it (and its own pool of upstream
    /// connections): `0` (the default) is one per CPU core, `1` serves
    /// everything on the daemon's main thread. A lone client is always
    /// served on the main thread; under load connections spread over the
    /// loops. The ledger's writer and blocking work have their own threads.
    pub worker_threads: usize,
    /// After SIGTERM, how long `/readyz` answers 503 while new requests
    /// are still served, so a load balancer notices before the listener
    /// closes (0: close at once).
    pub drain_delay_ms: u64,
    /// Serving HTTPS: required when `bind` is not loopback.
    pub tls: ProxyTlsConfig,
}

/// `[proxy.tls]`: the proxy plane's certificate (PEM files, read at start).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyTlsConfig {
    /// The certificate chain, leaf first (absolute path, PEM).
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (absolute path, PEM: PKCS#8, PKCS#1
    /// or SEC1).
    pub key_file: Option<PathBuf>,
}

impl ProxyTlsConfig {
    /// The certificate and key files when both are set.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            port: 7878,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            require_auth: true,
            allow_remote: false,
            max_body_bytes: 10 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            max_connections: 1_024,
            header_read_timeout_ms: 60_000,
            worker_threads: 0,
            drain_delay_ms: 0,
            tls: ProxyTlsConfig::default(),
        }
    }
}

/// `[export]`: copies of the call records sent elsewhere, off the request
/// path. Both sinks are off until their URL is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// `[export.http]`: call records as JSON, POSTed in batches.
    pub http: HttpExportConfig,
    /// `[export.otlp]`: one OpenTelemetry trace per request.
    pub otlp: OtlpExportConfig,
}

/// `[export.http]`: the JSON sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpExportConfig {
    /// Where batches are POSTed (`http://` or `https://`); unset = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Extra request headers (e.g. `authorization`); the values are
    /// secrets: masked in `config show`, never logged.
    pub headers: BTreeMap<String, Secret>,
    /// Most records in one POST.
    pub batch_size: usize,
    /// Records that may wait (including a batch being retried) before new
    /// ones are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for HttpExportConfig {
    fn default() -> Self {
        HttpExportConfig {
            url: None,
            headers: BTreeMap::new(),
            batch_size: 100,
            queue_capacity: 10_000,
        }
    }
}

/// `[export.otlp]`: OpenTelemetry traces over OTLP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExportConfig {
    /// The collector's base URL (`http://localhost:4318`); traces go to
    /// `<endpoint>/v1/traces`. Unset = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The OTLP transport; only `http/protobuf` is implemented.
    pub protocol: OtlpProtocol,
}

/// `export.otlp.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP POST (OTLP/HTTP).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC: refused at load (not implemented).
    #[serde(rename = "grpc")]
    Grpc,
}

impl ExportConfig {
    /// The `[export]` rules: URLs, sizes, header names, the protocol.
    fn problems(&self, push: &mut dyn FnMut(String, String)) {
        let url_problem = |url: &str| -> Option<String> {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                Some(format!("{url:?} must start with http:// or https://"))
            } else if authority(url).contains('@') {
                Some("must not contain credentials (user:password@): they would show in logs and doctor; for the HTTP sink put them in export.http.headers".into())
            } else if url.contains('#') {
                Some("must not contain a fragment".into())
            } else {
                None
            }
        };
        let http = &self.http;
        if let Some(p) = http.url.as_deref().and_then(url_problem) {
            push("export.http.url".into(), p);
        }
        if http.batch_size == 0 || http.batch_size > 10_000 {
            push(
                "export.http.batch_size".into(),
                format!("{} is not between 1 and 10000", http.batch_size),
            );
        }
        if http.queue_capacity == 0 {
            push(
                "export.http.queue_capacity".into(),
                "must be at least 1".into(),
            );
        }
        for (name, value) in &http.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.chars().all(token) {
                push(
                    "export.http.headers".into(),
                    format!("{name:?} is not a valid header name"),
                );
            } else if [
                "content-type",
                "content-length",
                "host",
                "transfer-encoding",
            ]
            .contains(&lower.as_str())
            {
                push(
                    "export.http.headers".into(),
                    format!("{name:?} is set by tokenbuddy itself and cannot be overridden"),
                );
            }
            if value.expose().chars().any(|c| c.is_control() && c != '\t') {
                // The value is a secret: named by its header, never shown.
                push(
                    "export.http.headers".into(),
                    format!("the value of {name:?} contains a control character (a line break?)"),
                );
            }
        }
        if let Some(p) = self.otlp.endpoint.as_deref().and_then(url_problem) {
            push("export.otlp.endpoint".into(), p);
        }
        if self.otlp.protocol == OtlpProtocol::Grpc {
            push(
                "export.otlp.protocol".into(),
                "\"grpc\" is not supported by this build; use \"http/protobuf\" (OTLP over HTTP, the collector's port 4318)".into(),
            );
        }
    }
}

/// `[tls]`: outbound TLS trust.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates trusted besides the system roots.
    pub extra_ca_file: Option<PathBuf>,
}

/// `[network]`: how outbound connections leave the machine. Both keys
/// take precedence over the environment (`HTTPS_PROXY` / `HTTP_PROXY` /
/// `ALL_PROXY` / `NO_PROXY`). Loopback destinations are always direct.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// The HTTP CONNECT proxy for every outbound connection,
    /// `http://[user:pass@]host:port`; masked in `config show`.
    pub proxy: Option<Secret>,
    /// Hosts, domains (and their subdomains), IPs or CIDRs reached
    /// directly; replaces `NO_PROXY` when non-empty.
    pub no_proxy: Vec<String>,
}

/// One `[[providers]]` entry: an upstream the user pays with their own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique id, shown in `x-tokenbuddy-upstream`, logs and the ledger.
    pub id: String,
    /// Which auth header the provider expects.
    pub kind: ProviderKind,
    /// Base URL; the protocol path minus its leading `/v1` is appended.
    pub base_url: String,
    /// The key inline (discouraged: prefer `api_key_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The environment variable holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// A file (absolute path) whose content, trimmed, is the key; read
    /// when the providers are loaded. `tokenbuddyd setup` writes one
    /// (mode 0600) for a key it found in an agent's own config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Model ids this provider serves.
    pub models: Vec<String>,
    /// Protocols served; defaults by `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<Protocol>>,
    /// Fraction (0–1) off the table price; used by routing and billing.
    #[serde(default)]
    pub discount: f64,
    /// Extra headers sent upstream with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Explicit per-model prices (USD per 1M tokens); they win over the
    /// bundled price table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, ModelPriceConfig>,
    /// Per-model video prices, USD per second of video produced (video
    /// models are priced per second, not per token): `POST /v1/videos`
    /// routes are ordered by the cost of an 8-second clip at this price, and
    /// a finished job is estimated with it (docs/video.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub video_prices: BTreeMap<String, f64>,
    /// Whether requests in another protocol may be translated to reach
    /// this provider (with `routing.translate`); `false` = native only.
    #[serde(default = "yes")]
    pub translate: bool,
    /// `anthropic-beta` values never forwarded to this provider (those it
    /// rejects); the others pass on native Messages routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_anthropic_betas: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `[[providers]] prices."<model>"`: USD per 1M tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceConfig {
    /// Input (fresh) tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cache-read tokens (default: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Cache-write tokens (default: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

impl ModelPriceConfig {
    /// USD per 1M tokens → integer micros per 1M tokens, the only form
    /// money takes after parsing.
    pub fn to_micros(usd_per_million: f64) -> u64 {
        (usd_per_million * 1_000_000.0).round() as u64
    }
}

impl ProviderConfig {
    /// The protocols this provider serves: the listed ones, else its kind's defaults.
    pub fn effective_protocols(&self) -> Vec<Protocol> {
        match &self.protocols {
            Some(list) => list.clone(),
            None => self.kind.default_protocols(),
        }
    }
}

/// `[routing]`: how routes are ordered, when to fail over, deadlines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Manual providers: `fallback` (ordered list) or `locked` (first only).
    pub manual_policy: ManualPolicyConfig,
    /// How marketplace sellers are ranked.
    pub scorer: ScorerConfig,
    /// Manual fallback: cheapest effective price first instead of config order.
    pub auto_sort: bool,
    /// Distinct upstreams tried per request.
    pub max_attempts: usize,
    /// Fail over on the caller's own bad request (400/404/413/422).
    pub failover_on_client_error: bool,
    /// Retry the same upstream once on a 5xx before failing over.
    pub retry_same_on_5xx: bool,
    /// Deadline for the response head of a non-streaming request.
    pub request_deadline_ms: u64,
    /// Deadline for the response head of a streaming request.
    pub stream_head_deadline_ms: u64,
    /// Longest silence between two chunks of a stream.
    pub stream_idle_timeout_ms: u64,
    /// After a failover, start at the upstream that served for this long (0 = off).
    pub sticky_reset_ms: u64,
    /// Models to keep warm (prewarm); limits nothing.
    pub focus_models: Vec<String>,
    /// Reach upstreams that speak another protocol by translating the
    /// request and the answer (native routes still come first).
    pub translate: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            manual_policy: ManualPolicyConfig::Fallback,
            scorer: ScorerConfig::Balanced,
            auto_sort: false,
            max_attempts: 4,
            failover_on_client_error: true,
            retry_same_on_5xx: true,
            request_deadline_ms: 300_000,
            stream_head_deadline_ms: 30_000,
            stream_idle_timeout_ms: 120_000,
            sticky_reset_ms: 60_000,
            focus_models: Vec::new(),
            translate: true,
        }
    }
}

/// `routing.manual_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualPolicyConfig {
    /// The listed order (or cheapest first with `auto_sort`), failing over.
    Fallback,
    /// Only the first provider that serves the model; never fail over.
    Locked,
}

/// `routing.scorer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorerConfig {
    /// Lowest latency, highest throughput.
    Speed,
    /// Largest discount.
    Discount,
    /// Health, latency, throughput and discount together.
    Balanced,
    /// Lowest effective price.
    Cheapest,
}

/// `[breaker]`: when an upstream is benched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failures within `window_ms` that open the circuit.
    pub max_failures: u32,
    /// The sliding failure window.
    pub window_ms: u64,
    /// How long an open circuit stays open (doubles on each re-open).
    pub cooldown_ms: u64,
    /// The cap of the doubled cooldown.
    pub max_cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_failures: 3,
            window_ms: 60_000,
            cooldown_ms: 60_000,
            max_cooldown_ms: 600_000,
        }
    }
}

/// `[models]`: client-facing names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Client name → upstream model id.
    pub aliases: BTreeMap<String, String>,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive (`info`, `tb_proxy=debug`, …).
    pub level: String,
    /// Human or machine output.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A secret from config (an API key). `Debug`, `Display` and `Serialize`
/// all print a mask, so a secret cannot leak through logging or `config
/// show` by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The mask printed instead of a secret.
    pub const MASK: &'static str = "********";

    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Secret::MASK)
    }
}

/// Why `url` is not `http://[user:pass@]host[:port]`, in words that never
/// repeat the credentials.
fn proxy_url_problem(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        return Err(if scheme.is_empty() {
            "must be http://[user:pass@]host:port (the scheme is missing)".into()
        } else {
            format!("scheme {scheme}:// is not supported; only http:// proxies (HTTP CONNECT) are")
        });
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err("must be http://[user:pass@]host:port (the host is missing)".into());
    }
    if host_port.contains(char::is_whitespace) {
        return Err("must be http://[user:pass@]host:port (the host has spaces)".into());
    }
    Ok(())
}

/// What is wrong with `[proxy.tls]`: both files or neither, absolute
/// paths, and TLS whenever the proxy listens beyond loopback.
fn proxy_tls_problems(proxy: &ProxyConfig) -> Vec<(&'static str, String)> {
    let tls = &proxy.tls;
    let mut problems = Vec::new();
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => problems.push((
            "proxy.tls.key_file",
            "proxy.tls.cert_file is set without its key: set key_file to the PEM file of the certificate's private key".into(),
        )),
        (None, Some(_)) => problems.push((
            "proxy.tls.cert_file",
            "proxy.tls.key_file is set without its certificate: set cert_file to the PEM file of the certificate chain".into(),
        )),
        (None, None) if !proxy.bind.is_loopback() && proxy.allow_remote => problems.push((
            "proxy.tls",
            format!(
                "listening on {} (beyond loopback) needs TLS: set [proxy.tls] cert_file and key_file to the PEM certificate chain and private key, or bind 127.0.0.1",
                proxy.bind
            ),
        )),
        _ => {}
    }
    for (key, path) in [
        ("proxy.tls.cert_file", &tls.cert_file),
        ("proxy.tls.key_file", &tls.key_file),
    ] {
        if let Some(path) = path
            && !path.is_absolute()
        {
            problems.push((
                key,
                format!(
                    "{} is not an absolute path; give the full path of the PEM file",
                    path.display()
                ),
            ));
        }
    }
    problems
}

/// What is wrong with where a provider's key comes from: exactly one of
/// `api_key_env` (preferred), `api_key_file` and `api_key` must be given.
fn key_source_problem(p: &ProviderConfig) -> Option<(&'static str, String)> {
    let given = [
        p.api_key_env.is_some(),
        p.api_key_file.is_some(),
        p.api_key.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => {
            return Some((
                "api_key_env",
                "give exactly one of api_key_env (preferred), api_key_file and api_key".into(),
            ));
        }
        1 => {}
        _ => {
            let key = if p.api_key.is_some() {
                "api_key"
            } else {
                "api_key_file"
            };
            return Some((
                key,
                "give exactly one of api_key_env, api_key_file and api_key, not several".into(),
            ));
        }
    }
    if p.api_key_env.as_deref().is_some_and(str::is_empty) {
        return Some(("api_key_env", "must name an environment variable".into()));
    }
    if let Some(path) = &p.api_key_file
        && !path.is_absolute()
    {
        return Some((
            "api_key_file",
            format!(
                "{} is not an absolute path; give the full path of the file holding the key",
                path.display()
            ),
        ));
    }
    None
}

/// One thing wrong with an otherwise well-formed configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ValidationError {
    /// The offending key, e.g. `providers[1].api_key_env`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Config {
    /// Parses a TOML document on top of the defaults (no env, no flags).
    /// Handy for tests and examples; the daemon uses [`crate::load`].
    pub fn from_toml_str(toml: &str) -> Result<Config, crate::ConfigError> {
        use figment::Figment;
        use figment::providers::{Format, Serialized, Toml};
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(crate::load::from_figment_error)
    }

    /// Checks what serde cannot: cross-field rules, ranges, uniqueness.
    /// Returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errs = Vec::new();
        let mut push = |key: String, message: String| errs.push(ValidationError { key, message });

        if !self.proxy.bind.is_loopback() && !self.proxy.allow_remote {
            push(
                "proxy.bind".into(),
                format!(
                    "{} is not a loopback address; set proxy.allow_remote = true to listen on the network",
                    self.proxy.bind
                ),
            );
        }
        if !self.proxy.require_auth && !self.proxy.bind.is_loopback() {
            push(
                "proxy.require_auth".into(),
                "may only be false when proxy.bind is a loopback address".into(),
            );
        }
        for (key, message) in proxy_tls_problems(&self.proxy) {
            push(key.into(), message);
        }
        if let Some(url) = &self.registry.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            push(
                "registry.url".into(),
                format!("{url:?} must start with http:// or https://"),
            );
        }
        if self.registry.refresh_secs == 0 {
            push("registry.refresh_secs".into(), "must be at least 1".into());
        }
        if self.registry.max_bytes == 0 {
            push("registry.max_bytes".into(), "must be greater than 0".into());
        }
        if self.provider.mode != ProviderMode::Manual && self.registry.url.is_none() {
            push(
                "registry.url".into(),
                "provider.mode auto/both needs the marketplace registry URL; set registry.url or use provider.mode = \"manual\"".into(),
            );
        }
        if self.provider.auto.payment_method == PaymentMethod::ProviderKey {
            push(
                "provider.auto.payment_method".into(),
                "provider_key is for manual providers; use \"mock\" or \"clawtip\"".into(),
            );
        }
        if self.prewarm.refresh_secs == 0 || self.prewarm.max_concurrent_probes == 0 {
            push(
                "prewarm.refresh_secs".into(),
                "refresh_secs and max_concurrent_probes must be at least 1".into(),
            );
        }
        if let Some(proxy) = &self.network.proxy
            && let Err(problem) = proxy_url_problem(proxy.expose())
        {
            push("network.proxy".into(), problem);
        }
        if let Some(entry) = self
            .network
            .no_proxy
            .iter()
            .find(|e| e.trim().is_empty() || e.contains(',') || e.contains(char::is_whitespace))
        {
            push(
                "network.no_proxy".into(),
                format!(
                    "{entry:?} is not a host, domain, IP or CIDR; give one per list entry, e.g. [\"internal.corp\", \"10.0.0.0/8\"]"
                ),
            );
        }
        if self.probe.overcount_threshold > 1_000 {
            push(
                "probe.overcount_threshold".into(),
                format!(
                    "{} % is not a useful tolerance; give a percentage from 0 to 1000 (default 25)",
                    self.probe.overcount_threshold
                ),
            );
        }
        if self.routing.max_attempts == 0 {
            push("routing.max_attempts".into(), "must be at least 1".into());
        }
        if self.breaker.max_failures == 0 {
            push("breaker.max_failures".into(), "must be at least 1".into());
        }
        if self.breaker.cooldown_ms > self.breaker.max_cooldown_ms {
            push(
                "breaker.cooldown_ms".into(),
                "must not exceed breaker.max_cooldown_ms".into(),
            );
        }
        if self.purchase.amount_credit_micros == 0 {
            push(
                "purchase.amount_credit_micros".into(),
                "must be greater than 0".into(),
            );
        }
        if self.ledger.queue_capacity == 0 {
            push(
                "ledger.queue_capacity".into(),
                "must be greater than 0".into(),
            );
        }
        if let Some(url) = &self.ledger.url
            && url.contains("://")
            && !["sqlite://", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p))
        {
            push(
                "ledger.url".into(),
                format!(
                    "unsupported scheme in {}; use postgres://… or sqlite://PATH (or a plain file path)",
                    crate::show::mask_url(url)
                ),
            );
        }
        if self.team.enabled {
            let postgres =
                self.ledger.url.as_deref().is_some_and(|u| {
                    u.starts_with("postgres://") || u.starts_with("postgresql://")
                });
            if !postgres {
                push(
                    "team.enabled".into(),
                    "team mode shares state through PostgreSQL; set ledger.url = \"postgres://…\" (the same database for every daemon of the team)".into(),
                );
            }
            if self.provider.auto.payment_method == PaymentMethod::Clawtip {
                push(
                    "team.enabled".into(),
                    "team mode buys credit with provider.auto.payment_method = \"mock\"; wallet (clawtip) payments are per daemon".into(),
                );
            }
        }
        if self.team.lease_ms < 500 {
            push(
                "team.lease_ms".into(),
                format!(
                    "{} ms is too short for a purchase; give at least 500 (default 90000)",
                    self.team.lease_ms
                ),
            );
        }
        if !self.control.bind.is_loopback() {
            push(
                "control.bind".into(),
                format!(
                    "{} is not a loopback address; the control plane only listens on loopback",
                    self.control.bind
                ),
            );
        }
        if self.proxy.max_connections == 0 {
            push("proxy.max_connections".into(), "must be at least 1".into());
        }
        if self.proxy.worker_threads > MAX_WORKER_THREADS {
            push(
                "proxy.worker_threads".into(),
                format!(
                    "{} is above the limit of {MAX_WORKER_THREADS}; use 0 for one thread per CPU core",
                    self.proxy.worker_threads
                ),
            );
        }
        if self.proxy.header_read_timeout_ms < 100 {
            push(
                "proxy.header_read_timeout_ms".into(),
                format!(
                    "{} is below the floor of 100 ms",
                    self.proxy.header_read_timeout_ms
                ),
            );
        }
        if self.proxy.max_body_bytes == 0 {
            push(
                "proxy.max_body_bytes".into(),
                "must be greater than 0".into(),
            );
        }
        for (key, v) in [
            (
                "routing.request_deadline_ms",
                self.routing.request_deadline_ms,
            ),
            (
                "routing.stream_head_deadline_ms",
                self.routing.stream_head_deadline_ms,
            ),
            (
                "routing.stream_idle_timeout_ms",
                self.routing.stream_idle_timeout_ms,
            ),
        ] {
            if v < 1_000 {
                push(key.into(), format!("{v} is below the floor of 1000 ms"));
            }
        }

        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = |field: &str| format!("providers[{i}].{field}");
            if p.id.is_empty()
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                push(
                    at("id"),
                    format!(
                        "{:?} must be non-empty and use only letters, digits, '-', '_' or '.'",
                        p.id
                    ),
                );
            } else if !seen.insert(p.id.as_str()) {
                push(
                    at("id"),
                    format!("{:?} is used by more than one provider", p.id),
                );
            }
            if let Some((key, message)) = key_source_problem(p) {
                push(at(key), message);
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                push(
                    at("base_url"),
                    format!("{:?} must start with http:// or https://", p.base_url),
                );
            } else if p.base_url.contains(['?', '#']) {
                push(
                    at("base_url"),
                    "must not contain a query string or fragment".into(),
                );
            } else if authority(&p.base_url).contains('@') {
                // Credentials in a URL end up in logs and error messages.
                push(
                    at("base_url"),
                    "must not contain credentials (user:password@); put the key in api_key_env"
                        .into(),
                );
            }
            if p.models.is_empty() {
                push(at("models"), "must list at least one model id".into());
            }
            if p.models.iter().any(|m| m.is_empty()) {
                push(at("models"), "model ids must be non-empty".into());
            }
            if matches!(&p.protocols, Some(list) if list.is_empty()) {
                push(
                    at("protocols"),
                    "must list at least one protocol, or be left out".into(),
                );
            }
            for (model, price) in &p.prices {
                let all = [
                    Some(price.input),
                    Some(price.output),
                    price.cache_read,
                    price.cache_write,
                ];
                if all
                    .iter()
                    .flatten()
                    .any(|v| !v.is_finite() || *v < 0.0 || *v > 1_000_000.0)
                {
                    push(
                        at(&format!("prices.{model:?}")),
                        "prices are USD per 1M tokens and must be between 0 and 1000000".into(),
                    );
                }
            }
            for (model, usd) in &p.video_prices {
                if !usd.is_finite() || *usd < 0.0 || *usd > 1_000.0 {
                    push(
                        at(&format!("video_prices.{model:?}")),
                        format!("{usd} is not a price in USD per second between 0 and 1000"),
                    );
                }
            }
            if !(0.0..=1.0).contains(&p.discount) {
                push(
                    at("discount"),
                    format!("{} is not a fraction between 0 and 1", p.discount),
                );
            }
            for name in p.headers.keys() {
                let lower = name.to_ascii_lowercase();
                if ["authorization", "x-api-key", "host", "content-length"]
                    .contains(&lower.as_str())
                {
                    push(
                        at("headers"),
                        format!("{name:?} is set by tokenbuddy itself and cannot be overridden"),
                    );
                }
            }
        }
        self.export.problems(&mut push);
        for (alias, target) in &self.models.aliases {
            if alias.is_empty() || target.is_empty() {
                push(
                    "models.aliases".into(),
                    "alias names and targets must be non-empty".into(),
                );
            }
        }

        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// The `host[:port]` part of an http(s) URL (with any userinfo).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_proxy_urls_are_checked_without_echoing_credentials() {
        let p = |proxy: &str| problems(&format!("[network]\nproxy = \"{proxy}\"\n"));
        assert!(p("http://u:pw@proxy.corp:3128").is_empty());
        assert!(p("http://proxy.corp:3128").is_empty());
        for (bad, says) in [
            (
                "socks5://u:pw@proxy:1080",
                "scheme socks5:// is not supported",
            ),
            ("https://u:pw@proxy:443", "only http:// proxies"),
            ("proxy.corp:3128", "the scheme is missing"),
            ("http://u:pw@:3128", "the host is missing"),
            ("http://", "the host is missing"),
            ("http://u:pw@pro xy:1", "the host has spaces"),
        ] {
            let errs = p(bad);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("network.proxy"), "{bad}: {errs:?}");
            assert!(errs[0].contains(says), "{bad}: {errs:?}");
            assert!(!errs[0].contains("pw"), "{bad}: {errs:?}");
        }
        let shown = format!(
            "{:?}",
            Config::from_toml_str("[network]\nproxy = \"http://u:pw@h:1\"").unwrap()
        );
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn export_sections_are_off_by_default_and_validated() {
        let c = Config::default();
        assert!(c.export.http.url.is_none() && c.export.otlp.endpoint.is_none());
        assert_eq!(c.export.otlp.protocol, OtlpProtocol::HttpProtobuf);
        let ok = "[export.http]\nurl = \"https://collect.example/calls\"\nheaders = { authorization = \"Bearer s3cret\" }\nbatch_size = 5\nqueue_capacity = 10\n[export.otlp]\nendpoint = \"http://127.0.0.1:4318\"\nprotocol = \"http/protobuf\"\n";
        assert!(problems(ok).is_empty(), "{:?}", problems(ok));
        for (toml, key, says) in [
            (
                "[export.otlp]\nendpoint = \"http://c:4317\"\nprotocol = \"grpc\"",
                "export.otlp.protocol",
                "use \"http/protobuf\"",
            ),
            (
                "[export.http]\nurl = \"ftp://x\"",
                "export.http.url",
                "must start with http://",
            ),
            (
                "[export.http]\nurl = \"https://u:s3cret@x/\"",
                "export.http.url",
                "credentials",
            ),
            (
                "[export.http]\nbatch_size = 0",
                "export.http.batch_size",
                "between 1 and 10000",
            ),
            (
                "[export.http]\nqueue_capacity = 0",
                "export.http.queue_capacity",
                "at least 1",
            ),
            (
                "[export.http]\nheaders = { \"bad name\" = \"v\" }",
                "export.http.headers",
                "not a valid header name",
            ),
            (
                "[export.http]\nheaders = { content-type = \"v\" }",
                "export.http.headers",
                "cannot be overridden",
            ),
            (
                "[export.http]\nheaders = { x-k = \"s3cret\\nx\" }",
                "export.http.headers",
                "control character",
            ),
            (
                "[export.otlp]\nendpoint = \"localhost:4318\"",
                "export.otlp.endpoint",
                "must start with http://",
            ),
            (
                "[proxy]\nbind = \"0.0.0.0\"\nallow_remote = true",
                "proxy.tls",
                "needs TLS",
            ),
            (
                "[proxy.tls]\ncert_file = \"/etc/gw.pem\"",
                "proxy.tls.key_file",
                "without its key",
            ),
            (
                "[proxy.tls]\nkey_file = \"/etc/gw-key.pem\"",
                "proxy.tls.cert_file",
                "without its certificate",
            ),
            (
                "[proxy.tls]\ncert_file = \"gw.pem\"\nkey_file = \"/etc/gw-key.pem\"",
                "proxy.tls.cert_file",
                "not an absolute path",
            ),
        ] {
            let errs = problems(toml);
            assert_eq!(errs.len(), 1, "{toml}: {errs:?}");
            assert!(errs[0].starts_with(key), "{toml}: {errs:?}");
            assert!(errs[0].contains(says), "{toml}: {errs:?}");
            assert!(!errs[0].contains("s3cret"), "{toml}: {errs:?}");
        }
        assert!(Config::from_toml_str("[export.otlp]\nprotocol = \"http/json\"").is_err());
        let shown = format!("{:?}", Config::from_toml_str(ok).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn network_no_proxy_entries_are_one_host_each() {
        let p = |list: &str| problems(&format!("[network]\nno_proxy = {list}\n"));
        assert!(p(r#"["internal.corp", ".corp", "10.0.0.0/8", "*"]"#).is_empty());
        for bad in [r#"["a.corp,b.corp"]"#, r#"[""]"#, r#"["a corp"]"#] {
            let errs = p(bad);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("network.no_proxy"), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn mode_and_range_names_are_the_config_names() {
        for m in [ProviderMode::Manual, ProviderMode::Auto, ProviderMode::Both] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for r in [AutoRange::Recommended, AutoRange::Custom] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    fn provider(extra: &str) -> String {
        format!(
            "[[providers]]\nid = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"m\"]\n{extra}\n"
        )
    }

    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml).unwrap().validate() {
            Ok(()) => vec![],
            Err(errs) => errs.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::default();
        assert_eq!(c.registry.max_bytes, 1024 * 1024);
        assert_eq!(c.provider.mode, ProviderMode::Manual);
        assert_eq!(c.provider.auto.payment_method, PaymentMethod::Mock);
        assert_eq!(c.purchase.session_budget_usd_micros, 5_000_000);
        assert_eq!(c.purchase.rebuy_min_balance_micros, 10_000);
        assert_eq!(c.proxy.port, 7878);
        assert_eq!(c.proxy.bind.to_string(), "127.0.0.1");
        assert!(c.proxy.require_auth);
        assert_eq!(c.proxy.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.proxy.worker_threads, 0);
        assert_eq!(c.routing.stream_head_deadline_ms, 30_000);
        assert_eq!(c.log.format, LogFormat::Pretty);
        c.validate().unwrap();
    }

    #[test]
    fn the_issue_example_parses() {
        let c = Config::from_toml_str(
            r#"
[proxy]
port = 7878
[[providers]]
id = "openrouter"
kind = "openai"
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_API_KEY"
models = ["deepseek-chat", "claude-sonnet-4-5"]
protocols = ["chat_completions", "responses", "messages", "images_generations"]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.providers[0].effective_protocols(),
            Protocol::ALL[..4].to_vec(),
            "the listed four, in order"
        );
    }

    #[test]
    fn each_rule_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("[proxy]\nbind = \"0.0.0.0\"", "proxy.bind:"),
            (
                "[routing]\nrequest_deadline_ms = 5",
                "routing.request_deadline_ms:",
            ),
            (
                "[ledger]\nurl = \"mysql://u:pw@h/db\"",
                "ledger.url: unsupported scheme in mysql://u:********@h/db",
            ),
            ("[ledger]\nqueue_capacity = 0", "ledger.queue_capacity:"),
            (
                "[proxy]\nworker_threads = 257",
                "proxy.worker_threads: 257 is above the limit of 256; use 0 for one thread per CPU core",
            ),
            (
                "[provider]\nmode = \"auto\"",
                "registry.url: provider.mode auto/both needs",
            ),
            ("[registry]\nurl = \"ftp://r\"", "registry.url:"),
            (
                "[provider.auto]\npayment_method = \"provider_key\"",
                "provider.auto.payment_method:",
            ),
            (
                "[purchase]\namount_credit_micros = 0",
                "purchase.amount_credit_micros:",
            ),
            (
                &provider("api_key = \"a\"\nprices = { m = { input = -1.0, output = 2.0 } }"),
                "providers[0].prices.\"m\":",
            ),
            (&provider(""), "providers[0].api_key_env: give exactly one"),
            (
                &provider("api_key = \"a\"\napi_key_env = \"B\""),
                "providers[0].api_key: give exactly one",
            ),
            (
                &provider("api_key_env = \"A\"\napi_key_file = \"/k\""),
                "providers[0].api_key_file: give exactly one",
            ),
            (
                &provider("api_key_file = \"keys/openai.key\""),
                "providers[0].api_key_file: keys/openai.key is not an absolute path",
            ),
            (
                &provider("api_key = \"a\"\ndiscount = 1.5"),
                "providers[0].discount:",
            ),
            (
                &provider("api_key = \"a\"\nprotocols = []"),
                "providers[0].protocols:",
            ),
            (
                &provider("api_key = \"a\"\nheaders = { Authorization = \"x\" }"),
                "providers[0].headers:",
            ),
            (
                &format!(
                    "{}{}",
                    provider("api_key = \"a\""),
                    provider("api_key = \"b\"")
                ),
                "providers[1].id:",
            ),
        ];
        for (toml, want) in cases {
            let got = problems(toml);
            assert!(
                got.iter().any(|p| p.starts_with(want)),
                "{toml}\n=> {got:?}, want {want}"
            );
        }
        assert!(problems(&provider("api_key = \"a\"")).is_empty());
        assert!(problems(&provider("api_key_file = \"/etc/tb/openai.key\"")).is_empty());
    }

    #[test]
    fn bad_base_url_and_id() {
        let toml = "[[providers]]\nid = \"a b\"\nkind = \"anthropic\"\nbase_url = \"ftp://x\"\napi_key = \"k\"\nmodels = []\n";
        let got = problems(toml);
        assert_eq!(got.len(), 3, "{got:?}");
        let toml = "[[providers]]\nid = \"a\"\nkind = \"openai\"\nbase_url = \"https://u:sk-1@host/v1\"\napi_key = \"k\"\nmodels = [\"m\"]\n";
        let got = problems(toml);
        assert!(got.len() == 1 && got[0].contains("credentials"), "{got:?}");
        let toml = toml.replace("u:sk-1@host/v1", "host/v1/a@b");
        assert!(problems(&toml).is_empty());
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::from_toml_str(&provider("api_key = \"sk-very-secret\"")).unwrap();
        assert!(!format!("{c:?}").contains("sk-very-secret"));
        assert!(
            !serde_json::to_string(&c)
                .unwrap()
                .contains("sk-very-secret")
        );
        assert_eq!(
            c.providers[0].api_key.as_ref().unwrap().expose(),
            "sk-very-secret"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_toml_str("[proxy]\nprot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = Config::from_toml_str(&provider("api_kye = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_kye"), "{err}");
        let err = Config::from_toml_str("[nonsense]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
    }
}
