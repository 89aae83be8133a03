//! Wiring between the proxy's call records and the ledger.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tb_billing::record::CallRecord;
use tb_export::Exporters;
use tb_proxy::{CallSink, SinkFailure, SinkHealth};
use tb_store::{Ledger, LedgerSender, LedgerTarget};

/// The proxy's sink: the ledger writer's bounded queue, and a copy to each
/// configured export sink's queue (`[export]`). Never blocks.
pub(crate) struct LedgerSink {
    pub(crate) ledger: LedgerSender,
    pub(crate) export: Option<Arc<Exporters>>,
}

impl CallSink for LedgerSink {
    fn submit(&self, record: CallRecord) -> Result<(), Box<CallRecord>> {
        if let Some(export) = &self.export {
            export.offer(&record);
        }
        self.ledger.record(record).map_err(|dropped| dropped.record)
    }

    fn health(&self) -> SinkHealth {
        let h = self.ledger.health();
        SinkHealth {
            pending: h.pending,
            failed_writes: h.failed_writes,
            failing: h.failing.map(|f| SinkFailure {
                error: f.error,
                for_ms: u64::try_from(f.since.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// Opens the configured ledger (SQLite in the data dir by default).
pub(crate) async fn open(
    url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Ledger, LedgerTarget)> {
    let target = LedgerTarget::from_config(url, data_dir);
    let ledger = Ledger::open(&target)
        .await
        .with_context(|| format!("opening the ledger at {target} (ledger.url)"))?;
    Ok((ledger, target))
}

/// The registry's last good document lives in the ledger's `config_kv`, so
/// a restart with a broken registry still routes.
pub(crate) struct LedgerSnapshotStore(pub(crate) Ledger);

const REGISTRY_DOC_KEY: &str = "registry.snapshot";
const REGISTRY_AT_KEY: &str = "registry.snapshot.fetched_at_ms";

impl tb_registry::SnapshotStore for LedgerSnapshotStore {
    async fn load(&self) -> Option<tb_registry::StoredSnapshot> {
        let raw = match self.0.config_get(REGISTRY_DOC_KEY).await {
            Ok(raw) => raw?,
            Err(e) => {
                tracing::warn!(target: "registry.persist_failed", error = %e, "could not read the saved registry document");
                return None;
            }
        };
        let fetched_at_ms = self
            .0
            .config_get(REGISTRY_AT_KEY)
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(tb_registry::StoredSnapshot {
            raw: raw.into_bytes(),
            fetched_at_ms,
        })
    }

    async fn save(&self, raw: &[u8], fetched_at_ms: i64) {
        let text = String::from_utf8_lossy(raw);
        let saved = async {
            self.0.config_put(REGISTRY_DOC_KEY, &text).await?;
            self.0
                .config_put(REGISTRY_AT_KEY, &fetched_at_ms.to_string())
                .await
        };
        if let Err(e) = saved.await {
            tracing::warn!(target: "registry.persist_failed", error = %e, "could not save the registry document");
        }
    }
}

/// Hands the ledger's latest probe results (`tokenbuddyd probe`) to
/// routing, which pushes back what failed; returns how many upstream ×
/// model pairs it holds now. At start-up and on `POST /v1/probe/reload`.
pub(crate) async fn load_trust(
    ledger: &Ledger,
    router: &tb_router::Router,
) -> Result<usize, tb_store::StoreError> {
    let runs = ledger.latest_probes().await?;
    let n = runs.len();
    router.set_trust(runs.into_iter().map(findings).collect());
    Ok(n)
}

fn findings(run: tb_store::ProbeRun) -> (String, String, tb_routing::ProbeFindings) {
    let checks = run
        .checks
        .iter()
        .map(|c| tb_routing::CheckFinding {
            check: c.check,
            verdict: c.verdict,
            measured: c.measured,
        })
        .collect();
    (
        run.upstream_id,
        run.model,
        tb_routing::ProbeFindings {
            probed_at_ms: run.probed_at_ms,
            checks,
        },
    )
}
