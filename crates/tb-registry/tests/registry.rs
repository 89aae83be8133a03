//! The live registry: stale fallback, persistence, background refresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tb_registry::{
    FetchError, MemoryStore, RefreshOutcome, Registry, RegistryFetcher, StoredSnapshot,
};
use tb_test_support::{MockUpstream, Reply};

async fn setup() -> (MockUpstream, RegistryFetcher) {
    let mock = MockUpstream::start().await.unwrap();
    let fetcher = RegistryFetcher::new(
        format!("{}/registry", mock.root_url()),
        1 << 20,
        common::client(),
    )
    .with_timeout(Duration::from_secs(5));
    (mock, fetcher)
}

fn doc_v(version: &str, sellers: usize) -> String {
    let list: Vec<_> = (0..sellers)
        .map(|i| common::seller(&format!("s-{i}")))
        .collect();
    common::doc(version, &list)
}

/// Captures what `tracing` prints while alive (this thread only).
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&buf));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (Logs(buf), tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn good_then_bad_keeps_the_document_marked_stale() {
    let (logs, _guard) = capture_logs();
    let (mock, fetcher) = setup().await;
    let store = Arc::new(MemoryStore::default());
    mock.push_reply(Reply::json(200, doc_v("v1", 3)));
    let (registry, outcome) = Registry::start(fetcher, Arc::clone(&store), 1_000).await;
    assert_eq!(
        outcome,
        RefreshOutcome::Fresh {
            generation: 1,
            changed: true,
            sellers: 3,
            warnings: 0
        }
    );
    let snap = registry.current();
    assert!(!snap.stale);
    assert_eq!(
        (snap.generation, snap.fetched_at_ms, snap.last_error.clone()),
        (1, 1_000, None)
    );
    // Persisted as fetched.
    assert_eq!(
        store.get(),
        Some(StoredSnapshot {
            raw: doc_v("v1", 3).into_bytes(),
            fetched_at_ms: 1_000
        })
    );

    let good = registry.current();
    let bad_replies = [
        (Reply::json(500, "{}"), FetchError::Status(500)),
        (
            Reply::json(200, "garbage"),
            FetchError::Invalid(String::new()),
        ),
        (Reply::json(413, ""), FetchError::TooLarge),
    ];
    for (i, (reply, want)) in bad_replies.into_iter().enumerate() {
        mock.push_reply(reply);
        let outcome = registry.refresh(2_000 + i as i64).await;
        match (&outcome, &want) {
            (
                RefreshOutcome::Stale {
                    error: FetchError::Invalid(_),
                    ..
                },
                FetchError::Invalid(_),
            ) => {}
            (RefreshOutcome::Stale { error, .. }, want) => assert_eq!(error, want),
            other => panic!("{other:?}"),
        }
        let RefreshOutcome::Stale {
            version, sellers, ..
        } = &outcome
        else {
            unreachable!()
        };
        assert_eq!((version.as_str(), *sellers), ("v1", 3));
        assert!(outcome.has_document());
        let snap = registry.current();
        assert!(snap.stale);
        assert!(
            Arc::ptr_eq(&snap.doc, &good.doc),
            "the same document stays current"
        );
        assert_eq!(snap.generation, 1);
        assert_eq!(snap.fetched_at_ms, 1_000);
        assert_eq!(snap.age_ms(2_500), 1_500);
        assert_eq!(
            snap.last_error.as_deref(),
            Some(outcome.error().unwrap().to_string().as_str())
        );
    }
    let text = logs.text();
    assert!(text.contains("registry.stale_fallback"), "{text}");
    assert!(
        text.contains("version=v1") && text.contains("sellers=3"),
        "{text}"
    );
    // Failures are not persisted.
    assert_eq!(store.get().unwrap().fetched_at_ms, 1_000);

    // The registry comes back with the same document: fresh again, same
    // generation, nothing to rebuild or persist.
    let mut generations = registry.subscribe();
    generations.mark_unchanged();
    mock.push_reply(Reply::json(200, doc_v("v1", 3)));
    let outcome = registry.refresh(3_000).await;
    assert_eq!(
        outcome,
        RefreshOutcome::Fresh {
            generation: 1,
            changed: false,
            sellers: 3,
            warnings: 0
        }
    );
    let snap = registry.current();
    assert!(!snap.stale && snap.last_error.is_none());
    assert_eq!((snap.generation, snap.fetched_at_ms), (1, 3_000));
    assert!(!generations.has_changed().unwrap());
    assert_eq!(store.get().unwrap().fetched_at_ms, 1_000);

    // A different document: new generation, announced and persisted.
    mock.push_reply(Reply::json(200, doc_v("v2", 2)));
    let outcome = registry.refresh(4_000).await;
    assert_eq!(
        outcome,
        RefreshOutcome::Fresh {
            generation: 2,
            changed: true,
            sellers: 2,
            warnings: 0
        }
    );
    assert!(generations.has_changed().unwrap());
    assert_eq!(*generations.borrow_and_update(), 2);
    assert_eq!(registry.current().doc.version, "v2");
    assert_eq!(
        store.get().unwrap(),
        StoredSnapshot {
            raw: doc_v("v2", 2).into_bytes(),
            fetched_at_ms: 4_000
        }
    );
}

#[tokio::test]
async fn a_restart_with_the_registry_down_routes_with_the_persisted_document() {
    let (mock, fetcher) = setup().await;
    let store = MemoryStore::with(StoredSnapshot {
        raw: doc_v("v-old", 4).into_bytes(),
        fetched_at_ms: 500,
    });
    mock.push_reply(Reply::json(503, "{}"));
    let (registry, outcome) = Registry::start(fetcher, store, 10_000).await;
    assert!(
        matches!(
            &outcome,
            RefreshOutcome::Stale { error: FetchError::Status(503), version, sellers: 4 } if version == "v-old"
        ),
        "{outcome:?}"
    );
    let snap = registry.current();
    assert!(snap.has_document() && snap.stale);
    assert_eq!(
        (snap.generation, snap.fetched_at_ms, snap.doc.sellers.len()),
        (1, 500, 4)
    );
    assert_eq!(snap.age_ms(10_000), 9_500);
    assert!(snap.last_error.as_deref().unwrap().contains("503"));
    assert_eq!(*registry.subscribe().borrow(), 1);

    // Once the registry answers with the same document, it is fresh.
    mock.push_reply(Reply::json(200, doc_v("v-old", 4)));
    let outcome = registry.refresh(11_000).await;
    assert!(
        matches!(
            outcome,
            RefreshOutcome::Fresh {
                generation: 1,
                changed: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(!registry.current().stale);
}

#[tokio::test]
async fn the_persisted_document_is_stale_until_a_fetch_succeeds() {
    let (_mock, fetcher) = setup().await;
    let store = MemoryStore::with(StoredSnapshot {
        raw: doc_v("v-old", 1).into_bytes(),
        fetched_at_ms: 500,
    });
    let registry = Registry::load(fetcher, store).await;
    let snap = registry.current();
    assert!(snap.stale && snap.has_document() && snap.last_error.is_none());
}

#[tokio::test]
async fn no_document_at_all_is_an_error() {
    let (_logs, _guard) = capture_logs();
    let (mock, fetcher) = setup().await;
    mock.push_reply(Reply::json(500, "{}"));
    let (registry, outcome) = Registry::start(fetcher, MemoryStore::default(), 1_000).await;
    assert_eq!(
        outcome,
        RefreshOutcome::Failed {
            error: FetchError::Status(500)
        }
    );
    assert!(!outcome.has_document());
    let snap = registry.current();
    assert!(!snap.has_document() && snap.stale);
    assert!(snap.doc.sellers.is_empty());
    assert_eq!(
        snap.last_error.as_deref(),
        Some("the registry answered HTTP 500")
    );
    assert_eq!(*registry.subscribe().borrow(), 0);

    // A corrupt persisted copy counts as none.
    let (mock, fetcher) = setup().await;
    mock.push_reply(Reply::json(200, "nope"));
    let store = MemoryStore::with(StoredSnapshot {
        raw: b"{broken".to_vec(),
        fetched_at_ms: 1,
    });
    let (_registry, outcome) = Registry::start(fetcher, store, 1_000).await;
    assert!(
        matches!(
            outcome,
            RefreshOutcome::Failed {
                error: FetchError::Invalid(_)
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn background_refresh_announces_new_generations_and_stops_on_shutdown() {
    let (mock, fetcher) = setup().await;
    mock.push_reply(Reply::json(200, doc_v("v1", 1)));
    let (registry, _) = Registry::start(fetcher, MemoryStore::default(), 0).await;
    let mut generations = registry.subscribe();
    assert_eq!(*generations.borrow_and_update(), 1);
    // The next refreshes: a failure, then a new document. Unscripted
    // requests get the mock's default 404 (a failure too).
    mock.push_reply(Reply::json(502, ""));
    mock.push_reply(Reply::json(200, doc_v("v2", 2)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = Arc::clone(&registry).spawn_refresh(Duration::from_millis(20), async move {
        let _ = stopped.await;
    });
    tokio::time::timeout(Duration::from_secs(10), generations.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*generations.borrow_and_update(), 2);
    assert_eq!(registry.current().doc.version, "v2");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let after = mock.request_count();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock.request_count(), after, "no refresh after shutdown");
}

#[tokio::test]
async fn current_is_cheap_and_shared() {
    let (mock, fetcher) = setup().await;
    mock.push_reply(Reply::json(200, doc_v("v1", 2)));
    let (registry, _) = Registry::start(fetcher, MemoryStore::default(), 0).await;
    let a = registry.current();
    let b = registry.current();
    assert!(Arc::ptr_eq(&a, &b));
}
