//! Provider probe results (`probe_results` table, `tokenbuddyd probe`):
//! one row per check of one run of one upstream × model. Routing reads the
//! latest run per upstream × model at start-up and on
//! `POST /v1/probe/reload`; older runs stay as history.

use sqlx::Row;
use tb_domain::{ProbeCheck, Verdict};

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;

/// One probe run of one upstream × model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRun {
    /// The upstream (provider or seller) id.
    pub upstream_id: String,
    /// The upstream model id probed.
    pub model: String,
    /// When the run started, unix ms.
    pub probed_at_ms: i64,
    /// What each check found, in [`ProbeCheck::ALL`] order when read back.
    pub checks: Vec<ProbeCheckRow>,
}

/// One check of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCheckRow {
    /// The check.
    pub check: ProbeCheck,
    /// ✓ / ✗ / ?.
    pub verdict: Verdict,
    /// Its number (see docs/probe.md), when there is one.
    pub measured: Option<i64>,
    /// What was seen, in words (never a secret or a prompt).
    pub detail: String,
}

impl Ledger {
    /// Stores one run (all its checks in one transaction). Storing the same
    /// (upstream, model, time) again replaces it.
    pub async fn save_probe(&self, run: &ProbeRun) -> Result<(), StoreError> {
        let sql = "INSERT INTO probe_results \
             (upstream_id, model, probed_at_ms, check_name, verdict, measured, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (upstream_id, model, probed_at_ms, check_name) DO UPDATE SET \
               verdict = excluded.verdict, measured = excluded.measured, detail = excluded.detail";
        with_pool!(self, pool => write_transaction!(pool, |tx| {
            for c in &run.checks {
                sqlx::query(sql)
                    .bind(run.upstream_id.as_str())
                    .bind(run.model.as_str())
                    .bind(run.probed_at_ms)
                    .bind(c.check.as_str())
                    .bind(c.verdict.as_str())
                    .bind(c.measured)
                    .bind(c.detail.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }))
    }

    /// The latest run of every upstream × model, by upstream then model
    /// (bytewise). A row with a check or verdict this version does not know
    /// is skipped with a warning (a newer daemon may share the ledger).
    pub async fn latest_probes(&self) -> Result<Vec<ProbeRun>, StoreError> {
        let sql = "SELECT p.upstream_id, p.model, p.probed_at_ms, p.check_name, p.verdict, \
                    p.measured, p.detail \
             FROM probe_results p \
             JOIN (SELECT upstream_id, model, MAX(probed_at_ms) AS latest \
                   FROM probe_results GROUP BY upstream_id, model) l \
               ON p.upstream_id = l.upstream_id AND p.model = l.model \
              AND p.probed_at_ms = l.latest";
        let mut rows: Vec<(String, String, i64, ProbeCheckRow)> = with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let name = row.text_col("check_name")?;
                let verdict = row.text_col("verdict")?;
                let (Some(check), Some(verdict)) = (ProbeCheck::parse(&name), Verdict::parse(&verdict)) else {
                    tracing::warn!(target: "ledger.probes", check = %name, verdict = %verdict, "skipping a probe result this version does not know");
                    continue;
                };
                let measured: Option<i64> = row.try_get("measured")?;
                out.push((
                    row.text_col("upstream_id")?,
                    row.text_col("model")?,
                    row.i64_col("probed_at_ms")?,
                    ProbeCheckRow { check, verdict, measured, detail: row.text_col("detail")? },
                ));
            }
            Ok::<_, StoreError>(out)
        })?;
        rows.sort_by(|a, b| (&a.0, &a.1, a.3.check).cmp(&(&b.0, &b.1, b.3.check)));
        let mut runs: Vec<ProbeRun> = Vec::new();
        for (upstream_id, model, probed_at_ms, check) in rows {
            match runs.last_mut() {
                Some(r) if r.upstream_id == upstream_id && r.model == model => r.checks.push(check),
                _ => runs.push(ProbeRun {
                    upstream_id,
                    model,
                    probed_at_ms,
                    checks: vec![check],
                }),
            }
        }
        Ok(runs)
    }
}
