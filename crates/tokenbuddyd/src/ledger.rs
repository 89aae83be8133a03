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

/// The proxy's video job map: the ledger's `video_jobs` table.
pub(crate) struct LedgerVideoJobs(pub(crate) Ledger);

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl tb_proxy::VideoJobs for LedgerVideoJobs {
    fn save(&self, job: tb_proxy::VideoJobRow) -> Boxed<'_, Result<bool, String>> {
        Box::pin(async move {
            let row = tb_store::VideoJob {
                job_id: job.job_id,
                upstream_id: job.upstream_id,
                request_id: job.request_id,
                requested_model: job.requested_model,
                model: job.model,
                requested_seconds: job.requested_seconds,
                submitted_at_ms: job.submitted_at_ms,
                recorded_at_ms: None,
                member: job.member,
                submit_attempts: job.submit_attempts,
                record_id: job.record_id,
            };
            self.0.save_video_job(&row).await.map_err(|e| e.to_string())
        })
    }

    fn find(&self, job_id: String) -> Boxed<'_, Result<Option<tb_proxy::VideoJobRow>, String>> {
        Box::pin(async move {
            let found = self.0.video_job(&job_id).await.map_err(|e| e.to_string())?;
            Ok(found.map(|j| tb_proxy::VideoJobRow {
                job_id: j.job_id,
                upstream_id: j.upstream_id,
                request_id: j.request_id,
                requested_model: j.requested_model,
                model: j.model,
                requested_seconds: j.requested_seconds,
                submitted_at_ms: j.submitted_at_ms,
                member: j.member,
                submit_attempts: j.submit_attempts,
                record_id: j.record_id,
            }))
        })
    }

    fn claim_record(&self, job_id: String, at_ms: i64) -> Boxed<'_, Result<bool, String>> {
        Box::pin(async move {
            self.0
                .claim_video_job_record(&job_id, at_ms)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
