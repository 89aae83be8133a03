//! Call records to columns and back: the only place that knows how each
//! field is stored.

use std::borrow::Cow;

use tb_billing::record::BilledTier;
use tb_billing::record::{
    Attempt, BalanceSource, BaselineKind, BillingUnit, CallOutcome, CallRecord,
};
use tb_domain::Protocol;

use crate::StoreError;

/// The `calls` columns in bind order (every field of [`CallRecord`];
/// `seq` is assigned by the database).
pub(crate) const CALL_COLUMNS: [&str; 47] = [
    "id",
    "request_id",
    "started_at_ms",
    "endpoint",
    "protocol",
    "requested_model",
    "model",
    "stream",
    "ok",
    "outcome",
    "winner",
    "failed_over",
    "attempts",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "tokens_per_second",
    "cost_usd_micros",
    "est_cost_usd_micros",
    "baseline_usd_micros",
    "baseline_kind",
    "saved_usd_micros",
    "cached_saving_usd_micros",
    "settled_credit_micros",
    "balance_source",
    "remaining_credit_micros",
    "billing_unit",
    "image_count",
    "image_size",
    "image_quality",
    "image_format",
    "usage_missing",
    "empty_completion",
    "unpriced",
    "price_drift_ppm",
    "prompt_hash",
    "upstream_protocol",
    "image_cost_per_image_usd_micros",
    "image_output_tokens",
    "image_output_cost_usd_micros",
    "cache_write_1h_tokens",
    "price_tier",
    "member",
];

/// A record in column form, borrowing from the record where it can.
pub(crate) struct EncodedCall<'a> {
    pub(crate) id: Cow<'a, str>,
    pub(crate) request_id: Cow<'a, str>,
    pub(crate) started_at_ms: i64,
    pub(crate) endpoint: Cow<'a, str>,
    pub(crate) protocol: &'static str,
    pub(crate) requested_model: Cow<'a, str>,
    pub(crate) model: Cow<'a, str>,
    pub(crate) stream: bool,
    pub(crate) ok: bool,
    pub(crate) outcome: &'static str,
    pub(crate) winner: Option<Cow<'a, str>>,
    pub(crate) failed_over: bool,
    pub(crate) attempts: String,
    pub(crate) latency_ms: i64,
    pub(crate) ttft_ms: Option<i64>,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) cached_input_tokens: Option<i64>,
    pub(crate) cache_write_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) reasoning_tokens: Option<i64>,
    pub(crate) tokens_per_second: Option<f64>,
    pub(crate) cost_usd_micros: Option<i64>,
    pub(crate) est_cost_usd_micros: Option<i64>,
    pub(crate) baseline_usd_micros: Option<i64>,
    pub(crate) baseline_kind: Option<&'static str>,
    pub(crate) saved_usd_micros: Option<i64>,
    pub(crate) cached_saving_usd_micros: Option<i64>,
    pub(crate) settled_credit_micros: Option<i64>,
    pub(crate) balance_source: &'static str,
    pub(crate) remaining_credit_micros: Option<i64>,
    pub(crate) billing_unit: &'static str,
    pub(crate) image_count: Option<i64>,
    pub(crate) image_size: Option<Cow<'a, str>>,
    pub(crate) image_quality: Option<Cow<'a, str>>,
    pub(crate) image_format: Option<Cow<'a, str>>,
    pub(crate) usage_missing: bool,
    pub(crate) empty_completion: bool,
    pub(crate) unpriced: bool,
    pub(crate) price_drift_ppm: Option<i64>,
    pub(crate) prompt_hash: Option<Cow<'a, str>>,
    pub(crate) upstream_protocol: Option<&'static str>,
    pub(crate) image_cost_per_image_usd_micros: Option<i64>,
    pub(crate) image_output_tokens: Option<i64>,
    pub(crate) image_output_cost_usd_micros: Option<i64>,
    pub(crate) cache_write_1h_tokens: Option<i64>,
    pub(crate) price_tier: Option<String>,
    pub(crate) member: Option<Cow<'a, str>>,
}

impl<'a> EncodedCall<'a> {
    /// Column values for `r`. Never fails on content a client could
    /// choose, so a batch cannot be poisoned: NUL characters (which
    /// PostgreSQL text refuses) become U+FFFD, counts beyond `i64::MAX`
    /// saturate, and a non-finite `tokens_per_second` is stored as unknown.
    pub(crate) fn new(r: &'a CallRecord) -> Result<EncodedCall<'a>, StoreError> {
        let attempts = serde_json::to_string(&r.attempts).map_err(|e| StoreError::Encode {
            id: r.id.clone(),
            detail: format!("attempts: {e}"),
        })?;
        Ok(EncodedCall {
            id: text(&r.id),
            request_id: text(&r.request_id),
            started_at_ms: r.started_at_ms,
            endpoint: text(&r.endpoint),
            protocol: r.protocol.as_str(),
            requested_model: text(&r.requested_model),
            model: text(&r.model),
            stream: r.stream,
            ok: r.ok,
            outcome: r.outcome.as_str(),
            winner: r.winner.as_deref().map(text),
            failed_over: r.failed_over,
            attempts,
            latency_ms: count(r.latency_ms),
            ttft_ms: r.ttft_ms.map(count),
            input_tokens: r.input_tokens.map(count),
            cached_input_tokens: r.cached_input_tokens.map(count),
            cache_write_tokens: r.cache_write_tokens.map(count),
            output_tokens: r.output_tokens.map(count),
            reasoning_tokens: r.reasoning_tokens.map(count),
            tokens_per_second: r.tokens_per_second.filter(|v| v.is_finite()),
            cost_usd_micros: r.cost_usd_micros,
            est_cost_usd_micros: r.est_cost_usd_micros,
            baseline_usd_micros: r.baseline_usd_micros,
            baseline_kind: r.baseline_kind.map(BaselineKind::as_str),
            saved_usd_micros: r.saved_usd_micros,
            cached_saving_usd_micros: r.cached_saving_usd_micros,
            settled_credit_micros: r.settled_credit_micros,
            balance_source: r.balance_source.as_str(),
            remaining_credit_micros: r.remaining_credit_micros,
            billing_unit: r.billing_unit.as_str(),
            image_count: r.image_count.map(i64::from),
            image_size: r.image_size.as_deref().map(text),
            image_quality: r.image_quality.as_deref().map(text),
            image_format: r.image_format.as_deref().map(text),
            usage_missing: r.usage_missing,
            empty_completion: r.empty_completion,
            unpriced: r.unpriced,
            price_drift_ppm: r.price_drift_ppm,
            prompt_hash: r.prompt_hash.as_deref().map(text),
            upstream_protocol: r.upstream_protocol.map(Protocol::as_str),
            image_cost_per_image_usd_micros: r.image_cost_per_image_usd_micros,
            image_output_tokens: r.image_output_tokens.map(count),
            image_output_cost_usd_micros: r.image_output_cost_usd_micros,
            cache_write_1h_tokens: r.cache_write_1h_tokens.map(count),
            price_tier: r.price_tier.map(|t| t.to_string()),
            member: r.member.as_deref().map(text),
        })
    }
}

/// Binds every column of an [`EncodedCall`] in [`CALL_COLUMNS`] order. A
/// macro rather than a generic function because the bounds for "each of
/// these Rust types encodes for this database" are longer than the list.
macro_rules! bind_call {
    ($query:expr, $e:expr) => {{
        let e = $e;
        $query
            .bind(e.id.as_ref())
            .bind(e.request_id.as_ref())
            .bind(e.started_at_ms)
            .bind(e.endpoint.as_ref())
            .bind(e.protocol)
            .bind(e.requested_model.as_ref())
            .bind(e.model.as_ref())
            .bind(e.stream)
            .bind(e.ok)
            .bind(e.outcome)
            .bind(e.winner.as_deref())
            .bind(e.failed_over)
            .bind(e.attempts.as_str())
            .bind(e.latency_ms)
            .bind(e.ttft_ms)
            .bind(e.input_tokens)
            .bind(e.cached_input_tokens)
            .bind(e.cache_write_tokens)
            .bind(e.output_tokens)
            .bind(e.reasoning_tokens)
            .bind(e.tokens_per_second)
            .bind(e.cost_usd_micros)
            .bind(e.est_cost_usd_micros)
            .bind(e.baseline_usd_micros)
            .bind(e.baseline_kind)
            .bind(e.saved_usd_micros)
            .bind(e.cached_saving_usd_micros)
            .bind(e.settled_credit_micros)
            .bind(e.balance_source)
            .bind(e.remaining_credit_micros)
            .bind(e.billing_unit)
            .bind(e.image_count)
            .bind(e.image_size.as_deref())
            .bind(e.image_quality.as_deref())
            .bind(e.image_format.as_deref())
            .bind(e.usage_missing)
            .bind(e.empty_completion)
            .bind(e.unpriced)
            .bind(e.price_drift_ppm)
            .bind(e.prompt_hash.as_deref())
            .bind(e.upstream_protocol)
            .bind(e.image_cost_per_image_usd_micros)
            .bind(e.image_output_tokens)
            .bind(e.image_output_cost_usd_micros)
            .bind(e.cache_write_1h_tokens)
            .bind(e.price_tier.as_deref())
            .bind(e.member.as_deref())
    }};
}
pub(crate) use bind_call;

fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Typed column access shared by both backends' row types.
pub(crate) trait RowExt {
    fn i64_col(&self, col: &'static str) -> Result<i64, sqlx::Error>;
    fn opt_i64_col(&self, col: &'static str) -> Result<Option<i64>, sqlx::Error>;
    fn text_col(&self, col: &'static str) -> Result<String, sqlx::Error>;
    fn opt_text_col(&self, col: &'static str) -> Result<Option<String>, sqlx::Error>;
    fn bool_col(&self, col: &'static str) -> Result<bool, sqlx::Error>;
    fn opt_f64_col(&self, col: &'static str) -> Result<Option<f64>, sqlx::Error>;
}

macro_rules! impl_row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn i64_col(&self, col: &'static str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_i64_col(&self, col: &'static str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn text_col(&self, col: &'static str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_text_col(&self, col: &'static str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn bool_col(&self, col: &'static str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_f64_col(&self, col: &'static str) -> Result<Option<f64>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
        }
    };
}
impl_row_ext!(sqlx::sqlite::SqliteRow);
impl_row_ext!(sqlx::postgres::PgRow);

/// Reads one `calls` row back into a record.
pub(crate) fn decode_call(row: &impl RowExt) -> Result<CallRecord, StoreError> {
    let id = row.text_col("id")?;
    let d = Decoder { row, id: &id };
    let attempts_json = row.text_col("attempts")?;
    let attempts: Vec<Attempt> =
        serde_json::from_str(&attempts_json).map_err(|e| d.corrupt("attempts", e))?;
    Ok(CallRecord {
        request_id: row.text_col("request_id")?,
        started_at_ms: row.i64_col("started_at_ms")?,
        endpoint: row.text_col("endpoint")?,
        protocol: d.parsed("protocol", parse_protocol)?,
        requested_model: row.text_col("requested_model")?,
        model: row.text_col("model")?,
        stream: row.bool_col("stream")?,
        ok: row.bool_col("ok")?,
        outcome: d.parsed("outcome", CallOutcome::parse)?,
        winner: row.opt_text_col("winner")?,
        failed_over: row.bool_col("failed_over")?,
        attempts,
        latency_ms: d.unsigned("latency_ms")?,
        ttft_ms: d.opt_unsigned("ttft_ms")?,
        input_tokens: d.opt_unsigned("input_tokens")?,
        cached_input_tokens: d.opt_unsigned("cached_input_tokens")?,
        cache_write_tokens: d.opt_unsigned("cache_write_tokens")?,
        output_tokens: d.opt_unsigned("output_tokens")?,
        reasoning_tokens: d.opt_unsigned("reasoning_tokens")?,
        tokens_per_second: row.opt_f64_col("tokens_per_second")?,
        cost_usd_micros: row.opt_i64_col("cost_usd_micros")?,
        est_cost_usd_micros: row.opt_i64_col("est_cost_usd_micros")?,
        baseline_usd_micros: row.opt_i64_col("baseline_usd_micros")?,
        baseline_kind: d.opt_parsed("baseline_kind", BaselineKind::parse)?,
        saved_usd_micros: row.opt_i64_col("saved_usd_micros")?,
        cached_saving_usd_micros: row.opt_i64_col("cached_saving_usd_micros")?,
        settled_credit_micros: row.opt_i64_col("settled_credit_micros")?,
        balance_source: d.parsed("balance_source", BalanceSource::parse)?,
        remaining_credit_micros: row.opt_i64_col("remaining_credit_micros")?,
        billing_unit: d.parsed("billing_unit", BillingUnit::parse)?,
        image_count: d.opt_u32("image_count")?,
        image_size: row.opt_text_col("image_size")?,
        image_quality: row.opt_text_col("image_quality")?,
        image_format: row.opt_text_col("image_format")?,
        usage_missing: row.bool_col("usage_missing")?,
        empty_completion: row.bool_col("empty_completion")?,
        unpriced: row.bool_col("unpriced")?,
        price_drift_ppm: row.opt_i64_col("price_drift_ppm")?,
        prompt_hash: row.opt_text_col("prompt_hash")?,
        trace_parent: None,
        upstream_protocol: d.opt_parsed("upstream_protocol", parse_protocol)?,
        image_cost_per_image_usd_micros: row.opt_i64_col("image_cost_per_image_usd_micros")?,
        image_output_tokens: d.opt_unsigned("image_output_tokens")?,
        image_output_cost_usd_micros: row.opt_i64_col("image_output_cost_usd_micros")?,
        cache_write_1h_tokens: d.opt_unsigned("cache_write_1h_tokens")?,
        price_tier: d.opt_parsed("price_tier", |s| s.parse::<BilledTier>().ok())?,
        member: row.opt_text_col("member")?,
        id,
    })
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    Protocol::parse(s)
}

struct Decoder<'r, R> {
    row: &'r R,
    id: &'r str,
}

impl<R: RowExt> Decoder<'_, R> {
    fn corrupt(&self, column: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            id: self.id.to_owned(),
            column,
            detail: detail.to_string(),
        }
    }

    fn parsed<T>(&self, col: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let s = self.row.text_col(col)?;
        parse(&s).ok_or_else(|| self.corrupt(col, format!("unknown value {s:?}")))
    }

    fn opt_parsed<T>(
        &self,
        col: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        match self.row.opt_text_col(col)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| self.corrupt(col, format!("unknown value {s:?}"))),
        }
    }

    fn unsigned(&self, col: &'static str) -> Result<u64, StoreError> {
        let v = self.row.i64_col(col)?;
        u64::try_from(v).map_err(|_| self.corrupt(col, format!("negative value {v}")))
    }

    fn opt_unsigned(&self, col: &'static str) -> Result<Option<u64>, StoreError> {
        match self.row.opt_i64_col(col)? {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(col, format!("negative value {v}"))),
        }
    }

    fn opt_u32(&self, col: &'static str) -> Result<Option<u32>, StoreError> {
        match self.row.opt_i64_col(col)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(col, format!("value {v} out of range"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replaces_nul_only_when_present() {
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn counts_saturate() {
        assert_eq!(count(5), 5);
        assert_eq!(count(u64::MAX), i64::MAX);
    }

    #[test]
    fn every_protocol_parses_back() {
        for p in Protocol::ALL {
            assert_eq!(parse_protocol(p.as_str()), Some(p));
        }
        assert_eq!(parse_protocol("nope"), None);
    }

    #[test]
    fn columns_are_unique() {
        let mut cols = CALL_COLUMNS.to_vec();
        cols.sort_unstable();
        cols.dedup();
        assert_eq!(cols.len(), CALL_COLUMNS.len());
    }
}
