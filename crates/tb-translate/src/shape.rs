//! Client-facing shapes shared by whole answers and streams: the
//! Responses object and its output items (a stream's `response.completed`
//! repeats what its `output_item.done` events said), and Messages content
//! blocks; and the Chat tool call, which an answer's message and a
//! request's assistant history write alike.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::usage::ResponsesUsageOut;
use crate::wire::Str;

/// The Responses `response` object, with the members the official SDKs
/// read; request echo members the translation does not know are `null`.
#[derive(Serialize)]
pub(crate) struct ResponseObject<'r> {
    pub(crate) id: &'r str,
    pub(crate) object: &'static str,
    pub(crate) created_at: u64,
    pub(crate) status: &'static str,
    pub(crate) error: Option<ErrorObject<'r>>,
    pub(crate) incomplete_details: Option<IncompleteOut>,
    pub(crate) instructions: Option<()>,
    pub(crate) max_output_tokens: Option<()>,
    pub(crate) model: &'r str,
    pub(crate) output: &'r [Box<RawValue>],
    pub(crate) parallel_tool_calls: bool,
    pub(crate) previous_response_id: Option<()>,
    pub(crate) reasoning: ReasoningEcho,
    pub(crate) store: bool,
    pub(crate) temperature: Option<()>,
    pub(crate) text: TextEcho,
    pub(crate) tool_choice: &'static str,
    pub(crate) tools: [(); 0],
    pub(crate) top_p: Option<()>,
    pub(crate) truncation: &'static str,
    pub(crate) usage: Option<ResponsesUsageOut>,
    pub(crate) metadata: Empty,
}

impl<'r> ResponseObject<'r> {
    pub(crate) fn new(id: &'r str, model: &'r str, created_at: u64) -> ResponseObject<'r> {
        ResponseObject {
            id,
            object: "response",
            created_at,
            status: "in_progress",
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model,
            output: &[],
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: ReasoningEcho {
                effort: None,
                summary: None,
            },
            store: false,
            temperature: None,
            text: TextEcho {
                format: FormatEcho { kind: "text" },
            },
            tool_choice: "auto",
            tools: [],
            top_p: None,
            truncation: "disabled",
            usage: None,
            metadata: Empty {},
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ErrorObject<'r> {
    pub(crate) code: &'r str,
    pub(crate) message: &'r str,
}

#[derive(Serialize)]
pub(crate) struct IncompleteOut {
    pub(crate) reason: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ReasoningEcho {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Serialize)]
pub(crate) struct TextEcho {
    format: FormatEcho,
}

#[derive(Serialize)]
struct FormatEcho {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Empty {}

/// A Chat Completions `tool_calls[]` entry of an assistant message.
#[derive(Serialize)]
pub(crate) struct ChatToolCallOut<'r> {
    id: &'r str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatFunctionCallOut<'r>,
}

#[derive(Serialize)]
struct ChatFunctionCallOut<'r> {
    name: &'r str,
    arguments: Cow<'r, str>,
}

impl<'r> ChatToolCallOut<'r> {
    /// A function call (the only kind translated).
    pub(crate) fn function(id: &'r str, name: &'r str, arguments: Cow<'r, str>) -> Self {
        ChatToolCallOut {
            id,
            kind: "function",
            function: ChatFunctionCallOut { name, arguments },
        }
    }
}

/// A Responses output item.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ItemOut<'r> {
    Reasoning {
        id: &'r str,
        summary: Vec<SummaryOut<'r>>,
    },
    Message {
        id: &'r str,
        status: &'static str,
        role: &'static str,
        content: Vec<ContentOut<'r>>,
    },
    FunctionCall {
        id: &'r str,
        status: &'static str,
        call_id: &'r str,
        name: &'r str,
        /// The namespace of a tool declared in one (Codex routes a call
        /// on `namespace` and `name`).
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<&'r str>,
        arguments: &'r str,
    },
    CustomToolCall {
        id: &'r str,
        status: &'static str,
        call_id: &'r str,
        name: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<&'r str>,
        input: &'r str,
    },
}

#[derive(Serialize)]
pub(crate) struct SummaryOut<'r> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: &'r str,
}

impl<'r> SummaryOut<'r> {
    pub(crate) fn new(text: &'r str) -> SummaryOut<'r> {
        SummaryOut {
            kind: "summary_text",
            text,
        }
    }
}

/// A content part of a Responses message.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentOut<'r> {
    OutputText {
        text: &'r str,
        annotations: [(); 0],
        logprobs: [(); 0],
    },
    Refusal {
        refusal: &'r str,
    },
}

impl<'r> ContentOut<'r> {
    pub(crate) fn text(text: &'r str) -> ContentOut<'r> {
        ContentOut::OutputText {
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

/// The free-form input of a custom tool call sent upstream as function
/// arguments `{"input": "…"}`; arguments of another shape are passed on
/// as they are.
pub(crate) fn custom_input(arguments: &str) -> Cow<'_, str> {
    #[derive(Deserialize)]
    struct Input<'a> {
        #[serde(borrow)]
        input: Str<'a>,
    }
    match serde_json::from_str::<Input<'_>>(arguments) {
        Ok(parsed) => parsed.input.0,
        Err(_) => Cow::Borrowed(arguments),
    }
}

/// A Messages content block of an answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BlockOut<'r> {
    /// Thinking from a foreign upstream carries an empty signature:
    /// there is no Anthropic signature to give, and an invented one would
    /// be rejected as invalid.
    Thinking {
        thinking: &'r str,
        signature: &'static str,
    },
    Text {
        text: &'r str,
    },
    ToolUse {
        id: Cow<'r, str>,
        name: &'r str,
        input: Cow<'r, RawValue>,
    },
}

/// Tool-call arguments as a Messages `input` object: empty arguments are
/// `{}`; `None` when they are not a JSON object.
pub(crate) fn input_object(arguments: &str) -> Option<Cow<'_, RawValue>> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Some(Cow::Owned(crate::wire::empty_object()));
    }
    if !trimmed.starts_with('{') {
        return None;
    }
    serde_json::from_str::<&RawValue>(trimmed)
        .ok()
        .map(Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_input_unwraps_the_input_member() {
        assert_eq!(custom_input(r#"{"input":"a\nb"}"#), "a\nb");
        assert_eq!(custom_input("not json"), "not json");
    }

    #[test]
    fn input_objects() {
        let get = |a: &str| input_object(a).map(|r| r.get().to_owned());
        assert_eq!(get(""), Some("{}".to_owned()));
        assert_eq!(get(" {\"a\":1} "), Some("{\"a\":1}".to_owned()));
        assert_eq!(get("[1]"), None);
        assert_eq!(get("{\"a\":"), None);
    }
}
