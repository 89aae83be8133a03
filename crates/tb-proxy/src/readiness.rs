//! What a load balancer asks the proxy port, without a token:
//! `GET /livez` (the process is serving) and `GET /readyz` (this instance
//! should get traffic: not draining, and what it depends on answers).
//!
//! Readiness turns 503 the moment SIGTERM arrives, while the listener
//! still accepts for `proxy.drain_delay_ms`, so the balancer stops sending
//! before the port closes. The daemon supplies the dependency check (the
//! ledger, which in team mode is PostgreSQL) through [`Readiness`].

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::ProxyBody;
use crate::gateway::json_response;

/// The longest a readiness check may take; slower counts as not ready.
pub(crate) const CHECK_LIMIT: Duration = Duration::from_secs(2);

/// What this instance depends on to serve, checked on each `GET /readyz`.
pub trait Readiness: Send + Sync + 'static {
    /// `Err(reason)` when a dependency does not answer (the reason is shown
    /// to the balancer: no secrets in it).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

#[derive(Debug, Serialize)]
struct ReadyBody<'a> {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// The `/readyz` answer (pure): 200 `{"ready":true}`, or 503 with the
/// reason — draining first, since a draining instance is not coming back.
pub(crate) fn ready_answer(draining: bool, check: &Result<(), String>) -> (StatusCode, Bytes) {
    let reason = if draining {
        Some("draining: shutting down after SIGTERM")
    } else {
        check.as_ref().err().map(String::as_str)
    };
    let status = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(&ReadyBody {
        ready: reason.is_none(),
        reason,
    })
    .unwrap_or_default();
    (status, Bytes::from(body))
}

/// The `/readyz` response for `answer`, never cached.
pub(crate) fn ready_response((status, body): (StatusCode, Bytes)) -> Response<ProxyBody> {
    let mut r = json_response(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Runs `check` within [`CHECK_LIMIT`].
pub(crate) async fn bounded(check: Option<&dyn Readiness>) -> Result<(), String> {
    let Some(check) = check else { return Ok(()) };
    match tokio::time::timeout(CHECK_LIMIT, check.check()).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the readiness check took more than {} s",
            CHECK_LIMIT.as_secs()
        )),
    }
}

/// `GET /livez`: the process is up and its event loop answers.
pub(crate) fn live() -> Response<ProxyBody> {
    json_response(Bytes::from_static(br#"{"live":true}"#))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn ready_only_when_not_draining_and_the_check_passes() {
        let (status, body) = ready_answer(false, &Ok(()));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json(&body), serde_json::json!({"ready": true}));

        let down = Err("ledger unreachable: connection refused".to_owned());
        let (status, body) = ready_answer(false, &down);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            json(&body),
            serde_json::json!({"ready": false, "reason": "ledger unreachable: connection refused"})
        );

        for check in [Ok(()), down] {
            let (status, body) = ready_answer(true, &check);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                json(&body)["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("draining")
            );
        }
    }

    struct Slow;
    impl Readiness for Slow {
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_is_not_ready() {
        let err = bounded(Some(&Slow)).await.unwrap_err();
        assert!(err.contains("more than 2 s"), "{err}");
        assert_eq!(bounded(None).await, Ok(()));
    }
}
