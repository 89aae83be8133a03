//! An upstream whose every answer is text followed by a tool call, in the
//! protocol of the request's path (chat completions, Responses or
//! Messages), streamed when the request says `"stream": true`, always
//! with usage: the shape of an agent's turn ("Let me read that file."
//! then a call), where a translator must keep two blocks or items apart.
//!
//! Streams split the text and the arguments over several events, so a
//! client that accumulates them proves the deltas were put back in order.
//! The same answer in every protocol, so a translated answer can be
//! compared with the native one.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tb_domain::Protocol;
use tokio::net::TcpListener;

use crate::agent_upstream::{Frames, sse, whole};
use tokio::task::{JoinHandle, JoinSet};

/// The text before the call, as streamed (its pieces joined).
pub const TEXT_PIECES: [&str; 2] = ["Let me read ", "that file."];
/// The tool called.
pub const TOOL: &str = "read_file";
/// The call's arguments (JSON text), as streamed (its pieces joined).
pub const ARGUMENT_PIECES: [&str; 2] = ["{\"path\":", "\"/w/notes.txt\"}"];
/// The call id in chat completions and Responses answers.
pub const CALL_ID: &str = "call_tc_1";
/// The tool_use id in Messages answers.
pub const TOOL_USE_ID: &str = "toolu_tc_1";
/// The input tokens every answer reports.
pub const INPUT_TOKENS: u64 = 31;
/// The output tokens every answer reports.
pub const OUTPUT_TOKENS: u64 = 17;

/// The whole text.
pub fn text() -> String {
    TEXT_PIECES.concat()
}

/// The whole arguments text.
pub fn arguments() -> String {
    ARGUMENT_PIECES.concat()
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Path and query as received.
    pub path_and_query: String,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The protocol of the path, if it is one.
    pub protocol: Option<Protocol>,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
}

/// The upstream on an ephemeral loopback port; dropping it shuts it down.
#[derive(Debug)]
pub struct TextAndCallUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

impl TextAndCallUpstream {
    /// Binds `127.0.0.1:0` and serves HTTP/1.1 on the current runtime.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub async fn start() -> std::io::Result<TextAndCallUpstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&requests)));
        Ok(TextAndCallUpstream {
            addr,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/v1`, for a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// `http://127.0.0.1:PORT`, for Anthropic SDKs.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TextAndCallUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, requests: Arc<Mutex<Vec<SeenRequest>>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let requests = Arc::clone(&requests);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&requests), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    req: Request<Incoming>,
) -> Result<Response<Frames>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let protocol = Protocol::from_path(parts.uri.path());
    let model = json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("tc-model")
        .to_owned();
    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let response = match protocol {
        Some(p) if parts.method == Method::POST => answer(p, &model, stream),
        _ => whole(
            404,
            json!({"error": {"message": "text-and-call upstream: no such route", "type": "invalid_request_error"}}),
        ),
    };
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(SeenRequest {
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            headers: parts.headers,
            protocol,
            json,
        });
    Ok(response)
}

/// The answer in `protocol`: a whole JSON body, or an SSE stream.
fn answer(protocol: Protocol, model: &str, stream: bool) -> Response<Frames> {
    match (protocol, stream) {
        (Protocol::Messages, false) => whole(200, messages_body(model)),
        (Protocol::Messages, true) => sse(messages_events(model)),
        (Protocol::Responses, false) => whole(200, responses_body(model)),
        (Protocol::Responses, true) => sse(responses_events(model)),
        (Protocol::ChatCompletions, false) => whole(200, chat_body(model)),
        (Protocol::ChatCompletions, true) => sse(chat_events(model)),
        _ => whole(
            400,
            json!({"error": {"message": "text-and-call upstream: not a text protocol", "type": "invalid_request_error"}}),
        ),
    }
}

fn chat_usage() -> Value {
    json!({"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS})
}

fn chat_body(model: &str) -> Value {
    json!({
        "id": "chatcmpl-tc", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": text(),
            "tool_calls": [{"id": CALL_ID, "type": "function", "function": {"name": TOOL, "arguments": arguments()}}],
        }, "finish_reason": "tool_calls"}],
        "usage": chat_usage(),
    })
}

/// Chat chunks; the usage chunk is always sent (the daemon asks for it on
/// every stream, and SDK callers here do too).
fn chat_events(model: &str) -> Vec<(Option<&'static str>, Value)> {
    let chunk = |choices: Value| json!({"id": "chatcmpl-tc", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": choices});
    let delta =
        |d: Value, finish: Value| chunk(json!([{"index": 0, "delta": d, "finish_reason": finish}]));
    let mut events = vec![delta(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in TEXT_PIECES {
        events.push(delta(json!({"content": piece}), Value::Null));
    }
    let call = json!({"index": 0, "id": CALL_ID, "type": "function", "function": {"name": TOOL, "arguments": ""}});
    events.push(delta(json!({"tool_calls": [call]}), Value::Null));
    for piece in ARGUMENT_PIECES {
        let args = json!({"index": 0, "function": {"arguments": piece}});
        events.push(delta(json!({"tool_calls": [args]}), Value::Null));
    }
    events.push(delta(json!({}), json!("tool_calls")));
    let mut usage = chunk(json!([]));
    usage["usage"] = chat_usage();
    events.push(usage);
    events.into_iter().map(|e| (None, e)).collect()
}

fn tool_input() -> Value {
    serde_json::from_str(&arguments()).unwrap_or(Value::Null)
}

fn messages_body(model: &str) -> Value {
    json!({
        "id": "msg_tc", "type": "message", "role": "assistant", "model": model,
        "content": [
            {"type": "text", "text": text()},
            {"type": "tool_use", "id": TOOL_USE_ID, "name": TOOL, "input": tool_input()},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    })
}

fn messages_events(model: &str) -> Vec<(Option<&'static str>, Value)> {
    let message = json!({
        "id": "msg_tc", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    });
    let mut events = vec![
        json!({"type": "message_start", "message": message}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for piece in TEXT_PIECES {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": TOOL_USE_ID, "name": TOOL, "input": {}}}));
    for piece in ARGUMENT_PIECES {
        events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 1}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": OUTPUT_TOKENS}}));
    events.push(json!({"type": "message_stop"}));
    events
        .into_iter()
        .map(|e| {
            let name = match e["type"].as_str() {
                Some("message_start") => "message_start",
                Some("content_block_start") => "content_block_start",
                Some("content_block_delta") => "content_block_delta",
                Some("content_block_stop") => "content_block_stop",
                Some("message_delta") => "message_delta",
                _ => "message_stop",
            };
            (Some(name), e)
        })
        .collect()
}

fn responses_message(status: &str, text: &str) -> Value {
    json!({
        "id": "msg_tc", "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn responses_call(status: &str, arguments: &str) -> Value {
    json!({
        "id": "fc_tc", "type": "function_call", "status": status,
        "call_id": CALL_ID, "name": TOOL, "arguments": arguments,
    })
}

fn responses_body(model: &str) -> Value {
    json!({
        "id": "resp_tc", "object": "response", "created_at": 1, "status": "completed",
        "model": model,
        "output": [responses_message("completed", &text()), responses_call("completed", &arguments())],
        "usage": {
            "input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        },
    })
}

fn responses_events(model: &str) -> Vec<(Option<&'static str>, Value)> {
    let done = responses_body(model);
    let mut created = done.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    let text_ids = json!({"output_index": 0, "item_id": "msg_tc", "content_index": 0});
    let with = |base: &Value, extra: Value| {
        let mut v = base.clone();
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    let mut added_message = responses_message("in_progress", "");
    added_message["content"] = json!([]);
    let mut events = vec![
        ("response.created", json!({"response": created.clone()})),
        ("response.in_progress", json!({"response": created})),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": added_message}),
        ),
        (
            "response.content_part.added",
            with(
                &text_ids,
                json!({"part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
        ),
    ];
    for piece in TEXT_PIECES {
        events.push((
            "response.output_text.delta",
            with(&text_ids, json!({"delta": piece})),
        ));
    }
    events.push((
        "response.output_text.done",
        with(&text_ids, json!({"text": text()})),
    ));
    events.push((
        "response.content_part.done",
        with(
            &text_ids,
            json!({"part": {"type": "output_text", "text": text(), "annotations": []}}),
        ),
    ));
    events.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": responses_message("completed", &text())}),
    ));
    events.push((
        "response.output_item.added",
        json!({"output_index": 1, "item": responses_call("in_progress", "")}),
    ));
    for piece in ARGUMENT_PIECES {
        events.push((
            "response.function_call_arguments.delta",
            json!({"output_index": 1, "item_id": "fc_tc", "delta": piece}),
        ));
    }
    events.push((
        "response.function_call_arguments.done",
        json!({"output_index": 1, "item_id": "fc_tc", "arguments": arguments()}),
    ));
    events.push((
        "response.output_item.done",
        json!({"output_index": 1, "item": responses_call("completed", &arguments())}),
    ));
    events.push(("response.completed", json!({"response": done})));
    events
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(i);
            (Some(name), data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_carries_the_same_text_call_and_usage() {
        let chat = chat_body("m");
        assert_eq!(chat["choices"][0]["message"]["content"], text());
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            arguments()
        );
        let messages = messages_body("m");
        assert_eq!(messages["content"][0]["text"], text());
        assert_eq!(messages["content"][1]["input"]["path"], "/w/notes.txt");
        let responses = responses_body("m");
        assert_eq!(responses["output"][1]["arguments"], arguments());
        assert_eq!(
            responses["usage"]["total_tokens"],
            INPUT_TOKENS + OUTPUT_TOKENS
        );
        let streamed: String = responses_events("m")
            .iter()
            .filter(|(n, _)| *n == Some("response.function_call_arguments.delta"))
            .map(|(_, d)| d["delta"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(streamed, arguments());
    }
}
