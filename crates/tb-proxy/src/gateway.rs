//! The gateway surface agents call besides the protocol endpoints: what a
//! request's method and path ask for ([`Endpoint::of`], pure), and the
//! answers that need no upstream (translation.md, "The agent gateway
//! surface"). Claude Code probes `HEAD /` before its first request, lists
//! models in Anthropic's shape and asks `count_tokens` to decide when to
//! compact; Codex tries a WebSocket on `/v1/responses` first and falls back
//! to HTTP streaming only when the upgrade is refused.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use tb_domain::Protocol;

use crate::ProxyBody;
use crate::body::full;
use crate::error::{ErrorCode, ProxyError};

/// The path Anthropic clients ask for a request's input-token count.
pub(crate) const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

/// The response header saying how `count_tokens` was answered.
pub(crate) const TOKEN_COUNT_HEADER: &str = "x-tokenbuddy-token-count";

/// What a request asks the proxy plane for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /healthz`.
    Health,
    /// `GET /livez`: liveness for a load balancer.
    Live,
    /// `GET /readyz`: readiness for a load balancer.
    Ready,
    /// `GET /managed-settings` (Claude Code's managed settings: none).
    ManagedSettings,
    /// `HEAD`/`GET` `/` and `/api/hello`: liveness probes, no token needed.
    Hello,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// A protocol endpoint, forwarded upstream.
    Forward(Protocol),
    /// A WebSocket upgrade on a protocol endpoint: refused at once.
    WebSocket,
    /// Anything under `/v1/videos` (the video job API; `video` sorts out
    /// methods and ids).
    Videos,
    /// A known path with the wrong method; the method it takes.
    NotAllowed(&'static str),
    /// Nothing here.
    Unknown,
}

impl Endpoint {
    /// Classifies a request by method, path (no query) and headers.
    pub(crate) fn of(method: &Method, path: &str, headers: &HeaderMap) -> Endpoint {
        let get = method == Method::GET;
        match path {
            "/" | "/api/hello" if get || method == Method::HEAD => Endpoint::Hello,
            "/" | "/api/hello" => Endpoint::NotAllowed("GET, HEAD"),
            "/healthz" if get => Endpoint::Health,
            "/livez" if get => Endpoint::Live,
            "/readyz" if get => Endpoint::Ready,
            "/managed-settings" if get => Endpoint::ManagedSettings,
            "/v1/models" | "/models" if get => Endpoint::Models,
            "/healthz" | "/livez" | "/readyz" | "/managed-settings" | "/v1/models" | "/models" => {
                Endpoint::NotAllowed("GET")
            }
            COUNT_TOKENS_PATH if method == Method::POST => Endpoint::CountTokens,
            COUNT_TOKENS_PATH => Endpoint::NotAllowed("POST"),
            p if p == "/v1/videos" || p.starts_with("/v1/videos/") => Endpoint::Videos,
            _ => match Protocol::from_path(path) {
                Some(_) if is_websocket_upgrade(headers) => Endpoint::WebSocket,
                Some(p) if method == Method::POST => Endpoint::Forward(p),
                Some(_) => Endpoint::NotAllowed("POST"),
                None => Endpoint::Unknown,
            },
        }
    }

    /// Whether the endpoint needs the access token.
    pub(crate) fn needs_token(self) -> bool {
        matches!(
            self,
            Endpoint::Models | Endpoint::CountTokens | Endpoint::Forward(_) | Endpoint::Videos
        )
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the caller is an Anthropic client (it sends `anthropic-version`
/// or authenticates with `x-api-key`): it gets Anthropic's shapes.
pub(crate) fn is_anthropic_caller(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version") || headers.contains_key("x-api-key")
}

/// `{"ok":true}` for the liveness probes (an empty body for `HEAD`).
pub(crate) fn hello(method: &Method) -> Response<ProxyBody> {
    if method == Method::HEAD {
        let mut r = Response::new(full(Bytes::new()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    json_response(Bytes::from_static(br#"{"ok":true}"#))
}

/// The refusal of a WebSocket upgrade: 426 with a message that says the
/// endpoint streams over HTTP, so Codex falls back without retrying.
pub(crate) fn websocket_refused(path: &str, protocol: Protocol) -> Response<ProxyBody> {
    let mut r = ProxyError::new(
        ErrorCode::WebSocketUnsupported,
        format!("tokenbuddy does not serve WebSocket on {path}; send POST {path} with \"stream\": true for server-sent events"),
    )
    .response(protocol.family());
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The protocols a `/v1/models` caller speaks: Messages for an Anthropic
/// caller, OpenAI's otherwise.
pub(crate) fn caller_protocols(anthropic: bool) -> &'static [Protocol] {
    if anthropic {
        &[Protocol::Messages]
    } else {
        &[
            Protocol::ChatCompletions,
            Protocol::Responses,
            Protocol::Embeddings,
            Protocol::ImagesGenerations,
        ]
    }
}

/// One model in Anthropic's `/v1/models` list.
#[derive(Debug, Serialize)]
struct AnthropicModel<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'static str,
}

/// Anthropic's list page (everything on one page).
#[derive(Debug, Serialize)]
struct AnthropicModelList<'a> {
    data: Vec<AnthropicModel<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// One model in OpenAI's `/v1/models` list.
#[derive(Debug, Serialize)]
struct OpenAiModel<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Debug, Serialize)]
struct OpenAiModelList<'a> {
    object: &'static str,
    data: Vec<OpenAiModel<'a>>,
}

/// The `/v1/models` body in the caller's shape. The daemon knows no
/// creation date; Anthropic's shape requires one, so it is the epoch.
pub(crate) fn models_body(models: &[String], anthropic: bool) -> Bytes {
    let json = if anthropic {
        serde_json::to_vec(&AnthropicModelList {
            data: models
                .iter()
                .map(|id| AnthropicModel {
                    kind: "model",
                    id,
                    display_name: id,
                    created_at: "1970-01-01T00:00:00Z",
                })
                .collect(),
            has_more: false,
            first_id: models.first().map(String::as_str),
            last_id: models.last().map(String::as_str),
        })
    } else {
        serde_json::to_vec(&OpenAiModelList {
            object: "list",
            data: models
                .iter()
                .map(|id| OpenAiModel {
                    id,
                    object: "model",
                    created: 0,
                    owned_by: "tokenbuddy",
                })
                .collect(),
        })
    };
    // Serialising strings and numbers cannot fail.
    Bytes::from(json.unwrap_or_default())
}

/// `count_tokens` answered locally: `{"input_tokens": N}`, with the header
/// that says it is an estimate and how it was made.
pub(crate) fn local_count(body: Bytes) -> Result<Response<ProxyBody>, ProxyError> {
    let estimate = tb_tokens::count_messages_request(&body)
        .map_err(|e| ProxyError::new(ErrorCode::InvalidJson, e.to_string()))?;
    let json = format!("{{\"input_tokens\":{}}}", estimate.input_tokens);
    let mut r = json_response(Bytes::from(json));
    r.headers_mut().insert(
        TOKEN_COUNT_HEADER,
        HeaderValue::from_static(tb_tokens::METHOD),
    );
    Ok(r)
}

/// Asks a Messages provider to count: `Some` with its 2xx answer, `None`
/// when it cannot (no such endpoint, an error, no answer in time) and the
/// daemon should count itself. Never counts against the provider: this is
/// a free side call, not a routed request.
pub(crate) async fn upstream_count(
    client: &crate::UpstreamClient,
    upstream: &tb_router::Upstream,
    client_headers: &HeaderMap,
    query: Option<&str>,
    body: Bytes,
    deadline: std::time::Duration,
) -> Option<Response<ProxyBody>> {
    use http_body_util::BodyExt as _;
    let mut url = format!("{}/messages/count_tokens", upstream.base_url());
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    let uri: http::Uri = url.parse().ok()?;
    let mut req = http::Request::new(http_body_util::Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for name in ["anthropic-version", "anthropic-beta"] {
        for value in client_headers.get_all(name) {
            headers.append(name, value.clone());
        }
    }
    crate::headers::anthropic_headers(headers, upstream, false);
    if !headers.contains_key("anthropic-version") {
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    if let Some((name, value)) = upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    for (k, v) in upstream.extra_headers() {
        headers.insert(k.clone(), v.clone());
    }
    let answer = async {
        let resp = client.request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let limited = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
        limited.collect().await.ok().map(|b| b.to_bytes())
    };
    let bytes = tokio::time::timeout(deadline, answer).await.ok()??;
    let mut r = json_response(bytes);
    r.headers_mut()
        .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("upstream"));
    Some(r)
}

pub(crate) fn json_response(body: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, path: &str, headers: &[(&'static str, &'static str)]) -> Endpoint {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        Endpoint::of(&method, path, &map)
    }

    #[test]
    fn every_path_and_method_maps_to_its_endpoint() {
        let cases = [
            (Method::HEAD, "/", vec![], Endpoint::Hello),
            (Method::GET, "/", vec![], Endpoint::Hello),
            (Method::GET, "/api/hello", vec![], Endpoint::Hello),
            (Method::POST, "/", vec![], Endpoint::NotAllowed("GET, HEAD")),
            (Method::GET, "/healthz", vec![], Endpoint::Health),
            (Method::GET, "/livez", vec![], Endpoint::Live),
            (Method::GET, "/readyz", vec![], Endpoint::Ready),
            (Method::POST, "/readyz", vec![], Endpoint::NotAllowed("GET")),
            (Method::GET, "/v1/models", vec![], Endpoint::Models),
            (
                Method::POST,
                "/v1/models",
                vec![],
                Endpoint::NotAllowed("GET"),
            ),
            (
                Method::POST,
                COUNT_TOKENS_PATH,
                vec![],
                Endpoint::CountTokens,
            ),
            (
                Method::GET,
                COUNT_TOKENS_PATH,
                vec![],
                Endpoint::NotAllowed("POST"),
            ),
            (
                Method::POST,
                "/v1/messages",
                vec![],
                Endpoint::Forward(Protocol::Messages),
            ),
            (
                Method::GET,
                "/v1/responses",
                vec![("upgrade", "websocket"), ("connection", "Upgrade")],
                Endpoint::WebSocket,
            ),
            (
                Method::GET,
                "/v1/responses",
                vec![],
                Endpoint::NotAllowed("POST"),
            ),
            (Method::GET, "/v2/nothing", vec![], Endpoint::Unknown),
        ];
        for (method, path, headers, want) in cases {
            assert_eq!(of(method.clone(), path, &headers), want, "{method} {path}");
        }
    }

    #[test]
    fn only_probes_and_health_go_without_the_token() {
        assert!(!Endpoint::Hello.needs_token());
        assert!(!Endpoint::Health.needs_token());
        assert!(!Endpoint::Live.needs_token());
        assert!(!Endpoint::Ready.needs_token());
        assert!(Endpoint::Models.needs_token());
        assert!(Endpoint::CountTokens.needs_token());
        assert!(Endpoint::Forward(Protocol::ChatCompletions).needs_token());
    }

    #[test]
    fn models_come_in_the_callers_shape() {
        let models = vec!["a".to_string(), "b".to_string()];
        let anthropic: serde_json::Value =
            serde_json::from_slice(&models_body(&models, true)).unwrap();
        assert_eq!(anthropic["data"][1]["type"], "model");
        assert_eq!(anthropic["data"][0]["display_name"], "a");
        assert_eq!(anthropic["first_id"], "a");
        assert_eq!(anthropic["last_id"], "b");
        assert_eq!(anthropic["has_more"], false);
        let openai: serde_json::Value =
            serde_json::from_slice(&models_body(&models, false)).unwrap();
        assert_eq!(openai["object"], "list");
        assert_eq!(openai["data"][0]["object"], "model");
        let empty: serde_json::Value = serde_json::from_slice(&models_body(&[], true)).unwrap();
        assert!(empty["first_id"].is_null());
    }
}
