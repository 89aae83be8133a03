//! End-to-end protocol translation through the real daemon: a client of
//! one protocol served by an upstream that speaks another (the scripted
//! [`AgentUpstream`] answers in whatever protocol it is asked in, with
//! usage), failover across native and translated routes, refused fields,
//! and the switches that turn translation off (translation.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Method;
use serde_json::{Value, json};
use tb_domain::Protocol;
use tb_test_support::agent_upstream::{AgentUpstream, INPUT_TOKENS, OUTPUT_TOKENS, ToolTask};
use tb_test_support::daemon::{Daemon, body_bytes, body_json};
use tb_test_support::text_and_call::{self, TextAndCallUpstream};
use tb_test_support::{MockUpstream, Reply};

const MODEL: &str = "m";
const READ_FILE: &str = "/w/secret.txt";

fn task() -> ToolTask {
    ToolTask {
        file: READ_FILE.into(),
        marker: "tb-nonce-".into(),
    }
}

/// A `[[providers]]` entry serving `model` over the given protocols only.
fn provider(id: &str, kind: &str, url: &str, model: &str, protocols: &str, extra: &str) -> String {
    let key = if kind == "anthropic" {
        ANTHROPIC_KEY
    } else {
        OPENAI_KEY
    };
    format!(
        "\n[[providers]]\nid = \"{id}\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key = \"{key}\"\nmodels = [\"{model}\"]\nprotocols = [{protocols}]\n{extra}"
    )
}

/// Failover mechanics without stickiness or a breaker that benches the
/// deliberately failing upstream.
const HEADER: &str = "[log]\nlevel = \"info,tb_proxy=debug\"\n[routing]\nsticky_reset_ms = 0\nretry_same_on_5xx = false\n[breaker]\nmax_failures = 1000\n";

async fn messages_post(daemon: &Daemon, body: &Value) -> http::Response<hyper::body::Incoming> {
    daemon
        .request(
            Method::POST,
            "/v1/messages",
            &[
                ("x-api-key", &daemon.token),
                ("anthropic-version", "2023-06-01"),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await
}

/// A port nothing listens on.
fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/v1")
}

/// An SSE body as (event name, JSON data) pairs; `[DONE]` is `Null`.
fn sse_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = Some(n.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.trim_start());
            }
        }
        let data = data.join("\n");
        let value = if data == "[DONE]" {
            Value::Null
        } else {
            serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"))
        };
        out.push((name, value));
    }
    out
}

/// A Messages stream put together the way the Anthropic SDK does: the
/// message of `message_start`, each block from its start and deltas, the
/// stop reason and usage of `message_delta` (fields it carries win).
fn accumulate_messages(events: &[(Option<String>, Value)]) -> Value {
    let mut message = Value::Null;
    let mut partial_json: Vec<String> = Vec::new();
    for (name, data) in events {
        let kind = data["type"].as_str().unwrap();
        assert_eq!(name.as_deref(), Some(kind), "event name and type agree");
        match kind {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let blocks = message["content"].as_array_mut().unwrap();
                assert_eq!(blocks.len(), i, "blocks start in index order");
                blocks.push(data["content_block"].clone());
                partial_json.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        );
                        block["text"] = json!(text);
                    }
                    "input_json_delta" => {
                        partial_json[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if message["content"][i]["type"] == "tool_use" {
                    message["content"][i]["input"] =
                        serde_json::from_str(&partial_json[i]).unwrap();
                }
            }
            "message_delta" => {
                for (k, v) in data["delta"].as_object().unwrap() {
                    message[k] = v.clone();
                }
                for (k, v) in data["usage"].as_object().unwrap() {
                    message["usage"][k] = v.clone();
                }
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

fn read_tool() -> Value {
    json!([{
        "name": "Read",
        "description": "Reads a file",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
    }])
}

#[tokio::test]
async fn a_messages_client_is_served_by_a_chat_only_upstream() {
    let upstream = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "{HEADER}{}",
        provider(
            "up",
            "openai",
            &upstream.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        )
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let plain = json!({"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Say ok"}]});
    let mut with_tool = plain.clone();
    with_tool["tools"] = read_tool();
    let text_block = json!([{"type": "text", "text": "ok"}]);
    let tool_block = json!([{"type": "tool_use", "id": "call_tb_1", "name": "Read", "input": {"file_path": READ_FILE}}]);
    let usage = |v: &Value| {
        (
            v["usage"]["input_tokens"].clone(),
            v["usage"]["output_tokens"].clone(),
        )
    };
    let want_usage = (json!(INPUT_TOKENS), json!(OUTPUT_TOKENS));

    for (body, content, stop) in [
        (&plain, &text_block, "end_turn"),
        (&with_tool, &tool_block, "tool_use"),
    ] {
        // Whole answer.
        let resp = messages_post(&daemon, body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "up");
        assert_eq!(resp.headers()["x-tokenbuddy-attempts"], "up:200|ok");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v = body_json(resp).await;
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["role"], "assistant", "{v}");
        assert_eq!(v["model"], MODEL, "{v}");
        assert_eq!(&v["content"], content, "{v}");
        assert_eq!(v["stop_reason"], stop, "{v}");
        assert_eq!(usage(&v), want_usage, "{v}");

        // Streamed.
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let resp = messages_post(&daemon, &streamed).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = sse_events(&body_bytes(resp).await);
        let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
        assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
        let m = accumulate_messages(&events);
        assert_eq!(&m["content"], content, "{m}");
        assert_eq!(m["stop_reason"], stop, "{m}");
        assert_eq!(m["model"], MODEL, "{m}");
        assert_eq!(usage(&m), want_usage, "{m}");
    }

    // The upstream was asked in its own protocol, a stream with usage.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 4);
    for (i, r) in seen.iter().enumerate() {
        assert_eq!(r.path_and_query, "/v1/chat/completions", "#{i}");
        assert_eq!(r.json["model"], MODEL, "#{i}");
        assert_eq!(r.json["messages"][0]["content"], "Say ok", "#{i}");
        assert_eq!(r.json["max_tokens"], 100, "#{i}");
        assert_eq!(r.stream, i % 2 == 1, "#{i}");
        if r.stream {
            assert_eq!(
                r.json["stream_options"]["include_usage"], true,
                "#{i}: {}",
                r.json
            );
        }
        let tools = if i < 2 {
            vec![]
        } else {
            vec!["Read".to_string()]
        };
        assert_eq!(r.tools, tools, "#{i}");
    }

    // The metrics count the translated calls by both protocols.
    let (_, text) = control(&daemon, Method::GET, "/metrics", None, false, "").await;
    let m = parse_metrics(&text);
    assert_eq!(
        m.get(r#"tb_translated_requests_total{endpoint="messages",upstream_protocol="chat"}"#),
        Some(&4.0),
        "{text}"
    );

    // The ledger has the upstream's usage for every call.
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 4, "{records:#?}");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["protocol"], "messages", "{r:#}");
        assert_eq!(r["upstream_protocol"], "chat_completions", "{r:#}");
        assert_eq!(r["winner"], "up", "{r:#}");
        assert_eq!(r["model"], MODEL, "{r:#}");
        assert_eq!(r["stream"], i % 2 == 1, "{r:#}");
        assert_eq!(r["input_tokens"], INPUT_TOKENS, "{r:#}");
        assert_eq!(r["output_tokens"], OUTPUT_TOKENS, "{r:#}");
        assert_eq!(r["usage_missing"], false, "{r:#}");
    }
}

/// A Messages client whose native upstream fails (500, or nothing
/// listening) is served by a chat-only one, the native route tried first
/// whatever the config order.
#[tokio::test]
async fn a_failing_native_route_fails_over_to_a_translated_one() {
    let native = MockUpstream::start().await.unwrap();
    let chat = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "{HEADER}{}{}{}",
        provider(
            "chat",
            "openai",
            &chat.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
        provider(
            "native",
            "anthropic",
            &native.base_url(),
            MODEL,
            "\"messages\"",
            ""
        ),
        provider(
            "gone",
            "anthropic",
            &refused_url(),
            "m2",
            "\"messages\"",
            ""
        ),
    ) + &provider(
        "chat2",
        "openai",
        &chat.base_url(),
        "m2",
        "\"chat_completions\"",
        "",
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let body = |model: &str, stream: bool| json!({"model": model, "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "Say ok"}]});
    let cases = [
        (MODEL, false, "native:500|server_error,chat:200|ok", "chat"),
        (MODEL, true, "native:500|server_error,chat:200|ok", "chat"),
        ("m2", false, "gone:-|connect_failed,chat2:200|ok", "chat2"),
        ("m2", true, "gone:-|connect_failed,chat2:200|ok", "chat2"),
    ];
    for (model, stream, attempts, winner) in cases {
        if model == MODEL {
            native.push_reply(Reply::anthropic_error(
                500,
                "api_error",
                "upstream exploded",
            ));
        }
        let resp = messages_post(&daemon, &body(model, stream)).await;
        assert_eq!(resp.status(), 200, "{model} stream={stream}");
        assert_eq!(
            resp.headers()["x-tokenbuddy-attempts"],
            attempts,
            "{model} stream={stream}"
        );
        assert_eq!(resp.headers()["x-tokenbuddy-upstream"], winner);
        let bytes = body_bytes(resp).await;
        let m = if stream {
            accumulate_messages(&sse_events(&bytes))
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(m["content"], json!([{"type": "text", "text": "ok"}]), "{m}");
        assert_eq!(m["usage"]["input_tokens"], INPUT_TOKENS, "{m}");
        assert_eq!(m["usage"]["output_tokens"], OUTPUT_TOKENS, "{m}");
    }
    assert_eq!(native.request_count(), 2);
    assert_eq!(native.requests()[0].path(), "/v1/messages");
    assert_eq!(chat.requests().len(), 4);

    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["failed_over"], true, "{r:#}");
        assert_eq!(r["protocol"], "messages", "{r:#}");
        assert_eq!(r["upstream_protocol"], "chat_completions", "{r:#}");
        assert_eq!(r["attempts"].as_array().unwrap().len(), 2, "{r:#}");
        assert_eq!(r["input_tokens"], INPUT_TOKENS, "{r:#}");
        assert_eq!(r["output_tokens"], OUTPUT_TOKENS, "{r:#}");
    }
}

/// The reverse: a chat client whose native chat upstream fails is served
/// by a Messages-only upstream.
#[tokio::test]
async fn a_chat_client_fails_over_to_a_messages_upstream() {
    let native = MockUpstream::start().await.unwrap();
    let an = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "{HEADER}{}{}",
        provider("an", "anthropic", &an.base_url(), MODEL, "\"messages\"", ""),
        provider(
            "native",
            "openai",
            &native.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();

    native.push_reply(Reply::openai_error(
        500,
        "server_error",
        "boom",
        "upstream exploded",
    ));
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "Say ok"}]})
                .to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "native:500|server_error,an:200|ok"
    );
    let v = body_json(resp).await;
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["model"], MODEL, "{v}");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "ok", "refusal": null}),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], INPUT_TOKENS, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], OUTPUT_TOKENS, "{v}");
    assert_eq!(
        v["usage"]["total_tokens"],
        INPUT_TOKENS + OUTPUT_TOKENS,
        "{v}"
    );

    // Streamed, with a tool call, usage asked for.
    native.push_reply(Reply::openai_error(
        500,
        "server_error",
        "boom",
        "upstream exploded",
    ));
    let body = json!({
        "model": MODEL, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Read it"}],
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
    });
    let resp = daemon
        .post_json("/v1/chat/completions", body.to_string())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "native:500|server_error,an:200|ok"
    );
    let events = sse_events(&body_bytes(resp).await);
    assert_eq!(
        events.last(),
        Some(&(None, Value::Null)),
        "ends with [DONE]"
    );
    let (mut name, mut id, mut args, mut finish, mut usage) = (
        String::new(),
        String::new(),
        String::new(),
        Value::Null,
        Value::Null,
    );
    for (_, chunk) in &events[..events.len() - 1] {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().unwrap() {
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(call["index"], 0, "{chunk}");
                name.push_str(call["function"]["name"].as_str().unwrap_or(""));
                id.push_str(call["id"].as_str().unwrap_or(""));
                args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
    }
    assert_eq!(name, "read_file");
    assert_eq!(id, "toolu_tb_1");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"path": READ_FILE})
    );
    assert_eq!(finish, "tool_calls");
    assert_eq!(usage["prompt_tokens"], INPUT_TOKENS);
    assert_eq!(usage["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(usage["total_tokens"], INPUT_TOKENS + OUTPUT_TOKENS);

    // The Messages upstream got Messages bodies with the provider's key.
    let seen = an.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path_and_query, "/v1/messages");
        assert_eq!(r.headers["x-api-key"], ANTHROPIC_KEY);
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(r.headers.get("authorization").is_none());
        assert!(r.json["max_tokens"].as_u64().unwrap() > 0, "{}", r.json);
    }
    assert_eq!(seen[1].tools, ["read_file"]);
}

/// A field the upstream's protocol cannot express: the translated route is
/// dropped before anything is sent; with no route left the client gets a
/// 400 naming the field and the upstream.
#[tokio::test]
async fn a_refused_field_is_a_400_and_reaches_no_upstream() {
    let chat = AgentUpstream::start(task()).await.unwrap();
    let native = MockUpstream::start().await.unwrap();
    let config = format!(
        "{HEADER}{}{}{}",
        provider(
            "chat",
            "openai",
            &chat.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
        provider(
            "chat2",
            "openai",
            &chat.base_url(),
            "m2",
            "\"chat_completions\"",
            ""
        ),
        provider(
            "native",
            "openai",
            &native.base_url(),
            "m2",
            "\"responses\"",
            ""
        ),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let body = |model: &str| {
        json!({"model": model, "input": "and then?", "previous_response_id": "resp_123"})
            .to_string()
    };
    let resp = daemon.post_json("/v1/responses", body(MODEL)).await;
    assert_eq!(resp.status(), 400);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], "untranslatable_field", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("previous_response_id cannot be sent to upstream chat:"),
        "{message}"
    );
    assert_eq!(chat.requests().len(), 0);

    // With a native route besides: only the translated route is dropped.
    // The native one fails, and the client gets its answer, not a
    // translated attempt.
    native.push_reply(Reply::openai_error(
        500,
        "server_error",
        "boom",
        "upstream exploded",
    ));
    let resp = daemon.post_json("/v1/responses", body("m2")).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.headers()["x-tokenbuddy-attempts"],
        "native:500|server_error"
    );
    assert_eq!(native.request_count(), 1);
    assert_eq!(
        native.requests()[0].json()["previous_response_id"],
        "resp_123"
    );
    assert_eq!(chat.requests().len(), 0);
}

async fn messages_not_found(daemon: &Daemon, model: &str) {
    let body =
        json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = messages_post(daemon, &body).await;
    assert_eq!(resp.status(), 404, "{model}");
    let v = body_json(resp).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(model),
        "{v}"
    );
}

#[tokio::test]
async fn routing_translate_false_keeps_plans_native() {
    let chat = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "[routing]\ntranslate = false\n{}",
        provider(
            "chat",
            "openai",
            &chat.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    messages_not_found(&daemon, MODEL).await;
    assert_eq!(chat.requests().len(), 0);
    // The native protocol still works.
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body_json(resp).await["choices"][0]["message"]["content"],
        "ok"
    );
    assert_eq!(chat.requests().len(), 1);
}

#[tokio::test]
async fn a_provider_with_translate_false_is_reached_natively_only() {
    let chat = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "{}{}",
        provider(
            "private",
            "openai",
            &chat.base_url(),
            "opted-out",
            "\"chat_completions\"",
            "translate = false\n"
        ),
        provider(
            "open",
            "openai",
            &chat.base_url(),
            "opted-in",
            "\"chat_completions\"",
            ""
        ),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    messages_not_found(&daemon, "opted-out").await;
    assert_eq!(chat.requests().len(), 0);
    // The other provider is still translated to.
    let body = json!({"model": "opted-in", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = messages_post(&daemon, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "open");
    assert_eq!(body_json(resp).await["content"][0]["text"], "ok");
    // And the opted-out one natively.
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            json!({"model": "opted-out", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "private");
    assert_eq!(chat.requests().len(), 2);
}

/// What an answer said, whatever its protocol: text, calls (name and
/// parsed arguments), how it ended, usage (input, output).
#[derive(Debug, PartialEq)]
struct Said {
    text: String,
    calls: Vec<(String, Value)>,
    end: String,
    usage: (Value, Value),
}

fn said_messages(m: &Value) -> Said {
    let blocks = m["content"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "tool_use"], "{m}");
    let id = blocks[1]["id"].as_str().unwrap();
    assert!(
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
        "{m}"
    );
    Said {
        text: blocks[0]["text"].as_str().unwrap().to_string(),
        calls: vec![(
            blocks[1]["name"].as_str().unwrap().to_string(),
            blocks[1]["input"].clone(),
        )],
        end: m["stop_reason"].as_str().unwrap().to_string(),
        usage: (
            m["usage"]["input_tokens"].clone(),
            m["usage"]["output_tokens"].clone(),
        ),
    }
}

fn said_chat(v: &Value) -> Said {
    let message = &v["choices"][0]["message"];
    Said {
        text: message["content"].as_str().unwrap().to_string(),
        calls: message["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["type"], "function", "{v}");
                assert!(!c["id"].as_str().unwrap().is_empty(), "{v}");
                (
                    c["function"]["name"].as_str().unwrap().to_string(),
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
                )
            })
            .collect(),
        end: v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string(),
        usage: (
            v["usage"]["prompt_tokens"].clone(),
            v["usage"]["completion_tokens"].clone(),
        ),
    }
}

/// A chat stream put together the way the OpenAI SDK does.
fn accumulate_chat(events: &[(Option<String>, Value)]) -> Value {
    assert_eq!(
        events.last(),
        Some(&(None, Value::Null)),
        "ends with [DONE]"
    );
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    let (mut finish, mut usage) = (Value::Null, Value::Null);
    for (name, chunk) in &events[..events.len() - 1] {
        assert_eq!(name, &None);
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().unwrap() {
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
            content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = call["index"].as_u64().unwrap() as usize;
                if calls.len() == i {
                    calls.push(json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}));
                }
                let c = &mut calls[i];
                for (key, part) in [
                    ("id", &call["id"]),
                    ("name", &call["function"]["name"]),
                    ("arguments", &call["function"]["arguments"]),
                ] {
                    let slot = if key == "id" {
                        &mut c["id"]
                    } else {
                        &mut c["function"][key]
                    };
                    let joined =
                        format!("{}{}", slot.as_str().unwrap(), part.as_str().unwrap_or(""));
                    *slot = json!(joined);
                }
            }
        }
    }
    json!({
        "choices": [{"message": {"role": "assistant", "content": content, "tool_calls": calls}, "finish_reason": finish}],
        "usage": usage,
    })
}

fn said_responses(r: &Value) -> Said {
    assert_eq!(r["object"], "response", "{r}");
    let output = r["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "function_call"], "{r}");
    assert_eq!(output[0]["content"][0]["type"], "output_text", "{r}");
    Said {
        text: output[0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string(),
        calls: vec![(
            output[1]["name"].as_str().unwrap().to_string(),
            serde_json::from_str(output[1]["arguments"].as_str().unwrap()).unwrap(),
        )],
        end: r["status"].as_str().unwrap().to_string(),
        usage: (
            r["usage"]["input_tokens"].clone(),
            r["usage"]["output_tokens"].clone(),
        ),
    }
}

/// A Responses stream: the final response of `response.completed`, after
/// checking that the deltas add up to it and every event is numbered.
fn accumulate_responses(events: &[(Option<String>, Value)]) -> Value {
    let (mut text, mut args) = (String::new(), String::new());
    let mut completed = Value::Null;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(name.as_deref(), data["type"].as_str(), "{data}");
        assert_eq!(data["sequence_number"], i, "{data}");
        match name.as_deref().unwrap() {
            "response.output_text.delta" => {
                assert_eq!(data["output_index"], 0, "{data}");
                text.push_str(data["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.delta" => {
                assert_eq!(data["output_index"], 1, "{data}");
                args.push_str(data["delta"].as_str().unwrap());
            }
            "response.completed" => completed = data["response"].clone(),
            _ => {}
        }
    }
    assert_eq!(events[0].0.as_deref(), Some("response.created"));
    assert_eq!(
        events.last().unwrap().0.as_deref(),
        Some("response.completed")
    );
    assert_eq!(text, text_and_call::text(), "streamed text");
    assert_eq!(args, text_and_call::arguments(), "streamed arguments");
    completed
}

/// An answer with text then a tool call crosses every pair of protocols
/// with both parts, in order, whole and streamed, with the upstream's
/// usage; the ledger keeps both protocols.
#[tokio::test]
async fn text_then_a_tool_call_crosses_every_pair_of_protocols() {
    let upstream = TextAndCallUpstream::start().await.unwrap();
    let wires = [
        ("via-chat", Protocol::ChatCompletions, "openai"),
        ("via-responses", Protocol::Responses, "openai"),
        ("via-messages", Protocol::Messages, "anthropic"),
    ];
    let mut config = HEADER.to_string();
    for (model, p, kind) in wires {
        config += &provider(
            model,
            kind,
            &upstream.base_url(),
            model,
            &format!("\"{p}\""),
            "",
        );
    }
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let want = |end: &str| Said {
        text: text_and_call::text(),
        calls: vec![(
            text_and_call::TOOL.to_string(),
            serde_json::from_str(&text_and_call::arguments()).unwrap(),
        )],
        end: end.to_string(),
        usage: (
            json!(text_and_call::INPUT_TOKENS),
            json!(text_and_call::OUTPUT_TOKENS),
        ),
    };
    let prompt = "Read the notes";
    let tools_chat = json!([{"type": "function", "function": {"name": text_and_call::TOOL, "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    let tools_responses = json!([{"type": "function", "name": text_and_call::TOOL, "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    let tools_messages = json!([{"name": text_and_call::TOOL, "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    let mut expected_records = Vec::new();
    for client in [
        Protocol::ChatCompletions,
        Protocol::Responses,
        Protocol::Messages,
    ] {
        for (model, wire, _) in wires {
            if wire == client {
                continue;
            }
            for stream in [false, true] {
                let what = format!("{client} client via {wire}, stream={stream}");
                let resp = match client {
                    Protocol::ChatCompletions => {
                        let mut body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}], "tools": tools_chat});
                        if stream {
                            body["stream_options"] = json!({"include_usage": true});
                        }
                        daemon
                            .post_json(client.client_path(), body.to_string())
                            .await
                    }
                    Protocol::Responses => {
                        let body = json!({"model": model, "stream": stream, "input": prompt, "tools": tools_responses});
                        daemon
                            .post_json(client.client_path(), body.to_string())
                            .await
                    }
                    _ => {
                        let body = json!({"model": model, "stream": stream, "max_tokens": 200, "messages": [{"role": "user", "content": prompt}], "tools": tools_messages});
                        messages_post(&daemon, &body).await
                    }
                };
                assert_eq!(resp.status(), 200, "{what}");
                assert_eq!(
                    resp.headers()["x-tokenbuddy-attempts"],
                    format!("{model}:200|ok"),
                    "{what}"
                );
                let bytes = body_bytes(resp).await;
                let got = match (client, stream) {
                    (Protocol::ChatCompletions, false) => {
                        said_chat(&serde_json::from_slice(&bytes).unwrap())
                    }
                    (Protocol::ChatCompletions, true) => {
                        said_chat(&accumulate_chat(&sse_events(&bytes)))
                    }
                    (Protocol::Responses, false) => {
                        said_responses(&serde_json::from_slice(&bytes).unwrap())
                    }
                    (Protocol::Responses, true) => {
                        said_responses(&accumulate_responses(&sse_events(&bytes)))
                    }
                    (_, false) => said_messages(&serde_json::from_slice(&bytes).unwrap()),
                    (_, true) => said_messages(&accumulate_messages(&sse_events(&bytes))),
                };
                let end = match client {
                    Protocol::ChatCompletions => "tool_calls",
                    Protocol::Responses => "completed",
                    _ => "tool_use",
                };
                assert_eq!(got, want(end), "{what}");
                expected_records.push((client, wire, stream));
            }
        }
    }
    // Each request reached the upstream once, in the upstream's protocol.
    let seen = upstream.requests();
    assert_eq!(seen.len(), expected_records.len());
    for (r, (client, wire, stream)) in seen.iter().zip(&expected_records) {
        assert_eq!(r.protocol, Some(*wire), "{client} via {wire}");
        assert_eq!(
            r.json["stream"].as_bool().unwrap_or(false),
            *stream,
            "{}",
            r.json
        );
    }
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(records.len(), expected_records.len());
    for (r, (client, wire, stream)) in records.iter().zip(&expected_records) {
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["protocol"], client.to_string(), "{r:#}");
        assert_eq!(r["upstream_protocol"], wire.to_string(), "{r:#}");
        assert_eq!(r["stream"], *stream, "{r:#}");
        assert_eq!(r["input_tokens"], text_and_call::INPUT_TOKENS, "{r:#}");
        assert_eq!(r["output_tokens"], text_and_call::OUTPUT_TOKENS, "{r:#}");
    }
}

/// Hold-until-first-content applies to the translated stream: a chat
/// upstream that breaks before content is failed over without a trace in
/// what the Messages client reads; one that breaks after content ends the
/// client's stream with a Messages `error` event.
#[tokio::test]
async fn a_translated_stream_fails_over_before_content_and_errors_after() {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tb_test_support::Chunk;

    let first = MockUpstream::start().await.unwrap();
    let second = AgentUpstream::start(task()).await.unwrap();
    let config = format!(
        "{HEADER}{}{}",
        provider(
            "first",
            "openai",
            &first.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
        provider(
            "second",
            "openai",
            &second.base_url(),
            MODEL,
            "\"chat_completions\"",
            ""
        ),
    );
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let chunk = |delta: &str| {
        Chunk::Data(Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"{MODEL}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]}}\n\n"
        )))
    };
    let role = chunk(r#"{"role":"assistant","content":""}"#);
    let body = json!({"model": MODEL, "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Say ok"}]});

    // Before content: a dropped stream, an error chunk.
    let error_chunk = Chunk::Data(Bytes::from_static(
        b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
    ));
    for (what, failure) in [
        ("dropped", vec![role.clone(), Chunk::Abort]),
        ("error chunk", vec![role.clone(), error_chunk]),
    ] {
        first.push_reply(Reply::sse(failure));
        let resp = messages_post(&daemon, &body).await;
        assert_eq!(resp.status(), 200, "{what}");
        let attempts = resp.headers()["x-tokenbuddy-attempts"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            attempts.starts_with("first:") && attempts.ends_with(",second:200|ok"),
            "{what}: {attempts}"
        );
        let events = sse_events(&body_bytes(resp).await);
        let starts = events
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("message_start"))
            .count();
        assert_eq!(starts, 1, "{what}: one message, the second upstream's");
        let m = accumulate_messages(&events);
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "ok"}]),
            "{what}: {m}"
        );
        assert_eq!(m["usage"]["input_tokens"], INPUT_TOKENS, "{what}: {m}");
    }

    // After content: the client's stream ends with an error event.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    first.push_reply(Reply::sse(vec![
        role,
        chunk(r#"{"content":"Hel"}"#),
        Chunk::WaitFor(std::sync::Arc::clone(&gate)),
        Chunk::Abort,
    ]));
    let resp = messages_post(&daemon, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenbuddy-upstream"], "first");
    let mut stream = resp.into_body();
    let mut text = String::new();
    while !text.contains("content_block_delta") {
        let frame = stream.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    // The text has reached the client: now the upstream drops.
    gate.notify_one();
    let rest = stream.collect().await.unwrap().to_bytes();
    text.push_str(std::str::from_utf8(&rest).unwrap());
    let events = sse_events(text.as_bytes());
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"error"), "{text}");
    assert!(!names.contains(&"message_stop"), "{text}");
    let delta = events
        .iter()
        .find(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .unwrap();
    assert_eq!(
        delta.1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    let error = &events.last().unwrap().1;
    assert_eq!(error["type"], "error", "{text}");
    assert_eq!(error["error"]["type"], "api_error", "{text}");

    let records = stop_and_read_ledger(&mut daemon).await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "failed_mid_stream"], "{records:#?}");
    assert_eq!(records[0]["upstream_protocol"], "chat_completions");
    assert_eq!(records[0]["winner"], "second");
}

/// An upstream's error answer on a translated route reaches the client in
/// the client's protocol's shape, with the upstream's status and message.
#[tokio::test]
async fn a_translated_routes_error_answer_comes_in_the_clients_shape() {
    let chat = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let config = format!(
        "{HEADER}{}{}",
        provider(
            "chat",
            "openai",
            &chat.base_url(),
            "via-chat",
            "\"chat_completions\"",
            ""
        ),
        provider(
            "an",
            "anthropic",
            &an.base_url(),
            "via-messages",
            "\"messages\"",
            ""
        ),
    );
    let daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let too_long = "This model's maximum context length is 8192 tokens.";
    for stream in [false, true] {
        chat.push_reply(Reply::openai_error(
            400,
            "invalid_request_error",
            "context_length_exceeded",
            too_long,
        ));
        let body = json!({"model": "via-chat", "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let resp = messages_post(&daemon, &body).await;
        assert_eq!(resp.status(), 400, "stream={stream}");
        assert_eq!(
            resp.headers()["x-tokenbuddy-attempts"],
            "chat:400|client_error"
        );
        assert_eq!(
            body_json(resp).await,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": too_long}}),
            "stream={stream}"
        );
    }
    an.push_reply(Reply::anthropic_error(
        529,
        "overloaded_error",
        "Overloaded",
    ));
    let resp = daemon
        .post_json(
            "/v1/chat/completions",
            json!({"model": "via-messages", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .await;
    assert_eq!(resp.status(), 529);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["message"], "Overloaded", "{v}");
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    assert_eq!(v["error"]["code"], "overloaded_error", "{v}");
    assert_eq!(chat.request_count(), 2);
    assert_eq!(an.request_count(), 1);
}
