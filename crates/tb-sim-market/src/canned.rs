//! Canned upstream bodies, shaped like the real APIs: what the simulated
//! sellers answer (and what `tb-test-support`'s mock upstream answers by
//! default).
//!
//! Every body is deterministic (fixed ids and timestamps), so a test can
//! compare what came out of the daemon byte for byte with
//! [`sse_body`] or [`json()`]. The bodies are accepted by the official Python
//! SDKs (`openai`, `anthropic`), both as whole JSON documents and as SSE
//! streams, and carry non-zero usage so that token accounting has something
//! to count.
//!
//! The assistant text ([`TEXT`]) contains multi-byte UTF-8 characters so that
//! re-chunking a stream (as `tb-test-support`'s `chunking` does) splits
//! characters apart.
//!
//! ```
//! use tb_domain::Protocol;
//! use tb_sim_market::canned;
//!
//! let body: serde_json::Value =
//!     serde_json::from_slice(&canned::json(Protocol::Messages, "claude-x")).unwrap();
//! assert_eq!(body["content"][0]["text"], canned::TEXT);
//! assert_eq!(body["usage"]["input_tokens"], canned::INPUT_TOKENS);
//!
//! let events = canned::sse_events(Protocol::ChatCompletions, "gpt-x");
//! assert_eq!(events.concat(), canned::sse_body(Protocol::ChatCompletions, "gpt-x"));
//! assert_eq!(events.last().unwrap(), b"data: [DONE]\n\n");
//! ```

use serde_json::{Value, json};
use tb_domain::Protocol;

/// The assistant's whole answer, in every protocol.
pub const TEXT: &str = "Héllo wörld — ünïcode 🚀";

/// [`TEXT`] cut into the deltas that streamed replies send, in order.
pub const DELTAS: [&str; 5] = ["Héllo", " wörld", " —", " ünïcode", " 🚀"];

/// Input (prompt) tokens reported by the text protocols. For OpenAI this
/// includes [`CACHED_INPUT_TOKENS`]; for Anthropic (`input_tokens`) it does
/// not, as on the real APIs.
pub const INPUT_TOKENS: u64 = 12;

/// Output (completion) tokens reported by the text protocols.
pub const OUTPUT_TOKENS: u64 = 9;

/// Cached input tokens: OpenAI `cached_tokens`, Anthropic
/// `cache_read_input_tokens`.
pub const CACHED_INPUT_TOKENS: u64 = 3;

/// Anthropic `cache_creation_input_tokens`.
pub const CACHE_CREATION_INPUT_TOKENS: u64 = 2;

/// Images: text input tokens (`input_tokens_details.text_tokens`).
pub const IMAGE_TEXT_INPUT_TOKENS: u64 = 10;

/// Images: output tokens (what gpt-image-1 bills for a low-quality square).
pub const IMAGE_OUTPUT_TOKENS: u64 = 272;

/// The `created` / `created_at` timestamp of every canned body.
pub const CREATED: u64 = 1_700_000_000;

/// A valid 1×1 PNG, base64-encoded: the image every images reply carries.
pub const PNG_1X1_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

const CHAT_ID: &str = "chatcmpl-mockupstream0001";
const RESPONSE_ID: &str = "resp_mockupstream0001";
const RESPONSE_ITEM_ID: &str = "msg_mockupstream0001";
const ANTHROPIC_ID: &str = "msg_01MockUpstream000000001";
const FINGERPRINT: &str = "fp_mockupstream";

/// The non-streamed reply body of `protocol`, for a request naming `model`.
pub fn json(protocol: Protocol, model: &str) -> Vec<u8> {
    let value = match protocol {
        Protocol::ChatCompletions => chat_json(model),
        Protocol::Responses => response_object(
            model,
            "completed",
            vec![message_item("completed", true)],
            true,
        ),
        Protocol::Messages => messages_json(model),
        Protocol::ImagesGenerations | Protocol::ImagesEdits => images_json(),
        Protocol::Embeddings => embeddings_json(model),
        Protocol::Videos => video_json(model),
    };
    to_vec(&value)
}

/// The streamed reply of `protocol`, one complete SSE event per element
/// (`event: …` line where the protocol names events, then `data: …` and a
/// blank line).
pub fn sse_events(protocol: Protocol, model: &str) -> Vec<Vec<u8>> {
    match protocol {
        Protocol::ChatCompletions => chat_events(model),
        Protocol::Responses => responses_events(model),
        Protocol::Messages => messages_events(model),
        Protocol::ImagesGenerations => images_events("image_generation"),
        Protocol::ImagesEdits => images_events("image_edit"),
        // Embeddings have no streaming form; the JSON answer as one event.
        Protocol::Embeddings => vec![event(None, &embeddings_json(model))],
        // A video job object is never streamed; the JSON answer as one event.
        Protocol::Videos => vec![event(None, &video_json(model))],
    }
}

/// A finished OpenAI video job object (`GET /v1/videos/{id}`).
fn video_json(model: &str) -> Value {
    json!({
        "id": "video_mockupstream0001",
        "object": "video",
        "model": model,
        "status": "completed",
        "progress": 100,
        "created_at": 1_700_000_000,
        "seconds": "4",
        "size": "720x1280",
    })
}

/// [`sse_events`] concatenated: the whole streamed body.
pub fn sse_body(protocol: Protocol, model: &str) -> Vec<u8> {
    sse_events(protocol, model).concat()
}

/// An OpenAI-shaped error body:
/// `{"error":{"message","type","param":null,"code"}}`.
pub fn openai_error(error_type: &str, code: &str, message: &str) -> Vec<u8> {
    to_vec(&json!({
        "error": {
            "message": message,
            "type": error_type,
            "param": null,
            "code": code,
        }
    }))
}

/// An Anthropic-shaped error body: `{"type":"error","error":{"type","message"}}`.
pub fn anthropic_error(error_type: &str, message: &str) -> Vec<u8> {
    to_vec(&json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
    }))
}

fn to_vec(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

/// One SSE event: optional `event:` line, one `data:` line, blank line.
fn event(name: Option<&str>, data: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&to_vec(data));
    out.extend_from_slice(b"\n\n");
    out
}

// ---------------------------------------------------------------- chat ----

fn chat_usage() -> Value {
    json!({
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        "prompt_tokens_details": {
            "cached_tokens": CACHED_INPUT_TOKENS,
            "cache_write_tokens": 0,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

fn chat_json(model: &str) -> Value {
    json!({
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": TEXT,
                "refusal": null,
                "annotations": [],
            },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": chat_usage(),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    })
}

fn chat_chunk(model: &str, choices: Value) -> Value {
    json!({
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    })
}

fn chat_choice(delta: Value, finish_reason: Value) -> Value {
    json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }])
}

fn chat_events(model: &str) -> Vec<Vec<u8>> {
    let mut events = vec![event(
        None,
        &chat_chunk(
            model,
            chat_choice(
                json!({ "role": "assistant", "content": "", "refusal": null }),
                Value::Null,
            ),
        ),
    )];
    for delta in DELTAS {
        events.push(event(
            None,
            &chat_chunk(model, chat_choice(json!({ "content": delta }), Value::Null)),
        ));
    }
    events.push(event(
        None,
        &chat_chunk(model, chat_choice(json!({}), json!("stop"))),
    ));
    let mut usage = chat_chunk(model, json!([]));
    usage["usage"] = chat_usage();
    events.push(event(None, &usage));
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

// ----------------------------------------------------------- responses ----

fn responses_usage() -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": { "cached_tokens": CACHED_INPUT_TOKENS, "cache_write_tokens": 0 },
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    })
}

fn output_text_part(text: &str) -> Value {
    json!({ "type": "output_text", "annotations": [], "logprobs": [], "text": text })
}

fn message_item(status: &str, with_content: bool) -> Value {
    let content = if with_content {
        json!([output_text_part(TEXT)])
    } else {
        json!([])
    };
    json!({
        "id": RESPONSE_ITEM_ID,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn response_object(model: &str, status: &str, output: Vec<Value>, with_usage: bool) -> Value {
    json!({
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "max_tool_calls": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "prompt_cache_key": null,
        "reasoning": { "effort": null, "summary": null },
        "safety_identifier": null,
        "service_tier": "default",
        "store": true,
        "temperature": 1.0,
        "text": { "format": { "type": "text" }, "verbosity": "medium" },
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": if with_usage { responses_usage() } else { Value::Null },
        "user": null,
        "metadata": {},
    })
}

fn responses_events(model: &str) -> Vec<Vec<u8>> {
    let mut payloads: Vec<(&str, Value)> = vec![
        (
            "response.created",
            json!({ "response": response_object(model, "in_progress", vec![], false) }),
        ),
        (
            "response.in_progress",
            json!({ "response": response_object(model, "in_progress", vec![], false) }),
        ),
        (
            "response.output_item.added",
            json!({ "output_index": 0, "item": message_item("in_progress", false) }),
        ),
        (
            "response.content_part.added",
            json!({
                "item_id": RESPONSE_ITEM_ID,
                "output_index": 0,
                "content_index": 0,
                "part": output_text_part(""),
            }),
        ),
    ];
    for delta in DELTAS {
        payloads.push((
            "response.output_text.delta",
            json!({
                "item_id": RESPONSE_ITEM_ID,
                "output_index": 0,
                "content_index": 0,
                "delta": delta,
                "logprobs": [],
            }),
        ));
    }
    payloads.extend([
        (
            "response.output_text.done",
            json!({
                "item_id": RESPONSE_ITEM_ID,
                "output_index": 0,
                "content_index": 0,
                "text": TEXT,
                "logprobs": [],
            }),
        ),
        (
            "response.content_part.done",
            json!({
                "item_id": RESPONSE_ITEM_ID,
                "output_index": 0,
                "content_index": 0,
                "part": output_text_part(TEXT),
            }),
        ),
        (
            "response.output_item.done",
            json!({ "output_index": 0, "item": message_item("completed", true) }),
        ),
        (
            "response.completed",
            json!({
                "response": response_object(model, "completed", vec![message_item("completed", true)], true),
            }),
        ),
    ]);
    payloads
        .into_iter()
        .enumerate()
        .map(|(sequence, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(sequence);
            event(Some(name), &data)
        })
        .collect()
}

// ------------------------------------------------------------ messages ----

fn messages_json(model: &str) -> Value {
    json!({
        "id": ANTHROPIC_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{ "type": "text", "text": TEXT }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": CACHE_CREATION_INPUT_TOKENS,
            "cache_read_input_tokens": CACHED_INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "service_tier": "standard",
        },
    })
}

fn messages_events(model: &str) -> Vec<Vec<u8>> {
    let mut events = vec![
        event(
            Some("message_start"),
            &json!({
                "type": "message_start",
                "message": {
                    "id": ANTHROPIC_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": INPUT_TOKENS,
                        "cache_creation_input_tokens": CACHE_CREATION_INPUT_TOKENS,
                        "cache_read_input_tokens": CACHED_INPUT_TOKENS,
                        "output_tokens": 1,
                        "service_tier": "standard",
                    },
                },
            }),
        ),
        event(
            Some("content_block_start"),
            &json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        event(Some("ping"), &json!({ "type": "ping" })),
    ];
    for delta in DELTAS {
        events.push(event(
            Some("content_block_delta"),
            &json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": { "type": "text_delta", "text": delta },
            }),
        ));
    }
    events.extend([
        event(
            Some("content_block_stop"),
            &json!({ "type": "content_block_stop", "index": 0 }),
        ),
        event(
            Some("message_delta"),
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                "usage": { "output_tokens": OUTPUT_TOKENS },
            }),
        ),
        event(Some("message_stop"), &json!({ "type": "message_stop" })),
    ]);
    events
}

// -------------------------------------------------------------- images ----

fn images_usage() -> Value {
    json!({
        "input_tokens": IMAGE_TEXT_INPUT_TOKENS,
        "input_tokens_details": { "text_tokens": IMAGE_TEXT_INPUT_TOKENS, "image_tokens": 0 },
        "output_tokens": IMAGE_OUTPUT_TOKENS,
        "total_tokens": IMAGE_TEXT_INPUT_TOKENS + IMAGE_OUTPUT_TOKENS,
    })
}

/// An embeddings answer: one three-dimensional vector, input tokens only.
fn embeddings_json(model: &str) -> Value {
    json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0125, -0.5, 0.25]}],
        "model": model,
        "usage": {"prompt_tokens": INPUT_TOKENS, "total_tokens": INPUT_TOKENS},
    })
}

fn images_json() -> Value {
    json!({
        "created": CREATED,
        "background": "opaque",
        "data": [{ "b64_json": PNG_1X1_B64 }],
        "output_format": "png",
        "quality": "low",
        "size": "1024x1024",
        "usage": images_usage(),
    })
}

/// The streamed images answer; `kind` is `image_generation` or `image_edit`
/// (the event names' prefix).
fn images_events(kind: &str) -> Vec<Vec<u8>> {
    let partial = format!("{kind}.partial_image");
    let completed = format!("{kind}.completed");
    vec![
        event(
            Some(&partial),
            &json!({
                "type": partial,
                "b64_json": PNG_1X1_B64,
                "created_at": CREATED,
                "size": "1024x1024",
                "quality": "low",
                "background": "opaque",
                "output_format": "png",
                "partial_image_index": 0,
            }),
        ),
        event(
            Some(&completed),
            &json!({
                "type": completed,
                "b64_json": PNG_1X1_B64,
                "created_at": CREATED,
                "size": "1024x1024",
                "quality": "low",
                "background": "opaque",
                "output_format": "png",
                "usage": images_usage(),
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn deltas_make_up_the_text_and_text_is_not_ascii() {
        assert_eq!(DELTAS.concat(), TEXT);
        assert!(!TEXT.is_ascii());
    }

    #[test]
    fn every_sse_event_is_complete_and_carries_json() {
        for protocol in Protocol::ALL {
            for ev in sse_events(protocol, "m") {
                let text = String::from_utf8(ev).unwrap();
                assert!(text.ends_with("\n\n"), "{text:?}");
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                if data != "[DONE]" {
                    let v: Value = serde_json::from_str(data).unwrap();
                    if let Some(name) = text.lines().find_map(|l| l.strip_prefix("event: ")) {
                        assert_eq!(v["type"], name, "{protocol}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_bodies_name_the_model() {
        for protocol in [
            Protocol::ChatCompletions,
            Protocol::Responses,
            Protocol::Messages,
        ] {
            let v: Value = serde_json::from_slice(&json(protocol, "my-model")).unwrap();
            assert_eq!(v["model"], "my-model");
        }
        let v: Value = serde_json::from_slice(&json(Protocol::ImagesGenerations, "x")).unwrap();
        assert_eq!(v["data"][0]["b64_json"], PNG_1X1_B64);
    }

    #[test]
    fn responses_sequence_numbers_count_up() {
        let seqs: Vec<u64> = sse_events(Protocol::Responses, "m")
            .iter()
            .map(|ev| {
                let text = std::str::from_utf8(ev).unwrap();
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str::<Value>(data).unwrap()["sequence_number"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
}
