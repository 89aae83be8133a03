//! Writing a whole answer in the client's protocol.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::AnswerError;
use crate::ids;
use crate::ir::{Answer, Finish, OutPart};
use crate::shape::{
    BlockOut, ChatToolCallOut, ContentOut, IncompleteOut, ItemOut, ResponseObject, SummaryOut,
    custom_input, input_object,
};
use crate::usage::{ChatUsageOut, MessagesUsageOut, ResponsesUsageOut};
use crate::{AnswerContext, CallName};

#[derive(Serialize)]
struct ChatCompletionOut<'r> {
    id: Cow<'r, str>,
    object: &'static str,
    created: u64,
    model: &'r str,
    choices: [ChoiceOut<'r>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ChatUsageOut>,
}

#[derive(Serialize)]
struct ChoiceOut<'r> {
    index: u32,
    message: ChatMessageOut<'r>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ChatMessageOut<'r> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCallOut<'r>>,
}

/// The finish the answer says, or what its content implies.
fn finish(answer: &Answer<'_>) -> Finish {
    let calls = answer
        .parts
        .iter()
        .any(|p| matches!(p, OutPart::ToolCall { .. }));
    match answer.finish {
        Some(f) => f,
        None if calls => Finish::ToolCalls,
        None => Finish::Stop,
    }
}

/// Appends `text` to an optional accumulator (texts of one kind are
/// concatenated, as a stream of their deltas would be).
fn append(acc: &mut Option<String>, text: &str) {
    acc.get_or_insert_with(String::new).push_str(text);
}

pub(super) fn chat(ctx: &AnswerContext, answer: &Answer<'_>) -> Result<Vec<u8>, AnswerError> {
    let mut message = ChatMessageOut {
        role: "assistant",
        content: None,
        reasoning_content: None,
        refusal: None,
        tool_calls: Vec::new(),
    };
    for part in &answer.parts {
        match part {
            OutPart::Reasoning(text) => append(&mut message.reasoning_content, text),
            OutPart::Text(text) => append(&mut message.content, text),
            OutPart::Refusal(text) => append(&mut message.refusal, text),
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => message.tool_calls.push(ChatToolCallOut::function(
                id,
                name,
                Cow::Borrowed(if arguments.trim().is_empty() {
                    "{}"
                } else {
                    arguments
                }),
            )),
        }
    }
    let out = ChatCompletionOut {
        id: ids::prefixed("chatcmpl-", &answer.id),
        object: "chat.completion",
        created: answer.created.unwrap_or(ctx.created),
        model: &answer.model,
        choices: [ChoiceOut {
            index: 0,
            message,
            logprobs: None,
            finish_reason: finish(answer).chat(),
        }],
        usage: answer.usage.map(ChatUsageOut::from),
    };
    to_vec(&out)
}

#[derive(Serialize)]
struct MessageOut<'r> {
    id: Cow<'r, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'r str,
    content: Vec<BlockOut<'r>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'r str>,
    usage: MessagesUsageOut,
}

pub(super) fn messages(answer: &Answer<'_>) -> Result<Vec<u8>, AnswerError> {
    let mut content = Vec::with_capacity(answer.parts.len());
    for part in &answer.parts {
        content.push(match part {
            OutPart::Reasoning(text) => BlockOut::Thinking {
                thinking: text,
                signature: "",
            },
            OutPart::Text(text) | OutPart::Refusal(text) => BlockOut::Text { text },
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => BlockOut::ToolUse {
                id: ids::anthropic_id(id),
                name,
                input: input_object(arguments)
                    .ok_or_else(|| AnswerError::Arguments { id: id.to_string() })?,
            },
        });
    }
    let out = MessageOut {
        id: ids::prefixed("msg_", &answer.id),
        kind: "message",
        role: "assistant",
        model: &answer.model,
        content,
        stop_reason: finish(answer).messages(),
        stop_sequence: answer.stop_sequence.as_deref(),
        usage: MessagesUsageOut::from(answer.usage.unwrap_or_default()),
    };
    to_vec(&out)
}

pub(super) fn responses(ctx: &AnswerContext, answer: &Answer<'_>) -> Result<Vec<u8>, AnswerError> {
    let id = ids::prefixed("resp_", &answer.id);
    let output = output_items(ctx, &id, &answer.parts)?;
    let (status, reason) = finish(answer).responses();
    let mut response =
        ResponseObject::new(&id, &answer.model, answer.created.unwrap_or(ctx.created));
    response.status = status;
    response.incomplete_details = reason.map(|reason| IncompleteOut { reason });
    response.output = &output;
    response.usage = answer.usage.map(ResponsesUsageOut::from);
    to_vec(&response)
}

/// Output items: consecutive text and refusals share one message item,
/// consecutive reasoning one reasoning item, each tool call is an item.
fn output_items(
    ctx: &AnswerContext,
    response_id: &str,
    parts: &[OutPart<'_>],
) -> Result<Vec<Box<RawValue>>, AnswerError> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let index = items.len();
        let run = parts[i..]
            .iter()
            .take_while(|p| same_item(&parts[i], p))
            .count()
            .max(1);
        let item = item_for(ctx, response_id, index, &parts[i..i + run]);
        items.push(
            serde_json::value::to_raw_value(&item).map_err(|e| AnswerError::Malformed {
                protocol: tb_domain::Protocol::Responses,
                reason: e.to_string(),
            })?,
        );
        i += run;
    }
    Ok(items)
}

fn same_item(first: &OutPart<'_>, other: &OutPart<'_>) -> bool {
    match first {
        OutPart::Reasoning(_) => matches!(other, OutPart::Reasoning(_)),
        OutPart::Text(_) | OutPart::Refusal(_) => {
            matches!(other, OutPart::Text(_) | OutPart::Refusal(_))
        }
        OutPart::ToolCall { .. } => false,
    }
}

/// The item for a run of parts of one kind.
fn item_for<'r>(
    ctx: &'r AnswerContext,
    response_id: &str,
    index: usize,
    run: &'r [OutPart<'r>],
) -> OwnedItem<'r> {
    match run.first() {
        Some(OutPart::Reasoning(_)) => OwnedItem {
            id: ids::item("rs", response_id, index),
            run,
            call: None,
        },
        Some(OutPart::ToolCall { name, .. }) => {
            let call = ctx.call_name(name);
            OwnedItem {
                id: ids::item(if call.custom { "ctc" } else { "fc" }, response_id, index),
                run,
                call: Some(call),
            }
        }
        _ => OwnedItem {
            id: ids::item("msg", response_id, index),
            run,
            call: None,
        },
    }
}

/// An item id with the parts it covers (serialised through [`ItemOut`]);
/// for a tool call, the client's name for it.
struct OwnedItem<'r> {
    id: String,
    run: &'r [OutPart<'r>],
    call: Option<CallName<'r>>,
}

impl Serialize for OwnedItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = self.id.as_str();
        match self.run.first() {
            Some(OutPart::Reasoning(_)) => ItemOut::Reasoning {
                id,
                summary: self
                    .run
                    .iter()
                    .filter_map(|p| match p {
                        OutPart::Reasoning(t) => Some(SummaryOut::new(t)),
                        _ => None,
                    })
                    .collect(),
            }
            .serialize(s),
            Some(OutPart::ToolCall {
                id: call_id,
                name,
                arguments,
            }) => {
                let call = self.call.unwrap_or(CallName {
                    name,
                    namespace: None,
                    custom: false,
                });
                if call.custom {
                    return ItemOut::CustomToolCall {
                        id,
                        status: "completed",
                        call_id,
                        name: call.name,
                        namespace: call.namespace,
                        input: &custom_input(arguments),
                    }
                    .serialize(s);
                }
                ItemOut::FunctionCall {
                    id,
                    status: "completed",
                    call_id,
                    name: call.name,
                    namespace: call.namespace,
                    arguments: if arguments.trim().is_empty() {
                        "{}"
                    } else {
                        arguments
                    },
                }
                .serialize(s)
            }
            _ => ItemOut::Message {
                id,
                status: "completed",
                role: "assistant",
                content: self
                    .run
                    .iter()
                    .filter_map(|p| match p {
                        OutPart::Text(t) => Some(ContentOut::text(t)),
                        OutPart::Refusal(t) => Some(ContentOut::Refusal { refusal: t }),
                        _ => None,
                    })
                    .collect(),
            }
            .serialize(s),
        }
    }
}

fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, AnswerError> {
    serde_json::to_vec(value).map_err(|e| AnswerError::Malformed {
        protocol: tb_domain::Protocol::Responses,
        reason: e.to_string(),
    })
}
