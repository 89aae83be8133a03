//! Response builders. Every answer goes through [`finish`], which adds the
//! security headers; none ever carries an `Access-Control-*` header (no
//! CORS: a foreign page may not read the API).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::api::ApiError;

/// The body type of every answer.
pub(crate) type Body = Full<Bytes>;

/// The dashboard runs only scripts and styles from this origin; no inline
/// script, no `eval`, no third-party fetches.
pub(crate) const CSP: &str = "default-src 'self'";

pub(crate) const JSON: &str = "application/json";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const HTML: &str = "text/html; charset=utf-8";
pub(crate) const JS: &str = "text/javascript; charset=utf-8";
pub(crate) const CSS: &str = "text/css; charset=utf-8";
pub(crate) const SVG: &str = "image/svg+xml";
/// The Prometheus text exposition format, version 0.0.4.
pub(crate) const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response with a body and a content type.
pub(crate) fn bytes(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `200` with a JSON document.
pub(crate) fn json(value: &impl Serialize) -> Response<Body> {
    json_status(StatusCode::OK, value)
}

fn json_status(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    bytes(status, JSON, body)
}

/// An error document with its status.
pub(crate) fn error(err: &ApiError) -> Response<Body> {
    json_status(err.http_status(), &err.body())
}

/// Adds the headers every answer carries: no caching of live data, no MIME
/// sniffing, no referrer, no framing, the content security policy.
pub(crate) fn finish(mut r: Response<Body>, cache: &'static str) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}
