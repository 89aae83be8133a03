//! The live registry: an immutable snapshot behind a pointer swap,
//! refreshed in the background, with stale fallback and persistence.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::doc::{RegistryDoc, parse_registry};
use crate::fetch::{FetchError, Fetched, RegistryFetcher};

/// How many validation warnings are logged one by one per document (the
/// rest are counted).
const LOGGED_WARNINGS: usize = 20;

/// One immutable view of the registry. Requests read it through
/// [`Registry::current`]; nothing in it ever changes.
#[derive(Debug, Clone, Default)]
pub struct RegistrySnapshot {
    /// The document (empty when none was ever loaded: `generation == 0`).
    pub doc: Arc<RegistryDoc>,
    /// When the document was fetched (Unix ms; 0 when none).
    pub fetched_at_ms: i64,
    /// `true` unless the document came from a fetch that succeeded in this
    /// run and no fetch has failed since: the last refresh failed, or the
    /// document was loaded from the persisted copy and not yet confirmed.
    pub stale: bool,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    /// Bumped each time a different document is installed; 0 means no
    /// document yet. Rebuild the routing table when it changes.
    pub generation: u64,
    /// The document's validation warnings.
    pub warnings: Arc<[String]>,
}

impl RegistrySnapshot {
    /// Whether a document was ever loaded (fetched or persisted).
    pub fn has_document(&self) -> bool {
        self.generation > 0
    }

    /// How old the document is at `now_ms` (for the control plane).
    pub fn age_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.fetched_at_ms).max(0)
    }
}

/// A persisted registry document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The document as fetched.
    pub raw: Vec<u8>,
    /// When it was fetched (Unix ms).
    pub fetched_at_ms: i64,
}

/// Where the last good document is kept across restarts (the daemon
/// implements it on the ledger's config store). Implementations deal with
/// their own failures (log them): a registry that cannot be persisted
/// still routes.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The persisted document, if any.
    fn load(&self) -> impl Future<Output = Option<StoredSnapshot>> + Send;
    /// Persists `raw` (a document that parsed, so valid UTF-8 JSON),
    /// replacing any earlier one.
    fn save(&self, raw: &[u8], fetched_at_ms: i64) -> impl Future<Output = ()> + Send;
}

impl<S: SnapshotStore> SnapshotStore for Arc<S> {
    fn load(&self) -> impl Future<Output = Option<StoredSnapshot>> + Send {
        (**self).load()
    }
    fn save(&self, raw: &[u8], fetched_at_ms: i64) -> impl Future<Output = ()> + Send {
        (**self).save(raw, fetched_at_ms)
    }
}

/// A [`SnapshotStore`] in memory (tests; runs without a ledger).
#[derive(Debug, Default)]
pub struct MemoryStore {
    saved: Mutex<Option<StoredSnapshot>>,
}

impl MemoryStore {
    /// A store holding `snapshot`.
    pub fn with(snapshot: StoredSnapshot) -> MemoryStore {
        MemoryStore {
            saved: Mutex::new(Some(snapshot)),
        }
    }

    /// What is stored now.
    pub fn get(&self) -> Option<StoredSnapshot> {
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl SnapshotStore for MemoryStore {
    async fn load(&self) -> Option<StoredSnapshot> {
        self.get()
    }
    async fn save(&self, raw: &[u8], fetched_at_ms: i64) {
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(StoredSnapshot {
            raw: raw.to_vec(),
            fetched_at_ms,
        });
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe face of [`SnapshotStore`], so [`Registry`] is not generic.
trait DynStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Option<StoredSnapshot>>;
    fn save<'a>(&'a self, raw: &'a [u8], fetched_at_ms: i64) -> BoxFuture<'a, ()>;
}

impl<S: SnapshotStore> DynStore for S {
    fn load(&self) -> BoxFuture<'_, Option<StoredSnapshot>> {
        Box::pin(SnapshotStore::load(self))
    }
    fn save<'a>(&'a self, raw: &'a [u8], fetched_at_ms: i64) -> BoxFuture<'a, ()> {
        Box::pin(SnapshotStore::save(self, raw, fetched_at_ms))
    }
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A document was fetched and is now current (not stale).
    Fresh {
        /// The current generation.
        generation: u64,
        /// Whether the document differs from the previous one (if not, the
        /// generation is unchanged and nothing needs rebuilding).
        changed: bool,
        /// Sellers in the document.
        sellers: usize,
        /// Validation warnings.
        warnings: usize,
    },
    /// The fetch failed; the last good document stays current, marked
    /// stale.
    Stale {
        /// Why the fetch failed.
        error: FetchError,
        /// The cached document's version.
        version: String,
        /// Sellers in the cached document.
        sellers: usize,
    },
    /// The fetch failed and there is no document at all.
    Failed {
        /// Why the fetch failed.
        error: FetchError,
    },
}

impl RefreshOutcome {
    /// The fetch error, unless the fetch succeeded.
    pub fn error(&self) -> Option<&FetchError> {
        match self {
            RefreshOutcome::Fresh { .. } => None,
            RefreshOutcome::Stale { error, .. } | RefreshOutcome::Failed { error } => Some(error),
        }
    }

    /// Whether there is a document to route with after this refresh.
    pub fn has_document(&self) -> bool {
        !matches!(self, RefreshOutcome::Failed { .. })
    }
}

/// The live registry: the current snapshot (read lock-free by requests),
/// the fetcher, the persisted copy, and a generation channel.
pub struct Registry {
    fetcher: RegistryFetcher,
    store: Box<dyn DynStore>,
    current: ArcSwap<RegistrySnapshot>,
    generation: watch::Sender<u64>,
    /// Serialises refreshes so generations never race.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("fetcher", &self.fetcher)
            .field("current", &self.current.load())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry with the persisted document, if `store` has a usable
    /// one (stale until a fetch succeeds), and no fetch yet.
    pub async fn load(fetcher: RegistryFetcher, store: impl SnapshotStore) -> Arc<Registry> {
        let registry = Registry {
            fetcher,
            store: Box::new(store),
            current: ArcSwap::from_pointee(RegistrySnapshot {
                stale: true,
                ..RegistrySnapshot::default()
            }),
            generation: watch::Sender::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        };
        registry.load_persisted().await;
        Arc::new(registry)
    }

    /// [`load`](Registry::load), then one [`refresh`](Registry::refresh):
    /// a restart with the registry down still routes with the persisted
    /// document. The outcome says whether there is a document at all.
    pub async fn start(
        fetcher: RegistryFetcher,
        store: impl SnapshotStore,
        now_ms: i64,
    ) -> (Arc<Registry>, RefreshOutcome) {
        let registry = Registry::load(fetcher, store).await;
        let outcome = registry.refresh(now_ms).await;
        (registry, outcome)
    }

    async fn load_persisted(&self) {
        let Some(stored) = self.store.load().await else {
            return;
        };
        let raw = stored.raw;
        let parsed = tokio::task::spawn_blocking(move || parse_registry(&raw)).await;
        match parsed {
            Ok(Ok(parsed)) => {
                tracing::info!(
                    target: "registry.loaded_persisted",
                    version = %parsed.doc.version,
                    sellers = parsed.doc.sellers.len(),
                    fetched_at_ms = stored.fetched_at_ms,
                    "using the persisted registry document until a fetch succeeds"
                );
                let generation = 1;
                self.current.store(Arc::new(RegistrySnapshot {
                    doc: Arc::new(parsed.doc),
                    fetched_at_ms: stored.fetched_at_ms,
                    stale: true,
                    last_error: None,
                    generation,
                    warnings: parsed.warnings.into(),
                }));
                self.generation.send_replace(generation);
            }
            Ok(Err(e)) => tracing::warn!(
                target: "registry.persisted_invalid",
                error = %e,
                "the persisted registry document is unusable; ignoring it"
            ),
            Err(e) => tracing::warn!(
                target: "registry.persisted_invalid",
                error = %e,
                "parsing the persisted registry document failed; ignoring it"
            ),
        }
    }

    /// The current snapshot. Never blocks, takes no lock: cheap enough for
    /// every request.
    pub fn current(&self) -> Arc<RegistrySnapshot> {
        self.current.load_full()
    }

    /// A channel that holds the current generation and changes when a
    /// different document is installed (rebuild the routing table then).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &RegistryFetcher {
        &self.fetcher
    }

    /// Fetches the document once. On success the new document becomes
    /// current (a new generation when it differs from the previous one, and
    /// then persisted); on failure the last good document stays current,
    /// marked stale with the error (`registry.stale_fallback` is logged),
    /// or, with no document at all, [`RefreshOutcome::Failed`] says so.
    pub async fn refresh(&self, now_ms: i64) -> RefreshOutcome {
        let _one_at_a_time = self.refreshing.lock().await;
        match self.fetcher.fetch().await {
            Ok(fetched) => self.install(fetched, now_ms).await,
            Err(error) => self.fall_back(error, now_ms),
        }
    }

    async fn install(&self, fetched: Fetched, now_ms: i64) -> RefreshOutcome {
        let Fetched { doc, raw, warnings } = fetched;
        let previous = self.current.load_full();
        let changed = !previous.has_document() || *previous.doc != doc;
        let sellers = doc.sellers.len();
        let warning_count = warnings.len();
        let generation = if changed {
            previous.generation + 1
        } else {
            previous.generation
        };
        let doc = if changed {
            log_warnings(&doc.version, &warnings);
            Arc::new(doc)
        } else {
            Arc::clone(&previous.doc)
        };
        let version = doc.version.clone();
        self.current.store(Arc::new(RegistrySnapshot {
            doc,
            fetched_at_ms: now_ms,
            stale: false,
            last_error: None,
            generation,
            warnings: warnings.into(),
        }));
        if changed {
            self.generation.send_replace(generation);
            tracing::info!(
                target: "registry.updated",
                version = %version,
                sellers,
                warnings = warning_count,
                generation,
                "registry document installed"
            );
            self.store.save(&raw, now_ms).await;
        } else if previous.stale {
            tracing::info!(
                target: "registry.recovered",
                version = %version,
                sellers,
                "the registry answers again; the document is unchanged"
            );
        }
        RefreshOutcome::Fresh {
            generation,
            changed,
            sellers,
            warnings: warning_count,
        }
    }

    fn fall_back(&self, error: FetchError, now_ms: i64) -> RefreshOutcome {
        let previous = self.current.load_full();
        self.current.store(Arc::new(RegistrySnapshot {
            stale: true,
            last_error: Some(error.to_string()),
            ..RegistrySnapshot::clone(&previous)
        }));
        if !previous.has_document() {
            tracing::error!(
                target: "registry.unavailable",
                error = %error,
                url = %self.fetcher.url(),
                "the registry could not be fetched and no earlier document is known"
            );
            return RefreshOutcome::Failed { error };
        }
        let version = previous.doc.version.clone();
        let sellers = previous.doc.sellers.len();
        tracing::warn!(
            target: "registry.stale_fallback",
            error = %error,
            version = %version,
            sellers,
            age_ms = previous.age_ms(now_ms),
            "registry refresh failed; routing with the last good document"
        );
        RefreshOutcome::Stale {
            error,
            version,
            sellers,
        }
    }

    /// Refreshes every `every` (the first one `every` from now; the
    /// daemon calls [`start`](Registry::start) first) in a background task,
    /// until `shutdown` completes (an in-flight refresh is abandoned then).
    /// Subscribe with [`subscribe`](Registry::subscribe) to learn about new
    /// documents.
    pub fn spawn_refresh<F>(self: Arc<Registry>, every: Duration, shutdown: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let every = every.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut shutdown = std::pin::pin!(shutdown);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = ticks.tick() => {
                        tokio::select! {
                            () = &mut shutdown => break,
                            _ = self.refresh(unix_now_ms()) => {}
                        }
                    }
                }
            }
        })
    }
}

fn log_warnings(version: &str, warnings: &[String]) {
    for w in warnings.iter().take(LOGGED_WARNINGS) {
        tracing::warn!(target: "registry.document_warning", version = %version, "{w}");
    }
    if warnings.len() > LOGGED_WARNINGS {
        tracing::warn!(
            target: "registry.document_warning",
            version = %version,
            more = warnings.len() - LOGGED_WARNINGS,
            "more registry document warnings not shown"
        );
    }
}

/// The wall clock in Unix milliseconds (0 before 1970).
fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
