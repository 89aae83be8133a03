//! Usage of a whole JSON answer.

use serde_json::Value;
use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::wire::{self, Envelope, non_empty_array, non_empty_str};
use super::{ImageUsage, RequestFacts, UsageReport, build_usage};

/// Extracts usage from a non-streamed answer body of `protocol`.
///
/// Sources per billing.md: `usage` with the accepted aliases (first valid
/// one wins); for Anthropic the total input adds cache reads and writes;
/// for images the count is `len(data)` (else the request's `n`) and size,
/// quality and format come from the response, else its first image, else
/// the request. A body that is not a JSON object gives `usage_missing`.
pub fn from_json(protocol: Protocol, body: &[u8], request: &RequestFacts) -> UsageReport {
    let env = Envelope::of(body);
    let (counts, cost) = wire::read_usage(protocol, env.usage);
    let (image, saw_content) = match protocol {
        Protocol::ChatCompletions => (None, chat_has_content(env.choices)),
        Protocol::Responses => (None, responses_has_content(env.output)),
        Protocol::Messages => (None, messages_has_content(env.content)),
        Protocol::ImagesGenerations => {
            let (image, images) = image_facts(&env, request);
            (Some(image), images > 0)
        }
    };
    UsageReport::new(build_usage(protocol, &counts, image), saw_content, cost)
}

/// Image count and display fields of an images answer; also how many
/// images it holds.
fn image_facts(env: &Envelope<'_>, request: &RequestFacts) -> (ImageUsage, usize) {
    let data: Option<Vec<&RawValue>> = env
        .data
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    let images = data.as_ref().map_or(0, Vec::len);
    let first = Envelope::of_raw(data.as_ref().and_then(|d| d.first().copied()));
    let count = match &data {
        Some(d) => u32::try_from(d.len()).ok(),
        None => request.n,
    };
    let pick = |response: Option<&RawValue>, image: Option<&RawValue>, req: &Option<String>| {
        wire::display_str(response)
            .or_else(|| wire::display_str(image))
            .or_else(|| req.clone())
    };
    let image = ImageUsage {
        count,
        size: pick(env.size, first.size, &request.size),
        quality: pick(env.quality, first.quality, &request.quality),
        output_format: pick(
            env.output_format,
            first.output_format,
            &request.output_format,
        ),
        ..ImageUsage::default()
    };
    (image, images)
}

/// A chat message or delta that shows the client something: non-empty
/// `content` (text or parts), `reasoning_content`/`reasoning`, `refusal`,
/// or any tool call.
pub(super) fn chat_message_has_content(message: &Value) -> bool {
    non_empty_str(&message["content"])
        || non_empty_array(&message["content"])
        || non_empty_str(&message["reasoning_content"])
        || non_empty_str(&message["reasoning"])
        || non_empty_str(&message["refusal"])
        || non_empty_array(&message["tool_calls"])
        || message["function_call"].is_object()
}

fn chat_has_content(choices: Option<&RawValue>) -> bool {
    let choices = wire::raw_value(choices);
    choices.as_array().is_some_and(|choices| {
        choices
            .iter()
            .any(|c| chat_message_has_content(&c["message"]))
    })
}

fn responses_has_content(output: Option<&RawValue>) -> bool {
    let output = wire::raw_value(output);
    output.as_array().is_some_and(|items| {
        items.iter().any(|item| match item["type"].as_str() {
            Some("message") => item["content"].as_array().is_some_and(|parts| {
                parts
                    .iter()
                    .any(|p| non_empty_str(&p["text"]) || non_empty_str(&p["refusal"]))
            }),
            Some("reasoning") => {
                non_empty_array(&item["summary"]) || non_empty_array(&item["content"])
            }
            // Tool calls of every kind (function, custom, web search,
            // image generation …) are content.
            Some(_) => true,
            None => false,
        })
    })
}

fn messages_has_content(content: Option<&RawValue>) -> bool {
    let content = wire::raw_value(content);
    content.as_array().is_some_and(|blocks| {
        blocks.iter().any(|b| match b["type"].as_str() {
            Some("text") => non_empty_str(&b["text"]),
            Some("thinking") => non_empty_str(&b["thinking"]),
            // tool_use, server_tool_use, redacted_thinking, results …
            Some(_) => true,
            None => false,
        })
    })
}
