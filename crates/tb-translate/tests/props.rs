//! Property tests: chunking never changes a translated stream, no input
//! makes a translator panic, and requests survive a round trip through a
//! foreign protocol with their meaning intact.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TEXT, fixture, route, stream_chunked};
use proptest::prelude::*;
use serde_json::{Value, json};
use tb_domain::Protocol::{self, ChatCompletions as Chat, Messages, Responses};
use tb_translate::{AnswerContext, translate_answer, translate_request};

/// Every ordered pair of different text protocols.
fn pairs() -> Vec<(Protocol, Protocol)> {
    let mut out = Vec::new();
    for client in TEXT {
        for upstream in TEXT {
            if client != upstream {
                out.push((client, upstream));
            }
        }
    }
    out
}

/// The fixture with CRLF line ends (servers send both).
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any chunking of an upstream stream (splits inside lines, between CR
    /// and LF, inside UTF-8 characters) gives byte-identical client output.
    #[test]
    fn any_chunking_gives_identical_output(sizes in prop::collection::vec(1usize..48, 1..16), crlf_ends: bool) {
        let ctx = AnswerContext::default();
        for (client, upstream) in pairs() {
            let input = if crlf_ends { crlf(fixture(upstream)) } else { fixture(upstream).to_owned() };
            let whole = stream_chunked(client, upstream, &ctx, input.as_bytes(), &[input.len()]);
            let chunked = stream_chunked(client, upstream, &ctx, input.as_bytes(), &sizes);
            prop_assert_eq!(&whole, &chunked, "{}→{}", upstream, client);
            prop_assert!(!whole.is_empty());
        }
    }

    /// Arbitrary bytes, and fixtures cut anywhere, never panic, and the
    /// client stream always ends (terminal event or error event).
    #[test]
    fn no_input_panics(garbage in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..4000) {
        let ctx = AnswerContext::default();
        for (client, upstream) in pairs() {
            let out = stream_chunked(client, upstream, &ctx, &garbage, &[7]);
            prop_assert!(!out.is_empty());
            let fixture = fixture(upstream).as_bytes();
            let cut = &fixture[..cut.min(fixture.len())];
            let out = stream_chunked(client, upstream, &ctx, cut, &[13]);
            let text = String::from_utf8(out).unwrap();
            let ended = text.ends_with("data: [DONE]\n\n")
                || text.contains("\"error\"")
                || text.contains("event: message_stop")
                || text.contains("event: response.completed");
            prop_assert!(ended, "{}→{}: {}", upstream, client, text);
            let _ = translate_answer(&route(client, upstream), &garbage);
            let _ = translate_request(&route(client, upstream), &garbage);
        }
    }

    /// chat → messages → chat, and chat → responses → chat: the
    /// conversation, tools and settings mean the same.
    #[test]
    fn chat_requests_round_trip(request in chat_request()) {
        let body = request.to_string();
        for middle in [Messages, Responses] {
            let there = translate_request(&route(Chat, middle), body.as_bytes()).unwrap();
            let back = translate_request(&route(middle, Chat), &there.body).unwrap();
            let back: Value = serde_json::from_slice(&back.body).unwrap();
            prop_assert_eq!(meaning(&request), meaning(&back), "via {}: {}", middle, String::from_utf8_lossy(&there.body));
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,é“”\n\"\\\\]{1,24}"
}

fn arguments() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            text().prop_map(Value::from),
            any::<i32>().prop_map(Value::from)
        ],
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A turn: a user text, or an assistant text with tool calls and their
/// results.
fn turn() -> impl Strategy<Value = Vec<Value>> {
    prop_oneof![
        text().prop_map(|t| vec![json!({"role": "user", "content": t})]),
        (prop::option::of(text()), prop::collection::vec(("[a-z]{1,8}", arguments(), text()), 1..3)).prop_map(|(say, calls)| {
            let mut out = Vec::new();
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args, _))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
                .collect();
            let mut assistant = json!({"role": "assistant", "tool_calls": tool_calls});
            if let Some(say) = say {
                assistant["content"] = json!(say);
            }
            out.push(assistant);
            for (i, (_, _, result)) in calls.iter().enumerate() {
                out.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": result}));
            }
            out
        }),
    ]
}

fn chat_request() -> impl Strategy<Value = Value> {
    (
        prop::option::of(text()),
        prop::collection::vec(turn(), 1..5),
        prop::collection::vec("[a-z]{1,8}", 0..3),
        prop::option::of(1u64..100_000),
        prop::option::of(prop_oneof![Just("auto"), Just("none"), Just("required")]),
    )
        .prop_map(|(system, turns, tools, max_tokens, choice)| {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.extend(turns.into_iter().flatten());
            messages.push(json!({"role": "user", "content": "end"}));
            let mut request = json!({"model": "m", "messages": messages});
            if !tools.is_empty() {
                let tools: Vec<Value> = tools
                    .iter()
                    .map(|n| json!({"type": "function", "function": {"name": n, "description": "d", "parameters": {"type": "object", "properties": {}}}}))
                    .collect();
                request["tools"] = json!(tools);
                if let Some(choice) = choice {
                    request["tool_choice"] = json!(choice);
                }
            }
            if let Some(max) = max_tokens {
                request["max_tokens"] = json!(max);
            }
            request
        })
}

/// What a chat request means: turns as (role, texts, calls with parsed
/// arguments, result id), consecutive user or assistant messages merged
/// (one message with two texts says what two messages say); tools;
/// choice; limit (absent = the default a Messages upstream needs).
fn meaning(request: &Value) -> Value {
    let mut turns: Vec<(Value, Vec<Value>, Vec<Value>, Value)> = Vec::new();
    for m in request["messages"].as_array().unwrap() {
        let texts: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!(s)],
            Value::Array(parts) => parts.iter().map(|p| p["text"].clone()).collect(),
            _ => Vec::new(),
        };
        let calls: Vec<Value> = m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                json!([c["id"], c["function"]["name"], args])
            })
            .collect();
        match turns.last_mut() {
            Some(last) if last.0 == m["role"] && m["role"] != "tool" => {
                last.1.extend(texts);
                last.2.extend(calls);
            }
            _ => turns.push((m["role"].clone(), texts, calls, m["tool_call_id"].clone())),
        }
    }
    let turns: Vec<Value> = turns
        .into_iter()
        .map(|(r, t, c, id)| json!([r, t, c, id]))
        .collect();
    let max = request["max_tokens"]
        .as_u64()
        .filter(|m| *m != tb_translate::DEFAULT_MAX_TOKENS);
    json!({"turns": turns, "tools": request["tools"], "choice": request["tool_choice"], "max": max})
}
