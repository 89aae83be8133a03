//! Error answers in the client's shape.
//!
//! An SDK raises its usual exception only for its own protocol's error
//! body, so an upstream error is rewritten: the status stays what the
//! upstream said (the proxy keeps it), the message stays the upstream's,
//! and the error type is the client protocol's name for that status.

use serde::{Deserialize, Serialize};
use tb_domain::ApiFamily;

use crate::Route;
use crate::wire::Str;

/// Translates an upstream error answer (any status) into the client
/// protocol's error body, keeping the upstream's message.
pub fn translate_error(route: &Route<'_>, status: u16, body: &[u8]) -> Vec<u8> {
    let upstream = read(body);
    let client = route.client.family();
    if route.upstream.family() == client && upstream.shape == Some(client) {
        return body.to_vec();
    }
    let message = upstream
        .message
        .unwrap_or_else(|| fallback_message(status, body));
    let written = match client {
        ApiFamily::Anthropic => serde_json::to_vec(&AnthropicOut {
            kind: "error",
            error: AnthropicError {
                kind: anthropic_type(status),
                message: &message,
            },
        }),
        ApiFamily::OpenAi => serde_json::to_vec(&OpenAiOut {
            error: OpenAiError {
                message: &message,
                kind: openai_type(status),
                param: None,
                code: upstream.code.as_deref(),
            },
        }),
    };
    written.unwrap_or_default()
}

/// What an upstream error body says, in whichever shape it came.
struct UpstreamError {
    shape: Option<ApiFamily>,
    message: Option<String>,
    /// The upstream's own code or type (`context_length_exceeded`,
    /// `overloaded_error`), kept as the OpenAI `code`.
    code: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    error: Option<ErrorField<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    detail: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField<'a> {
    Object {
        #[serde(borrow)]
        message: Option<Str<'a>>,
        #[serde(rename = "type", borrow)]
        kind: Option<Str<'a>>,
        #[serde(default, deserialize_with = "code")]
        code: Option<String>,
    },
    #[serde(borrow)]
    Text(Str<'a>),
}

/// OpenAI's `code` is a string, a number or null.
fn code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn read(body: &[u8]) -> UpstreamError {
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(body) else {
        return UpstreamError {
            shape: None,
            message: None,
            code: None,
        };
    };
    match env.error {
        Some(ErrorField::Object {
            message,
            kind,
            code,
        }) => UpstreamError {
            shape: Some(if env.kind.as_deref() == Some("error") {
                ApiFamily::Anthropic
            } else {
                ApiFamily::OpenAi
            }),
            message: message.map(|m| m.to_string()),
            code: code.or(kind.map(|k| k.to_string())),
        },
        Some(ErrorField::Text(text)) => UpstreamError {
            shape: None,
            message: Some(text.to_string()),
            code: None,
        },
        None => UpstreamError {
            shape: None,
            message: env.message.or(env.detail).map(|m| m.to_string()),
            code: None,
        },
    }
}

/// The longest upstream body quoted when it is not JSON.
const MAX_QUOTED: usize = 1_000;

/// A body that is not an error object: quoted (shortened), or the status.
fn fallback_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("the upstream answered HTTP {status}");
    }
    let mut end = text.len().min(MAX_QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Anthropic's error type for a status.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's error type for a status.
fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

#[derive(Serialize)]
struct AnthropicOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError<'r>,
}

#[derive(Serialize)]
struct AnthropicError<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'r str,
}

#[derive(Serialize)]
struct OpenAiOut<'r> {
    error: OpenAiError<'r>,
}

#[derive(Serialize)]
struct OpenAiError<'r> {
    message: &'r str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<&'r str>,
}

#[cfg(test)]
mod tests {
    use tb_domain::Protocol;

    use super::*;

    fn check(client: Protocol, upstream: Protocol, status: u16, body: &str, expected: &str) {
        let route = Route {
            client,
            upstream,
            upstream_name: "up",
        };
        let got = translate_error(&route, status, body.as_bytes());
        assert_eq!(String::from_utf8_lossy(&got), expected, "{body}");
    }

    #[test]
    fn errors_take_the_clients_shape_and_keep_the_message() {
        use Protocol::{ChatCompletions as Chat, Messages, Responses};
        check(
            Messages,
            Chat,
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Rate limit reached"}}"#,
        );
        check(
            Chat,
            Messages,
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded_error"}}"#,
        );
        check(
            Responses,
            Messages,
            401,
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_1"}"#,
            r#"{"error":{"message":"invalid x-api-key","type":"authentication_error","param":null,"code":"authentication_error"}}"#,
        );
        check(
            Messages,
            Responses,
            400,
            r#"{"error":{"message":"context too long","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"context too long"}}"#,
        );
        check(
            Messages,
            Chat,
            503,
            "<html>Service Unavailable</html>",
            r#"{"type":"error","error":{"type":"api_error","message":"<html>Service Unavailable</html>"}}"#,
        );
        check(
            Messages,
            Chat,
            500,
            "",
            r#"{"type":"error","error":{"type":"api_error","message":"the upstream answered HTTP 500"}}"#,
        );
        check(
            Chat,
            Messages,
            400,
            r#"{"detail":"bad thing"}"#,
            r#"{"error":{"message":"bad thing","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        check(
            Messages,
            Chat,
            402,
            r#"{"error":"Insufficient balance"}"#,
            r#"{"type":"error","error":{"type":"billing_error","message":"Insufficient balance"}}"#,
        );
        // Same family (chat ↔ responses): the OpenAI body passes as it is.
        check(
            Chat,
            Responses,
            404,
            r#"{"error":{"message":"no model","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
            r#"{"error":{"message":"no model","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        );
    }
}
