//! One request: `Host` guard, route, method, authentication, query and
//! body parsing, then the [`ControlApi`] call.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ApiError, ControlApi};
use crate::response::{self, Body};
use crate::{MAX_BODY_BYTES, assets, filter, guard, query};

/// How much of a refused body is read and thrown away so the client sees
/// the answer instead of a connection reset (closing a socket with unread
/// data makes TCP send RST).
const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How long a refused body may be drained.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// `GET /v1/calls/{id}`: everything after the prefix is the id.
const CALL_PREFIX: &str = "/v1/calls/";

/// Live data is never cached.
const NO_STORE: &str = "no-store";
/// Embedded files are revalidated (they change with the binary).
const NO_CACHE: &str = "no-cache";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Status,
    Upstreams,
    Prewarm,
    Calls,
    Call,
    Series,
    Usage,
    Credit,
    Sellers,
    SellerAudit,
    PendingPurchases,
    ProviderMode,
    Install,
    InstallPreview,
    InstallApply,
    InstallUndo,
    Doctor,
    Trust,
    ProbeReload,
    Metrics,
    OpenApi,
    Index,
    AppJs,
    StyleCss,
    Favicon,
}

impl Route {
    /// The route of a path and the methods it takes (the `Allow` value).
    fn of(path: &str) -> Option<(Route, &'static str)> {
        Some(match path {
            "/healthz" => (Route::Healthz, "GET"),
            "/v1/status" => (Route::Status, "GET"),
            "/v1/upstreams" => (Route::Upstreams, "GET"),
            "/v1/prewarm" => (Route::Prewarm, "GET"),
            "/v1/calls" => (Route::Calls, "GET"),
            "/v1/usage" => (Route::Usage, "GET"),
            "/v1/credit" => (Route::Credit, "GET"),
            "/v1/sellers" => (Route::Sellers, "GET"),
            "/v1/sellers/audit" => (Route::SellerAudit, "GET"),
            "/v1/purchases/pending" => (Route::PendingPurchases, "GET"),
            "/v1/provider-mode" => (Route::ProviderMode, "GET, PUT"),
            "/v1/install" => (Route::Install, "GET"),
            "/v1/install/preview" => (Route::InstallPreview, "POST"),
            "/v1/install/apply" => (Route::InstallApply, "POST"),
            "/v1/install/undo" => (Route::InstallUndo, "POST"),
            "/v1/doctor" => (Route::Doctor, "GET"),
            "/v1/trust" => (Route::Trust, "GET"),
            "/v1/probe/reload" => (Route::ProbeReload, "POST"),
            "/metrics" => (Route::Metrics, "GET"),
            "/v1/openapi.json" => (Route::OpenApi, "GET"),
            "/" | "/index.html" => (Route::Index, "GET"),
            "/app.js" => (Route::AppJs, "GET"),
            "/style.css" => (Route::StyleCss, "GET"),
            "/favicon.svg" => (Route::Favicon, "GET"),
            "/v1/series" => (Route::Series, "GET"),
            p if p.starts_with(CALL_PREFIX) => (Route::Call, "GET"),
            _ => return None,
        })
    }

    fn allows(allow: &str, method: &Method) -> bool {
        allow.split(", ").any(|m| m == method.as_str())
    }
}

/// Answers one request; never fails (errors are JSON answers).
pub(crate) async fn handle(api: Arc<dyn ControlApi>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let (resp, cache) = dispatch(api.as_ref(), &parts, body).await;
    tracing::debug!(
        target: "control.request",
        method = %parts.method,
        path = %parts.uri.path(),
        status = resp.status().as_u16(),
        "control request answered"
    );
    response::finish(resp, cache)
}

async fn dispatch(
    api: &dyn ControlApi,
    parts: &Parts,
    body: Incoming,
) -> (Response<Body>, &'static str) {
    match answer(api, parts, body).await {
        Ok(ok) => ok,
        Err(refused) => (refused, NO_STORE),
    }
}

async fn answer(
    api: &dyn ControlApi,
    parts: &Parts,
    body: Incoming,
) -> Result<(Response<Body>, &'static str), Response<Body>> {
    let path = parts.uri.path();
    let method = &parts.method;
    if !guard::loopback_host(&parts.headers, &parts.uri) {
        discard(body);
        return Err(response::error(&ApiError::new(
            403,
            "forbidden_host",
            "the control plane answers only requests addressed to 127.0.0.1, localhost or [::1]",
        )));
    }
    let Some((route, allow)) = Route::of(path) else {
        discard(body);
        return Err(response::error(&ApiError::new(
            404,
            "unknown_route",
            format!("no endpoint {method} {path}; see GET /v1/openapi.json for the API"),
        )));
    };
    if !Route::allows(allow, method) {
        discard(body);
        let mut r = response::error(&ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed on {path}; use {allow}"),
        ));
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Err(r);
    }
    let mutating = *method != Method::GET;
    if mutating && !api.authorized(&parts.headers) {
        discard(body);
        let mut r = response::error(&ApiError::new(
            401,
            "invalid_access_token",
            "missing or wrong access token: send the daemon's access token as `Authorization: Bearer <token>` or `x-api-key: <token>`",
        ));
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(r);
    }
    let body = if mutating {
        let empty_is_object = route != Route::ProviderMode;
        json_body(parts, body, empty_is_object)
            .await
            .map_err(|e| response::error(&e))?
    } else {
        discard(body);
        Value::Null
    };
    let q = parts.uri.query();
    let refuse = |e: ApiError| response::error(&e);
    let resp = match route {
        Route::Healthz => response::bytes(StatusCode::OK, response::TEXT, "ok"),
        Route::Status => response::json(&api.status().await),
        Route::Upstreams => response::json(&api.upstreams()),
        Route::Prewarm => response::json(&api.prewarm()),
        Route::Credit => response::json(&api.credit()),
        Route::PendingPurchases => response::json(&api.pending_purchases()),
        Route::Calls => {
            let q = query::calls(q).map_err(|e| response::error(&e))?;
            api_result(api.calls(q.limit, q.before, q.filter).await)
        }
        Route::Call => {
            let id = path.strip_prefix(CALL_PREFIX).unwrap_or_default();
            api_result(api.call(filter::call_id(id).map_err(refuse)?).await)
        }
        Route::Series => api_result(api.series(filter::series(q).map_err(refuse)?).await),
        Route::Usage => {
            let q = query::usage(q).map_err(|e| response::error(&e))?;
            api_result(api.usage(q.since, q.by).await)
        }
        Route::Sellers => api_result(api.sellers(query::since(q).map_err(refuse)?).await),
        Route::SellerAudit => api_result(api.seller_audit(query::since(q).map_err(refuse)?).await),
        Route::ProviderMode if *method == Method::PUT => {
            api_result(api.set_provider_mode(typed(body).map_err(refuse)?).await)
        }
        Route::ProviderMode => response::json(&api.provider_mode()),
        Route::Install => api_result(api.install_status().await),
        Route::InstallPreview => {
            api_result(api.install_preview(typed(body).map_err(refuse)?).await)
        }
        Route::InstallApply => api_result(api.install_apply(typed(body).map_err(refuse)?).await),
        Route::InstallUndo => api_result(api.install_undo(typed(body).map_err(refuse)?).await),
        Route::Doctor => response::json(&api.doctor().await),
        Route::Trust => response::json(&api.trust()),
        Route::ProbeReload => api_result(api.reload_probes().await),
        Route::Metrics => response::bytes(StatusCode::OK, response::PROMETHEUS, api.metrics()),
        Route::OpenApi => {
            let r = response::bytes(StatusCode::OK, response::JSON, assets::OPENAPI_JSON);
            return Ok((r, NO_CACHE));
        }
        Route::Index => {
            let r = response::bytes(StatusCode::OK, response::HTML, assets::INDEX_HTML);
            return Ok((r, NO_CACHE));
        }
        Route::AppJs => {
            let r = response::bytes(StatusCode::OK, response::JS, assets::APP_JS);
            return Ok((r, NO_CACHE));
        }
        Route::StyleCss => {
            let r = response::bytes(StatusCode::OK, response::CSS, assets::STYLE_CSS);
            return Ok((r, NO_CACHE));
        }
        Route::Favicon => {
            let r = response::bytes(StatusCode::OK, response::SVG, assets::FAVICON_SVG);
            return Ok((r, NO_CACHE));
        }
    };
    Ok((resp, NO_STORE))
}

/// A typed API answer, or the API's refusal.
fn api_result<T: Serialize>(r: Result<T, ApiError>) -> Response<Body> {
    match r {
        Ok(v) => response::json(&v),
        Err(e) => response::error(&e),
    }
}

/// A request body (already checked to be a JSON object) as its type: a
/// missing, misspelt or ill-typed field is `400 invalid_request`, before
/// the API is asked.
fn typed<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body does not match the endpoint's schema (see GET /v1/openapi.json): {e}"
        ))
    })
}

/// The request body as a JSON object, at most [`MAX_BODY_BYTES`]. An empty
/// body is `{}` when `empty_is_object` (every field of the install bodies
/// is optional).
async fn json_body(
    parts: &Parts,
    body: Incoming,
    empty_is_object: bool,
) -> Result<Value, ApiError> {
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = read_limited(body, content_length, MAX_BODY_BYTES as u64).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) && empty_is_object {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::new(
            400,
            "invalid_json",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            400,
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// Reads at most `limit` bytes; a larger body (declared or sent) is
/// refused with `413` and the rest is discarded in the background.
async fn read_limited(
    mut body: Incoming,
    content_length: Option<u64>,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "body_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    if content_length.is_some_and(|n| n > limit) {
        discard(body);
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(
        usize::try_from(content_length.unwrap_or(0).min(limit)).unwrap_or(0),
    );
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                400,
                "invalid_json",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                discard(body);
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and drops an unread body in the background (bounded in bytes and
/// time) so the connection can answer and stay usable.
fn discard(mut body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_MAX_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let (route, allow) = Route::of("/v1/provider-mode").unwrap();
        assert_eq!(route, Route::ProviderMode);
        assert!(Route::allows(allow, &Method::GET));
        assert!(Route::allows(allow, &Method::PUT));
        assert!(!Route::allows(allow, &Method::POST));
        assert!(Route::of("/v1/status/").is_none());
        assert!(Route::of("/v1").is_none());
        assert_eq!(Route::of("/v1/calls/abc").map(|r| r.0), Some(Route::Call));
        assert_eq!(Route::of("/v1/calls/").map(|r| r.0), Some(Route::Call));
        assert_eq!(Route::of("/v1/calls").map(|r| r.0), Some(Route::Calls));
        assert_eq!(Route::of("/v1/series").map(|r| r.0), Some(Route::Series));
    }
}
