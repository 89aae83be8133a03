//! Errors the daemon itself answers with, in each protocol's own shape so
//! SDKs raise their usual exception types (proxy.md, "Errors").

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use tb_domain::ApiFamily;

use crate::ProxyBody;
use crate::body::full;

/// The daemon's own error codes (the OpenAI `code` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body is not a JSON object.
    InvalidJson,
    /// 400: no string `model`.
    MissingModel,
    /// 400: a member the proxy reads (`stream`, `stream_options`, …) has
    /// the wrong type or appears twice.
    InvalidField,
    /// 401: no or wrong access token.
    InvalidAccessToken,
    /// 403: the member key that authenticated the request may not use
    /// the model (`keys create --models`).
    ModelNotAllowed,
    /// 402: the member key's budget is spent (`keys create --budget-usd`).
    MemberBudgetSpent,
    /// 429: the member key is over its requests or tokens per minute.
    MemberRateLimited,
    /// 404: no upstream serves the model over the protocol.
    ModelNotFound,
    /// 404: no such endpoint.
    UnknownRoute,
    /// 405: the endpoint exists with another method.
    MethodNotAllowed,
    /// 413: body over `proxy.max_body_bytes`.
    BodyTooLarge,
    /// 400: a field no route's protocol can express (translation.md).
    Untranslatable,
    /// 426: a WebSocket upgrade; the endpoint streams over HTTP (Codex
    /// falls back at once on a 426, and retries on anything else).
    WebSocketUnsupported,
    /// 402: the only sellers for the request wait for a wallet payment
    /// the user must make (the message says where).
    PaymentRequired,
    /// 502: no upstream could be reached.
    UpstreamUnreachable,
    /// 503: routing is impossible (mode disabled, budget spent, …).
    NoRoute,
    /// 504: no upstream answered in time.
    UpstreamTimeout,
    /// 500: a bug in the daemon aborted this request (it keeps serving).
    Internal,
    /// 503: the daemon is at `proxy.max_connections`.
    Overloaded,
    /// 404: no video job with this id was accepted through the daemon.
    VideoNotFound,
    /// 400: a `multipart/form-data` body that does not parse (boundary,
    /// truncated part).
    InvalidMultipart,
}

impl ErrorCode {
    /// The code as sent in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::MissingModel => "missing_model",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidAccessToken => "invalid_access_token",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::MemberBudgetSpent => "member_budget_spent",
            ErrorCode::MemberRateLimited => "rate_limit_exceeded",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::UnknownRoute => "unknown_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::WebSocketUnsupported => "websocket_unsupported",
            ErrorCode::Untranslatable => "untranslatable_field",
            ErrorCode::PaymentRequired => "payment_required",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Internal => "internal_error",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::VideoNotFound => "video_not_found",
            ErrorCode::InvalidMultipart => "invalid_multipart",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::MissingModel
            | ErrorCode::InvalidField
            | ErrorCode::InvalidMultipart => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidAccessToken => StatusCode::UNAUTHORIZED,
            ErrorCode::ModelNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::MemberBudgetSpent => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::MemberRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ModelNotFound | ErrorCode::UnknownRoute | ErrorCode::VideoNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::WebSocketUnsupported => StatusCode::UPGRADE_REQUIRED,
            ErrorCode::Untranslatable => StatusCode::BAD_REQUEST,
            ErrorCode::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::NoRoute | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI error `type`.
    pub fn openai_type(self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500.. => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The Anthropic error `type`.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidAccessToken => "authentication_error",
            ErrorCode::ModelNotAllowed => "permission_error",
            ErrorCode::MemberBudgetSpent => "billing_error",
            ErrorCode::MemberRateLimited => "rate_limit_error",
            ErrorCode::ModelNotFound | ErrorCode::UnknownRoute | ErrorCode::VideoNotFound => {
                "not_found_error"
            }
            ErrorCode::BodyTooLarge => "request_too_large",
            ErrorCode::NoRoute | ErrorCode::Overloaded => "overloaded_error",
            ErrorCode::PaymentRequired => "billing_error",
            ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamTimeout | ErrorCode::Internal => {
                "api_error"
            }
            ErrorCode::InvalidJson
            | ErrorCode::MissingModel
            | ErrorCode::InvalidField
            | ErrorCode::InvalidMultipart
            | ErrorCode::MethodNotAllowed
            | ErrorCode::WebSocketUnsupported
            | ErrorCode::Untranslatable => "invalid_request_error",
        }
    }
}

/// An error the daemon answers itself: a code and a message that says what
/// happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    /// The code (decides status and types).
    pub code: ErrorCode,
    /// Human-readable; never contains secrets.
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limits).
    pub retry_after_secs: Option<u64>,
}

impl ProxyError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProxyError {
        ProxyError {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The same error with a `Retry-After: secs` header.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> ProxyError {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The JSON body in `family`'s shape.
    pub fn body(&self, family: ApiFamily) -> Bytes {
        let value = match family {
            ApiFamily::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.code.openai_type(),
                    "code": self.code.as_str(),
                    "param": null,
                }
            }),
            ApiFamily::Anthropic => json!({
                "type": "error",
                "error": { "type": self.code.anthropic_type(), "message": self.message },
            }),
        };
        Bytes::from(value.to_string())
    }

    /// The full HTTP response in `family`'s shape.
    pub fn response(&self, family: ApiFamily) -> Response<ProxyBody> {
        let mut resp = Response::new(full(self.body(family)));
        *resp.status_mut() = self.code.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// An SSE event carrying this error, for a stream that already started:
    /// `event: error` for Anthropic and Responses, a `data:` chunk for Chat.
    pub fn sse_event(&self, family: ApiFamily, chat_style: bool) -> Bytes {
        let text = match (family, chat_style) {
            (ApiFamily::Anthropic, _) => {
                format!(
                    "event: error\ndata: {}\n\n",
                    String::from_utf8_lossy(&self.body(family))
                )
            }
            (ApiFamily::OpenAi, true) => {
                format!("data: {}\n\n", String::from_utf8_lossy(&self.body(family)))
            }
            (ApiFamily::OpenAi, false) => format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "code": self.code.as_str(), "message": self.message, "param": null})
            ),
        };
        Bytes::from(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn table_from_the_spec() {
        use ErrorCode::*;
        let rows = [
            (
                InvalidJson,
                400,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                MissingModel,
                400,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                InvalidField,
                400,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                InvalidAccessToken,
                401,
                "authentication_error",
                "authentication_error",
            ),
            (ModelNotAllowed, 403, "permission_error", "permission_error"),
            (
                MemberBudgetSpent,
                402,
                "invalid_request_error",
                "billing_error",
            ),
            (
                MemberRateLimited,
                429,
                "rate_limit_error",
                "rate_limit_error",
            ),
            (
                ModelNotFound,
                404,
                "invalid_request_error",
                "not_found_error",
            ),
            (
                UnknownRoute,
                404,
                "invalid_request_error",
                "not_found_error",
            ),
            (
                MethodNotAllowed,
                405,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                Untranslatable,
                400,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                WebSocketUnsupported,
                426,
                "invalid_request_error",
                "invalid_request_error",
            ),
            (
                BodyTooLarge,
                413,
                "invalid_request_error",
                "request_too_large",
            ),
            (
                PaymentRequired,
                402,
                "invalid_request_error",
                "billing_error",
            ),
            (UpstreamUnreachable, 502, "api_error", "api_error"),
            (NoRoute, 503, "api_error", "overloaded_error"),
            (UpstreamTimeout, 504, "api_error", "api_error"),
        ];
        for (code, status, oa, an) in rows {
            let e = ProxyError::new(code, "m");
            assert_eq!(code.status().as_u16(), status);
            let o = parse(&e.body(ApiFamily::OpenAi));
            assert_eq!(o["error"]["type"], oa);
            assert_eq!(o["error"]["code"], code.as_str());
            assert_eq!(o["error"]["message"], "m");
            assert!(o["error"]["param"].is_null());
            let a = parse(&e.body(ApiFamily::Anthropic));
            assert_eq!(a["type"], "error");
            assert_eq!(a["error"]["type"], an);
        }
    }

    #[test]
    fn sse_error_events() {
        let e = ProxyError::new(ErrorCode::UpstreamTimeout, "idle");
        let chat = e.sse_event(ApiFamily::OpenAi, true);
        assert!(chat.starts_with(b"data: {\"error\""));
        let resp = e.sse_event(ApiFamily::OpenAi, false);
        assert!(resp.starts_with(b"event: error\ndata: {"));
        let anth = e.sse_event(ApiFamily::Anthropic, false);
        assert!(anth.starts_with(b"event: error\ndata: {\"error\""));
        for ev in [chat, resp, anth] {
            assert!(ev.ends_with(b"\n\n"));
        }
    }
}
