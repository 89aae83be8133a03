//! One test per bug seen in other translating proxies (the issue's list).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CHAT, MESSAGES, RESPONSES, events, route, stream};
use serde_json::{Value, json};
use tb_domain::Protocol::{ChatCompletions as Chat, Messages, Responses};
use tb_translate::{AnswerContext, translate_answer, translate_request};

/// Chat `tool_calls` arguments of a client stream, per call index, joined.
fn chat_arguments(output: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for (_, data) in events(output) {
        let calls = data
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if args.len() <= i {
                args.resize(i + 1, String::new());
            }
            args[i].push_str(
                call.pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
        }
    }
    args
}

/// Bug: the arguments of a streamed tool call arrived empty (dropped
/// deltas, or a call without arguments left as `""`, which is not JSON).
#[test]
fn streamed_tool_call_arguments_never_arrive_empty() {
    let ctx = AnswerContext::default();
    assert_eq!(
        chat_arguments(&stream(Chat, Messages, &ctx, MESSAGES)),
        [r#"{"file_path": "/tmp/a.rs"}"#, "{}"]
    );
    assert_eq!(
        chat_arguments(&stream(Chat, Responses, &ctx, RESPONSES)),
        [r#"{"command":["ls"]}"#]
    );
    for (_, data) in events(&stream(Responses, Chat, &ctx, CHAT)) {
        if data["type"] == "response.function_call_arguments.done" {
            let args = data["arguments"].as_str().unwrap();
            assert!(serde_json::from_str::<Value>(args).is_ok(), "{args}");
        }
    }
}

/// Bug: a tool call's `input` was dropped — an upstream that puts the whole
/// input in `content_block_start` (no deltas), or a whole answer's
/// `tool_use.input`, or a request's assistant tool call.
#[test]
fn tool_input_is_never_dropped() {
    let upstream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"k\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Bash\",\"input\":{\"command\":\"ls -la\"}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let ctx = AnswerContext::default();
    assert_eq!(
        chat_arguments(&stream(Chat, Messages, &ctx, upstream)),
        [r#"{"command":"ls -la"}"#]
    );
    let responses = stream(Responses, Messages, &ctx, upstream);
    assert!(
        responses.contains(r#""arguments":"{\"command\":\"ls -la\"}""#),
        "{responses}"
    );

    let answer = br#"{"id":"m","model":"k","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let chat: Value =
        serde_json::from_slice(&translate_answer(&route(Chat, Messages), answer).unwrap()).unwrap();
    assert_eq!(
        chat.pointer("/choices/0/message/tool_calls/0/function/arguments"),
        Some(&json!(r#"{"command":"ls"}"#))
    );

    let request = br#"{"model":"m","messages":[{"role":"user","content":"go"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"Bash","arguments":"{\"command\":\"ls\"}"}}]},{"role":"tool","tool_call_id":"c","content":"a.rs"}]}"#;
    let messages: Value = serde_json::from_slice(
        &translate_request(&route(Chat, Messages), request)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        messages.pointer("/messages/1/content/0/input"),
        Some(&json!({"command": "ls"}))
    );
}

/// Bug: an empty `input_json_delta` was sent where a text delta was due
/// (the translator mixed up which block a delta belonged to).
#[test]
fn no_empty_input_json_delta_where_text_was_due() {
    let chunk = |delta: &str| {
        format!(
            "data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta}}}]}}\n\n"
        )
    };
    let upstream = [
        chunk(r#"{"content":"Before."}"#),
        chunk(r#"{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":""}}]}"#),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":""}}]}"#),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]}"#),
        chunk(r#"{"content":"After."}"#),
        chunk(r#"{"content":""}"#),
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = stream(Messages, Chat, &AnswerContext::default(), &upstream);
    let mut kinds: Vec<String> = Vec::new();
    for (name, data) in events(&out) {
        match name.as_str() {
            "content_block_start" => {
                kinds.push(data["content_block"]["type"].as_str().unwrap().to_owned())
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        assert_eq!(kinds[index], "text");
                        assert_ne!(delta["text"], "");
                    }
                    "input_json_delta" => {
                        assert_eq!(kinds[index], "tool_use");
                        assert_ne!(delta["partial_json"], "", "{out}");
                    }
                    other => panic!("{other}"),
                }
            }
            _ => {}
        }
    }
    assert_eq!(kinds, ["text", "tool_use", "text"]);
}

/// Bug: `message_start` carried a usage object Claude Code rejected
/// (missing counts, `null`s). Every count must be a number.
#[test]
fn message_start_usage_has_every_count_as_a_number() {
    for upstream in [Chat, Responses] {
        let out = stream(
            Messages,
            upstream,
            &AnswerContext::default(),
            common::fixture(upstream),
        );
        let (name, start) = &events(&out)[0];
        assert_eq!(name, "message_start");
        let usage = start
            .pointer("/message/usage")
            .unwrap()
            .as_object()
            .unwrap();
        let keys: Vec<&str> = usage.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "input_tokens",
                "output_tokens"
            ]
        );
        assert!(usage.values().all(Value::is_u64), "{usage:?}");
        let (_, delta) = events(&out)
            .into_iter()
            .find(|(n, _)| n == "message_delta")
            .unwrap();
        assert!(
            delta["usage"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_u64)
        );
    }
}

/// Bug: one tool call whose arguments came over many chunks (each chunk
/// repeating the id and name, as some servers do) became several
/// `tool_use` blocks; parallel calls must be separate blocks.
#[test]
fn one_tool_call_is_exactly_one_block() {
    let piece = |index: u32, id: &str, args: &str| {
        format!(
            "data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{index},\"id\":\"{id}\",\"type\":\"function\",\"function\":{{\"name\":\"edit\",\"arguments\":{}}}}}]}}}}]}}\n\n",
            serde_json::to_string(args).unwrap()
        )
    };
    let upstream = [
        piece(0, "call_1", "{\"pa"),
        piece(0, "call_1", "th\":"),
        piece(0, "call_1", "\"a\"}"),
        piece(1, "call_2", "{\"path\""),
        piece(1, "call_2", ":\"b\"}"),
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = stream(Messages, Chat, &AnswerContext::default(), &upstream);
    let mut blocks: Vec<(u64, String, String)> = Vec::new();
    for (name, data) in events(&out) {
        if name == "content_block_start" {
            let id = data["content_block"]["id"].as_str().unwrap().to_owned();
            blocks.push((data["index"].as_u64().unwrap(), id, String::new()));
        }
        if name == "content_block_delta" {
            let block = blocks
                .iter_mut()
                .find(|b| b.0 == data["index"].as_u64().unwrap())
                .unwrap();
            block
                .2
                .push_str(data["delta"]["partial_json"].as_str().unwrap());
        }
    }
    assert_eq!(
        blocks,
        [
            (0, "call_1".to_owned(), r#"{"path":"a"}"#.to_owned()),
            (1, "call_2".to_owned(), r#"{"path":"b"}"#.to_owned()),
        ]
    );
    assert_eq!(
        chat_arguments(&stream(Chat, Messages, &AnswerContext::default(), MESSAGES)).len(),
        2
    );
}

/// Bug: "Invalid signature in thinking block" — a Messages conversation
/// that went through a foreign provider forwarded Anthropic's thinking
/// signatures (or invented ones) to a provider that cannot verify them.
#[test]
fn thinking_signatures_never_reach_a_provider_that_cannot_verify_them() {
    let request = br#"{"model":"m","max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":1500},"messages":[
        {"role":"user","content":"q"},
        {"role":"assistant","content":[{"type":"thinking","thinking":"private plan","signature":"EqQBCkYIBxgCKkDsig"},{"type":"redacted_thinking","data":"EmwKAhgBEgyREDACTED"},{"type":"text","text":"a"}]},
        {"role":"user","content":"q2"}]}"#;
    for upstream in [Chat, Responses] {
        let body = translate_request(&route(Messages, upstream), request)
            .unwrap()
            .body;
        let body = String::from_utf8(body).unwrap();
        for secret in [
            "EqQBCkYIBxgCKkDsig",
            "EmwKAhgBEgyREDACTED",
            "signature",
            "private plan",
            "redacted",
        ] {
            assert!(!body.contains(secret), "{upstream}: {secret} in {body}");
        }
    }
    // Streams: the signature_delta of a Messages upstream reaches no other client.
    for client in [Chat, Responses] {
        let out = stream(client, Messages, &AnswerContext::default(), MESSAGES);
        assert!(!out.contains("EqQBCkYIBxgCKkD"), "{client}: {out}");
    }
    // A thinking block that a translated route produced has an empty
    // signature; sent back, its text goes to a chat upstream as
    // reasoning_content, never as a signature.
    let answer = translate_answer(
        &route(Messages, Chat),
        br#"{"id":"c","model":"ds","choices":[{"message":{"role":"assistant","reasoning_content":"mine","content":"x"},"finish_reason":"stop"}]}"#,
    )
    .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["content"][0],
        json!({"type": "thinking", "thinking": "mine", "signature": ""})
    );
    let next = json!({"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": "q2"}]});
    let body = translate_request(&route(Messages, Chat), next.to_string().as_bytes())
        .unwrap()
        .body;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": "x", "reasoning_content": "mine"})
    );
}
