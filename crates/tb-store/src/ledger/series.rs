//! What the dashboard reads: filtered call listings, one call by id, and
//! the rows of `GET /v1/series` — spend per bucket summed in SQL, and the
//! narrow per-call samples tb-billing turns into per-upstream percentiles
//! and rates.

use tb_billing::record::{Attempt, CallRecord};
use tb_billing::series::{ACCESS_TOKEN_MEMBER, Bucket, CallFilter, CallSample, SpendPoint};

use super::{CallCursor, Ledger, Pool, select_calls, unsigned};
use crate::StoreError;
use crate::codec::{RowExt, decode_call};

/// The most samples one series reads; a window holding more keeps the
/// newest (`SeriesSamples::truncated`).
pub const MAX_SERIES_SAMPLES: u32 = 250_000;

/// The per-call samples of a series window.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// Newest first.
    pub samples: Vec<CallSample>,
    /// The window held more than [`MAX_SERIES_SAMPLES`]; the oldest were
    /// left out.
    pub truncated: bool,
}

/// ` AND <column> = $n` for every field of `filter`, numbered from
/// `first_param`, with the values to bind in order. The columns are
/// fixed names; only values are bound.
fn filter_sql(filter: &CallFilter, first_param: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    let fields = [
        ("model", filter.model.clone()),
        ("winner", filter.upstream.clone()),
        ("protocol", filter.protocol.map(|p| p.as_str().to_string())),
        ("outcome", filter.outcome.map(|o| o.as_str().to_string())),
    ];
    for (column, value) in fields {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ${}", first_param + binds.len()));
            binds.push(value);
        }
    }
    match filter.member.as_deref() {
        None => {}
        Some(ACCESS_TOKEN_MEMBER) => sql.push_str(" AND member IS NULL"),
        Some(member) => {
            sql.push_str(&format!(" AND member = ${}", first_param + binds.len()));
            binds.push(member.to_string());
        }
    }
    (sql, binds)
}

impl Ledger {
    /// The calls matching `filter`, newest first (`started_at_ms` then
    /// `id`, both descending), strictly older than `before` when given.
    pub async fn recent_calls_matching(
        &self,
        limit: u32,
        before: Option<&CallCursor>,
        filter: &CallFilter,
    ) -> Result<Vec<CallRecord>, StoreError> {
        // Placeholders are numbered in the order they appear and are bound.
        let (where_sql, first) = match before {
            None => ("WHERE 1 = 1", 1),
            Some(_) => ("WHERE (started_at_ms, id) < ($1, $2)", 3),
        };
        let (filter, binds) = filter_sql(filter, first);
        let limit_param = first + binds.len();
        let sql = select_calls(&format!(
            "{where_sql}{filter} ORDER BY started_at_ms DESC, id DESC LIMIT ${limit_param}"
        ));
        with_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            if let Some(c) = before {
                query = query.bind(c.started_at_ms).bind(c.id.as_str());
            }
            for value in &binds {
                query = query.bind(value.as_str());
            }
            query
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_call)
                .collect()
        })
    }

    /// The call stored under `id`, if any.
    pub async fn call_by_id(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql = select_calls("WHERE id = $1");
        with_pool!(self, pool => {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(decode_call(&row)?)),
                None => Ok(None),
            }
        })
    }

    /// Spend, savings and traffic per `bucket` for the calls started at or
    /// after `since_ms` that match `filter`, oldest bucket first; buckets
    /// without a call are absent. `rejected` calls are left out (as in
    /// [`Ledger::usage_summary`]).
    pub async fn spend_series(
        &self,
        since_ms: i64,
        bucket: Bucket,
        filter: &CallFilter,
    ) -> Result<Vec<SpendPoint>, StoreError> {
        let w = bucket.width_ms();
        let (filter, binds) = filter_sql(filter, 2);
        let sql = format!(
            "SELECT CAST((started_at_ms / {w}) * {w} AS BIGINT) AS b, \
               COUNT(*) AS calls, \
               COUNT(CASE WHEN ok THEN 1 END) AS ok_calls, \
               COUNT(CASE WHEN failed_over THEN 1 END) AS failed_over_calls, \
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
               CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT) AS cost, \
               CAST(COALESCE(SUM(saved_usd_micros), 0) AS BIGINT) AS saved, \
               COUNT(*) - COUNT(cost_usd_micros) AS unpriced_calls \
             FROM calls WHERE started_at_ms >= $1 AND outcome <> 'rejected'{filter} \
             GROUP BY 1 ORDER BY 1"
        );
        with_pool!(self, pool => {
            let mut query = sqlx::query(&sql).bind(since_ms);
            for value in &binds {
                query = query.bind(value.as_str());
            }
            query
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(SpendPoint {
                        bucket_start_ms: row.i64_col("b")?,
                        calls: unsigned(row, "calls")?,
                        ok_calls: unsigned(row, "ok_calls")?,
                        failed_over_calls: unsigned(row, "failed_over_calls")?,
                        input_tokens: unsigned(row, "input_tokens")?,
                        output_tokens: unsigned(row, "output_tokens")?,
                        cost_usd_micros: row.i64_col("cost")?,
                        saved_usd_micros: row.i64_col("saved")?,
                        unpriced_calls: unsigned(row, "unpriced_calls")?,
                    })
                })
                .collect()
        })
    }

    /// The per-call samples of the calls started at or after `since_ms`
    /// that match `filter` (`rejected` left out), newest first, at most
    /// [`MAX_SERIES_SAMPLES`].
    pub async fn series_samples(
        &self,
        since_ms: i64,
        filter: &CallFilter,
    ) -> Result<SeriesSamples, StoreError> {
        let (filter, binds) = filter_sql(filter, 2);
        let limit_param = 2 + binds.len();
        let sql = format!(
            "SELECT id, started_at_ms, winner, attempts, latency_ms, ttft_ms, tokens_per_second \
             FROM calls WHERE started_at_ms >= $1 AND outcome <> 'rejected'{filter} \
             ORDER BY started_at_ms DESC LIMIT ${limit_param}"
        );
        let fetch = i64::from(MAX_SERIES_SAMPLES) + 1;
        let mut samples = with_pool!(self, pool => {
            let mut query = sqlx::query(&sql).bind(since_ms);
            for value in &binds {
                query = query.bind(value.as_str());
            }
            query
                .bind(fetch)
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_sample)
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let truncated = samples.len() > MAX_SERIES_SAMPLES as usize;
        samples.truncate(MAX_SERIES_SAMPLES as usize);
        Ok(SeriesSamples { samples, truncated })
    }
}

fn decode_sample(row: &impl RowExt) -> Result<CallSample, StoreError> {
    let attempts: Vec<Attempt> =
        serde_json::from_str(&row.text_col("attempts")?).map_err(|e| StoreError::Corrupt {
            id: row.text_col("id").unwrap_or_default(),
            column: "attempts",
            detail: e.to_string(),
        })?;
    let non_negative = |col: &'static str, v: i64| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt {
            id: row.text_col("id").unwrap_or_default(),
            column: col,
            detail: format!("negative value {v}"),
        })
    };
    Ok(CallSample {
        started_at_ms: row.i64_col("started_at_ms")?,
        winner: row.opt_text_col("winner")?,
        attempts,
        latency_ms: non_negative("latency_ms", row.i64_col("latency_ms")?)?,
        ttft_ms: row
            .opt_i64_col("ttft_ms")?
            .map(|v| non_negative("ttft_ms", v))
            .transpose()?,
        tokens_per_second: row.opt_f64_col("tokens_per_second")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_billing::record::CallOutcome;
    use tb_domain::Protocol;

    #[test]
    fn filters_bind_values_and_number_from_the_first_free_parameter() {
        assert_eq!(
            filter_sql(&CallFilter::default(), 2),
            (String::new(), vec![])
        );
        let f = CallFilter {
            model: Some("m'; DROP TABLE calls; --".into()),
            upstream: None,
            protocol: Some(Protocol::Messages),
            outcome: Some(CallOutcome::FailedMidStream),
            member: Some("ana".into()),
        };
        let (sql, binds) = filter_sql(&f, 4);
        assert_eq!(
            sql,
            " AND model = $4 AND protocol = $5 AND outcome = $6 AND member = $7"
        );
        assert_eq!(
            binds,
            vec![
                "m'; DROP TABLE calls; --",
                "messages",
                "failed_mid_stream",
                "ana"
            ]
        );
        let token = CallFilter {
            member: Some(ACCESS_TOKEN_MEMBER.into()),
            ..CallFilter::default()
        };
        assert_eq!(
            filter_sql(&token, 1),
            (" AND member IS NULL".to_string(), vec![])
        );
    }
}
