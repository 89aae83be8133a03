//! Reading an upstream's whole answer.

use std::borrow::Cow;

use serde_json::value::RawValue;
use tb_domain::Protocol;

use super::{AnswerError, malformed};
use crate::ir::{Answer, Finish, OutPart, paragraphs};
use crate::usage::WireUsage;
use crate::wire::{self, First, Str, StrOr, wire};

wire! {
    lenient struct ChatCompletion {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        created: u64 = "created",
        choices: First<ChatChoice<'a>> = "choices",
        usage: WireUsage = "usage",
    }
}

wire! {
    lenient struct ChatChoice {
        message: ChatAnswerMessage<'a> = "message",
        finish_reason: Str<'a> = "finish_reason",
    }
}

wire! {
    lenient struct ChatAnswerMessage {
        content: StrOr<'a, Vec<TextPart<'a>>> = "content",
        reasoning_content: Str<'a> = "reasoning_content",
        reasoning: Str<'a> = "reasoning",
        refusal: Str<'a> = "refusal",
        tool_calls: Vec<ChatAnswerCall<'a>> = "tool_calls",
    }
}

wire! {
    lenient struct TextPart {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        refusal: Str<'a> = "refusal",
    }
}

wire! {
    lenient struct ChatAnswerCall {
        id: Str<'a> = "id",
        function: ChatAnswerFunction<'a> = "function",
    }
}

wire! {
    lenient struct ChatAnswerFunction {
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
    }
}

/// Reads a Chat Completions answer (its first choice: translated requests
/// never ask for more).
pub(super) fn chat(body: &[u8]) -> Result<Answer<'_>, AnswerError> {
    let c: ChatCompletion<'_> =
        wire::parse(body).map_err(|e| malformed(Protocol::ChatCompletions, &e))?;
    let mut answer = Answer {
        id: c.id.unwrap_or_default(),
        model: c.model.unwrap_or_default(),
        created: c.created,
        usage: c.usage.and_then(|u| u.read(Protocol::ChatCompletions)),
        ..Answer::default()
    };
    let Some(choice) = c.choices.and_then(|first| first.0) else {
        return Ok(answer);
    };
    answer.finish = choice.finish_reason.map(|f| Finish::from_chat(&f));
    let Some(m) = choice.message else {
        return Ok(answer);
    };
    answer.parts.extend(
        m.reasoning_content
            .or(m.reasoning)
            .filter(|r| !r.is_empty())
            .map(OutPart::Reasoning),
    );
    match m.content {
        Some(StrOr::Str(text)) => answer.parts.extend(non_empty(text).map(OutPart::Text)),
        Some(StrOr::Other(parts)) => {
            for part in parts {
                answer
                    .parts
                    .extend(part.text.and_then(non_empty).map(OutPart::Text));
                answer
                    .parts
                    .extend(part.refusal.and_then(non_empty).map(OutPart::Refusal));
            }
        }
        None => {}
    }
    answer
        .parts
        .extend(m.refusal.and_then(non_empty).map(OutPart::Refusal));
    for call in m.tool_calls.unwrap_or_default() {
        let function = call.function.unwrap_or_default();
        answer.parts.push(OutPart::ToolCall {
            id: call.id.unwrap_or_default(),
            name: function.name.unwrap_or_default(),
            arguments: function.arguments.map(|a| a.0).unwrap_or(Cow::Borrowed("")),
        });
    }
    Ok(answer)
}

fn non_empty(text: Str<'_>) -> Option<Str<'_>> {
    (!text.is_empty()).then_some(text)
}

wire! {
    lenient struct MessagesAnswer {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        content: Vec<AnswerBlock<'a>> = "content",
        stop_reason: Str<'a> = "stop_reason",
        stop_sequence: Str<'a> = "stop_sequence",
        usage: WireUsage = "usage",
    }
}

wire! {
    lenient struct AnswerBlock {
        kind: Str<'a> = "type",
        text: Str<'a> = "text",
        id: Str<'a> = "id",
        name: Str<'a> = "name",
        input: &'a RawValue = "input",
        thinking: Str<'a> = "thinking",
    }
}

/// Reads a Messages answer. A thinking block's signature is not kept:
/// the client speaks another protocol and could only send it to a
/// foreign upstream.
pub(super) fn messages(body: &[u8]) -> Result<Answer<'_>, AnswerError> {
    let m: MessagesAnswer<'_> = wire::parse(body).map_err(|e| malformed(Protocol::Messages, &e))?;
    let mut answer = Answer {
        id: m.id.unwrap_or_default(),
        model: m.model.unwrap_or_default(),
        finish: m.stop_reason.map(|r| Finish::from_messages(&r)),
        stop_sequence: m.stop_sequence,
        usage: m.usage.and_then(|u| u.read(Protocol::Messages)),
        ..Answer::default()
    };
    for block in m.content.unwrap_or_default() {
        let part = match block.kind.as_deref() {
            Some("text") => block.text.and_then(non_empty).map(OutPart::Text),
            Some("thinking") => block.thinking.and_then(non_empty).map(OutPart::Reasoning),
            Some("tool_use") => Some(OutPart::ToolCall {
                id: block.id.unwrap_or_default(),
                name: block.name.unwrap_or_default(),
                arguments: Cow::Borrowed(block.input.map_or("{}", RawValue::get)),
            }),
            // redacted_thinking has no visible text; server tool blocks
            // cannot occur (requests with server tools are refused).
            _ => None,
        };
        answer.parts.extend(part);
    }
    Ok(answer)
}

wire! {
    lenient struct ResponsesAnswer {
        id: Str<'a> = "id",
        model: Str<'a> = "model",
        created_at: u64 = "created_at",
        status: Str<'a> = "status",
        incomplete_details: Incomplete<'a> = "incomplete_details",
        output: Vec<OutputItem<'a>> = "output",
        usage: WireUsage = "usage",
    }
}

wire! {
    lenient struct Incomplete {
        reason: Str<'a> = "reason",
    }
}

wire! {
    lenient struct OutputItem {
        kind: Str<'a> = "type",
        content: Vec<TextPart<'a>> = "content",
        summary: Vec<TextPart<'a>> = "summary",
        call_id: Str<'a> = "call_id",
        name: Str<'a> = "name",
        arguments: Str<'a> = "arguments",
        input: Str<'a> = "input",
    }
}

/// Reads a Responses answer. Encrypted reasoning is not kept; its
/// summary is.
pub(super) fn responses(body: &[u8]) -> Result<Answer<'_>, AnswerError> {
    let r: ResponsesAnswer<'_> =
        wire::parse(body).map_err(|e| malformed(Protocol::Responses, &e))?;
    let mut answer = Answer {
        id: r.id.unwrap_or_default(),
        model: r.model.unwrap_or_default(),
        created: r.created_at,
        usage: r.usage.and_then(|u| u.read(Protocol::Responses)),
        ..Answer::default()
    };
    for item in r.output.unwrap_or_default() {
        output_item_parts(item, &mut answer.parts);
    }
    let tool_calls = answer
        .parts
        .iter()
        .any(|p| matches!(p, OutPart::ToolCall { .. }));
    let reason = r.incomplete_details.and_then(|d| d.reason);
    answer.finish = r
        .status
        .map(|s| Finish::from_responses(&s, reason.as_deref(), tool_calls));
    Ok(answer)
}

/// The parts of one Responses output item (also used by the stream
/// reader for `response.output_item.done`).
pub(crate) fn output_item_parts<'a>(item: OutputItem<'a>, parts: &mut Vec<OutPart<'a>>) {
    match item.kind.as_deref() {
        Some("message") => {
            for part in item.content.unwrap_or_default() {
                match part.kind.as_deref() {
                    Some("refusal") => {
                        parts.extend(part.refusal.and_then(non_empty).map(OutPart::Refusal))
                    }
                    _ => parts.extend(part.text.and_then(non_empty).map(OutPart::Text)),
                }
            }
        }
        // Summary parts are paragraphs of one reasoning text (a stream
        // separates them the same way).
        Some("reasoning") => {
            let texts: Vec<Str<'a>> = item
                .summary
                .unwrap_or_default()
                .into_iter()
                .chain(item.content.unwrap_or_default())
                .filter_map(|p| p.text)
                .collect();
            parts.extend(paragraphs(texts).map(OutPart::Reasoning));
        }
        Some("function_call") => parts.push(OutPart::ToolCall {
            id: item.call_id.unwrap_or_default(),
            name: item.name.unwrap_or_default(),
            arguments: item.arguments.map(|a| a.0).unwrap_or(Cow::Borrowed("")),
        }),
        _ => {}
    }
}
