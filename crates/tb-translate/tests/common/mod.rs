//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tb_domain::Protocol;
use tb_sse::{SseItem, SseParser};
use tb_translate::{AnswerContext, Route, StreamTranslator};

pub(crate) fn route(client: Protocol, upstream: Protocol) -> Route<'static> {
    Route {
        client,
        upstream,
        upstream_name: "up",
    }
}

/// Translates `input` fed in the given chunk sizes (cycled).
pub(crate) fn stream_chunked(
    client: Protocol,
    upstream: Protocol,
    ctx: &AnswerContext,
    input: &[u8],
    sizes: &[usize],
) -> Vec<u8> {
    let mut t = StreamTranslator::with_context(&route(client, upstream), "req-model", ctx);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        t.push(&rest[..size], &mut out);
        rest = &rest[size..];
        i += 1;
    }
    t.finish(&mut out);
    out
}

pub(crate) fn stream(
    client: Protocol,
    upstream: Protocol,
    ctx: &AnswerContext,
    input: &str,
) -> String {
    String::from_utf8(stream_chunked(
        client,
        upstream,
        ctx,
        input.as_bytes(),
        &[input.len().max(1)],
    ))
    .unwrap()
}

/// The events of a client stream: (event name or "message", data as JSON;
/// `[DONE]` is `Value::Null`).
pub(crate) fn events(output: &str) -> Vec<(String, Value)> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut take = |item: SseItem<'_>| {
        if let SseItem::Event(ev) = item {
            let data = if ev.data == "[DONE]" {
                Value::Null
            } else {
                serde_json::from_str(ev.data).unwrap_or_else(|e| panic!("{e}: {}", ev.data))
            };
            out.push((ev.event_type().to_owned(), data));
        }
    };
    parser.feed(output.as_bytes(), &mut take);
    parser.finish(&mut take);
    out
}

pub(crate) const CHAT: &str = include_str!("../fixtures/chat_tools.sse");
pub(crate) const MESSAGES: &str = include_str!("../fixtures/messages_tools.sse");
pub(crate) const RESPONSES: &str = include_str!("../fixtures/responses_tools.sse");

/// The upstream fixture for a protocol.
pub(crate) fn fixture(upstream: Protocol) -> &'static str {
    match upstream {
        Protocol::ChatCompletions => CHAT,
        Protocol::Messages => MESSAGES,
        _ => RESPONSES,
    }
}

pub(crate) const TEXT: [Protocol; 3] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
];
