//! `serve`: config → tracing → token → proxy → listener → signal → drain.

use std::fs;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, anyhow};
use tb_config::ProviderMode;
use tb_config::{Config, LoadedConfig, LogFormat};
use tb_proxy::{AccessToken, CallSink, EventLoops, Market, Proxy, ShutdownOutcome};
use tb_registry::{Registry, RegistryFetcher};
use tb_seller::{
    CreditBroker, PurchasePolicy, SellerClient, TokenCipher, TokenStore, system_clock,
};
use tb_store::{LedgerSender, LedgerWriter, PurchaseEvent, PurchaseLog};

/// How long shutdown waits for queued call records to be committed.
const LEDGER_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long shutdown gives the export sinks.
const EXPORT_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
use tracing_subscriber::EnvFilter;

use crate::Failure;

pub(crate) fn run(loaded: LoadedConfig) -> Result<(), Failure> {
    init_tracing(&loaded.config).map_err(Failure::Config)?;
    // A single-threaded runtime; the proxy plane adds event loops on
    // threads of their own (`proxy.worker_threads`, decisions.md,
    // "Event loops, not work stealing").
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Runtime)?;
    runtime.block_on(serve(loaded))
}

/// `proxy.worker_threads`: 0 is one loop per CPU core.
fn event_loops(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log.level).map_err(|e| {
        anyhow!(
            "log.level {:?} is not a valid filter: {e}",
            config.log.level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.log.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow!("initialising logs: {e}"))
}

async fn serve(loaded: LoadedConfig) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let mut effective = loaded.config.clone();
    let config = &mut effective;
    let data_dir = &loaded.paths.data_dir;
    warn_on_readable_inline_keys(&loaded);

    let (token, token_path) = AccessToken::load_or_create(data_dir)
        .context("preparing the access token")
        .map_err(Failure::Runtime)?;
    let (ledger, target) = crate::ledger::open(config.ledger.url.as_deref(), data_dir)
        .await
        .map_err(Failure::Runtime)?;
    tracing::info!(target: "ledger.opened", ledger = %target, "ledger ready");
    spawn_retention(ledger.clone(), config.ledger.retention_days);
    apply_saved_provider_mode(config, &ledger).await;
    let config = &*config;
    let (sender, writer) = LedgerWriter::spawn(ledger.clone(), config.ledger.queue_capacity);
    let env = |var: &str| std::env::var(var).ok();
    let export = start_export(config, &env)?;
    let sink: Arc<dyn CallSink> = Arc::new(crate::ledger::LedgerSink {
        ledger: sender,
        export: export.clone(),
    });

    // Purchases and wasted credit take the same road as call records: a
    // writer of their own, off the request path, drained at shutdown.
    let (purchases, purchase_writer) =
        LedgerWriter::spawn(PurchaseLog(ledger.clone()), config.ledger.queue_capacity);
    let market = start_market(config, &env, &ledger, data_dir, purchases).await?;
    let refresher = market.as_ref().map(|m| {
        Arc::clone(&m.registry).spawn_refresh(
            std::time::Duration::from_secs(config.registry.refresh_secs),
            std::future::pending::<()>(),
        )
    });
    let sweeper = market
        .as_ref()
        .map(|m| spawn_credit_sweep(m, config.registry.refresh_secs));
    let broker = market.as_ref().map(|m| m.broker.clone());

    let proxy = Proxy::new(
        config,
        token.clone(),
        token_path.clone(),
        &env,
        Some(sink),
        market,
    )
    .map_err(|e| Failure::Config(e.into()))?;
    proxy.serve_members(crate::keys::start_directory(ledger.clone()).await);
    proxy.set_video_jobs(Arc::new(crate::ledger::LedgerVideoJobs(ledger.clone())));
    crate::gateway::watch_readiness(&proxy, &ledger);
    let scheme = crate::gateway::configure(config, &proxy)?;
    let proxy = Arc::new(proxy);
    match crate::ledger::load_trust(&ledger, proxy.routing().router()).await {
        Ok(pairs) => {
            tracing::info!(target: "probe.loaded", pairs, "probe results loaded for routing")
        }
        Err(e) => {
            tracing::warn!(target: "probe.load_failed", error = %e, "probe results not read: routing trusts every upstream until `tokenbuddyd probe` runs again")
        }
    }
    let prewarm = if market_mode(config) {
        let top = ledger
            .models_used_since(
                unix_ms() - 7 * 86_400_000,
                tb_prewarm::LEDGER_FOCUS_MODELS as u32,
            )
            .await
            .unwrap_or_default();
        let env_models = std::env::var(tb_prewarm::WARMUP_MODELS_ENV).ok();
        let focus =
            tb_prewarm::resolve_focus(&config.routing.focus_models, env_models.as_deref(), &top);
        tracing::info!(target: "prewarm.focus", models = ?focus, "focus set");
        proxy.start_prewarm(&config.prewarm, focus)
    } else {
        None
    };

    let addr = SocketAddr::new(config.proxy.bind, config.proxy.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (proxy.bind/proxy.port): is another daemon running? pick another port with --port or proxy.port"))
        .map_err(Failure::Runtime)?;
    let local = listener
        .local_addr()
        .context("reading the bound address")
        .map_err(Failure::Runtime)?;
    let proxy_url = format!("{scheme}://{local}");

    let control_addr = SocketAddr::new(config.control.bind, config.control.port);
    let control_listener = tokio::net::TcpListener::bind(control_addr)
        .await
        .with_context(|| format!("cannot listen on {control_addr} (control.bind/control.port): is another daemon running? pick another port with --control-port or control.port"))
        .map_err(Failure::Runtime)?;
    let control_local = control_listener
        .local_addr()
        .context("reading the bound address")
        .map_err(Failure::Runtime)?;
    let control_url = format!("http://{control_local}");

    let loops = EventLoops::start(event_loops(config.proxy.worker_threads))
        .context("starting the proxy's event loops (proxy.worker_threads)")
        .map_err(Failure::Runtime)?;
    let mut signals = Signals::register().map_err(Failure::Runtime)?;
    // The first signal stops both planes (the proxy after its drain
    // delay); a second one cuts the drain delay short.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let draining = Arc::clone(&proxy);
    tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(target: "daemon.signal", signal = first, "shutting down");
        let _ = stop_tx.send(true);
        let second = signals.next().await;
        tracing::info!(target: "daemon.signal", signal = second, "second signal: skipping the rest of the drain delay");
        draining.end_drain_delay();
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    // daemon.json first: whoever reads the printed URL may look for it at once.
    let daemon_json = data_dir.join("daemon.json");
    write_daemon_json(&daemon_json, &proxy_url, &control_url).map_err(Failure::Runtime)?;
    println!("control: {control_url}");
    println!("proxy: {proxy_url}");
    println!("access token: {}", token_path.display());
    if config.providers.is_empty() {
        tracing::warn!(target: "config.no_providers", config = %loaded.paths.config_file.display(), "no [[providers]] configured: every model request will get 404 model_not_found; add one (see `tokenbuddyd config init`)");
    }
    tracing::info!(
        target: "daemon.started",
        proxy = %proxy_url,
        upstreams = proxy.routing().table().upstreams().len(),
        event_loops = loops.len(),
        "tokenbuddyd is serving"
    );

    let api = Arc::new(crate::control::DaemonApi {
        proxy: Arc::clone(&proxy),
        ledger: ledger.clone(),
        config: config.clone(),
        token,
        started,
        proxy_url: proxy_url.clone(),
        control_url: control_url.clone(),
        data_dir: data_dir.clone(),
        config_file: if loaded.file_found {
            loaded.paths.config_file.display().to_string()
        } else {
            "defaults".into()
        },
        gauges: crate::metrics::DaemonGauges::default(),
        export: export.clone(),
        team_store: config.team.enabled.then(|| ledger.team_store()).flatten(),
    });
    let control = tokio::spawn(tb_control::serve(
        control_listener,
        api,
        stopped(stop_rx.clone()),
    ));
    let outcome = proxy.serve(listener, &loops, stopped(stop_rx)).await;
    let _ = control.await;
    if let Some(r) = refresher {
        r.abort();
    }
    if let Some(s) = sweeper {
        s.abort();
    }
    if let Some(p) = prewarm {
        p.stop().await;
    }
    if let Some(b) = broker {
        b.flush().await;
    }
    // Every response has ended, so every record is queued: drain them all.
    let purchase_report = purchase_writer.shutdown(LEDGER_DRAIN_LIMIT).await;
    let report = writer.shutdown(LEDGER_DRAIN_LIMIT).await;
    ledger.close().await;
    drain_export(export).await;
    let _ = fs::remove_file(&daemon_json);
    if !report.is_complete() {
        return Err(Failure::Runtime(anyhow!(
            "{} call records could not be written to the ledger before exit",
            report.unwritten
        )));
    }
    if !purchase_report.is_complete() {
        return Err(Failure::Runtime(anyhow!(
            "{} purchase records could not be written to the ledger before exit",
            purchase_report.unwritten
        )));
    }
    match outcome {
        ShutdownOutcome::Drained => {
            tracing::info!(target: "daemon.stopped", "all in-flight requests finished")
        }
        ShutdownOutcome::GraceExpired => {
            tracing::warn!(target: "daemon.stopped", "grace period expired; remaining requests were cut")
        }
    }
    Ok(())
}

/// Starts the `[export]` sinks (none configured: `None`), over the one
/// outbound client so `[network]` proxies and `tls.extra_ca_file` apply.
fn start_export(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Arc<tb_export::Exporters>>, Failure> {
    if config.export.http.url.is_none() && config.export.otlp.endpoint.is_none() {
        return Ok(None);
    }
    let client = tb_proxy::outbound_client(config, env).map_err(|e| Failure::Config(e.into()))?;
    let exporters = tb_export::Exporters::start(&config.export, &client)
        .map_err(|e| Failure::Config(e.into()))?;
    Ok(exporters.map(Arc::new))
}

/// Gives the export sinks a few seconds to deliver what waits; what is
/// left is logged (the ledger has every record).
async fn drain_export(export: Option<Arc<tb_export::Exporters>>) {
    let Some(export) = export else { return };
    let left = export.shutdown(EXPORT_DRAIN_LIMIT).await;
    if left > 0 {
        tracing::warn!(target: "export.unsent", records = left, "call records not exported before exit (they are in the ledger)");
    }
}

/// Starts the marketplace side when `provider.mode` is auto or both: the
/// registry (last good document first, then a fetch) and the credit broker
/// (tokens restored from the ledger, encrypted with `<data_dir>/token-key`;
/// the credit tracker rebuilt from the ledger's purchases and calls;
/// purchases journaled to `purchases`).
async fn start_market(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    ledger: &tb_store::Ledger,
    data_dir: &Path,
    purchases: LedgerSender<PurchaseEvent>,
) -> Result<Option<Market>, Failure> {
    let team = crate::team::join(config, ledger, env)
        .await
        .map_err(Failure::Config)?;
    if config.provider.mode == ProviderMode::Manual {
        return Ok(None);
    }
    let url =
        config.registry.url.clone().ok_or_else(|| {
            Failure::Config(anyhow!("provider.mode auto/both needs registry.url"))
        })?;
    let client = tb_proxy::outbound_client(config, env).map_err(|e| Failure::Config(e.into()))?;
    let fetcher = RegistryFetcher::new(url, config.registry.max_bytes, client.clone());
    let store = crate::ledger::LedgerSnapshotStore(ledger.clone());
    let (registry, outcome) = Registry::start(fetcher, store, unix_ms()).await;
    match outcome.error() {
        None => {
            tracing::info!(target: "registry.loaded", sellers = registry.current().doc.sellers.len(), "registry loaded")
        }
        Some(e) => {
            tracing::warn!(target: "registry.unavailable", error = %e, has_document = outcome.has_document(), "registry not fetched at start")
        }
    }
    // Team mode: the team's shared tokens, encrypted with the team key;
    // else this machine's tokens with its own key file.
    let (cipher, store): (TokenCipher, Arc<dyn TokenStore>) = match &team {
        Some((cipher, store, _)) => (cipher.clone(), Arc::new(store.clone())),
        None => (
            TokenCipher::load_or_create(data_dir)
                .context("preparing the seller token key")
                .map_err(Failure::Runtime)?,
            Arc::new(ledger.clone()),
        ),
    };
    let policy = PurchasePolicy {
        amount_credit_micros: config.purchase.amount_credit_micros,
        session_budget_usd_micros: config.purchase.session_budget_usd_micros,
        rebuy_min_balance_micros: config.purchase.rebuy_min_balance_micros,
        token_expiry_margin_ms: config.purchase.token_expiry_margin_ms,
        fresh_window_ms: config.purchase.fresh_window_ms,
    };
    let broker = CreditBroker::new(
        SellerClient::new(client, std::time::Duration::from_secs(30)),
        store,
        cipher,
        policy,
        system_clock(),
    );
    // The history is read before anything new is journaled, so nothing
    // counts twice.
    let history = ledger.credit_history().await;
    broker.set_journal(Arc::new(purchases));
    match broker.load().await {
        Ok(n) => {
            tracing::info!(target: "purchase.tokens_restored", tokens = n, "seller tokens restored")
        }
        Err(e) => {
            tracing::warn!(target: "purchase.tokens_restore_failed", error = %e, "seller tokens not restored; they will be bought again")
        }
    }
    match history {
        Ok(history) => broker.restore(&history),
        Err(e) => {
            tracing::warn!(target: "purchase.history_unreadable", error = %e, "the credit tracker starts from zero: the ledger's purchases could not be read")
        }
    }
    if let Some((_, _, team)) = team {
        broker.set_team(team);
    }
    sweep_credit(&broker, &registry);
    resume_wallet_purchases(&broker, ledger, &registry).await;
    Ok(Some(Market {
        registry,
        broker,
        payment: config.provider.auto.payment_method,
    }))
}

/// Polls again the wallet (clawtip) purchases a previous run left pending,
/// with the sellers' URLs from the registry's current document.
async fn resume_wallet_purchases(
    broker: &CreditBroker,
    ledger: &tb_store::Ledger,
    registry: &Registry,
) {
    let rows = match ledger.pending_purchases(1_000).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(target: "purchase.history_unreadable", error = %e, "pending wallet purchases not resumed: the ledger could not be read");
            return;
        }
    };
    if rows.is_empty() {
        return;
    }
    let snapshot = registry.current();
    let url_of = |id: &str| {
        snapshot
            .doc
            .sellers
            .iter()
            .find(|s| s.id.as_str() == id)
            .map(|s| s.url.clone())
    };
    let resumed = broker.resume_wallet_purchases(rows, &url_of);
    tracing::info!(target: "purchase.resumed", payments = resumed, "pending wallet payments polled again");
}

/// Applies the expiry and delisting waste rules to the held seller tokens
/// (delisting only when the registry has a document to judge by).
fn sweep_credit(broker: &CreditBroker, registry: &Registry) {
    let snapshot = registry.current();
    let ids: std::collections::HashSet<&str> =
        snapshot.doc.sellers.iter().map(|s| s.id.as_str()).collect();
    let listed = |id: &str| ids.contains(id);
    let judge: Option<&dyn Fn(&str) -> bool> = (snapshot.generation > 0).then_some(&listed);
    broker.sweep(judge);
}

/// Sweeps the held seller tokens for wasted credit when the registry
/// changes and every `refresh_secs` (tokens expire between changes).
fn spawn_credit_sweep(market: &Market, refresh_secs: u64) -> tokio::task::JoinHandle<()> {
    let broker = market.broker.clone();
    let registry = Arc::clone(&market.registry);
    let mut changes = registry.subscribe();
    let period = std::time::Duration::from_secs(refresh_secs.max(1));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            sweep_credit(&broker, &registry);
        }
    })
}

/// A provider mode saved through the control plane (`PUT
/// /v1/provider-mode`) overrides the file's.
async fn apply_saved_provider_mode(config: &mut Config, ledger: &tb_store::Ledger) {
    let Ok(Some(saved)) = ledger.config_get(crate::control::PROVIDER_MODE_KEY).await else {
        return;
    };
    let Ok(doc) = serde_json::from_str::<tb_control::api::ProviderMode>(&saved) else {
        tracing::warn!(target: "config.provider_mode_unreadable", "the provider mode saved through the control plane is not readable; using the config file's");
        return;
    };
    let (mode, auto) = crate::control::provider_mode_from_wire(doc);
    let mut candidate = config.clone();
    candidate.provider.mode = mode;
    candidate.provider.auto = auto;
    if candidate.validate().is_ok() {
        tracing::info!(target: "config.provider_mode_restored", "provider mode from the control plane applied");
        *config = candidate;
    }
}

fn market_mode(config: &Config) -> bool {
    config.provider.mode != ProviderMode::Manual
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Deletes call records older than `ledger.retention_days`, once at start
/// and then daily, in the background (never on the request path).
fn spawn_retention(ledger: tb_store::Ledger, days: u32) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let keep_ms = i64::from(days) * 86_400_000;
        let mut every = tokio::time::interval(std::time::Duration::from_secs(86_400));
        loop {
            every.tick().await;
            let now_ms = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            match ledger.delete_calls_before(now_ms - keep_ms).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "ledger.retention", deleted = n, days, "old call records deleted")
                }
                Err(e) => {
                    tracing::warn!(target: "ledger.retention_failed", error = %e, "could not delete old call records")
                }
            }
        }
    });
}

/// `daemon.json` lets `status`, tests and tools find the running daemon.
/// Written to a temporary file and renamed, so readers never see half of it.
fn write_daemon_json(path: &Path, proxy_url: &str, control_url: &str) -> anyhow::Result<()> {
    let body = crate::doctor::DaemonFile {
        pid: std::process::id(),
        proxy_url: proxy_url.to_string(),
        control_url: control_url.to_string(),
        started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    };
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(&body).context("encoding daemon.json")?;
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn warn_on_readable_inline_keys(loaded: &LoadedConfig) {
    if !loaded.file_found || loaded.config.providers.iter().all(|p| p.api_key.is_none()) {
        return;
    }
    let path: &PathBuf = &loaded.paths.config_file;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        {
            tracing::warn!(target: "config.world_readable_key", file = %path.display(), "the config file holds an inline api_key and is readable by every user; chmod 600 it or use api_key_env");
        }
    }
}

/// The SIGTERM and SIGINT handlers, registered by [`Signals::register`]
/// before the URL is printed, so a signal sent as soon as the daemon is up
/// is never fatal.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
