//! `GET /v1/series` and `GET /v1/calls/{id}`: the dashboard's time series
//! and one call's detail, and the filters `/v1/calls` and `/v1/series`
//! share.

use serde::{Deserialize, Serialize};

/// The bucket width of a series (`minute`, `hour`, `day`).
pub use tb_billing::series::Bucket as SeriesBucket;
/// The filters of `/v1/calls` and `/v1/series` (query parameters `model`,
/// `upstream`, `protocol`, `outcome`).
pub use tb_billing::series::CallFilter;
/// Spend, savings and traffic in one bucket.
pub use tb_billing::series::SpendPoint;
/// One upstream's series and its points.
pub use tb_billing::series::{UpstreamPoint, UpstreamSeries};

/// What `GET /v1/series` asks for, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRequest {
    /// The window's start as the client sent it (`30m`, `12h`, `7d` or an
    /// RFC 3339 time; default `24h`).
    pub since: String,
    /// The bucket width (default `hour`).
    pub bucket: SeriesBucket,
    /// Which calls.
    pub filter: CallFilter,
}

/// `GET /v1/series`: spend and savings per bucket, and per upstream the
/// latency and TTFT percentiles, success and failover rates and tokens
/// per second (`docs/control-plane.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// The window's start (Unix milliseconds).
    pub since_ms: i64,
    /// The bucket width.
    pub bucket: SeriesBucket,
    /// The bucket width in milliseconds.
    pub bucket_ms: i64,
    /// One point per bucket with calls, oldest first.
    pub spend: Vec<SpendPoint>,
    /// One series per upstream that was attempted, by id.
    pub upstreams: Vec<UpstreamSeries>,
    /// The window held more calls than the per-upstream figures read (the
    /// newest were used); `spend` always covers every call.
    pub truncated: bool,
}
