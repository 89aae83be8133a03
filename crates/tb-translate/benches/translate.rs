//! Translation cost on what the agents send:
//! - `translate_request/chat_1k_to_messages`: a 1 KB opencode-like Chat
//!   request → Messages (the common small case);
//! - `translate_request/messages_200k_to_chat`: a 200 KB Claude-Code-like
//!   Messages request (billing header and cached system blocks, 30 tool
//!   definitions, a long conversation whose tool results are file
//!   contents full of `\n`, `\t` and `\"`, signed thinking) → Chat;
//! - `translate_request/responses_codex_to_chat`: a Codex-like Responses
//!   request (instructions, developer and user items, reasoning items with
//!   `encrypted_content`, shell calls and outputs, the custom
//!   `apply_patch` tool) → Chat;
//! - `translate_stream/chat_to_messages`, `.../chat_to_responses`: a Chat
//!   stream of text deltas, reasoning deltas and a tool call with streamed
//!   arguments, fed one upstream event per push; throughput is per chunk.
//!
//! Budgets (the issue): ≤ 20 µs per request, ≤ 5 µs per streamed chunk.
//! The `serde_value` rows are a baseline: parsing the same body into a
//! `serde_json::Value` tree, no translation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tb_domain::Protocol;
use tb_translate::{Route, StreamTranslator, translate_request};

const PROSE: &str = "You are an interactive CLI tool that helps users with software engineering tasks. \
Use the instructions below and the tools available to you to assist the user. IMPORTANT: never guess URLs. \
When the user asks about “naïve” approaches, explain trade-offs — briefly — and prefer editing existing files. ";

const CODE: &[&str] = &[
    "use std::collections::HashMap;",
    "",
    "/// Parses the \"config\" section and returns the map.",
    "pub fn parse(input: &str) -> Result<HashMap<String, String>, Error> {",
    "    let mut out = HashMap::new();",
    "    for line in input.lines().filter(|l| !l.trim().is_empty()) {",
    "        let (k, v) = line.split_once('=').ok_or(Error::Syntax)?;",
    "        out.insert(k.trim().to_string(), v.trim().to_string()); // café",
    "    }",
    "    Ok(out)",
    "}",
];

/// `cat -n`-style file content, as Claude Code's Read tool returns it.
fn file_content(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("{:>6}\t{}\n", i + 1, CODE[i % CODE.len()]))
        .collect()
}

fn tool(i: usize) -> Value {
    let props: serde_json::Map<String, Value> = (0..5)
        .map(|p| {
            (
                format!("param_{p}"),
                json!({"type": if p % 2 == 0 { "string" } else { "integer" },
                       "description": format!("Parameter {p}: {}", &PROSE[..120])}),
            )
        })
        .collect();
    json!({
        "name": format!("Tool{i}"),
        "description": PROSE.repeat(4) + "\n\nUsage:\n- Example: `tool --flag \"value\"`\n",
        "input_schema": {"type": "object", "properties": props, "required": ["param_0"],
                          "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"},
    })
}

/// A Claude-Code-like Messages request of at least `target` bytes.
fn claude_code_body(target: usize) -> Vec<u8> {
    let tools: Vec<Value> = (0..30).map(tool).collect();
    let mut messages = Vec::new();
    let mut turn = 0;
    loop {
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": format!("Please look at src/file{turn}.rs and fix the bug — merci 🙏"), "cache_control": {"type": "ephemeral"}}]}));
        messages.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants the file read first.", "signature": "EqQBCkYIBxgCKkDbHo2j6Q"},
            {"type": "text", "text": "I'll read the file first."},
            {"type": "tool_use", "id": format!("toolu_{turn:024}"), "name": "Read", "input": {"file_path": format!("/home/u/p/src/file{turn}.rs")}},
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{turn:024}"), "content": file_content(60)},
        ]}));
        turn += 1;
        let body = serde_json::to_vec(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3.abc; cc_entrypoint=cli; cch=1f2e3;"},
                {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": PROSE.repeat(60), "cache_control": {"type": "ephemeral"}},
            ],
            "tools": tools,
            "messages": messages,
            "metadata": {"user_id": "user_abc_account_def_session_ghi"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        }))
        .unwrap();
        if body.len() >= target {
            return body;
        }
    }
}

/// A Codex-like Responses request: a dozen turns of shell calls.
fn codex_body() -> Vec<u8> {
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions instructions>Filesystem sandboxing: workspace-write.</permissions instructions>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/home/u/p</cwd>\n  <shell>zsh</shell>\n</environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the failing test in src/parse.rs"}]}),
    ];
    for turn in 0..12 {
        input.push(json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Inspecting the test**\n\nI'll run the tests first."}], "encrypted_content": "gAAAAABo".repeat(40)}));
        input.push(json!({"type": "function_call", "name": "shell", "arguments": json!({"command": ["bash", "-lc", format!("sed -n 1,80p src/file{turn}.rs")], "workdir": "/home/u/p"}).to_string(), "call_id": format!("call_{turn:020}")}));
        input.push(json!({"type": "function_call_output", "call_id": format!("call_{turn:020}"), "output": file_content(30)}));
    }
    input.push(json!({"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch", "input": "*** Begin Patch\n*** Update File: src/parse.rs\n@@\n-    Ok(out)\n+    Ok(out) // fixed\n*** End Patch\n"}));
    input.push(json!({"type": "custom_tool_call_output", "call_id": "call_patch", "output": "Success. Updated the following files:\nM src/parse.rs\n"}));
    serde_json::to_vec(&json!({
        "model": "gpt-5-codex",
        "instructions": PROSE.repeat(50),
        "input": input,
        "tools": [
            {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": false}},
            {"type": "function", "name": "update_plan", "description": "Updates the task plan.", "strict": false,
             "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object", "properties": {"step": {"type": "string"}, "status": {"type": "string"}}, "required": ["step", "status"], "additionalProperties": false}}}, "required": ["plan"], "additionalProperties": false}},
            {"type": "custom", "name": "apply_patch", "description": "Use the `apply_patch` tool to edit files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?\n"}},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a0c1-7f3e-7c52-9b7d-3c6f5e0a9d11",
        "text": {"verbosity": "medium"},
    }))
    .unwrap()
}

/// A Chat stream, one SSE event per element: reasoning, text, a tool
/// call with streamed arguments, the finish, usage and `[DONE]`.
fn chat_stream_events(n: usize) -> Vec<Vec<u8>> {
    let chunk = |delta: Value| {
        let event = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "deepseek-chat",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
        format!("data: {event}\n\n").into_bytes()
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}))];
    for i in 0..n / 4 {
        events.push(chunk(
            json!({"reasoning_content": format!("step {i}: consider the \"parse\" path ")}),
        ));
    }
    for i in 0..n / 2 {
        events.push(chunk(json!({"content": format!("word{i} — “quoted” ")})));
    }
    events.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "edit", "arguments": ""}}]})));
    while events.len() < n.saturating_sub(3) {
        events.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":\"src/a.rs\",\"x\":1}"}}]})));
    }
    events.push(b"data: {\"id\":\"chatcmpl-bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".to_vec());
    events.push(b"data: {\"id\":\"chatcmpl-bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":500}}\n\n".to_vec());
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// A 1 KB Chat request as opencode sends one (system, user, a tool).
fn small_chat_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 4096,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": PROSE},
            {"role": "user", "content": PROSE.repeat(2) + "Résumé: what does \"parse\" do?\n"},
        ],
        "tools": [{"type": "function", "function": {"name": "read", "description": "Read a file.",
                   "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}],
    }))
    .unwrap()
}

fn route(client: Protocol, upstream: Protocol) -> Route<'static> {
    Route {
        client,
        upstream,
        upstream_name: "bench",
    }
}

fn requests(c: &mut Criterion) {
    let cases = [
        (
            "chat_1k_to_messages",
            Protocol::ChatCompletions,
            small_chat_body(),
        ),
        (
            "messages_200k_to_chat",
            Protocol::Messages,
            claude_code_body(200 * 1024),
        ),
        ("responses_codex_to_chat", Protocol::Responses, codex_body()),
    ];
    let mut g = c.benchmark_group("translate_request");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, client, body) in &cases {
        let upstream = if *client == Protocol::ChatCompletions {
            Protocol::Messages
        } else {
            Protocol::ChatCompletions
        };
        let route = route(*client, upstream);
        translate_request(&route, body).unwrap();
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| translate_request(&route, black_box(body)).unwrap())
        });
        g.bench_function(format!("{name}/serde_value"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).unwrap())
        });
    }
    g.finish();
}

fn streams(c: &mut Criterion) {
    let events = chat_stream_events(400);
    let mut g = c.benchmark_group("translate_stream");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(events.len() as u64));
    for (name, client) in [
        ("chat_to_messages", Protocol::Messages),
        ("chat_to_responses", Protocol::Responses),
    ] {
        let route = route(client, Protocol::ChatCompletions);
        let mut out = Vec::with_capacity(1 << 16);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut t = StreamTranslator::new(&route, "deepseek-chat");
                out.clear();
                for event in &events {
                    t.push(black_box(event), &mut out);
                }
                t.finish(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, requests, streams);
criterion_main!(benches);
