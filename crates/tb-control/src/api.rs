//! The seam between the HTTP layer and the daemon: [`ControlApi`] is what
//! the daemon implements, [`ApiError`] is how it refuses, and the types of
//! this module are every document the API answers or accepts.
//!
//! Why typed: the server serialises these types and every reader (the
//! CLI's `status` and `doctor`, the demo, the tests) deserialises into the
//! same ones, so renaming a field breaks compilation instead of silently
//! turning into a default on the reader's side. Response types deny unknown
//! fields, so a reader notices a document it does not understand.

use std::future::Future;
use std::pin::Pin;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

mod doctor;
mod history;
mod sellers;
mod series;
mod settings;
mod status;
mod trust;

pub use doctor::{Check, DoctorReport, Verdict};
pub use history::{
    CallRecord, Calls, Credit, CreditCounters, CreditReport, PendingPurchase, PendingPurchases,
    PoolSummary, Prewarm, PrewarmReport, PrewarmSnapshot, RechargePrompt, SellerCredit, Usage,
    UsageBy, UsageRow, UsageTotals,
};
pub use sellers::{AuditedCall, FindingKind, FlaggedSeller, SellerAudit, SellerRow, Sellers};
pub use series::{
    CallFilter, Series, SeriesBucket, SeriesRequest, SpendPoint, UpstreamPoint, UpstreamSeries,
};
pub use settings::{
    AutoSettings, AutoUpdate, Change, ChangedFile, FileAction, InstallChanged, InstallClient,
    InstallPreview, InstallRequest, InstallStatus, Instruction, ProviderMode, ProviderModeUpdate,
    SellerRange, UndoRequest,
};
pub use status::{
    Budget, Circuit, Connections, ExportSink, ExportState, LedgerStatus, Mode, RegistryStatus,
    Score, Status, TeamBudgetStatus, TeamStatus, Upstream, UpstreamCounts, UpstreamHealth,
    UpstreamKind, Upstreams,
};
pub use trust::{ProbeReload, Trust, TrustCheck, TrustEntry};

/// A boxed, sendable future borrowing the API for `'a`: the return type of
/// the asynchronous [`ControlApi`] methods (object safe, no macro needed).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The data source behind the control plane, implemented by the daemon.
///
/// Every method answers the document of one endpoint of
/// `docs/control-plane.md`, as the type the HTTP layer serialises; the HTTP
/// layer does the routing, the `Host` guard, authentication (through
/// [`ControlApi::authorized`]), query parsing and the decoding of request
/// bodies into their types. Synchronous methods read
/// in-memory state and must not block; anything touching the ledger, the
/// filesystem or the network is asynchronous.
pub trait ControlApi: Send + Sync + 'static {
    /// `GET /v1/status` (asynchronous: in team mode it reads the team's
    /// shared figures from PostgreSQL).
    fn status(&self) -> Fut<'_, Status>;

    /// `GET /v1/upstreams`.
    fn upstreams(&self) -> Upstreams;

    /// `GET /v1/prewarm` (`null` in manual mode).
    fn prewarm(&self) -> Prewarm;

    /// `GET /v1/credit` (`null` in manual mode).
    fn credit(&self) -> Credit;

    /// `GET /v1/purchases/pending`: the wallet payments waiting for the
    /// user (an empty list in manual mode).
    fn pending_purchases(&self) -> PendingPurchases;

    /// `GET /v1/calls`: at most `limit` records (already checked to be
    /// `1..=1000`) matching `filter`, newest first, strictly older than
    /// the `before` cursor (`<started_at_ms>:<id>`, shape already checked)
    /// when given.
    fn calls(
        &self,
        limit: u32,
        before: Option<String>,
        filter: CallFilter,
    ) -> Fut<'_, Result<Calls, ApiError>>;

    /// `GET /v1/calls/{id}`: one call with its attempt chain (`id`
    /// already checked to be 1..=128 of `[A-Za-z0-9_-]`); `404
    /// call_not_found` when no call has it.
    fn call(&self, id: String) -> Fut<'_, Result<CallRecord, ApiError>>;

    /// `GET /v1/series`: the dashboard's time series.
    fn series(&self, request: SeriesRequest) -> Fut<'_, Result<Series, ApiError>>;

    /// `GET /v1/usage`: `since` as the client sent it (`7d`, `12h`, `30m`
    /// or an RFC 3339 time; default `7d`), `by` defaulting to `model`.
    fn usage(&self, since: String, by: UsageBy) -> Fut<'_, Result<Usage, ApiError>>;

    /// `GET /v1/sellers`: `since` as for [`usage`](Self::usage).
    fn sellers(&self, since: String) -> Fut<'_, Result<Sellers, ApiError>>;

    /// `GET /v1/sellers/audit`: `since` as for [`usage`](Self::usage).
    fn seller_audit(&self, since: String) -> Fut<'_, Result<SellerAudit, ApiError>>;

    /// `GET /v1/provider-mode`.
    fn provider_mode(&self) -> ProviderMode;

    /// `PUT /v1/provider-mode` (authorized): validate, persist, apply,
    /// answer the new mode document.
    fn set_provider_mode(
        &self,
        body: ProviderModeUpdate,
    ) -> Fut<'_, Result<ProviderMode, ApiError>>;

    /// `GET /v1/install`.
    fn install_status(&self) -> Fut<'_, Result<InstallStatus, ApiError>>;

    /// `POST /v1/install/preview` (authorized; an empty request body is
    /// the default request).
    fn install_preview(&self, body: InstallRequest) -> Fut<'_, Result<InstallPreview, ApiError>>;

    /// `POST /v1/install/apply` (authorized; as for preview).
    fn install_apply(&self, body: InstallRequest) -> Fut<'_, Result<InstallChanged, ApiError>>;

    /// `POST /v1/install/undo` (authorized; as for preview).
    fn install_undo(&self, body: UndoRequest) -> Fut<'_, Result<InstallChanged, ApiError>>;

    /// `GET /v1/doctor`.
    fn doctor(&self) -> Fut<'_, DoctorReport>;

    /// `GET /v1/trust`: the probe results routing holds and what they
    /// mean now.
    fn trust(&self) -> Trust;

    /// `POST /v1/probe/reload` (authorized): read the latest probe results
    /// from the ledger again (after `tokenbuddyd probe`).
    fn reload_probes(&self) -> Fut<'_, Result<ProbeReload, ApiError>>;

    /// `GET /metrics`: the Prometheus text exposition.
    fn metrics(&self) -> String;

    /// Whether the request carries the access token (`Authorization:
    /// Bearer` or `x-api-key`). Asked for every `PUT` and `POST`.
    fn authorized(&self, headers: &HeaderMap) -> bool;
}

/// A refusal from the daemon, answered as `{"error": {"message", "code"}}`
/// with `status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status (400..=599; anything else is answered as 500).
    pub status: u16,
    /// Machine-readable code, snake_case (`invalid_mode`, `ledger_unavailable`, …).
    pub code: &'static str,
    /// What happened and what to do; never contains secrets.
    pub message: String,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 invalid_request`: the client sent something the daemon refuses.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }

    /// `500 internal_error`: the daemon could not answer.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal_error", message)
    }

    /// The status answered: `status` when it is an error status, else 500.
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The body: `{"error": {"message", "code"}}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                code: self.code.to_string(),
            },
        }
    }
}

/// Every error answer: `{"error": {"message", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// What happened and what to do; never contains secrets.
    pub message: String,
    /// Machine-readable code, snake_case.
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_and_status() {
        let e = ApiError::new(409, "conflict", "busy");
        assert_eq!(e.http_status(), http::StatusCode::CONFLICT);
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"error": {"message": "busy", "code": "conflict"}})
        );
        assert_eq!(e.to_string(), "409 conflict: busy");
    }

    #[test]
    fn non_error_statuses_become_500() {
        for s in [0, 99, 200, 302, 600, 1000] {
            assert_eq!(
                ApiError::new(s, "x", "y").http_status(),
                http::StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        assert_eq!(ApiError::bad_request("m").status, 400);
        assert_eq!(ApiError::internal("m").status, 500);
    }
}
