//! A scripted upstream for real coding agents: it plays the model side of a
//! two-turn tool task in whichever protocol a request comes in on.
//!
//! [`MockUpstream`](crate::MockUpstream) answers from a queue of canned
//! replies; an agent needs answers that depend on what it sent. This one
//! reads each request and:
//!
//! 1. when the conversation already holds a tool result: answers with final
//!    text that quotes the word starting with the task's marker found in
//!    that result ([`ToolTask::final_text`]), or says none was found;
//! 2. else, when the request declares tools: calls the agent's own
//!    file-reading tool (or, failing that, its shell tool with `cat`) on
//!    the task's file, using the tool name and argument name the agent
//!    declared;
//! 3. else (a side request such as a session title): answers `ok`.
//!
//! Answers are SSE streams (one chunk per event) when the request says
//! `"stream": true`, whole JSON bodies otherwise, always with usage, in the
//! protocol of the request's path: chat completions, Responses or Anthropic
//! Messages. Every request is recorded with what it was answered
//! ([`AgentRequest::turn`]).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tb_domain::Protocol;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The task the upstream plays: make the agent read `file`, then report the
/// word starting with `marker` that the tool result carried.
#[derive(Debug, Clone)]
pub struct ToolTask {
    /// The file the agent is asked to read (an absolute path works with
    /// every agent, whatever it takes as its working directory).
    pub file: String,
    /// The prefix of the secret word in the file (e.g. `tb-nonce-`); the
    /// secret itself never appears in a prompt, only in the tool result.
    pub marker: String,
}

impl ToolTask {
    /// The final answer for a tool result that carried `secret`.
    pub fn final_text(secret: &str) -> String {
        format!("The secret in the file is {secret}.")
    }
}

/// What the upstream answered one request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Asked the agent to call `tool` with `arguments`.
    ToolCall {
        /// The tool's name as the agent declared it.
        tool: String,
        /// The JSON arguments sent.
        arguments: Value,
    },
    /// Final text after a tool result; `secret` is the marked word found
    /// in the tool result, if any.
    Final {
        /// The marked word found in a tool result.
        secret: Option<String>,
        /// The text answered.
        text: String,
    },
    /// The request declared tools but none could read a file.
    NoReadTool {
        /// The tool names declared.
        declared: Vec<String>,
    },
    /// A request without tools (a title, a probe): answered `ok`.
    Side,
    /// Not a protocol request (answered 404 or a model list).
    Other,
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The request method.
    pub method: Method,
    /// Path and query as received.
    pub path_and_query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The protocol of the path, if it is one.
    pub protocol: Option<Protocol>,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
    /// Whether the request asked for a stream.
    pub stream: bool,
    /// The tool names the request declared.
    pub tools: Vec<String>,
    /// The text of every tool result in the conversation.
    pub tool_results: Vec<String>,
    /// How it was answered.
    pub turn: Turn,
}

/// The scripted agent upstream on an ephemeral loopback port. Dropping it
/// shuts the server down.
#[derive(Debug)]
pub struct AgentUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    task: ToolTask,
    requests: Mutex<Vec<AgentRequest>>,
    count: watch::Sender<usize>,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<AgentRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AgentUpstream {
    /// Binds `127.0.0.1:0` and serves HTTP/1.1 on the current runtime.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub async fn start(task: ToolTask) -> std::io::Result<AgentUpstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            task,
            requests: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(AgentUpstream { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/v1`, for a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<AgentRequest> {
        self.shared.requests().clone()
    }

    /// Waits until at least `n` requests were recorded, then returns all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<AgentRequest> {
        let mut count = self.shared.count.subscribe();
        // The sender lives in `self.shared`, so this cannot fail.
        let _ = count.wait_for(|&c| c >= n).await;
        self.requests()
    }
}

impl Drop for AgentUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
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
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Frames>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = parts.uri.path();
    let protocol = Protocol::from_path(path).filter(|p| *p != Protocol::ImagesGenerations);
    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let (tools, tool_results) = match protocol {
        Some(p) => (declared_tools(p, &json), tool_results(p, &json)),
        None => (Vec::new(), Vec::new()),
    };
    let (turn, response) = match protocol {
        Some(p) if parts.method == Method::POST => {
            let turn = decide(&shared.task, &tools, &tool_results);
            let response = answer(p, &json, &turn, stream);
            (turn, response)
        }
        _ if parts.method == Method::GET && path.ends_with("/models") => {
            let model =
                json!({"id": "agent-model", "object": "model", "created": 0, "owned_by": "mock"});
            (
                Turn::Other,
                whole(200, json!({"object": "list", "data": [model]})),
            )
        }
        _ => (
            Turn::Other,
            whole(
                404,
                json!({"error": {"message": format!("agent upstream: no route for {path}"), "type": "invalid_request_error"}}),
            ),
        ),
    };
    let recorded = AgentRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts.headers,
        protocol,
        json,
        stream,
        tools: tools.into_iter().map(|t| t.name).collect(),
        tool_results,
        turn,
    };
    let mut requests = shared.requests();
    requests.push(recorded);
    shared.count.send_replace(requests.len());
    Ok(response)
}

/// A tool the request declared: its name and JSON schema of arguments.
#[derive(Debug, Clone)]
struct Tool {
    name: String,
    schema: Value,
}

fn declared_tools(protocol: Protocol, json: &Value) -> Vec<Tool> {
    let tools = json.get("tools").and_then(Value::as_array);
    tools
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let (name, schema) = match protocol {
                Protocol::ChatCompletions => {
                    let f = t.get("function")?;
                    (f.get("name"), f.get("parameters"))
                }
                Protocol::Messages => (t.get("name"), t.get("input_schema")),
                _ => (t.get("name").or_else(|| t.get("type")), t.get("parameters")),
            };
            Some(Tool {
                name: name?.as_str()?.to_owned(),
                schema: schema.cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// The text of every tool result in the conversation.
fn tool_results(protocol: Protocol, json: &Value) -> Vec<String> {
    let items = |key: &str| {
        json.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match protocol {
        Protocol::ChatCompletions => items("messages")
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
            .map(|m| text_of(m.get("content")))
            .collect(),
        Protocol::Messages => items("messages")
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| text_of(b.get("content")))
            .collect(),
        _ => items("input")
            .iter()
            .filter(|i| {
                i.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("_call_output"))
            })
            .map(|i| text_of(i.get("output")))
            .collect(),
    }
}

/// The text in a content value: a string, or the `text` of its parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                _ => text_of(p.get("text").or_else(|| p.get("content"))),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other @ Value::Object(_)) => other.to_string(),
        _ => String::new(),
    }
}

/// Names of file-reading tools, and of shell tools, lowercase.
const READ_TOOLS: [&str; 5] = ["read", "read_file", "readfile", "view", "file_read"];
const PATH_ARGS: [&str; 5] = ["file_path", "filePath", "path", "file", "filename"];
const SHELL_TOOLS: [&str; 7] = [
    "exec_command",
    "shell",
    "bash",
    "terminal",
    "exec",
    "shell_command",
    "run_shell_command",
];

fn decide(task: &ToolTask, tools: &[Tool], results: &[String]) -> Turn {
    if !results.is_empty() {
        // The marker and the letters and digits after it, whatever the
        // agent wrapped the file in (line numbers, JSON, escapes).
        let secret = results.iter().find_map(|r| {
            let at = r.find(&task.marker)?;
            let rest = &r[at + task.marker.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            (end > 0).then(|| format!("{}{}", task.marker, &rest[..end]))
        });
        let text = match &secret {
            Some(s) => ToolTask::final_text(s),
            None => format!(
                "No word starting with {} in the tool result: {:.300}",
                task.marker,
                results.join(" | ")
            ),
        };
        return Turn::Final { secret, text };
    }
    if tools.is_empty() {
        return Turn::Side;
    }
    let props = |t: &Tool| t.schema.get("properties").cloned().unwrap_or(Value::Null);
    let read = tools.iter().find_map(|t| {
        if !READ_TOOLS.contains(&t.name.to_lowercase().as_str()) {
            return None;
        }
        let props = props(t);
        let arg = PATH_ARGS.iter().find(|a| props.get(**a).is_some())?;
        Some((t, json!({ *arg: task.file })))
    });
    let shell = || {
        tools.iter().find_map(|t| {
            if !SHELL_TOOLS.contains(&t.name.to_lowercase().as_str()) {
                return None;
            }
            let props = props(t);
            let (arg, spec) = ["cmd", "command"]
                .iter()
                .find_map(|a| props.get(*a).map(|s| (*a, s)))?;
            let cat = format!("cat '{}'", task.file);
            let value = if spec.get("type").and_then(Value::as_str) == Some("array") {
                json!(["bash", "-lc", cat])
            } else {
                json!(cat)
            };
            Some((t, json!({ arg: value })))
        })
    };
    match read.or_else(shell) {
        Some((tool, arguments)) => Turn::ToolCall {
            tool: tool.name.clone(),
            arguments,
        },
        None => Turn::NoReadTool {
            declared: tools.iter().map(|t| t.name.clone()).collect(),
        },
    }
}

/// What the model "says": text, or one tool call.
enum Say<'a> {
    Text(&'a str),
    Call(&'a str, String),
}

const CALL_ID: &str = "call_tb_1";
const TOOL_USE_ID: &str = "toolu_tb_1";
/// The input tokens every answer reports.
pub const INPUT_TOKENS: u64 = 42;
/// The output tokens every answer reports.
pub const OUTPUT_TOKENS: u64 = 7;

fn answer(protocol: Protocol, req: &Value, turn: &Turn, stream: bool) -> Response<Frames> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("agent-model");
    let text;
    let say = match turn {
        Turn::ToolCall { tool, arguments } => Say::Call(tool, arguments.to_string()),
        Turn::Final { text: t, .. } => Say::Text(t),
        Turn::NoReadTool { declared } => {
            text = format!("No file-reading tool among {declared:?}");
            Say::Text(&text)
        }
        Turn::Side | Turn::Other => Say::Text("ok"),
    };
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    match (protocol, stream) {
        (Protocol::Messages, false) => whole(200, messages_body(model, &say)),
        (Protocol::Messages, true) => sse(messages_events(model, &say)),
        (Protocol::Responses, false) => whole(200, responses_body(model, &say)),
        (Protocol::Responses, true) => sse(responses_events(model, &say)),
        (_, false) => whole(200, chat_body(model, &say)),
        (_, true) => sse(chat_events(model, &say, include_usage)),
    }
}

fn chat_usage() -> Value {
    json!({"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS})
}

fn chat_body(model: &str, say: &Say<'_>) -> Value {
    let (message, finish) = match say {
        Say::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Say::Call(name, args) => (
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": CALL_ID, "type": "function", "function": {"name": name, "arguments": args}}
            ]}),
            "tool_calls",
        ),
    };
    json!({
        "id": "chatcmpl-tb", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": chat_usage(),
    })
}

fn chat_events(
    model: &str,
    say: &Say<'_>,
    include_usage: bool,
) -> Vec<(Option<&'static str>, Value)> {
    let chunk = |choices: Value| json!({"id": "chatcmpl-tb", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": choices});
    let delta =
        |d: Value, finish: Value| chunk(json!([{"index": 0, "delta": d, "finish_reason": finish}]));
    let mut events = vec![(
        None,
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
    )];
    let finish = match say {
        Say::Text(t) => {
            events.push((None, delta(json!({"content": t}), Value::Null)));
            "stop"
        }
        Say::Call(name, args) => {
            let call = json!({"index": 0, "id": CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}});
            events.push((None, delta(json!({"tool_calls": [call]}), Value::Null)));
            let args = json!({"index": 0, "function": {"arguments": args}});
            events.push((None, delta(json!({"tool_calls": [args]}), Value::Null)));
            "tool_calls"
        }
    };
    events.push((None, delta(json!({}), json!(finish))));
    if include_usage {
        let mut usage = chunk(json!([]));
        usage["usage"] = chat_usage();
        events.push((None, usage));
    }
    events
}

fn messages_content(say: &Say<'_>) -> (Value, &'static str) {
    match say {
        Say::Text(t) => (json!({"type": "text", "text": t}), "end_turn"),
        Say::Call(name, args) => {
            let input: Value = serde_json::from_str(args).unwrap_or(Value::Null);
            (
                json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": input}),
                "tool_use",
            )
        }
    }
}

fn messages_body(model: &str, say: &Say<'_>) -> Value {
    let (block, stop) = messages_content(say);
    json!({
        "id": "msg_tb", "type": "message", "role": "assistant", "model": model,
        "content": [block], "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    })
}

fn messages_events(model: &str, say: &Say<'_>) -> Vec<(Option<&'static str>, Value)> {
    let (block, stop) = messages_content(say);
    let (start, delta) = match say {
        Say::Text(t) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": t}),
        ),
        Say::Call(_, args) => {
            let mut start = block.clone();
            start["input"] = json!({});
            (
                start,
                json!({"type": "input_json_delta", "partial_json": args}),
            )
        }
    };
    let message = json!({
        "id": "msg_tb", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    });
    vec![
        (
            Some("message_start"),
            json!({"type": "message_start", "message": message}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": start}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ]
}

fn responses_item(say: &Say<'_>) -> Value {
    match say {
        Say::Text(t) => json!({
            "id": "msg_tb", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}],
        }),
        Say::Call(name, args) => json!({
            "id": "fc_tb", "type": "function_call", "status": "completed",
            "call_id": CALL_ID, "name": name, "arguments": args,
        }),
    }
}

fn responses_body(model: &str, say: &Say<'_>) -> Value {
    json!({
        "id": "resp_tb", "object": "response", "created_at": 1, "status": "completed",
        "model": model, "output": [responses_item(say)],
        "usage": {
            "input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        },
    })
}

fn responses_events(model: &str, say: &Say<'_>) -> Vec<(Option<&'static str>, Value)> {
    let done = responses_body(model, say);
    let mut created = done.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    let item = responses_item(say);
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    let mut events = vec![
        ("response.created", json!({"response": created.clone()})),
        ("response.in_progress", json!({"response": created})),
    ];
    match say {
        Say::Text(t) => {
            added["content"] = json!([]);
            let ids = json!({"output_index": 0, "item_id": "msg_tb", "content_index": 0});
            let with = |mut v: Value, extra: Value| {
                if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                    v.extend(extra.clone());
                }
                v
            };
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            events.push((
                "response.content_part.added",
                with(ids.clone(), json!({"part": part})),
            ));
            events.push((
                "response.output_text.delta",
                with(ids.clone(), json!({"delta": t})),
            ));
            events.push((
                "response.output_text.done",
                with(ids.clone(), json!({"text": t})),
            ));
            events.push((
                "response.content_part.done",
                with(
                    ids,
                    json!({"part": {"type": "output_text", "text": t, "annotations": []}}),
                ),
            ));
        }
        Say::Call(_, args) => {
            added["arguments"] = json!("");
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            events.push((
                "response.function_call_arguments.delta",
                json!({"output_index": 0, "item_id": "fc_tb", "delta": args}),
            ));
            events.push((
                "response.function_call_arguments.done",
                json!({"output_index": 0, "item_id": "fc_tb", "arguments": args}),
            ));
        }
    }
    events.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
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

pub(crate) fn whole(status: u16, body: Value) -> Response<Frames> {
    let mut response = Response::new(Frames(vec![Bytes::from(body.to_string())].into_iter()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An SSE response, one HTTP chunk per event; chat streams end with
/// `data: [DONE]`.
pub(crate) fn sse(events: Vec<(Option<&'static str>, Value)>) -> Response<Frames> {
    let chat = events.first().is_some_and(|(name, _)| name.is_none());
    let mut frames: Vec<Bytes> = events
        .into_iter()
        .map(|(name, data)| {
            let event = name.map(|n| format!("event: {n}\n")).unwrap_or_default();
            Bytes::from(format!("{event}data: {data}\n\n"))
        })
        .collect();
    if chat {
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let mut response = Response::new(Frames(frames.into_iter()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A body sent as the given frames, one HTTP chunk each (no length).
#[derive(Debug)]
pub(crate) struct Frames(std::vec::IntoIter<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.next().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> ToolTask {
        ToolTask {
            file: "/w/secret.txt".into(),
            marker: "tb-nonce-".into(),
        }
    }

    #[test]
    fn picks_the_read_tool_and_its_path_argument() {
        let req = json!({"tools": [
            {"name": "Bash", "input_schema": {"properties": {"command": {"type": "string"}}}},
            {"name": "Read", "input_schema": {"properties": {"file_path": {"type": "string"}}}}
        ]});
        let tools = declared_tools(Protocol::Messages, &req);
        assert_eq!(
            decide(&task(), &tools, &[]),
            Turn::ToolCall {
                tool: "Read".into(),
                arguments: json!({"file_path": "/w/secret.txt"})
            }
        );
    }

    #[test]
    fn falls_back_to_a_shell_tool() {
        let req = json!({"tools": [
            {"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {"type": "string"}}}},
            {"type": "web_search"}
        ]});
        let tools = declared_tools(Protocol::Responses, &req);
        assert_eq!(
            decide(&task(), &tools, &[]),
            Turn::ToolCall {
                tool: "exec_command".into(),
                arguments: json!({"cmd": "cat '/w/secret.txt'"})
            }
        );
    }

    #[test]
    fn quotes_the_marked_word_of_a_tool_result() {
        let req = json!({"messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "tool_calls": []},
            {"role": "tool", "tool_call_id": "c", "content": "{\"content\": \"1|tb-nonce-abc123\\n2|\"}"}
        ]});
        let results = tool_results(Protocol::ChatCompletions, &req);
        let Turn::Final { secret, text } = decide(&task(), &[], &results) else {
            panic!("not final");
        };
        assert_eq!(secret.as_deref(), Some("tb-nonce-abc123"));
        assert_eq!(text, ToolTask::final_text("tb-nonce-abc123"));
    }

    #[test]
    fn finds_tool_results_in_every_protocol() {
        let messages = json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "x"}]}
        ]}]});
        assert_eq!(tool_results(Protocol::Messages, &messages), ["x"]);
        let responses =
            json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "y"}]});
        assert_eq!(tool_results(Protocol::Responses, &responses), ["y"]);
    }
}
