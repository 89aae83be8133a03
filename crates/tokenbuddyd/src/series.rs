//! The dashboard's reads of the ledger (`GET /v1/series`, `GET
//! /v1/calls/{id}`): the SQL sums and samples of tb-store turned into the
//! control plane's documents with tb-billing's pure series rules.

use tb_billing::series::{Bucket, upstream_series};
use tb_control::ApiError;
use tb_control::api::{CallRecord, Series, SeriesRequest};
use tb_store::Ledger;

/// The most buckets one series may span: a minute series covers at most
/// about three and a half days, an hour series about seven months.
pub(crate) const MAX_BUCKETS: i64 = 5_000;

fn store_err(e: tb_store::StoreError) -> ApiError {
    ApiError::internal(format!("reading the ledger: {e}"))
}

/// `GET /v1/series` at `now_ms`.
pub(crate) async fn series_doc(
    ledger: &Ledger,
    request: SeriesRequest,
    now_ms: i64,
) -> Result<Series, ApiError> {
    let since_ms = crate::history::parse_since(&request.since, now_ms)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_span(request.bucket, since_ms, now_ms)?;
    let spend = ledger
        .spend_series(since_ms, request.bucket, &request.filter)
        .await
        .map_err(store_err)?;
    let samples = ledger
        .series_samples(since_ms, &request.filter)
        .await
        .map_err(store_err)?;
    Ok(Series {
        since_ms,
        bucket: request.bucket,
        bucket_ms: request.bucket.width_ms(),
        spend,
        upstreams: upstream_series(&samples.samples, request.bucket),
        truncated: samples.truncated,
    })
}

/// Refuses a window of more than [`MAX_BUCKETS`] buckets, naming a
/// coarser bucket.
fn check_span(bucket: Bucket, since_ms: i64, now_ms: i64) -> Result<(), ApiError> {
    let n = bucket.count_between(since_ms, now_ms);
    if n <= MAX_BUCKETS {
        return Ok(());
    }
    let coarser = Bucket::ALL
        .into_iter()
        .find(|b| b.count_between(since_ms, now_ms) <= MAX_BUCKETS)
        .map_or("a later since".to_string(), |b| {
            format!("bucket={}", b.as_str())
        });
    Err(ApiError::new(
        400,
        "invalid_query",
        format!(
            "since and bucket={} span {n} buckets, more than {MAX_BUCKETS}: use {coarser}",
            bucket.as_str()
        ),
    ))
}

/// `GET /v1/calls/{id}`.
pub(crate) async fn call_doc(ledger: &Ledger, id: &str) -> Result<CallRecord, ApiError> {
    ledger
        .call_by_id(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::new(
                404,
                "call_not_found",
                format!("no call {id} in the ledger (it may be older than ledger.retention_days)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_windows_need_a_coarser_bucket() {
        let now = 1_709_387_110_500;
        let day = 86_400_000;
        assert!(check_span(Bucket::Minute, now - day, now).is_ok());
        assert!(check_span(Bucket::Hour, now - 30 * day, now).is_ok());
        let e = check_span(Bucket::Minute, now - 30 * day, now).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_query"));
        assert!(e.message.contains("use bucket=hour"), "{}", e.message);
        let e = check_span(Bucket::Day, now - 20_000 * day, now).unwrap_err();
        assert!(e.message.contains("use a later since"), "{}", e.message);
    }
}
