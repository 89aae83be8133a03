//! The seam between the HTTP layer and the daemon: [`ControlApi`] is what
//! the daemon implements, [`ApiError`] is how it refuses.

use std::future::Future;
use std::pin::Pin;

use http::HeaderMap;
use serde_json::{Value, json};

/// A boxed, sendable future borrowing the API for `'a`: the return type of
/// the asynchronous [`ControlApi`] methods (object safe, no macro needed).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The data source behind the control plane, implemented by the daemon.
///
/// Every method answers the JSON document of one endpoint of
/// `docs/control-plane.md`; the HTTP layer does the routing, the `Host`
/// guard, authentication (through [`ControlApi::authorized`]), query and body
/// parsing, and never looks inside the documents. Synchronous methods read
/// in-memory state and must not block; anything touching the ledger, the
/// filesystem or the network is asynchronous.
pub trait ControlApi: Send + Sync + 'static {
    /// `GET /v1/status`.
    fn status(&self) -> Value;

    /// `GET /v1/upstreams`.
    fn upstreams(&self) -> Value;

    /// `GET /v1/prewarm` (`null` in manual mode).
    fn prewarm(&self) -> Value;

    /// `GET /v1/credit` (`null` in manual mode).
    fn credit(&self) -> Value;

    /// `GET /v1/calls`: at most `limit` records (already checked to be
    /// `1..=1000`), newest first, strictly older than the `before` cursor
    /// (`<started_at_ms>:<id>`, shape already checked) when given.
    fn calls(&self, limit: u32, before: Option<String>) -> Fut<'_, Result<Value, ApiError>>;

    /// `GET /v1/usage`: `since` as the client sent it (`7d`, `12h`, `30m`
    /// or an RFC 3339 time; default `7d`), `by` one of `model`, `upstream`,
    /// `day` (default `model`).
    fn usage(&self, since: String, by: String) -> Fut<'_, Result<Value, ApiError>>;

    /// `GET /v1/provider-mode`.
    fn provider_mode(&self) -> Value;

    /// `PUT /v1/provider-mode` (authorized; `body` is a JSON object):
    /// validate, persist, apply, answer the new mode document.
    fn set_provider_mode(&self, body: Value) -> Fut<'_, Result<Value, ApiError>>;

    /// `GET /v1/install`.
    fn install_status(&self) -> Fut<'_, Result<Value, ApiError>>;

    /// `POST /v1/install/preview` (authorized; `body` is a JSON object,
    /// `{}` when the request had no body).
    fn install_preview(&self, body: Value) -> Fut<'_, Result<Value, ApiError>>;

    /// `POST /v1/install/apply` (authorized; as for preview).
    fn install_apply(&self, body: Value) -> Fut<'_, Result<Value, ApiError>>;

    /// `POST /v1/install/undo` (authorized; as for preview).
    fn install_undo(&self, body: Value) -> Fut<'_, Result<Value, ApiError>>;

    /// `GET /v1/doctor`.
    fn doctor(&self) -> Fut<'_, Value>;

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

    /// The JSON body: `{"error": {"message", "code"}}`.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "code": self.code}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_and_status() {
        let e = ApiError::new(409, "conflict", "busy");
        assert_eq!(e.http_status(), http::StatusCode::CONFLICT);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "busy", "code": "conflict"}})
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
