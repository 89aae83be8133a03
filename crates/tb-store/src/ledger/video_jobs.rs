//! Video jobs (`video_jobs` table): the upstream that accepted each job,
//! so `GET /v1/videos/{id}` and its content reach it across restarts, and
//! the once-only claim that keeps a job's call record from being written
//! twice.

use tb_billing::record::Attempt;

use super::{Ledger, Pool};
use crate::StoreError;
use crate::codec::RowExt;

/// One accepted video job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoJob {
    /// The upstream's job id (also the client's).
    pub job_id: String,
    /// The upstream (provider or seller) that accepted it.
    pub upstream_id: String,
    /// The submit request's id (the call record's request id).
    pub request_id: String,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model sent upstream.
    pub model: String,
    /// The `seconds` the client asked for, when it said.
    pub requested_seconds: Option<u32>,
    /// When the submit started, unix ms.
    pub submitted_at_ms: i64,
    /// When its call record was written, unix ms; `None` until then.
    pub recorded_at_ms: Option<i64>,
    /// The member whose key submitted it; `None`: the access token.
    pub member: Option<String>,
    /// The submit's attempts on routes that refused it before the
    /// accepting one (the head of the record's attempt chain).
    pub submit_attempts: Vec<Attempt>,
    /// The id its call record will have, chosen at submit: a member's
    /// reservation of the job's worst cost has this id, so writing the
    /// record swaps it for the real cost. `None` for jobs stored before
    /// migration 0014.
    pub record_id: Option<String>,
}

impl Ledger {
    /// Stores an accepted job. `false` when the id is already mapped (the
    /// first mapping stands: polls keep reaching the upstream that
    /// accepted it first).
    pub async fn save_video_job(&self, job: &VideoJob) -> Result<bool, StoreError> {
        let sql = "INSERT INTO video_jobs \
             (job_id, upstream_id, request_id, requested_model, model, requested_seconds, \
              submitted_at_ms, recorded_at_ms, member, submit_attempts, record_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (job_id) DO NOTHING";
        let attempts =
            serde_json::to_string(&job.submit_attempts).map_err(|e| StoreError::Encode {
                id: job.job_id.clone(),
                detail: format!("submit_attempts: {e}"),
            })?;
        let done = with_pool!(self, pool => {
            let query = sqlx::query(sql)
                .bind(job.job_id.as_str())
                .bind(job.upstream_id.as_str())
                .bind(job.request_id.as_str())
                .bind(job.requested_model.as_str())
                .bind(job.model.as_str())
                .bind(job.requested_seconds.map(i64::from))
                .bind(job.submitted_at_ms)
                .bind(job.recorded_at_ms)
                .bind(job.member.as_deref())
                .bind(attempts.as_str())
                .bind(job.record_id.as_deref());
            write_statement!(pool, query)?.rows_affected()
        });
        Ok(done == 1)
    }

    /// The job with this id, if one was accepted through the daemon.
    pub async fn video_job(&self, job_id: &str) -> Result<Option<VideoJob>, StoreError> {
        let sql = "SELECT job_id, upstream_id, request_id, requested_model, model, \
                    requested_seconds, submitted_at_ms, recorded_at_ms, member, submit_attempts, \
                    record_id \
             FROM video_jobs WHERE job_id = $1";
        with_pool!(self, pool => {
            let Some(row) = sqlx::query(sql).bind(job_id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let requested_seconds = row
                .opt_i64_col("requested_seconds")?
                .and_then(|s| u32::try_from(s).ok());
            let submit_attempts = match row.opt_text_col("submit_attempts")? {
                Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    id: job_id.to_string(),
                    column: "submit_attempts",
                    detail: e.to_string(),
                })?,
                None => Vec::new(),
            };
            Ok(Some(VideoJob {
                job_id: row.text_col("job_id")?,
                upstream_id: row.text_col("upstream_id")?,
                request_id: row.text_col("request_id")?,
                requested_model: row.text_col("requested_model")?,
                model: row.text_col("model")?,
                requested_seconds,
                submitted_at_ms: row.i64_col("submitted_at_ms")?,
                recorded_at_ms: row.opt_i64_col("recorded_at_ms")?,
                member: row.opt_text_col("member")?,
                submit_attempts,
                record_id: row.opt_text_col("record_id")?,
            }))
        })
    }

    /// Claims the right to write the job's call record: `true` for the
    /// first caller only (an atomic compare-and-set on `recorded_at_ms`),
    /// so concurrent polls and restarted daemons record a job once.
    pub async fn claim_video_job_record(
        &self,
        job_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE video_jobs SET recorded_at_ms = $2 \
             WHERE job_id = $1 AND recorded_at_ms IS NULL";
        let done = with_pool!(self, pool => {
            write_statement!(pool, sqlx::query(sql).bind(job_id).bind(at_ms))?.rows_affected()
        });
        Ok(done == 1)
    }
}
