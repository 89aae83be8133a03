//! End-to-end: the agent gateway surface (translation.md, "The agent
//! gateway surface") and the headers that only native routes get. One
//! daemon in front of two mocks: `chat` serves `chat-only` over chat
//! completions only, `an` serves `claude-native` over Messages and drops
//! one `anthropic-beta` value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use tb_domain::Protocol;
use tb_test_support::daemon::{Daemon, body_bytes, body_json};
use tb_test_support::{MockUpstream, Reply, canned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT_MODEL: &str = "chat-only";
const CLAUDE_MODEL: &str = "claude-native";
const CHAT_KEY: &str = "sk-chat-provider-key";
const DROPPED_BETA: &str = "dropped-beta-2025-01-01";
const METHOD: &str = "estimate; tokenizer=o200k_base; images=1600; rounded up 10%";

struct Gateway {
    chat: MockUpstream,
    an: MockUpstream,
    daemon: Daemon,
}

async fn gateway() -> Gateway {
    gateway_with("").await
}

/// The gateway with `extra` config (whole sections) before the providers.
async fn gateway_with(extra: &str) -> Gateway {
    let chat = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let config = format!(
        r#"
{extra}

[log]
level = "info,tb_proxy=debug"

[[providers]]
id = "chat"
kind = "openai"
base_url = "{chat}"
api_key = "{CHAT_KEY}"
models = ["{CHAT_MODEL}"]
protocols = ["chat_completions"]

[[providers]]
id = "an"
kind = "anthropic"
base_url = "{an}"
api_key = "{ANTHROPIC_KEY}"
models = ["{CLAUDE_MODEL}"]
protocols = ["messages"]
drop_anthropic_betas = ["{DROPPED_BETA}"]
"#,
        chat = chat.base_url(),
        an = an.base_url(),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    Gateway { chat, an, daemon }
}

impl Gateway {
    /// Headers of an Anthropic SDK: the token as `x-api-key`.
    fn anthropic_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", self.daemon.token.clone()),
            ("anthropic-version", "2023-06-01".to_string()),
            ("content-type", "application/json".to_string()),
        ]
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> http::Response<hyper::body::Incoming> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.daemon
            .request(method, path, &headers, body.to_string())
            .await
    }
}

fn messages_body(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"user","content":"Hi"}}]}}"#
    )
}

#[tokio::test]
async fn probes_answer_without_a_token() {
    let g = gateway().await;
    let head = g.send(Method::HEAD, "/", &[], "").await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert!(body_bytes(head).await.is_empty());
    for path in ["/", "/api/hello"] {
        let get = g.send(Method::GET, path, &[], "").await;
        assert_eq!(get.status(), 200, "GET {path}");
        assert_eq!(body_bytes(get).await, r#"{"ok":true}"#, "GET {path}");
    }
    let head = g.send(Method::HEAD, "/api/hello", &[], "").await;
    assert_eq!(head.status(), 200);
    // The model list and the token count are not probes: they need the token.
    let models = g.send(Method::GET, "/v1/models", &[], "").await;
    assert_eq!(models.status(), 401);
    let count = g
        .send(
            Method::POST,
            "/v1/messages/count_tokens",
            &[("anthropic-version", "2023-06-01".to_string())],
            &messages_body(CHAT_MODEL),
        )
        .await;
    assert_eq!(count.status(), 401);
    let v = body_json(count).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    assert_eq!(g.chat.request_count() + g.an.request_count(), 0);
}

#[tokio::test]
async fn models_come_in_the_callers_shape_with_translated_models_listed() {
    let g = gateway().await;
    // An OpenAI caller (Bearer token): OpenAI's list.
    let bearer = vec![("authorization", format!("Bearer {}", g.daemon.token))];
    let resp = g.send(Method::GET, "/v1/models", &bearer, "").await;
    assert_eq!(resp.status(), 200);
    let v = body_json(resp).await;
    assert_eq!(
        v,
        serde_json::json!({"object": "list", "data": [
            {"id": CHAT_MODEL, "object": "model", "created": 0, "owned_by": "tokenbuddy"},
            {"id": CLAUDE_MODEL, "object": "model", "created": 0, "owned_by": "tokenbuddy"},
        ]})
    );

    // An Anthropic caller: Anthropic's page, the chat-only model included
    // (Messages reaches it by translation).
    let anthropic_page = serde_json::json!({
        "data": [
            {"type": "model", "id": CHAT_MODEL, "display_name": CHAT_MODEL, "created_at": "1970-01-01T00:00:00Z"},
            {"type": "model", "id": CLAUDE_MODEL, "display_name": CLAUDE_MODEL, "created_at": "1970-01-01T00:00:00Z"},
        ],
        "has_more": false,
        "first_id": CHAT_MODEL,
        "last_id": CLAUDE_MODEL,
    });
    let resp = g
        .send(Method::GET, "/v1/models", &g.anthropic_headers(), "")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await, anthropic_page);
    // `x-api-key` alone marks an Anthropic caller too; so does
    // `anthropic-version` next to a Bearer token.
    let key_only = vec![("x-api-key", g.daemon.token.clone())];
    let resp = g.send(Method::GET, "/v1/models", &key_only, "").await;
    assert_eq!(body_json(resp).await, anthropic_page);
    let mut version = bearer.clone();
    version.push(("anthropic-version", "2023-06-01".to_string()));
    let resp = g.send(Method::GET, "/v1/models", &version, "").await;
    assert_eq!(body_json(resp).await, anthropic_page);
    assert_eq!(g.chat.request_count() + g.an.request_count(), 0);
}

/// The ids of a `/v1/models` list, either shape.
fn model_ids(list: &serde_json::Value) -> Vec<&str> {
    let data = list["data"].as_array().unwrap();
    data.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn without_translation_each_caller_sees_only_its_own_protocols_models() {
    let g = gateway_with("[routing]\ntranslate = false").await;
    let bearer = vec![("authorization", format!("Bearer {}", g.daemon.token))];
    let v = body_json(g.send(Method::GET, "/v1/models", &bearer, "").await).await;
    assert_eq!(model_ids(&v), [CHAT_MODEL], "{v}");
    let v = body_json(
        g.send(Method::GET, "/v1/models", &g.anthropic_headers(), "")
            .await,
    )
    .await;
    assert_eq!(model_ids(&v), [CLAUDE_MODEL], "{v}");
    assert_eq!(v["first_id"], CLAUDE_MODEL);
    // What is listed is what is served: the unlisted model is refused.
    let resp = g
        .send(
            Method::POST,
            "/v1/messages",
            &g.anthropic_headers(),
            &messages_body(CHAT_MODEL),
        )
        .await;
    assert_ne!(resp.status(), 200);
    assert_eq!(g.chat.request_count() + g.an.request_count(), 0);
}

#[tokio::test]
async fn count_tokens_for_a_chat_only_model_is_counted_locally() {
    let g = gateway().await;
    let headers = g.anthropic_headers();
    // "Hi": 3 (request) + 4 (message) + 1 token = 8, rounded up 10 % = 9.
    let resp = g
        .send(
            Method::POST,
            "/v1/messages/count_tokens",
            &headers,
            &messages_body(CHAT_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], METHOD);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        body_json(resp).await,
        serde_json::json!({"input_tokens": 9})
    );
    // An image counts its fixed 1,600: 3 + 4 + 1600 = 1607 → 1768.
    let image = format!(
        r#"{{"model":"{CHAT_MODEL}","messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"url","url":"https://example.com/a.png"}}}}]}}]}}"#
    );
    let resp = g
        .send(Method::POST, "/v1/messages/count_tokens", &headers, &image)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body_json(resp).await,
        serde_json::json!({"input_tokens": 1768})
    );
    // Nobody upstream was asked.
    assert_eq!(g.chat.request_count(), 0);
    assert_eq!(g.an.request_count(), 0);
}

#[tokio::test]
async fn count_tokens_for_a_messages_model_is_forwarded() {
    let g = gateway().await;
    let answer = r#"{"input_tokens":1234}"#;
    g.an.push_reply(Reply::json(200, answer));
    let mut headers = g.anthropic_headers();
    headers.push(("anthropic-beta", "token-counting-2024-11-01".to_string()));
    let body = messages_body(CLAUDE_MODEL);
    let resp = g
        .send(Method::POST, "/v1/messages/count_tokens", &headers, &body)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], "upstream");
    assert_eq!(body_bytes(resp).await, answer);

    let seen = g.an.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path_and_query, "/v1/messages/count_tokens");
    assert_eq!(
        req.json(),
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    );
    assert_eq!(req.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        req.header("anthropic-beta"),
        Some("token-counting-2024-11-01")
    );
    assert_eq!(req.header("authorization"), None);
    assert_eq!(g.chat.request_count(), 0);

    // A provider that cannot count (404): the daemon counts itself.
    g.an.push_reply(Reply::anthropic_error(
        404,
        "not_found_error",
        "no such endpoint",
    ));
    let resp = g
        .send(Method::POST, "/v1/messages/count_tokens", &headers, &body)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], METHOD);
    assert_eq!(
        body_json(resp).await,
        serde_json::json!({"input_tokens": 9})
    );
    assert_eq!(g.an.request_count(), 2);
}

/// `count_tokens` forwarded to a Messages provider is a native call: it
/// gets the client's betas as `POST /v1/messages` would, every header line
/// of them, minus the provider's drop list.
#[tokio::test]
async fn count_tokens_forwarded_honours_the_beta_drop_list() {
    let g = gateway().await;
    g.an.push_reply(Reply::json(200, r#"{"input_tokens":5}"#));
    let mut headers = g.anthropic_headers();
    headers.push(("anthropic-beta", format!("keep-a,{DROPPED_BETA}")));
    headers.push(("anthropic-beta", "keep-b".to_string()));
    let resp = g
        .send(
            Method::POST,
            "/v1/messages/count_tokens",
            &headers,
            &messages_body(CLAUDE_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], "upstream");
    let seen = g.an.requests();
    let betas: Vec<&str> = seen[0]
        .headers
        .get_all("anthropic-beta")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        betas,
        ["keep-a,keep-b"],
        "daemon logs:\n{}",
        g.daemon.logs()
    );
}

/// Claude Code asks `POST /v1/messages/count_tokens?beta=true`: the query
/// string, meant for the Messages protocol, goes to the Messages provider
/// as it does on a native `POST /v1/messages?beta=true`.
#[tokio::test]
async fn count_tokens_forwarded_keeps_the_query_string() {
    let g = gateway().await;
    g.an.push_reply(Reply::json(200, r#"{"input_tokens":5}"#));
    let resp = g
        .send(
            Method::POST,
            "/v1/messages/count_tokens?beta=true",
            &g.anthropic_headers(),
            &messages_body(CLAUDE_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], "upstream");
    assert_eq!(body_bytes(resp).await, r#"{"input_tokens":5}"#);
    assert_eq!(
        g.an.requests()[0].path_and_query,
        "/v1/messages/count_tokens?beta=true",
        "daemon logs:\n{}",
        g.daemon.logs()
    );
}

#[tokio::test]
async fn websocket_upgrade_on_responses_is_refused_at_once() {
    let g = gateway().await;
    let addr = g
        .daemon
        .proxy_url
        .strip_prefix("http://")
        .unwrap()
        .to_string();
    let request = format!(
        "GET /v1/responses HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        g.daemon.token
    );
    // The whole exchange, to the daemon closing the connection, well
    // within what a client would wait for a handshake.
    let raw = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    })
    .await
    .expect("the daemon answered the upgrade and closed the connection within 5 s");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(
        lines.next(),
        Some("HTTP/1.1 426 Upgrade Required"),
        "{text}"
    );
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("connection"), ["close"], "{text}");
    assert!(get("upgrade").is_empty(), "{text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "websocket_unsupported", "{text}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/responses"),
        "{text}"
    );
    assert_eq!(g.chat.request_count() + g.an.request_count(), 0);
}

#[tokio::test]
async fn anthropic_betas_and_query_reach_native_routes_only() {
    let g = gateway().await;
    let mut headers = g.anthropic_headers();
    headers.push(("anthropic-beta", format!("keep-a,{DROPPED_BETA}")));
    headers.push(("anthropic-beta", "keep-b".to_string()));

    // Native: the betas minus the dropped one, the query string as sent.
    let resp = g
        .send(
            Method::POST,
            "/v1/messages?beta=true",
            &headers,
            &messages_body(CLAUDE_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "an");
    assert_eq!(
        body_bytes(resp).await,
        canned::json(Protocol::Messages, CLAUDE_MODEL)
    );
    let seen = g.an.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/messages?beta=true");
    let betas: Vec<&str> = seen[0]
        .headers
        .get_all("anthropic-beta")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(betas, ["keep-a,keep-b"]);
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen[0].header("x-api-key"), Some(ANTHROPIC_KEY));

    // Only kept betas: they pass as sent.
    let mut kept = g.anthropic_headers();
    kept.push(("anthropic-beta", "keep-c".to_string()));
    let resp = g
        .send(
            Method::POST,
            "/v1/messages",
            &kept,
            &messages_body(CLAUDE_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let seen = g.an.requests();
    assert_eq!(seen[1].path_and_query, "/v1/messages");
    assert_eq!(seen[1].header("anthropic-beta"), Some("keep-c"));

    // Translated: no Anthropic header, no query string, the chat
    // provider's own key and nothing of the client's credentials.
    let resp = g
        .send(
            Method::POST,
            "/v1/messages?beta=true",
            &headers,
            &messages_body(CHAT_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "chat");
    let v = body_json(resp).await;
    assert_eq!(v["type"], "message", "{v}");
    let seen = g.chat.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path_and_query, "/v1/chat/completions");
    assert_eq!(req.header("anthropic-beta"), None);
    assert_eq!(req.header("anthropic-version"), None);
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {CHAT_KEY}").as_str())
    );
    assert_eq!(req.json()["model"], CHAT_MODEL);
    assert_eq!(req.json()["messages"][0]["role"], "user");
    assert_eq!(g.an.request_count(), 2);
    let logs = g.daemon.logs();
    assert!(!logs.contains(&g.daemon.token), "the token is in the logs");
    assert!(!logs.contains(ANTHROPIC_KEY) && !logs.contains(CHAT_KEY));
}

#[tokio::test]
async fn foreign_thinking_never_reaches_a_native_anthropic_upstream() {
    let g = gateway().await;
    // Turn 1, translated: the chat upstream reasons (DeepSeek-style), the
    // agent gets a thinking block with an empty signature.
    g.chat.push_reply(Reply::json(
        200,
        format!(
            r#"{{"id":"c1","object":"chat.completion","created":1,"model":"{CHAT_MODEL}","choices":[{{"index":0,"message":{{"role":"assistant","reasoning_content":"foreign thoughts","content":"Hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}}}"#
        ),
    ));
    let resp = g
        .send(
            Method::POST,
            "/v1/messages",
            &g.anthropic_headers(),
            &messages_body(CHAT_MODEL),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer = body_json(resp).await;
    let thinking = answer["content"][0].clone();
    assert_eq!(thinking["type"], "thinking", "{answer}");
    assert_eq!(thinking["signature"], "", "{answer}");

    // Turn 2 goes to the native Anthropic upstream with that history, as
    // the agent sends it (Python-style spacing): the foreign block is left
    // out, the signed one and every other byte stay.
    let history = serde_json::json!({
        "model": CLAUDE_MODEL,
        "max_tokens": 16,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [
                thinking,
                {"type": "thinking", "thinking": "native", "signature": "c2lnbmVk"},
                answer["content"][1].clone(),
            ]},
            {"role": "user", "content": "Again"},
        ],
    });
    let body = serde_json::to_string_pretty(&history).unwrap();
    let resp = g
        .send(Method::POST, "/v1/messages", &g.anthropic_headers(), &body)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "an");
    let seen: serde_json::Value = serde_json::from_slice(&g.an.requests()[0].body).unwrap();
    let mut expected = history.clone();
    expected["messages"][1]["content"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    assert_eq!(seen, expected);

    // The token count asked of the native upstream gets the same body.
    g.an.push_reply(Reply::json(200, r#"{"input_tokens":5}"#));
    let resp = g
        .send(
            Method::POST,
            "/v1/messages/count_tokens",
            &g.anthropic_headers(),
            &body,
        )
        .await;
    assert_eq!(resp.headers()["x-tokenbuddy-token-count"], "upstream");
    let seen: serde_json::Value = serde_json::from_slice(&g.an.requests()[1].body).unwrap();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn made_up_responses_items_never_reach_a_native_openai_upstream() {
    let oa = MockUpstream::start().await.unwrap();
    let g = gateway_with(&format!(
        r#"
[[providers]]
id = "oa"
kind = "openai"
base_url = "{}"
api_key = "sk-openai-provider-key"
models = ["gpt-native"]
protocols = ["responses"]
"#,
        oa.base_url()
    ))
    .await;
    // Turn 1, translated: the chat upstream reasons, the client gets a
    // reasoning item and a message with ids no OpenAI server issued.
    g.chat.push_reply(Reply::json(
        200,
        format!(
            r#"{{"id":"c1","object":"chat.completion","created":1,"model":"{CHAT_MODEL}","choices":[{{"index":0,"message":{{"role":"assistant","reasoning_content":"foreign thoughts","content":"Hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}}}"#
        ),
    ));
    let bearer = vec![
        ("authorization", format!("Bearer {}", g.daemon.token)),
        ("content-type", "application/json".to_string()),
    ];
    let turn1 = serde_json::json!({"model": CHAT_MODEL, "input": "Hi"}).to_string();
    let resp = g.send(Method::POST, "/v1/responses", &bearer, &turn1).await;
    assert_eq!(resp.status(), 200);
    let answer = body_json(resp).await;
    let output = answer["output"].as_array().unwrap().clone();
    assert_eq!(output[0]["type"], "reasoning", "{answer}");
    assert_eq!(output[1]["type"], "message", "{answer}");

    // Turn 2 goes to the native Responses upstream with that history, as
    // an SDK echoes it (ids kept) and as Codex sends it (ids dropped,
    // `encrypted_content: null`), beside OpenAI's own encrypted reasoning.
    let native = serde_json::json!({"type": "reasoning", "id": "rs_68ab12cd", "summary": [], "encrypted_content": "gAAAAB"});
    let codex_echo = serde_json::json!({"type": "reasoning", "summary": output[0]["summary"].clone(), "encrypted_content": null});
    let history = |items: Vec<serde_json::Value>| serde_json::json!({"model": "gpt-native", "store": false, "input": items});
    let user = |t: &str| serde_json::json!({"role": "user", "content": t});
    let sent = history(vec![
        user("Hi"),
        output[0].clone(),
        output[1].clone(),
        codex_echo,
        native.clone(),
        user("Again"),
    ]);
    let body = serde_json::to_string_pretty(&sent).unwrap();
    let resp = g.send(Method::POST, "/v1/responses", &bearer, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "oa");
    let seen: serde_json::Value = serde_json::from_slice(&oa.requests()[0].body).unwrap();
    let mut message = output[1].clone();
    message.as_object_mut().unwrap().remove("id");
    assert_eq!(
        seen,
        history(vec![user("Hi"), message, native, user("Again")])
    );

    // A native history goes as the client sent it, byte for byte.
    let own = history(vec![
        user("Hi"),
        serde_json::json!({"type": "reasoning", "id": "rs_68ab12cd", "summary": [], "encrypted_content": "gAAAAB"}),
    ]);
    let own = serde_json::to_string_pretty(&own).unwrap();
    let resp = g.send(Method::POST, "/v1/responses", &bearer, &own).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(oa.requests()[1].body, own.as_bytes());
}
